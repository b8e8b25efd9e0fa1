"""The store counter: a return recorded, inspected on the spot and paid back at once; and
a store-method RMA brought to any store, received and inspected there the same way."""

from __future__ import annotations

from domain.commands import Outcome, ReceiveRmaAtCounter, RecordInStoreReturn
from domain.errors import InvalidCommand, InvalidTransition, QuantityExceeded, WrongReturnMethod
from domain.events import ReceivedItem
from domain.handlers.scope import Handlers, Scope, outcome_of
from domain.handlers.settlement import settle_with_customer
from domain.returns import CounterCheck, Return, ReturnStatus, quantities_of, store_return_id_for
from domain.returns.state import OPEN_FOR_MORE_PARCELS, OPEN_FOR_PARCELS
from domain.values import ReturnMethod


def record_in_store_return(c: RecordInStoreReturn, s: Scope) -> Outcome:
    existing = s.uow.get(Return, store_return_id_for(c.store_id, c.store_return_id))
    if existing is not None:
        return outcome_of(existing)
    order = s.order(c.order_number)
    rma = Return.record_in_store(
        store_return_id=c.store_return_id,
        store_id=c.store_id,
        staff_id=c.staff_id,
        order=order,
        lines=tuple(c.lines),
        refund_method=c.refund_method,
        rma_number=s.new_rma_number(),
        book=s.book,
        at=s.at,
        cause=s.cause,
    )
    order.reserve_return(rma.id, quantities_of(rma.state.lines), s.at, s.cause)
    s.uow.add(rma)
    rma.inspect(
        receipt_id=c.store_return_id,
        items=rma.counter_inspection(tuple(c.checks), c.store_id),
        book=s.book,
        at=s.at,
        cause=s.cause,
    )
    return settle_with_customer(s, rma)


def receive_rma_at_counter(c: ReceiveRmaAtCounter, s: Scope) -> Outcome:
    """The RMA's own goods, so its reserved quantities are the ones coming back: no new
    return. The store is the receipt's location and the counter's check its inspection."""
    rma = s.return_by_rma(c.rma_number)
    if c.store_return_id in rma.state.inspected_receipts:
        return outcome_of(rma)  # the same counter receipt again
    check_can_take_at_counter(rma, order_number=c.order_number, checks=tuple(c.checks))
    items = rma.counter_inspection(tuple(c.checks), c.store_id)
    rma.receive_parcel(
        receipt_id=c.store_return_id,
        warehouse_id=c.store_id,
        tracking_number=None,
        items=tuple(ReceivedItem(sku=i.sku, quantity=i.quantity, serial=i.serial) for i in items),
        at=s.at,
        cause=s.cause,
    )
    rma.inspect(receipt_id=c.store_return_id, items=items, book=s.book, at=s.at, cause=s.cause)
    return settle_with_customer(s, rma, method=c.refund_method)


def still_to_bring(rma: Return) -> dict[int, int]:
    """Per RMA line, the quantity not received yet. Received items name a SKU, not a line:
    they count against the RMA's lines of that SKU in line order."""
    received: dict[str, int] = {}
    for item in rma.state.received_items:
        received[item.sku] = received.get(item.sku, 0) + item.quantity
    left: dict[int, int] = {}
    for line_no, line in sorted(rma.state.lines.items()):
        taken = min(line.quantity, received.get(line.sku, 0))
        received[line.sku] = received.get(line.sku, 0) - taken
        left[line_no] = line.quantity - taken
    return left


def check_can_take_at_counter(
    rma: Return, *, order_number: str | None = None, checks: tuple[CounterCheck, ...] = ()
) -> None:
    """Refused before anything is recorded: at a counter the customer still holds the goods,
    so a refusal leaves no parcel to home (unlike one arriving at the warehouse)."""
    state = rma.state
    number = state.rma_number
    if order_number is not None and order_number != state.order_number:
        raise InvalidCommand(f"RMA {number} is for order {state.order_number}, not {order_number}")
    if state.method is not ReturnMethod.STORE:
        method = state.method.value if state.method else "none"
        raise WrongReturnMethod(
            f"RMA {number} is to be returned by {method}, not at a store: customer service"
            " can cancel it, and the counter then records an in-store return of the order"
        )
    open_ = state.status in OPEN_FOR_PARCELS or (
        state.status in OPEN_FOR_MORE_PARCELS and rma.outstanding_quantity() > 0
    )
    if not open_:
        if state.status in OPEN_FOR_MORE_PARCELS or state.status is ReturnStatus.CLOSED:
            raise InvalidTransition(f"RMA {number} was already received in full")
        raise InvalidTransition(f"RMA {number} is {state.status.value}: it takes no goods")
    left = still_to_bring(rma)
    for line_no in sorted({check.line_no for check in checks}):
        if line_no not in left:
            continue  # counter_inspection names the line that is not on the RMA
        brought = sum(check.quantity for check in checks if check.line_no == line_no)
        if brought > left[line_no]:
            raise QuantityExceeded(
                f"RMA {number} line {line_no}: {brought} brought, {left[line_no]} still to bring"
            )


HANDLERS: Handlers = {
    RecordInStoreReturn: record_in_store_return,
    ReceiveRmaAtCounter: receive_rma_at_counter,
}
