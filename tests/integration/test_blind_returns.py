"""Blind returns on the real event store: placed at receipt by the system, inspected before
their match, linked, closed as unidentified, and the lookups that suggest where they go."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from adapters.driven.eventstore import create_service
from domain.application import Ctx, Outcome, ReturnsService
from domain.commands import (
    CancelReturn,
    InspectBlindReturn,
    InspectItems,
    LinkBlindReturn,
    MatchBlindReturn,
    ReceiveParcel,
)
from domain.errors import DomainError, InvalidTransition, NotFound
from domain.events import (
    BlindReturnMatched,
    InspectedItem,
    OrderReturnReserved,
    ReceivedItem,
    RefundRequested,
)
from domain.handlers.blind_returns import SYSTEM_ACTOR
from domain.order import order_id_for
from domain.returns import RequestedLine, ReturnStatus
from domain.values import Condition, Disposition, ReasonCode
from streams.inbound import process_batch
from tests.integration import builders as m
from tests.integration.builders import (
    authorized_return,
    ctx,
    delivered_order,
    fresh_database,
    receive_and_inspect,
)
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SKU = "SHOE-RED-42"  # what delivered_order sells


def parcel(
    service: ReturnsService,
    *items: ReceivedItem,
    order_number: str | None = None,
    rma_number: str | None = None,
    receipt: str | None = None,
    at: datetime | None = None,
) -> Outcome:
    return service.run(
        Ctx(ctx().cause, at=at),
        ReceiveParcel(
            receipt_id=receipt or f"BL-{uuid.uuid4().hex[:10]}",
            warehouse_id="WH-1",
            rma_number=rma_number,
            tracking_number="TRK",
            items=items or (ReceivedItem(sku=SKU, quantity=1),),
            order_number=order_number,
        ),
    )


def shoe(condition: Condition = Condition.NEW) -> InspectedItem:
    return InspectedItem(
        sku=SKU,
        quantity=1,
        condition=condition,
        disposition=Disposition.RESTOCK,
        location_id="WH-1",
    )


def matched_event(service: ReturnsService, outcome: Outcome) -> BlindReturnMatched:
    return next(
        e for e in service.stored_events(outcome.aggregate_id) if isinstance(e, BlindReturnMatched)
    )


def refunds_of(service: ReturnsService, outcome: Outcome) -> list[RefundRequested]:
    return [
        e for e in service.stored_events(outcome.aggregate_id) if isinstance(e, RefundRequested)
    ]


# ---------------------------------------------------------------- matched at receipt
def test_a_parcel_with_a_sold_serial_is_matched_at_receipt_by_the_system(
    service: ReturnsService,
) -> None:
    serial = f"SN-{uuid.uuid4().hex[:8]}"
    number = delivered_order(service, serials=(serial, f"{serial}-B"))
    receipt = f"BL-{uuid.uuid4().hex[:10]}"
    outcome = parcel(service, ReceivedItem(sku=SKU, quantity=1, serial=serial), receipt=receipt)
    again = parcel(service, ReceivedItem(sku=SKU, quantity=1, serial=serial), receipt=receipt)
    assert (outcome.status, again.aggregate_id) == (
        ReturnStatus.RECEIVED.value,
        outcome.aggregate_id,
    )
    matched = matched_event(service, outcome)
    assert (matched.matched_by, matched.order_number, matched.cause.actor) == (
        "serial",
        number,
        SYSTEM_ACTOR,
    )
    assert matched.lines[0].serial == serial
    assert matched.restocking_fee == eur("5.00")  # the blind-return fee: 10% of 50.00
    reserved = [
        e for e in service.stored_events(order_id_for(number)) if isinstance(e, OrderReturnReserved)
    ]
    assert [r.quantities for r in reserved] == [{1: 1}]  # once, the re-sent receipt changed nothing
    assert outcome.rma_number is not None
    inspected = service.run(
        ctx(), InspectItems(rma_number=outcome.rma_number, receipt_id=receipt, items=(shoe(),))
    )
    assert inspected.amount == eur("45.00")


def test_a_parcel_naming_its_order_is_matched_when_its_items_fit(service: ReturnsService) -> None:
    number = delivered_order(service, quantity=2)
    fits = parcel(service, ReceivedItem(sku=SKU, quantity=2), order_number=number)
    assert matched_event(service, fits).matched_by == "order"
    too_many = parcel(service, ReceivedItem(sku=SKU, quantity=1), order_number=number)
    assert too_many.status == ReturnStatus.BLIND_UNMATCHED.value  # both already come back


def test_a_parcel_claiming_a_cancelled_rma_is_matched_to_its_order(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    rma = authorized_return(service, number)
    service.run(ctx(), CancelReturn(return_id=rma.aggregate_id, reason="changed her mind"))
    blind = parcel(service, rma_number=rma.rma_number)
    assert blind.aggregate_id != rma.aggregate_id
    matched = matched_event(service, blind)
    assert (matched.matched_by, matched.order_number) == ("claimed_rma", number)
    assert matched.lines[0].reason is ReasonCode.SIZE_TOO_SMALL  # what the customer said


def test_a_parcel_two_orders_could_take_waits_with_both_suggested(
    service: ReturnsService,
) -> None:
    serial = f"SN-{uuid.uuid4().hex[:8]}"
    by_serial = delivered_order(service, serials=(serial, f"{serial}-B"))
    named = delivered_order(service)
    waiting = parcel(service, ReceivedItem(sku=SKU, quantity=1, serial=serial), order_number=named)
    assert waiting.status == ReturnStatus.BLIND_UNMATCHED.value
    suggested = service.blind_suggestions(service.get_return(waiting.aggregate_id))
    assert [(s["order_number"], s["by"]) for s in suggested[:2]] == [
        (by_serial, "serial"),
        (named, "order_hint"),
    ]
    assert suggested[0]["whole"] and suggested[0]["line_no"] == 1
    assert len({s["order_number"] for s in suggested}) <= 5


def test_a_parcel_with_nothing_to_go_on_suggests_recent_delivered_orders_of_its_sku(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    waiting = parcel(service)
    assert waiting.status == ReturnStatus.BLIND_UNMATCHED.value
    suggested = service.blind_suggestions(service.get_return(waiting.aggregate_id))
    assert (number, "sku") in [(s["order_number"], s["by"]) for s in suggested]
    customer = f"cust-{number}"
    assert service.lookups.orders_with_sku(SKU, 5)[0] == order_id_for(number)
    assert service.lookups.orders_of_customer(customer, 5) == [order_id_for(number)]


# ---------------------------------------------------------------- inspect before the match
def test_inspected_before_its_match_it_is_refunded_once_when_matched(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    receipt = f"BL-{uuid.uuid4().hex[:10]}"
    blind = parcel(service, receipt=receipt)
    inspect = InspectBlindReturn(receipt_id=receipt, items=(shoe(),))
    first = service.run(ctx(key=f"insp-{receipt}"), inspect)
    again = service.run(ctx(key=f"insp-{receipt}"), inspect)  # the message redelivered
    assert first == again
    assert first.status == ReturnStatus.BLIND_UNMATCHED.value
    with pytest.raises(InvalidTransition, match="already inspected"):
        service.run(ctx(), inspect)  # another report of the same receipt
    matched = service.run(
        ctx(),
        MatchBlindReturn(
            return_id=blind.aggregate_id,
            order_number=number,
            matched_by="customer",
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.CHANGED_MIND),),
        ),
    )
    assert (matched.status, matched.amount) == (ReturnStatus.REFUND_PENDING.value, eur("45.00"))
    assert [r.amount for r in refunds_of(service, blind)] == [eur("45.00")]
    with pytest.raises(DomainError):
        service.run(ctx(), inspect)
    assert len(refunds_of(service, blind)) == 1


def test_an_inspection_of_an_unknown_receipt_is_not_found(service: ReturnsService) -> None:
    with pytest.raises(NotFound, match=r"receipt .* is unknown"):
        service.run(ctx(), InspectBlindReturn(receipt_id=f"NOPE-{uuid.uuid4()}", items=(shoe(),)))


# ---------------------------------------------------------------- link
def test_a_blind_parcel_linked_to_the_rma_that_reported_it_pays_nothing(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    rma = authorized_return(service, number, reason=ReasonCode.CHANGED_MIND)
    assert rma.rma_number is not None
    receive_and_inspect(service, rma.rma_number)
    receipt = f"BL-{uuid.uuid4().hex[:10]}"
    blind = parcel(service, receipt=receipt)
    service.run(ctx(), InspectBlindReturn(receipt_id=receipt, items=(shoe(),)))
    linked = service.run(
        ctx(), LinkBlindReturn(return_id=blind.aggregate_id, linked=rma.rma_number.lower())
    )
    assert linked.status == ReturnStatus.CLOSED.value
    state = service.get_return(blind.aggregate_id).state
    assert (state.closed_outcome, state.linked_return_id) == ("linked", rma.aggregate_id)
    assert refunds_of(service, blind) == []
    assert blind.aggregate_id not in [r.id for r in service.open_blind_returns(limit=10_000)]
    with pytest.raises(InvalidTransition):
        service.run(
            ctx(), LinkBlindReturn(return_id=blind.aggregate_id, linked=str(rma.aggregate_id))
        )


# ---------------------------------------------------------------- close unidentified
@pytest.fixture
def own_service(database_url: str) -> Iterator[ReturnsService]:
    """A database of its own: the sweep closes every open blind parcel it finds."""
    service = create_service(fresh_database(database_url, "blind"), pool_size=2)
    try:
        yield service
    finally:
        service.close()


def test_the_sweep_closes_blind_parcels_nobody_placed_in_time(own_service: ReturnsService) -> None:
    service = own_service
    now = service.clock()
    days = service.policy_book.default.blind_unidentified_days
    old = parcel(service, at=now - timedelta(days=days + 1))
    young = parcel(service, at=now - timedelta(days=days - 1))
    when = Ctx(ctx().cause, at=now)
    assert service.close_unidentified_blind_returns(when, dry_run=True) == [old.aggregate_id]
    assert service.get_return(old.aggregate_id).state.status is ReturnStatus.BLIND_UNMATCHED
    assert service.close_unidentified_blind_returns(when) == [old.aggregate_id]
    assert service.close_unidentified_blind_returns(when) == []  # once
    closed = service.get_return(old.aggregate_id).state
    assert (closed.status, closed.closed_outcome) == (ReturnStatus.CLOSED, "unidentified")
    assert [r.id for r in service.open_blind_returns()] == [young.aggregate_id]


# ---------------------------------------------------------------- through the inbound contract
def test_items_inspected_without_an_rma_number_inspects_the_receipts_blind_return(
    service: ReturnsService,
) -> None:
    receipt = f"BL-{uuid.uuid4().hex[:10]}"
    blind = parcel(service, ReceivedItem(sku="TEE-BLUE-M", quantity=1), receipt=receipt)
    data = {
        "receipt_id": receipt,
        "warehouse_id": "WH-1",
        "items": [
            {"sku": "TEE-BLUE-M", "quantity": 1, "condition": "new", "disposition": "quarantine"}
        ],
    }
    known = m.cloud_event("items.inspected", data, source="wms/WH-1")
    unknown = m.cloud_event(
        "items.inspected", {**data, "receipt_id": f"NOPE-{receipt}"}, source="wms/WH-1"
    )
    results = process_batch(service, "wms.receipts.v1", [known, known, unknown])
    assert [r.code if r else None for r in results] == [None, None, "not_found"]
    assert results[2] is not None and "no blind return was opened by it" in results[2].reason
    state = service.get_return(blind.aggregate_id).state
    assert state.status is ReturnStatus.BLIND_UNMATCHED
    assert [(i.disposition, i.location_id) for i in state.inspected_items] == [
        (Disposition.QUARANTINE, "WH-1")
    ]
