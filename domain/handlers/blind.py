"""Blind returns: a parcel nobody announced, matched to its order by customer service."""

from __future__ import annotations

from domain.commands import MatchBlindReturn, Outcome
from domain.handlers.scope import Handlers, Scope, outcome_of
from domain.returns import quantities_of


def match_blind_return(c: MatchBlindReturn, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    order = s.order(c.order_number)
    rma.match_blind(
        order=order,
        lines=tuple(c.lines),
        matched_by=c.matched_by,
        rma_number=s.new_rma_number(),
        book=s.book,
        at=s.at,
        cause=s.cause,
    )
    order.reserve_return(rma.id, quantities_of(rma.state.lines), s.at, s.cause)
    return outcome_of(rma)


HANDLERS: Handlers = {MatchBlindReturn: match_blind_return}
