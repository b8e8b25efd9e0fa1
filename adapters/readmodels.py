"""The read models in PostgreSQL: batches of events in, rows and offsets out, one transaction.

``ReadModelStore.apply`` is the only write path of a live projector. Per batch it loads the
states of every aggregate in the batch in one query (row-locked, so two workers racing on
one aggregate during a rebalance serialize), reduces in memory, merges the changes so each
row is written once, and writes states, rows, consumed offsets and the event-store
position in one transaction, each stage one ``INSERT ... SELECT FROM unnest(...)`` per
table. A redelivered batch changes nothing: reducers skip versions already applied.

``rebuild`` replays ``oms_events`` (as the relay would publish them) into fresh tables and
swaps them in, catching up under an exclusive lock that live batches take shared.
"""

from __future__ import annotations

import gc
import logging
import random
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from types import TracebackType
from typing import Any, Self

import orjson
import psycopg
from psycopg import errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_loads

from adapters.relay import KIND_BY_TYPE, cloud_event_for
from adapters.topics import EVENT_TOPIC_BY_KIND
from projections.core import (
    Change,
    Event,
    KeyTuple,
    Merged,
    Projection,
    State,
    all_tables,
    merge,
    reduce_all,
)
from projections.schema import OFFSETS_DDL, Table, state_table

log = logging.getLogger(__name__)

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
    # text, an integer beyond bigint, a date out of range, an amount beyond numeric(18,2)),
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


# ---------------------------------------------------------------- the store
class ReadModelStore:
    """Owns one connection; not for concurrent use by several threads (one per worker)."""

    def __init__(
        self,
        database_url: str,
        projections: Iterable[Projection] = (),
        *,
        max_attempts: int = 8,
    ) -> None:
        self.database_url = database_url
        self.max_attempts = max_attempts
        self._conn = _connect(database_url)
        self._ready: set[str] = set()
        for projection in projections:
            self.ensure(projection)

    def ensure(self, projection: Projection) -> None:
        """Create the projection's tables (idempotent; serialized across processes)."""
        if projection.name in self._ready:
            return
        create_tables(self._conn, projection)
        self._ready.add(projection.name)

    def apply(
        self,
        projection: Projection,
        events: Sequence[Event],
        offsets: Offsets | None = None,
    ) -> list[ChangedRow]:
        """Apply a batch in one transaction and return the rows it changed.

        ``offsets``: the next offset to consume per (topic, partition), committed with the
        rows. Give events their ``topic``/``partition`` (``Event.from_cloud_event``) so
        the store can record, per partition, the event-store position applied.
        """
        return self.apply_many([projection], events, offsets)

    def apply_many(
        self,
        projections: Sequence[Projection],
        events: Sequence[Event],
        offsets: Offsets | None = None,
        before_commit: Callable[[list[ChangedRow]], None] | None = None,
    ) -> list[ChangedRow]:
        """``apply`` for several projections at once, all of them in ONE transaction.

        Each projection keeps its own states, rows and offsets (it stays independent and
        rebuildable alone); only the commit is shared, which is what a batch costs most.
        ``before_commit`` gets the changed rows while the transaction is still open: if it
        raises, nothing commits. A batch re-applied after a commit changes no row, so what
        must go out with the rows (their topics) has to go out before the commit.
        """
        # One fixed order: two workers lock rows of several projections, never crosswise.
        chosen = sorted(projections, key=lambda p: p.name)
        for projection in chosen:
            self.ensure(projection)
        locks = sorted({_lock_key(p) for p in chosen})
        lock_sql = _shared_locks_sql(len(locks))
        isolate = False
        attempt = 0
        while attempt < self.max_attempts:
            attempt += 1
            try:
                with self._conn.transaction():
                    # Shared: batches run side by side; a rebuild's switch-over takes it
                    # exclusive, so no batch commits into tables about to be replaced.
                    self._conn.execute(lock_sql, locks)
                    if isolate:
                        changed = _apply_isolating(self._conn, chosen, events, offsets=offsets)
                    else:
                        try:
                            changed = apply_batches(self._conn, chosen, events, offsets=offsets)
                        except POISON as poison:
                            # Found only now, this cheaply: the whole batch is the fast path.
                            raise _Isolate from poison
                    if before_commit is not None and changed:
                        before_commit(changed)
                    return changed
            except _Isolate as found:
                log.info("a batch holds an event that cannot be applied: %r", found.__cause__)
                isolate = True
                attempt -= 1
            except RETRYABLE as conflict:
                if attempt == self.max_attempts:
                    raise
                names = ", ".join(p.name for p in chosen)
                log.debug("batch of %s lost a race, retrying: %r", names, conflict)
                time.sleep(min(0.005 * 2**attempt, 0.2) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def offsets(self, projection: Projection) -> dict[tuple[str, int], int]:
        """Where a restarted worker resumes: the next offset per (topic, partition)."""
        self.ensure(projection)
        rows = self._conn.execute(
            "SELECT topic, partition, next_offset FROM rm_offsets WHERE projection = %s",
            [projection.name],
        ).fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def register_partitions(
        self, projection: Projection, partitions: Iterable[tuple[str, int]]
    ) -> None:
        """Record partitions assigned to a worker before it consumed anything from them.

        The projection's event-store position is the lowest over its partitions; a
        partition that delivered nothing yet must hold it at zero, or the relay would not
        refill that partition's events after a broker loss.
        """
        self.ensure(projection)
        pairs = sorted(set(partitions))
        if not pairs:
            return
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO rm_offsets (projection, topic, partition, next_offset, position)"
                " SELECT %s, t, p, 0, 0 FROM unnest(%s::text[], %s::int[]) AS u(t, p)"
                " ON CONFLICT DO NOTHING",
                [projection.name, [t for t, _ in pairs], [p for _, p in pairs]],
            )
            _record_low_watermark(self._conn, projection)

    @property
    def connection(self) -> Conn:
        """For queries (``stock_at``, ``snapshot``); do not hold a transaction open on it."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def create_tables(conn: Conn, projection: Projection, suffix: str = "") -> None:
    with conn.transaction():
        # Two workers starting at once would race on the catalog (CREATE ... IF NOT EXISTS
        # is not atomic against itself).
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK])
        for statement in OFFSETS_DDL:
            conn.execute(statement.encode())
        for table in all_tables(projection):
            # Only missing tables: CREATE INDEX IF NOT EXISTS still share-locks an existing
            # table, which deadlocks with batches writing to it. A table and its indexes
            # are created in one transaction, so an existing table has them all.
            found = conn.execute(
                "SELECT to_regclass(%s)", [f'"{table.physical(suffix)}"']
            ).fetchone()
            if found is None or found[0] is None:
                for statement in table.ddl(suffix):
                    conn.execute(statement.encode())


# ---------------------------------------------------------------- one batch
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


def apply_batch(
    conn: Conn,
    projection: Projection,
    events: Sequence[Event],
    *,
    suffix: str = "",
    offsets: Offsets | None = None,
    track: bool = True,
) -> list[ChangedRow]:
    """Apply ``events`` inside the caller's transaction (tables under ``suffix``)."""
    return apply_batches(conn, [projection], events, suffix=suffix, offsets=offsets, track=track)


