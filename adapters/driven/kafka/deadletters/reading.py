"""Reading dead letters back: bounded scans without a consumer group, pages, counts."""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from kafka import KafkaConsumer, TopicPartition

from adapters.driven.kafka.deadletters.filters import (
    _NO_PROGRESS_S,
    DEAD_LETTER_SOURCES,
    DeadLetterFilter,
    RefusedMessage,
    format_positions,
)
from adapters.driven.kafka.topics import INBOUND_TOPICS, dlq

log = logging.getLogger(__name__)

_EVERY_LETTER = DeadLetterFilter()
"""The default selection: no criteria, every dead letter."""


# --------------------------------------------------------------------------- reading


def _consumer(bootstrap: str, timeout_ms: int | None = 1500) -> KafkaConsumer:
    # No group: reading a DLQ must never move anyone's committed offsets. A start below
    # the log's (retention) is moved to its beginning, never to its end.
    options = {"consumer_timeout_ms": timeout_ms} if timeout_ms is not None else {}
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        **options,
    )


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
        value=record.value if record.value is not None else b"",
        headers=headers,
        timestamp_ms=record.timestamp if record.timestamp is not None else -1,
    )


def _starts(
    consumer: KafkaConsumer, partitions: list[TopicPartition], selection: DeadLetterFilter
) -> dict[TopicPartition, int]:
    """Where each partition's read starts; partitions with nothing to read are left out."""
    starts = dict(consumer.beginning_offsets(partitions))
    since = selection.since_ms
    if since is not None:
        found = consumer.offsets_for_times({tp: since for tp in partitions})
        for tp in partitions:
            at = found.get(tp)
            if at is None:
                # Kafka's answer when every record is older than ``since``.
                del starts[tp]
            else:
                starts[tp] = max(starts[tp], at.offset)
    for tp in list(starts):
        if tp.partition in selection.after:
            starts[tp] = max(starts[tp], selection.after[tp.partition] + 1)
        if starts[tp] >= selection.before.get(tp.partition, starts[tp] + 1):
            del starts[tp]
    return starts


def scan(
    bootstrap: str,
    topic: str,
    selection: DeadLetterFilter = _EVERY_LETTER,
    *,
    enough: Callable[[int], bool] | None = None,
) -> Iterator[RefusedMessage]:
    """The dead letters of ``topic`` (its source name) that ``selection`` matches, in offset
    order per partition (partitions interleaved).

    ``enough(partition)`` is asked after each match: True stops reading that partition.
    """
    consumer = _consumer(bootstrap, timeout_ms=None)
    try:
        yield from _scan(consumer, topic, selection, enough)
    finally:
        consumer.close()


def _scan(
    consumer: KafkaConsumer,
    topic: str,
    selection: DeadLetterFilter,
    enough: Callable[[int], bool] | None,
) -> Iterator[RefusedMessage]:
    source_of = {dlq(topic): topic}
    partitions = [
        tp
        for tp in _partitions(consumer, (topic,))
        if not selection.partitions or tp.partition in selection.partitions
    ]
    if not partitions:
        return
    starts = _starts(consumer, partitions, selection)
    if not starts:
        return
    ends = consumer.end_offsets(list(starts))
    active = set(starts)
    consumer.assign(list(starts))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    progressed = time.monotonic()
    while active:
        # Short: an empty poll only ends partitions already at their end, where records
        # not yet fetched arrived after the read began.
        batch = consumer.poll(timeout_ms=200)
        done: set[TopicPartition] = set()
        for tp, records in batch.items():
            if tp not in active:
                continue
            progressed = time.monotonic()
            stop = selection.before.get(tp.partition)
            for record in records:
                if stop is not None and record.offset >= stop:
                    done.add(tp)
                    break
                letter = _refused(source_of, record)
                if selection.matches(letter):
                    yield letter
                    if enough is not None and enough(tp.partition):
                        done.add(tp)
                        break
        if not batch:
            # Nothing buffered and nothing fetched: the partitions at or past the end the
            # broker reported at the start are read through (the rest of the embedded
            # broker's last batch came with the record before that end).
            at_end = {tp for tp in active if consumer.position(tp) >= ends.get(tp, 0)}
            done |= at_end
            if active - done and time.monotonic() - progressed > _NO_PROGRESS_S:
                raise TimeoutError(
                    f"{dlq(topic)}: no records for {_NO_PROGRESS_S:.0f} s short of the end "
                    f"({sorted((tp.partition, ends[tp]) for tp in active - done)})"
                )
        if done:
            active -= done
            consumer.pause(*done)


def read_dead_letters(
    bootstrap: str, topics: Iterable[str] = DEAD_LETTER_SOURCES
) -> Iterator[RefusedMessage]:
    """Every dead letter of ``topics`` (source topic names), oldest first per partition."""
    for topic in topics:
        yield from scan(bootstrap, topic)


