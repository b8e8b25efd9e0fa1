"""A refused message as read from a DLQ topic, and the filter that selects dead letters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from adapters.contracts import MAX_MESSAGE_BYTES, CloudEvent
from adapters.driven.kafka.topics import EVENT_TOPIC_BY_KIND, INBOUND_TOPICS

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
