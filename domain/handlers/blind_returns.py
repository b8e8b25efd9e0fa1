"""Blind returns that run to their end: matched at receipt when the parcel proves or names
its order, inspected before their match, linked to the return another system reported,
or closed as unidentified after the policy's time."""

from __future__ import annotations

from uuid import UUID

from domain.commands import (
    CloseUnidentifiedBlindReturn,
    InspectBlindReturn,
    LinkBlindReturn,
    Outcome,
)
from domain.errors import NotFound
from domain.handlers.blind_matching import AUTOMATIC, automatic_match, candidates
from domain.handlers.scope import Handlers, Scope, outcome_of
from domain.handlers.settlement import settle_with_customer
from domain.order import Order
from domain.returns import RequestedLine, Return, blind_return_id_for, quantities_of

SYSTEM_ACTOR = "system/blind-auto-match"
"""The actor of a match nobody made by hand: the audit trail says the system placed it."""


def match_and_settle(
    s: Scope,
    rma: Return,
    order: Order,
    lines: tuple[RequestedLine, ...],
    matched_by: str,
) -> Outcome:
    """Match, reserve the items on the order, and pay for an inspection already recorded."""
    rma.match_blind(
        order=order,
        lines=lines,
        matched_by=matched_by,
        rma_number=s.new_rma_number(),
        book=s.book,
        at=s.at,
        cause=s.cause,
    )
    order.reserve_return(rma.id, quantities_of(rma.state.lines), s.at, s.cause)
    if rma.assess_blind_inspection(s.book, s.at, s.cause):
        return settle_with_customer(s, rma)
    return outcome_of(rma)


def try_automatic_match(s: Scope, rma: Return) -> Outcome:
    """Right after detection: match the parcel if exactly one order fits it whole."""

    def load_return(return_id: UUID) -> Return | None:
        return s.uow.get(Return, return_id)

    found = candidates(
        rma.state,
        s.lookups,
        lambda order_id: s.uow.get(Order, order_id),
        load_return,
        wide=False,
    )
    chosen = automatic_match(found)
    if chosen is None:
        return outcome_of(rma)  # none or several: customer service decides, with suggestions
    system = Scope(
        s.uow,
        s.cause.model_copy(update={"actor": SYSTEM_ACTOR}),
        s.at,
        s.book,
        s.warehouse,
        s.lookups,
        s.new_rma_number,
    )
    return match_and_settle(system, rma, chosen.order, chosen.fit.lines, AUTOMATIC[chosen.by])


def inspect_blind_return(c: InspectBlindReturn, s: Scope) -> Outcome:
    rma = s.uow.get(Return, blind_return_id_for(c.receipt_id))
    if rma is None:
        # NotFound, so a message that came before its parcel can wait and be retried.
        raise NotFound(
            f"receipt {c.receipt_id} is unknown: no blind return was opened by it "
            "(an inspection of an RMA's parcel names its rma_number)"
        )
    if rma.state.order_id is not None:
        # Matched already (perhaps at receipt): an ordinary inspection of its RMA.
        rma.inspect(receipt_id=c.receipt_id, items=c.items, book=s.book, at=s.at, cause=s.cause)
        return settle_with_customer(s, rma)
    rma.inspect_blind(items=c.items, at=s.at, cause=s.cause)
    return outcome_of(rma)


def link_blind_return(c: LinkBlindReturn, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    try:
        other = s.return_(UUID(c.linked))
    except ValueError:
        other = s.return_by_rma(c.linked)
    rma.link_to(other, c.reason, s.at, s.cause)
    return outcome_of(rma)


def close_unidentified(c: CloseUnidentifiedBlindReturn, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.close_unidentified(s.book, s.at, s.cause)
    return outcome_of(rma)


HANDLERS: Handlers = {
    InspectBlindReturn: inspect_blind_return,
    LinkBlindReturn: link_blind_return,
    CloseUnidentifiedBlindReturn: close_unidentified,
}
