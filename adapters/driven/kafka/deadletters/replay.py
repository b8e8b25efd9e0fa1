"""Replaying dead letters to their original topics, and the live tally by source and code."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from adapters.driven.kafka.deadletters.filters import (
    _NO_PROGRESS_S,
    DEAD_LETTER_SOURCES,
    DeadLetterFilter,
    RefusedMessage,
)
from adapters.driven.kafka.deadletters.reading import (
    _consumer,
    _merge,
    _partitions,
    _refused,
    _text,
    scan,
)
from adapters.driven.kafka.topics import dlq

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class Planned:
    """A selected dead letter, without its bytes (a plan may be large)."""

    partition: int
    offset: int
    timestamp_ms: int
    code: str
    key: bytes | None
    original_topic: str
    event_id: str | None
    event_type: str | None
    skip: str | None
    """Why it cannot be replayed, or None."""

    @classmethod
    def of(cls, letter: RefusedMessage) -> Planned:
        skip = letter.why_not_replayable()
        if skip is None and letter.original_topic != letter.topic:
            # A header that disagrees with the DLQ it sits in is not trusted with a send.
            skip = f"its x-original-topic {letter.original_topic!r} is not {letter.topic!r}"
        document = letter.envelope() if skip is None or not letter.truncated else None
        return cls(
            partition=letter.partition,
            offset=letter.offset,
            timestamp_ms=letter.timestamp_ms,
            code=letter.code,
            key=letter.key,
            original_topic=letter.original_topic,
            event_id=_text(document, "id"),
            event_type=_text(document, "type"),
            skip=skip,
        )


@dataclass(frozen=True)
class ReplayPlan:
    topic: str
    selected: list[Planned]
    """Every matching dead letter, oldest first (merged across partitions by timestamp)."""

    @property
    def replayable(self) -> list[Planned]:
        return [p for p in self.selected if p.skip is None]

    @property
    def skipped(self) -> list[Planned]:
        return [p for p in self.selected if p.skip is not None]


def plan_replay(
    bootstrap: str,
    topic: str,
    selection: DeadLetterFilter,
    *,
    limit: int | None = None,
) -> ReplayPlan:
    """What a replay of the matching dead letters (the ``limit`` oldest) would send.

    The plan is fixed before anything is sent, so a replayed message that is refused
    again (and comes back to the DLQ) is not picked up by the same replay.
    """
    runs: dict[int, list[Planned]] = {}
    keep = limit if limit is not None else None

    def enough(partition: int) -> bool:
        return keep is not None and len(runs[partition]) >= keep

    for letter in scan(bootstrap, topic, selection, enough=enough):
        runs.setdefault(letter.partition, []).append(Planned.of(letter))
    merged = _merge(
        runs.values(), False, limit if limit is not None else sum(map(len, runs.values()))
    )
    return ReplayPlan(topic, merged)


@dataclass
class ReplayResult:
    sent: int = 0
    """Acknowledged by the broker (acks=all)."""
    by_topic: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[Planned, str]] = field(default_factory=list)
    """Handed to the producer and not acknowledged: maybe sent, maybe not."""
    missing: list[Planned] = field(default_factory=list)
    """Planned dead letters no longer on the DLQ when it was read again (retention)."""
    error: str | None = None
    """What stopped the replay before the end of the plan."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing and self.error is None


def replay(
    bootstrap: str,
    plan: ReplayPlan,
    *,
    batch_size: int = 500,
    progress: Callable[[ReplayResult, int], None] | None = None,
) -> ReplayResult:
    """Send the plan's replayable dead letters back to their original topics.

    One producer (acks=all, one request in flight per broker so a key keeps its order
    across retries), batches of ``batch_size`` awaited before the next; the first batch with
    a failure, or a broker error, ends the replay, and the result says what was sent. Each
    original keeps its CloudEvents id, so sending it again changes nothing twice: running
    the same replay again after a failure is the way to finish it.
    """
    todo = plan.replayable
    result = ReplayResult()
    if not todo:
        return result
    wanted: dict[int, dict[int, Planned]] = {}
    for planned in todo:
        wanted.setdefault(planned.partition, {})[planned.offset] = planned
    consumer = _consumer(bootstrap, timeout_ms=None)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        retries=5,
        max_in_flight_requests_per_connection=1,
    )
    pending: list[tuple[Planned, Any]] = []

    def settle() -> bool:
        try:
            producer.flush(timeout=60)
        except KafkaError as error:
            log.warning("replay: flush failed: %r", error)  # the futures below say which
        for planned, future in pending:
            try:
                future.get(timeout=0)
            except Exception as error:
                result.failed.append((planned, f"{type(error).__name__}: {error}"))
            else:
                result.sent += 1
                result.by_topic[planned.original_topic] += 1
        pending.clear()
        if progress is not None:
            progress(result, len(todo))
        return not result.failed

    try:
        for letter in _read_exactly(consumer, plan.topic, wanted, result.missing):
            planned = wanted[letter.partition][letter.offset]
            future = producer.send(planned.original_topic, key=letter.key, value=letter.value)
            pending.append((planned, future))
            if len(pending) >= batch_size and not settle():
                return result
        settle()
    except (Exception, KeyboardInterrupt) as error:
        # Whatever stops it (the broker, a refused send, Ctrl-C), the operator must learn
        # what was sent; sending the same plan again is safe.
        result.error = f"{type(error).__name__}: {error}"
        settle()  # what was handed to the producer before the error: sent, or failed
    finally:
        producer.close(timeout=10)
        consumer.close()
    return result


