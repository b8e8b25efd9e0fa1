"""The application service on the real PostgreSQL event store."""

from __future__ import annotations

import dataclasses
import functools
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest
from eventsourcing.persistence import Tracking

from adapters.driven.eventstore import create_service
from domain.application import Ctx, Expected, Outcome, ReturnsService
from domain.commands import (
    CancelOrder,
    CancelReturn,
    Command,
    FailRefund,
    InspectItems,
    IssueLabel,
    MatchBlindReturn,
    ReceiveParcel,
    RequestReturn,
    RetryRefund,
    SettleRefund,
)
from domain.errors import (
    DomainError,
    InvalidTransition,
    NotFound,
    QuantityExceeded,
    VersionMismatch,
)
from domain.events import InspectedItem, ReceivedItem
from domain.returns import RequestedLine, ReturnStatus
from domain.values import Condition, Disposition, ReasonCode
from tests.integration.builders import ctx, delivered_order, fresh_database, receive_and_inspect
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def count_events(database_url: str, aggregate_id: uuid.UUID) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM oms_events WHERE originator_id = %s", [aggregate_id]
        ).fetchone()
    return int(row[0]) if row else 0


def authorized_return(service: ReturnsService, number: str, quantity: int = 1) -> Outcome:
    return service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=quantity, reason=ReasonCode.SIZE_TOO_SMALL),),
        ),
    )


def test_a_return_is_persisted_and_reloads_identically_in_a_fresh_process(
    service: ReturnsService, database_url: str
) -> None:
    number = delivered_order(service)
    outcome = authorized_return(service, number)
    assert outcome.status == "authorized" and outcome.rma_number

    fresh = create_service(database_url)
    try:
        reloaded = fresh.get_return_by_rma(outcome.rma_number)
        live = service.get_return(outcome.aggregate_id)
        assert reloaded.state == live.state
        assert reloaded.version == live.version == 2  # requested, authorized
        assert reloaded.state.lines[1].sku == "SHOE-RED-42"
        assert fresh.order_view(number)["lines"][0]["returnable_quantity"] == 1
    finally:
        fresh.close()


def test_the_whole_customer_leg_ends_closed_with_the_refund_settled(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    rma = authorized_return(service, number)
    assert rma.rma_number
    inspected = receive_and_inspect(service, rma.rma_number)
    assert inspected.status == "refund_pending" and inspected.amount == eur("50.00")
    assert inspected.refund_id
    settled = service.run(
        ctx(),
        SettleRefund(
            refund_id=inspected.refund_id, provider_reference="psp-1", amount=eur("50.00")
        ),
    )
    assert settled.status == "closed"
    assert service.order_view(number)["refunded_total"] == {"amount": "50.00", "currency": "EUR"}


def test_the_same_idempotency_key_changes_nothing_the_second_time(
    service: ReturnsService, database_url: str
) -> None:
    number = delivered_order(service)
    key = f"portal-{uuid.uuid4()}"
    lines = [RequestedLine(line_no=1, quantity=1, reason=ReasonCode.CHANGED_MIND)]
    first = service.run(ctx(key), RequestReturn(order_number=number, lines=lines))
    second = service.run(ctx(key), RequestReturn(order_number=number, lines=lines))
    assert second == first
    assert count_events(database_url, first.aggregate_id) == 2
    assert service.order_view(number)["lines"][0]["returnable_quantity"] == 1


def test_one_idempotency_key_raced_by_many_threads_has_one_effect(
    service: ReturnsService, database_url: str
) -> None:
    number = delivered_order(service, quantity=8)
    key = f"race-{uuid.uuid4()}"
    lines = [RequestedLine(line_no=1, quantity=1, reason=ReasonCode.CHANGED_MIND)]
    barrier = threading.Barrier(8)

    def attempt() -> Outcome:
        barrier.wait()
        return service.run(ctx(key), RequestReturn(order_number=number, lines=lines))

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: attempt(), range(8)))
    assert len({o.aggregate_id for o in outcomes}) == 1
    assert service.order_view(number)["lines"][0]["returnable_quantity"] == 7
    assert len(service.order_view(number)["returns"]) == 1


