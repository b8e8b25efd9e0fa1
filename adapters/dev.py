"""``rma dev``'s pieces that are not process wiring: dev keys, endpoints, DLQ tools."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from adapters.api.auth import Role, hash_key
from adapters.topics import dlq


def write_dev_keys(path: Path) -> dict[str, str]:
    """A fresh key per role for a development stack; returns the plain keys (shown once)."""
    salt = secrets.token_hex(16)
    plain: dict[str, str] = {}
    entries = []
    for role in Role:
        key = f"dev-{role.value}-{secrets.token_urlsafe(12)}"
        principal = f"dev-{role.value}"
        entry: dict[str, Any] = {
            "principal": principal,
            "role": role.value,
            "sha256": hash_key(salt, key),
        }
        if role is Role.STORE:
            entry["store_id"] = "STORE-7"
        entries.append(entry)
        plain[principal] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"salt": salt, "keys": entries}, indent=2))
    path.chmod(0o600)
    return plain


def write_endpoints(path: Path, endpoints: dict[str, Any]) -> None:
    path.write_text(json.dumps(endpoints, indent=2))


def _consumer(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1500
    )


def list_dead_letters(bootstrap: str, topic: str, limit: int = 50) -> list[dict[str, Any]]:
    """The dead letters of an inbound topic, oldest first, with why they were refused."""
    consumer = _consumer(bootstrap)
    try:
        partitions = [
            TopicPartition(dlq(topic), p)
            for p in sorted(consumer.partitions_for_topic(dlq(topic)) or set())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found = []
        for message in consumer:
            headers = {k: v.decode(errors="replace") for k, v in message.headers}
            found.append(
                {
                    "partition": message.partition,
                    "offset": message.offset,
                    "code": headers.get("x-dlq-error-code"),
                    "reason": headers.get("x-dlq-reason"),
                    "value": message.value.decode(errors="replace"),
                }
            )
            if len(found) >= limit:
                break
        return found
    finally:
        consumer.close()


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
