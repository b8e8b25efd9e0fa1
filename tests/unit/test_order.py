"""The Order aggregate: given its events, when a command, then the events or the error."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from domain.errors import (
    DomainError,
    InvalidCommand,
    InvalidTransition,
    QuantityExceeded,
    RefundLimitExceeded,
)
from domain.events import (
    FulfilledLine,
    OrderCancelled,
    OrderDelivered,
    OrderLine,
    OrderLinesFulfilled,
    OrderPlaced,
    OrderRefundAllocated,
    OrderRefundReleased,
    OrderReplacementCreated,
    OrderReturnReleased,
    OrderReturnReserved,
    Payment,
)
from domain.order import Order, order_id_for
from domain.values import Channel, Money, PaymentMethod
from tests.unit.builders import (
    CAUSE,
    ORDER_ID,
    OTHER_RETURN_ID,
    RETURN_ID,
    T0,
    OrderHistory,
    allocation,
    day,
    eur,
    line,
    payment,
    place,
    usd,
)

TWO_PAYMENTS = (payment("60.00", "PAY-CARD"), payment("40.00", "PAY-PP", PaymentMethod.PAYPAL))


def two_payment_order() -> OrderHistory:
    """Two of line 1 at 45.00, shipping 10.00; paid 60 by card and 40 by PayPal; delivered."""
    return (
        OrderHistory()
        .placed(line(1, quantity=2, price="45.00"), shipping="10.00", payments=TWO_PAYMENTS)
        .fulfilled()
        .delivered()
    )


def unchanged(order: Order) -> tuple[int, dict[str, Any]]:
    return order.version, dataclasses.asdict(order.state)


def allocate(
    order: Order,
    *parts: Any,
    refund_id: str = "RF-1",
    shipping: str = "0.00",
    return_id: Any = RETURN_ID,
) -> None:
    order.allocate_refund(
        refund_id=refund_id,
        return_id=return_id,
        allocations=tuple(parts),
        shipping_refunded=eur(shipping),
        at=day(20),
        cause=CAUSE,
    )


# ---------------------------------------------------------------- place
def test_placing_an_order_records_its_lines_payments_and_shipping() -> None:
    lines = (line(1, quantity=2, price="20.00", serials=("SN-1",)), line(2, price="5.50"))
    order = place(*lines, shipping="4.50", payments=(payment("50.00"),))
    assert order.id == order_id_for("WEB-1001")
    assert order.pending_events == [
        OrderPlaced(
            originator_id=order.id,
            originator_version=1,
            timestamp=T0,
            cause=CAUSE,
            order_number="WEB-1001",
            customer_id="CUST-1",
            customer_email="ada@example.com",
            channel=Channel.WEB,
            store_id=None,
            currency="EUR",
            lines=lines,
            payments=(payment("50.00"),),
            shipping=eur("4.50"),
        )
    ]
    assert order.total_paid() == eur("50.00")
    assert order.returnable_quantities() == {1: 0, 2: 0}


def test_an_order_id_derives_from_its_number_so_a_resent_order_collides() -> None:
    assert order_id_for("WEB-1001") == order_id_for("WEB-1001") == ORDER_ID
    assert order_id_for("WEB-1002") != ORDER_ID


def bad_order(**changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "order_number": "WEB-1001",
        "customer_id": "CUST-1",
        "customer_email": None,
        "channel": Channel.WEB,
        "lines": (line(1, price="50.00"),),
        "payments": (payment("55.00"),),
        "shipping": eur("5.00"),
        "at": T0,
        "cause": CAUSE,
    }
    arguments.update(changes)
    return arguments


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"order_number": "  "}, "needs an order number"),
        ({"lines": ()}, "has no lines"),
        ({"lines": (line(1, price="25.00"), line(1, price="25.00"))}, "repeats a line number"),
        ({"lines": (line(1, currency="USD"),)}, "is in USD"),
        (
            {"lines": (line(1, price="-5.00"), line(2, price="55.00"))},
            "has a negative price",
        ),
        ({"lines": (line(1, quantity=1, price="50.00", serials=("A", "B")),)}, "more serials"),
        (
            {
                "payments": (
                    Payment(payment_id="P", method=PaymentMethod.CARD, amount=usd("55.00")),
                )
            },
            "positive EUR",
        ),
        ({"payments": (payment("60.00", "P1"), payment("-5.00", "P2"))}, "positive EUR"),
        ({"payments": (payment("30.00", "P1"), payment("25.00", "P1"))}, "repeats a payment"),
        ({"channel": Channel.STORE}, "names its store"),
        ({"payments": (payment("50.00"),)}, "payments total 50.00 EUR"),
        ({"payments": ()}, "payments total 0.00 EUR"),
    ],
)
def test_an_ill_formed_order_is_refused_with_invalid_command(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidCommand, match=message) as error:
        Order.place(**bad_order(**changes))
    assert error.value.code == "invalid_command"


def test_an_order_with_a_negative_shipping_amount_is_refused() -> None:
    with pytest.raises(InvalidCommand, match=re.escape("has negative shipping -5.00 EUR")):
        Order.place(**bad_order(shipping=eur("-5.00"), payments=(payment("45.00"),)))


def test_an_order_with_free_shipping_is_accepted() -> None:
    order = Order.place(**bad_order(shipping=eur("0.00"), payments=(payment("50.00"),)))
    assert order.state.shipping == eur("0.00")


def test_a_replacement_order_needs_no_payment() -> None:
    order = Order.place(
        **bad_order(
            order_number="WEB-1001-X1",
            lines=(line(1, price="0.00"),),
            payments=(),
            shipping=eur("0.00"),
            replacement_for=ORDER_ID,
            replacement_return_id=RETURN_ID,
        )
    )
    placed = order.pending_events[-1]
    assert isinstance(placed, OrderPlaced)
    assert (placed.replacement_for, placed.replacement_return_id) == (ORDER_ID, RETURN_ID)
    assert order.state.replacement_for == ORDER_ID


def test_a_store_sale_is_fulfilled_and_delivered_at_the_counter() -> None:
    order = place(
        line(1, quantity=2, serials=("SN-1", "SN-2")),
        shipping="0.00",
        channel=Channel.STORE,
        store_id="STORE-PARIS-1",
    )
    assert order.state.fulfilled == {1: 2}
    assert order.state.fulfilled_serials == {1: ["SN-1", "SN-2"]}
    assert order.state.fulfilment_locations == {1: "STORE-PARIS-1"}
    assert order.state.delivered_at == T0
    assert order.reference_date() == T0
    assert order.returnable_quantities() == {1: 2}


# ---------------------------------------------------------------- fulfil
def test_fulfilling_lines_records_the_location_and_serials() -> None:
    order = OrderHistory().placed(line(1, quantity=2), line(2)).order()
    shipped = (FulfilledLine(line_no=1, quantity=1, serials=("SN-9",)),)
    order.fulfil("WH-1", shipped, day(1), CAUSE)
    assert order.pending_events == [
        OrderLinesFulfilled(
            originator_id=order.id,
            originator_version=2,
            timestamp=day(1),
            cause=CAUSE,
            location_id="WH-1",
            lines=shipped,
        )
    ]
    assert order.returnable_quantities() == {1: 1, 2: 0}
    assert order.serial_line("SN-9") == 1
    assert order.serial_line("SN-404") is None


def test_fulfilling_more_than_ordered_raises_quantity_exceeded() -> None:
    order = OrderHistory().placed(line(1, quantity=2)).order()
    with pytest.raises(QuantityExceeded, match="line 1"):
        order.fulfil("WH-1", (FulfilledLine(line_no=1, quantity=3),), day(1), CAUSE)
    assert order.pending_events == []


def test_a_second_shipment_cannot_exceed_what_is_still_open() -> None:
    order = OrderHistory().placed(line(1, quantity=3)).fulfilled({1: 2}).order()
    with pytest.raises(QuantityExceeded):
        order.fulfil("WH-2", (FulfilledLine(line_no=1, quantity=2),), day(3), CAUSE)
    order.fulfil("WH-2", (FulfilledLine(line_no=1, quantity=1),), day(3), CAUSE)
    assert order.state.fulfilled == {1: 3}
    assert order.state.fulfilment_locations == {1: "WH-2"}


def test_a_line_repeated_within_one_fulfilment_cannot_exceed_the_order() -> None:
    order = OrderHistory().placed(line(1, quantity=3)).order()
    twice = (FulfilledLine(line_no=1, quantity=2), FulfilledLine(line_no=1, quantity=2))
    with pytest.raises(QuantityExceeded, match="line 1: fulfilling 4, only 3 still open"):
        order.fulfil("WH-1", twice, day(1), CAUSE)
    assert order.pending_events == []
    assert order.state.fulfilled.get(1, 0) == 0


def test_a_line_repeated_within_one_fulfilment_is_counted_together() -> None:
    order = OrderHistory().placed(line(1, quantity=3)).order()
    parts = (FulfilledLine(line_no=1, quantity=1), FulfilledLine(line_no=1, quantity=2))
    order.fulfil("WH-1", parts, day(1), CAUSE)
    assert order.state.fulfilled == {1: 3}


def test_a_fulfilment_of_a_line_the_order_does_not_have_is_refused() -> None:
    order = OrderHistory().placed(line(1)).order()
    with pytest.raises(InvalidCommand, match="has no line 7"):
        order.fulfil("WH-1", (FulfilledLine(line_no=7, quantity=1),), day(1), CAUSE)


def test_a_fulfilment_without_lines_is_refused() -> None:
    order = OrderHistory().placed(line(1)).order()
    with pytest.raises(InvalidCommand):
        order.fulfil("WH-1", (), day(1), CAUSE)


def test_a_fulfilment_with_more_serials_than_items_is_refused() -> None:
    order = OrderHistory().placed(line(1, quantity=2)).order()
    with pytest.raises(InvalidCommand, match="more serials than items"):
        order.fulfil(
            "WH-1", (FulfilledLine(line_no=1, quantity=1, serials=("A", "B")),), day(1), CAUSE
        )


def test_a_cancelled_order_cannot_be_fulfilled() -> None:
    order = OrderHistory().placed(line(1)).cancelled().order()
    with pytest.raises(InvalidTransition, match="is cancelled"):
        order.fulfil("WH-1", (FulfilledLine(line_no=1, quantity=1),), day(2), CAUSE)


# ---------------------------------------------------------------- deliver
def test_delivering_a_shipped_order_starts_its_return_window() -> None:
    order = OrderHistory().placed(line(1)).fulfilled().order()
    order.deliver(day(4), CAUSE)
    assert order.pending_events == [
        OrderDelivered(
            originator_id=order.id,
            originator_version=3,
            timestamp=day(4),
            cause=CAUSE,
            delivered_at=day(4),
        )
    ]
    assert order.reference_date() == day(4)


def test_an_order_never_shipped_cannot_be_delivered() -> None:
    order = OrderHistory().placed(line(1)).order()
    with pytest.raises(InvalidTransition, match="never fulfilled"):
        order.deliver(day(4), CAUSE)


def test_an_order_is_delivered_only_once() -> None:
    order = OrderHistory().placed(line(1)).fulfilled().delivered().order()
    with pytest.raises(InvalidTransition, match="already delivered"):
        order.deliver(day(5), CAUSE)


def test_a_web_order_not_delivered_yet_has_no_return_window_start() -> None:
    assert OrderHistory().placed(line(1)).fulfilled().order().reference_date() is None


# ---------------------------------------------------------------- cancel
def test_cancelling_an_order_not_shipped_yet() -> None:
    order = OrderHistory().placed(line(1)).order()
    order.cancel("customer asked", day(1), CAUSE)
    assert order.pending_events == [
        OrderCancelled(
            originator_id=order.id,
            originator_version=2,
            timestamp=day(1),
            cause=CAUSE,
            reason="customer asked",
        )
    ]
    assert order.state.cancelled


def test_an_order_with_shipped_lines_cannot_be_cancelled() -> None:
    order = OrderHistory().placed(line(1, quantity=2)).fulfilled({1: 1}).order()
    with pytest.raises(InvalidTransition, match="return them instead"):
        order.cancel("too late", day(2), CAUSE)
    assert order.pending_events == []


def test_an_order_is_cancelled_only_once() -> None:
    order = OrderHistory().placed(line(1)).cancelled().order()
    with pytest.raises(InvalidTransition):
        order.cancel("again", day(2), CAUSE)


# ---------------------------------------------------------------- return reservations
def test_reserving_a_return_sets_its_quantities_aside() -> None:
    order = OrderHistory().placed(line(1, quantity=3), line(2)).fulfilled().delivered().order()
    order.reserve_return(RETURN_ID, {1: 2}, day(5), CAUSE)
    assert order.pending_events == [
        OrderReturnReserved(
            originator_id=order.id,
            originator_version=4,
            timestamp=day(5),
            cause=CAUSE,
            return_id=RETURN_ID,
            quantities={1: 2},
        )
    ]
    assert order.returnable_quantities() == {1: 1, 2: 1}


def test_a_second_return_cannot_take_more_than_the_first_left() -> None:
    order = (
        OrderHistory()
        .placed(line(1, quantity=3))
        .fulfilled()
        .delivered()
        .return_reserved(RETURN_ID, {1: 2})
        .order()
    )
    with pytest.raises(QuantityExceeded, match="2 requested, 1 returnable"):
        order.reserve_return(OTHER_RETURN_ID, {1: 2}, day(6), CAUSE)
    assert order.pending_events == []
    order.reserve_return(OTHER_RETURN_ID, {1: 1}, day(6), CAUSE)
    assert order.returnable_quantities() == {1: 0}


def test_quantities_released_by_a_rejected_cancelled_or_expired_return_are_returnable_again() -> (
    None
):
    order = (
        OrderHistory()
        .placed(line(1, quantity=2))
        .fulfilled()
        .delivered()
        .return_reserved(RETURN_ID, {1: 2})
        .order()
    )
    order.release_return(RETURN_ID, day(6), CAUSE)
    assert order.pending_events[-1] == OrderReturnReleased(
        originator_id=order.id,
        originator_version=5,
        timestamp=day(6),
        cause=CAUSE,
        return_id=RETURN_ID,
    )
    order.reserve_return(OTHER_RETURN_ID, {1: 2}, day(7), CAUSE)
    assert order.returnable_quantities() == {1: 0}


def test_only_shipped_quantities_can_be_returned() -> None:
    order = OrderHistory().placed(line(1, quantity=3)).fulfilled({1: 1}).order()
    with pytest.raises(QuantityExceeded):
        order.reserve_return(RETURN_ID, {1: 2}, day(5), CAUSE)


def test_a_return_reserves_only_once() -> None:
    order = (
        OrderHistory()
        .placed(line(1, quantity=3))
        .fulfilled()
        .return_reserved(RETURN_ID, {1: 1})
        .order()
    )
    with pytest.raises(InvalidTransition, match="already holds"):
        order.reserve_return(RETURN_ID, {1: 1}, day(6), CAUSE)


@pytest.mark.parametrize(
    ("quantities", "error"), [({1: 0}, InvalidCommand), ({9: 1}, InvalidCommand)]
)
def test_a_reservation_of_nothing_or_of_an_unknown_line_is_refused(
    quantities: dict[int, int], error: type[DomainError]
) -> None:
    order = OrderHistory().placed(line(1)).fulfilled().order()
    with pytest.raises(error):
        order.reserve_return(RETURN_ID, quantities, day(5), CAUSE)


def test_releasing_a_return_that_holds_nothing_changes_nothing() -> None:
    order = OrderHistory().placed(line(1)).fulfilled().order()
    order.release_return(RETURN_ID, day(6), CAUSE)
    assert order.pending_events == []


# ---------------------------------------------------------------- refunds
def test_allocating_a_refund_records_it_against_the_payments() -> None:
    order = two_payment_order().order()
    parts = (allocation("30.00", "PAY-CARD"), allocation("20.00", "PAY-PP"))
    allocate(order, *parts, shipping="10.00")
    assert order.pending_events == [
        OrderRefundAllocated(
            originator_id=order.id,
            originator_version=4,
            timestamp=day(20),
            cause=CAUSE,
            refund_id="RF-1",
            return_id=RETURN_ID,
            allocations=parts,
            shipping_refunded=eur("10.00"),
        )
    ]
    assert order.refunded_by_payment() == {"PAY-CARD": eur("30.00"), "PAY-PP": eur("20.00")}
    assert order.total_refunded() == eur("50.00")
    assert order.shipping_refunded()
    assert order.refund_capacities() == [
        ("PAY-CARD", PaymentMethod.CARD, eur("30.00")),
        ("PAY-PP", PaymentMethod.PAYPAL, eur("20.00")),
    ]


def test_a_refund_above_what_a_payment_captured_raises_and_changes_nothing() -> None:
    order = two_payment_order().order()
    before = unchanged(order)
    refused = re.escape("payment PAY-PP captured 40.00 EUR")
    with pytest.raises(RefundLimitExceeded, match=refused) as error:
        allocate(order, allocation("40.01", "PAY-PP"))
    assert error.value.code == "refund_limit_exceeded"
    assert unchanged(order) == before
    assert order.pending_events == []


def test_refunds_to_one_payment_add_up_against_what_it_captured() -> None:
    order = two_payment_order().refund_allocated("RF-1", allocation("50.00", "PAY-CARD")).order()
    with pytest.raises(RefundLimitExceeded, match=re.escape("50.00 EUR already refunded")):
        allocate(order, allocation("10.01", "PAY-CARD"), refund_id="RF-2")
    allocate(order, allocation("10.00", "PAY-CARD"), refund_id="RF-2")
    assert order.refunded_by_payment()["PAY-CARD"] == eur("60.00")


def test_store_credit_counts_against_what_the_order_paid() -> None:
    order = two_payment_order().refund_allocated("SC-1", allocation("90.00", None)).order()
    with pytest.raises(RefundLimitExceeded, match=re.escape("paid 100.00 EUR")):
        allocate(order, allocation("10.01", "PAY-CARD"), refund_id="RF-2")
    allocate(order, allocation("10.00", "PAY-CARD"), refund_id="RF-2")
    assert order.total_refunded() == order.total_paid()


def test_the_order_never_refunds_more_than_it_was_paid_in_store_credit() -> None:
    order = two_payment_order().order()
    with pytest.raises(RefundLimitExceeded):
        allocate(order, allocation("100.01", None))


def test_one_refund_naming_a_payment_twice_cannot_exceed_its_capture() -> None:
    order = two_payment_order().order()
    before = unchanged(order)
    refused = re.escape(
        "payment PAY-PP captured 40.00 EUR, 0.00 EUR already refunded, 60.00 EUR more refused"
    )
    with pytest.raises(RefundLimitExceeded, match=refused):
        allocate(order, allocation("30.00", "PAY-PP"), allocation("30.00", "PAY-PP"))
    assert order.pending_events == []
    assert unchanged(order) == before


def test_one_refund_naming_a_payment_twice_within_its_capture_is_allocated() -> None:
    order = two_payment_order().order()
    allocate(order, allocation("25.00", "PAY-PP"), allocation("15.00", "PAY-PP"))
    assert order.refunded_by_payment() == {"PAY-PP": eur("40.00")}


def test_a_refund_id_is_allocated_only_once() -> None:
    order = two_payment_order().refund_allocated("RF-1", allocation("5.00")).order()
    with pytest.raises(InvalidTransition, match="already allocated"):
        allocate(order, allocation("5.00"), refund_id="RF-1")


@pytest.mark.parametrize("amount", ["0.00", "-1.00"])
def test_a_refund_allocation_must_be_positive(amount: str) -> None:
    order = two_payment_order().order()
    with pytest.raises(InvalidCommand, match="refund allocations are positive EUR"):
        allocate(order, allocation(amount))
    assert order.pending_events == []


def test_a_refund_to_a_payment_the_order_never_took_is_refused() -> None:
    order = two_payment_order().order()
    with pytest.raises(InvalidCommand, match="unknown payment PAY-X"):
        allocate(order, allocation("1.00", "PAY-X"))


def test_shipping_is_refunded_only_once_per_order() -> None:
    order = (
        two_payment_order().refund_allocated("RF-1", allocation("20.00"), shipping="10.00").order()
    )
    with pytest.raises(RefundLimitExceeded, match="shipping was already refunded"):
        allocate(
            order,
            allocation("10.00"),
            refund_id="RF-2",
            shipping="10.00",
            return_id=OTHER_RETURN_ID,
        )
    allocate(order, allocation("10.00"), refund_id="RF-2", return_id=OTHER_RETURN_ID)
    assert order.pending_events[-1].shipping_refunded == eur("0.00")  # type: ignore[attr-defined]


def test_releasing_a_failed_refund_gives_its_capacity_and_shipping_back() -> None:
    order = (
        two_payment_order()
        .refund_allocated("RF-1", allocation("60.00", "PAY-CARD"), shipping="10.00")
        .order()
    )
    order.release_refund("RF-1", "card expired", day(21), CAUSE)
    assert order.pending_events == [
        OrderRefundReleased(
            originator_id=order.id,
            originator_version=5,
            timestamp=day(21),
            cause=CAUSE,
            refund_id="RF-1",
            reason="card expired",
        )
    ]
    assert order.refunded_by_payment() == {}
    assert order.total_refunded() == eur("0.00")
    assert not order.shipping_refunded()
    allocate(order, allocation("60.00", "PAY-CARD"), refund_id="RF-2", shipping="10.00")


def test_releasing_a_refund_twice_or_an_unknown_one_changes_nothing() -> None:
    order = (
        two_payment_order()
        .refund_allocated("RF-1", allocation("5.00"))
        .refund_released("RF-1")
        .order()
    )
    order.release_refund("RF-1", "again", day(22), CAUSE)
    order.release_refund("RF-404", "unknown", day(22), CAUSE)
    assert order.pending_events == []


def test_a_refund_in_another_currency_is_refused() -> None:
    order = two_payment_order().order()
    foreign = allocation("5.00").model_copy(update={"amount": usd("5.00")})
    with pytest.raises(DomainError, match="EUR"):
        allocate(order, foreign)
    assert order.pending_events == []


# ---------------------------------------------------------------- replacements and replay
def test_recording_an_exchange_links_the_replacement_order() -> None:
    order = two_payment_order().order()
    replacement = order_id_for("WEB-1001-X1")
    order.record_replacement(replacement, RETURN_ID, day(20), CAUSE)
    assert order.pending_events == [
        OrderReplacementCreated(
            originator_id=order.id,
            originator_version=4,
            timestamp=day(20),
            cause=CAUSE,
            replacement_order_id=replacement,
            return_id=RETURN_ID,
        )
    ]
    assert order.state.replacements == [replacement]


def test_replaying_the_events_of_a_live_order_gives_the_same_order() -> None:
    lines: tuple[OrderLine, ...] = (line(1, quantity=2, price="45.00"),)
    order = place(*lines, shipping="10.00", payments=TWO_PAYMENTS)
    order.fulfil("WH-1", (FulfilledLine(line_no=1, quantity=2, serials=("S1",)),), day(1), CAUSE)
    order.deliver(day(2), CAUSE)
    order.reserve_return(RETURN_ID, {1: 1}, day(5), CAUSE)
    allocate(order, allocation("45.00"), shipping="10.00")
    order.release_refund("RF-1", "failed", day(21), CAUSE)
    events = order.collect_events()
    replayed = Order.replay(order.id, events)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(order.state)
    assert (replayed.version, replayed.created_on, replayed.modified_on) == (
        order.version,
        T0,
        day(21),
    )
    assert order.pending_events == []
    assert replayed.total_paid() == Money.of("100.00", "EUR")
