"""Relay throughput, event store to Kafka, next to raw produce and raw read baselines.

Run as ``python -m bench.relay [--quick]``. It fills a fresh event store with N
``order.placed`` events (``run_batch`` of 500 ``place_order``), then, in every repetition
and for each relay batch size, times in turn:

- the relay: a new ``adapters.driven.relay.Relay`` (its own name, so it starts at position 0)
  calling ``run_once()`` until it has caught up, then checking ``lag() == 0``;
- raw produce: the very records the relay sends (same topic, key, value), pre-encoded,
  with the relay's producer (``default_producer``: idempotent, acks=all), flushed after
  every batch of the same size: the ceiling of the Kafka side alone;
- raw read: the relay's SELECT of the notification log, batch by batch, plain psycopg;
- encode: ``records_for`` (CloudEvent + orjson) over the rows, no I/O;
- the same records through aiokafka (already installed, as faust's client) and, when it is
  importable, confluent-kafka: what another client would buy.

The broker (embedded Tansu, memory storage) restarts empty before every repetition.
Every relay run times its phases (``send``, ``flush``, the position update and the
broker-epoch check; the rest is the SELECT, encoding and bookkeeping) and CPU use per
process; one more relay run under cProfile shows the functions behind them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import os
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import TopicSpec, provision_topics
from adapters.driven.kafka.publishers import Client, Publisher, default_producer, publisher_for
from adapters.driven.kafka.topics import topic_specs
from adapters.driven.relay import OutboundRecord, Relay, lag, records_for
from bench.commands import Workload, check
from bench.common import (
    CpuMeter,
    Stack,
    cores,
    crc32c_status,
    header,
    median,
    progress,
    spread,
    stack,
    write_result,
)

PARTITIONS = 4
CLIENT: Client = "confluent"  # what the relay runs with by default
FILL_BATCH = 500
READ_SQL = (
    "SELECT notification_id, originator_id, originator_version, topic, state "
    "FROM oms_events WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)
TARGET = 20_000


@dataclass(frozen=True)
class Plan:
    name: str
    events: int
    repeats: int
    batch_sizes: tuple[int, ...] = (1000, 5000)


FULL = Plan("full", events=25_000, repeats=5)
QUICK = Plan("quick", events=5_000, repeats=3)


@dataclass
class Phases:
    """Wall seconds the relay's main thread spent in each step of ``run_once``."""

    send: float = 0.0
    flush: float = 0.0
    position: float = 0.0
    epoch: float = 0.0
    epoch_checks: int = 0

    def reset(self) -> None:
        self.send = self.flush = self.position = self.epoch = 0.0
        self.epoch_checks = 0


class TimedPublisher:
    """The relay's publisher, timing ``publish`` (send and wait for every ack)."""

    def __init__(self, inner: Publisher, phases: Phases) -> None:
        self.inner = inner
        self.phases = phases

    def publish(self, records: Sequence[Any]) -> None:
        t0 = time.perf_counter()
        self.inner.publish(records)
        self.phases.send += time.perf_counter() - t0

    def close(self) -> None:
        self.inner.close()


class TimedRelay(Relay):
    def __init__(self, *args: Any, phases: Phases, **kwargs: Any) -> None:
        self.phases = phases
        super().__init__(*args, **kwargs)

    def prepare(self) -> None:
        """What the first ``run_once`` does before relaying (provision, epoch record,
        producer connection): done before the clock starts."""
        self._check_epoch()

    def _check_epoch(self) -> None:
        # Every call is a check now (before each batch), not one every two seconds.
        t0 = time.perf_counter()
        super()._check_epoch()
        self.phases.epoch += time.perf_counter() - t0
        self.phases.epoch_checks += 1

    def _save_position(self, position: int) -> None:
        t0 = time.perf_counter()
        super()._save_position(position)
        self.phases.position += time.perf_counter() - t0


@dataclass
class Series:
    """One case's repetitions: events and seconds per run, phases and CPU where known."""

    label: str
    batch: int | None
    events: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    phases: list[Phases] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [e / s for e, s in zip(self.events, self.seconds, strict=True)]

    def rate(self) -> float:
        return median(self.rates())


