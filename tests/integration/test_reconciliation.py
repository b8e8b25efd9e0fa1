"""Reconciliation on the real PostgreSQL: discrepancies projected into their table, the
day's figures per provider from the ledger, and a settlement file imported twice that
records its disagreements once and writes nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg.rows import dict_row

from adapters.driven.eventstore import create_service
from adapters.driven.readmodels.rebuild import rebuild_many
from adapters.driven.readmodels.writer import jsonable
from adapters.driven.reconciliation import (
    cause_for,
    daily_reconciliation,
    import_settlements,
    parse_settlement_file,
)
from adapters.driving.cli import main
from domain.application import ReturnsService
from domain.commands import SettleRefund
from projections import default_projections
from tests.integration.builders import ctx, fresh_database, requested_refund
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def own_database(database_url: str) -> str:
    return fresh_database(database_url, "recon")


@pytest.fixture(scope="module")
def service(own_database: str) -> Iterator[ReturnsService]:
    service = create_service(own_database, pool_size=4)
    try:
        yield service
    finally:
        service.close()


def reader(database_url: str) -> Any:
    def rows(query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with psycopg.connect(database_url, row_factory=dict_row) as conn:
            return [jsonable(r) for r in conn.execute(query, params).fetchall()]  # type: ignore[arg-type]

    return rows


def stored_events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM oms_events").fetchone()
        return int(row[0]) if row else 0


def refund_of(service: ReturnsService, refund_id: str) -> tuple[str, str]:
    """(payment id, amount) of the refund's one allocation."""
    return_id = service.lookups.return_id_for_refund(refund_id)
    assert return_id is not None
    [allocation] = service.get_return(return_id).refund(refund_id).allocations
    assert allocation.payment_id is not None
    return allocation.payment_id, str(allocation.amount.amount)


def test_the_day_reconciles_per_provider_and_a_file_imported_twice_records_once(
    service: ReturnsService, own_database: str
) -> None:
    settled, conflicting, pending, missing = (requested_refund(service) for _ in range(4))
    amounts = {r: refund_of(service, r) for r in (settled, conflicting, pending, missing)}
    for refund_id in (settled, conflicting, missing):
        value = amounts[refund_id][1]
        service.run(ctx(), SettleRefund(refund_id, f"PSP-{refund_id}", eur(value)))
    # The provider claims another amount for a refund already settled: a discrepancy.
    service.run(ctx(), SettleRefund(conflicting, "PSP-AGAIN", eur("100.00")))
    rows = reader(own_database)
    rebuild_many(default_projections(), own_database, "_rec1")
    today = datetime.now(UTC).date()

    [card] = daily_reconciliation(rows, today, "card")["providers"]
    total = sum(float(a) for _, a in amounts.values())
    assert (card["provider"], card["currency"]) == ("card", "EUR")
    assert card["requested"] == {"count": 4, "amount": f"{total:.2f}"}
    assert card["settled"]["count"] == 3
    assert card["outstanding"] == {"count": 1, "amount": amounts[pending][1]}
    assert card["discrepancies"] == {
        "count": 1,
        "claimed": "100.00",
        "expected": amounts[conflicting][1],
    }
    assert daily_reconciliation(rows, today, "paypal")["providers"] == []
    [queued] = rows("SELECT * FROM rm_refund_discrepancies", {})
    assert (queued["refund_id"], queued["kind"], queued["provider"]) == (
        conflicting,
        "amount_mismatch",
        "card",
    )

    now = datetime.now(UTC).isoformat()
    csv = "provider_reference,refund_id,payment_id,amount,currency,settled_at,status\r\n"
    csv += f"PSP-{settled},{settled},{amounts[settled][0]},{amounts[settled][1]},EUR,{now},\r\n"
    csv += f"PSP-F1,{conflicting},{amounts[conflicting][0]},1.00,EUR,{now},settled\r\n"
    csv += f"PSP-F2,{pending},,{amounts[pending][1]},EUR,{now},settled\r\n"
    csv += f"PSP-F3,RF-NOBODY-{uuid.uuid4().hex[:6]},,5.00,EUR,{now},settled\r\n"
    lines = parse_settlement_file(csv)
    before = stored_events(own_database)
    cause = cause_for("tests", "pytest")
    first = import_settlements(service, rows, "card", lines, cause).as_dict()
    assert [line["verdict"] for line in first["lines"]] == [
        "matched",
        "amount_mismatch",
        "pending",
        "unknown_refund",
    ]
    assert [m["refund_id"] for m in first["missing_in_file"]] == [missing]
    assert first["discrepancies_recorded"] == 1
    assert stored_events(own_database) == before + 1, "only the discrepancy is written"

    again = import_settlements(service, rows, "card", lines, cause_for("t", "p")).as_dict()
    assert again["counts"] == first["counts"]
    assert again["discrepancies_recorded"] == 0
    assert stored_events(own_database) == before + 1, "a second import records nothing"

    rebuild_many(default_projections(), own_database, "_rec2")
    kinds = rows("SELECT kind, amount, expected FROM rm_refund_discrepancies ORDER BY at", {})
    assert [(k["kind"], k["amount"]) for k in kinds] == [
        ("amount_mismatch", "100.00"),
        ("amount_mismatch", "1.00"),
    ]


def test_rma_reconcile_prints_the_day_and_imports_a_file_once(
    service: ReturnsService,
    own_database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    refund_id = requested_refund(service)
    payment_id, value = refund_of(service, refund_id)
    service.run(ctx(), SettleRefund(refund_id, f"PSP-{refund_id}", eur(value)))
    rebuild_many(default_projections(), own_database, "_rec3")
    monkeypatch.setenv("OMS_DATABASE_URL", own_database)
    today = datetime.now(UTC).date().isoformat()

    assert main(["reconcile", "--day", today, "--provider", "card"]) == 0
    [card] = orjson.loads(capsys.readouterr().out)["providers"]
    assert card["provider"] == "card" and card["settled"]["count"] >= 1

    file = tmp_path / "card.csv"
    file.write_text(
        "refund_id,amount,currency,settled_at,provider_reference,payment_id\n"
        f"{refund_id},{value},USD,{today},PSP-CLI,{payment_id}\n"
    )
    for recorded in (1, 0):
        assert main(["reconcile", "import", str(file), "--provider", "card"]) == 0
        report = orjson.loads(capsys.readouterr().out)
        assert [line["verdict"] for line in report["lines"]] == ["currency_mismatch"]
        assert report["discrepancies_recorded"] == recorded

    file.write_text("refund_id,amount\nRF-1,1.00\n")
    assert main(["reconcile", "import", str(file), "--provider", "card"]) == 2
    assert "line 1: the header lacks provider_reference, currency" in capsys.readouterr().err
