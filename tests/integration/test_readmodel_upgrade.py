"""A read-model table an older release created gains the columns a newer one added, in
place: the projector goes on after an upgrade instead of failing every batch on them."""

from __future__ import annotations

import psycopg
import pytest

from adapters.driven.readmodels.store import ReadModelStore
from projections.schema import STOCK_LEVELS
from projections.stock import StockLevels
from tests.integration.builders import fresh_database

pytestmark = pytest.mark.timeout(120)


def test_an_older_stock_table_gains_the_reserved_and_available_to_promise_columns(
    database_url: str,
) -> None:
    url = fresh_database(database_url, "upgrade")
    with psycopg.connect(url, autocommit=True) as conn:
        # The table as the release before reservations created it.
        for statement in STOCK_LEVELS.ddl():
            conn.execute(statement.encode())
        conn.execute('ALTER TABLE rm_stock_levels DROP COLUMN "available_to_promise"')
        conn.execute('ALTER TABLE rm_stock_levels DROP COLUMN "reserved"')
        conn.execute(
            "INSERT INTO rm_stock_levels (sku, location_id, available) VALUES ('SKU-1', 'WH-1', 7)"
        )
    store = ReadModelStore(url, [StockLevels()])
    try:
        store.ensure(StockLevels())
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT available, reserved, available_to_promise FROM rm_stock_levels"
            " WHERE sku = 'SKU-1'"
        ).fetchone()
    assert row == (7, 0, 7)
