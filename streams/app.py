"""The faust app for inbound integrations: raw bytes in, batches to a handler, DLQ for rejects.

No business logic lives here. A handler gets a batch of :class:`InboundRecord` (bytes
exactly as received), does its work (it dedupes by message id: redelivery is normal under
at-least-once), and returns the records it rejects as :class:`DeadLetter`; this module
publishes those to ``<topic>.dlq`` with the original key and value and acks the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiokafka.errors import IllegalStateError
from faust.streams import Stream
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, EventT, StreamT, TopicT
from faust.types.transports import TransportT

from adapters.settings import Settings
from streams.resume import follow_relay_epoch
from streams.topics import dlq

_log = logging.getLogger(__name__)

HANDLER_FAILED = "handler_failed"
"""``x-dlq-error-code`` of records dead-lettered because their batch's handler kept raising."""

_MAX_REASON_CHARS = 1000
_MAX_DLQ_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """One consumed Kafka message, undecoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the handler rejects; ``error_code`` is short and machine-readable."""

    record: InboundRecord
    reason: str
    error_code: str


BatchHandler = Callable[[Sequence[InboundRecord]], Awaitable[Sequence[DeadLetter]]]

ResumeOffsets = Callable[[frozenset[tuple[str, int]]], Awaitable[Mapping[tuple[str, int], int]]]
"""Given the assigned (topic, partition)s, the offsets to resume some of them at instead
of the group's committed ones."""


def create_app(
    settings: Settings,
    *,
    app_id: str,
    handlers: Mapping[str, BatchHandler],
    batch_size: int = 500,
    batch_within_s: float = 0.05,
    handler_attempts: int = 3,
    retry_backoff_s: float = 0.5,
    resume: ResumeOffsets | None = None,
) -> faust.App:
    """A faust app (consumer group ``app_id``) with one batching agent per handled topic.

    A handler that raises is retried ``handler_attempts`` times in all, sleeping
    ``retry_backoff_s`` doubled each time; then its whole batch goes to the DLQ with the
    exception as the reason, and consumption carries on. ``resume`` is asked, after every
    rebalance, where to start reading assigned partitions; the rest start at the group's
    committed offsets (or the earliest, for a new group).
    """
    if settings.kafka_bootstrap is None:
        raise ValueError("create_app needs settings.kafka_bootstrap (start the broker first)")
    if batch_size < 1 or batch_within_s <= 0 or handler_attempts < 1:
        raise ValueError("batch_size and handler_attempts must be >= 1, batch_within_s > 0")
    session_s = settings.consumer_session_timeout_ms / 1000
    datadir = settings.data_dir / "faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = _TansuApp(
        app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        resume=resume,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        # Tansu fails aiokafka's InitProducerId: no idempotent or transactional producer,
        # so no exactly_once. Our exactly-once is the handler's PostgreSQL tracking.
        processing_guarantee="at_least_once",
        # A group join on Tansu takes half the session timeout (measured: 3 s at 6 s),
        # so faust's 60 s default would hold every start and rebalance for 30 s.
        broker_session_timeout=session_s,
        broker_heartbeat_interval=session_s / 4,
        # A new group must read what was published before it first started.
        consumer_auto_offset_reset="earliest",
        # Every topic is provisioned by streams.topics.all_topic_specs; the leader topic
        # is only for on_leader tasks, which we do not use.
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        store="memory://",
        autodiscover=False,
        datadir=datadir,
    )
    for topic, handler in handlers.items():
        _add_inbound_agent(
            app,
            topic,
            handler,
            batch_size=batch_size,
            within_s=batch_within_s,
            attempts=handler_attempts,
            backoff_s=retry_backoff_s,
        )
    return app


def dlq_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """Headers of a dead-lettered message: why, and where it came from."""
    record = letter.record
    return [
        ("x-dlq-reason", letter.reason[:_MAX_REASON_CHARS].encode()),
        ("x-dlq-error-code", letter.error_code.encode()),
        ("x-original-topic", record.topic.encode()),
        ("x-original-partition", str(record.partition).encode()),
        ("x-original-offset", str(record.offset).encode()),
    ]


