"""``rma policy simulate``: recorded return requests replayed against a candidate policy.

Reads the event store only (the ``rma.requested`` notifications, then each RMA's first
decision and its order): nothing is written, so it is safe on production.
"""

from __future__ import annotations

from datetime import datetime

from domain.application import ReturnsService
from domain.events import ReturnAuthorized, ReturnHeldForReview, ReturnRejected, ReturnRequested
from domain.order import Order
from domain.policy import PolicyBook
from domain.policy_simulation import SimulationReport

_PAGE = 500


def simulate(service: ReturnsService, candidate: PolicyBook, since: datetime) -> SimulationReport:
    report = SimulationReport()
    recorder = service.recorder
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
            report.add(
                str(requested.originator_id),
                order,
                requested.lines,
                decided.decisions,
                candidate,
                decided.timestamp,
            )
        start = page[-1].id
