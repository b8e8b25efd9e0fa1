"""The deadline sweeps on the real event store: RMAs never shipped expire and free their
quantities, offers that ran out lapse, a second round changes nothing, a round held by
another worker is skipped, and two sweepers at once still expire each RMA once.

Each test has a database of its own: a sweep changes every overdue RMA it finds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest

from adapters.driven.eventstore import create_service
from adapters.driven.sweeps import lock_key, run_round, sweep_ctx
from adapters.driving.cli import main
from domain.application import Ctx, ReturnsService
from domain.commands import AcceptKeepItem, OfferKeepItem, ReceiveParcel, RequestReturn
from domain.errors import OfferLapsed
from domain.events import ReceivedItem
from domain.policy import PolicyBook
from domain.returns import RequestedLine, ReturnStatus
from domain.values import ReasonCode
from tests.integration.builders import (
    authorized_return,
    ctx,
    delivered_order,
    fresh_database,
    receive_and_inspect,
)

NOW = datetime.now(UTC)
NO_BLIND: dict[str, list[UUID] | None] = {"close_unidentified_blind_returns": []}


@pytest.fixture
def own_url(database_url: str) -> str:
    return fresh_database(database_url, "expiry")


@pytest.fixture
def sweeping(own_url: str) -> Iterator[ReturnsService]:
    service = create_service(own_url)
    try:
        yield service
    finally:
        service.close()


def authorize(service: ReturnsService, number: str) -> UUID:
    return authorized_return(service, number).aggregate_id


def types_of(service: ReturnsService, return_id: UUID) -> list[str]:
    return [e.type_name for e in service.stored_events(return_id)]


def all_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM oms_events").fetchone()
    return int(row[0]) if row else 0


def test_an_rma_never_shipped_expires_frees_its_quantity_and_a_second_round_changes_nothing(
    sweeping: ReturnsService,
) -> None:
    number = delivered_order(sweeping)
    idle = authorize(sweeping, number)
    shipped = authorize(sweeping, number)
    rma_number = sweeping.get_return(shipped).state.rma_number
    assert rma_number is not None
    receive_and_inspect(sweeping, rma_number)
    assert sweeping.order_view(number)["lines"][0]["returnable_quantity"] == 0

    assert run_round(sweeping, at=NOW + timedelta(days=29)).total == 0
    report = run_round(sweeping, at=NOW + timedelta(days=31))
    assert report.changed == {"expire_returns": [idle], "lapse_keep_item_offers": [], **NO_BLIND}
    assert sweeping.get_return(idle).state.status is ReturnStatus.EXPIRED
    assert sweeping.get_return(shipped).state.status is not ReturnStatus.EXPIRED
    assert sweeping.order_view(number)["lines"][0]["returnable_quantity"] == 1

    events = len(sweeping.stored_events(idle))
    again = run_round(sweeping, at=NOW + timedelta(days=32))
    assert again.changed == {"expire_returns": [], "lapse_keep_item_offers": [], **NO_BLIND}
    assert len(sweeping.stored_events(idle)) == events
    assert types_of(sweeping, idle).count("rma.expired") == 1


def test_an_offer_that_ran_out_lapses_once_cannot_be_accepted_and_restarts_the_clock(
    sweeping: ReturnsService,
) -> None:
    number = delivered_order(sweeping, unit_price="10.00")  # cheap enough to keep
    rma = authorize(sweeping, number)
    sweeping.run(ctx(), OfferKeepItem(rma, valid_days=7))

    assert run_round(sweeping, at=NOW + timedelta(days=6)).total == 0
    lapse_at = NOW + timedelta(days=8)
    report = run_round(sweeping, at=lapse_at)
    assert report.changed == {"expire_returns": [], "lapse_keep_item_offers": [rma], **NO_BLIND}
    assert sweeping.get_return(rma).state.status is ReturnStatus.AUTHORIZED
    with pytest.raises(OfferLapsed):
        sweeping.run(ctx(), AcceptKeepItem(rma))
    assert run_round(sweeping, at=lapse_at + timedelta(hours=1)).total == 0
    assert types_of(sweeping, rma).count("rma.keep_item_lapsed") == 1

    # 30 days from the lapse, not from the authorization, to ship the item back.
    assert run_round(sweeping, at=NOW + timedelta(days=31)).total == 0
    late = run_round(sweeping, at=lapse_at + timedelta(days=30, hours=1))
    assert late.changed["expire_returns"] == [rma]
    assert sweeping.order_view(number)["lines"][0]["returnable_quantity"] == 2


def test_a_dry_run_lists_what_would_expire_or_lapse_and_writes_nothing(
    sweeping: ReturnsService, own_url: str
) -> None:
    idle = authorize(sweeping, delivered_order(sweeping))
    kept = authorize(sweeping, delivered_order(sweeping, unit_price="10.00"))
    sweeping.run(ctx(), OfferKeepItem(kept, valid_days=7))
    before = all_events(own_url)
    later = NOW + timedelta(days=31)

    [expiring] = sweeping.due_to_expire(later, 100)
    [lapsing] = sweeping.due_to_lapse(later, 100)
    assert (expiring.return_id, expiring.rma_number) == (
        idle,
        sweeping.get_return(idle).state.rma_number,
    )
    assert expiring.since == sweeping.get_return(idle).state.authorized_at
    assert lapsing.return_id == kept
    assert lapsing.since == sweeping.get_return(kept).state.keep_item_expires_at
    assert all_events(own_url) == before


def test_a_sweep_another_worker_holds_is_skipped_this_round(
    sweeping: ReturnsService, own_url: str
) -> None:
    idle = authorize(sweeping, delivered_order(sweeping))
    later = NOW + timedelta(days=31)
    with psycopg.connect(own_url, autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s)", [lock_key("expire_returns")])
        report = run_round(sweeping, at=later)
        assert report.changed == {"expire_returns": None, "lapse_keep_item_offers": [], **NO_BLIND}
        assert sweeping.get_return(idle).state.status is ReturnStatus.AUTHORIZED
        # Let go (a closed connection frees it too, but the server notices that later).
        other_worker.execute("SELECT pg_advisory_unlock(%s)", [lock_key("expire_returns")])
    # The lock is free: the next round does the work.
    assert run_round(sweeping, at=later).changed["expire_returns"] == [idle]


def test_rmas_with_a_longer_period_do_not_hold_back_those_that_are_due(own_url: str) -> None:
    slow = PolicyBook(by_category={"furniture": {"expiry_days": 60}})
    service = create_service(own_url, policy_book=slow)
    try:
        # Authorized first, so the lookup (by the shortest period) finds them first.
        for _ in range(3):
            authorize(service, delivered_order(service, category="furniture"))
        due = authorize(service, delivered_order(service))
        found = service.due_to_expire(NOW + timedelta(days=31), limit=2)
        assert [d.return_id for d in found] == [due]
        assert service.expire_returns(sweep_ctx("tests", NOW + timedelta(days=31)), limit=2) == [
            due
        ]
    finally:
        service.close()


def test_two_sweepers_at_once_expire_each_rma_once(own_url: str) -> None:
    first, second = create_service(own_url), create_service(own_url)
    try:
        rmas = [authorize(first, delivered_order(first)) for _ in range(6)]
        later = NOW + timedelta(days=31)
        start = threading.Barrier(2)

        def sweep(service: ReturnsService) -> None:
            start.wait()
            # Straight to the commands, past the round's lock: the no-op expiry and the
            # version check alone must keep each RMA to one expiry.
            service.expire_returns(sweep_ctx("tests", later), limit=3)
            service.expire_returns(sweep_ctx("tests", later), limit=3)

        threads = [threading.Thread(target=sweep, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for rma in rmas:
            assert types_of(first, rma).count("rma.expired") == 1
            assert first.get_return(rma).state.status is ReturnStatus.EXPIRED
    finally:
        first.close()
        second.close()


def authorized_days_ago(service: ReturnsService, days: int, **order: str) -> UUID:
    """An RMA requested ``days`` ago (its order is dated today: a negative age is inside
    the window, and the expiry clock is what matters here)."""
    number = delivered_order(service, **order)
    outcome = service.run(
        Ctx(ctx().cause, at=NOW - timedelta(days=days)),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
        ),
    )
    assert outcome.status == "authorized"
    return outcome.aggregate_id


def test_rma_expire_lists_on_a_dry_run_then_does_it_once(
    sweeping: ReturnsService,
    own_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    overdue = authorized_days_ago(sweeping, 40)
    fresh = authorized_days_ago(sweeping, 5)
    kept = authorized_days_ago(sweeping, 10, unit_price="10.00")
    sweeping.run(Ctx(ctx().cause, at=NOW - timedelta(days=10)), OfferKeepItem(kept, valid_days=7))
    numbers = {rma: sweeping.get_return(rma).state.rma_number for rma in (overdue, fresh, kept)}
    monkeypatch.setenv("OMS_DATABASE_URL", own_url)
    before = all_events(own_url)

    assert main(["expire", "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "action\trma_number\tsince\tdue_at"
    rows = {tuple(line.split("\t")[:2]) for line in listed[1:]}
    assert rows == {("expire", numbers[overdue]), ("lapse", numbers[kept])}
    assert all_events(own_url) == before

    assert main(["expire"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "expire_returns: 1 RMAs changed",
        "lapse_keep_item_offers: 1 RMAs changed",
        "close_unidentified_blind_returns: 0 RMAs changed",
    ]
    assert sweeping.get_return(overdue).state.status is ReturnStatus.EXPIRED
    assert sweeping.get_return(fresh).state.status is ReturnStatus.AUTHORIZED
    assert sweeping.get_return(kept).state.status is ReturnStatus.AUTHORIZED
    assert main(["expire"]) == 0
    assert "expire_returns: 0 RMAs changed" in capsys.readouterr().out


def test_rmas_authorized_before_the_deadlines_table_existed_are_found(
    sweeping: ReturnsService, own_url: str
) -> None:
    overdue = authorized_days_ago(sweeping, 40)
    with psycopg.connect(own_url, autocommit=True) as conn:
        conn.execute("DELETE FROM oms_return_deadlines")
    assert sweeping.due_to_expire(NOW, 10) == []
    upgraded = create_service(own_url)  # its start creates what is missing, rows included
    try:
        assert [d.return_id for d in upgraded.due_to_expire(NOW, 10)] == [overdue]
    finally:
        upgraded.close()


def test_a_blind_parcel_nobody_placed_is_closed_unidentified_by_the_scheduler_once(
    sweeping: ReturnsService,
) -> None:
    days = PolicyBook().default.blind_unidentified_days
    outcome = sweeping.run(
        Ctx(ctx().cause, NOW),
        ReceiveParcel(
            receipt_id="R-NOBODY",
            warehouse_id="WH-1",
            rma_number=None,
            tracking_number=None,
            items=(ReceivedItem(sku="NOBODY-SELLS-THIS", quantity=1),),
        ),
    )
    assert outcome.status == ReturnStatus.BLIND_UNMATCHED.value
    blind = outcome.aggregate_id

    assert run_round(sweeping, at=NOW + timedelta(days=days - 1)).total == 0
    report = run_round(sweeping, at=NOW + timedelta(days=days + 1))
    assert report.changed["close_unidentified_blind_returns"] == [blind]
    assert sweeping.get_return(blind).state.status is ReturnStatus.CLOSED
    assert run_round(sweeping, at=NOW + timedelta(days=days + 2)).total == 0
    assert types_of(sweeping, blind).count("rma.blind_return_closed_unidentified") == 1
