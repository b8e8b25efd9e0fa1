"""The store counter: a return recorded, inspected on the spot and paid back at once."""

from __future__ import annotations

from domain.commands import Outcome, RecordInStoreReturn
from domain.handlers.scope import Handlers, Scope, outcome_of
from domain.handlers.settlement import settle_with_customer
from domain.returns import Return, quantities_of, store_return_id_for


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


HANDLERS: Handlers = {RecordInStoreReturn: record_in_store_return}
