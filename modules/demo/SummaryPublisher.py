"""Publisher: one CSV line per generation: demand, plan, cost and whether we provisioned."""

import csv
import time

import pandas as pd

from decisionengine.framework.modules import Publisher
from decisionengine.framework.modules.Publisher import Parameter
from decisionengine.modules.demo.files import output_dir

HEADER = [
    "time",
    "generation",
    "idle_jobs",
    "idle_cpus",
    "planned_instances",
    "planned_cpus",
    "hourly_cost",
    "provisioning",
]


@Publisher.supports_config(
    Parameter("output_dir", default="demo-output", comment="relative paths are under $DE_STATE_DIR"),
)
@Publisher.consumes(demand=pd.DataFrame, provisioning_plan=pd.DataFrame, de_logicengine_facts=pd.DataFrame)
class SummaryPublisher(Publisher.Publisher):
    def __init__(self, config):
        super().__init__(config)
        self.path = output_dir(config.get("output_dir") or "demo-output") / "summary.csv"

    def publish(self, data_block):
        demand = self.demand(data_block)
        plan = self.provisioning_plan(data_block)
        facts = self.de_logicengine_facts(data_block)
        provisioning = bool(facts.loc[facts["fact_name"] == "provisioning", "fact_value"].any())
        new_file = not self.path.exists()
        with self.path.open("a", newline="") as out:
            writer = csv.writer(out)
            if new_file:
                writer.writerow(HEADER)
            writer.writerow(
                [
                    time.strftime("%Y-%m-%dT%H:%M:%S"),
                    getattr(data_block, "generation_id", ""),
                    int(demand["idle_jobs"].sum()),
                    int(demand["idle_cpus"].sum()),
                    int(plan["instances"].sum()),
                    int(plan["cpus"].sum()),
                    round(float(plan["hourly_cost"].sum()), 4),
                    provisioning,
                ]
            )


Publisher.describe(SummaryPublisher)
