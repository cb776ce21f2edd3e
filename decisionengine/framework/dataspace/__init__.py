"""The DataSpace: every data product of every generation, with its header and metadata.

Public API (the HEPCloud Decision Engine's, module by module):

* :mod:`.dataspace` -- ``DataSpace`` and its four exceptions;
* :mod:`.datablock` -- ``DataBlock``, ``Header``, ``Metadata``, ``ProductRetriever``,
  ``zdumps``/``zloads``/``compress``/``decompress``;
* :mod:`.datasource` -- the abstract ``DataSource``;
* :mod:`.datasources.sqlalchemy_ds` -- ``SQLAlchemyDS`` (SQLite and PostgreSQL);
* :mod:`.maintain` -- the ``Reaper``.

This package imports nothing from the rest of the framework.
"""