def apply_batches(
    conn: Conn,
    projections: Sequence[Projection],
    events: Sequence[Event],
    *,
    suffix: str = "",
    offsets: Offsets | None = None,
    track: bool = True,
) -> list[ChangedRow]:
    """Apply ``events`` to each projection inside the caller's transaction, in two round
    trips whatever their number (pipelined): load every state, reduce, write everything."""
    batches = [_Batch(projection, events, suffix) for projection in projections]
    results = _Results(conn)
    with conn.pipeline():
        for batch in batches:
            batch.load(results)
        results.finish()
        for batch in batches:
            batch.reduce()
        for batch in batches:
            batch.write(results, offsets if track else None, track)
        results.finish()
    return [row for batch in batches for row in batch.changed()]


def _apply_isolating(
    conn: Conn,
    projections: Sequence[Projection],
    events: Sequence[Event],
    *,
    suffix: str = "",
    offsets: Offsets | None = None,
    track: bool = True,
    failed: list[FailedEvent] | None = None,
) -> list[ChangedRow]:
    """``apply_batches`` for a batch holding events that cannot be applied, inside the
    caller's transaction: each such event is found by halving the batch under savepoints
    (in order, so every other event applies as it would have), skipped for the projections
    it fails, logged and recorded in ``rm_failed_events``; offsets and positions are then
    tracked for the whole batch, the failed events included (they are dealt with)."""
    found: list[FailedEvent] = []
    changed = _bisect(conn, projections, events, suffix, found)
    if track:
        results = _Results(conn)
        with conn.pipeline():
            for projection in projections:
                mine = [event for event in events if event.kind in projection.kinds]
                _track(results, projection, mine, offsets)
            results.finish()
    record_failures(conn, found)
    if failed is not None:
        failed.extend(found)
    return changed


def _bisect(
    conn: Conn,
    projections: Sequence[Projection],
    events: Sequence[Event],
    suffix: str,
    found: list[FailedEvent],
) -> list[ChangedRow]:
    try:
        with conn.transaction():  # a savepoint
            return apply_batches(conn, projections, events, suffix=suffix, track=False)
    except POISON as error:
        if len(events) > 1:
            half = len(events) // 2
            return _bisect(conn, projections, events[:half], suffix, found) + _bisect(
                conn, projections, events[half:], suffix, found
            )
        readers = [p for p in projections if events[0].kind in p.kinds]
        if len(readers) > 1:
            # The event may fail one projection only: the others still apply it.
            return [row for p in readers for row in _bisect(conn, [p], events, suffix, found)]
        failure = FailedEvent.of(readers[0], events[0], error)
        log.error(
            "projection %s skips event %s (%s, aggregate %s version %d, position %d): %s",
            failure.projection,
            failure.event_id,
            failure.event_type,
            failure.aggregate_id,
            failure.version,
            failure.position,
            failure.reason,
        )
        found.append(failure)
        return []


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


