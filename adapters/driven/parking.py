"""Inbound messages that came before what they refer to, parked in PostgreSQL and retried.

An in-store return or an inspection can reach us before its order or RMA (another topic,
another producer, a platform that publishes late). Refused as ``not_found``, it is parked
here, with its raw bytes, topic, key and headers, instead of the dead-letter topic; the
integrations worker retries it every ``OMS_PARK_RETRY_S`` and as soon as a batch of
orders went through, and dead-letters it with the reason once it has waited
``OMS_PARK_FOR_S``. A retry runs the same message again under the same idempotency key,
so once its order is there it applies once, however often it was tried.

Retrying workers claim rows with ``FOR UPDATE SKIP LOCKED`` and push the claimed rows'
next attempt one lease ahead in the same statement: two workers never retry one message
at once (``claimed_until``, which waking them for new orders leaves alone), and a worker
that dies mid-retry leaves its rows to the next round after the lease. A row is
deleted only once its message applied or its dead letter was published: nothing is lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import DictRow
from psycopg.sql import SQL

from adapters.driven.eventstore import OmsRecorder
from domain.application import ReturnsService

PARKED_CODES = frozenset({"not_found"})
"""Refusals that park: the order, RMA or receipt is unknown, so it may yet come. Every other
refusal is final for that message and goes to the dead-letter topic at once."""

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS oms_parked_messages (
        message_id text PRIMARY KEY,
        topic text NOT NULL,
        kafka_partition integer NOT NULL,
        kafka_offset bigint NOT NULL,
        kafka_key bytea,
        value bytea NOT NULL,
        header_names text[] NOT NULL,
        header_values bytea[] NOT NULL,
        timestamp_ms bigint,
        code text NOT NULL,
        reason text NOT NULL,
        parked_at timestamptz NOT NULL DEFAULT now(),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        claimed_until timestamptz)""",
    "CREATE INDEX IF NOT EXISTS oms_parked_due ON oms_parked_messages (next_attempt_at)",
]

_PARK = """
INSERT INTO oms_parked_messages AS p (message_id, topic, kafka_partition, kafka_offset,
    kafka_key, value, header_names, header_values, timestamp_ms, code, reason, next_attempt_at)
VALUES (%(message_id)s, %(topic)s, %(partition)s, %(offset)s, %(key)s, %(value)s,
    %(header_names)s, %(header_values)s, %(timestamp_ms)s, %(code)s, %(reason)s,
    now() + %(retry)s)
ON CONFLICT (message_id) DO UPDATE SET code = excluded.code, reason = excluded.reason"""

_CLAIM = """
UPDATE oms_parked_messages AS p
SET attempts = p.attempts + 1, next_attempt_at = now() + %(retry)s,
    claimed_until = now() + %(lease)s
WHERE p.message_id IN (
    SELECT message_id FROM oms_parked_messages
    WHERE next_attempt_at <= now() AND coalesce(claimed_until, '-infinity') <= now()
    ORDER BY parked_at, message_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING p.*, extract(epoch FROM now() - p.parked_at)::float8 AS parked_for_s"""


@dataclass(frozen=True)
class ParkedMessage:
    message_id: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None
    code: str
    reason: str
    parked_at: datetime | None = None
    """First parked; None until the database recorded it."""
    attempts: int = 0
    parked_for_s: float = 0.0


def message_id(topic: str, value: bytes) -> str:
    """The same bytes on the same topic are the same message (a redelivery, a replay)."""
    return f"{topic}|{hashlib.sha256(value).hexdigest()}"


