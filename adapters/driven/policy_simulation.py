"""``rma policy simulate``: recorded return requests replayed against a candidate policy.

Reads the event store only (the ``rma.requested`` notifications, then each RMA's first
decision and its order, and the returns lookup for the customer's earlier returns):
nothing is written, so it is safe on production.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast
from uuid import UUID

from domain.application import ReturnsService
from domain.events import (
    DomainEvent,
    OrderEvent,
    ReturnAuthorized,
    ReturnHeldForReview,
    ReturnRejected,
    ReturnRequested,
)
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
        requests = [
            event
            for event in (service.mapper.to_domain_event(n) for n in page)
            if isinstance(event, ReturnRequested) and event.timestamp >= since
        ]
        # Every RMA and order of the page in one round trip, not two per request.
        stored = _events_of(
            service, [r.originator_id for r in requests] + [r.order_id for r in requests]
        )
        for requested in requests:
            decided = next(
                (
                    e
                    for e in stored.get(requested.originator_id, [])
                    if isinstance(e, ReturnAuthorized | ReturnHeldForReview | ReturnRejected)
                ),
                None,
            )
            order_events = stored.get(requested.order_id)
            order = (
                Order.replay(requested.order_id, cast(list[OrderEvent], order_events))
                if order_events
                else None
            )
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


def _events_of(service: ReturnsService, ids: list[UUID]) -> dict[UUID, list[DomainEvent]]:
    rows = service.lookups.load_events(list(dict.fromkeys(ids)))
    return {
        aggregate_id: [cast(DomainEvent, service.mapper.to_domain_event(row)) for row in found]
        for aggregate_id, found in rows.items()
    }