class _Batch:
    """One projection's part of a batch, in the order the store runs it."""

    def __init__(self, projection: Projection, events: Sequence[Event], suffix: str) -> None:
        self.projection = projection
        self.suffix = suffix
        # Other kinds' events would only leave states behind that the projection never
        # reads (and that a rebuild, which replays only its kinds, would not recreate).
        kinds = projection.kinds
        self.events = [event for event in events if event.kind in kinds]
        self.states: dict[str, State] = {}
        self.versions: dict[str, Any] = {}
        self.changes: list[Change] = []
        self.written: dict[tuple[str, Any], dict[str, Any]] = {}

    def load(self, results: _Results) -> None:
        ids = sorted({event.aggregate_id for event in self.events})
        if not ids:
            return

        def loaded(_: list[str], rows: list[tuple[Any, ...]]) -> None:
            # Decoded for this transaction alone: they can be folded in place, and a retry
            # loads them again.
            self.states = dict(rows)
            self.versions = {a: state.get("version") for a, state in self.states.items()}

        results.execute(
            sql.SQL(
                "SELECT aggregate_id, state FROM {} WHERE aggregate_id = ANY(%s)"
                " ORDER BY aggregate_id FOR UPDATE"
            ).format(sql.Identifier(state_table(self.projection.name).physical(self.suffix))),
            [ids],
            loaded,
        )

    def reduce(self) -> None:
        try:
            self.changes = reduce_all(self.projection, self.states, self.events)
        except Exception as error:
            raise ReducerFailed(f"{self.projection.name}: {error!r}") from error

    def write(self, results: _Results, offsets: Offsets | None, track: bool) -> None:
        # States first: their row locks and unique key are what serialize two workers that
        # hold the same aggregate, before any read-model row is touched.
        _write_states(
            results,
            state_table(self.projection.name),
            self.suffix,
            self.versions,
            self.states,
        )
        self.written = write_merged(results, self.projection, merge(self.changes), self.suffix)
        if track:
            _track(results, self.projection, self.events, offsets)

    def changed(self) -> list[ChangedRow]:
        topic = self.projection.outbound_topic
        if topic is None:
            return []
        published: list[tuple[str, str, dict[str, Any]]] = []
        for (name, _), row in self.written.items():
            key = self.projection.message_key(name, row)
            if key is not None:
                published.append((key, name, row))
        # ``jsonable`` for the whole batch in one C round trip: orjson writes dates and
        # times as isoformat() does, and Decimals go through _json_default as str().
        rows = orjson.loads(orjson.dumps([r for _, _, r in published], default=_json_default))
        return [
            ChangedRow(topic, key, name, row)
            for (key, name, _), row in zip(published, rows, strict=True)
        ]


def write_merged(
    results: _Results,
    projection: Projection,
    merged: Merged,
    suffix: str = "",
    *,
    copy: bool = False,
) -> dict[tuple[str, Any], dict[str, Any]]:
    """Write a merged batch; returns the rows of published tables as written, by key
    (filled in when ``results`` are finished).

    ``copy``: the tables are fresh and empty (a rebuild), so each row goes in once with
    COPY, its appends, upserts and increments combined, before the rebases run.
    """
    tables = {t.name: t for t in projection.tables}
    returning = projection.outbound_topic is not None
    written: dict[tuple[str, Any], dict[str, Any]] = {}

    def keep(table: Table) -> Then:
        key_of = _shape(table).key_of

        def rows_of(names: list[str], rows: list[tuple[Any, ...]]) -> None:
            for values in rows:
                row = dict(zip(names, values, strict=True))
                written[(table.name, key_of(row))] = row

        return rows_of

    if copy:
        for name in sorted(tables):
            rows: dict[KeyTuple, dict[str, Any]] = {}
            for k, row in merged.upserts.get(name, {}).items():
                rows[k] = row
            for k, row in merged.increments.get(name, {}).items():
                rows[k] = {**rows[k], **row} if k in rows else row
            appended = merged.appends.get(name, {})
            if rows or appended:
                _copy(results.conn, tables[name], suffix, [*appended.values(), *rows.values()])
    else:
        # Tables in one fixed order too, so two batches never lock rows crosswise.
        for name, appended in sorted(merged.appends.items()):
            table = tables[name]
            _write(
                results, table, suffix, "append", list(appended.values()), keep(table), returning
            )
        for name, upserted in sorted(merged.upserts.items()):
            table = tables[name]
            _write(
                results, table, suffix, "upsert", list(upserted.values()), keep(table), returning
            )
        for name, incremented in sorted(merged.increments.items()):
            table = tables[name]
            rows_ = _fill_deltas(table, list(incremented.values()))
            _write(results, table, suffix, "increment", rows_, keep(table), returning)
    for name, rebased in sorted(merged.rebases.items()):
        table = tables[name]
        statement = projection.rebase_sql[name].format_map(
            {
                t.name: sql.Identifier(t.physical(suffix)).as_string(results.conn)
                for t in tables.values()
            }
        )
        ordered = sorted(rebased.items())
        params: dict[str, list[Any]] = {k: [dict(key)[k] for key, _ in ordered] for k in table.key}
        params["position"] = [position for _, position in ordered]
        results.execute(statement.encode(), params, keep(table))
    return written


