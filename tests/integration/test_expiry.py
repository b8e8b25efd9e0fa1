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
from domain.application import ReturnsService
from domain.commands import AcceptKeepItem, OfferKeepItem, RequestReturn
from domain.errors import OfferLapsed
from domain.policy import PolicyBook
from domain.returns import RequestedLine, ReturnStatus
from domain.values import ReasonCode
from tests.integration.builders import ctx, delivered_order, fresh_database, receive_and_inspect

NOW = datetime.now(UTC)


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
    outcome = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
        ),
    )
    assert outcome.status == "authorized"
    return outcome.aggregate_id


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
    assert report.changed == {"expire_returns": [idle], "lapse_keep_item_offers": []}
    assert sweeping.get_return(idle).state.status is ReturnStatus.EXPIRED
    assert sweeping.get_return(shipped).state.status is not ReturnStatus.EXPIRED
    assert sweeping.order_view(number)["lines"][0]["returnable_quantity"] == 1

    events = len(sweeping.stored_events(idle))
    again = run_round(sweeping, at=NOW + timedelta(days=32))
    assert again.changed == {"expire_returns": [], "lapse_keep_item_offers": []}
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
    assert report.changed == {"expire_returns": [], "lapse_keep_item_offers": [rma]}
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
        assert report.changed == {"expire_returns": None, "lapse_keep_item_offers": []}
        assert sweeping.get_return(idle).state.status is ReturnStatus.AUTHORIZED
    # Its connection closed: the lock is free and the next round does the work.
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