def _read_exactly(
    consumer: KafkaConsumer,
    topic: str,
    wanted: Mapping[int, Mapping[int, Planned]],
    missing: list[Planned],
) -> Iterator[RefusedMessage]:
    """The dead letters at the wanted positions, in offset order per partition."""
    source_of = {dlq(topic): topic}
    last = {TopicPartition(dlq(topic), p): max(offsets) for p, offsets in wanted.items()}
    consumer.assign(list(last))
    for tp in last:
        consumer.seek(tp, min(wanted[tp.partition]))
    seen: set[tuple[int, int]] = set()
    active = set(last)
    progressed = time.monotonic()
    while active:
        batch = consumer.poll(timeout_ms=500)
        for tp, records in batch.items():
            if tp not in active:
                continue
            progressed = time.monotonic()
            for record in records:
                if record.offset in wanted[tp.partition]:
                    seen.add((tp.partition, record.offset))
                    yield _refused(source_of, record)
        done = {tp for tp in active if consumer.position(tp) > last[tp]}
        if done:
            active -= done
            consumer.pause(*done)
        if active and time.monotonic() - progressed > _NO_PROGRESS_S:
            raise TimeoutError(f"{dlq(topic)}: the planned dead letters stopped arriving")
    missing.extend(
        planned
        for partition, offsets in wanted.items()
        for offset, planned in sorted(offsets.items())
        if (partition, offset) not in seen
    )


def replay_dead_letter(bootstrap: str, topic: str, partition: int, offset: int) -> str:
    """Publish one dead letter's original bytes back to the topic it came from.

    Safe to repeat: the message keeps its CloudEvents id, which is its idempotency key.
    """
    consumer = _consumer(bootstrap)
    try:
        source = TopicPartition(dlq(topic), partition)
        consumer.assign([source])
        consumer.seek(source, offset)
        records = consumer.poll(timeout_ms=5000, max_records=1).get(source, [])
        if not records or records[0].offset != offset:
            raise LookupError(f"no dead letter at {dlq(topic)}[{partition}]@{offset}")
        letter = _refused({dlq(topic): topic}, records[0])
    finally:
        consumer.close()
    if letter.truncated:
        raise ValueError(f"{dlq(topic)}[{partition}]@{offset} is truncated: not the original")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(letter.original_topic, key=letter.key, value=letter.value).get(timeout=30)
    finally:
        producer.close()
    return letter.original_topic


class DeadLetterTally:
    """Counts dead letters by source topic and error code, following the DLQ topics live.

    Runs in a daemon thread of the process that exposes the counts (the API's ``/metrics``),
    re-reading the topics from the start when it begins: the count is of what the DLQs
    hold, so it survives restarts of the process that reports it.
    """

    def __init__(self, bootstrap: str, topics: Iterable[str] = DEAD_LETTER_SOURCES) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.following = threading.Event()
        """Set once every DLQ partition is assigned and being read."""

    def start(self) -> DeadLetterTally:
        self._thread = threading.Thread(target=self._run, name="dlq-tally", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def _run(self) -> None:
        source_of = {dlq(topic): topic for topic in self.topics}
        while not self._stop.is_set():
            try:
                self._follow(source_of)
            except KafkaError as error:
                # A broker restart or topics not provisioned yet: count again from scratch
                # once they are back, since a restarted embedded broker holds nothing.
                log.warning("dead-letter tally restarting: %r", error)
                with self._lock:
                    self._counts.clear()
                self.following.clear()
                self._stop.wait(2)

    def _follow(self, source_of: dict[str, str]) -> None:
        consumer = _consumer(self.bootstrap, timeout_ms=None)
        try:
            partitions = _partitions(consumer, self.topics)
            missing = set(source_of) - {tp.topic for tp in partitions}
            if missing:
                raise KafkaError(f"DLQ topics not provisioned yet: {sorted(missing)}")
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            self.following.set()
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=500)
                tally = Counter(
                    (letter.topic, letter.code)
                    for records in batch.values()
                    for letter in (_refused(source_of, record) for record in records)
                )
                if tally:
                    with self._lock:
                        self._counts.update(tally)
        finally:
            consumer.close()
