"""Invariants of the domain under random sequences of commands (hypothesis).

Every property replays what the live aggregate emitted and checks that a refused command
changed nothing: no event, same version, same state.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.errors import DomainError, RefundLimitExceeded
from domain.events import (
    BlindReturnDetected,
    FulfilledLine,
    InspectedItem,
    OrderLine,
    ReceivedItem,
    RefundAllocation,
    RefundRequested,
    ReturnEvent,
    ReturnParcelReceived,
    StoreCreditIssued,
)
from domain.order import Order
from domain.policy import allocate_proportionally
from domain.returns import RequestedLine, Return, ReturnStatus
from domain.values import (
    Condition,
    Disposition,
    Money,
    PaymentMethod,
    ReasonCode,
    RefundMethod,
    ReturnChannel,
    ReturnMethod,
)
from tests.unit.builders import (
    BOOK,
    CAUSE,
    RETURN_ID,
    RMA,
    WAREHOUSE,
    OrderHistory,
    day,
    eur,
    line,
    payment,
    usd,
)

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Snapshot = tuple[int, str]


def snapshot(aggregate: Order | Return) -> Snapshot:
    """The version and a deep, immutable rendering of the state (cheaper than a deep copy)."""
    return aggregate.version, repr(aggregate.state)


def same_state(replayed: Order | Return, live: Order | Return) -> bool:
    return replayed.version == live.version and replayed.state == live.state


def cents(amount: int) -> Money:
    return Money(amount=Decimal(amount) / 100, currency="EUR")


# ================================================================ (1) refund allocations
PAYMENTS = (
    payment("60.00", "PAY-CARD"),
    payment("30.50", "PAY-PP", PaymentMethod.PAYPAL),
    payment("9.50", "PAY-GIFT", PaymentMethod.GIFT_CARD),
)
CAPTURED = {p.payment_id: p.amount for p in PAYMENTS}
REFUND_IDS = ["RF-1", "RF-2", "RF-3", "RF-4", "RF-5", "RF-6"]
ALLOCATION_TARGETS = ["PAY-CARD", "PAY-PP", "PAY-GIFT", None]


def paid_order_history() -> OrderHistory:
    """Two of line 1 at 45.00 and 10.00 shipping: 100.00 paid by card, PayPal and gift card."""
    return (
        OrderHistory()
        .placed(line(1, quantity=2, price="45.00"), shipping="10.00", payments=PAYMENTS)
        .fulfilled()
        .delivered()
    )


def part(target: str | None, amount: int) -> RefundAllocation:
    method = PaymentMethod.STORE_CREDIT if target is None else PaymentMethod.CARD
    return RefundAllocation(payment_id=target, method=method, amount=cents(amount))


allocate_attempt = st.tuples(
    st.just("allocate"),
    st.sampled_from(REFUND_IDS),
    st.lists(
        st.tuples(st.sampled_from(ALLOCATION_TARGETS), st.integers(1, 7000)),
        min_size=1,
        max_size=3,
        unique_by=lambda p: p[0],
    ),
    st.booleans(),
)
allocate_attempt_repeating_payments = st.tuples(
    st.just("allocate"),
    st.sampled_from(REFUND_IDS),
    st.lists(
        st.tuples(st.sampled_from(ALLOCATION_TARGETS), st.integers(1, 7000)),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),
)
release_attempt = st.tuples(st.just("release"), st.sampled_from(REFUND_IDS))


def would_exceed_limits(order: Order, parts: list[tuple[str | None, int]], shipping: bool) -> bool:
    zero = Money.zero("EUR")
    refunded = order.refunded_by_payment()
    asked: dict[str, Money] = {}
    for target, amount in parts:
        if target is not None:
            asked[target] = asked.get(target, zero) + cents(amount)
    over_a_payment = any(
        refunded.get(pid, zero) + amount > CAPTURED[pid] for pid, amount in asked.items()
    )
    total = sum((cents(amount) for _, amount in parts), zero)
    over_the_order = order.total_refunded() + total > order.total_paid()
    return over_a_payment or over_the_order or (shipping and order.shipping_refunded())


def check_refund_limits(attempts: list[tuple[Any, ...]]) -> None:
    history = paid_order_history()
    order = history.order()
    for attempt in attempts:
        before, emitted = snapshot(order), len(order.pending_events)
        if attempt[0] == "allocate":
            _, refund_id, parts, shipping = attempt
            fresh = refund_id not in order.state.refunds
            exceeds = would_exceed_limits(order, parts, shipping)
            try:
                order.allocate_refund(
                    refund_id=refund_id,
                    return_id=RETURN_ID,
                    allocations=tuple(part(t, a) for t, a in parts),
                    shipping_refunded=eur("10.00") if shipping else eur("0.00"),
                    at=day(20),
                    cause=CAUSE,
                )
            except DomainError as error:
                assert snapshot(order) == before
                assert len(order.pending_events) == emitted
                if fresh and exceeds:
                    assert isinstance(error, RefundLimitExceeded)
            else:
                assert fresh and not exceeds, "an allocation beyond the limits was accepted"
        else:
            order.release_refund(attempt[1], "provider failure", day(21), CAUSE)

        zero = Money.zero("EUR")
        for payment_id, refunded in order.refunded_by_payment().items():
            assert refunded <= CAPTURED[payment_id], f"{payment_id} refunded {refunded}"
        assert order.total_refunded() <= order.total_paid()
        live_with_shipping = [
            r for r in order.state.refunds.values() if not r.released and r.shipping != zero
        ]
        assert len(live_with_shipping) <= 1
    replayed = Order.replay(order.id, history.events + order.pending_events)
    assert same_state(replayed, order)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(order.state)


@PROPERTY
@given(st.lists(st.one_of(allocate_attempt, release_attempt), max_size=14))
def test_refunds_never_exceed_a_payments_capture_nor_what_the_order_was_paid(
    attempts: list[tuple[Any, ...]],
) -> None:
    check_refund_limits(attempts)


@PROPERTY
@example([("allocate", "RF-1", [("PAY-PP", 3000), ("PAY-PP", 3000)], False)])
@given(st.lists(st.one_of(allocate_attempt_repeating_payments, release_attempt), max_size=14))
def test_refunds_never_exceed_a_payments_capture_even_when_one_refund_names_it_twice(
    attempts: list[tuple[Any, ...]],
) -> None:
    check_refund_limits(attempts)


# ================================================================ (2) proportional split
@PROPERTY
@given(
    capacities=st.lists(st.integers(0, 100_000), min_size=1, max_size=5),
    data=st.data(),
)
def test_a_proportional_split_is_exact_to_the_cent_and_within_every_capacity(
    capacities: list[int], data: st.DataObject
) -> None:
    total = sum(capacities)
    amount = data.draw(st.integers(0, total + 500), label="amount in cents")
    caps = [(f"PAY-{i}", PaymentMethod.CARD, cents(c)) for i, c in enumerate(capacities)]
    if amount > total:
        try:
            allocate_proportionally(cents(amount), caps)
        except ValueError:
            return
        raise AssertionError("a refund above the capacity was split")
    allocations = allocate_proportionally(cents(amount), caps)
    assert sum((a.amount.amount for a in allocations), Decimal(0)) == cents(amount).amount
    by_id = {pid: cap for pid, _, cap in caps}
    assert len({a.payment_id for a in allocations}) == len(allocations)
    for allocation in allocations:
        assert allocation.payment_id is not None
        capacity = by_id[allocation.payment_id]
        assert Decimal(0) < allocation.amount.amount <= capacity.amount
        share = int(allocation.amount.amount * 100)
        exact = Decimal(amount) * int(capacity.amount * 100) / total
        assert abs(share - exact) < 1, "more than a cent away from its proportional share"


@PROPERTY
@given(
    capacities=st.lists(st.integers(0, 100_000), min_size=1, max_size=5),
    shortfall=st.integers(1, 10_000),
)
def test_a_proportional_split_raises_when_the_capacity_is_short(
    capacities: list[int], shortfall: int
) -> None:
    caps = [(f"PAY-{i}", PaymentMethod.CARD, cents(c)) for i, c in enumerate(capacities)]
    try:
        allocate_proportionally(cents(sum(capacities) + shortfall), caps)
    except ValueError:
        return
    raise AssertionError("a refund above the capacity was split")


# ================================================================ (3) reservations
ORDERED = {1: 3, 2: 2, 3: 1}
RETURN_IDS = [RETURN_ID.int + i for i in range(4)]

reservation_op = st.one_of(
    st.tuples(st.just("fulfil"), st.sampled_from([1, 2, 3]), st.integers(1, 3)),
    st.tuples(
        st.just("reserve"),
        st.sampled_from(RETURN_IDS),
        st.dictionaries(st.sampled_from([1, 2, 3, 9]), st.integers(0, 3), max_size=3),
    ),
    st.tuples(st.just("release"), st.sampled_from(RETURN_IDS)),
)


@PROPERTY
@given(st.lists(reservation_op, max_size=20))
def test_quantities_reserved_for_returns_never_exceed_what_was_shipped(
    ops: list[tuple[Any, ...]],
) -> None:
    history = OrderHistory().placed(*(line(no, quantity=q) for no, q in ORDERED.items()))
    order = history.order()
    for op in ops:
        before, emitted = snapshot(order), len(order.pending_events)
        try:
            if op[0] == "fulfil":
                order.fulfil("WH-1", (FulfilledLine(line_no=op[1], quantity=op[2]),), day(1), CAUSE)
            elif op[0] == "reserve":
                order.reserve_return(UUID(int=op[1]), op[2], day(5), CAUSE)
            else:
                order.release_return(UUID(int=op[1]), day(6), CAUSE)
        except DomainError:
            assert snapshot(order) == before
            assert len(order.pending_events) == emitted
        for line_no, ordered in ORDERED.items():
            fulfilled = order.state.fulfilled.get(line_no, 0)
            reserved = sum(q.get(line_no, 0) for q in order.state.reserved.values())
            assert reserved <= fulfilled <= ordered
            assert order.returnable_quantities()[line_no] == fulfilled - reserved
    replayed = Order.replay(order.id, history.events + order.pending_events)
    assert same_state(replayed, order)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(order.state)


# ================================================================ (4) the Return state machine
def return_order() -> Order:
    """Delivered on day 2: line 1 two SKU-1 at 12 (SN-1, SN-2; one may be kept), line 2 one
    SKU-2 at 40, line 3 two SKU-3 at 600 (a review above 1000), line 4 one hygiene SKU-4."""
    return (
        OrderHistory()
        .placed(
            line(1, quantity=2, price="12.00", serials=("SN-1", "SN-2")),
            line(2, price="40.00"),
            line(3, quantity=2, price="600.00"),
            line(4, price="8.00", category="hygiene"),
            shipping="5.00",
        )
        .fulfilled()
        .delivered(day(2))
        .order()
    )


requested_lines = st.lists(
    st.builds(
        RequestedLine,
        line_no=st.sampled_from([1, 1, 1, 2, 2, 2, 3, 4, 9]),
        quantity=st.sampled_from([1, 1, 1, 2, 0, 3]),
        reason=st.sampled_from(list(ReasonCode)),
        serial=st.sampled_from([None, None, None, "SN-1", "SN-2", "SN-X"]),
    ),
    min_size=1,
    max_size=2,
)
Start = tuple[str, list[RequestedLine], int]
starts: st.SearchStrategy[Start] = st.one_of(
    st.tuples(st.just("request"), requested_lines, st.sampled_from([3, 10, 10, 20, 33])),
    st.tuples(st.just("blind"), st.just([]), st.integers(3, 60)),
    st.tuples(st.just("store"), requested_lines, st.integers(3, 40)),
)
received_item: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    sku=st.sampled_from(["SKU-1", "SKU-1", "SKU-2", "SKU-3", "SKU-X"]),
    quantity=st.integers(1, 3),
    serial=st.sampled_from([None, "SN-1", "SN-2"]),
)
inspected_item: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    sku=st.sampled_from(["SKU-1", "SKU-1", "SKU-2", "SKU-3", "SKU-X"]),
    quantity=st.integers(1, 3),
    serial=st.sampled_from([None, "SN-1", "SN-2"]),
    condition=st.sampled_from(list(Condition)),
    disposition=st.sampled_from(list(Disposition)),
    line_no=st.sampled_from([None, None, None, None, None, None, 1, 2, 9]),
)
ANY_AMOUNT = [*["due"] * 5, "offer", "0.00", "0.01", "-5.00", "40.00", "5000.00", "USD"]
VALID_AMOUNT = ["due", "offer"]
# The shipping part of a payout: "owed" is what the RMA still owes for shipping.
ANY_SHIPPING = ["owed", "owed", "owed", "none", "5.00", "0.01"]
VALID_SHIPPING = ["owed"]
COMMANDS = [
    "decide",
    "approve",
    "refuse",
    "issue_label",
    "receive",
    "inspect",
    "request_refund",
    "settle",
    "fail",
    "store_credit",
    "exchange",
    "close_if_settled",
    "offer_keep_item",
    "accept_keep_item",
    "cancel",
    "expire",
    "match_blind",
    "send_to_repair",
    "complete_repair",
    "restock_repaired",
    "ship_to_vendor",
    "receive_supplier_credit",
    "take_back_from_vendor",
]
LEG_COMMANDS = [
    "send_to_repair",
    "complete_repair",
    "restock_repaired",
    "ship_to_vendor",
    "receive_supplier_credit",
    "take_back_from_vendor",
]
# What a caller would plausibly do next in each status; a "guided" step picks from these,
# an "any" step from every command, so most sequences reach refunds, further parcels and legs.
# "more_parcels" receives a parcel only while items are outstanding.
PLAUSIBLE: dict[ReturnStatus, list[str]] = {
    ReturnStatus.REQUESTED: [*["decide"] * 8, "refuse", "cancel"],
    ReturnStatus.PENDING_REVIEW: [*["approve"] * 4, "refuse", "cancel"],
    ReturnStatus.AUTHORIZED: [
        *["receive"] * 6,
        "issue_label",
        "offer_keep_item",
        "offer_keep_item",
        "cancel",
        "expire",
    ],
    ReturnStatus.KEEP_ITEM_OFFERED: [
        *["accept_keep_item", "request_refund"] * 3,
        "receive",
        "cancel",
    ],
    ReturnStatus.BLIND_UNMATCHED: ["match_blind"],
    ReturnStatus.RECEIVED: ["inspect", "inspect", "inspect", "more_parcels", "request_refund"],
    ReturnStatus.INSPECTED: [
        "request_refund",
        "request_refund",
        "request_refund",
        "store_credit",
        "exchange",
        "close_if_settled",
        "inspect",
        "more_parcels",
        "advance_leg",
    ],
    ReturnStatus.REFUND_PENDING: [
        "settle",
        "settle",
        "settle",
        "fail",
        "more_parcels",
        "inspect",
        "request_refund",
        "advance_leg",
    ],
    ReturnStatus.REFUND_FAILED: ["request_refund", "store_credit", "more_parcels", "advance_leg"],
    ReturnStatus.PARTIALLY_REFUNDED: [
        "more_parcels",
        "more_parcels",
        "inspect",
        "request_refund",
        "store_credit",
        "advance_leg",
    ],
}
ENDED_PLAUSIBLE = ["advance_leg", "advance_leg", "advance_leg", "settle", "receive", *LEG_COMMANDS]
NEXT_ON_LEG = {
    (Disposition.REPAIR, "awaiting_dispatch"): "send_to_repair",
    (Disposition.REPAIR, "at_repair"): "complete_repair",
    (Disposition.REPAIR, "repaired"): "restock_repaired",
    (Disposition.RETURN_TO_VENDOR, "awaiting_dispatch"): "ship_to_vendor",
    (Disposition.RETURN_TO_VENDOR, "at_vendor"): "receive_supplier_credit",
}
Step = tuple[str, dict[str, Any]]


def steps(amounts: list[str], shippings: list[str]) -> st.SearchStrategy[Step]:
    """A step is "guided:<n>" or a command name, with arguments for any command, valid or
    not: "latest" and "next" name the receipt or refund the RMA holds at that moment."""
    arguments = st.fixed_dictionaries(
        {
            "days": st.sampled_from([0, 0, 1, 2, 5, 12, 31]),
            "receipt": st.sampled_from(
                ["RCPT-1", "RCPT-1", "RCPT-2", "RCPT-2", "RCPT-3", "RCPT-B1", "SR-1"]
            ),
            "inspect_receipt": st.sampled_from(["latest", "latest", "latest", None, "RCPT-9"]),
            "parcel": st.sampled_from(["drawn", "drawn", "one_unit", "rest"]),
            "received": st.sampled_from([0, 1, 1, 1, 2]).flatmap(
                lambda n: st.lists(received_item, min_size=n, max_size=n)
            ),
            "inspect_as": st.sampled_from(["drawn", "parcel", "parcel"]),
            "condition": st.sampled_from(list(Condition)),
            "disposition": st.sampled_from(list(Disposition)),
            "inspected": st.sampled_from([0, 1, 1, 1, 2, 3]).flatmap(
                lambda n: st.lists(inspected_item, min_size=n, max_size=n)
            ),
            "refund": st.sampled_from(["next", "next", "next", "latest", "RF-1"]),
            "settle_refund": st.sampled_from(["latest", "latest", "latest", "RF-1", "RF-9"]),
            "amount": st.sampled_from(amounts),
            "shipping": st.sampled_from(shippings),
            "settled": st.sampled_from(["requested", "requested", "requested", "40.00"]),
            "keep": st.sampled_from(["auto", "auto", "auto", True, False]),
            "valid": st.sampled_from([0, 7, 7]),
            "lines": requested_lines,
            "leg": st.sampled_from(["L1", "L1", "L1", "L2", "L3"]),
            "outcome": st.sampled_from(["repaired", "replaced", "beyond_repair", "lost"]),
            "credit": st.sampled_from(["10.00", "10.00", "-1.00", "USD"]),
        }
    )
    name = st.one_of(
        st.integers(0, 99).map(lambda n: f"guided:{n}"),
        st.integers(0, 99).map(lambda n: f"guided:{n}"),
        st.sampled_from(COMMANDS),
    )
    return st.tuples(name, arguments)


def step(name: str, **arguments: Any) -> Step:
    """An explicit step for ``@example``: the named command with valid default arguments."""
    defaults: dict[str, Any] = {
        "days": 1,
        "receipt": "RCPT-1",
        "inspect_receipt": "latest",
        "parcel": "drawn",
        "received": [{"sku": "SKU-1", "quantity": 1, "serial": None}],
        "inspect_as": "drawn",
        "condition": Condition.RESELLABLE,
        "disposition": Disposition.RESTOCK,
        "inspected": [
            {
                "sku": "SKU-1",
                "quantity": 1,
                "serial": None,
                "line_no": None,
                "condition": Condition.RESELLABLE,
                "disposition": Disposition.RESTOCK,
            }
        ],
        "refund": "next",
        "settle_refund": "latest",
        "amount": "due",
        "shipping": "owed",
        "settled": "requested",
        "keep": "auto",
        "valid": 7,
        "lines": [],
        "leg": "L1",
        "outcome": "repaired",
        "credit": "10.00",
    }
    return name, {**defaults, **arguments}


def start_return(order: Order, start: Start) -> Return:
    kind, lines, on_day = start
    at = day(on_day)
    try:
        if kind == "blind":
            return Return.detect_blind(
                receipt_id="RCPT-B1",
                warehouse_id=WAREHOUSE,
                tracking_number=None,
                claimed_rma_number=None,
                order_number_hint=None,
                items=(ReceivedItem(sku="SKU-1", quantity=1, serial="SN-1"),),
                at=at,
                cause=CAUSE,
            )
        if kind == "store":
            return Return.record_in_store(
                store_return_id="SR-1",
                store_id="STORE-1",
                staff_id="S-1",
                order=order,
                lines=tuple(lines),
                refund_method=RefundMethod.ORIGINAL_PAYMENT,
                rma_number=RMA,
                book=BOOK,
                at=at,
                cause=CAUSE,
            )
        return request(order, tuple(lines), at)
    except DomainError:
        # A refused start creates nothing; go on with a plain request to exercise the rest.
        return request(order, (RequestedLine(1, 1, ReasonCode.CHANGED_MIND),), at)


def request(order: Order, lines: tuple[RequestedLine, ...], at: datetime) -> Return:
    return Return.request(
        RETURN_ID,
        order=order,
        lines=lines,
        channel=ReturnChannel.PORTAL,
        method=ReturnMethod.CARRIER_DROP_OFF,
        refund_method=RefundMethod.ORIGINAL_PAYMENT,
        comment="",
        at=at,
        cause=CAUSE,
    )


def shipping_for(rma: Return, choice: str) -> Money | None:
    """The shipping part of a payout: "owed" is what the RMA still owes for shipping."""
    if choice == "owed":
        return rma.shipping_due_unpaid()
    return None if choice == "none" else eur(choice)


def amount_for(rma: Return, choice: str, shipping: Money | None) -> Money:
    """ "due" is what the application would pay: the items not yet paid plus the shipping
    part of this payout."""
    if choice == "due":
        return rma.items_due_unpaid() + (shipping or Money.zero(rma.state.currency))
    if choice == "offer":
        return rma.state.keep_item_offer or Money.zero(rma.state.currency)
    if choice == "USD":
        return usd("40.00")
    return eur(choice)


def parcel_items(rma: Return, args: dict[str, Any]) -> tuple[ReceivedItem, ...]:
    """ "one_unit" sends one item of the first line, "rest" every item still outstanding
    (the RMA's own SKUs and serials), "drawn" the drawn items."""
    lines = list(rma.state.lines.values())
    if args["parcel"] == "one_unit" and lines:
        return (ReceivedItem(sku=lines[0].sku, quantity=1, serial=lines[0].serial),)
    if args["parcel"] == "rest":
        rest = []
        for return_line in lines:
            arrived = sum(i.quantity for i in rma.state.received_items if i.sku == return_line.sku)
            if return_line.quantity > arrived:
                rest.append(
                    ReceivedItem(
                        sku=return_line.sku,
                        quantity=return_line.quantity - arrived,
                        serial=return_line.serial,
                    )
                )
        if rest:
            return tuple(rest)
    return tuple(ReceivedItem(**item) for item in args["received"])


def inspected_items(
    rma: Return, receipt: str | None, args: dict[str, Any]
) -> tuple[InspectedItem, ...]:
    """ "parcel" inspects what that receipt brought (a counter return: its lines), with the
    drawn condition and disposition; "drawn" the drawn items."""
    found: tuple[ReceivedItem, ...] = ()
    if args["inspect_as"] == "parcel":
        for event in rma.pending_events:
            parcel = isinstance(event, ReturnParcelReceived | BlindReturnDetected)
            if parcel and event.receipt_id == receipt:  # type: ignore[attr-defined]
                found = event.items  # type: ignore[attr-defined]
        if not found and receipt == "SR-1":
            found = tuple(
                ReceivedItem(sku=ln.sku, quantity=ln.quantity, serial=ln.serial)
                for ln in rma.state.lines.values()
            )
    if found:
        return tuple(
            InspectedItem(
                sku=item.sku,
                quantity=item.quantity,
                serial=item.serial,
                condition=args["condition"],
                disposition=args["disposition"],
                location_id=WAREHOUSE,
            )
            for item in found
        )
    return tuple(InspectedItem(location_id=WAREHOUSE, **item) for item in args["inspected"])


def command_name(rma: Return, drawn: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Resolve a guided step to a plausible command; "advance_leg" moves the first open
    repair or vendor leg one step on (with the drawn, possibly invalid, arguments)."""
    if not drawn.startswith("guided:"):
        return drawn, args
    plausible = PLAUSIBLE.get(rma.state.status, ENDED_PLAUSIBLE)
    name = plausible[int(drawn.removeprefix("guided:")) % len(plausible)]
    if name == "more_parcels":  # a further parcel while items are still on their way
        fallback = next(n for n in plausible if n != "more_parcels")
        name = "receive" if rma.outstanding_quantity() > 0 else fallback
    if name != "advance_leg":
        return name, args
    for leg_id, leg in rma.state.legs.items():
        action = NEXT_ON_LEG.get((leg.kind, leg.status))
        if action is not None:
            return action, {**args, "leg": leg_id}
    return "send_to_repair", args


def execute(rma: Return, order: Order, name: str, args: dict[str, Any], at: datetime) -> None:
    """Run one command on the RMA the way its callers would, with the drawn arguments."""
    common: dict[str, Any] = {"at": at, "cause": CAUSE}
    refunds = list(rma.state.refunds)
    named = {"next": f"RF-{len(refunds) + 1}", "latest": refunds[-1] if refunds else "RF-1"}
    refund_id = named.get(args["refund"], args["refund"])
    settled_id = named.get(args["settle_refund"], args["settle_refund"])
    decision = {
        "order": order,
        "book": BOOK,
        "rma_number": RMA,
        "destination_warehouse": WAREHOUSE,
        "label_reference": "LBL-1",
        **common,
    }
    if name == "decide":
        rma.decide(**decision)
    elif name == "approve":
        rma.approve(**decision)
    elif name == "refuse":
        rma.refuse("not convinced", **common)
    elif name == "issue_label":
        rma.issue_label(f"LBL-R{rma.version}", "colissimo", **common)
    elif name == "receive":
        rma.receive_parcel(
            receipt_id=args["receipt"],
            warehouse_id=WAREHOUSE,
            tracking_number=None,
            items=parcel_items(rma, args),
            **common,
        )
    elif name == "inspect":
        receipt = args["inspect_receipt"]
        if receipt == "latest":
            receipt = rma.state.receipts[-1] if rma.state.receipts else None
        items = inspected_items(rma, receipt, args)
        rma.inspect(receipt_id=receipt, items=items, book=BOOK, **common)
    elif name == "request_refund":
        keep = args["keep"]
        if keep == "auto":
            keep = rma.state.status is ReturnStatus.KEEP_ITEM_OFFERED
        shipping = None if keep else shipping_for(rma, args["shipping"])
        choice = "offer" if keep and args["amount"] == "due" else args["amount"]
        rma.request_refund(
            refund_id=refund_id,
            amount=amount_for(rma, choice, shipping),
            allocations=(),
            shipping=shipping,
            keep_item=keep,
            **common,
        )
    elif name == "settle":
        refund = rma.state.refunds.get(settled_id)
        amount = refund.amount if refund and args["settled"] == "requested" else eur("40.00")
        rma.settle_refund(settled_id, "PSP-1", amount, **common)
    elif name == "fail":
        rma.fail_refund(settled_id, "declined", **common)
    elif name == "store_credit":
        shipping = shipping_for(rma, args["shipping"])
        rma.issue_store_credit(
            credit_id=f"SC-{rma.version}",
            amount=amount_for(rma, args["amount"], shipping),
            bonus=Money.zero("EUR"),
            shipping=shipping,
            **common,
        )
    elif name == "exchange":
        lines = (OrderLine(line_no=1, sku="SKU-1", quantity=1, unit_price=eur("0.00")),)
        rma.order_exchange(
            replacement_order_id=RETURN_ID, replacement_order_number="X-1", lines=lines, **common
        )
    elif name == "close_if_settled":
        rma.close_if_settled(**common)
    elif name == "offer_keep_item":
        rma.offer_keep_item(BOOK, at + timedelta(days=args["valid"]), **common)
    elif name == "accept_keep_item":
        rma.accept_keep_item(**common)
    elif name == "cancel":
        rma.cancel("customer asked", **common)
    elif name == "expire":
        rma.expire(BOOK, **common)
    elif name == "match_blind":
        rma.match_blind(
            order=order,
            lines=tuple(args["lines"]),
            matched_by="serial",
            rma_number=RMA,
            book=BOOK,
            **common,
        )
    elif name == "send_to_repair":
        rma.send_to_repair(args["leg"], "REPAIR-1", **common)
    elif name == "complete_repair":
        rma.complete_repair(args["leg"], args["outcome"], **common)
    elif name == "restock_repaired":
        rma.restock_repaired(args["leg"], "WH-1", **common)
    elif name == "ship_to_vendor":
        rma.ship_to_vendor(args["leg"], "V-1", **common)
    elif name == "receive_supplier_credit":
        credit = usd("10.00") if args["credit"] == "USD" else eur(args["credit"])
        rma.receive_supplier_credit(args["leg"], credit, **common)
    elif name == "take_back_from_vendor":
        rma.take_back_from_vendor(args["leg"], "WH-1", **common)
    else:  # pragma: no cover - the strategy draws only the names above
        raise AssertionError(name)


LEG_STATUSES = {
    "awaiting_dispatch",
    "at_repair",
    "repaired",
    "restocked",
    "scrapped",
    "at_vendor",
    "credited",
    "returned_by_vendor",
}


def run_return(start: Start, commands: list[Step]) -> None:
    order = return_order()
    rma = start_return(order, start)
    clock = day(start[2])
    for drawn, drawn_args in commands:
        name, args = command_name(rma, drawn, drawn_args)
        clock += timedelta(days=args["days"])
        before, emitted = snapshot(rma), len(rma.pending_events)
        try:
            execute(rma, order, name, args, clock)
        except DomainError:
            assert len(rma.pending_events) == emitted, f"refused {name} emitted an event"
            assert snapshot(rma) == before, f"refused {name} changed the state"
        events: list[ReturnEvent] = rma.pending_events
        assert isinstance(rma.state.status, ReturnStatus)
        assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
        assert {leg.status for leg in rma.state.legs.values()} <= LEG_STATUSES
        replayed = Return.replay(rma.id, events)
        assert same_state(replayed, rma), f"replay differs after {name}"
        assert_payouts_within_what_is_owed(rma)
        assert_closed_only_when_done(rma)
    assert dataclasses.asdict(Return.replay(rma.id, rma.pending_events).state) == (
        dataclasses.asdict(rma.state)
    )


def assert_payouts_within_what_is_owed(rma: Return) -> None:
    """Money on its way to the customer (live refunds and store credit, read from the
    events) never exceeds what inspection found due for the items plus the shipping the
    RMA owes; its shipping parts never exceed that shipping; a keep-the-item refund never
    exceeds the offer."""
    zero = Money.zero(rma.state.currency)
    paid, shipping, kept = zero, zero, zero
    for event in rma.pending_events:
        if isinstance(event, StoreCreditIssued):
            assert event.amount > zero, f"store credit of {event.amount}"
            paid = paid + event.amount
            shipping = shipping + (event.shipping or zero)
        elif isinstance(event, RefundRequested):
            assert event.amount.currency == rma.state.currency
            assert event.amount > zero, f"refund of {event.amount}"
            assert event.shipping_refund <= event.amount
            if rma.state.refunds[event.refund_id].status == "failed":
                continue
            if event.keep_item:
                kept = kept + event.amount
            else:
                paid = paid + event.amount
                shipping = shipping + event.shipping_refund
    owed_shipping = (rma.state.shipping_refund or zero) if rma.state.inspected_items else zero
    due = rma.state.refund_due or zero
    assert paid <= due + owed_shipping, f"paid {paid}, due {due} + shipping {owed_shipping}"
    assert shipping <= owed_shipping, f"shipping paid {shipping} of {owed_shipping}"
    assert kept <= (rma.state.keep_item_offer or zero), f"kept {kept}"
    assert paid + kept == rma.paid_out()
    assert shipping == rma.shipping_paid()


def assert_closed_only_when_done(rma: Return) -> None:
    """A closed RMA has every item in, no refund still requested, and its items paid (or
    exchanged)."""
    if rma.state.status is not ReturnStatus.CLOSED:
        return
    assert rma.outstanding_quantity() == 0
    assert all(r.status != "requested" for r in rma.state.refunds.values())
    assert rma.items_due_unpaid().is_zero or rma.state.replacement_order_id is not None


@PROPERTY
@example(
    start=("request", [RequestedLine(2, 1, ReasonCode.CHANGED_MIND)], 10),
    commands=[
        step("decide"),
        step("receive", received=[{"sku": "SKU-2", "quantity": 1, "serial": None}]),
        step("inspect"),
        step("request_refund", amount="5000.00"),
        step("request_refund", amount="-5.00"),
        step("store_credit", amount="40.01"),
    ],
)
@example(
    start=("request", [RequestedLine(1, 2, ReasonCode.DEFECTIVE)], 10),
    commands=[
        step("decide"),
        step("receive", receipt="RCPT-1"),
        step("inspect"),
        step("request_refund", shipping="5.00"),
        step("settle"),
        step("receive", receipt="RCPT-2"),
        step("inspect"),
        step("request_refund", shipping="5.00"),
        step("store_credit", shipping="none"),
        step("request_refund"),
        step("fail"),
        step("request_refund"),
        step("settle"),
    ],
)
@given(start=starts, commands=st.lists(steps(ANY_AMOUNT, ANY_SHIPPING), min_size=6, max_size=25))
def test_any_sequence_of_return_commands_keeps_the_rma_consistent_and_replayable(
    start: Start, commands: list[Step]
) -> None:
    run_return(start, commands)


@PROPERTY
@given(
    start=starts,
    commands=st.lists(steps(VALID_AMOUNT, VALID_SHIPPING), min_size=6, max_size=25),
)
def test_payouts_of_what_is_due_never_exceed_the_refund_due_and_shipping_owed(
    start: Start, commands: list[Step]
) -> None:
    run_return(start, commands)


# ================================================================ (5) payouts over several parcels
PAYOUT_ACTIONS = [
    "receive",
    "inspect",
    "refund",
    "store_credit",
    "settle",
    "fail",
    "exchange",
    "close_if_settled",
]
# What the warehouse, the provider and the application plausibly do next in each status.
PAYOUT_PLAUSIBLE: dict[ReturnStatus, list[str]] = {
    ReturnStatus.AUTHORIZED: ["receive"],
    ReturnStatus.RECEIVED: ["inspect", "inspect", "inspect", "receive"],
    ReturnStatus.INSPECTED: [
        "refund",
        "refund",
        "refund",
        "store_credit",
        "receive",
        "inspect",
        "exchange",
        "close_if_settled",
    ],
    ReturnStatus.REFUND_PENDING: [
        "settle",
        "settle",
        "settle",
        "fail",
        "receive",
        "inspect",
        "refund",
    ],
    ReturnStatus.REFUND_FAILED: ["refund", "refund", "store_credit", "receive"],
    ReturnStatus.PARTIALLY_REFUNDED: ["receive", "receive", "inspect", "refund", "store_credit"],
}
PayoutStep = dict[str, Any]
payout_steps: st.SearchStrategy[PayoutStep] = st.fixed_dictionaries(
    {
        "action": st.one_of(
            st.integers(0, 99).map(lambda n: f"guided:{n}"),
            st.integers(0, 99).map(lambda n: f"guided:{n}"),
            st.integers(0, 99).map(lambda n: f"guided:{n}"),
            st.sampled_from(PAYOUT_ACTIONS),
        ),
        "parcel": st.sampled_from(["one_unit", "one_unit", "rest", "surplus"]),
        "condition": st.sampled_from(
            [Condition.RESELLABLE, Condition.RESELLABLE, Condition.DAMAGED, Condition.WRONG_ITEM]
        ),
        "amount": st.sampled_from(["due", "due", "due", "half", "half", "0.01", "over"]),
        "shipping": st.sampled_from(["owed", "owed", "owed", "none", "over"]),
        "which": st.sampled_from(["first", "last"]),
    }
)


def payout_amounts(rma: Return, amount: str, shipping: str) -> tuple[Money, Money | None]:
    """A payout of the items due ("due"), half of them, a cent or a cent too much, with the
    shipping owed, none, or a cent too much of it."""
    zero = Money.zero(rma.state.currency)
    owed = rma.shipping_due_unpaid()
    ship = {"owed": owed, "none": None, "over": owed + eur("0.01")}[shipping]
    items = rma.items_due_unpaid()
    value = {
        "due": items,
        "half": Money(amount=(items.amount / 2).quantize(Decimal("0.01")), currency="EUR"),
        "0.01": eur("0.01"),
        "over": items + eur("0.01"),
    }[amount]
    return value + (ship or zero), ship


class NothingToDo(DomainError):
    """Nothing to send, settle or fail: the step is skipped like a refused command."""


def run_payout_step(rma: Return, action: str, args: PayoutStep, at: datetime) -> None:
    common: dict[str, Any] = {"at": at, "cause": CAUSE}
    if action == "receive":
        missing = {
            ln.sku: ln.quantity
            - sum(i.quantity for i in rma.state.received_items if i.sku == ln.sku)
            for ln in rma.state.lines.values()
        }
        missing = {sku: quantity for sku, quantity in missing.items() if quantity > 0}
        if args["parcel"] == "surplus":
            items: tuple[ReceivedItem, ...] = (ReceivedItem(sku="SKU-1", quantity=1),)
        elif not missing:
            raise NothingToDo("nothing left to send")
        elif args["parcel"] == "one_unit":
            items = (ReceivedItem(sku=next(iter(missing)), quantity=1),)
        else:
            items = tuple(ReceivedItem(sku=sku, quantity=q) for sku, q in missing.items())
        rma.receive_parcel(
            receipt_id=f"RCPT-{len(rma.state.receipts) + 1}",
            warehouse_id=WAREHOUSE,
            tracking_number=None,
            items=items,
            **common,
        )
    elif action == "inspect":
        waiting = [r for r in rma.state.receipts if r not in rma.state.inspected_receipts]
        receipts = waiting or rma.state.receipts
        receipt = receipts[0] if receipts else None
        parcel: tuple[ReceivedItem, ...] = (ReceivedItem(sku="SKU-1", quantity=1),)
        for event in rma.pending_events:
            if isinstance(event, ReturnParcelReceived) and event.receipt_id == receipt:
                parcel = event.items
        inspected = tuple(
            InspectedItem(
                sku=item.sku,
                quantity=item.quantity,
                condition=args["condition"],
                disposition=Disposition.RESTOCK,
                location_id=WAREHOUSE,
            )
            for item in parcel
        )
        rma.inspect(receipt_id=receipt, items=inspected, book=BOOK, **common)
    elif action in ("refund", "store_credit"):
        amount, shipping = payout_amounts(rma, args["amount"], args["shipping"])
        if action == "refund":
            rma.request_refund(
                refund_id=f"RF-{len(rma.state.refunds) + 1}",
                amount=amount,
                allocations=(),
                shipping=shipping,
                **common,
            )
        else:
            rma.issue_store_credit(
                credit_id=f"SC-{rma.version}",
                amount=amount,
                bonus=Money.zero("EUR"),
                shipping=shipping,
                **common,
            )
    elif action in ("settle", "fail"):
        requested = [rid for rid, r in rma.state.refunds.items() if r.status == "requested"]
        if not requested:
            raise NothingToDo("no refund requested")
        refund_id = requested[0] if args["which"] == "first" else requested[-1]
        if action == "settle":
            rma.settle_refund(refund_id, "PSP-1", rma.state.refunds[refund_id].amount, **common)
        else:
            rma.fail_refund(refund_id, "declined", **common)
    elif action == "exchange":
        rma.order_exchange(
            replacement_order_id=RETURN_ID,
            replacement_order_number="X-1",
            lines=(OrderLine(line_no=1, sku="SKU-1", quantity=2, unit_price=eur("0.00")),),
            **common,
        )
    else:
        rma.close_if_settled(**common)


def check_after_step(rma: Return) -> None:
    replayed = Return.replay(rma.id, rma.pending_events)
    assert same_state(replayed, rma)
    assert_payouts_within_what_is_owed(rma)
    assert_closed_only_when_done(rma)


FINISH: PayoutStep = {"parcel": "rest", "condition": Condition.RESELLABLE, "which": "first"}


def finish(rma: Return, clock: datetime) -> None:
    """Drive the RMA to its end as the application would: the rest of the items, every
    parcel inspected, every refund settled, what is owed paid (the items unless exchanged,
    and the shipping), or closed with nothing due."""
    for _ in range(12):
        if rma.state.status is ReturnStatus.CLOSED:
            return
        clock += timedelta(days=1)
        owed = rma.shipping_due_unpaid()
        if rma.state.replacement_order_id is None:
            owed = owed + rma.items_due_unpaid()
        if rma.outstanding_quantity() > 0:
            run_payout_step(rma, "receive", FINISH, clock)
        elif not set(rma.state.receipts) <= set(rma.state.inspected_receipts):
            run_payout_step(rma, "inspect", FINISH, clock)
        elif any(r.status == "requested" for r in rma.state.refunds.values()):
            run_payout_step(rma, "settle", FINISH, clock)
        elif owed.amount > 0:
            rma.request_refund(
                refund_id=f"RF-{len(rma.state.refunds) + 1}",
                amount=owed,
                allocations=(),
                shipping=rma.shipping_due_unpaid(),
                at=clock,
                cause=CAUSE,
            )
        else:
            rma.close_if_settled(clock, CAUSE)
        check_after_step(rma)


@PROPERTY
@given(
    reasons=st.tuples(st.sampled_from(list(ReasonCode)), st.sampled_from(list(ReasonCode))),
    commands=st.lists(payout_steps, min_size=4, max_size=20),
)
def test_payouts_over_several_parcels_stay_within_what_is_owed_and_the_rma_closes_when_done(
    reasons: tuple[ReasonCode, ReasonCode], commands: list[PayoutStep]
) -> None:
    """Two SKU-1 and one SKU-2 on one RMA, received in parcels, inspected, paid in parts by
    refunds and store credit that may fail, replayable and within what is owed after every
    step; then finished the way the application would, it closes."""
    order = return_order()
    lines = (RequestedLine(1, 2, reasons[0]), RequestedLine(2, 1, reasons[1]))
    rma = request(order, lines, day(10))
    execute(rma, order, "decide", step("decide")[1], day(10))
    assert rma.state.authorized_at == day(10)
    clock = day(11)
    for args in commands:
        action = args["action"]
        if action.startswith("guided:"):
            plausible = PAYOUT_PLAUSIBLE.get(rma.state.status, PAYOUT_ACTIONS)
            action = plausible[int(action.removeprefix("guided:")) % len(plausible)]
        clock += timedelta(days=1)
        before, emitted = snapshot(rma), len(rma.pending_events)
        try:
            run_payout_step(rma, action, args, clock)
        except DomainError:
            assert len(rma.pending_events) == emitted, f"refused {action} emitted an event"
            assert snapshot(rma) == before, f"refused {action} changed the state"
        check_after_step(rma)
    # A surplus parcel went to a blind return of its own: the RMA finishes regardless.
    finish(rma, clock)
    assert rma.state.status is ReturnStatus.CLOSED
