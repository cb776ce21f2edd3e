"""Transform: a figure of merit per resource, and a plan of what to provision.

The figure of merit is the price of one CPU-hour, made worse as a resource fills up
(``price_per_cpu_hour * (1 + utilization)``, infinite when nothing is free): cheap,
empty resources first.  The plan
covers the idle CPUs greedily from the best figure of merit, within each resource's free
instances and an hourly budget.
"""

import math

import pandas as pd

from decisionengine.framework.modules import Transform
from decisionengine.framework.modules.Transform import Parameter

PLAN_COLUMNS = ["resource", "provider", "instances", "cpus", "hourly_cost"]


@Transform.supports_config(Parameter("max_hourly_budget", default=40.0, comment="dollars per hour the plan may cost"))
@Transform.consumes(demand=pd.DataFrame, resource_catalogue=pd.DataFrame)
@Transform.produces(figure_of_merit=pd.DataFrame, provisioning_plan=pd.DataFrame)
class FigureOfMeritTransform(Transform.Transform):
    def __init__(self, config):
        super().__init__(config)
        self.budget = float(config.get("max_hourly_budget", 40.0))

    def transform(self, data_block):
        demand = self.demand(data_block)
        catalogue = self.resource_catalogue(data_block)
        fom = catalogue[["resource", "provider", "cpus", "price_per_hour"]].copy()
        fom["free_instances"] = (catalogue["max_instances"] - catalogue["running_instances"]).clip(lower=0)
        utilization = catalogue["running_instances"] / catalogue["max_instances"].where(catalogue["max_instances"] > 0)
        fom["price_per_cpu_hour"] = catalogue["price_per_hour"] / catalogue["cpus"]
        fom["figure_of_merit"] = (fom["price_per_cpu_hour"] * (1 + utilization.fillna(1.0))).where(
            fom["free_instances"] > 0, math.inf
        )
        fom = fom.sort_values(["figure_of_merit", "resource"]).reset_index(drop=True)

        needed = int(demand["idle_cpus"].sum())
        budget = self.budget
        plan = []
        for row in fom.itertuples():
            if needed <= 0 or budget <= 0:
                break
            if row.free_instances <= 0:
                continue
            affordable = math.inf if row.price_per_hour == 0 else math.floor(budget / row.price_per_hour)
            instances = int(min(row.free_instances, math.ceil(needed / row.cpus), affordable))
            if instances <= 0:
                continue
            cost = instances * row.price_per_hour
            plan.append([row.resource, row.provider, instances, instances * row.cpus, round(cost, 4)])
            needed -= instances * row.cpus
            budget -= cost
        return {
            "figure_of_merit": fom,
            "provisioning_plan": pd.DataFrame(plan, columns=PLAN_COLUMNS).astype(
                {"instances": int, "cpus": int, "hourly_cost": float}
            ),
        }


Transform.describe(FigureOfMeritTransform)
