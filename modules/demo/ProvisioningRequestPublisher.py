"""Publisher: one JSON file of provisioning requests per decision (what a real one would send)."""

import json
import time

import pandas as pd

from decisionengine.framework.modules import Publisher
from decisionengine.framework.modules.Publisher import Parameter
from decisionengine.modules.demo.files import output_dir


@Publisher.supports_config(
    Parameter("output_dir", default="demo-output", comment="relative paths are under $DE_STATE_DIR"),
    Parameter("keep", default=100, comment="request files kept; older ones are removed"),
)
@Publisher.consumes(provisioning_plan=pd.DataFrame)
class ProvisioningRequestPublisher(Publisher.Publisher):
    def __init__(self, config):
        super().__init__(config)
        self.directory = output_dir(config.get("output_dir") or "demo-output") / "requests"
        self.keep = int(config.get("keep", 100))

    def publish(self, data_block):
        plan = self.provisioning_plan(data_block)
        self.directory.mkdir(parents=True, exist_ok=True)
        generation = getattr(data_block, "generation_id", None)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"request-{stamp}-g{generation or 0:06d}.json"
        requests = [
            {"resource": r.resource, "provider": r.provider, "instances": int(r.instances), "cpus": int(r.cpus)}
            for r in plan.itertuples()
        ]
        document = {"generation": generation, "time": time.time(), "requests": requests}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2))
        temporary.replace(path)  # readers never see half a file
        self.logger.info("wrote provisioning request", file=path.name, requests=len(requests))
        for old in sorted(self.directory.glob("request-*.json"))[: -self.keep or None]:
            old.unlink(missing_ok=True)


Publisher.describe(ProvisioningRequestPublisher)