# ---------------------------------------------------------------------------- the runs
def fill(url: str, events: int, run_id: str) -> None:
    svc = create_service(url, pool_size=2)
    work = Workload(run_id)
    try:
        started = time.perf_counter()
        for start in range(0, events, FILL_BATCH):
            specs = work.orders(min(FILL_BATCH, events - start))
            commands = [(work.keyed(s, "place"), work.place(s)) for s in specs]
            check(svc.run_batch(commands, prefetch=False))
        elapsed = time.perf_counter() - started
        progress(f"  filled {events:,} events in {elapsed:.1f} s ({events / elapsed:,.0f}/s)")
    finally:
        svc.close()


def load_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM oms_events ORDER BY notification_id"
        ).fetchall()


def relay_run(
    running: Stack, specs: dict[str, TopicSpec], name: str, batch: int, series: Series
) -> None:
    assert running.bootstrap is not None
    phases = Phases()

    def producer(bootstrap: str) -> Publisher:
        return TimedPublisher(publisher_for(CLIENT, bootstrap), phases)

    relay = TimedRelay(
        running.url,
        running.bootstrap,
        topic_specs=specs,
        name=name,
        batch_size=batch,
        publisher_factory=producer,
        phases=phases,
    )
    meter = CpuMeter(running.processes())
    try:
        relay.prepare()
        phases.reset()
        meter.start()
        started = time.perf_counter()
        published = 0
        while True:
            sent = relay.run_once()
            published += sent
            if sent < batch:
                break
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
    finally:
        relay.close()
    remaining = lag(running.url, name)
    if remaining["lag"] != 0:
        raise RuntimeError(f"relay {name} stopped with lag {remaining}")
    series.events.append(published)
    series.seconds.append(elapsed)
    series.phases.append(phases)
    series.cpu.append(cpu)
    progress(
        f"    {series.label}: {published / elapsed:,.0f} events/s "
        f"(send {phases.send:.2f} s, flush {phases.flush:.2f} s, "
        f"position {phases.position:.3f} s, epoch {phases.epoch:.3f} s, of {elapsed:.2f} s)"
    )


def produce_run(
    running: Stack, records: Sequence[OutboundRecord], batch: int, series: Series
) -> None:
    assert running.bootstrap is not None
    producer = default_producer(running.bootstrap)
    meter = CpuMeter(running.processes())
    try:
        # Connection, metadata and the idempotent producer id, before the clock starts.
        warm = records[0]
        producer.send(warm.topic, key=warm.key, value=warm.value)
        producer.flush(timeout=30)
        meter.start()
        started = time.perf_counter()
        for first in range(0, len(records), batch):
            futures = [
                producer.send(r.topic, key=r.key, value=r.value)
                for r in records[first : first + batch]
            ]
            producer.flush(timeout=30)
            for future in futures:
                if not future.is_done or future.failed():
                    raise RuntimeError(f"raw produce failed: {future.exception!r}")
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
    finally:
        producer.close(timeout=5)
    series.events.append(len(records))
    series.seconds.append(elapsed)
    series.cpu.append(cpu)
    progress(f"    {series.label}: {len(records) / elapsed:,.0f} msg/s")


def aiokafka_run(
    running: Stack, records: Sequence[OutboundRecord], batch: int, series: Series
) -> None:
    """The same records through aiokafka (faust's client, already installed): what the
    relay would gain from it. Not idempotent: Tansu refuses aiokafka's InitProducerId;
    aiokafka keeps one batch in flight per partition, so per-key order still holds."""
    assert running.bootstrap is not None
    meter = CpuMeter(running.processes())

    async def produce() -> tuple[float, dict[str, float]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=running.bootstrap,
            acks="all",
            linger_ms=5,
            max_batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=15000,
        )
        await producer.start()
        try:
            warm = records[0]
            await producer.send_and_wait(warm.topic, key=warm.key, value=warm.value)
            meter.start()
            started = time.perf_counter()
            for first in range(0, len(records), batch):
                futures = [
                    await producer.send(r.topic, key=r.key, value=r.value)
                    for r in records[first : first + batch]
                ]
                await asyncio.gather(*futures)  # every ack in, as the relay's flush
            elapsed = time.perf_counter() - started
            return elapsed, meter.stop()
        finally:
            await producer.stop()

    elapsed, cpu = asyncio.run(produce())
    series.events.append(len(records))
    series.seconds.append(elapsed)
    series.cpu.append(cpu)
    progress(f"    {series.label}: {len(records) / elapsed:,.0f} msg/s")


