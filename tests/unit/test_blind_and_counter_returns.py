"""Blind returns (a parcel with no RMA) and returns recorded at a store counter.

Given a return's history, when a command, then events or an error. The order of most
tests is ``shop_order`` (tests/unit/builders.py).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from domain.errors import InvalidCommand, InvalidTransition, PolicyViolation
from domain.events import BlindReturnDetected, BlindReturnMatched, InStoreReturnRecorded
from domain.order import Order
from domain.returns import Return, ReturnStatus, blind_return_id_for, store_return_id_for
from domain.values import Channel, ReasonCode, ReturnChannel, ReturnMethod
from tests.unit.builders import (
    CAUSE,
    ORDER_ID,
    RMA,
    WAREHOUSE,
    OrderHistory,
    blind_parcel,
    day,
    eur,
    given,
    inspect,
    last,
    line,
    match,
    received,
    record_in_store,
    shop_order,
    store_sale,
    types,
    wants,
)


# ---------------------------------------------------------------- blind returns
def test_a_parcel_without_an_rma_is_detected_as_a_blind_return() -> None:
    rma = blind_parcel("RCPT-B1", received("SKU-1", serial="SN-1"))
    assert rma.id == blind_return_id_for("RCPT-B1")
    assert rma.pending_events == [
        BlindReturnDetected(
            originator_id=rma.id,
            originator_version=1,
            timestamp=day(12),
            cause=CAUSE,
            receipt_id="RCPT-B1",
            warehouse_id=WAREHOUSE,
            tracking_number="TRK-9",
            claimed_rma_number=None,
            order_number_hint="WEB-1001",
            items=(received("SKU-1", serial="SN-1"),),
        )
    ]
    assert (rma.state.status, rma.state.channel) == (
        ReturnStatus.BLIND_UNMATCHED,
        ReturnChannel.BLIND,
    )


def test_an_empty_blind_parcel_is_refused() -> None:
    with pytest.raises(InvalidCommand, match=r"lists no items"):
        Return.detect_blind(
            receipt_id="RCPT-B1",
            warehouse_id=WAREHOUSE,
            tracking_number=None,
            claimed_rma_number=None,
            order_number_hint=None,
            items=(),
            at=day(12),
            cause=CAUSE,
        )


def test_a_blind_return_matched_to_its_order_bears_the_restocking_fee() -> None:
    order = shop_order()
    rma = given(blind_parcel())
    match(rma, order, wants(1, serial="SN-1"))
    event = last(rma)
    assert isinstance(event, BlindReturnMatched)
    assert (event.order_id, event.rma_number, event.matched_by) == (ORDER_ID, RMA, "serial")
    assert event.restocking_fee == eur("4.00")
    assert rma.state.status is ReturnStatus.RECEIVED
    assert rma.state.shipping_refund == eur("0.00")
    inspect(rma, receipt_id="RCPT-B1")
    assert last(rma).refund_due == eur("36.00")


def test_a_defective_blind_return_bears_no_fee() -> None:
    rma = given(blind_parcel())
    match(rma, shop_order(), wants(1, reason=ReasonCode.DEFECTIVE))
    assert last(rma).restocking_fee == eur("0.00")


def test_the_items_of_a_blind_return_past_its_window_earn_nothing() -> None:
    rma = given(blind_parcel())
    match(rma, shop_order(), wants(1), at=day(90))
    assert [d.code for d in last(rma).decisions] == ["outside_return_window"]
    inspect(rma, receipt_id="RCPT-B1", at=day(91))
    assert last(rma).refund_due == eur("0.00")


def test_a_blind_return_is_matched_only_once() -> None:
    order = shop_order()
    rma = given(blind_parcel())
    match(rma, order)
    with pytest.raises(InvalidTransition, match=r"this needs blind_unmatched"):
        match(rma, order)


def test_a_blind_return_cannot_be_matched_to_a_cancelled_order() -> None:
    order = OrderHistory().placed(line(1)).cancelled().order()
    rma = given(blind_parcel())
    with pytest.raises(InvalidTransition):
        match(rma, order)
    assert rma.pending_events == []


# ---------------------------------------------------------------- in-store returns
def test_a_web_order_brought_back_to_a_store_is_recorded_as_received() -> None:
    rma = record_in_store(shop_order(), wants(1, serial="SN-2"), at=day(12))
    assert rma.id == store_return_id_for("STORE-PARIS-1", "SR-1")
    assert types(rma) == (InStoreReturnRecorded,)
    event = last(rma)
    assert (event.store_id, event.staff_id, event.rma_number) == ("STORE-PARIS-1", "STAFF-9", RMA)
    assert event.restocking_fee == eur("0.00")
    assert (rma.state.status, rma.state.channel, rma.state.method) == (
        ReturnStatus.RECEIVED,
        ReturnChannel.STORE,
        ReturnMethod.STORE,
    )
    assert rma.state.receipts == ["SR-1"]


@pytest.mark.parametrize(
    ("order", "at", "code"),
    [
        (shop_order(), day(40), "outside_return_window"),
        (store_sale(line(1)), day(31), "outside_return_window"),
        (
            OrderHistory().placed(line(1, category="software")).fulfilled().delivered().order(),
            day(5),
            "non_returnable_item",
        ),
    ],
    ids=["web-order-late", "store-sale-late", "software"],
)
def test_an_in_store_return_refused_by_policy_raises_policy_violation_with_its_code(
    order: Order, at: datetime, code: str
) -> None:
    with pytest.raises(PolicyViolation) as error:
        record_in_store(order, at=at)
    assert error.value.code == code


def test_a_store_sale_is_returnable_at_the_counter_within_30_days_of_purchase() -> None:
    rma = record_in_store(store_sale(line(1)), at=day(30))
    assert last(rma).order_channel is Channel.STORE
