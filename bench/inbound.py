"""Inbound throughput: ``order.placed`` messages to stored events, direct and end to end.

Run as ``python -m bench.inbound [--quick] [--py-spy PATH]``.

(a) Direct: ``streams.inbound.process_batch`` on raw CloudEvents (what the integrations
    worker hands it), in turns: one message per transaction, batches of 100 and 500 (one
    transaction each), and its two halves alone: the contract (``parse_inbound`` +
    ``to_command``, no database) and ``run_batch`` of the already parsed commands.
(b) End to end: the faust integrations worker (``streams.integrations:app_from_env`` in
    its own process, started and warmed before any clock runs); N ``order.placed`` are
    published to ``oms.orders.v1`` with kafka-python, and the clock stops when all N
    orders are in the event store (polled). The transactions the worker committed are
    counted from ``oms_command_log.recorded_at`` (``now()``: one value per transaction),
    which shows the batch sizes it really ran. Then again with two worker processes.

``--py-spy PATH`` samples the (first) worker during its last repetition with py-spy and
adds where its CPU went to the report.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg

from adapters.contracts import parse_inbound
from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.publishers import default_producer
from adapters.driven.kafka.topics import ORDERS, topic_specs
from bench.commands import timed_in_turns
from bench.common import (
    ROOT,
    CpuMeter,
    Stack,
    cores,
    header,
    median,
    progress,
    spread,
    stack,
    write_result,
)
from domain.application import Ctx
from domain.commands import Command
from streams.inbound import context, process_batch, to_command
from streams.worker import WorkerProcess
from tests.integration.builders import order_placed

PARTITIONS = 4
SOURCE = "commerce/web"  # what tests.integration.builders.order_placed sets
TARGET = 5_000


@dataclass(frozen=True)
class Plan:
    name: str
    repeats: int
    single: int
    batches_100: int
    batches_500: int
    e2e_messages: int
    e2e_repeats: int
    e2e_workers: tuple[int, ...]


FULL = Plan("full", 5, 300, 10, 3, 10_000, 3, (1, 2))
QUICK = Plan("quick", 3, 60, 3, 1, 2_000, 3, (1,))


@dataclass
class Series:
    label: str
    messages: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [m / s for m, s in zip(self.messages, self.seconds, strict=True)]

    def rate(self) -> float:
        return median(self.rates())


class Messages:
    """Unique ``order.placed`` CloudEvents, their message ids prefixed by run and batch."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.count = 0

    def keyed(self, count: int, tag: str) -> list[tuple[bytes, bytes]]:
        """(Kafka key: the order number, value) pairs."""
        out = []
        for _ in range(count):
            self.count += 1
            number = f"IB{self.run_id}-{self.count}"
            document = orjson.loads(order_placed(number))
            document["id"] = f"{self.run_id}-{tag}-{self.count}"
            out.append((number.encode(), orjson.dumps(document)))
        return out

    def make(self, count: int, tag: str) -> list[bytes]:
        return [value for _, value in self.keyed(count, tag)]

    def key_prefix(self, tag: str) -> str:
        """The idempotency keys of one tag's messages start with this."""
        return f"{ORDERS}|{SOURCE}|{self.run_id}-{tag}-"


def expect_accepted(results: Sequence[object]) -> None:
    refused = [r for r in results if r is not None]
    if refused:
        raise RuntimeError(f"{len(refused)} messages rejected, first: {refused[0]!r}")


# ---------------------------------------------------------------------------- (a) direct
def parse_only(values: Sequence[bytes]) -> list[tuple[Ctx, Command]]:
    parsed = []
    for value in values:
        message = parse_inbound(ORDERS, value)
        parsed.append((context(ORDERS, message), to_command(message)))
    return parsed


