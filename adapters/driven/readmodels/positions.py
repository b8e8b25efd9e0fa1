"""Where each projection is: consumed offsets, the event-store low watermark, the lag, and
the points a projector resumes from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import sql

from adapters.driven.readmodels.base import Conn, Offsets, _Results, consumer_name, topics_of
from adapters.driven.relay import KIND_BY_TYPE
from projections.core import (
    Event,
    Projection,
)
from projections.schema import state_table

log = logging.getLogger(__name__)


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
            "SELECT count(*), min(e.notification_id)"
            " FROM {events} e LEFT JOIN {states} s ON s.aggregate_id = e.originator_id::text"
            " WHERE e.notification_id > %s AND e.topic = ANY(%s)"
            " AND (s.version IS NULL OR s.version < e.originator_version)"
        ).format(
            events=sql.Identifier(events_table),
            states=sql.Identifier(state_table(projection.name).name),
        ),
        [low, types],
    ).fetchone()
    behind, oldest_position = row if row else (0, None)
    seconds = None
    if oldest_position is not None:
        # Only the oldest event's time is read, and decoded here rather than cast to jsonb
        # in SQL: a stored event PostgreSQL's jsonb refuses (a NUL in a text) must not turn
        # the lag report of every projection into an error.
        stored = conn.execute(
            sql.SQL("SELECT state FROM {events} WHERE notification_id = %s").format(
                events=sql.Identifier(events_table)
            ),
            [oldest_position],
        ).fetchone()
        oldest_time = _event_time(stored[0]) if stored else None
        if oldest_time is not None:
            seconds = max(0.0, (datetime.now(UTC) - oldest_time).total_seconds())
    return {
        "projection": projection.name,
        "events_behind": int(behind or 0),
        "oldest_unapplied_position": oldest_position,
        "seconds_behind": seconds,
    }


def _event_time(state: bytes) -> datetime | None:
    try:
        moment = datetime.fromisoformat(orjson.loads(state)["timestamp"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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
