"""Dead letters read back from the DLQ topics: selecting, listing, counting and replaying them.

The workers write a refused message's original bytes to ``<topic>.dlq`` with the reason in
headers (streams/app.py). Everything here reads those topics; nothing else records dead
letters, so the topics are the one source of truth for operators and for ``/metrics``.

Reading is without a consumer group (it must never move anyone's committed offsets) and
bounded: each partition is read from where the filter can first match (its ``--since``
through ``offsets_for_times``, or a page cursor) to the end the broker reports at the start.
The embedded broker reports that end low (the first offset of its last batch plus one,
DESIGN.md) and answers ``offsets_for_times`` with an earlier offset than asked, so both are
only taken as bounds, and every record is still checked against the filter.
"""

from __future__ import annotations

import heapq
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from adapters.contracts import MAX_MESSAGE_BYTES, CloudEvent
from adapters.topics import EVENT_TOPIC_BY_KIND, INBOUND_TOPICS, dlq

log = logging.getLogger(__name__)

# Inbound topics, and the relayed event topics whose undecodable records the projections
# worker refuses.
DEAD_LETTER_SOURCES = (*INBOUND_TOPICS, *EVENT_TOPIC_BY_KIND.values())

TRUNCATED_HEADER = "x-dlq-truncated"
"""Set to ``true`` on a dead letter whose value is a cut-down copy, not the original bytes."""

_NO_PROGRESS_S = 30.0
"""How long a read waits for a partition that is short of its end before giving up."""


@dataclass(frozen=True)
class RefusedMessage:
    topic: str
    """The topic the message was refused on (not the DLQ's name)."""
    partition: int
    """Partition and offset of the dead letter on the DLQ topic."""
    offset: int
    code: str
    reason: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int = -1
    """The DLQ record's Kafka timestamp: when the message was dead-lettered."""

    @property
    def truncated(self) -> bool:
        return self.headers.get(TRUNCATED_HEADER, b"").strip().lower() == b"true"

    @property
    def original_topic(self) -> str:
        raw = self.headers.get("x-original-topic")
        return raw.decode(errors="replace") if raw else self.topic

    @property
    def when(self) -> datetime | None:
        if self.timestamp_ms < 0:
            return None
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def envelope(self) -> dict[str, Any] | None:
        """The original as a JSON object, or None when it is not one (garbage is expected)."""
        try:
            document = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return None
        return document if isinstance(document, dict) else None

    def why_not_replayable(self) -> str | None:
        """None when the original can be sent again with its effect once, else why not."""
        if self.truncated:
            return "truncated: the DLQ holds a cut-down copy, not the original bytes"
        if len(self.value) > MAX_MESSAGE_BYTES:
            return f"oversized: {len(self.value)} bytes, the limit is {MAX_MESSAGE_BYTES}"
        document = self.envelope()
        if document is None:
            return "not a JSON object"
        # The CloudEvents id is what makes a replay take effect once: without a valid
        # envelope the message would only be refused again, and could not be deduplicated.
        try:
            CloudEvent.model_validate(document)
        except ValidationError as error:
            return f"not a valid CloudEvent ({error.error_count()} errors)"
        return None


# --------------------------------------------------------------------------- filters


_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 date-time with an offset, a day (``YYYY-MM-DD``, midnight UTC), or a
    span back from ``now`` such as ``30m``, ``1h``, ``2d`` or ``1h30m``."""
    text = text.strip()
    if text and _RELATIVE.sub("", text) == "":
        seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in _RELATIVE.findall(text))
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if len(text) == 10:
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither RFC 3339 (2026-12-04T10:00:00Z), a day (2026-12-04) "
            "nor a span back from now (30m, 1h, 2d)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add Z or +01:00")
    return moment


def parse_positions(text: str) -> dict[int, int]:
    """A page cursor, ``PARTITION:OFFSET[,PARTITION:OFFSET...]``, as {partition: offset}."""
    positions: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        partition, sep, offset = part.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"{part!r} is not PARTITION:OFFSET (e.g. 0:42)")
        if int(partition) in positions:
            raise ValueError(f"partition {partition} appears twice in {text!r}")
        positions[int(partition)] = int(offset)
    if not positions:
        raise ValueError("an empty cursor: expected PARTITION:OFFSET[,PARTITION:OFFSET...]")
    return positions


def format_positions(positions: Mapping[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters of a topic to take; every given criterion must hold."""

    codes: frozenset[str] = frozenset()
    """``x-dlq-error-code`` is one of these."""
    since: datetime | None = None
    """Dead-lettered at or after (the DLQ record's timestamp)."""
    until: datetime | None = None
    """Dead-lettered before."""
    keys: frozenset[bytes] = frozenset()
    ids: frozenset[str] = frozenset()
    """CloudEvents ``id`` of the original (parsed only when asked for)."""
    types: frozenset[str] = frozenset()
    """CloudEvents ``type`` of the original (parsed only when asked for)."""
    partitions: frozenset[int] = frozenset()
    """DLQ partitions to read (all when empty)."""
    after: Mapping[int, int] = field(default_factory=dict)
    """Per DLQ partition, only offsets above this one (a page cursor, oldest first)."""
    before: Mapping[int, int] = field(default_factory=dict)
    """Per DLQ partition, only offsets below this one (a page cursor, newest first)."""

    @property
    def since_ms(self) -> int | None:
        return None if self.since is None else int(self.since.timestamp() * 1000)

    @property
    def until_ms(self) -> int | None:
        return None if self.until is None else int(self.until.timestamp() * 1000)

    def is_empty(self) -> bool:
        return self == DeadLetterFilter()

    def matches(self, letter: RefusedMessage) -> bool:
        if self.codes and letter.code not in self.codes:
            return False
        since, until = self.since_ms, self.until_ms
        if since is not None and letter.timestamp_ms < since:
            return False
        if until is not None and letter.timestamp_ms >= until:
            return False
        if self.keys and letter.key not in self.keys:
            return False
        if letter.offset <= self.after.get(letter.partition, -1):
            return False
        if letter.partition in self.before and letter.offset >= self.before[letter.partition]:
            return False
        if self.ids or self.types:
            document = letter.envelope() or {}
            if self.ids and document.get("id") not in self.ids:
                return False
            if self.types and document.get("type") not in self.types:
                return False
        return True


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
    selection: DeadLetterFilter = DeadLetterFilter(),
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
    selection: DeadLetterFilter = DeadLetterFilter(),
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
    bootstrap: str, topic: str, selection: DeadLetterFilter = DeadLetterFilter()
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