# --------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class Page:
    letters: list[RefusedMessage]
    newest_first: bool
    cursor: dict[int, int] | None
    """Positions to continue from (``after`` oldest first, ``before`` newest first), or
    None when this page holds the last matching dead letters."""

    @property
    def cursor_option(self) -> str | None:
        if self.cursor is None:
            return None
        return f"--{'before' if self.newest_first else 'after'} {format_positions(self.cursor)}"


class _Positioned(Protocol):
    @property
    def partition(self) -> int: ...
    @property
    def timestamp_ms(self) -> int: ...


_P = TypeVar("_P", bound=_Positioned)


def _merge(runs: Iterable[list[_P]], newest_first: bool, limit: int) -> list[_P]:
    """Takes the first ``limit`` of a greedy merge of per-partition runs by timestamp.

    The merge only ever compares the heads of the runs, so the page after a cursor is
    exactly what the same merge gives next: pages are disjoint and, together, complete.
    """
    sign = -1 if newest_first else 1
    heads: list[tuple[int, int, int, list[_P]]] = []
    for run in runs:
        if run:
            first = run[0]
            heads.append((sign * first.timestamp_ms, sign * first.partition, 0, run))
    heapq.heapify(heads)
    merged: list[_P] = []
    while heads and len(merged) < limit:
        _, _, index, run = heapq.heappop(heads)
        merged.append(run[index])
        if index + 1 < len(run):
            nxt = run[index + 1]
            heapq.heappush(heads, (sign * nxt.timestamp_ms, sign * nxt.partition, index + 1, run))
    return merged


def list_page(
    bootstrap: str,
    topic: str,
    selection: DeadLetterFilter = _EVERY_LETTER,
    *,
    limit: int = 50,
    newest_first: bool = True,
) -> Page:
    """One page of matching dead letters, merged across partitions by timestamp.

    Oldest first, a partition is read only until it has given ``limit + 1`` matches;
    newest first, it is read through, keeping its last ``limit + 1``.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    runs: dict[int, deque[RefusedMessage]] = {}
    keep = limit + 1

    def enough(partition: int) -> bool:
        return not newest_first and len(runs[partition]) >= keep

    for letter in scan(bootstrap, topic, selection, enough=enough if not newest_first else None):
        runs.setdefault(letter.partition, deque(maxlen=keep)).append(letter)
    ordered = [list(reversed(run)) if newest_first else list(run) for run in runs.values()]
    merged = _merge(ordered, newest_first, keep)
    letters = merged[:limit]
    cursor: dict[int, int] | None = None
    if len(merged) > limit:
        cursor = dict(selection.before if newest_first else selection.after)
        for letter in letters:
            cursor[letter.partition] = letter.offset
    return Page(letters, newest_first, cursor)


def count(
    bootstrap: str, topic: str, selection: DeadLetterFilter = _EVERY_LETTER
) -> dict[str, int]:
    """How many dead letters match, per error code."""
    return dict(Counter(letter.code for letter in scan(bootstrap, topic, selection)))


def list_dead_letters(bootstrap: str, topic: str, limit: int = 50) -> list[dict[str, Any]]:
    """The oldest dead letters of one topic, with why they were refused."""
    page = list_page(bootstrap, topic, limit=limit, newest_first=False)
    return [describe(letter) for letter in page.letters]


def count_by_code(bootstrap: str, topics: Iterable[str] = INBOUND_TOPICS) -> dict[str, int]:
    return dict(Counter(letter.code for letter in read_dead_letters(bootstrap, topics)))


def describe(letter: RefusedMessage, *, with_value: bool = True) -> dict[str, Any]:
    """A dead letter as plain data (the ``--json`` output)."""
    document = letter.envelope()
    described: dict[str, Any] = {
        "partition": letter.partition,
        "offset": letter.offset,
        "time": _rfc3339(letter.when) if letter.when else None,
        "code": letter.code,
        "reason": letter.reason,
        "key": letter.key.decode(errors="replace") if letter.key is not None else None,
        "id": _text(document, "id"),
        "type": _text(document, "type"),
        "original": {
            "topic": letter.original_topic,
            "partition": _int_header(letter, "x-original-partition"),
            "offset": _int_header(letter, "x-original-offset"),
        },
        "truncated": letter.truncated,
    }
    if with_value:
        described["value"] = letter.value.decode(errors="replace")
    return described


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(document: dict[str, Any] | None, name: str) -> str | None:
    value = (document or {}).get(name)
    return value if isinstance(value, str) else None


def _int_header(letter: RefusedMessage, name: str) -> int | None:
    raw = letter.headers.get(name, b"")
    return int(raw) if raw.isdigit() else None
