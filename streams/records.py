"""What an inbound handler gets and gives back, and the format of the dead letters it makes.

A handler (:data:`BatchHandler`) gets a batch of :class:`InboundRecord` (bytes exactly as
received) and returns those it rejects as :class:`DeadLetter`. A dead letter goes to
``<topic>.dlq`` as :func:`dlq_message` makes it: the original key and value (truncated
when too big for a producer) with headers saying why and where it came from. These types
and that format are shared by the runtime (streams.app, streams.batches), the handlers
(streams.integrations, streams.projectors) and the DLQ readers' tests, so they live apart
from the faust machinery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

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
