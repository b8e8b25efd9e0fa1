"""Dead letters read back from the DLQ topics: listing, replaying and counting them.

The workers write a refused message's original bytes to ``<topic>.dlq`` with the reason in
headers (streams/app.py). Everything here reads those topics; nothing else records dead
letters, so the topics are the one source of truth for operators and for ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from adapters.topics import EVENT_TOPIC_BY_KIND, INBOUND_TOPICS, dlq

log = logging.getLogger(__name__)

# Inbound topics, and the relayed event topics whose undecodable records the projections
# worker refuses.
DEAD_LETTER_SOURCES = (*INBOUND_TOPICS, *EVENT_TOPIC_BY_KIND.values())


@dataclass(frozen=True)
class RefusedMessage:
    topic: str
    """The topic the message was refused on (not the DLQ's name)."""
    partition: int
    offset: int
    code: str
    reason: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def _consumer(bootstrap: str, timeout_ms: int | None = 1500) -> KafkaConsumer:
    # No group: reading a DLQ must never move anyone's committed offsets.
    options = {"consumer_timeout_ms": timeout_ms} if timeout_ms is not None else {}
    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)


def _partitions(consumer: KafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    return [
        TopicPartition(dlq(topic), partition)
        for topic in topics
        for partition in sorted(consumer.partitions_for_topic(dlq(topic)) or ())
    ]


def _refused(source_of: dict[str, str], record: Any) -> RefusedMessage:
    headers: dict[str, bytes] = dict(record.headers or [])
    return RefusedMessage(
        topic=source_of.get(record.topic, record.topic),
        partition=record.partition,
        offset=record.offset,
        code=headers.get("x-dlq-error-code", b"unknown").decode(errors="replace"),
        reason=headers.get("x-dlq-reason", b"").decode(errors="replace"),
        key=record.key,
        value=record.value,
        headers=headers,
    )


def read_dead_letters(
    bootstrap: str, topics: Iterable[str] = DEAD_LETTER_SOURCES
) -> Iterator[RefusedMessage]:
    """Every dead letter of ``topics`` (source topic names), oldest first per partition."""
    topics = tuple(topics)
    source_of = {dlq(topic): topic for topic in topics}
    consumer = _consumer(bootstrap)
    try:
        partitions = _partitions(consumer, topics)
        if not partitions:
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for message in consumer:
            yield _refused(source_of, message)
    finally:
        consumer.close()


def list_dead_letters(bootstrap: str, topic: str, limit: int = 50) -> list[dict[str, Any]]:
    """The dead letters of one topic, oldest first, with why they were refused."""
    found = []
    for letter in read_dead_letters(bootstrap, (topic,)):
        found.append(
            {
                "partition": letter.partition,
                "offset": letter.offset,
                "code": letter.code,
                "reason": letter.reason,
                "value": letter.value.decode(errors="replace"),
            }
        )
        if len(found) >= limit:
            break
    return found


def count_by_code(bootstrap: str, topics: Iterable[str] = INBOUND_TOPICS) -> dict[str, int]:
    return dict(Counter(letter.code for letter in read_dead_letters(bootstrap, topics)))


def replay_dead_letter(bootstrap: str, topic: str, partition: int, offset: int) -> str:
    """Publish a dead letter's original bytes back to the topic it came from.

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
        record = records[0]
    finally:
        consumer.close()
    headers = dict(record.headers)
    original = str(headers.get("x-original-topic", topic.encode()).decode())
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(original, key=record.key, value=record.value).get(timeout=30)
    finally:
        producer.close()
    return original


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
