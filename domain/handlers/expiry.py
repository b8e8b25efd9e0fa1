"""Deadlines nobody acts on: keep-the-item offers that lapse (expiry of RMAs never shipped
is ``ExpireReturn`` in requests.py). Both are no-ops when the deadline has not passed or
the change was already made, so a sweep run twice, or by two workers, changes nothing twice.
"""

from __future__ import annotations

from domain.commands import LapseKeepItemOffer, Outcome
from domain.handlers.scope import Handlers, Scope, outcome_of


def lapse_keep_item_offer(c: LapseKeepItemOffer, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.lapse_keep_item(s.at, s.cause)
    return outcome_of(rma)


HANDLERS: Handlers = {
    LapseKeepItemOffer: lapse_keep_item_offer,
}