def _write_states(
    results: _Results,
    table: Table,
    suffix: str,
    loaded: Mapping[str, Any],
    states: Mapping[str, State],
) -> None:
    """``loaded``: the version of each state as it was read, by aggregate."""
    name = sql.Identifier(table.physical(suffix))
    created = sorted(a for a in states if a not in loaded)
    updated = sorted(a for a in states if a in loaded and states[a].get("version") != loaded[a])
    if created:

        def all_created(_: list[str], rows: list[tuple[Any, ...]]) -> None:
            if len(rows) != len(created):
                raise StateRace(f"{table.name}: another batch created a state of this batch first")

        results.execute(
            sql.SQL(
                "INSERT INTO {} (aggregate_id, version, state)"
                " SELECT a, v, s FROM json_to_recordset(%s::json) AS x(a text, v bigint, s jsonb)"
                " ON CONFLICT DO NOTHING RETURNING aggregate_id"
            ).format(name),
            [_states_json(created, states)],
            all_created,
        )
    if updated:
        results.execute(
            sql.SQL(
                "UPDATE {} AS s SET version = u.v, state = u.s"
                " FROM json_to_recordset(%s::json) AS u(a text, v bigint, s jsonb)"
                " WHERE s.aggregate_id = u.a"
            ).format(name),
            [_states_json(updated, states)],
        )


def _states_json(ids: list[str], states: Mapping[str, State]) -> str:
    # One JSON document for the whole set: orjson writes it in C, the server parses it in
    # C, and no Python code runs per state or per cell.
    return orjson.dumps(
        [{"a": a, "v": int(states[a].get("version", 0)), "s": states[a]} for a in ids]
    ).decode()


