"""Source: a snapshot of a batch system's job queue (one row per job)."""

import pandas as pd

from decisionengine.framework.modules import Source
from decisionengine.framework.modules.Source import Parameter
from decisionengine.modules.demo.files import DATA_DIR, read_snapshot

COLUMNS = ["job_id", "vo", "request_cpus", "request_memory_gb", "status", "queued_seconds"]


@Source.supports_config(
    Parameter("snapshot_dir", default=str(DATA_DIR / "job_queue"), comment="directory of job queue CSV snapshots"),
    Parameter("period", default=60.0, comment="seconds each snapshot stays current"),
)
@Source.produces(job_queue=pd.DataFrame)
class JobQueueSource(Source.Source):
    def __init__(self, config):
        super().__init__(config)
        self.snapshot_dir = config.get("snapshot_dir") or str(DATA_DIR / "job_queue")
        self.period = float(config.get("period") or 60.0)

    def acquire(self):
        path, queue = read_snapshot(self.snapshot_dir, self.period, COLUMNS)
        self.logger.info("read job queue snapshot", file=path.name, jobs=len(queue))
        return {"job_queue": queue}


Source.describe(JobQueueSource, sample_config={"period": 60.0})
