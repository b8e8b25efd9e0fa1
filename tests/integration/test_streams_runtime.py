"""The generic faust runtime (streams.app, streams.worker) against a real Tansu broker.

Workers run as child processes (``python -m streams.worker``) so a test can SIGKILL one
like a crash. Their app comes from :func:`sink_app` below, configured by environment: it
records what its handler received in files the test reads.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS, dlq, topic_specs
from adapters.settings import Settings
from streams.app import create_app
from streams.records import HANDLER_FAILED, BatchHandler, DeadLetter, InboundRecord
from streams.worker import WorkerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = f"{__name__}:sink_app"
PARTITIONS = 4

# ---------------------------------------------------------------------- the worker side
# Runs in the worker process, configured by these variables.
SINK_ENV = "STREAMS_TEST_SINK"  # directory for received.log / batches.log / markers
MODE_ENV = "STREAMS_TEST_MODE"  # "json" (decode, dead-letter invalid JSON) or "noop"
DELAY_ENV = "STREAMS_TEST_BATCH_DELAY_S"  # sleep per batch: slows a worker down to kill it


def sink_app() -> faust.App:
    sink = Path(os.environ[SINK_ENV])
    delay = float(os.environ.get(DELAY_ENV, "0"))
    handler = _json_handler(sink, delay) if os.environ[MODE_ENV] == "json" else _noop(sink)
    return create_app(
        Settings.from_env(),
        app_id="streams-runtime-test",
        handlers={ORDERS: handler, WMS_RECEIPTS: handler},
        retry_backoff_s=0.05,
    )


def _json_handler(sink: Path, delay: float) -> BatchHandler:
    async def handle(records: Sequence[InboundRecord]) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        lines: list[bytes] = []
        for record in records:
            try:
                body = orjson.loads(record.value)
            except orjson.JSONDecodeError as exc:
                letters.append(DeadLetter(record, str(exc), "invalid_json"))
                continue
            if body.get("raise") == "always":
                raise RuntimeError("boom: the handler is broken")
            if body.get("raise") == "poison":
                # Like a value the database refuses: the whole batch fails, every time.
                raise ValueError(f"poison {body['id']}: the store refuses it")
            marker = sink / f"raised-{body.get('raise')}"
            if body.get("raise") and not marker.exists():
                marker.touch()
                raise RuntimeError("transient: the database blinked")
            lines.append(record.value + b"\n")
        if delay:
            await asyncio.sleep(delay)
        # Blocking writes in an agent are wrong in production; a test sink can afford them.
        with (sink / "received.log").open("ab") as out:
            out.writelines(lines)
        with (sink / "batches.log").open("a") as out:
            out.write(f"{len(records)}\n")
        return letters

    return handle


def _noop(sink: Path) -> BatchHandler:
    async def handle(records: Sequence[InboundRecord]) -> list[DeadLetter]:
        with (sink / "batches.log").open("a") as out:
            out.write(f"{time.time()} {len(records)}\n")
        return []

    return handle


# ---------------------------------------------------------------------- the test side


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    with EmbeddedKafka(tmp_path / "tansu") as broker:
        provision_topics(broker.bootstrap, topic_specs(PARTITIONS))
        yield broker


@pytest.fixture
def new_worker(kafka: EmbeddedKafka, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []
    sink = tmp_path / "sink"
    sink.mkdir()

    def new(mode: str = "json", batch_delay_s: float = 0.0) -> WorkerProcess:
        env = {
            **os.environ,
            "OMS_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "OMS_DATA_DIR": str(tmp_path / "data"),
            "OMS_CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "OMS_FETCH_MAX_WAIT_MS": "20",
            SINK_ENV: str(sink),
            MODE_ENV: mode,
            DELAY_ENV: str(batch_delay_s),
        }
        worker = WorkerProcess(
            APP_SPEC, workdir=tmp_path / f"worker-{len(workers)}", env=env, cwd=ROOT
        )
        workers.append(worker)
        return worker.start()

    yield new
    for worker in workers:
        if worker.is_running():
            worker.kill()


def _sink(tmp_path: Path, name: str) -> list[bytes]:
    try:
        return (tmp_path / "sink" / name).read_bytes().splitlines()
    except FileNotFoundError:
        return []


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.01)


def _produce(
    bootstrap: str,
    messages: Sequence[tuple[bytes | None, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
    topic: str = ORDERS,
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value, headers=headers or [])
        producer.flush(timeout=60)
    finally:
        producer.close()


def _read_dlq(bootstrap: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """What the DLQ holds, read without a group (a group join alone takes ~3 s)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=20)
    consumer.assign([TopicPartition(dlq(ORDERS), p) for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def _order(n: int) -> bytes:
    return orjson.dumps({"id": f"msg-{n}", "type": "order.placed", "data": {"n": n}})


@pytest.mark.timeout(120)
def test_worker_batches_valid_messages_and_dead_letters_invalid_ones(
    kafka: EmbeddedKafka, new_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    valid = [(f"order-{n}".encode(), _order(n)) for n in range(2000)]
    _produce(kafka.bootstrap, valid)
    invalid = [(b"order-x", b"{not json"), (None, b"\xff\xfe binary")]
    _produce(kafka.bootstrap, invalid, headers=[("trace", b"abc")])
    receipts = [(b"receipt-1", _order(-1)), (b"receipt-2", _order(-2))]
    _produce(kafka.bootstrap, receipts, topic=WMS_RECEIPTS)  # a second agent, same app

    worker = new_worker()
    worker.wait_ready(60)
    _wait_for(lambda: len(_sink(tmp_path, "received.log")) >= 1, 60, "the first message")
    assert worker.started_at is not None
    first_message_s = time.monotonic() - worker.started_at
    sent = valid + receipts
    _wait_for(lambda: len(_sink(tmp_path, "received.log")) >= len(sent), 60, "all messages")

    assert sorted(_sink(tmp_path, "received.log")) == sorted(value for _, value in sent)
    batch_sizes = [int(line) for line in _sink(tmp_path, "batches.log")]
    assert max(batch_sizes) > 1, "messages should arrive in batches"
    assert max(batch_sizes) <= 500

    letters = _read_dlq(kafka.bootstrap, expected=len(invalid))
    assert sorted(((r.key, r.value) for r in letters), key=repr) == sorted(invalid, key=repr)
    for record in letters:
        headers = dict(record.headers)
        assert headers["x-dlq-error-code"] == b"invalid_json"
        assert headers["x-dlq-reason"]
        assert headers["x-original-topic"] == ORDERS.encode()
        assert 0 <= int(headers["x-original-partition"]) < PARTITIONS
        assert int(headers["x-original-offset"]) >= 0
    print(f"\nworker start to first message: {first_message_s:.2f}s (session timeout 6s)")
    assert worker.terminate() == 0


@pytest.mark.timeout(120)
def test_a_handler_that_raises_does_not_stop_the_agent(
    kafka: EmbeddedKafka, new_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    worker = new_worker()
    worker.wait_ready(60)

    # Always raising: retried, then dead-lettered with the exception as the reason.
    broken = orjson.dumps({"id": "broken", "raise": "always"})
    _produce(kafka.bootstrap, [(b"order-b", broken)])
    [letter] = _read_dlq(kafka.bootstrap, expected=1)
    assert (letter.key, letter.value) == (b"order-b", broken)
    headers = dict(letter.headers)
    assert headers["x-dlq-error-code"] == HANDLER_FAILED.encode()
    assert headers["x-dlq-reason"] == b"RuntimeError: boom: the handler is broken"

    # Raising once: the retry succeeds, nothing is dead-lettered.
    transient = orjson.dumps({"id": "transient", "raise": "once"})
    _produce(kafka.bootstrap, [(b"order-t", transient), (b"order-1", _order(1))])
    _wait_for(lambda: len(_sink(tmp_path, "received.log")) >= 2, 30, "the retried batch")
    assert sorted(_sink(tmp_path, "received.log")) == sorted([transient, _order(1)])
    assert len(_read_dlq(kafka.bootstrap, expected=2, timeout=3)) == 1
    assert worker.is_running()
    assert "boom: the handler is broken" in worker.log_tail(100_000)
    assert worker.terminate() == 0


@pytest.mark.timeout(120)
def test_a_batch_that_keeps_failing_is_split_until_the_poison_is_alone(
    kafka: EmbeddedKafka, new_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    worker = new_worker()
    worker.wait_ready(60)
    good = [_order(n) for n in range(200)]
    poison = [orjson.dumps({"id": f"poison-{n}", "raise": "poison"}) for n in (1, 2)]
    values = good[:50] + poison[:1] + good[50:150] + poison[1:] + good[150:]
    # One key, one partition: the poison shares its batch with many valid messages.
    _produce(kafka.bootstrap, [(b"order-p", value) for value in values])

    letters = _read_dlq(kafka.bootstrap, expected=2, timeout=60)
    assert sorted(letter.value for letter in letters) == sorted(poison)
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["x-dlq-error-code"] == HANDLER_FAILED.encode()
        assert headers["x-dlq-reason"].startswith(b"ValueError: poison")
    _wait_for(lambda: len(_sink(tmp_path, "received.log")) >= len(good), 30, "the valid ones")
    # Each valid message applied exactly once: a failing batch applies nothing.
    assert sorted(_sink(tmp_path, "received.log")) == sorted(good)
    assert worker.terminate() == 0


@pytest.mark.timeout(180)
def test_a_killed_worker_restarted_processes_everything(
    kafka: EmbeddedKafka, new_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    total = 20_000
    sent = {_order(n) for n in range(total)}
    _produce(kafka.bootstrap, [(f"order-{n}".encode(), _order(n)) for n in range(total)])

    # Slowed down so it is killed mid-stream, after some offset commits (every 2.8 s).
    first = new_worker(batch_delay_s=0.2)
    first.wait_ready(60)
    _wait_for(lambda: len(_sink(tmp_path, "received.log")) >= 3000, 60, "some progress")
    time.sleep(3)
    first.kill()
    before_kill = len(_sink(tmp_path, "received.log"))
    assert before_kill < total, "the first worker should not have finished"

    second = new_worker()
    second.wait_ready(60)
    assert second.started_at is not None
    restart_ready_s = time.monotonic() - second.started_at
    _wait_for(lambda: set(_sink(tmp_path, "received.log")) >= sent, 90, "every message")
    received = _sink(tmp_path, "received.log")
    assert set(received) == sent
    print(
        f"\nkilled after {before_kill} of {total}; "
        f"{len(received) - total} redelivered (at least once); "
        f"restarted worker ready in {restart_ready_s:.1f}s"
    )
    assert second.terminate() == 0


@pytest.mark.timeout(180)
def test_a_noop_pipeline_takes_every_message_in_batches(
    kafka: EmbeddedKafka, new_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    # Correctness only: how fast is bench/inbound.py's business (timed tests swing with
    # the machine's load and prove nothing).
    total = 10_000
    value = orjson.dumps({"id": "x" * 36, "type": "order.placed", "data": {"pad": "y" * 200}})
    _produce(kafka.bootstrap, [(f"order-{n}".encode(), value) for n in range(total)])

    worker = new_worker(mode="noop")
    worker.wait_ready(60)

    def consumed() -> int:
        return sum(int(line.split()[1]) for line in _sink(tmp_path, "batches.log"))

    _wait_for(lambda: consumed() >= total, 120, f"{total} messages")
    batches = _sink(tmp_path, "batches.log")
    assert consumed() == total
    assert len(batches) < total / 10, "messages are taken in batches, not one by one"
    assert worker.terminate() == 0
