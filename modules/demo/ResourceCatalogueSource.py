"""Source: the resources we could provision, with their price and capacity."""

import pandas as pd

from decisionengine.framework.modules import Source
from decisionengine.framework.modules.Source import Parameter
from decisionengine.modules.demo.files import DATA_DIR, read_snapshot

COLUMNS = [
    "resource",
    "provider",
    "region",
    "cpus",
    "memory_gb",
    "price_per_hour",
    "max_instances",
    "running_instances",
]


@Source.supports_config(
    Parameter("snapshot_dir", default=str(DATA_DIR / "catalogue"), comment="directory of catalogue CSV snapshots"),
    Parameter("period", default=180.0, comment="seconds each snapshot (price list) stays current"),
)
@Source.produces(resource_catalogue=pd.DataFrame)
class ResourceCatalogueSource(Source.Source):
    def __init__(self, config):
        super().__init__(config)
        self.snapshot_dir = config.get("snapshot_dir") or str(DATA_DIR / "catalogue")
        self.period = float(config.get("period") or 180.0)

    def acquire(self):
        _, catalogue = read_snapshot(self.snapshot_dir, self.period, COLUMNS)
        return {"resource_catalogue": catalogue}


Source.describe(ResourceCatalogueSource, sample_config={"period": 180.0})
