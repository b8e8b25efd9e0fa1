"""RMA requests and their review: request, approve, refuse, label, cancel, expire, resolution."""

from __future__ import annotations

from datetime import timedelta

from domain.commands import (
    ApproveReturn,
    CancelReturn,
    ChangeResolution,
    ExpireReturn,
    IssueLabel,
    Outcome,
    RefuseReturn,
    RequestReturn,
)
from domain.handlers.instant_exchange import ship_instant_exchange
from domain.handlers.scope import Handlers, Scope, label_for, outcome_of
from domain.returns import Return, ReturnStatus, quantities_of


def request_return(c: RequestReturn, s: Scope) -> Outcome:
    order = s.order(c.order_number)
    rma = Return.request(
        c.return_id,
        order=order,
        lines=tuple(c.lines),
        channel=c.channel,
        method=c.method,
        refund_method=c.refund_method,
        comment=c.comment,
        at=s.at,
        cause=s.cause,
    )
    order.reserve_return(rma.id, quantities_of(rma.state.lines), s.at, s.cause)
    rma_number = s.new_rma_number()
    rules = s.book.review
    earlier = None
    if rules.counts_returns():
        since = s.at - timedelta(days=rules.serial_returner_days)
        earlier = s.returns_of_customer_since(order.state.customer_id, since, besides=rma.id)
    rma.decide(
        order=order,
        book=s.book,
        rma_number=rma_number,
        destination_warehouse=s.warehouse,
        label_reference=label_for(rma_number),
        at=s.at,
        cause=s.cause,
        earlier_returns=earlier,
    )
    if rma.state.status is ReturnStatus.REJECTED:
        order.release_return(rma.id, s.at, s.cause)
    s.uow.add(rma)
    ship_instant_exchange(s, rma, order)
    return outcome_of(rma)


def approve_return(c: ApproveReturn, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    order = s.order_of(rma)
    rma_number = s.new_rma_number()
    rma.approve(
        order=order,
        book=s.book,
        rma_number=rma_number,
        destination_warehouse=s.warehouse,
        label_reference=label_for(rma_number),
        at=s.at,
        cause=s.cause,
    )
    ship_instant_exchange(s, rma, order)
    return outcome_of(rma)


def refuse_return(c: RefuseReturn, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.refuse(c.reason, s.at, s.cause)
    s.order_of(rma).release_return(rma.id, s.at, s.cause)
    return outcome_of(rma)


def issue_label(c: IssueLabel, s: Scope) -> Outcome:
    rma = s.return_by_rma(c.rma_number)
    reissue = rma.state.label_reference or label_for(c.rma_number)
    rma.issue_label(f"{reissue}-R{rma.version}", c.carrier, s.at, s.cause)
    return outcome_of(rma)


def cancel_return(c: CancelReturn, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.cancel(c.reason, s.at, s.cause)
    s.order_of(rma).release_return(rma.id, s.at, s.cause)
    return outcome_of(rma)


def expire_return(c: ExpireReturn, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    if rma.expire(s.book, s.at, s.cause):
        s.order_of(rma).release_return(rma.id, s.at, s.cause)
    return outcome_of(rma)


def change_resolution(c: ChangeResolution, s: Scope) -> Outcome:
    """Refund, store credit or exchange instead of what was chosen, until the first
    payment or exchange; inspection then settles the new way."""
    rma = s.return_(c.return_id)
    rma.change_resolution(c.refund_method, c.reason, s.at, s.cause)
    return outcome_of(rma)


HANDLERS: Handlers = {
    RequestReturn: request_return,
    ApproveReturn: approve_return,
    RefuseReturn: refuse_return,
    IssueLabel: issue_label,
    CancelReturn: cancel_return,
    ExpireReturn: expire_return,
    ChangeResolution: change_resolution,
}
