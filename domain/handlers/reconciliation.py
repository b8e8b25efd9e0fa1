"""Reconciling with the payment provider: a settlement file's lines against the refunds."""

from __future__ import annotations

from domain.commands import Outcome, ReconcileSettlement
from domain.handlers.scope import Handlers, Scope


def reconcile_settlement(c: ReconcileSettlement, s: Scope) -> Outcome:
    """The verdict on one line; an unknown refund is ``NotFound`` (the importer reports it
    as ``unknown_refund``: there is no aggregate to record it on)."""
    rma = s.return_of_refund(c.refund_id)
    finding = rma.reconcile_settlement(
        c.refund_id,
        provider=c.provider,
        payment_id=c.payment_id,
        provider_reference=c.provider_reference,
        amount=c.amount,
        status=c.status,
        at=s.at,
        cause=s.cause,
    )
    return Outcome(
        aggregate_id=rma.id,
        status=rma.state.status.value,
        rma_number=rma.state.rma_number,
        code=finding.verdict,
        message=finding.reason or None,
        refund_id=c.refund_id,
        amount=finding.expected,
    )


HANDLERS: Handlers = {ReconcileSettlement: reconcile_settlement}
