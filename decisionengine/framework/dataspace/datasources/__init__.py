"""DataSpace storage backends (data sources), and the registry of them.

A data source is a :class:`~decisionengine.framework.dataspace.datasource.DataSource`
subclass, registered under a short name in the entry point group
``decisionengine.datasources`` (this package registers ``sqlalchemy``).  Registration is
how the contract test suite finds every backend; a global configuration still names a
data source by module and class, as the reference's configurations do.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "decisionengine.datasources"
#: what this package provides, also when it runs from a source tree without installed metadata
BUILTIN = {"sqlalchemy": "decisionengine.framework.dataspace.datasources.sqlalchemy_ds:SQLAlchemyDS"}


def registered_datasources() -> dict[str, type[Any]]:
    """{name: DataSource class} of every registered data source."""
    targets = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        targets[entry.name] = entry.value
    registry: dict[str, type[Any]] = {}
    for name, target in sorted(targets.items()):
        module_name, _, class_name = target.partition(":")
        module = importlib.import_module(module_name)
        registry[name] = getattr(module, class_name)
    return registry