def test_concurrent_requests_for_the_last_item_authorize_exactly_one(
    service: ReturnsService,
) -> None:
    number = delivered_order(service, quantity=1)
    barrier = threading.Barrier(6)

    def attempt() -> Outcome | DomainError:
        barrier.wait()
        try:
            return authorized_return(service, number)
        except DomainError as refused:
            return refused

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: attempt(), range(6)))
    authorized = [r for r in results if isinstance(r, Outcome) and r.status == "authorized"]
    refused = [r for r in results if isinstance(r, QuantityExceeded)]
    assert len(authorized) == 1
    assert len(refused) == 5


def test_many_threads_retrying_one_failed_refund_refund_it_once(
    service: ReturnsService,
) -> None:
    number = delivered_order(service, quantity=1, unit_price="80.00", shipping="0.00")
    rma = authorized_return(service, number)
    assert rma.rma_number
    inspected = receive_and_inspect(service, rma.rma_number)
    assert inspected.refund_id
    service.run(ctx(), FailRefund(refund_id=inspected.refund_id, reason="card expired"))
    assert service.order_view(number)["refunded_total"]["amount"] == "0.00"
    barrier = threading.Barrier(8)

    def retry() -> Outcome | DomainError:
        barrier.wait()
        try:
            return service.run(ctx(), RetryRefund(return_id=rma.aggregate_id))
        except DomainError as refused:
            return refused

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: retry(), range(8)))
    succeeded = [r for r in results if isinstance(r, Outcome)]
    assert len(succeeded) == 1
    refused = [r for r in results if not isinstance(r, Outcome)]
    odd = [repr(r) for r in refused if not isinstance(r, InvalidTransition)]
    assert not odd, odd
    view = service.order_view(number)
    assert view["refunded_total"] == {"amount": "80.00", "currency": "EUR"}
    assert view["payments"][0]["refunded"] == view["payments"][0]["amount"]


def expecting(version: int, return_id: uuid.UUID, key: str | None = None) -> Ctx:
    return dataclasses.replace(ctx(key), expected=Expected(return_id, frozenset({version})))


def test_a_command_expecting_a_stale_version_changes_nothing(
    service: ReturnsService, database_url: str
) -> None:
    rma = authorized_return(service, delivered_order(service))
    assert rma.rma_number
    with pytest.raises(VersionMismatch) as refused:
        service.run(expecting(1, rma.aggregate_id), IssueLabel(rma_number=rma.rma_number))
    assert refused.value.current_version == 2
    assert count_events(database_url, rma.aggregate_id) == 2
    labelled = service.run(expecting(2, rma.aggregate_id), IssueLabel(rma_number=rma.rma_number))
    assert labelled.status == "authorized"
    assert count_events(database_url, rma.aggregate_id) == 3


def test_a_replayed_key_returns_its_first_outcome_before_the_version_is_checked(
    service: ReturnsService,
) -> None:
    rma = authorized_return(service, delivered_order(service))
    key = f"label-{uuid.uuid4()}"
    assert rma.rma_number
    first = service.run(expecting(2, rma.aggregate_id, key), IssueLabel(rma_number=rma.rma_number))
    # The same request again: version 2 is stale now, yet the key's first answer comes back.
    again = service.run(expecting(2, rma.aggregate_id, key), IssueLabel(rma_number=rma.rma_number))
    assert again == first
    assert service.get_return(rma.aggregate_id).version == 3


def race(threads: int, command: Callable[[], Outcome]) -> list[Outcome | DomainError]:
    """Run ``command`` in ``threads`` threads released together; refusals are returned."""
    barrier = threading.Barrier(threads)

    def attempt() -> Outcome | DomainError:
        barrier.wait(timeout=10)
        try:
            return command()
        except DomainError as refused:
            return refused

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: attempt(), range(threads)))


def test_two_writers_expecting_the_same_version_cannot_both_change_it(
    service: ReturnsService, database_url: str
) -> None:
    rma = authorized_return(service, delivered_order(service))
    assert rma.rma_number
    number = rma.rma_number
    rounds = 10
    for _ in range(rounds):
        stamp = expecting(service.get_return(rma.aggregate_id).version, rma.aggregate_id)
        results = race(2, functools.partial(service.run, stamp, IssueLabel(rma_number=number)))
        assert sum(isinstance(r, Outcome) for r in results) == 1, results
        assert sum(isinstance(r, VersionMismatch) for r in results) == 1, results
    # Without the check both would relabel: one label per round, none more.
    assert count_events(database_url, rma.aggregate_id) == 2 + rounds


