"""The Order aggregate: what was sold and paid, and the consistency boundary for returns.

Quantities set aside for returns and money refunded live here, not on each RMA: two RMAs
of one order are saved against this aggregate's version, so concurrent requests or refunds
can never together return more than was bought nor refund more than was paid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.aggregate import Aggregate
from domain.errors import (
    ContradictsSale,
    InvalidCommand,
    InvalidTransition,
    QuantityExceeded,
    RefundLimitExceeded,
)
from domain.events import (
    Cause,
    FulfilledLine,
    OrderCancelled,
    OrderDelivered,
    OrderEvent,
    OrderLine,
    OrderLinesFulfilled,
    OrderPlaced,
    OrderRefundAllocated,
    OrderRefundReleased,
    OrderReplacementCreated,
    OrderReturnReleased,
    OrderReturnReserved,
    Payment,
    RefundAllocation,
)
from domain.store_credit import CODE_LENGTH, is_store_credit_code
from domain.values import Channel, Money, PaymentMethod

ORDER_NAMESPACE = uuid5(NAMESPACE_URL, "urn:oms:order")


def order_id_for(order_number: str) -> UUID:
    """Order ids derive from the commerce platform's number: a re-sent order.placed collides."""
    return uuid5(ORDER_NAMESPACE, order_number)


@dataclass
class Allocation:
    return_id: UUID
    allocations: tuple[RefundAllocation, ...]
    shipping: Money
    released: bool = False


@dataclass
class OrderState:
    order_number: str = ""
    customer_id: str = ""
    customer_email: str | None = None
    channel: Channel = Channel.WEB
    store_id: str | None = None
    currency: str = "EUR"
    placed_at: datetime | None = None
    lines: dict[int, OrderLine] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    shipping: Money | None = None
    fulfilled: dict[int, int] = field(default_factory=dict)
    fulfilled_serials: dict[int, list[str]] = field(default_factory=dict)
    fulfilment_locations: dict[int, str] = field(default_factory=dict)
    delivered_at: datetime | None = None
    cancelled: bool = False
    reserved: dict[UUID, dict[int, int]] = field(default_factory=dict)
    refunds: dict[str, Allocation] = field(default_factory=dict)
    replacement_for: UUID | None = None
    replacements: list[UUID] = field(default_factory=list)