def _fill_deltas(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adding zero changes nothing, so every row of a table can go in one statement."""
    columns = {c for row in rows for c in row}
    missing = [c for c in columns if c not in table.key]
    return [
        row if len(row) == len(columns) else {**dict.fromkeys(missing, 0), **row} for row in rows
    ]


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the writer needs of a table, computed once per table, not per cell."""

    sort_key: Callable[[Mapping[str, Any]], Any]
    key_of: Callable[[Mapping[str, Any]], KeyTuple]


@lru_cache(maxsize=128)
def _shape(table: Table) -> _Shape:
    names = table.key
    sort_key = itemgetter(*names)
    if len(names) == 1:
        only = names[0]

        def one(row: Mapping[str, Any]) -> KeyTuple:
            return ((only, row[only]),)

        return _Shape(sort_key, one)
    ordered = sorted(names)

    def many(row: Mapping[str, Any]) -> KeyTuple:
        return tuple((k, row[k]) for k in ordered)

    return _Shape(sort_key, many)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: numeric parses the decimal string, never a float
    raise TypeError(f"not JSON-able for a read-model row: {value!r}")


def _rows_json(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows, default=_json_default).decode()


def _write(
    results: _Results,
    table: Table,
    suffix: str,
    mode: str,
    rows: list[dict[str, Any]],
    then: Then,
    returning: bool = True,
) -> None:
    """One INSERT ... SELECT FROM json_to_recordset per set of columns; the rows as written
    go to ``then`` (with ``returning``)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    sort_key = _shape(table).sort_key
    for columns, group in groups.items():
        # One order for every writer: concurrent batches lock shared rows without deadlock.
        group.sort(key=sort_key)
        results.execute(
            _statement(table, suffix, mode, columns, returning),
            [_rows_json(group)],
            then if returning else None,
        )


@lru_cache(maxsize=512)
def _statement(
    table: Table, suffix: str, mode: str, columns: tuple[str, ...], returning: bool = True
) -> bytes:
    name = sql.Identifier(table.physical(suffix))
    # The rows arrive as one JSON array; json_to_recordset types each field by the
    # column's own SQL type (numeric from a decimal string, timestamptz from RFC 3339).
    fields = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(table.column(c).type)) for c in columns
    )
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    values = [c for c in columns if c not in table.key]
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    conflict: sql.Composable
    if mode == "append" or not values:
        conflict = sql.SQL("ON CONFLICT DO NOTHING")
    elif mode == "upsert":
        conflict = sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(
            key,
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in values
            ),
        )
    elif mode == "increment":
        conflict = sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(
            key,
            sql.SQL(", ").join(
                sql.SQL("{0} = {1}.{0} + EXCLUDED.{0}").format(sql.Identifier(c), name)
                for c in values
            ),
        )
    else:
        raise ValueError(f"unknown write mode {mode!r}")
    tail = sql.SQL(" RETURNING *") if returning else sql.SQL("")
    return (
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM json_to_recordset(%s::json) AS x({}) {}{}")
        .format(name, names, names, fields, conflict, tail)
        .as_bytes(None)
    )


def _copy(conn: Conn, table: Table, suffix: str, rows: list[dict[str, Any]]) -> None:
    """Rows into a fresh table with COPY, one COPY per set of columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    name = sql.Identifier(table.physical(suffix))
    for columns, group in groups.items():
        jsonb = [table.column(c).array_type == "jsonb" for c in columns]
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            name, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for row in group:
                copy.write_row(
                    [
                        Jsonb(row[c], dumps=orjson.dumps) if j and row[c] is not None else row[c]
                        for c, j in zip(columns, jsonb, strict=True)
                    ]
                )


def _track(
    results: _Results,
    projection: Projection,
    events: Sequence[Event],
    offsets: Offsets | None,
) -> None:
    if offsets:
        # Per partition, the highest event-store position applied: partitions are read in
        # the relay's order, so everything below it on that partition is applied too.
        applied: dict[tuple[str, int], int] = {}
        for event in events:
            if event.topic is not None and event.partition is not None:
                origin = (event.topic, event.partition)
                applied[origin] = max(applied.get(origin, 0), event.position)
        pairs = sorted(offsets.items())
        results.execute(
            "INSERT INTO rm_offsets (projection, topic, partition, next_offset, position)"
            " SELECT %s, * FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::bigint[])"
            " ON CONFLICT (projection, topic, partition) DO UPDATE SET"
            " next_offset = GREATEST(rm_offsets.next_offset, EXCLUDED.next_offset),"
            " position = GREATEST(rm_offsets.position, EXCLUDED.position), updated_at = now()",
            [
                projection.name,
                [topic for (topic, _), _ in pairs],
                [partition for (_, partition), _ in pairs],
                [offset for _, offset in pairs],
                [applied.get(origin, 0) for origin, _ in pairs],
            ],
        )
        _record_low_watermark(results, projection)
    elif events:
        # Without Kafka offsets the caller feeds the log in order (a replay, a poller): the
        # highest position applied is then also the lowest not yet applied, minus one.
        results.execute(
            "INSERT INTO oms_consumer_positions (consumer, notification_id) VALUES (%s, %s)"
            " ON CONFLICT (consumer) DO UPDATE SET notification_id ="
            " GREATEST(oms_consumer_positions.notification_id, EXCLUDED.notification_id),"
            " updated_at = now()",
            [consumer_name(projection), max(event.position for event in events)],
        )


def _record_low_watermark(cur: Conn | _Results, projection: Projection) -> None:
    """The lowest per-partition position: what the relay must republish from for us after
    the broker lost its data (the highest would skip a lagging partition's tail)."""
    cur.execute(
        "INSERT INTO oms_consumer_positions (consumer, notification_id)"
        " SELECT %s, min(position) FROM rm_offsets WHERE projection = %s HAVING count(*) > 0"
        " ON CONFLICT (consumer) DO UPDATE SET notification_id = EXCLUDED.notification_id,"
        " updated_at = now()",
        [consumer_name(projection), projection.name],
    )


def jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    def value(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, datetime | date):
            return v.isoformat()
        return v

    return {k: value(v) for k, v in row.items()}


# ---------------------------------------------------------------- rebuild
@dataclass(frozen=True, slots=True)
class RebuildProgress:
    projection: str
    phase: str
    """``replay`` (into the fresh tables), ``catch_up`` (under the lock) or ``switched``."""
    events: int
    """Events of the projection's kinds applied so far."""
    position: int
    head: int
    """The event store's last position when the rebuild started."""
    skipped: int = 0
    """Events it could not apply and skipped (logged, and kept in ``rm_failed_events``)."""


def rebuild(
    projection: Projection,
    database_url: str,
    into_schema_suffix: str = "_rebuild",
    progress: Callable[[RebuildProgress], None] | None = None,
    *,
    batch_size: int = 2000,
    switch: bool = True,
    events_table: str = "oms_events",
) -> RebuildProgress:
    """Replay the event store into fresh ``<table><suffix>`` tables, then swap them in.

    The replay runs beside the live projector. The switch-over takes the projection's lock
    exclusively (live batches wait), applies what was stored meanwhile, and renames the
    tables in the same transaction; live offsets stay valid because reducers skip versions
    the rebuilt states already hold. ``switch=False`` leaves the tables under the suffix.
    """
    done = rebuild_many(
        [projection],
        database_url,
        into_schema_suffix,
        progress,
        batch_size=batch_size,
        switch=switch,
        events_table=events_table,
    )
    return done[projection.name]


def rebuild_many(
    projections: Sequence[Projection],
    database_url: str,
    into_schema_suffix: str = "_rebuild",
    progress: Callable[[RebuildProgress], None] | None = None,
    *,
    batch_size: int = 2000,
    switch: bool = True,
    events_table: str = "oms_events",
    flush_every: int = 200_000,
) -> dict[str, RebuildProgress]:
    """``rebuild`` for several projections in one pass over the event store.

    The replay reduces in memory, with no SQL per page: each projection's changes are
    merged as they come and its rows written once, with COPY into the fresh tables (every
    ``flush_every`` log events, to bound memory; later flushes upsert like a live batch).
    States stay in memory until the end: one per aggregate and projection. The switch-over
    is unchanged: under the projections' exclusive locks, the events stored meanwhile go
    through the live write path, then the tables are renamed, in one durable commit.
    """
    if not _SUFFIX.fullmatch(into_schema_suffix):
        raise ValueError(f"suffix must look like _rebuild, got {into_schema_suffix!r}")
    chosen = sorted(projections, key=lambda p: p.name)
    if not chosen:
        return {}
    label = ",".join(p.name for p in chosen)
    report = progress or (lambda _: None)
    with _connect(database_url) as conn:
        with conn.transaction():
            for projection in chosen:
                for table in all_tables(projection):
                    conn.execute(
                        sql.SQL("DROP TABLE IF EXISTS {}").format(
                            sql.Identifier(table.physical(into_schema_suffix))
                        )
                    )
        for projection in chosen:
            create_tables(conn, projection, into_schema_suffix)
        head = _head(conn, events_table)
        replay = _Replay(chosen, into_schema_suffix)
        failed: list[FailedEvent] = []
        position = 0
        try:
            with _collector_paused():
                while head:
                    rows = _log_page(conn, events_table, position, batch_size)
                    if not rows:
                        break
                    replay.feed(rows)
                    position = int(rows[-1][0])
                    if replay.pending >= flush_every:
                        replay.flush(conn)
                    report(RebuildProgress(label, "replay", replay.total, position, head))
                replay.flush(conn, final=True)
        except POISON as poison:
            # The in-memory replay merges many events into each row, so a refused row
            # names no event. Start again on the live write path, which finds and skips
            # the event alone: slower, and taken only when such an event exists.
            log.warning(
                "rebuild of %s: a stored event cannot be applied (%r); replaying again"
                " event by event where needed",
                label,
                poison,
            )
            replay, position = _replay_isolating(
                conn, chosen, into_schema_suffix, events_table, batch_size, failed, report, head
            )

        def skipped(projection: Projection) -> int:
            return len({f.event_id for f in failed if f.projection == projection.name})

        if not switch:
            return {
                p.name: RebuildProgress(
                    p.name, "replay", replay.applied[p.name], position, head, skipped(p)
                )
                for p in chosen
            }
        with conn.transaction():
            for key in sorted({_lock_key(p) for p in chosen}):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [key])
            while _head(conn, events_table):
                rows = _log_page(conn, events_table, position, batch_size)
                if not rows:
                    break
                events = _events_of(conn, rows, chosen, failed)
                _apply_isolating(
                    conn, chosen, events, suffix=into_schema_suffix, track=False, failed=failed
                )
                for projection in chosen:
                    replay.applied[projection.name] += sum(
                        1 for e in events if e.kind in projection.kinds
                    )
                position = int(rows[-1][0])
                report(RebuildProgress(label, "catch_up", replay.total, position, head))
            for projection in chosen:
                for table in all_tables(projection):
                    _swap(conn, table, into_schema_suffix)
    done = {
        p.name: RebuildProgress(
            p.name, "switched", replay.applied[p.name], position, head, skipped(p)
        )
        for p in chosen
    }
    for finished in done.values():
        report(finished)
    return done


