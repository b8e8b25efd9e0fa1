"""The embedded dev stack against the real binaries: PostgreSQL 18 and Tansu."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from adapters.driven.embedded.postgres import EmbeddedPostgres
from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.kafka.provisioning import TopicProvisioningError, TopicSpec, provision_topics

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pgdata(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pg"
    yield path
    # Whatever a test left running must not outlive it.
    EmbeddedPostgres(path).stop()


@pytest.mark.timeout(120)
def test_postgres_keeps_data_across_restarts(pgdata: Path) -> None:
    first = EmbeddedPostgres(pgdata).start()
    assert not first.reused
    assert first.url == f"postgresql://postgres@127.0.0.1:{first.port}/oms"
    with psycopg.connect(first.url) as conn:
        version, fsync = conn.execute(
            "SELECT current_setting('server_version_num')::int, current_setting('fsync')"
        ).fetchone() or (0, "")
        assert version >= 180000
        assert fsync == "on"
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO kept VALUES (1, 'survives restarts')")
    first.stop()
    assert not first.is_running()

    with EmbeddedPostgres(pgdata) as second:
        assert not second.reused
        with psycopg.connect(second.url) as conn:
            row = conn.execute("SELECT note FROM kept WHERE id = 1").fetchone()
        assert row == ("survives restarts",)
    assert not second.is_running()


@pytest.mark.timeout(120)
def test_postgres_start_reuses_a_running_server(pgdata: Path) -> None:
    owner = EmbeddedPostgres(pgdata).start()
    with EmbeddedPostgres(pgdata) as guest:
        assert guest.reused
        assert guest.url == owner.url
        with psycopg.connect(guest.url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("oms",)
    # The guest did not start it, so leaving its block does not stop it.
    assert owner.is_running()
    owner.stop()
    assert not owner.is_running()


# --------------------------------------------------------------------------- Tansu


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    with EmbeddedKafka(tmp_path / "tansu") as broker:
        yield broker


def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}
    finally:
        admin.close()


@pytest.mark.timeout(120)
def test_kafka_round_trip_on_provisioned_topics(kafka: EmbeddedKafka) -> None:
    assert kafka.bootstrap == f"127.0.0.1:{kafka.port}"
    topics = {"rma-events": TopicSpec(partitions=3), "rma-state": TopicSpec(2, compacted=True)}
    provision_topics(kafka.bootstrap, topics)
    provision_topics(kafka.bootstrap, topics)  # idempotent
    assert _partition_counts(kafka.bootstrap, list(topics)) == {"rma-events": 3, "rma-state": 2}

    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    try:
        sent = producer.send("rma-events", key=b"rma-1", value=b"opened").get(timeout=10)
    finally:
        producer.close()
    assert 0 <= sent.partition < 3

    consumer = KafkaConsumer(
        "rma-events",
        bootstrap_servers=kafka.bootstrap,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        fetch_max_wait_ms=20,
    )
    try:
        received: list[tuple[bytes, bytes, int]] = []
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend((r.key, r.value, r.partition) for r in records)
    finally:
        consumer.close()
    assert received == [(b"rma-1", b"opened", sent.partition)]


@pytest.mark.timeout(60)
def test_provisioning_rejects_a_different_partition_count(kafka: EmbeddedKafka) -> None:
    provision_topics(kafka.bootstrap, {"orders": TopicSpec(2)})
    with pytest.raises(TopicProvisioningError, match="orders has 2 partitions, wanted 5"):
        provision_topics(kafka.bootstrap, {"orders": TopicSpec(5)})


@pytest.mark.timeout(60)
def test_kafka_restart_keeps_the_port_and_loses_the_topics(kafka: EmbeddedKafka) -> None:
    provision_topics(kafka.bootstrap, {"inventory": TopicSpec(4)})
    bootstrap, pid = kafka.bootstrap, kafka.pid
    kafka.restart()
    assert kafka.bootstrap == bootstrap
    assert kafka.pid != pid
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        assert "inventory" not in admin.list_topics()  # memory storage
    finally:
        admin.close()
    provision_topics(kafka.bootstrap, {"inventory": TopicSpec(4)})
    assert _partition_counts(kafka.bootstrap, ["inventory"]) == {"inventory": 4}


@pytest.mark.timeout(60)
def test_kafka_start_reuses_our_running_broker(kafka: EmbeddedKafka) -> None:
    with EmbeddedKafka(kafka.data_dir) as guest:
        assert guest.reused
        assert guest.bootstrap == kafka.bootstrap
    assert kafka.is_running()
    # A fresh handle on the directory stops the broker recorded there.
    EmbeddedKafka(kafka.data_dir).stop()
    assert not kafka.is_running()
    assert "ready" in kafka.log_path.read_text()