def direct(url: str, plan: Plan, messages: Messages) -> dict[str, Series]:
    service = create_service(url, pool_size=2)
    cases = {
        "single": Series("process_batch, 1 message per transaction"),
        "b100": Series("process_batch, 100 messages per transaction"),
        "b500": Series("process_batch, 500 messages per transaction"),
        "parse": Series("its contract half only: parse_inbound + to_command, no database"),
        "store": Series("its store half only: run_batch of the parsed commands, 500 per tx"),
    }
    try:
        # Prepared statements, pool connections, import-time caches: not measured.
        expect_accepted(process_batch(service, ORDERS, messages.make(50, "warm")))
        for value in messages.make(5, "warm"):
            expect_accepted(process_batch(service, ORDERS, [value]))
        for rep in range(1, plan.repeats + 1):
            progress(f"  direct, repetition {rep}/{plan.repeats}")
            single = [[v] for v in messages.make(plan.single, "single")]
            b100 = [messages.make(100, "b100") for _ in range(plan.batches_100)]
            b500 = [messages.make(500, "b500") for _ in range(plan.batches_500)]
            parse = [messages.make(500, "parse") for _ in range(plan.batches_500)]
            store = [
                parse_only(batch)
                for batch in [messages.make(500, "store") for _ in range(plan.batches_500)]
            ]

            def run(batch: Sequence[bytes]) -> Callable[[], None]:
                return lambda: expect_accepted(process_batch(service, ORDERS, batch))

            def parse_call(batch: Sequence[bytes]) -> Callable[[], None]:
                def call() -> None:
                    parse_only(batch)

                return call

            def store_call(commands: Sequence[tuple[Ctx, Command]]) -> Callable[[], None]:
                def call() -> None:
                    results = service.run_batch(commands)
                    bad = [r for r in results if not hasattr(r, "status")]
                    if bad:
                        raise RuntimeError(f"{len(bad)} commands refused: {bad[0]!r}")

                return call

            workloads = {
                "single": ([run(b) for b in single], 1),
                "b100": ([run(b) for b in b100], 100),
                "b500": ([run(b) for b in b500], 500),
                "parse": ([parse_call(b) for b in parse], 500),
                "store": ([store_call(p) for p in store], 500),
            }
            measured = timed_in_turns([calls for calls, _ in workloads.values()])
            for (key, (calls, size)), (seconds, latencies) in zip(
                workloads.items(), measured, strict=True
            ):
                series = cases[key]
                series.messages.append(len(calls) * size)
                series.seconds.append(seconds)
                series.latencies.extend(latencies)
                progress(f"    {series.label}: {len(calls) * size / seconds:,.0f} msg/s")
    finally:
        service.close()
    return cases


# ---------------------------------------------------------------------------- (b) e2e
def count_placed(conn: psycopg.Connection[tuple[Any, ...]], after: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM oms_events WHERE topic = 'order.placed' AND notification_id > %s",
        [after],
    ).fetchone()
    return int(row[0]) if row else 0