def _replay_isolating(
    conn: Conn,
    chosen: Sequence[Projection],
    suffix: str,
    events_table: str,
    batch_size: int,
    failed: list[FailedEvent],
    report: Callable[[RebuildProgress], None],
    head: int,
) -> tuple[_Replay, int]:
    """The replay again from fresh tables, page by page through the live write path."""
    with conn.transaction():
        for projection in chosen:
            for table in all_tables(projection):
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(
                        sql.Identifier(table.physical(suffix))
                    )
                )
    for projection in chosen:
        create_tables(conn, projection, suffix)
    replay = _Replay(chosen, suffix)  # for its counts alone
    label = ",".join(p.name for p in chosen)
    position = 0
    while True:
        rows = _log_page(conn, events_table, position, batch_size)
        if not rows:
            break
        events = _events_of(conn, rows, chosen, failed)
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            _apply_isolating(conn, chosen, events, suffix=suffix, track=False, failed=failed)
        for projection in chosen:
            replay.applied[projection.name] += sum(1 for e in events if e.kind in projection.kinds)
        position = int(rows[-1][0])
        report(RebuildProgress(label, "replay", replay.total, position, head, len(failed)))
    return replay, position


def _events_of(
    conn: Conn,
    rows: Sequence[tuple[Any, ...]],
    chosen: Sequence[Projection],
    failed: list[FailedEvent],
) -> list[Event]:
    """The events of ``rows`` that ``chosen`` read; a row that is no event is recorded as
    failed for each of them instead."""
    kinds = {kind for p in chosen for kind in p.kinds}
    events: list[Event] = []
    for row in rows:
        kind = KIND_BY_TYPE.get(row[3])
        if kind not in kinds:
            continue
        try:
            events.append(_event_of(row))
        except ValueError as error:
            notification_id, originator_id, version, type_name, _ = row
            broken = [
                FailedEvent(
                    p.name,
                    f"{originator_id}:{version}",
                    str(originator_id),
                    int(version),
                    int(notification_id),
                    str(type_name),
                    _reason(error),
                )
                for p in chosen
                if kind in p.kinds
            ]
            for failure in broken:
                log.error(
                    "projection %s skips stored event %s: %s",
                    failure.projection,
                    failure.event_id,
                    failure.reason,
                )
            record_failures(conn, broken)
            failed.extend(broken)
    return events


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The replay keeps every state and merged row alive until it writes them: each pass
    of the cyclic garbage collector walks them all again (10-15% of a rebuild's CPU time
    measured here), and they hold no cycles to collect."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Replay:
    """The in-memory side of a rebuild: states and merged rows per projection."""

    def __init__(self, projections: Sequence[Projection], suffix: str) -> None:
        self.projections = list(projections)
        self.suffix = suffix
        self.states: dict[str, dict[str, State]] = {p.name: {} for p in projections}
        self.merged: dict[str, Merged] = {p.name: Merged() for p in projections}
        self.applied: dict[str, int] = dict.fromkeys(self.states, 0)
        self.pending = 0
        self._fresh = True
        # Which projections read each aggregate kind, looked up once per event.
        self._readers: dict[str, list[Projection]] = {}
        for projection in projections:
            for kind in projection.kinds:
                self._readers.setdefault(kind, []).append(projection)

    @property
    def total(self) -> int:
        return sum(self.applied.values())

    def feed(self, rows: Sequence[tuple[Any, ...]]) -> None:
        events: dict[str, list[Event]] = {p.name: [] for p in self.projections}
        for row in rows:
            readers = self._readers.get(KIND_BY_TYPE.get(row[3], "unknown"))
            if readers:
                try:
                    event = _event_of(row)
                except ValueError as error:
                    raise ReducerFailed(f"stored event {row[1]}:{row[2]}: {error}") from error
                for projection in readers:
                    events[projection.name].append(event)
        for projection in self.projections:
            mine = events[projection.name]
            try:
                reduced = reduce_all(projection, self.states[projection.name], mine)
            except Exception as error:
                raise ReducerFailed(f"{projection.name}: {error!r}") from error
            self.merged[projection.name].add(reduced)
            self.applied[projection.name] += len(mine)
        self.pending += len(rows)

    def flush(self, conn: Conn, *, final: bool = False) -> None:
        # Not durable on its own: the switch-over's commit is, and a crash before it only
        # leaves suffixed tables that the next rebuild drops.
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            results = _Results(conn)
            for projection in self.projections:
                merged = self.merged[projection.name]
                merged.check()
                write_merged(results, projection, merged, self.suffix, copy=self._fresh)
                results.finish()
                if final:
                    states = self.states[projection.name]
                    _copy(
                        conn,
                        state_table(projection.name),
                        self.suffix,
                        [
                            {"aggregate_id": a, "version": int(s.get("version", 0)), "state": s}
                            for a, s in sorted(states.items())
                        ],
                    )
        self.merged = {p.name: Merged() for p in self.projections}
        self.pending = 0
        self._fresh = False


