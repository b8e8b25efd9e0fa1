"""Refunds waiting for the payment provider: find them, count their dispatches, re-send them.

Dispatch is at least once. Kafka brings each ``rma.refund_requested`` to the dispatcher
once in the normal case, but a broker that lost its data, a provider that was down or a
settlement lost on its way back leave a refund ``requested`` for good. So the truth about
what still waits is read from PostgreSQL (``oms_refunds``, kept with the events), and a
refund with no answer after ``OMS_REFUND_RESEND_AFTER_S`` is sent again under the same
refund id, which the provider deduplicates.

Attempts live in ``oms_refund_dispatches``, outside the Return aggregate: a re-send moves
no money and changes no state, so it is delivery bookkeeping, not an event. Claiming a
refund for a re-send is one conditional upsert, so the re-send timers of two integrations
workers never both take one refund, and each refund goes again at most once per period
(a send the Kafka path made restarts its period). Should two sends still meet, the
provider's dedupe by refund id makes the second harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import DictRow
from psycopg.sql import SQL

from adapters.driven.eventstore import OmsRecorder
from adapters.driven.payments import RefundInstruction, payment_shares
from domain.application import ReturnsService
from domain.errors import NotFound

log = logging.getLogger(__name__)

# A refund is due for sending again when nothing was sent for ``resend_after`` (counted from
# its request when it was never sent), or when an operator asked after the last send.
_DUE = """
    (COALESCE(d.last_dispatched_at, r.requested_at, '-infinity') <= now() - %(after)s
     OR d.resend_requested_at > COALESCE(d.last_dispatched_at, '-infinity'))"""

_PENDING = """
SELECT r.refund_id, r.return_id, t.rma_number, r.amount, r.currency, r.requested_at,
       COALESCE(d.attempts, 0) AS attempts, d.last_dispatched_at, d.resend_requested_at
FROM oms_refunds r
LEFT JOIN oms_refund_dispatches d USING (refund_id)
LEFT JOIN oms_returns t USING (return_id)
WHERE (r.status IS NULL OR r.status = 'requested')
  AND COALESCE(r.requested_at, '-infinity') <= now() - %(older_than)s"""

_CLAIM = f"""
WITH due AS (
    SELECT r.refund_id FROM oms_refunds r
    LEFT JOIN oms_refund_dispatches d USING (refund_id)
    WHERE (r.status IS NULL OR r.status = 'requested') AND {_DUE}
    ORDER BY r.requested_at NULLS FIRST
    LIMIT %(limit)s
)
INSERT INTO oms_refund_dispatches AS d (refund_id, attempts, last_dispatched_at)
SELECT refund_id, 1, now() FROM due
ON CONFLICT (refund_id) DO UPDATE SET attempts = d.attempts + 1, last_dispatched_at = now()
    WHERE COALESCE(d.last_dispatched_at, '-infinity') <= now() - %(after)s
       OR d.resend_requested_at > COALESCE(d.last_dispatched_at, '-infinity')
