"""Builders for the unit tests: explicit histories ("given") and ready-made aggregates.

Orders are given as explicit events (``OrderHistory``), replayed with ``Order.replay``.
Returns are given by running the earlier commands and collecting their events, so a
test's ``pending_events`` holds exactly what its "when" step emitted.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from uuid import UUID, uuid5

import orjson

from adapters.driven.relay import cloud_event_for
from domain.events import (
    Cause,
    DomainEvent,
    FulfilledLine,
    InspectedItem,
    OrderCancelled,
    OrderDelivered,
    OrderEvent,
    OrderLine,
    OrderLinesFulfilled,
    OrderPlaced,
    OrderRefundAllocated,
    OrderRefundReleased,
    OrderReturnReleased,
    OrderReturnReserved,
    Payment,
    ReceivedItem,
    RefundAllocation,
    ReturnEvent,
    ReturnLine,
    ReturnRequested,
)
from domain.order import Order, order_id_for
from domain.policy import PolicyBook
from domain.returns import RequestedLine, Return
from domain.serialization import event_to_json
from domain.values import (
    Channel,
    Condition,
    Disposition,
    Money,
    PaymentMethod,
    ReasonCode,
    RefundMethod,
    ReturnChannel,
    ReturnMethod,
)
from projections.core import Event, Projection, State, reduce_all

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
"""When the order of every test is placed; ``day(n)`` counts from here."""

CAUSE = Cause(actor="agent-7", source="unit-tests", correlation_id="corr-1")
BOOK = PolicyBook()
ORDER_NUMBER = "WEB-1001"
ORDER_ID = order_id_for(ORDER_NUMBER)
RETURN_ID = UUID("00000000-0000-4000-8000-000000000001")
OTHER_RETURN_ID = UUID("00000000-0000-4000-8000-000000000002")
RMA = "RMA-7K2Q-M4XD"
WAREHOUSE = "WH-RET"
LABEL = "LBL-7K2Q-M4XD"


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def eur(amount: str | int) -> Money:
    return Money.of(amount, "EUR")


def usd(amount: str | int) -> Money:
    return Money.of(amount, "USD")


def zero() -> Money:
    return Money.zero("EUR")


# ---------------------------------------------------------------- order values
def line(
    line_no: int = 1,
    *,
    quantity: int = 1,
    price: str = "50.00",
    sku: str | None = None,
    serials: tuple[str, ...] = (),
    category: str = "general",
    returnable: bool = True,
    warranty_months: int | None = None,
    supplier: str = "ACME",
    currency: str = "EUR",
) -> OrderLine:
    return OrderLine(
        line_no=line_no,
        sku=sku or f"SKU-{line_no}",
        name=f"item {line_no}",
        quantity=quantity,
        unit_price=Money.of(price, currency),
        serials=serials,
        supplier=supplier,
        category=category,
        returnable=returnable,
        warranty_months=warranty_months,
    )


def payment(
    amount: str, payment_id: str = "PAY-CARD", method: PaymentMethod = PaymentMethod.CARD
) -> Payment:
    return Payment(payment_id=payment_id, method=method, amount=eur(amount))


def allocation(amount: str, payment_id: str | None = "PAY-CARD") -> RefundAllocation:
    method = PaymentMethod.STORE_CREDIT if payment_id is None else PaymentMethod.CARD
    return RefundAllocation(payment_id=payment_id, method=method, amount=eur(amount))


def value_of(lines: tuple[OrderLine, ...], shipping: Money) -> Money:
    total = shipping
    for order_line in lines:
        total = total + order_line.unit_price.times(order_line.quantity)
    return total


def place(
    *lines: OrderLine,
    payments: tuple[Payment, ...] | None = None,
    shipping: str = "5.00",
    channel: Channel = Channel.WEB,
    store_id: str | None = None,
    order_number: str = ORDER_NUMBER,
    at: datetime = T0,
) -> Order:
    """Run ``Order.place`` with sensible defaults: one card payment of the whole value."""
    order_lines = lines or (line(),)
    ship = eur(shipping)
    if payments is None:
        payments = (
            Payment(
                payment_id="PAY-CARD", method=PaymentMethod.CARD, amount=value_of(order_lines, ship)
            ),
        )
    return Order.place(
        order_number=order_number,
        customer_id="CUST-1",
        customer_email="ada@example.com",
        channel=channel,
        lines=order_lines,
        payments=payments,
        shipping=ship,
        at=at,
        cause=CAUSE,
        store_id=store_id,
    )


# ---------------------------------------------------------------- order histories
class OrderHistory:
    """The events of one order, numbered in sequence: the "given" of an order test."""

    def __init__(self, order_number: str = ORDER_NUMBER) -> None:
        self.order_number = order_number
        self.id = order_id_for(order_number)
        self.events: list[OrderEvent] = []
        self.lines: tuple[OrderLine, ...] = ()

    def _add(self, event_class: type[OrderEvent], at: datetime, **fields: Any) -> Self:
        self.events.append(
            event_class(
                originator_id=self.id,
                originator_version=len(self.events) + 1,
                timestamp=at,
                cause=CAUSE,
                **fields,
            )
        )
        return self

    def placed(
        self,
        *lines: OrderLine,
        payments: tuple[Payment, ...] | None = None,
        shipping: str = "5.00",
        channel: Channel = Channel.WEB,
        store_id: str | None = None,
        at: datetime = T0,
    ) -> Self:
        self.lines = lines or (line(),)
        ship = eur(shipping)
        if payments is None:
            payments = (payment(str(value_of(self.lines, ship).amount)),)
        return self._add(
            OrderPlaced,
            at,
            order_number=self.order_number,
            customer_id="CUST-1",
            customer_email="ada@example.com",
            channel=channel,
            store_id=store_id,
            currency="EUR",
            lines=self.lines,
            payments=payments,
            shipping=ship,
        )

    def fulfilled(
        self,
        quantities: dict[int, int] | None = None,
        *,
        serials: dict[int, tuple[str, ...]] | None = None,
        location_id: str = "WH-1",
        at: datetime | None = None,
    ) -> Self:
        """Ship ``quantities`` per line (default: every line in full) with their serials."""
        wanted = quantities or {ln.line_no: ln.quantity for ln in self.lines}
        given_serials = serials or {ln.line_no: ln.serials for ln in self.lines}
        fulfilled = tuple(
            FulfilledLine(line_no=no, quantity=qty, serials=given_serials.get(no, ()))
            for no, qty in wanted.items()
        )
        return self._add(
            OrderLinesFulfilled, at or day(1), location_id=location_id, lines=fulfilled
        )

    def delivered(self, at: datetime | None = None) -> Self:
        moment = at or day(2)
        return self._add(OrderDelivered, moment, delivered_at=moment)

    def cancelled(self, reason: str = "customer asked", at: datetime | None = None) -> Self:
        return self._add(OrderCancelled, at or day(1), reason=reason)

    def return_reserved(
        self, return_id: UUID, quantities: dict[int, int], at: datetime | None = None
    ) -> Self:
        return self._add(
            OrderReturnReserved, at or day(5), return_id=return_id, quantities=quantities
        )

    def return_released(self, return_id: UUID, at: datetime | None = None) -> Self:
        return self._add(OrderReturnReleased, at or day(6), return_id=return_id)

    def refund_allocated(
        self,
        refund_id: str,
        *allocations: RefundAllocation,
        return_id: UUID = RETURN_ID,
        shipping: str = "0.00",
        at: datetime | None = None,
    ) -> Self:
        return self._add(
            OrderRefundAllocated,
            at or day(20),
            refund_id=refund_id,
            return_id=return_id,
            allocations=allocations,
            shipping_refunded=eur(shipping),
        )

    def refund_released(
        self, refund_id: str, reason: str = "card expired", at: datetime | None = None
    ) -> Self:
        return self._add(OrderRefundReleased, at or day(21), refund_id=refund_id, reason=reason)

    def order(self) -> Order:
        return Order.replay(self.id, self.events)


def delivered_order(
    *lines: OrderLine,
    shipping: str = "5.00",
    payments: tuple[Payment, ...] | None = None,
    delivered_on: float = 2,
) -> Order:
    """A web order shipped in full (serials as listed on its lines) and delivered."""
    return (
        OrderHistory()
        .placed(*lines, shipping=shipping, payments=payments)
        .fulfilled()
        .delivered(day(delivered_on))
        .order()
    )


def store_sale(*lines: OrderLine, shipping: str = "0.00") -> Order:
    """Sold and handed over at a store counter on ``T0``."""
    return (
        OrderHistory("STORE-77")
        .placed(*lines, shipping=shipping, channel=Channel.STORE, store_id="STORE-PARIS-1")
        .order()
    )


# ---------------------------------------------------------------- returns
def wants(
    line_no: int = 1,
    quantity: int = 1,
    reason: ReasonCode = ReasonCode.CHANGED_MIND,
    serial: str | None = None,
) -> RequestedLine:
    return RequestedLine(line_no=line_no, quantity=quantity, reason=reason, serial=serial)


def given(rma: Return) -> Return:
    """Rebuild a freshly commanded aggregate from the events it emitted, and forget them.

    Only for an aggregate that has been live since its creation: its pending events are
    then its whole history, and the test's ``pending_events`` start empty.
    """
    return Return.replay(rma.id, rma.collect_events())


def requested_return(
    order: Order,
    *lines: RequestedLine,
    at: datetime | None = None,
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT,
    return_id: UUID = RETURN_ID,
) -> Return:
    rma = Return.request(
        return_id,
        order=order,
        lines=lines or (wants(),),
        channel=ReturnChannel.PORTAL,
        method=ReturnMethod.CARRIER_DROP_OFF,
        refund_method=refund_method,
        comment="",
        at=at or day(10),
        cause=CAUSE,
    )
    return rma


def decide(
    rma: Return,
    order: Order,
    *,
    at: datetime | None = None,
    book: PolicyBook = BOOK,
    rma_number: str = RMA,
) -> None:
    rma.decide(
        order=order,
        book=book,
        rma_number=rma_number,
        destination_warehouse=WAREHOUSE,
        label_reference=LABEL,
        at=at or day(10),
        cause=CAUSE,
    )


def authorized_return(
    order: Order,
    *lines: RequestedLine,
    at: datetime | None = None,
    book: PolicyBook = BOOK,
    return_id: UUID = RETURN_ID,
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT,
) -> Return:
    """Requested and authorized on ``at`` (default day 10)."""
    rma = requested_return(order, *lines, at=at, return_id=return_id, refund_method=refund_method)
    decide(rma, order, at=at, book=book)
    return given(rma)


def received(sku: str = "SKU-1", quantity: int = 1, serial: str | None = None) -> ReceivedItem:
    return ReceivedItem(sku=sku, quantity=quantity, serial=serial)


def receive(
    rma: Return,
    *items: ReceivedItem,
    receipt_id: str = "RCPT-1",
    at: datetime | None = None,
) -> None:
    rma.receive_parcel(
        receipt_id=receipt_id,
        warehouse_id=WAREHOUSE,
        tracking_number="TRK-1",
        items=items or (received(),),
        at=at or day(15),
        cause=CAUSE,
    )


def inspected(
    sku: str = "SKU-1",
    quantity: int = 1,
    condition: Condition = Condition.RESELLABLE,
    disposition: Disposition = Disposition.RESTOCK,
    serial: str | None = None,
    line_no: int | None = None,
) -> InspectedItem:
    return InspectedItem(
        sku=sku,
        quantity=quantity,
        serial=serial,
        condition=condition,
        disposition=disposition,
        line_no=line_no,
        location_id=WAREHOUSE,
    )


def inspect(
    rma: Return,
    *items: InspectedItem,
    receipt_id: str | None = "RCPT-1",
    at: datetime | None = None,
    book: PolicyBook = BOOK,
) -> None:
    rma.inspect(
        receipt_id=receipt_id,
        items=items or (inspected(),),
        book=book,
        at=at or day(16),
        cause=CAUSE,
    )


def received_return(order: Order, *lines: RequestedLine, book: PolicyBook = BOOK) -> Return:
    """Authorized on day 10, its parcel RCPT-1 (one SKU-1) received on day 15."""
    rma = requested_return(order, *lines)
    decide(rma, order, book=book)
    receive(rma)
    return given(rma)


def inspected_return(
    order: Order,
    *items: InspectedItem,
    lines: tuple[RequestedLine, ...] = (),
    book: PolicyBook = BOOK,
) -> Return:
    """Authorized, received and inspected (by default one resellable SKU-1) on day 16."""
    rma = requested_return(order, *lines)
    decide(rma, order, book=book)
    receive(rma)
    inspect(rma, *items, book=book)
    return given(rma)


def request_refund(
    rma: Return,
    amount: str,
    refund_id: str = "RF-1",
    *,
    shipping: str | None = None,
    keep_item: bool = False,
    at: datetime | None = None,
) -> None:
    """Ask for ``amount`` (of which ``shipping`` pays the order's shipping back) by card."""
    rma.request_refund(
        refund_id=refund_id,
        amount=eur(amount),
        allocations=(allocation(amount),) if amount != "0.00" else (),
        shipping=eur(shipping) if shipping is not None else None,
        at=at or day(16),
        cause=CAUSE,
        keep_item=keep_item,
    )


def issue_store_credit(
    rma: Return,
    amount: str,
    credit_id: str = "SC-1",
    *,
    bonus: str = "0.00",
    shipping: str | None = None,
    at: datetime | None = None,
) -> None:
    rma.issue_store_credit(
        credit_id=credit_id,
        amount=eur(amount),
        bonus=eur(bonus),
        shipping=eur(shipping) if shipping is not None else None,
        at=at or day(17),
        cause=CAUSE,
    )


def blind_parcel(receipt_id: str = "RCPT-B1", *items: ReceivedItem) -> Return:
    return Return.detect_blind(
        receipt_id=receipt_id,
        warehouse_id=WAREHOUSE,
        tracking_number="TRK-9",
        claimed_rma_number=None,
        order_number_hint=ORDER_NUMBER,
        items=items or (received(),),
        at=day(12),
        cause=CAUSE,
    )


# ---------------------------------------------------------------- the shop order and its returns
# Shared by the Return aggregate tests (test_return_requests.py and its siblings).
def shop_lines() -> tuple[OrderLine, ...]:
    return (
        line(1, quantity=2, price="40.00", serials=("SN-1", "SN-2")),
        line(2, price="10.00"),
    )


def shop_history() -> OrderHistory:
    return OrderHistory().placed(*shop_lines(), shipping="5.00").fulfilled().delivered(day(2))


def shop_order() -> Order:
    """Delivered on day 2: line 1 is two of SKU-1 at 40.00 with serials SN-1 and SN-2,
    line 2 one SKU-2 at 10.00; shipping 5.00, paid by card."""
    return shop_history().order()


def last(rma: Return) -> Any:
    return rma.pending_events[-1]


def types(rma: Return) -> tuple[type[Any], ...]:
    return tuple(type(event) for event in rma.pending_events)


def snapshot(rma: Return) -> tuple[int, dict[str, Any]]:
    return rma.version, dataclasses.asdict(rma.state)


def record_in_store(
    order: Order, *lines: RequestedLine, at: datetime, book: PolicyBook = BOOK
) -> Return:
    return Return.record_in_store(
        store_return_id="SR-1",
        store_id="STORE-PARIS-1",
        staff_id="STAFF-9",
        order=order,
        lines=lines or (wants(),),
        refund_method=RefundMethod.ORIGINAL_PAYMENT,
        rma_number=RMA,
        book=book,
        at=at,
        cause=CAUSE,
    )


def match(rma: Return, order: Order, *lines: RequestedLine, at: datetime | None = None) -> None:
    rma.match_blind(
        order=order,
        lines=lines or (wants(),),
        matched_by="serial",
        rma_number=RMA,
        book=BOOK,
        at=at or day(13),
        cause=CAUSE,
    )


def expensive_order() -> Order:
    return (
        OrderHistory()
        .placed(line(1, quantity=2, price="600.00"), shipping="0.00")
        .fulfilled()
        .delivered()
        .order()
    )


def two_item_rma(reason: ReasonCode = ReasonCode.CHANGED_MIND) -> Return:
    """Two SKU-1 (SN-1, SN-2) authorized on day 10; nothing received yet."""
    return authorized_return(shop_order(), wants(1, quantity=2, reason=reason))


# ---------------------------------------------------------------- relayed event stories
# The reducer tests tell stories with the real event catalogue (domain/events.py), turned
# into what projectors consume exactly as the relay does (``cloud_event_for``), so a
# renamed field breaks these tests rather than production. ``story_line`` and
# ``story_payment`` have their own defaults (supplier "Acme", category "shoes", a "PAY-1"
# card): importers alias them to ``line`` and ``payment``.
_NS = UUID("6f1c4a52-0000-4000-8000-000000000000")


def uid(name: str) -> UUID:
    return uuid5(_NS, name)


def wire(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


class Story:
    """Events of several aggregates in event-store order, numbered like the real store."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.domain_events: list[DomainEvent] = []
        self._versions: dict[UUID, int] = {}
        self._clock = itertools.count()

    def add(
        self, cls: type[DomainEvent], aggregate: UUID, at: datetime | None = None, **fields: Any
    ) -> Event:
        version = self._versions.get(aggregate, 0) + 1
        self._versions[aggregate] = version
        moment = at or T0 + timedelta(minutes=next(self._clock))
        event = cls(
            originator_id=aggregate,
            originator_version=version,
            timestamp=moment,
            cause=CAUSE,
            **fields,
        )
        self.domain_events.append(event)
        position = len(self.events) + 1
        row = (position, aggregate, version, cls.type_name, orjson.dumps(event_to_json(event)))
        relayed = Event.from_cloud_event(cloud_event_for(row))
        self.events.append(relayed)
        return relayed


def story_line(
    line_no: int = 1,
    sku: str = "SKU-1",
    quantity: int = 1,
    price: str = "50.00",
    supplier: str = "Acme",
    category: str = "shoes",
) -> OrderLine:
    return OrderLine(
        line_no=line_no,
        sku=sku,
        quantity=quantity,
        unit_price=eur(price),
        supplier=supplier,
        category=category,
    )


def story_payment(amount: str, method: str = "card", payment_id: str = "PAY-1") -> Payment:
    return Payment.model_validate(
        {"payment_id": payment_id, "method": method, "amount": wire(amount)}
    )


def return_line(
    line_no: int = 1,
    sku: str = "SKU-1",
    quantity: int = 1,
    reason: str = "size_too_small",
    price: str = "50.00",
    supplier: str = "Acme",
    category: str = "shoes",
) -> ReturnLine:
    return ReturnLine.model_validate(
        {
            "line_no": line_no,
            "sku": sku,
            "quantity": quantity,
            "reason": reason,
            "unit_price": wire(price),
            "supplier": supplier,
            "category": category,
        }
    )


def return_requested(
    story: Story, return_id: UUID, order_id: UUID, lines: tuple[ReturnLine, ...], **overrides: Any
) -> Event:
    """A portal request of order WEB-1 by customer C-1, refunded to the original payment."""
    fields: dict[str, Any] = {
        "order_id": order_id,
        "order_number": "WEB-1",
        "customer_id": "C-1",
        "channel": "portal",
        "order_channel": "web",
        "method": "carrier_drop_off",
        "refund_method": "original_payment",
        "currency": "EUR",
        "lines": lines,
    }
    return story.add(ReturnRequested, return_id, **{**fields, **overrides})


def decision(line_no: int = 1, fee: str = "0.00", accepted: bool = True) -> dict[str, Any]:
    return {
        "line_no": line_no,
        "accepted": accepted,
        "code": "accepted" if accepted else "outside_return_window",
        "within_window": accepted,
        "under_warranty": False,
        "restocking_fee": wire(fee),
        "terms": {
            "window_days": 30,
            "warranty_months": 24,
            "restocking_fee_rate": "0.10",
            "late_change_of_mind_days": 14,
            "returnable": True,
        },
    }


def assert_folds_like_reduce(projection: Projection, events: Sequence[Event]) -> None:
    """``reduce_all`` (what the store and a rebuild run) against ``reduce`` event by event
    (the pure definition): same states, same changes, and the events left untouched
    (several projections read the same events of a batch one after another)."""
    before = [orjson.dumps(event.data) for event in events]
    states: dict[str, State] = {}
    expected: list[Any] = []
    for event in [*events, *events[:3]]:  # the tail again: a redelivery
        new, produced = projection.reduce(states.get(event.aggregate_id), event)
        if new is not None:
            states[event.aggregate_id] = new
        expected += produced
    folded: dict[str, State] = {}
    got = reduce_all(projection, folded, events)
    got += reduce_all(projection, folded, events[:3])
    assert orjson.dumps(folded, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        states, option=orjson.OPT_SORT_KEYS
    )
    assert got == expected
    assert [orjson.dumps(event.data) for event in events] == before


def relayed(events: list[ReturnEvent]) -> list[Event]:
    """The aggregate's own events as projectors consume them, numbered like the store."""
    return [
        Event.from_cloud_event(
            cloud_event_for(
                (
                    position,
                    event.originator_id,
                    event.originator_version,
                    event.type_name,
                    orjson.dumps(event_to_json(event)),
                )
            )
        )
        for position, event in enumerate(events, start=1)
    ]
