"""One batch of events into the read models: load states, reduce, merge, write each row once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from psycopg import sql
from psycopg.types.json import Jsonb

from adapters.driven.readmodels.base import (
    POISON,
    ChangedRow,
    Conn,
    FailedEvent,
    Offsets,
    ReducerFailed,
    StateRace,
    Then,
    _Results,
    record_failures,
)
from adapters.driven.readmodels.positions import _track
from projections.core import (
    Change,
    Event,
    KeyTuple,
    Merged,
    Projection,
    State,
    merge,
    reduce_all,
)
from projections.schema import Table, state_table

log = logging.getLogger(__name__)


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


def jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    def value(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, datetime | date):
            return v.isoformat()
        return v

    return {k: value(v) for k, v in row.items()}