def confluent_module() -> ModuleType | None:
    """confluent-kafka (librdkafka) if importable: not a project dependency, so this row
    appears only where someone installed it (e.g. ``PYTHONPATH`` to a ``pip --target``)."""
    try:
        return importlib.import_module("confluent_kafka")
    except ImportError:
        return None


def confluent_run(
    running: Stack,
    records: Sequence[OutboundRecord],
    batch: int,
    series: Series,
    module: ModuleType,
) -> None:
    """The same records through confluent-kafka, idempotent, acks=all, flushed per batch;
    ``murmur2_random`` is the Java (and kafka-python) partitioner, so keys land alike."""
    assert running.bootstrap is not None
    errors: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(error)

    producer = module.Producer(
        {
            "bootstrap.servers": running.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 512 * 1024,
            "message.max.bytes": 8 * 1024 * 1024,
            "partitioner": "murmur2_random",
        }
    )
    warm = records[0]
    producer.produce(warm.topic, key=warm.key, value=warm.value, on_delivery=delivered)
    producer.flush(30)
    meter = CpuMeter(running.processes())
    meter.start()
    started = time.perf_counter()
    for first in range(0, len(records), batch):
        for r in records[first : first + batch]:
            producer.produce(r.topic, key=r.key, value=r.value, on_delivery=delivered)
        if producer.flush(30) != 0 or errors:
            raise RuntimeError(f"confluent-kafka produce failed: {errors[:1]}")
    elapsed = time.perf_counter() - started
    series.events.append(len(records))
    series.seconds.append(elapsed)
    series.cpu.append(meter.stop())
    progress(f"    {series.label}: {len(records) / elapsed:,.0f} msg/s")


def read_run(url: str, batch: int, series: Series) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(READ_SQL, [0, 1]).fetchall()
        position, count = 0, 0
        started = time.perf_counter()
        while True:
            rows = conn.execute(READ_SQL, [position, batch]).fetchall()
            count += len(rows)
            if len(rows) < batch:
                break
            position = int(rows[-1][0])
        elapsed = time.perf_counter() - started
    series.events.append(count)
    series.seconds.append(elapsed)
    progress(f"    {series.label}: {count / elapsed:,.0f} rows/s")


def encode_run(rows: Sequence[tuple[Any, ...]], series: Series) -> None:
    started = time.perf_counter()
    for row in rows:
        records_for(row)
    elapsed = time.perf_counter() - started
    series.events.append(len(rows))
    series.seconds.append(elapsed)
    progress(f"    {series.label}: {len(rows) / elapsed:,.0f} events/s")


# ---------------------------------------------------------------------------- profile
PROFILE_FUNCTIONS = (
    # (label, file suffix, function name): cumulative times, main thread only.
    ("run_once (whole)", "adapters/driven/relay.py", "run_once"),
    ("SELECT (execute)", "psycopg/connection.py", "execute"),
    ("SELECT (fetchall: row decoding)", "psycopg/cursor.py", "fetchall"),
    ("records_for (CloudEvent + orjson)", "adapters/driven/relay.py", "records_for"),
    ("KafkaProducer.send", "kafka/producer/kafka.py", "send"),
    ("  its partitioner (murmur2)", "kafka/partitioner/default.py", "murmur2"),
    ("  its accumulator append", "kafka/producer/record_accumulator.py", "append"),
    ("KafkaProducer.flush", "kafka/producer/kafka.py", "flush"),
    ("position update", "adapters/driven/relay.py", "_save_position"),
    ("broker-epoch check", "adapters/driven/relay.py", "_check_epoch"),
)


