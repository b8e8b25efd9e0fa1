"""Blind returns: a parcel nobody announced, matched to its order by customer service."""

from __future__ import annotations

from domain.commands import MatchBlindReturn, Outcome
from domain.handlers.blind_returns import match_and_settle
from domain.handlers.scope import Handlers, Scope


def match_blind_return(c: MatchBlindReturn, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    order = s.order(c.order_number)
    # An inspection recorded before the match is paid for now, from what it found.
    return match_and_settle(s, rma, order, tuple(c.lines), c.matched_by)


HANDLERS: Handlers = {MatchBlindReturn: match_blind_return}