# --------------------------------------------------------------------------- agent


def _add_inbound_agent(
    app: faust.App,
    topic: str,
    handler: BatchHandler,
    *,
    batch_size: int,
    within_s: float,
    attempts: int,
    backoff_s: float,
) -> None:
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(dlq(topic), key_serializer="raw", value_serializer="raw")

    async def consume(stream: StreamT[bytes]) -> None:
        # Acks are manual (noack): a batch is acked only once it has been handled and its
        # dead letters are on the broker, so a batch abandoned mid-way (an exception or a
        # cancellation here) is redelivered, never committed unapplied.
        # StreamT (what faust declares agents get) lacks noack; it is a Stream.
        feed = _Feed(cast(Stream[bytes], stream).noack(), max_pending=2 * batch_size)
        reader = asyncio.ensure_future(feed.read())
        started: set[tuple[str, int]] = set()
        try:
            while events := await feed.next_batch(batch_size, within_s=within_s, reader=reader):
                records = [_to_record(event) for event in events]
                _log_first_offsets(records, started)
                letters = await _handle(handler, records, attempts=attempts, backoff_s=backoff_s)
                if letters:
                    await _publish_dead_letters(dead_letters, letters, backoff_s=backoff_s)
                for event in events:
                    await stream.ack(event)
        finally:
            reader.cancel()

    app.agent(source, name=f"{app.conf.id}.{topic}")(consume)


def _log_first_offsets(records: Sequence[InboundRecord], started: set[tuple[str, int]]) -> None:
    # Where each partition started after the worker came up: shows whether it resumed
    # where the store left off or re-read records it had applied already.
    for record in records:
        origin = (record.topic, record.partition)
        if origin not in started:
            started.add(origin)
            _log.info("first record from %s:%d at offset %d", *origin, record.offset)


_IDLE_S = 0.002
"""A gap this long between two records means the fetch that brought them is drained."""


class _Feed:
    """The stream's events, read ahead while the previous batch is being applied.

    faust's ``take(n, within)`` waits its whole window after every batch and stops
    reading while the caller handles one, so a record waited for the window, then for the
    batch before it, then for its own. Here a reader task keeps buffering (up to
    ``max_pending``, then it stops reading and faust's queues push back on the fetcher),
    and a batch goes out as soon as the handler is free and the current fetch has landed:
    one record at low rates, bigger batches by themselves when the handler is the
    bottleneck. One reader and one handler per topic keep the order of every partition.
    """

    def __init__(self, stream: StreamT[bytes], *, max_pending: int) -> None:
        self._stream = stream
        self._max_pending = max_pending
        self._pending: deque[EventT[bytes]] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def read(self) -> None:
        try:
            async for event in self._stream.events():
                self._pending.append(event)
                self._arrived.set()
                if len(self._pending) >= self._max_pending:
                    self._room.clear()
                    await self._room.wait()
        finally:
            self._arrived.set()  # wake the handler side, which then sees the reader ended

    async def next_batch(
        self, size: int, *, within_s: float, reader: asyncio.Future[None]
    ) -> list[EventT[bytes]]:
        """The next batch, in arrival order; empty once the stream has ended."""
        pending = self._pending
        while not pending:
            self._arrived.clear()
            await self._arrived.wait()
            if reader.done():
                reader.result()  # the reader's exception, if it crashed
                return []  # the stream ended: the agent is stopping
        deadline = asyncio.get_running_loop().time() + within_s
        while len(pending) < size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(_IDLE_S, remaining))
            except TimeoutError:
                break  # nothing more came: the fetch is drained
        batch = [pending.popleft() for _ in range(min(size, len(pending)))]
        if len(pending) < self._max_pending:
            self._room.set()
        return batch


def _to_record(event: EventT[bytes]) -> InboundRecord:
    message = event.message
    timestamp = message.timestamp
    return InboundRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        # A tombstone on an inbound topic is not a valid message; b"" lets the handler
        # dead-letter it like any other undecodable value.
        value=message.value or b"",
        headers=_headers(message.headers),
        timestamp_ms=None if timestamp is None else round(timestamp * 1000),
    )


