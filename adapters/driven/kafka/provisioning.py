"""Topic provisioning through the Kafka admin API, for the embedded broker and any other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class TopicProvisioningError(RuntimeError):
    """A topic could not be created, or exists with another partition count."""


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    compacted: bool = False

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")


_TOPIC_ALREADY_EXISTS = 36


def provision_topics(
    bootstrap: str,
    topics: Mapping[str, TopicSpec],
    *,
    timeout: float = 30.0,
) -> None:
    """Create missing topics; check every topic has the partition count asked for.

    Idempotent and safe to race with other provisioners. An existing topic with another
    partition count is an error rather than something to fix: Tansu cannot add
    partitions, and on any broker changing the count reshuffles keys across partitions.
    Compaction is requested through ``cleanup.policy=compact``; Tansu accepts it but never
    compacts, and reports no topic configs, so it is not verified.
    """
    if not topics:
        return
    from kafka import KafkaAdminClient
    from kafka import errors as kafka_errors

    timeout_ms = int(timeout * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="oms-provision",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        request = {
            name: {
                "num_partitions": spec.partitions,
                # -1: the broker's default replication factor (Kafka >= 2.4; Tansu: 1).
                "replication_factor": -1,
                "configs": {"cleanup.policy": "compact"} if spec.compacted else {},
            }
            for name, spec in topics.items()
        }
        response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
        failures = []
        for result in response["topics"]:
            code = result["error_code"]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                error = kafka_errors.for_code(code)
                failures.append(f"{result['name']}: {error.__name__} {result['error_message']}")
        if failures:
            raise TopicProvisioningError("could not create topics: " + "; ".join(failures))
        admin.wait_for_topics(list(topics), timeout_ms=timeout_ms)
        described = {info["name"]: info for info in admin.describe_topics(list(topics))}
    finally:
        admin.close()
    mismatches = []
    for name, spec in topics.items():
        actual = len(described.get(name, {}).get("partitions") or [])
        if actual != spec.partitions:
            mismatches.append(f"{name} has {actual} partitions, wanted {spec.partitions}")
    if mismatches:
        raise TopicProvisioningError("; ".join(mismatches))


# Small convenience for scripts and tests; the service wires these explicitly.


__all__ = ["TopicProvisioningError", "TopicSpec", "provision_topics"]
