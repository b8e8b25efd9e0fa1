"""A store sale is fulfilled and delivered at the counter: a POS that reports it again is
heard as a repeat (no event), and a report that contradicts the sale is refused."""

from __future__ import annotations

import pytest

from domain.errors import ContradictsSale, InvalidCommand
from domain.events import FulfilledLine
from domain.order import Order
from domain.values import Channel
from tests.unit.builders import CAUSE, OrderHistory, day, line

STORE = "STORE-PARIS-1"


def store_sale() -> Order:
    """Line 1: two items, serials SN-1 and SN-2; line 2: one item with no serial."""
    return (
        OrderHistory()
        .placed(
            line(1, quantity=2, serials=("SN-1", "SN-2")),
            line(2, sku="SKU-CABLE"),
            shipping="0.00",
            channel=Channel.STORE,
            store_id=STORE,
        )
        .order()
    )


@pytest.mark.parametrize(
    "lines",
    [
        (
            FulfilledLine(line_no=1, quantity=2, serials=("SN-1", "SN-2")),
            FulfilledLine(line_no=2, quantity=1),
        ),
        (FulfilledLine(line_no=1, quantity=2),),
        (
            FulfilledLine(line_no=1, quantity=1, serials=("SN-2",)),
            FulfilledLine(line_no=1, quantity=1, serials=("SN-1",)),
        ),
        (FulfilledLine(line_no=2, quantity=1),),
    ],
    ids=["whole-sale", "one-line-no-serials", "line-in-two-parts", "other-line"],
)
def test_a_fulfilment_that_repeats_a_store_sale_changes_nothing(
    lines: tuple[FulfilledLine, ...],
) -> None:
    order = store_sale()
    order.fulfil(STORE, lines, day(0.1), CAUSE)
    assert order.pending_events == []
    assert order.state.fulfilled == {1: 2, 2: 1}
    assert order.state.fulfilled_serials == {1: ["SN-1", "SN-2"], 2: []}


@pytest.mark.parametrize(
    ("location", "lines", "reason"),
    [
        ("WH-1", (FulfilledLine(line_no=1, quantity=2),), "not fulfilled from WH-1"),
        (STORE, (FulfilledLine(line_no=1, quantity=1),), "handed over 2, not 1"),
        (
            STORE,
            (FulfilledLine(line_no=2, quantity=1), FulfilledLine(line_no=2, quantity=1)),
            "handed over 1, not 2",
        ),
        (
            STORE,
            (FulfilledLine(line_no=1, quantity=2, serials=("SN-1", "SN-9")),),
            r"not \['SN-9'\]",
        ),
        (
            STORE,
            (FulfilledLine(line_no=2, quantity=1, serials=("SN-1",)),),
            r"line 2 sold serials \[\], not \['SN-1'\]",
        ),
    ],
    ids=["another-location", "fewer", "more", "another-serial", "a-serial-sold-on-no-line"],
)
def test_a_fulfilment_that_contradicts_a_store_sale_is_refused_with_its_reason(
    location: str, lines: tuple[FulfilledLine, ...], reason: str
) -> None:
    order = store_sale()
    with pytest.raises(ContradictsSale, match=reason) as refused:
        order.fulfil(location, lines, day(0.1), CAUSE)
    assert refused.value.code == "contradicts_sale"
    assert order.pending_events == []


def test_a_fulfilment_of_a_line_the_store_sale_does_not_have_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="has no line 3"):
        store_sale().fulfil(STORE, (FulfilledLine(line_no=3, quantity=1),), day(0.1), CAUSE)


def test_a_delivery_of_a_store_sale_changes_nothing_even_twice() -> None:
    order = store_sale()
    order.deliver(day(1), CAUSE)
    order.deliver(day(2), CAUSE)
    assert order.pending_events == []
    assert order.state.delivered_at == order.state.placed_at
    assert order.reference_date() == order.state.placed_at


def test_a_web_order_is_still_delivered_once() -> None:
    order = OrderHistory().placed(line(1)).fulfilled().delivered().order()
    with pytest.raises(Exception, match="already delivered"):
        order.deliver(day(5), CAUSE)
