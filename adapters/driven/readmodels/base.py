"""What every part of the read-model store shares: the connection type, the errors and
what is retried, failed events and their table, changed rows, names, locks and pipelined
results.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import psycopg
from psycopg import errors
from psycopg.types.json import set_json_loads

from adapters.driven.kafka.topics import EVENT_TOPIC_BY_KIND
from projections.core import (
    Event,
    Projection,
)

Conn = psycopg.Connection[Any]
Offsets = Mapping[tuple[str, int], int]
_DDL_LOCK = zlib.crc32(b"rm:ddl")
_SUFFIX = re.compile(r"_[a-z0-9_]{1,20}")


class StateRace(Exception):
    """Another transaction created the state of an aggregate of this batch first."""


RETRYABLE: tuple[type[Exception], ...] = (
    errors.DeadlockDetected,
    errors.SerializationFailure,
    StateRace,
)


class ReducerFailed(Exception):
    """A projection's reducer raised on an event (wrapped so it is told from SQL errors)."""


POISON: tuple[type[Exception], ...] = (
    # What one event can cause whatever the moment: a value PostgreSQL refuses (NUL in
    # text, an integer beyond bigint, a date out of range, an amount beyond numeric's range),
    # a row it cannot index, or a reducer that raised. Retrying the batch would fail the
    # same way for ever; the event is found and skipped alone (``_apply_isolating``).
    errors.DataError,
    errors.NotNullViolation,
    errors.CheckViolation,
    errors.ProgramLimitExceeded,
    ReducerFailed,
    orjson.JSONEncodeError,
)


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """A stored event a projection skipped, and why (a row of ``rm_failed_events``)."""

    projection: str
    event_id: str
    aggregate_id: str
    version: int
    position: int
    event_type: str
    reason: str

    @classmethod
    def of(cls, projection: Projection, event: Event, error: BaseException) -> FailedEvent:
        return cls(
            projection.name,
            event.id,
            event.aggregate_id,
            event.version,
            event.position,
            event.type,
            _reason(error),
        )


def _reason(error: BaseException) -> str:
    cause = error.__cause__ if isinstance(error, ReducerFailed) and error.__cause__ else error
    # The message may quote the refused value itself: NUL would be refused again.
    return f"{type(cause).__name__}: {cause}".replace("\x00", "\\u0000")[:500]


class _Isolate(Exception):
    """The batch holds an event that cannot be applied: run it again, isolating it."""


@dataclass(frozen=True, slots=True)
class ChangedRow:
    """A row a batch changed, for the caller to publish on the projection's topic."""

    topic: str
    key: str
    table: str
    row: dict[str, Any]
    """JSON-ready: amounts as decimal strings, times as RFC 3339 strings."""


def topics_of(projection: Projection) -> tuple[str, ...]:
    """The relayed topics a projection consumes."""
    return tuple(EVENT_TOPIC_BY_KIND[kind] for kind in projection.kinds)


def consumer_name(projection: Projection) -> str:
    """Its row in ``oms_consumer_positions`` (what the relay refills a lost broker from)."""
    return f"readmodel:{projection.name}"


def _lock_key(projection: Projection) -> int:
    return zlib.crc32(f"rm:{projection.name}".encode())


@lru_cache(maxsize=16)
def _shared_locks_sql(count: int) -> bytes:
    # In one statement, taken left to right in ascending key order.
    return ("SELECT " + ", ".join(["pg_advisory_xact_lock_shared(%s)"] * count)).encode()


def _connect(database_url: str) -> Conn:
    conn = psycopg.connect(database_url, autocommit=True)
    set_json_loads(orjson.loads, conn)
    return conn


Then = Callable[[list[str], list[tuple[Any, ...]]], None]


class _Results:
    """Statements whose rows are read only after all of them were sent.

    Inside ``conn.pipeline()`` a batch's statements then cost one round trip, not one
    each; outside it they run one by one and the callbacks simply run later.
    """

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._pending: list[tuple[psycopg.Cursor[Any], Then | None]] = []

    def execute(self, query: Any, params: Any = None, then: Then | None = None) -> None:
        cur = self.conn.cursor()
        cur.execute(query, params)
        self._pending.append((cur, then))

    def finish(self) -> None:
        pending, self._pending = self._pending, []
        try:
            for cur, then in pending:
                if then is not None:
                    # Only statements that return rows get a callback; fetching first is
                    # what waits for a pipelined result (description comes with it).
                    rows = cur.fetchall()
                    then([c.name for c in cur.description or ()], rows)
        finally:
            for cur, _ in pending:
                cur.close()


def record_failures(conn: Conn, failures: Sequence[FailedEvent]) -> None:
    """Record skipped events (a repeat of the same one only refreshes its reason)."""
    if not failures:
        return
    columns = ("projection", "event_id", "aggregate_id", "version", "position", "event_type")
    conn.execute(
        "INSERT INTO rm_failed_events"
        " (projection, event_id, aggregate_id, version, position, event_type, reason)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[],"
        " %s::bigint[], %s::text[], %s::text[])"
        " ON CONFLICT (projection, event_id) DO UPDATE SET reason = EXCLUDED.reason,"
        " failed_at = now()",
        [
            *([_printable(getattr(f, c)) for f in failures] for c in columns),
            [f.reason for f in failures],
        ],
    )


def _printable(value: Any) -> Any:
    return value.replace("\x00", "\\u0000") if isinstance(value, str) else value


def failed_events(conn: Conn, projection: str | None = None) -> list[FailedEvent]:
    """What ``rm_failed_events`` holds, in event-store order."""
    rows = conn.execute(
        "SELECT projection, event_id, aggregate_id, version, position, event_type, reason"
        " FROM rm_failed_events WHERE %s::text IS NULL OR projection = %s"
        " ORDER BY position, projection",
        [projection, projection],
    ).fetchall()
    return [FailedEvent(*row) for row in rows]
