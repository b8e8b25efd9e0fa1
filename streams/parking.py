"""Parking for inbound messages that came before their order or RMA: which refusals park,
and the retry round the integrations worker runs on a timer (storage: adapters/driven/
parking.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.driven.kafka.topics import POS_RETURNS, WMS_RECEIPTS
from adapters.driven.parking import PARKED_CODES, ParkedMessage, ParkedMessages, message_id
from domain.application import ReturnsService
from streams.inbound import Rejection, process_batch
from streams.records import DeadLetter, InboundRecord

log = logging.getLogger(__name__)

PARKED_TOPICS = frozenset({POS_RETURNS, WMS_RECEIPTS})
"""In-store returns and inspections. Orders are not parked: a fulfilment before its order
is the platform's bug to see in the DLQ at once (and ``rma dlq replay`` to clear)."""


def parks(topic: str, rejection: Rejection, park_for_s: float) -> bool:
    return park_for_s > 0 and topic in PARKED_TOPICS and rejection.code in PARKED_CODES


def parked(record: InboundRecord, rejection: Rejection) -> ParkedMessage:
    return ParkedMessage(
        message_id=message_id(record.topic, record.value),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=record.headers,
        timestamp_ms=record.timestamp_ms,
        code=rejection.code,
        reason=rejection.reason,
    )


def record_of(message: ParkedMessage) -> InboundRecord:
    return InboundRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=message.headers,
        timestamp_ms=message.timestamp_ms,
    )


@dataclass(frozen=True)
class Expired:
    """A parked message to dead-letter; released once its dead letter is published."""

    message_id: str
    letter: DeadLetter


def retry_round(
    service: ReturnsService, parking: ParkedMessages, *, park_for_s: float, retry_s: float
) -> list[Expired]:
    """Run the parked messages due now again. Applied ones are released; those still
    unknown after ``park_for_s`` and those now refused for another reason come back to be
    dead-lettered by the caller (blocking: run it in a thread)."""
    claimed = parking.claim_due(retry_s=retry_s, lease_s=max(60.0, 4 * retry_s))
    expired: list[Expired] = []
    applied: list[str] = []
    by_topic: dict[str, list[ParkedMessage]] = {}
    for message in claimed:
        by_topic.setdefault(message.topic, []).append(message)
    for topic, messages in by_topic.items():
        results = process_batch(service, topic, [m.value for m in messages])
        for message, rejection in zip(messages, results, strict=True):
            if rejection is None:
                applied.append(message.message_id)
            elif rejection.code not in PARKED_CODES:
                letter = DeadLetter(record_of(message), rejection.reason, rejection.code)
                expired.append(Expired(message.message_id, letter))
            elif message.parked_for_s >= park_for_s:
                reason = f"parked for {int(message.parked_for_s)} s: {rejection.reason}"
                letter = DeadLetter(record_of(message), reason, rejection.code)
                expired.append(Expired(message.message_id, letter))
            else:
                parking.still_parked(message.message_id, rejection.code, rejection.reason)
    parking.release(applied)
    if applied:
        log.info("%d parked message(s) applied", len(applied))
    return expired


def split(
    records: Sequence[InboundRecord], results: Sequence[Rejection | None], park_for_s: float
) -> tuple[list[ParkedMessage], list[DeadLetter]]:
    """Of one batch's refusals, those to park and those to dead-letter now."""
    to_park: list[ParkedMessage] = []
    letters: list[DeadLetter] = []
    for record, rejection in zip(records, results, strict=True):
        if rejection is None:
            continue
        if parks(record.topic, rejection, park_for_s):
            to_park.append(parked(record, rejection))
        else:
            letters.append(DeadLetter(record, rejection.reason, rejection.code))
    return to_park, letters