def _head(conn: Conn, events_table: str) -> int:
    exists = conn.execute("SELECT to_regclass(%s)", [events_table]).fetchone()
    if not exists or exists[0] is None:
        return 0
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            sql.Identifier(events_table)
        )
    ).fetchone()
    return int(row[0]) if row else 0


def _log_page(conn: Conn, events_table: str, after: int, limit: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
            " WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(events_table)),
        [after, limit],
    ).fetchall()


def _event_of(row: tuple[Any, ...]) -> Event:
    """The event a projector would get for this row: the relay's CloudEvent, decoded."""
    return Event.from_cloud_event(cloud_event_for(row))


def _swap(conn: Conn, table: Table, suffix: str) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table.physical())))
    conn.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            sql.Identifier(table.physical(suffix)), sql.Identifier(table.physical())
        )
    )
    # Index names are global: give the live names back so the next rebuild can reuse its own.
    for temporary, live in table.index_names(suffix):
        conn.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(temporary), sql.Identifier(live)
            )
        )


# ---------------------------------------------------------------- comparisons (tests, ops)
Snapshot = dict[str, list[dict[str, Any]]]


def snapshot(conn: Conn, projection: Projection, suffix: str = "") -> Snapshot:
    """Every table of a projection (states included), rows in key order, JSON-ready."""
    tables: Snapshot = {}
    for table in all_tables(projection):
        order = sql.SQL(", ").join(map(sql.Identifier, table.key))
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {} ORDER BY {}").format(
                    sql.Identifier(table.physical(suffix)), order
                )
            )
            tables[table.name] = [jsonable(row) for row in cur.fetchall()]
    return tables


def differences(live: Snapshot, rebuilt: Snapshot, limit: int = 20) -> list[str]:
    """Human-readable differences between two snapshots (empty: equal)."""
    found: list[str] = []
    for name in sorted(set(live) | set(rebuilt)):
        a, b = live.get(name, []), rebuilt.get(name, [])
        if len(a) != len(b):
            found.append(f"{name}: {len(a)} rows live, {len(b)} rebuilt")
        for row_a, row_b in zip(a, b, strict=False):
            if row_a != row_b:
                changed = sorted(k for k in set(row_a) | set(row_b) if row_a.get(k) != row_b.get(k))
                found.append(
                    f"{name}: {[(k, row_a.get(k), row_b.get(k)) for k in changed]} in {row_a}"
                )
                break
        if len(found) >= limit:
            break
    return found


def equal(live: Snapshot, rebuilt: Snapshot) -> bool:
    return not differences(live, rebuilt, limit=1)