class Order(Aggregate[OrderEvent]):
    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.state = OrderState()

    # ------------------------------------------------------------ commands
    @classmethod
    def place(
        cls,
        *,
        order_number: str,
        customer_id: str,
        customer_email: str | None,
        channel: Channel,
        lines: tuple[OrderLine, ...],
        payments: tuple[Payment, ...],
        shipping: Money,
        at: datetime,
        cause: Cause,
        store_id: str | None = None,
        replacement_for: UUID | None = None,
        replacement_return_id: UUID | None = None,
        reservation_location: str | None = None,
    ) -> Order:
        check_order_is_well_formed(order_number, lines, payments, shipping, channel, store_id)
        is_replacement = replacement_for is not None
        paid = sum_amounts([p.amount for p in payments], shipping.currency)
        due = sum_amounts([ln.unit_price.times(ln.quantity) for ln in lines], shipping.currency)
        due = due + shipping
        if not is_replacement and paid != due:
            raise InvalidCommand(f"payments total {paid} but the order is worth {due}")
        order = cls(order_id_for(order_number))
        order._trigger(
            OrderPlaced,
            cause,
            at,
            order_number=order_number,
            customer_id=customer_id,
            customer_email=customer_email,
            channel=channel,
            store_id=store_id,
            currency=shipping.currency,
            lines=lines,
            payments=payments,
            shipping=shipping,
            replacement_for=replacement_for,
            replacement_return_id=replacement_return_id,
            reservation_location=reservation_location,
        )
        return order

    def fulfil(
        self, location_id: str, lines: tuple[FulfilledLine, ...], at: datetime, cause: Cause
    ) -> None:
        self.check_not_cancelled()
        if not lines:
            raise InvalidCommand("a fulfilment needs at least one line")
        if self.state.channel is Channel.STORE:
            # Handed over at the counter when sold (``apply``): a POS that reports the
            # fulfilment too only repeats the sale, which changes nothing.
            self.check_repeats_store_sale(location_id, lines)
            return
        shipping_now: dict[int, int] = {}
        for line in lines:
            ordered = self.line(line.line_no)
            shipping_now[line.line_no] = shipping_now.get(line.line_no, 0) + line.quantity
            already = self.state.fulfilled.get(line.line_no, 0)
            if already + shipping_now[line.line_no] > ordered.quantity:
                raise QuantityExceeded(
                    f"line {line.line_no}: fulfilling {shipping_now[line.line_no]}, "
                    f"only {ordered.quantity - already} still open"
                )
            if len(line.serials) > line.quantity:
                raise InvalidCommand(f"line {line.line_no}: more serials than items")
        self._trigger(OrderLinesFulfilled, cause, at, location_id=location_id, lines=lines)

    def deliver(self, delivered_at: datetime, cause: Cause) -> None:
        self.check_not_cancelled()
        if self.state.channel is Channel.STORE:
            # Delivered at the counter when sold; its return window runs from the sale
            # (``reference_date``), so a reported delivery time could change nothing.
            return
        if not self.state.fulfilled:
            raise InvalidTransition(f"order {self.state.order_number} was never fulfilled")
        if self.state.delivered_at is not None:
            raise InvalidTransition(f"order {self.state.order_number} is already delivered")
        self._trigger(OrderDelivered, cause, delivered_at, delivered_at=delivered_at)

    def cancel(self, reason: str, at: datetime, cause: Cause) -> None:
        self.check_not_cancelled()
        if self.state.fulfilled:
            raise InvalidTransition(
                f"order {self.state.order_number} has shipped lines: return them instead"
            )
        self._trigger(OrderCancelled, cause, at, reason=reason)

    def reserve_return(
        self, return_id: UUID, quantities: dict[int, int], at: datetime, cause: Cause
    ) -> None:
        if return_id in self.state.reserved:
            raise InvalidTransition(f"return {return_id} already holds quantities")
        available = self.returnable_quantities()
        for line_no, quantity in quantities.items():
            self.line(line_no)
            if quantity < 1:
                raise InvalidCommand(f"line {line_no}: quantity must be positive")
            if quantity > available.get(line_no, 0):
                raise QuantityExceeded(
                    f"line {line_no}: {quantity} requested, {available.get(line_no, 0)} returnable"
                )
        self._trigger(OrderReturnReserved, cause, at, return_id=return_id, quantities=quantities)

    def release_return(self, return_id: UUID, at: datetime, cause: Cause) -> None:
        if return_id not in self.state.reserved:
            return
        self._trigger(OrderReturnReleased, cause, at, return_id=return_id)

    def allocate_refund(
        self,
        *,
        refund_id: str,
        return_id: UUID,
        allocations: tuple[RefundAllocation, ...],
        shipping_refunded: Money,
        at: datetime,
        cause: Cause,
    ) -> None:
        if refund_id in self.state.refunds:
            raise InvalidTransition(f"refund {refund_id} is already allocated")
        refunded = self.refunded_by_payment()
        total = sum_amounts([a.amount for a in allocations], self.state.currency)
        asked: dict[str, Money] = {}
        for allocation in allocations:
            if allocation.amount.amount <= 0 or allocation.amount.currency != self.state.currency:
                raise InvalidCommand(f"refund allocations are positive {self.state.currency}")
            if allocation.payment_id is None:
                continue
            payment = self.state.payments.get(allocation.payment_id)
            if payment is None:
                raise InvalidCommand(f"unknown payment {allocation.payment_id}")
            zero = Money.zero(self.state.currency)
            asked[payment.payment_id] = asked.get(payment.payment_id, zero) + allocation.amount
            already = refunded.get(payment.payment_id, zero)
            if already + asked[payment.payment_id] > payment.amount:
                raise RefundLimitExceeded(
                    f"payment {payment.payment_id} captured {payment.amount}, "
                    f"{already} already refunded, {asked[payment.payment_id]} more refused"
                )
        if self.total_refunded() + total > self.total_paid():
            raise RefundLimitExceeded(
                f"order {self.state.order_number} paid {self.total_paid()}, "
                f"{self.total_refunded()} already refunded, {total} more refused"
            )
        if not shipping_refunded.is_zero and self.shipping_refunded():
            raise RefundLimitExceeded("shipping was already refunded for this order")
        self._trigger(
            OrderRefundAllocated,
            cause,
            at,
            refund_id=refund_id,
            return_id=return_id,
            allocations=allocations,
            shipping_refunded=shipping_refunded,
        )

    def release_refund(self, refund_id: str, reason: str, at: datetime, cause: Cause) -> None:
        allocation = self.state.refunds.get(refund_id)
        if allocation is None or allocation.released:
            return
        self._trigger(OrderRefundReleased, cause, at, refund_id=refund_id, reason=reason)

    def record_replacement(
        self, replacement_order_id: UUID, return_id: UUID, at: datetime, cause: Cause
    ) -> None:
        self._trigger(
            OrderReplacementCreated,
            cause,
            at,
            replacement_order_id=replacement_order_id,
            return_id=return_id,
        )

    # ------------------------------------------------------------ guards and queries
    def check_repeats_store_sale(self, location_id: str, lines: tuple[FulfilledLine, ...]) -> None:
        """A store sale's fulfilment may name some of its lines, each whole, from the store
        that sold it, with no serial the sale did not record; anything else contradicts it."""
        number, store = self.state.order_number, self.state.store_id
        if location_id != store:
            raise ContradictsSale(
                f"store sale {number} was handed over at {store}, not fulfilled from {location_id}"
            )
        quantities: dict[int, int] = {}
        for line in lines:
            quantities[line.line_no] = quantities.get(line.line_no, 0) + line.quantity
            sold = set(self.line(line.line_no).serials)
            other = sorted(set(line.serials) - sold)
            if other:
                raise ContradictsSale(
                    f"store sale {number} line {line.line_no} sold serials {sorted(sold)},"
                    f" not {other}"
                )
        for line_no, quantity in sorted(quantities.items()):
            sold_quantity = self.line(line_no).quantity
            if quantity != sold_quantity:
                raise ContradictsSale(
                    f"store sale {number} line {line_no} handed over {sold_quantity},"
                    f" not {quantity}"
                )

    def check_not_cancelled(self) -> None:
        if self.state.cancelled:
            raise InvalidTransition(f"order {self.state.order_number} is cancelled")

    def line(self, line_no: int) -> OrderLine:
        try:
            return self.state.lines[line_no]
        except KeyError:
            raise InvalidCommand(f"order {self.state.order_number} has no line {line_no}") from None

    def returnable_quantities(self) -> dict[int, int]:
        """Per line: shipped (or sold at the counter) minus what open or past returns hold."""
        held: dict[int, int] = {}
        for quantities in self.state.reserved.values():
            for line_no, quantity in quantities.items():
                held[line_no] = held.get(line_no, 0) + quantity
        return {
            line_no: max(0, self.state.fulfilled.get(line_no, 0) - held.get(line_no, 0))
            for line_no in self.state.lines
        }

    def refunded_by_payment(self) -> dict[str, Money]:
        totals: dict[str, Money] = {}
        for allocation in self.state.refunds.values():
            if allocation.released:
                continue
            for part in allocation.allocations:
                if part.payment_id is not None:
                    previous = totals.get(part.payment_id, Money.zero(self.state.currency))
                    totals[part.payment_id] = previous + part.amount
        return totals

    def total_refunded(self) -> Money:
        parts = [
            part.amount
            for allocation in self.state.refunds.values()
            if not allocation.released
            for part in allocation.allocations
        ]
        return sum_amounts(parts, self.state.currency)

    def total_paid(self) -> Money:
        return sum_amounts([p.amount for p in self.state.payments.values()], self.state.currency)

    def shipping_refunded(self) -> bool:
        return any(not a.released and not a.shipping.is_zero for a in self.state.refunds.values())

    def refund_capacities(self) -> list[tuple[str, PaymentMethod, Money]]:
        refunded = self.refunded_by_payment()
        zero = Money.zero(self.state.currency)
        return [
            (p.payment_id, p.method, p.amount - refunded.get(p.payment_id, zero))
            for p in self.state.payments.values()
        ]

    def reference_date(self) -> datetime | None:
        """The day the return window starts: delivery, or the sale itself at a store counter."""
        if self.state.channel is Channel.STORE:
            return self.state.placed_at
        return self.state.delivered_at

    def serial_line(self, serial: str) -> int | None:
        for line_no, line in self.state.lines.items():
            if serial in line.serials or serial in self.state.fulfilled_serials.get(line_no, []):
                return line_no
        return None

    # ------------------------------------------------------------ evolution
    def apply(self, event: OrderEvent) -> None:
        s = self.state
        match event:
            case OrderPlaced():
                s.order_number = event.order_number
                s.customer_id = event.customer_id
                s.customer_email = event.customer_email
                s.channel = event.channel
                s.store_id = event.store_id
                s.currency = event.currency
                s.placed_at = event.timestamp
                s.lines = {line.line_no: line for line in event.lines}
                s.payments = {p.payment_id: p for p in event.payments}
                s.shipping = event.shipping
                s.replacement_for = event.replacement_for
                if event.channel is Channel.STORE:
                    # Sold and handed over at the counter: shipped and delivered at once.
                    s.fulfilled = {line.line_no: line.quantity for line in event.lines}
                    s.fulfilled_serials = {ln.line_no: list(ln.serials) for ln in event.lines}
                    s.delivered_at = event.timestamp
                    if event.store_id:
                        s.fulfilment_locations = {ln.line_no: event.store_id for ln in event.lines}
            case OrderLinesFulfilled():
                for line in event.lines:
                    s.fulfilled[line.line_no] = s.fulfilled.get(line.line_no, 0) + line.quantity
                    s.fulfilled_serials.setdefault(line.line_no, []).extend(line.serials)
                    s.fulfilment_locations[line.line_no] = event.location_id
            case OrderDelivered():
                s.delivered_at = event.delivered_at
            case OrderCancelled():
                s.cancelled = True
            case OrderReturnReserved():
                s.reserved[event.return_id] = dict(event.quantities)
            case OrderReturnReleased():
                s.reserved.pop(event.return_id, None)
            case OrderRefundAllocated():
                s.refunds[event.refund_id] = Allocation(
                    event.return_id, event.allocations, event.shipping_refunded
                )
            case OrderRefundReleased():
                s.refunds[event.refund_id].released = True
            case OrderReplacementCreated():
                s.replacements.append(event.replacement_order_id)


