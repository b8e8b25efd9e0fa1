"""The faust app for inbound integrations: raw bytes in, batches to a handler, DLQ for rejects.

No business logic lives here. A handler gets a batch of :class:`InboundRecord` (bytes
exactly as received), does its work (it dedupes by message id: redelivery is normal under
at-least-once), and returns the records it rejects as :class:`DeadLetter`; this module
publishes those to ``<topic>.dlq`` with the original key and value (truncated when too big
for a producer) and acks the batch. A batch whose handler keeps raising is split until the
failing records are alone; those alone are dead-lettered. Dead letters that cannot be
published after bounded retries fail the worker loudly (:func:`add_failure_hook`): a batch
is never acked without its dead letters on the broker.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
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
"""``x-dlq-error-code`` of a record dead-lettered because the handler kept raising on it alone."""

DLQ_MAX_VALUE_BYTES = 256 * 1024
"""A dead letter's value above this is truncated. The producer refuses requests above 1 MB
(and a broker may refuse less); 256 KiB leaves room for the key and headers, and equals the
inbound contract's limit, so every message refused as ``oversized`` is truncated."""

DLQ_TRUNCATED_BYTES = 64 * 1024
"""How much of a truncated value is kept: enough to see what the message was."""

TRUNCATED_HEADER = "x-dlq-truncated"
"""``true`` on a dead letter that holds only the first bytes of the original: it cannot be
replayed; its ``x-dlq-original-size`` and ``x-dlq-original-sha256`` identify the original."""

_MAX_REASON_CHARS = 1000
_MAX_BACKOFF_S = 30.0

FailureHook = Callable[[str], None]
"""Told why the worker cannot go on; it must stop the process (see streams.worker)."""

Transient = Callable[[BaseException], bool]
"""Whether a handler's exception says a resource is unavailable (retry until it is back)
rather than that the records are bad (split the batch, dead-letter the culprits)."""


class DeadLetterPublicationFailed(RuntimeError):
    """Dead letters could not be published within the configured attempts."""


def no_transient_errors(error: BaseException) -> bool:
    return False


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
    transient: Transient = no_transient_errors,
) -> faust.App:
    """A faust app (consumer group ``app_id``) with one batching agent per handled topic.

    A handler that raises is retried ``handler_attempts`` times in all, sleeping
    ``retry_backoff_s`` doubled each time; if it still raises, the batch is split in halves
    handled one after the other, recursively, and a record that fails alone goes to the DLQ
    with the exception as the reason (``handler_failed``); consumption carries on. An
    exception ``transient`` says is an outage is retried, with backoff, until it passes:
    nothing is dead-lettered for it. Dead letters are published with up to
    ``settings.dlq_publish_attempts`` attempts; then the failure hooks are told, and the
    batch is never acked. ``resume`` is asked, after every rebalance, where to start reading
    assigned partitions; the rest start at the group's committed offsets (or the earliest,
    for a new group).
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
            transient=transient,
            publish_attempts=settings.dlq_publish_attempts,
        )
    return app


def add_failure_hook(app: faust.App, hook: FailureHook) -> bool:
    """Have ``hook`` told when the app cannot go on (e.g. its DLQ refuses its dead letters).

    False for an app not made by :func:`create_app` (it never fails this way).
    """
    if not isinstance(app, _TansuApp):
        return False
    app.failure_hooks.append(hook)
    return True


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


def dlq_message(letter: DeadLetter) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers a dead letter is published with.

    A value too big for a producer is cut to its first :data:`DLQ_TRUNCATED_BYTES`, whatever
    the error: publishing it whole would fail every time, and the batch behind it could
    never be acked. The headers then say so, with the original's size and SHA-256.
    """
    value = letter.record.value
    headers = dlq_headers(letter)
    if len(value) <= DLQ_MAX_VALUE_BYTES:
        return value, headers
    headers += [
        (TRUNCATED_HEADER, b"true"),
        ("x-dlq-original-size", str(len(value)).encode()),
        ("x-dlq-original-sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    return value[:DLQ_TRUNCATED_BYTES], headers


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
    transient: Transient,
    publish_attempts: int,
) -> None:
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(dlq(topic), key_serializer="raw", value_serializer="raw")

    # From a batch's first failure until it is acked, a stop or a rebalance does not wait
    # for it (see _Consumer.wait_empty): its retries may last as long as an outage.
    holding = cast(_TansuApp, app).holding

    def hold() -> None:
        holding.add(topic)

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
                letters = await _handle(
                    handler,
                    records,
                    attempts=attempts,
                    backoff_s=backoff_s,
                    transient=transient,
                    hold=hold,
                )
                if letters:
                    try:
                        await _publish_dead_letters(
                            dead_letters,
                            letters,
                            attempts=publish_attempts,
                            backoff_s=backoff_s,
                            hold=hold,
                        )
                    except DeadLetterPublicationFailed as failed:
                        cast(_TansuApp, app).fail(str(failed))
                        # Never acked: the hooks stop the worker, and the records come
                        # back to whoever consumes the partition next.
                        await asyncio.Event().wait()
                for event in events:
                    await stream.ack(event)
                holding.discard(topic)
        finally:
            holding.discard(topic)
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
    handler: BatchHandler,
    records: Sequence[InboundRecord],
    *,
    attempts: int,
    backoff_s: float,
    transient: Transient,
    hold: Callable[[], None],
) -> Sequence[DeadLetter]:
    """The handler's dead letters for ``records``, each record applied once.

    Why the split is here and not in a handler: a handler that raises has failed as a
    whole (the inbound one commits a batch in one transaction, so nothing of it stayed),
    and only this loop sees every handler's exceptions. Halving until a record fails alone
    costs about 2 log2(n) extra calls for one culprit and applies every other record once
    (handlers dedupe by message id anyway); the left half goes first, which keeps the order
    of each partition for the records that pass.
    """
    error = await _attempt(
        handler, records, attempts=attempts, backoff_s=backoff_s, transient=transient, hold=hold
    )
    if not isinstance(error, BaseException):
        return error
    if len(records) == 1:
        return [DeadLetter(records[0], f"{type(error).__name__}: {error}", HANDLER_FAILED)]
    middle = len(records) // 2
    _log.warning(
        "splitting a failing batch of %d records from %s in two", len(records), records[0].topic
    )
    # Halves get one attempt each: the whole batch already had its retries.
    first = await _handle(
        handler, records[:middle], attempts=1, backoff_s=backoff_s, transient=transient, hold=hold
    )
    rest = await _handle(
        handler, records[middle:], attempts=1, backoff_s=backoff_s, transient=transient, hold=hold
    )
    return [*first, *rest]