class ParkedMessages:
    """The parking on the event store's database; its table is created on first use."""

    def __init__(self, service: ReturnsService) -> None:
        recorder = service.recorder
        if not isinstance(recorder, OmsRecorder):
            raise TypeError(f"{type(recorder).__name__} has no PostgreSQL datastore")
        self.datastore: PostgresDatastore = recorder.datastore
        with self.datastore.transaction(commit=True) as curs:
            # Two workers starting together would race on CREATE TABLE IF NOT EXISTS.
            curs.execute(SQL("SELECT pg_advisory_xact_lock(hashtext('oms_parked_messages'))"))
            for statement in _SCHEMA:
                curs.execute(SQL(statement))

    def _rows(self, statement: str, params: dict[str, Any] | None = None) -> list[DictRow]:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL(statement).format(), params or {})
            return list(curs.fetchall()) if curs.description else []

    def park(self, messages: Sequence[ParkedMessage], retry_after_s: float) -> None:
        """Park (or re-park: same bytes, same row, first parked time kept) these messages."""
        if not messages:
            return
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                SQL(_PARK),
                [
                    {
                        "message_id": m.message_id,
                        "topic": m.topic,
                        "partition": m.partition,
                        "offset": m.offset,
                        "key": m.key,
                        "value": m.value,
                        "header_names": [name for name, _ in m.headers],
                        "header_values": [value for _, value in m.headers],
                        "timestamp_ms": m.timestamp_ms,
                        "code": m.code,
                        "reason": m.reason[:1000],
                        "retry": _interval(retry_after_s),
                    }
                    for m in messages
                ],
            )

    def claim_due(
        self, retry_s: float, lease_s: float = 60, limit: int = 500
    ) -> list[ParkedMessage]:
        """Messages due for a retry, each claimed by this caller alone until it says how the
        retry went, or for ``lease_s`` at most; the next retry is due ``retry_s`` on."""
        params = {"retry": _interval(retry_s), "lease": _interval(lease_s), "limit": limit}
        rows = self._rows(_CLAIM, params)
        return [_parked(row) for row in rows]

    def still_parked(self, message_id: str, code: str, reason: str) -> None:
        self._rows(
            "UPDATE oms_parked_messages SET code = %(code)s, reason = %(reason)s,"
            " claimed_until = NULL WHERE message_id = %(id)s",
            {"id": message_id, "code": code, "reason": reason[:1000]},
        )

    def unclaim(self, message_ids: Sequence[str]) -> None:
        """The retry could not finish (its dead letters were not published): the rows are
        any worker's again at their next attempt, not only after the lease."""
        if message_ids:
            self._rows(
                "UPDATE oms_parked_messages SET claimed_until = NULL"
                " WHERE message_id = ANY(%(ids)s)",
                {"ids": list(message_ids)},
            )

    def release(self, message_ids: Sequence[str]) -> None:
        """Applied, or dead-lettered: no longer parked."""
        if message_ids:
            self._rows(
                "DELETE FROM oms_parked_messages WHERE message_id = ANY(%(ids)s)",
                {"ids": list(message_ids)},
            )

    def wake(self) -> None:
        """Make every parked message due now (new orders came: they may apply); one being
        retried stays its retrier's until that retry ends or its lease runs out."""
        self._rows(
            "UPDATE oms_parked_messages SET next_attempt_at = now() WHERE next_attempt_at > now()"
        )

    def listing(self, limit: int = 100) -> list[ParkedMessage]:
        rows = self._rows(
            "SELECT *, extract(epoch FROM now() - parked_at)::float8 AS parked_for_s"
            " FROM oms_parked_messages ORDER BY parked_at, message_id LIMIT %(limit)s",
            {"limit": limit},
        )
        return [_parked(row) for row in rows]

    def summary(self) -> dict[str, Any]:
        """How many are parked, the oldest one's age, and how many per reason code."""
        (head,) = self._rows(
            "SELECT count(*) AS count, min(parked_at) AS oldest,"
            " coalesce(extract(epoch FROM now() - min(parked_at)), 0)::float8 AS oldest_age_s"
            " FROM oms_parked_messages"
        )
        by = self._rows(
            "SELECT topic, code, count(*) AS count FROM oms_parked_messages"
            " GROUP BY topic, code ORDER BY topic, code"
        )
        return {
            "count": head["count"],
            "oldest": head["oldest"].isoformat() if head["oldest"] else None,
            "oldest_age_s": round(float(head["oldest_age_s"]), 3),
            "by_code": [dict(row) for row in by],
        }


def _parked(row: DictRow) -> ParkedMessage:
    return ParkedMessage(
        message_id=row["message_id"],
        topic=row["topic"],
        partition=row["kafka_partition"],
        offset=row["kafka_offset"],
        key=bytes(row["kafka_key"]) if row["kafka_key"] is not None else None,
        value=bytes(row["value"]),
        headers=tuple(
            (name, bytes(value))
            for name, value in zip(row["header_names"], row["header_values"], strict=True)
        ),
        timestamp_ms=row["timestamp_ms"],
        code=row["code"],
        reason=row["reason"],
        parked_at=row["parked_at"],
        attempts=row["attempts"],
        parked_for_s=float(row["parked_for_s"]),
    )


def _interval(seconds: float) -> timedelta:
    return timedelta(seconds=max(0.0, seconds))
