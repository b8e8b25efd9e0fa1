"""Resuming a projections worker from the offsets stored with its read models.

faust resumes from the group's committed offsets, which trail what PostgreSQL has applied
(they are committed every few seconds, after the batch) and vanish with the group (a new
group id, a reset, a broker that lost its memory). The offsets stored in ``rm_offsets``
commit in the batch's own transaction, so they are exact; but they number the records
of one particular log. After the broker lost its data the relay refills the topics from
an earlier position and the same offsets name other records. So a stored offset is used
only once the record just before it is found to carry the event-store position stored
with it; otherwise the worker falls back to faust's offsets (re-reading is harmless: the
store skips versions it has applied).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from adapters.readmodels import ResumePoint

log = logging.getLogger(__name__)

Partition = tuple[str, int]


async def check_points(
    bootstrap: str, points: Mapping[Partition, ResumePoint], *, timeout_s: float = 10.0
) -> dict[Partition, str | None]:
    """Per partition, ``None`` if its stored point still refers to the broker's log, or why
    not. Reads the record at ``next_offset - 1`` of each with a short-lived consumer."""
    # Offset 0 (a partition registered, nothing applied from it) is no place to resume at:
    # it says nothing a fresh group's "earliest" does not.
    wanted = {pair: point for pair, point in points.items() if point.next_offset > 0}
    verdicts: dict[Partition, str | None] = {}
    if not wanted:
        return verdicts
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        # An offset past the log's end must fail, not quietly move elsewhere.
        auto_offset_reset="none",
        fetch_max_wait_ms=50,
    )
    try:
        await consumer.start()
        tps = {pair: TopicPartition(*pair) for pair in wanted}
        consumer.assign(list(tps.values()))
        for pair, point in wanted.items():
            consumer.seek(tps[pair], point.next_offset - 1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(verdicts) < len(wanted) and (remaining := deadline - loop.time()) > 0:
            try:
                fetched = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            except OffsetOutOfRangeError as error:
                for tp in dict(error.args[0]):
                    verdicts[(tp.topic, tp.partition)] = "the stored offset is out of range"
                    consumer.pause(tp)
                continue
            for tp, records in fetched.items():
                pair = (tp.topic, tp.partition)
                if records and pair not in verdicts:
                    verdicts[pair] = _verdict(records[0], wanted[pair])
                    consumer.pause(tp)
    except KafkaError as error:
        log.warning("could not read the records before the stored offsets: %r", error)
        return {pair: f"the broker failed: {error!r}" for pair in wanted}
    finally:
        await consumer.stop()
    for pair in wanted:
        # Tansu answers a fetch past the end of its log with nothing rather than an error.
        # The wait is generous: on a loaded machine a refusal for a slow fetch would pass
        # over good offsets (harmless, but a needless re-read).
        verdicts.setdefault(pair, f"no record came back within {timeout_s:.0f} s")
    return verdicts


def _verdict(record: Any, point: ResumePoint) -> str | None:
    expected_offset = point.next_offset - 1
    if record.offset != expected_offset:
        return f"offset {expected_offset} is gone (the log goes on at {record.offset})"
    try:
        message = orjson.loads(record.value)
        # The relay's position: a CloudEvents extension, or the data's field.
        found = int(message.get("position") or message["data"]["position"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return f"the record at offset {expected_offset} carries no position"
    if found != point.position:
        return (
            f"the record at offset {expected_offset} carries position {found}, "
            f"stored: {point.position} (the log was refilled)"
        )
    return None


async def verified_offsets(
    bootstrap: str, points: Mapping[Partition, ResumePoint]
) -> dict[Partition, int]:
    """The stored next offsets that may be sought to; logs every partition it refuses."""
    verdicts = await check_points(bootstrap, points)
    offsets: dict[Partition, int] = {}
    for (topic, partition), verdict in sorted(verdicts.items()):
        point = points[(topic, partition)]
        if verdict is None:
            log.info(
                "resuming %s:%d at its stored offset %d (position %d)",
                topic,
                partition,
                point.next_offset,
                point.position,
            )
            offsets[(topic, partition)] = point.next_offset
        else:
            log.warning(
                "not resuming %s:%d at its stored offset %d: %s; faust's offsets apply",
                topic,
                partition,
                point.next_offset,
                verdict,
            )
    return offsets
