"""Rebuilding read models from the event store into fresh tables, swapped in at the end;
snapshots and differences to compare a rebuild with the live tables.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from adapters.driven.readmodels.base import (
    _SUFFIX,
    POISON,
    Conn,
    FailedEvent,
    ReducerFailed,
    _connect,
    _lock_key,
    _reason,
    _Results,
    record_failures,
)
from adapters.driven.readmodels.store import create_tables
from adapters.driven.readmodels.writer import _apply_isolating, _copy, jsonable, write_merged
from adapters.driven.relay import KIND_BY_TYPE, cloud_event_for
from projections.core import (
    Event,
    Merged,
    Projection,
    State,
    all_tables,
    reduce_all,
)
from projections.schema import Table, state_table

log = logging.getLogger(__name__)


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