def _headers(
    raw: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None,
) -> tuple[tuple[str, bytes], ...]:
    # aiokafka hands over a sequence of pairs; faust's types also allow a mapping.
    if raw is None:
        return ()
    return tuple(raw.items()) if isinstance(raw, Mapping) else tuple(raw)


async def _handle(
    handler: BatchHandler, records: Sequence[InboundRecord], *, attempts: int, backoff_s: float
) -> Sequence[DeadLetter]:
    for attempt in range(1, attempts + 1):
        try:
            return await handler(records)
        except Exception as exc:  # the agent must outlive any handler bug
            first, last = records[0], records[-1]
            _log.exception(
                "handler failed on %s (%d records, offsets %s:%s..%s:%s), attempt %d/%d",
                first.topic,
                len(records),
                first.partition,
                first.offset,
                last.partition,
                last.offset,
                attempt,
                attempts,
            )
            if attempt == attempts:
                reason = f"{type(exc).__name__}: {exc}"
                return [DeadLetter(record, reason, HANDLER_FAILED) for record in records]
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # the loop returns on its last attempt


async def _publish_dead_letters(
    topic: TopicT, letters: Sequence[DeadLetter], *, backoff_s: float
) -> None:
    # Retried until the broker takes them, never dropped: the batch is acked only after.
    # A retry after a partial failure may duplicate some; DLQ readers must tolerate that.
    delay = backoff_s
    while True:
        try:
            pending = [
                # force=True: publish now, not attached to the current event's commit.
                await topic.send(
                    key=letter.record.key,
                    value=letter.record.value,
                    headers=dlq_headers(letter),
                    force=True,
                )
                for letter in letters
            ]
            await asyncio.gather(*pending)
            return
        except Exception:
            _log.exception(
                "could not publish %d dead letters to %s; retrying in %.1fs",
                len(letters),
                topic.get_topic_name(),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DLQ_BACKOFF_S)


# --------------------------------------------------------------------------- transport


class _TansuApp(faust.App):
    """A faust App whose consumer honours our fetch wait and our resume offsets."""

    def __init__(
        self,
        app_id: str,
        *,
        fetch_max_wait_ms: int,
        resume: ResumeOffsets | None,
        **options: Any,
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.resume_offsets = resume
        super().__init__(app_id, **options)
        # A broker that lost its memory serves new logs under the same names.
        follow_relay_epoch(self, resume)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust hard-codes fetch_max_wait_ms=1500 and has no setting for it. Tansu holds a
        # fetch until then when a partition has nothing new, so a message waited up to
        # ~750 ms; ours (10-50 ms) bounds that latency. aiokafka reads this attribute when
        # the consumer starts, which is after this returns.
        consumer._fetch_max_wait_ms = cast(_TansuApp, self.app).fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        # faust seeks every assigned partition to its committed offset once a rebalance
        # is done (and again whenever it fetched while paused); the caller's offsets then
        # override those, and go into faust's own read and committed offsets with them.
        committed = dict(await super().seek_to_committed())
        resume = cast(_TansuApp, self.app).resume_offsets
        if resume is None or not committed:
            return committed
        assigned = {(tp.topic, tp.partition): tp for tp in committed}
        try:
            offsets = await resume(frozenset(assigned))
        except Exception:  # the committed offsets are a safe fallback: never crash on it
            _log.exception("could not tell where to resume; the committed offsets apply")
            return committed
        # The resume call awaits PostgreSQL and the broker: the group may have rebalanced
        # meanwhile, and a seek on a partition no longer ours fails. The next rebalance
        # seeks again.
        current = self.assignment()
        seeks = {
            tp: offset
            for pair, offset in offsets.items()
            if (tp := assigned.get(pair)) is not None and tp in current
        }
        if seeks:
            try:
                await self._thread.seek_wait(seeks)
            except IllegalStateError as changed:
                _log.warning("the assignment changed while resuming: %r", changed)
                return committed
            committed.update(seeks)
        return committed

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