def profile_run(
    running: Stack, specs: dict[str, TopicSpec], name: str, batch: int, events: int
) -> str:
    """One relay run under cProfile: markdown rows of where its main thread's time went."""
    assert running.bootstrap is not None
    relay = TimedRelay(
        running.url,
        running.bootstrap,
        topic_specs=specs,
        name=name,
        batch_size=batch,
        phases=Phases(),
    )
    profiler = cProfile.Profile()
    try:
        relay.prepare()  # provisions and connects; not profiled
        relay.stats.position = max(0, lag(running.url, name)["head"] - events)
        started = time.perf_counter()
        profiler.enable()
        while relay.run_once() >= batch:
            pass
        profiler.disable()
        wall = time.perf_counter() - started
    finally:
        relay.close()
    stats = pstats.Stats(profiler, stream=sys.stderr)
    progress(f"==== cProfile of one relay run, batch {batch}: {wall:.2f} s wall")
    stats.sort_stats("cumulative").print_stats(25)
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    whole = [v[3] for k, v in table.items() if k[0].endswith("relay.py") and k[2] == "run_once"]
    total = max(whole, default=wall)
    rows = [
        f"- cProfile, one relay run of {relay.stats.published:,} events, batch {batch}: "
        f"{wall:.2f} s wall under the profiler (main thread; kafka-python's sender thread "
        "runs beside it and competes for the GIL, which shows up inside send and flush):",
        "",
        "| function (cumulative, main thread) | s | share of run_once |",
        "| --- | ---: | ---: |",
    ]
    for label, suffix, function in PROFILE_FUNCTIONS:
        seconds = sum(v[3] for k, v in table.items() if k[0].endswith(suffix) and k[2] == function)
        if seconds:
            rows.append(f"| {label} | {seconds:.2f} | {seconds / total:.0%} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------- main
def paired(series: Series, base: Series) -> float:
    """Median of the per-repetition ratios: each pair ran minutes apart at most, so this
    cancels more of the machine's drift than the ratio of the medians."""
    return median([a / b for a, b in zip(series.rates(), base.rates(), strict=True)])


def report(
    plan: Plan,
    head: list[str],
    relay: dict[int, Series],
    produce: dict[int, Series],
    read: dict[int, Series],
    encode: Series,
    others: Sequence[Series],
    message_bytes: float,
    profile: str,
) -> str:
    lines = [
        "# Relay benchmark (bench/relay.py)",
        "",
        *head,
        "",
        f"{plan.events:,} `order.placed` events, {message_bytes:,.0f} bytes per outbound "
        f"CloudEvent on average, topics with {PARTITIONS} partitions; target "
        f"{TARGET:,} events/s.",
        "",
        "| case | batch | events/s (median) | min-max | vs raw produce, same batch: "
        "ratio of medians | paired (median of per-repetition ratios) | cores used (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for batch in plan.batch_sizes:
        base = produce[batch]
        for series in (relay[batch], base, read[batch]):
            lines.append(
                f"| {series.label} | {batch:,} | {series.rate():,.0f} | {spread(series.rates())} "
                f"| {series.rate() / base.rate():.2f}x | {paired(series, base):.2f}x "
                f"| {cores(series.cpu)} |"
            )
    kafka_python = produce[max(plan.batch_sizes)]
    for other in others:
        lines.append(
            f"| {other.label} | {max(plan.batch_sizes):,} | {other.rate():,.0f} "
            f"| {spread(other.rates())} | {other.rate() / kafka_python.rate():.2f}x "
            f"| {paired(other, kafka_python):.2f}x | {cores(other.cpu)} |"
        )
    lines.append(f"| {encode.label} | | {encode.rate():,.0f} | {spread(encode.rates())} | | | |")
    lines += [
        "",
        "Where the relay's time goes (medians over its runs; main-thread wall time; "
        '"rest" is the SELECT, `records_for` encoding and bookkeeping):',
        "",
        "| batch | run s | send | flush | position update | epoch checks | rest | send us/event |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for batch in plan.batch_sizes:
        series = relay[batch]
        run = median(series.seconds)
        send = median([p.send for p in series.phases])
        flush = median([p.flush for p in series.phases])
        position = median([p.position for p in series.phases])
        epoch = median([p.epoch for p in series.phases])
        checks = median([float(p.epoch_checks) for p in series.phases])
        rest = median(
            [
                s - p.send - p.flush - p.position - p.epoch
                for s, p in zip(series.seconds, series.phases, strict=True)
            ]
        )
        events = median([float(e) for e in series.events])
        lines.append(
            f"| {batch:,} | {run:.2f} | {send / run:.0%} | {flush / run:.0%} "
            f"| {position / run:.1%} | {epoch / run:.1%} ({checks:.0f}) | {rest / run:.0%} "
            f"| {send / events * 1e6:.1f} |"
        )
    lines += [
        "",
        profile,
        "",
        "Raw produce sends the relay's own records (same topic, key and value) with the "
        "relay's producer settings (`default_producer`: idempotent, acks=all, linger 5 ms, "
        "512 KiB batches) and the same flush per batch; raw read is the relay's SELECT with "
        "plain psycopg; encode is `records_for` alone; the aiokafka and confluent-kafka rows "
        "send the same records (ratios against kafka-python at the same batch). Each relay "
        "run is a new Relay starting at position 0; provisioning and the first epoch record "
        "happen before the clock starts, later epoch checks (every 2 s) are timed. The "
        "broker restarts empty before every repetition. Cores used: CPU seconds / wall "
        "seconds of this process (relay or producer threads), the PostgreSQL server and "
        "Tansu.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events and repetitions")
    parser.add_argument("--events", type=int, default=None, help="events in the store")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file (default bench/results/relay[-quick].md)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.events:
        plan = Plan(plan.name, args.events, plan.repeats, plan.batch_sizes)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    run_id = f"{time.time_ns():x}"[-10:]
    specs = topic_specs(PARTITIONS)
    relay = {b: Series("relay: Relay.run_once until lag 0", b) for b in plan.batch_sizes}
    produce: dict[int, Series] = {
        b: Series("raw produce, kafka-python, flush per batch", b) for b in plan.batch_sizes
    }
    aio = Series(
        "raw produce, aiokafka (acks=all, not idempotent), gather per batch", max(plan.batch_sizes)
    )
    confluent = confluent_module()
    rdkafka = Series(
        "raw produce, confluent-kafka (idempotent, acks=all), flush per batch",
        max(plan.batch_sizes),
    )
    read = {b: Series("raw read of the notification log (psycopg)", b) for b in plan.batch_sizes}
    encode = Series("encode only: records_for (CloudEvent + orjson)", None)
    with stack(kafka=True) as running:
        assert running.bootstrap is not None
        progress(f"filling the event store with {plan.events:,} events")
        fill(running.url, plan.events, run_id)
        rows = load_rows(running.url)
        records = [r for row in rows for r in records_for(row)]
        message_bytes = sum(len(r.value) for r in records) / len(records)
        for rep in range(1, plan.repeats + 1):
            progress(f"repetition {rep}/{plan.repeats} ({time.perf_counter() - started:.0f} s)")
            if running.restart_broker():
                assert running.kafka is not None
                running.bootstrap = running.kafka.bootstrap
            provision_topics(running.bootstrap, specs)
            # Alternate the order, so drift in the machine's speed hits every case alike.
            sizes = plan.batch_sizes if rep % 2 else tuple(reversed(plan.batch_sizes))
            for batch in sizes:
                kinds = ("relay", "produce", "read") if rep % 2 else ("read", "produce", "relay")
                for kind in kinds:
                    if kind == "relay":
                        name = f"bench-{run_id}-{rep}-{batch}"
                        relay_run(running, specs, name, batch, relay[batch])
                    elif kind == "produce":
                        produce_run(running, records, batch, produce[batch])
                    else:
                        read_run(running.url, batch, read[batch])
            aiokafka_run(running, records, max(plan.batch_sizes), aio)
            if confluent is not None:
                confluent_run(running, records, max(plan.batch_sizes), rdkafka, confluent)
            encode_run(rows, encode)
        profile = profile_run(
            running,
            specs,
            f"bench-{run_id}-profile",
            max(plan.batch_sizes),
            min(plan.events, 10_000),
        )
        head = header(
            mode=plan.name,
            repeats=plan.repeats,
            started=started,
            load_before=load_before,
            running=running,
            packages=["kafka-python", "crc32c", "aiokafka", "psycopg", "orjson", "eventsourcing"]
            + (["confluent-kafka"] if confluent is not None else []),
            folders=["adapters", "domain"],
            extra=[f"- crc32c: {crc32c_status()}"]
            + (
                [
                    f"- confluent-kafka: imported from {Path(confluent.__file__ or '?').parent}, "
                    "outside the project's dependencies"
                ]
                if confluent is not None and not (confluent.__file__ or "").startswith(sys.prefix)
                else []
            ),
        )
    others = [aio, rdkafka] if rdkafka.events else [aio]
    text = report(plan, head, relay, produce, read, encode, others, message_bytes, profile)
    print(text)
    name = "relay-quick" if args.quick else "relay"
    path = write_result(name, text, args.output)
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
