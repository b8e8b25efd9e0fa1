"""``rma policy simulate``: recorded return requests replayed against a candidate policy.

Reads the event store only (the ``rma.requested`` notifications, then each RMA's first
decision and its order, and the returns lookup for the customer's earlier returns):
nothing is written, so it is safe on production.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.application import ReturnsService
from domain.events import ReturnAuthorized, ReturnHeldForReview, ReturnRejected, ReturnRequested
from domain.order import Order
from domain.policy import PolicyBook
from domain.policy_simulation import AUTHORIZED, HELD, REJECTED, Recorded, SimulationReport
from domain.returns.lines import shipping_refund_for

_PAGE = 500


def simulate(service: ReturnsService, candidate: PolicyBook, since: datetime) -> SimulationReport:
    report = SimulationReport()
    recorder = service.recorder
    rules = candidate.review
    start: int | None = None
    while True:
        page = recorder.select_notifications(
            start, _PAGE, topics=[ReturnRequested.type_name], inclusive_of_start=start is None
        )
        if not page:
            return report
        for notification in page:
            requested = service.mapper.to_domain_event(notification)
            if not isinstance(requested, ReturnRequested) or requested.timestamp < since:
                continue
            decided = next(
                (
                    e
                    for e in service.stored_events(requested.originator_id)
                    if isinstance(e, ReturnAuthorized | ReturnHeldForReview | ReturnRejected)
                ),
                None,
            )
            order = service.load(Order, requested.order_id)
            if decided is None or not isinstance(order, Order):
                continue  # not decided yet: nothing recorded to compare with
            earlier = None
            if rules.counts_returns():
                # The customer's returns as they stood when this one was decided.
                found = service.lookups.returns_of_customer_since(
                    requested.customer_id,
                    decided.timestamp - timedelta(days=rules.serial_returner_days),
                    until=decided.timestamp,
                )
                earlier = len(set(found) - {requested.originator_id})
            if isinstance(decided, ReturnAuthorized):
                recorded = Recorded(AUTHORIZED, decided.decisions)
                shipping = decided.shipping_refund
            else:
                outcome = HELD if isinstance(decided, ReturnHeldForReview) else REJECTED
                rules_named = decided.rules if isinstance(decided, ReturnHeldForReview) else ()
                recorded = Recorded(outcome, decided.decisions, rules_named)
                # Not recorded on a hold: as the order stands now (once refunded, nil).
                shipping = shipping_refund_for(order, requested.lines)
            report.add(
                str(requested.originator_id),
                order,
                requested.lines,
                recorded,
                candidate,
                decided.timestamp,
                earlier_returns=earlier,
                shipping=shipping,
            )
        start = page[-1].id
