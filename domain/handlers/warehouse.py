"""The warehouse: parcels received (blind ones detected) and items inspected."""

from __future__ import annotations

from domain.commands import InspectItems, Outcome, ReceiveParcel
from domain.errors import DomainError
from domain.handlers.blind_returns import try_automatic_match
from domain.handlers.scope import Handlers, Scope, outcome_of
from domain.handlers.settlement import settle_with_customer
from domain.returns import Return, blind_return_id_for


def receive_parcel(c: ReceiveParcel, s: Scope) -> Outcome:
    """A parcel at the warehouse: for its RMA, or a blind return when none is known."""
    rma: Return | None = None
    if c.rma_number:
        try:
            rma = s.return_by_rma(c.rma_number)
        except DomainError:  # unknown or malformed: the goods still need a home
            rma = None
    if rma is None:
        existing = s.uow.get(Return, blind_return_id_for(c.receipt_id))
        if existing is not None:
            return outcome_of(existing)
        rma = Return.detect_blind(
            receipt_id=c.receipt_id,
            warehouse_id=c.warehouse_id,
            tracking_number=c.tracking_number,
            claimed_rma_number=c.rma_number,
            order_number_hint=c.order_number,
            items=tuple(c.items),
            at=s.at,
            cause=s.cause,
        )
        s.uow.add(rma)
        return try_automatic_match(s, rma)
    rma.receive_parcel(
        receipt_id=c.receipt_id,
        warehouse_id=c.warehouse_id,
        tracking_number=c.tracking_number,
        items=tuple(c.items),
        at=s.at,
        cause=s.cause,
    )
    if c.receipt_id not in rma.state.unexpected_receipts:
        return outcome_of(rma)
    # Goods nobody can take in under this RMA still need a home, an inspection and
    # perhaps a refund: the blind-return queue is where customer service does that.
    blind = s.uow.get(Return, blind_return_id_for(c.receipt_id))
    if blind is None:
        blind = Return.detect_blind(
            receipt_id=c.receipt_id,
            warehouse_id=c.warehouse_id,
            tracking_number=c.tracking_number,
            claimed_rma_number=rma.state.rma_number,
            order_number_hint=rma.state.order_number,
            items=tuple(c.items),
            at=s.at,
            cause=s.cause,
        )
        s.uow.add(blind)
        return try_automatic_match(s, blind)
    return outcome_of(blind)


def inspect_items(c: InspectItems, s: Scope) -> Outcome:
    rma = s.return_by_rma(c.rma_number)
    rma.inspect(
        receipt_id=c.receipt_id,
        items=tuple(c.items),
        book=s.book,
        at=s.at,
        cause=s.cause,
    )
    return settle_with_customer(s, rma)


HANDLERS: Handlers = {ReceiveParcel: receive_parcel, InspectItems: inspect_items}