async def _attempt(
    handler: BatchHandler,
    records: Sequence[InboundRecord],
    *,
    attempts: int,
    backoff_s: float,
    transient: Transient,
    hold: Callable[[], None],
) -> Sequence[DeadLetter] | Exception:
    """The handler's result, or its last exception after ``attempts`` failed calls.

    Transient failures do not count: they are retried until they pass (a stop of the
    worker cancels the sleep), since dead-lettering good records for an outage would lose
    them for everyone who does not replay the DLQ.
    """
    failed = 0
    delay = backoff_s
    while True:
        try:
            return await handler(records)
        except Exception as exc:  # the agent must outlive any handler bug
            hold()
            first, last = records[0], records[-1]
            outage = transient(exc)
            if not outage:
                failed += 1
            _log.exception(
                "handler failed on %s (%d records, offsets %s:%s..%s:%s), %s",
                first.topic,
                len(records),
                first.partition,
                first.offset,
                last.partition,
                last.offset,
                "a resource is unavailable: retrying until it is back"
                if outage
                else f"attempt {failed}/{attempts}",
            )
            if failed >= attempts:
                return exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)


async def _publish_dead_letters(
    topic: TopicT,
    letters: Sequence[DeadLetter],
    *,
    attempts: int,
    backoff_s: float,
    hold: Callable[[], None],
) -> None:
    """Publish ``letters``, or raise DeadLetterPublicationFailed after ``attempts`` tries.

    Bounded: a dead letter the broker refuses for good (a key too big for it, a DLQ topic
    that is gone) would otherwise hold the topic forever with nothing but a log line. A
    retry after a partial failure may duplicate some; DLQ readers must tolerate that.
    """
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            pending = []
            for letter in letters:
                value, headers = dlq_message(letter)
                # force=True: publish now, not attached to the current event's commit.
                pending.append(
                    await topic.send(
                        key=letter.record.key, value=value, headers=headers, force=True
                    )
                )
            await asyncio.gather(*pending)
            return
        except Exception as exc:
            hold()
            _log.exception(
                "could not publish %d dead letters to %s (attempt %d/%d)",
                len(letters),
                topic.get_topic_name(),
                attempt,
                attempts,
            )
            if attempt == attempts:
                first = letters[0].record
                raise DeadLetterPublicationFailed(
                    f"could not publish {len(letters)} dead letter(s) to "
                    f"{topic.get_topic_name()} in {attempts} attempts (first from "
                    f"{first.topic}:{first.partition} at offset {first.offset}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)
    raise AssertionError("unreachable")  # the last attempt returns or raises


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
        self.failure_hooks: list[FailureHook] = []
        self.failure: str | None = None
        self.holding = _Holding()
        super().__init__(app_id, **options)
        # A broker that lost its memory serves new logs under the same names.
        follow_relay_epoch(self, resume)

    def fail(self, reason: str) -> None:
        """The worker cannot go on without skipping records: say so, loudly, once."""
        if self.failure is not None:
            return
        self.failure = reason
        _log.critical("worker failed, its batch is not acked: %s", reason)
        for hook in self.failure_hooks:
            try:
                hook(reason)
            except Exception:
                _log.exception("a failure hook failed")

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)


class _Holding:
    """The agents holding a batch that failed at least once and is not acked yet."""

    def __init__(self) -> None:
        self._topics: set[str] = set()
        self.any = asyncio.Event()

    def add(self, topic: str) -> None:
        self._topics.add(topic)
        self.any.set()

    def discard(self, topic: str) -> None:
        self._topics.discard(topic)
        if not self._topics:
            self.any.clear()


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
    async def wait_empty(self) -> None:
        # faust's loop, with one exit more. Before a stop or a rebalance, faust waits until
        # every event taken is acked; a batch being retried (an outage, a DLQ refusing) may
        # not be acked for minutes or ever, which made the worker deaf to SIGTERM. Only
        # acked offsets are committed, so such a batch is simply read again later.
        holding = cast(_TansuApp, self.app).holding
        while not self.should_stop and self._unacked_messages:
            if holding.any.is_set():
                _log.warning("not waiting for a batch being retried: it stays unacked")
                break
            gc.collect()  # unacked messages are weakly held: drop those nobody holds
            await self.commit()
            if not self._unacked_messages:
                break
            await self._wait_for_ack(timeout=1)
            self._clean_unacked_messages()
        await self.commit_and_end_transactions()

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
