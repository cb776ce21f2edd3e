"""Transform: what the idle jobs of each group (VO) ask for."""

import pandas as pd

from decisionengine.framework.modules import Transform


@Transform.consumes(job_queue=pd.DataFrame)
@Transform.produces(demand=pd.DataFrame)
class DemandTransform(Transform.Transform):
    def transform(self, data_block):
        queue = self.job_queue(data_block)
        idle = queue[queue["status"] == "Idle"]
        running = queue[queue["status"] == "Running"]
        groups = sorted(set(queue["vo"]))
        demand = pd.DataFrame(
            {
                "vo": groups,
                "idle_jobs": [int((idle["vo"] == vo).sum()) for vo in groups],
                "idle_cpus": [int(idle.loc[idle["vo"] == vo, "request_cpus"].sum()) for vo in groups],
                "idle_memory_gb": [float(idle.loc[idle["vo"] == vo, "request_memory_gb"].sum()) for vo in groups],
                "running_jobs": [int((running["vo"] == vo).sum()) for vo in groups],
                "oldest_idle_seconds": [
                    int(idle.loc[idle["vo"] == vo, "queued_seconds"].max()) if (idle["vo"] == vo).any() else 0
                    for vo in groups
                ],
            }
        )
        return {"demand": demand}


Transform.describe(DemandTransform)
