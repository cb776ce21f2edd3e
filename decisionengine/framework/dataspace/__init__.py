"""The DataSpace: every data product of every generation, with its header and metadata.

Public API (the HEPCloud Decision Engine's, module by module):

* :mod:`.dataspace` -- ``DataSpace`` and its four exceptions;
* :mod:`.datablock` -- ``DataBlock``, ``Header``, ``Metadata``, ``ProductRetriever``,
  ``zdumps``/``zloads``/``compress``/``decompress``;
* :mod:`.datasource` -- the abstract ``DataSource``;
* :mod:`.datasources.sqlalchemy_ds` -- ``SQLAlchemyDS`` (SQLite and PostgreSQL);
* :mod:`.maintain` -- the ``Reaper``.

Payloads are read as data, never code: :mod:`.unpickling` unpickles every payload through
the allow-list of :mod:`.allowlist` (plus ``dataspace.trusted_modules``), with the checks of
:mod:`.checked_globals`; a refusal is an ``UntrustedPayloadError`` (also exported by
:mod:`.dataspace`, beside the reference's exceptions).

This package imports nothing from the rest of the framework but its small helpers
(``decisionengine.framework.util``: the loggers).
"""