def sum_amounts(amounts: list[Money], currency: str) -> Money:
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total


def check_order_is_well_formed(
    order_number: str,
    lines: tuple[OrderLine, ...],
    payments: tuple[Payment, ...],
    shipping: Money,
    channel: Channel,
    store_id: str | None,
) -> None:
    if not order_number.strip():
        raise InvalidCommand("an order needs an order number")
    if not lines:
        raise InvalidCommand(f"order {order_number} has no lines")
    numbers = [line.line_no for line in lines]
    if len(set(numbers)) != len(numbers):
        raise InvalidCommand(f"order {order_number} repeats a line number")
    currency = shipping.currency
    if shipping.amount < 0:
        raise InvalidCommand(f"order {order_number} has negative shipping {shipping}")
    for line in lines:
        if line.unit_price.currency != currency:
            raise InvalidCommand(
                f"line {line.line_no} is in {line.unit_price.currency}, the order in {currency}"
            )
        if line.unit_price.amount < 0:
            raise InvalidCommand(f"line {line.line_no} has a negative price")
        if len(line.serials) > line.quantity:
            raise InvalidCommand(f"line {line.line_no} lists more serials than items")
    for payment in payments:
        if payment.amount.currency != currency or payment.amount.amount <= 0:
            raise InvalidCommand(
                f"payment {payment.payment_id} must be a positive {currency} amount"
            )
        code = payment.store_credit_code
        if code is not None and (
            payment.method is not PaymentMethod.STORE_CREDIT or not is_store_credit_code(code)
        ):
            raise InvalidCommand(
                f"payment {payment.payment_id}: only a store_credit payment names a store-credit"
                f" code (SC- and {CODE_LENGTH} base32 characters)"
            )
    if len({p.payment_id for p in payments}) != len(payments):
        raise InvalidCommand(f"order {order_number} repeats a payment id")
    if channel is Channel.STORE and not store_id:
        raise InvalidCommand("a store sale names its store")