def test_rma_numbers_stay_unique_when_generated_numbers_collide(database_url: str) -> None:
    colliding = create_service(database_url, pool_size=6)
    pool = iter(["RMA-2222-2222"] * 3 + [f"RMA-3333-{c}{c}{c}{c}" for c in "ABCDEFGH"])
    lock = threading.Lock()

    def next_number() -> str:
        with lock:
            return next(pool)

    colliding.new_rma_number = next_number  # type: ignore[method-assign]
    try:
        numbers = [delivered_order(colliding) for _ in range(3)]
        outcomes = [authorized_return(colliding, n) for n in numbers]
        rmas = [o.rma_number for o in outcomes]
        assert rmas[0] == "RMA-2222-2222"
        assert len(set(rmas)) == 3
        for outcome in outcomes:
            assert outcome.rma_number
            assert colliding.get_return_by_rma(outcome.rma_number).id == outcome.aggregate_id
    finally:
        colliding.close()


def test_lookups_find_returns_by_rma_refund_serial_and_order(service: ReturnsService) -> None:
    serial = f"SN-{uuid.uuid4().hex[:8]}"
    number = delivered_order(service, quantity=1, serials=(serial,))
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(
                RequestedLine(line_no=1, quantity=1, reason=ReasonCode.DEFECTIVE, serial=serial),
            ),
        ),
    )
    assert rma.rma_number
    inspected = receive_and_inspect(service, rma.rma_number)
    assert inspected.refund_id
    assert service.lookups.return_id_for_refund(inspected.refund_id) == rma.aggregate_id
    assert service.get_return_by_rma(rma.rma_number.lower()).id == rma.aggregate_id
    sales = service.serial_lookup(serial)
    assert [s["order_number"] for s in sales] == [number]
    assert sales[0]["under_warranty"] is True and sales[0]["value"]["amount"] == "50.00"
    assert service.order_view(number)["returns"] == [str(rma.aggregate_id)]
    with pytest.raises(NotFound):
        service.get_return_by_rma("RMA-ZZZZ-ZZZZ")


def test_a_parcel_without_rma_becomes_an_open_blind_return_until_matched(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    receipt = f"BLIND-{uuid.uuid4().hex[:8]}"
    blind = service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=receipt,
            warehouse_id="WH-1",
            rma_number=None,
            tracking_number="TRK",
            items=(ReceivedItem(sku="SHOE-RED-42", quantity=1),),
        ),
    )
    again = service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=receipt,
            warehouse_id="WH-1",
            rma_number=None,
            tracking_number="TRK",
            items=(ReceivedItem(sku="SHOE-RED-42", quantity=1),),
        ),
    )
    assert again.aggregate_id == blind.aggregate_id
    assert blind.aggregate_id in [r.id for r in service.open_blind_returns(limit=1000)]
    matched = service.run(
        ctx(),
        MatchBlindReturn(
            return_id=blind.aggregate_id,
            order_number=number,
            matched_by="customer",
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.CHANGED_MIND),),
        ),
    )
    assert matched.status == ReturnStatus.RECEIVED.value and matched.rma_number
    assert blind.aggregate_id not in [r.id for r in service.open_blind_returns(limit=1000)]
    inspected = service.run(
        ctx(),
        InspectItems(
            rma_number=matched.rma_number,
            receipt_id=receipt,
            items=(
                InspectedItem(
                    sku="SHOE-RED-42",
                    quantity=1,
                    condition=Condition.NEW,
                    disposition=Disposition.RESTOCK,
                    location_id="WH-1",
                ),
            ),
        ),
    )
    assert inspected.amount == eur("45.00")  # 50.00 less the 10% blind-return restocking fee


