"""A process frozen while it holds a channel's ownership row (SIGSTOP, a frozen VM) must not
block the next owner for ever: PostgreSQL ends its session after HUNG_TRANSACTION_MS idle
inside the transaction, and the claim goes through."""

from __future__ import annotations

import contextlib
import time

import pytest
import sqlalchemy as sa

from decisionengine.framework.dataspace.datasource import Fence
from decisionengine.framework.dataspace.datasources.sqlalchemy_ds import HUNG_TRANSACTION_MS, SQLAlchemyDS

pytestmark = pytest.mark.postgresql


def open_source(url: str):
    source = SQLAlchemyDS({"url": url})
    source.create_tables()
    return source


def test_a_process_frozen_in_a_fenced_write_loses_the_ownership_row(pg_url):
    frozen, taker = open_source(pg_url), open_source(pg_url)
    try:
        epoch = frozen.claim_channel("ch", "host-a:1", None)
        connection = frozen.engine.connect()
        transaction = connection.begin()
        # what the frozen process did last: its write's fence check, which locks the row
        frozen._check_fence(connection, Fence("ch", epoch))
        # ... and then it says nothing more (its transaction stays open)
        started = time.monotonic()
        claimed = taker.claim_channel("ch", "host-b:2", None)
        took = time.monotonic() - started
        assert claimed == epoch + 1
        limit = HUNG_TRANSACTION_MS / 1000
        assert limit * 0.8 <= took < limit + 5, f"claimed after {took:.1f} s (the holder's limit: {limit:g} s)"
        with pytest.raises(sa.exc.DBAPIError):  # its session is gone: nothing more it writes counts
            connection.execute(sa.text("SELECT 1"))
        with contextlib.suppress(Exception):  # its session is gone: let the pool forget it
            transaction.rollback()
        connection.close()
    finally:
        frozen.close()
        taker.close()
