"""Sweeps: what runs out changes with nobody asking (RMAs never shipped expire, keep-the-item
offers lapse), run by a timer in every integrations worker and by ``rma expire``.

A sweep is ``sweep(service, ctx, limit) -> ids changed``, at most ``limit`` a call; a round
calls each registered sweep in batches until one comes back short. Adding a sweep is one
line in ``SWEEPS``.

Once per RMA with several workers: a round takes a PostgreSQL advisory lock per sweep
(transaction-scoped, so a worker that dies frees it) and a worker that cannot get it skips
that sweep this round. The lock only saves work: correctness rests on the commands, which
change nothing when the deadline has not passed or the change was made already, and on
optimistic concurrency (two writers of one RMA: the loser reruns on the winner's events
and finds nothing to do).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

from adapters.driven.eventstore import OmsRecorder
from domain.application import Ctx, ReturnsService
from domain.events import Cause

log = logging.getLogger(__name__)

Sweep = Callable[[ReturnsService, Ctx, int], list[UUID]]

SWEEPS: dict[str, Sweep] = {
    "expire_returns": lambda service, ctx, limit: service.expire_returns(ctx, limit=limit),
    "lapse_keep_item_offers": lambda service, ctx, limit: service.lapse_offers(ctx, limit=limit),
    "close_unidentified_blind_returns": lambda service, ctx, limit: (
        service.close_unidentified_blind_returns(ctx, limit=limit)
    ),
}

# A round never runs one sweep for more than this many batches: the next round goes on.
MAX_BATCHES = 100


@dataclass
class RoundReport:
    """What one round did: per sweep, the ids it changed, or None if another worker held it."""

    changed: dict[str, list[UUID] | None] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.changed.values() if ids)


def lock_key(name: str) -> int:
    """The advisory lock of one sweep: a stable signed 64-bit number from its name."""
    digest = hashlib.blake2b(f"oms.sweep:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def sweep_ctx(actor: str, at: datetime | None = None) -> Ctx:
    return Ctx(
        Cause(actor=actor, source="oms/sweeps", correlation_id=f"sweep-{uuid.uuid4()}"), at=at
    )


def run_round(
    service: ReturnsService,
    *,
    batch: int = 500,
    actor: str = "scheduler",
    at: datetime | None = None,
    sweeps: Mapping[str, Sweep] | None = None,
) -> RoundReport:
    """Run every sweep once, in batches of ``batch``, each under its advisory lock."""
    recorder = service.recorder
    if not isinstance(recorder, OmsRecorder):
        raise TypeError(f"{type(recorder).__name__} has no PostgreSQL for the sweeps' locks")
    datastore: PostgresDatastore = recorder.datastore
    report = RoundReport()
    for name, sweep in (SWEEPS if sweeps is None else sweeps).items():
        with datastore.transaction(commit=False) as curs:
            curs.execute("SELECT pg_try_advisory_xact_lock(%s) AS locked", [lock_key(name)])
            row = curs.fetchone()
            if row is None or not row["locked"]:
                log.debug("sweep %s: another worker is running it", name)
                report.changed[name] = None
                continue
            report.changed[name] = _run_sweep(service, name, sweep, batch, actor, at)
    return report


def _run_sweep(
    service: ReturnsService,
    name: str,
    sweep: Sweep,
    batch: int,
    actor: str,
    at: datetime | None,
) -> list[UUID]:
    changed: list[UUID] = []
    started = time.monotonic()
    for number in range(1, MAX_BATCHES + 1):
        ids = sweep(service, sweep_ctx(actor, at), batch)
        changed.extend(ids)
        if ids:
            log.info(
                "sweep %s: batch %d changed %d RMAs (%d this round, %.1f s)",
                name,
                number,
                len(ids),
                len(changed),
                time.monotonic() - started,
            )
        if len(ids) < batch:
            break
    else:
        log.warning("sweep %s: %d batches this round; the next round goes on", name, MAX_BATCHES)
    return changed