# ---------------------------------------------------------------- queries
def stock_at(conn: Conn, sku: str, location_id: str, at: datetime) -> dict[str, int]:
    """Every bucket of a SKU at a location as it stood at ``at``, in one query.

    Same rule as the live level: the last count recorded by ``at`` (in the event store's
    order), plus every available movement recorded after it; other buckets are sums.
    """
    rows = conn.execute(
        """
        WITH m AS (
            SELECT bucket, delta, counted, kind, position FROM rm_stock_movements
            WHERE sku = %(sku)s AND location_id = %(location)s AND at <= %(at)s),
        c AS (SELECT counted, position FROM m WHERE kind = 'count' ORDER BY position DESC LIMIT 1)
        SELECT m.bucket,
               coalesce(sum(m.delta) FILTER (WHERE m.kind <> 'count' AND (m.bucket <> 'available'
                   OR m.position > coalesce((SELECT position FROM c), -1))), 0) AS moved,
               (SELECT counted FROM c) AS counted
        FROM m GROUP BY m.bucket""",
        {"sku": sku, "location": location_id, "at": at},
    ).fetchall()
    levels = dict.fromkeys(
        ("available", "quarantined", "in_repair", "returned_to_vendor", "scrapped"), 0
    )
    levels["expected_returns"] = 0
    for bucket, moved, counted in rows:
        levels[bucket] = int(moved) + (int(counted) if bucket == "available" and counted else 0)
    return levels


def return_rates(conn: Conn) -> list[dict[str, Any]]:
    """Items sold and returned per sku, supplier, category and sales channel."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT s.sku, s.supplier, s.category, s.channel, s.items AS items_sold,
                   coalesce(r.items, 0)::bigint AS items_returned,
                   CASE WHEN s.items > 0 THEN round(coalesce(r.items, 0)::numeric / s.items, 4)
                   END AS return_rate
            FROM rm_items_sold s LEFT JOIN (
                SELECT sku, supplier, category, channel, sum(items) AS items
                FROM rm_return_reasons GROUP BY sku, supplier, category, channel) r
              USING (sku, supplier, category, channel)
            ORDER BY s.sku, s.supplier, s.category, s.channel"""
        )
        return [jsonable(row) for row in cur.fetchall()]


def unbalanced_refunds(conn: Conn) -> list[dict[str, Any]]:
    """Refunds whose ledger lines do not balance (the invariant says: none)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT refund_id, currency, sum(debit) AS debit, sum(credit) AS credit"
            " FROM rm_ledger_lines GROUP BY refund_id, currency HAVING sum(debit) <> sum(credit)"
        )
        return [jsonable(row) for row in cur.fetchall()]


def projection_lag(
    conn: Conn, projection: Projection, events_table: str = "oms_events"
) -> dict[str, Any]:
    """Events stored but not yet applied, and how old the oldest of them is.

    Measured against the event store and the projection's own per-aggregate versions, not
    the broker's offsets (which the embedded broker reports wrongly and loses on restart).
    Only events after the projection's low watermark are scanned.
    """
    types = sorted(t for t, kind in KIND_BY_TYPE.items() if kind in projection.kinds)
    low_row = conn.execute(
        "SELECT notification_id FROM oms_consumer_positions WHERE consumer = %s",
        [consumer_name(projection)],
    ).fetchone()
    low = int(low_row[0]) if low_row else 0
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), min(e.notification_id),"
            " min((convert_from(e.state, 'UTF8')::jsonb ->> 'timestamp')::timestamptz)"
            " FROM {events} e LEFT JOIN {states} s ON s.aggregate_id = e.originator_id::text"
            " WHERE e.notification_id > %s AND e.topic = ANY(%s)"
            " AND (s.version IS NULL OR s.version < e.originator_version)"
        ).format(
            events=sql.Identifier(events_table),
            states=sql.Identifier(state_table(projection.name).name),
        ),
        [low, types],
    ).fetchone()
    behind, oldest_position, oldest_time = row if row else (0, None, None)
    seconds = None
    if oldest_time is not None:
        seconds = max(0.0, (datetime.now(UTC) - oldest_time).total_seconds())
    return {
        "projection": projection.name,
        "events_behind": int(behind or 0),
        "oldest_unapplied_position": oldest_position,
        "seconds_behind": seconds,
    }


# ---------------------------------------------------------------- resuming from stored offsets
@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where the projections reading a partition stand in it, as stored with their rows."""

    next_offset: int
    position: int
    """The event-store position of the last event applied from the partition (the one at
    ``next_offset - 1`` unless that record was not an event)."""


def resume_points(
    conn: Conn, projections: Sequence[Projection]
) -> dict[tuple[str, int], ResumePoint]:
    """Per (topic, partition), the lowest stored point over the projections reading it.

    Projections of one topic share a consumer, so it may resume only where the furthest
    behind of them stands. A partition that some reader has no row for is left out: that
    reader has no stored offset to resume from.
    """
    names = [projection.name for projection in projections]
    rows = conn.execute(
        "SELECT projection, topic, partition, next_offset, position FROM rm_offsets"
        " WHERE projection = ANY(%s)",
        [names],
    ).fetchall()
    stored: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}
    for name, topic, partition, next_offset, position in rows:
        stored.setdefault((topic, partition), {})[name] = (int(next_offset), int(position))
    points: dict[tuple[str, int], ResumePoint] = {}
    for (topic, partition), by_projection in stored.items():
        readers = {p.name for p in projections if topic in topics_of(p)}
        if readers and readers <= by_projection.keys():
            points[(topic, partition)] = ResumePoint(*min(by_projection[n] for n in readers))
    return points