def head(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM oms_events").fetchone()
    return int(row[0]) if row else 0


def transactions(conn: psycopg.Connection[tuple[Any, ...]], prefix: str) -> list[int]:
    """Messages per committed transaction: recorded_at is now(), the transaction's start."""
    rows = conn.execute(
        "SELECT count(*) FROM oms_command_log WHERE key LIKE %s GROUP BY recorded_at",
        [prefix.replace("_", r"\_") + "%"],
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def worker_env(running: Stack, data_dir: Path) -> dict[str, str]:
    assert running.bootstrap is not None
    return {
        **os.environ,
        "OMS_DATABASE_URL": running.url,
        "OMS_KAFKA_BOOTSTRAP": running.bootstrap,
        "OMS_DATA_DIR": str(data_dir),
        "OMS_TOPIC_PARTITIONS": str(PARTITIONS),
        "OMS_LOG_LEVEL": "WARNING",
    }


def start_workers(running: Stack, count: int, workdir: Path) -> tuple[list[WorkerProcess], float]:
    started = time.monotonic()
    workers = [
        WorkerProcess(
            "streams.integrations:app_from_env",
            workdir=workdir / f"worker-{count}-{n}",
            env=worker_env(running, workdir / "data"),
            cwd=ROOT,
            loglevel="WARNING",
        ).start()
        for n in range(count)
    ]
    wanted = count * PARTITIONS  # of oms.orders.v1 alone
    deadline = time.monotonic() + 120
    while True:
        assignments = [w.wait_ready(max(deadline - time.monotonic(), 1)) for w in workers]
        owned = [tp for a in assignments for tp in a if tp.startswith(f"{ORDERS}:")]
        # Settled when the order topic's partitions are split among all the workers.
        if (
            len(owned) == PARTITIONS
            and len(set(owned)) == PARTITIONS
            and (
                count == 1 or all(any(tp.startswith(f"{ORDERS}:") for tp in a) for a in assignments)
            )
        ):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers did not settle: {assignments} (wanted {wanted})")
        time.sleep(0.2)
    return workers, time.monotonic() - started


def wait_for(
    conn: psycopg.Connection[tuple[Any, ...]], after: int, total: int, timeout: float
) -> float:
    deadline = time.monotonic() + timeout
    while True:
        done = count_placed(conn, after)
        if done >= total:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {total} orders stored after {timeout:.0f} s")
        time.sleep(0.05)


class Spy:
    """py-spy sampling a worker process into collapsed stacks, until stopped."""

    def __init__(self, binary: str, pid: int, output: Path) -> None:
        self.output = output
        self.process = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--threads",
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


SPY_BUCKETS = (
    # (label, substring of a frame): inclusive shares of the worker's CPU samples.
    ("process_batch (the handler, in its thread)", "process_batch (streams/inbound.py"),
    ("  parse_inbound (orjson + pydantic contract)", "parse_inbound (adapters/contracts.py"),
    ("  to_command", "to_command (streams/inbound.py"),
    ("  run_batch", "run_batch (domain/application.py"),
    ("    _load_many (prefetch: existence reads)", "_load_many (domain/application.py"),
    (
        "    command_results (idempotency-key read)",
        "command_results (adapters/driven/eventstore.py",
    ),
    ("    the commands (domain: Order.place etc.)", "_run_in (domain/application.py"),
    ("    _commit (mapper, lookups, INSERTs, COMMIT)", "_commit (domain/application.py"),
    ("      waiting on PostgreSQL (psycopg wait)", "wait_conn"),
    ("aiokafka (fetch, decode)", "aiokafka/"),
    ("faust / mode (streams, event loop)", "faust/"),
)


def spy_summary(path: Path) -> list[str]:
    total = 0
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    try:
        text = path.read_text()
    except OSError:
        return ["- py-spy: no samples were written"]
    for line in text.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack_text.split(";")
        # With --threads the first frame is "thread (0x...): name".
        thread = frames[0].partition(": ")[2] if frames[0].startswith("thread (") else "?"
        threads[thread or frames[0]] += count
        leaves[frames[-1]] += count
        for label, needle in SPY_BUCKETS:
            if needle in stack_text:
                inclusive[label] += count
    if not total:
        return ["- py-spy: no samples were written"]
    lines = [
        f"- py-spy of one worker during its last repetition ({total:,} samples at 200 Hz, "
        "active threads only; a sample per busy thread, so the shares of threads can add "
        "up past 100%):",
        "",
        "| where (inclusive) | share of samples |",
        "| --- | ---: |",
    ]
    lines += [f"| {label} | {inclusive[label] / total:.0%} |" for label, _ in SPY_BUCKETS]
    lines += [
        "",
        "  busiest threads: "
        + ", ".join(f"{name} {n / total:.0%}" for name, n in threads.most_common(4)),
        "",
        "  hottest leaf frames: "
        + "; ".join(f"{name} {n / total:.1%}" for name, n in leaves.most_common(8)),
    ]
    return lines


def end_to_end(
    running: Stack,
    plan: Plan,
    messages: Messages,
    workers_count: int,
    workdir: Path,
    spy_binary: str | None,
) -> tuple[Series, float, list[str]]:
    assert running.bootstrap is not None
    progress(f"  starting {workers_count} integrations worker(s)")
    workers, startup = start_workers(running, workers_count, workdir)
    series = Series(f"end to end, {workers_count} worker process(es)")
    spy_lines: list[str] = []
    producer = default_producer(running.bootstrap)
    pids = {**running.processes(), "worker(s)": [w.pid for w in workers if w.pid is not None]}
    try:
        with psycopg.connect(running.url, autocommit=True) as conn:
            # Warm-up: agents running, pools connected, first batch through.
            after = head(conn)
            for key, value in messages.keyed(20, f"warm{workers_count}"):
                producer.send(ORDERS, key=key, value=value)
            producer.flush(timeout=30)
            wait_for(conn, after, 20, 60)
            for rep in range(1, plan.e2e_repeats + 1):
                tag = f"e2e{workers_count}r{rep}"
                pairs = messages.keyed(plan.e2e_messages, tag)
                after = head(conn)
                spy = None
                if spy_binary and rep == plan.e2e_repeats and workers[0].pid is not None:
                    spy = Spy(spy_binary, workers[0].pid, workdir / f"spy-{workers_count}.txt")
                    time.sleep(0.5)  # attached before the first message
                meter = CpuMeter(pids)
                meter.start()
                started = time.perf_counter()
                for key, value in pairs:
                    producer.send(ORDERS, key=key, value=value)
                producer.flush(timeout=60)
                published = time.perf_counter()
                at_publish = count_placed(conn, after)
                finished = wait_for(conn, after, len(pairs), 60 + len(pairs) / 100)
                cpu = meter.stop()
                if spy is not None:
                    spy.stop()
                    spy_lines = spy_summary(spy.output)
                sizes = transactions(conn, messages.key_prefix(tag))
                elapsed = finished - started
                drain = (len(pairs) - at_publish) / max(finished - published, 1e-9)
                series.messages.append(len(pairs))
                series.seconds.append(elapsed)
                series.cpu.append(cpu)
                series.notes.append(
                    f"publish {published - started:.1f} s, {at_publish:,} stored by then; "
                    f"after it {drain:,.0f} msg/s; {len(sizes)} transactions, "
                    f"median {statistics.median(sizes):.0f} messages, max {max(sizes)}"
                )
                progress(
                    f"    {series.label}: {len(pairs) / elapsed:,.0f} msg/s ({series.notes[-1]})"
                )
    finally:
        producer.close(timeout=5)
        for worker in workers:
            if worker.is_running():
                code = worker.terminate()
                if code != 0:
                    progress(f"  worker exited with {code}:\n{worker.log_tail(2000)}")
    return series, startup, spy_lines


# ---------------------------------------------------------------------------- report
def report(
    plan: Plan,
    head_lines: list[str],
    cases: dict[str, Series],
    e2e: list[tuple[Series, float]],
    spy_lines: list[str],
) -> str:
    lines = [
        "# Inbound benchmark (bench/inbound.py)",
        "",
        *head_lines,
        "",
        f"`order.placed` CloudEvents ({len(order_placed('IB-size'))} bytes, one line, one "
        f"payment) on `{ORDERS}`; target {TARGET:,} messages/s. Each message becomes one "
        "`place_order` (one event, its lookup rows and its idempotency key).",
    ]
    if cases:
        lines += [
            "",
            "## (a) process_batch, direct (in turns, same process)",
            "",
            "| case | messages/s (median) | min-max | vs 1 per transaction | p50 ms per call "
            "| p95 ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
    single = cases["single"].rate() if cases else 0.0
    for series in cases.values():
        pct = statistics.quantiles(series.latencies, n=20, method="inclusive")
        lines.append(
            f"| {series.label} | {series.rate():,.0f} | {spread(series.rates())} "
            f"| {series.rate() / single:.2f}x | {statistics.median(series.latencies) * 1000:.1f} "
            f"| {pct[18] * 1000:.1f} |"
        )
    b500 = cases["b500"].rate() if cases else 0.0
    lines += [
        "",
        "## (b) end to end: kafka-python publisher -> Tansu -> faust integrations worker -> "
        "event store",
        "",
        f"{plan.e2e_messages:,} messages per repetition, published as fast as kafka-python "
        "goes while the worker consumes; the clock runs from the first send until the last "
        "order is stored. Worker start-up and a warm-up batch are excluded.",
        "",
        "| case | messages/s (median) | min-max | vs process_batch 500/tx direct "
        "| worker ready after | cores used (median) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for series, startup in e2e:
        lines.append(
            f"| {series.label} | {series.rate():,.0f} | {spread(series.rates())} "
            f"| {f'{series.rate() / b500:.2f}x' if b500 else ''} | {startup:.1f} s "
            f"| {cores(series.cpu)} |"
        )
    lines += ["", "Per repetition:", ""]
    for series, _ in e2e:
        for n, note in enumerate(series.notes, start=1):
            lines.append(f"- {series.label}, #{n}: {series.rates()[n - 1]:,.0f} msg/s; {note}")
    if spy_lines:
        lines += ["", *spy_lines]
    lines += [
        "",
        "Direct cases run in turns (one call of each, over and over) on one service with a "
        "pool of 2, as the worker's handler does; latencies are per call (a call is a "
        "transaction). The worker is `streams.integrations:app_from_env` as deployed: a "
        "faust agent per inbound topic taking up to 500 messages within 50 ms, "
        "`process_batch` in a thread pool, service pool 4. Cores used: CPU seconds / wall "
        "seconds of the worker process(es), PostgreSQL, Tansu and this process (the "
        "publisher).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inbound", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, smaller repetitions")
    parser.add_argument(
        "--py-spy",
        dest="py_spy",
        default=None,
        help="py-spy binary: sample the worker during its last repetition",
    )
    parser.add_argument("--skip-direct", action="store_true", help="only the end to end part")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file (default bench/results/inbound[-quick].md)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    messages = Messages(f"{time.time_ns():x}"[-8:])
    e2e: list[tuple[Series, float]] = []
    spy_lines: list[str] = []
    with stack(kafka=True) as running, tempfile.TemporaryDirectory(prefix="oms-bench-w") as tmp:
        assert running.bootstrap is not None
        cases: dict[str, Series] = {}
        if not args.skip_direct:
            progress("(a) process_batch, direct")
            cases = direct(running.url, plan, messages)
        provision_topics(running.bootstrap, topic_specs(PARTITIONS))
        for count in plan.e2e_workers:
            progress(f"(b) end to end, {count} worker(s)")
            series, startup, spied = end_to_end(
                running,
                plan,
                messages,
                count,
                Path(tmp),
                args.py_spy if count == plan.e2e_workers[0] else None,
            )
            e2e.append((series, startup))
            spy_lines = spy_lines or spied
        head_lines = header(
            mode=plan.name,
            repeats=plan.repeats,
            started=started,
            load_before=load_before,
            running=running,
            packages=[
                "faust-streaming",
                "aiokafka",
                "kafka-python",
                "pydantic",
                "psycopg",
                "eventsourcing",
            ],
            folders=["adapters", "domain", "streams"],
        )
    text = report(plan, head_lines, cases, e2e, spy_lines)
    print(text)
    path = write_result("inbound-quick" if args.quick else "inbound", text, args.output)
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