def test_a_parcel_for_a_cancelled_rma_opens_a_blind_return_that_is_refunded_once_matched(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.CHANGED_MIND),),
        ),
    )
    assert rma.rma_number is not None
    service.run(ctx(), CancelReturn(return_id=rma.aggregate_id, reason="changed her mind"))
    receipt = f"LATE-{uuid.uuid4().hex[:8]}"

    def parcel_arrives() -> Outcome:
        return service.run(
            ctx(),
            ReceiveParcel(
                receipt_id=receipt,
                warehouse_id="WH-1",
                rma_number=rma.rma_number,
                tracking_number="TRK",
                items=(ReceivedItem(sku="SHOE-RED-42", quantity=1),),
            ),
        )

    blind, again = parcel_arrives(), parcel_arrives()
    assert blind.aggregate_id != rma.aggregate_id
    assert again.aggregate_id == blind.aggregate_id  # a re-sent receipt opens nothing more
    cancelled = service.get_return(rma.aggregate_id)
    assert cancelled.state.status is ReturnStatus.CANCELLED
    assert cancelled.state.unexpected_receipts == [receipt]
    opened = service.get_return(blind.aggregate_id).state
    assert (opened.blind_claimed_rma, opened.blind_order_hint) == (rma.rma_number, number)
    with pytest.raises(DomainError, match="blind return"):
        service.run(
            ctx(),
            InspectItems(rma_number=rma.rma_number, receipt_id=receipt, items=(shoe_inspected(),)),
        )
    # The cancelled RMA released its item, so the parcel fits its order whole: the system
    # matched it at receipt by the RMA it claims (tests/integration/test_blind_returns.py).
    matched = again
    assert (opened.matched_by, matched.rma_number) == ("claimed_rma", opened.rma_number)
    assert matched.rma_number is not None
    inspected = service.run(
        ctx(),
        InspectItems(rma_number=matched.rma_number, receipt_id=receipt, items=(shoe_inspected(),)),
    )
    assert inspected.amount == eur("45.00")  # 50.00 less the 10% blind-return restocking fee


def shoe_inspected() -> InspectedItem:
    return InspectedItem(
        sku="SHOE-RED-42",
        quantity=1,
        condition=Condition.NEW,
        disposition=Disposition.RESTOCK,
        location_id="WH-1",
    )


def test_a_batch_commits_valid_commands_and_returns_refused_ones(
    service: ReturnsService, database_url: str
) -> None:
    number = delivered_order(service, quantity=1)
    good = RequestReturn(
        order_number=number,
        lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_LARGE),),
    )
    too_many = RequestReturn(
        order_number=number,
        lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_LARGE),),
    )
    unknown = CancelOrder(order_number="NO-SUCH-ORDER", reason="x")
    commands: list[tuple[Ctx, Command]] = [
        (ctx(), good),
        (ctx(), too_many),
        (ctx(), unknown),
    ]
    tracking = Tracking(application_name=f"test.topic:{uuid.uuid4().hex[:6]}", notification_id=7)
    results = service.run_batch(commands, trackings=[tracking])
    assert isinstance(results[0], Outcome) and results[0].status == "authorized"
    assert isinstance(results[1], QuantityExceeded)
    assert isinstance(results[2], NotFound)
    assert service.order_view(number)["lines"][0]["returnable_quantity"] == 0

    # The same batch redelivered at the same position changes nothing.
    redelivered = service.run_batch(commands, trackings=[tracking])
    assert len(redelivered) == 3
    assert len(service.order_view(number)["returns"]) == 1
    assert count_events(database_url, results[0].aggregate_id) == 2


def test_an_authorized_rma_never_shipped_expires_and_frees_its_quantity(
    database_url: str,
) -> None:
    # A database of its own: the sweep expires every overdue RMA it finds.
    service = create_service(fresh_database(database_url, "expiry"))
    try:
        number = delivered_order(service)
        rma = authorized_return(service, number)
        shipped = authorized_return(service, number)
        assert shipped.rma_number
        receive_and_inspect(service, shipped.rma_number)
        assert service.order_view(number)["lines"][0]["returnable_quantity"] == 0
        authorized_at = service.get_return(rma.aggregate_id).state.authorized_at
        assert authorized_at is not None
        days = service.policy_book.default.expiry_days

        early = Ctx(ctx().cause, at=authorized_at + timedelta(days=days - 1))
        assert service.expire_returns(early) == []
        late = Ctx(ctx().cause, at=authorized_at + timedelta(days=days, hours=1))
        assert service.expire_returns(late) == [rma.aggregate_id]

        assert service.get_return(rma.aggregate_id).state.status is ReturnStatus.EXPIRED
        assert service.get_return(shipped.aggregate_id).state.status is not ReturnStatus.EXPIRED
        assert service.order_view(number)["lines"][0]["returnable_quantity"] == 1
        assert service.expire_returns(late) == []  # nothing left to expire
    finally:
        service.close()
