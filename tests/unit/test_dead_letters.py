"""What a dead letter is published as: the original, or its head when too big to publish."""

from __future__ import annotations

import hashlib

from adapters.contracts import MAX_MESSAGE_BYTES
from streams.records import (
    DLQ_MAX_VALUE_BYTES,
    DLQ_TRUNCATED_BYTES,
    TRUNCATED_HEADER,
    DeadLetter,
    InboundRecord,
    dlq_message,
)


def letter(value: bytes, code: str = "invalid_json") -> DeadLetter:
    record = InboundRecord("oms.orders.v1", 1, 42, b"key", value, (), None)
    return DeadLetter(record, "why", code)


def test_a_dead_letter_of_ordinary_size_keeps_the_original_bytes() -> None:
    value, headers = dlq_message(letter(b"{not json"))
    assert value == b"{not json"
    assert TRUNCATED_HEADER not in dict(headers)


def test_a_value_too_big_for_any_producer_is_truncated_whatever_its_code() -> None:
    original = bytes(range(256)) * (40 * 1024 * 1024 // 256)  # 40 MiB
    value, headers = dlq_message(letter(original, code="handler_failed"))
    assert value == original[:DLQ_TRUNCATED_BYTES]
    fields = dict(headers)
    assert fields[TRUNCATED_HEADER] == b"true"
    assert fields["x-dlq-original-size"] == str(len(original)).encode()
    assert fields["x-dlq-original-sha256"] == hashlib.sha256(original).hexdigest().encode()
    assert fields["x-dlq-error-code"] == b"handler_failed"


def test_every_message_refused_as_oversized_is_truncated() -> None:
    assert DLQ_MAX_VALUE_BYTES <= MAX_MESSAGE_BYTES
    value, headers = dlq_message(letter(b"x" * (MAX_MESSAGE_BYTES + 1), code="oversized"))
    assert len(value) == DLQ_TRUNCATED_BYTES
    assert dict(headers)[TRUNCATED_HEADER] == b"true"