RETURNING d.refund_id, d.attempts"""


@dataclass(frozen=True)
class PendingRefund:
    refund_id: str
    return_id: UUID
    rma_number: str | None
    amount: Decimal | None
    currency: str | None
    requested_at: datetime | None
    attempts: int
    last_dispatched_at: datetime | None
    resend_requested_at: datetime | None


class RefundDispatches:
    """The dispatcher's bookkeeping on the event store's database (tables in eventstore.py)."""

    def __init__(self, service: ReturnsService) -> None:
        recorder = service.recorder
        if not isinstance(recorder, OmsRecorder):
            raise TypeError(f"{type(recorder).__name__} keeps no refund lookups")
        self.service = service
        self.datastore: PostgresDatastore = recorder.datastore

    def _rows(self, statement: str, params: dict[str, Any]) -> list[DictRow]:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL(statement).format(), params)
            return list(curs.fetchall()) if curs.description else []

    def pending(self, older_than_s: float = 0, limit: int = 1000) -> list[PendingRefund]:
        """Refunds the provider has not answered, oldest first."""
        rows = self._rows(
            _PENDING + " ORDER BY r.requested_at NULLS FIRST, r.refund_id LIMIT %(limit)s",
            {"older_than": _interval(older_than_s), "limit": limit},
        )
        return [PendingRefund(**row) for row in rows]

    def record_dispatched(self, refund_ids: Sequence[str]) -> None:
        """The dispatcher sent these (first sends, from Kafka): the period starts again."""
        if refund_ids:
            self._rows(
                "INSERT INTO oms_refund_dispatches AS d (refund_id, attempts, last_dispatched_at)"
                " SELECT unnest(%(ids)s::text[]), 1, now() ON CONFLICT (refund_id) DO UPDATE"
                " SET attempts = d.attempts + 1, last_dispatched_at = now()",
                {"ids": list(dict.fromkeys(refund_ids))},
            )

    def still_open(self, refund_ids: Sequence[str]) -> set[str]:
        """Of these refunds, the ones still waiting for the provider (or of unknown status)."""
        if not refund_ids:
            return set()
        rows = self._rows(
            "SELECT refund_id, status FROM oms_refunds WHERE refund_id = ANY(%(ids)s)",
            {"ids": list(refund_ids)},
        )
        answered = {r["refund_id"] for r in rows if r["status"] in ("settled", "failed")}
        return set(refund_ids) - answered

    def request_resend(
        self, *, by: str, refund_ids: Sequence[str] = (), older_than_s: float | None = None
    ) -> list[str]:
        """Ask the dispatcher to send these pending refunds again at its next round (within
        seconds); returns the refunds asked for. Refunds no longer pending are left alone."""
        if older_than_s is not None:
            chosen = [p.refund_id for p in self.pending(older_than_s, limit=1_000_000)]
        else:
            rows = self._rows(
                "SELECT refund_id FROM oms_refunds WHERE refund_id = ANY(%(ids)s)"
                " AND (status IS NULL OR status = 'requested')",
                {"ids": list(refund_ids)},
            )
            open_ids = {row["refund_id"] for row in rows}
            chosen = [rid for rid in dict.fromkeys(refund_ids) if rid in open_ids]
        return self._ask(chosen, by)

    def request_resend_of_return(self, return_id: UUID, *, by: str) -> list[str]:
        rows = self._rows(
            "SELECT refund_id FROM oms_refunds WHERE return_id = %(id)s"
            " AND (status IS NULL OR status = 'requested')",
            {"id": return_id},
        )
        return self._ask([row["refund_id"] for row in rows], by)

    def _ask(self, refund_ids: list[str], by: str) -> list[str]:
        if refund_ids:
            self._rows(
                "INSERT INTO oms_refund_dispatches AS d (refund_id, resend_requested_at,"
                " resend_requested_by) SELECT unnest(%(ids)s::text[]), now(), %(by)s"
                " ON CONFLICT (refund_id) DO UPDATE SET resend_requested_at = now(),"
                " resend_requested_by = %(by)s",
                {"ids": refund_ids, "by": by},
            )
        return refund_ids

    def claim_due(self, resend_after_s: float, limit: int = 200) -> list[tuple[str, int]]:
        """Refunds to send again now, each claimed by this caller alone (attempt counted)."""
        rows = self._rows(_CLAIM, {"after": _interval(resend_after_s), "limit": limit})
        return [(row["refund_id"], row["attempts"]) for row in rows]

    def instruction(self, refund_id: str) -> RefundInstruction | None:
        """What to send the provider again, from the RMA itself; None once it answered."""
        try:
            rma = self.service.get_return_of_refund(refund_id)
        except NotFound:
            return None
        refund = rma.state.refunds.get(refund_id)
        if refund is None:
            return None
        if refund.status != "requested":
            # A row from before oms_refunds kept statuses: learn it once, from the RMA.
            self._rows(
                "UPDATE oms_refunds SET status = %(status)s"
                " WHERE refund_id = %(id)s AND status IS NULL",
                {"status": refund.status, "id": refund_id},
            )
            return None
        return RefundInstruction(
            refund_id=refund_id,
            amount=str(refund.amount.amount),
            currency=refund.amount.currency,
            methods=tuple(a.method.value for a in refund.allocations),
            payments=payment_shares(
                (a.payment_id, a.method.value, str(a.amount.amount)) for a in refund.allocations
            ),
        )


def _interval(seconds: float) -> timedelta:
    return timedelta(seconds=max(0.0, seconds))
