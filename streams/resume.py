"""Resuming a projections worker from the offsets stored with its read models.

faust resumes from the group's committed offsets, which trail what PostgreSQL has applied
(they are committed every few seconds, after the batch) and vanish with the group (a new
group id, a reset, a broker that lost its memory). The offsets stored in ``rm_offsets``
commit in the batch's own transaction, so they are exact; but they number the records
of one particular log. After the broker lost its data the relay refills the topics from
an earlier position and the same offsets name other records. So a stored offset is used
only once the record just before it is found to carry the event-store position stored
with it; otherwise the worker reads the partition from its start (re-reading is harmless:
the store skips versions it has applied), never from faust's offsets, which number the
old log as well. Only when the broker cannot be asked do faust's offsets apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, OffsetOutOfRangeError

from adapters.readmodels import ResumePoint
from adapters.topics import RELAY_EPOCH

log = logging.getLogger(__name__)

Partition = tuple[str, int]
BROKER_FAILED = "the broker failed"


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
        return {pair: f"{BROKER_FAILED}: {error!r}" for pair in wanted}
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
        elif verdict.startswith(BROKER_FAILED):
            log.warning(
                "not resuming %s:%d at its stored offset %d: %s; faust's offsets apply",
                topic,
                partition,
                point.next_offset,
                verdict,
            )
        else:
            # This log is not the one the stored offset numbers, and faust's committed
            # offsets (kept in its memory, or committed into the new broker's group from
            # it) number the old one too: seeking there, faust would drop every record
            # below them ("DROPPED MESSAGE ROFF"). The relay refilled the new log from
            # before anything unapplied; its start is the one safe place.
            log.warning(
                "not resuming %s:%d at its stored offset %d: %s; reading from the start",
                topic,
                partition,
                point.next_offset,
                verdict,
            )
            offsets[(topic, partition)] = 0
    return offsets


# ---------------------------------------------------------------- a broker with a new log
EPOCH_CHECK_S = 2.0
Resume = Callable[[frozenset[Partition]], Awaitable[Mapping[Partition, int]]]


def bootstrap_of(app: faust.App) -> str:
    return ",".join(f"{url.host}:{url.port}" for url in app.conf.broker)


class RelayEpochs:
    """Reads the epochs of the relay's markers on the broker (none: no marker topic yet).

    The relay writes one per broker it provisioned (adapters/relay.py), so they name the
    broker's log: after a restart with memory storage, none of the old ones is left. One
    consumer (no group) is kept: the topic is tiny and re-read whole each time.
    """

    def __init__(self, bootstrap: str, *, timeout_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self) -> frozenset[str]:
        try:
            return await self._read()
        except Exception:
            await self.close()  # made anew next time
            raise

    async def _read(self) -> frozenset[str]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=50,
                request_timeout_ms=int(self.timeout_s * 1000),
            )
            await consumer.start()
            self._consumer = consumer
        consumer = self._consumer
        if RELAY_EPOCH not in await consumer.topics():
            return frozenset()
        partitions = consumer.partitions_for_topic(RELAY_EPOCH) or set()
        tps = [TopicPartition(RELAY_EPOCH, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        if consumer.assignment() != pending:
            consumer.assign(list(pending))
        if pending:
            await consumer.seek_to_beginning(*pending)
        epochs: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while pending and loop.time() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                for record in records:
                    with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                        epochs.add(str(orjson.loads(record.value)["epoch"]))
                    if record.offset + 1 >= ends[tp]:
                        pending.discard(tp)
        return frozenset(epochs)

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()


def follow_relay_epoch(app: faust.App, resume: Resume | None) -> None:
    """Seek every assigned partition again when the broker's log turns out to be new.

    A broker that lost its memory serves new logs under the old names, and faust does not
    notice unless a rebalance happens to come after the refill: its read and committed
    offsets (kept in memory, and committed into the new broker's group from there) number
    the old log, so it skips every record below them or drops them as read already
    ("DROPPED MESSAGE ROFF"). When none of the relay's epochs seen before is left, every
    assigned partition is sought to its verified stored offset (``resume``) or its start.
    """
    seen: list[frozenset[str]] = []
    reader = RelayEpochs(bootstrap_of(app))
    lock = asyncio.Lock()
    pending: set[asyncio.Task[None]] = set()

    async def check() -> None:
        async with lock:
            try:
                epochs = await reader.read()
            except Exception as error:  # a watcher must never bring the worker down
                log.debug("could not read the relay's epoch markers: %r", error)
                return
            if not epochs:
                return  # the relay has not provisioned this broker yet
            if seen and epochs.isdisjoint(seen[-1]):
                log.warning(
                    "the broker's log is a new one (relay epochs %s): seeking again",
                    sorted(epochs),
                )
                await reseek(app, resume)
            seen[:] = [epochs]

    async def after_rebalance(sender: object, /, *args: object, **kwargs: object) -> None:
        # The first look comes with the first assignment, so a broker lost soon after the
        # start is not taken for the one the worker began on. Not awaited here: the seek
        # waits for the flow, which the rebalance resumes after this returns.
        task = asyncio.ensure_future(check())
        pending.add(task)
        task.add_done_callback(pending.discard)

    app.on_rebalance_complete.connect(after_rebalance)
    app.timer(EPOCH_CHECK_S, name="follow_the_relay_epoch")(check)


async def reseek(app: faust.App, resume: Resume | None) -> None:
    """Seek every assigned partition of a new log to its verified stored offset, or its
    start, and make faust forget the offsets it tracked for the old one."""
    consumer = cast(Any, app.consumer)  # faust's bookkeeping is not in its typed interface
    # faust's own way to move the fetcher: no record fetched from the old position is
    # handed on (nor its read offset set) while the seek is under way.
    consumer.stop_flow()
    try:
        await consumer.wait_for_stopped_flow()
        assigned = set(consumer.assignment())
        if not assigned:
            return
        offsets: Mapping[Partition, int] = {}
        if resume is not None:
            offsets = await resume(frozenset((tp.topic, tp.partition) for tp in assigned))
        assigned &= set(consumer.assignment())  # a rebalance meanwhile seeks by itself
        seeks = {tp: offsets.get((tp.topic, tp.partition), 0) for tp in assigned}
        for tp, offset in seeks.items():
            # Acks of records of the old log must not be committed into the new group.
            consumer._acked.pop(tp, None)
            consumer._acked_index.pop(tp, None)
            consumer._gap.pop(tp, None)
            consumer._read_offset[tp] = offset or None
            consumer._committed_offset[tp] = None
        try:
            await consumer.seek_wait(seeks)
        except IllegalStateError as changed:
            log.warning("the assignment changed while seeking again: %r", changed)
            return
        for tp, offset in sorted(seeks.items()):
            log.info("%s:%d now read from offset %d", tp.topic, tp.partition, offset)
    finally:
        consumer.resume_flow()
