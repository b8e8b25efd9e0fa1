"""Command-side throughput and latency, measured next to a raw psycopg baseline.

Run as ``python -m bench.commands [--quick] [--profile]``. It starts its own embedded
PostgreSQL in a fresh temporary directory (or uses ``OMS_DATABASE_URL``), prints progress
on stderr and a markdown table on stdout, and writes that table to ``bench/results/``.

The machine this runs on is small and shared, so absolute numbers drift from run to run.
Each service case therefore runs in turns with its raw baselines (one call of each, over
and over: the same rows, payload size and durability, plain psycopg) and the table
reports the ratio between the medians: that ratio is what stays comparable across runs.
``OMS_DATABASE_URL`` should name a scratch database: the run adds thousands of orders.

``--profile`` prints cProfile tables (CPU-biased); for wall-clock shares, including time
spent waiting on PostgreSQL, sample a run with ``py-spy record --idle``.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import itertools
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from uuid import UUID, uuid4

import psycopg

from adapters.driven.embedded.postgres import EmbeddedPostgres
from adapters.driven.eventstore import create_service
from domain.application import Ctx, Outcome, ReturnsService
from domain.commands import Command, DeliverOrder, FulfilOrder, PlaceOrder, RequestReturn
from domain.errors import DomainError
from domain.events import Cause, FulfilledLine, OrderLine, Payment
from domain.order import Order
from domain.returns import RequestedLine
from domain.values import Channel, PaymentMethod, ReasonCode
from tests.unit.builders import eur

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RAW_TABLE = "bench_raw_events"
# Copies of the lookup tables (indexes included) for the by-hand replica of a commit.
RAW_LOOKUPS = {
    "bench_raw_log": "oms_command_log",
    "bench_raw_orders": "oms_orders",
    "bench_raw_serials": "oms_serials",
}

Call = Callable[[], object]


@dataclass(frozen=True)
class Plan:
    """How much work one repetition does: a full run takes about 2 minutes on 2 idle cores."""

    name: str
    repeats: int
    single: int
    returns: int
    duplicates: int
    point_selects: int
    concurrent: int
    batches_100: int
    batches_500: int
    mixed_batches: int
    mixed_orders: int
    duplicate_batches: int


FULL = Plan(
    name="full",
    repeats=5,
    single=800,
    returns=400,
    duplicates=800,
    point_selects=1500,
    concurrent=800,
    batches_100=10,
    batches_500=3,
    mixed_batches=3,
    mixed_orders=100,
    duplicate_batches=8,
)
QUICK = Plan(
    name="quick",
    repeats=2,
    single=200,
    returns=150,
    duplicates=200,
    point_selects=500,
    concurrent=300,
    batches_100=4,
    batches_500=2,
    mixed_batches=2,
    mixed_orders=100,
    duplicate_batches=2,
)


@dataclass
class Sample:
    ops: int
    events: int
    seconds: float
    latencies: list[float]


@dataclass
class Case:
    section: str
    label: str
    latency_of: str
    baseline: str | None = None
    # Batched cases are judged per row written, single ones per transaction.
    per_event: bool = False
    replica: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def ops_per_s(self) -> float:
        return statistics.median(s.ops / s.seconds for s in self.samples)

    def events_per_s(self) -> float:
        return statistics.median(s.events / s.seconds for s in self.samples)

    def percentile_ms(self, pct: int) -> float:
        # Median of the per-repetition percentiles, so one noisy repetition cannot own p99.
        return statistics.median(percentile(s.latencies, pct) for s in self.samples) * 1000


def percentile(values: Sequence[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- workload
@dataclass(frozen=True)
class OrderSpec:
    """A typical web order: two lines (one serialised), two payments, shipping."""

    number: str
    lines: tuple[OrderLine, ...]
    payments: tuple[Payment, ...]
    fulfilment: tuple[FulfilledLine, ...]
    serial: str


def order_spec(number: str) -> OrderSpec:
    serials = (f"{number}-S1", f"{number}-S2")
    return OrderSpec(
        number=number,
        lines=(
            OrderLine(
                line_no=1,
                sku="SHOE-1",
                name="Trail shoe",
                quantity=2,
                unit_price=eur("50.00"),
                serials=serials,
                supplier="acme",
                category="footwear",
            ),
            OrderLine(line_no=2, sku="HAT-1", name="Sun hat", quantity=1, unit_price=eur("20.00")),
        ),
        payments=(
            Payment(payment_id=f"{number}-p1", method=PaymentMethod.CARD, amount=eur("100.00")),
            Payment(payment_id=f"{number}-p2", method=PaymentMethod.GIFT_CARD, amount=eur("25.00")),
        ),
        fulfilment=(
            FulfilledLine(line_no=1, quantity=2, serials=serials),
            FulfilledLine(line_no=2, quantity=1),
        ),
        serial=serials[0],
    )


class Workload:
    """Unique order numbers and idempotency keys, so repeated runs never collide."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.cause = Cause(actor="bench", source="bench.commands", correlation_id=run_id)
        self._seq = itertools.count()

    def orders(self, count: int) -> list[OrderSpec]:
        return [order_spec(f"B{self.run_id}-{next(self._seq)}") for _ in range(count)]

    def ctx(self, key: str | None) -> Ctx:
        return Ctx(self.cause, idempotency_key=key)

    def place(self, spec: OrderSpec) -> PlaceOrder:
        return PlaceOrder(
            order_number=spec.number,
            customer_id=f"cust-{spec.number}",
            customer_email=f"{spec.number}@example.com",
            channel=Channel.WEB,
            lines=spec.lines,
            payments=spec.payments,
            shipping=eur("5.00"),
        )

    def keyed(self, spec: OrderSpec, verb: str) -> Ctx:
        # An inbound message id, as the stream agents will pass it.
        return self.ctx(f"{verb}:{spec.number}")


def check(results: Sequence[Outcome | DomainError]) -> None:
    refused = [r for r in results if isinstance(r, DomainError)]
    if refused:
        raise RuntimeError(f"{len(refused)} commands refused, first: {refused[0]!r}")


def place_call(work: Workload, svc: ReturnsService, spec: OrderSpec, ctx: Ctx) -> Call:
    def call() -> None:
        svc.run(ctx, work.place(spec))

    return call


def batch_call(
    svc: ReturnsService, commands: Sequence[tuple[Ctx, Command]], prefetch: bool = False
) -> Call:
    def call() -> None:
        check(svc.run_batch(commands, prefetch=prefetch))

    return call


# ---------------------------------------------------------------------------- timing
def timed(calls: Sequence[Call]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    for call in calls:
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)
    return time.perf_counter() - started, latencies


def timed_in_turns(workloads: Sequence[Sequence[Call]]) -> list[tuple[float, list[float]]]:
    """Several workloads, one call of each in turn; each one's time is its latencies' sum.

    Other work on this machine makes its speed drift over seconds; taking turns spreads
    that drift evenly over the cases being compared, so their ratios stay meaningful.
    """
    latencies: list[list[float]] = [[] for _ in workloads]
    for turn in itertools.zip_longest(*workloads):
        for index, call in enumerate(turn):
            if call is not None:
                t0 = time.perf_counter()
                call()
                latencies[index].append(time.perf_counter() - t0)
    return [(sum(chunk), chunk) for chunk in latencies]


def timed_threads(per_thread: Sequence[Sequence[Call]]) -> tuple[float, list[float]]:
    # The clock starts when every thread is ready, so connection warm-up is not counted.
    barrier = threading.Barrier(len(per_thread) + 1)
    latencies: list[list[float]] = [[] for _ in per_thread]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        barrier.wait()
        try:
            for call in per_thread[index]:
                t0 = time.perf_counter()
                call()
                latencies[index].append(time.perf_counter() - t0)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(per_thread))
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed, [x for chunk in latencies for x in chunk]


def split(calls: Sequence[Call], parts: int) -> list[list[Call]]:
    return [list(calls[i::parts]) for i in range(parts)]


# ---------------------------------------------------------------------------- baseline
class Raw:
    """Plain psycopg writes of rows shaped like the event store's, with its indexes."""

    def __init__(self, url: str, payload: bytes, result: bytes) -> None:
        self.url = url
        self.payload = payload
        self.result = result
        self.written: list[UUID] = []
        with psycopg.connect(url, autocommit=True) as conn:
            for table in (RAW_TABLE, *RAW_LOOKUPS):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(
                f"CREATE TABLE {RAW_TABLE} (originator_id uuid NOT NULL,"
                " originator_version bigint NOT NULL, topic text, state bytea,"
                " notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            )
            conn.execute(f"CREATE UNIQUE INDEX ON {RAW_TABLE} (notification_id)")
            for table, like in RAW_LOOKUPS.items():
                conn.execute(f"CREATE TABLE {table} (LIKE {like} INCLUDING ALL)")
        self._conns: list[psycopg.Connection[tuple[object, ...]]] = []

    def connections(self, count: int) -> list[psycopg.Connection[tuple[object, ...]]]:
        while len(self._conns) < count:
            self._conns.append(psycopg.connect(self.url))
        return self._conns[:count]

    def _row(self) -> tuple[UUID, int, str, bytes]:
        row_id = uuid4()
        self.written.append(row_id)
        return (row_id, 1, "order.placed", self.payload)

    def single_commit(self, conn: psycopg.Connection[tuple[object, ...]]) -> Call:
        row = self._row()

        def call() -> None:
            conn.execute(
                f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s)",
                row,
                prepare=True,
            )
            conn.commit()

        return call

    def batch_commit(self, conn: psycopg.Connection[tuple[object, ...]], rows: int) -> Call:
        batch = [self._row() for _ in range(rows)]

        def call() -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state)"
                    " VALUES (%s, %s, %s, %s)",
                    batch,
                )
            conn.commit()

        return call

    def replica_commit(self, conn: psycopg.Connection[tuple[object, ...]], commands: int) -> Call:
        """What place_order commits, sent by hand: the same rows, lock, NOTIFY and pipeline.

        The gap between this and the service is the cost of everything that is not SQL.
        """
        ids = [uuid4() for _ in range(commands)]
        now = datetime.now(UTC)
        logs = [(f"raw:{i}", self.result) for i in ids]
        orders = [(i, f"raw-{i}", "cust-raw", f"{i}@example.com", now) for i in ids]
        serials = [(f"{i}-S{n}", i, 1) for i in ids for n in (1, 2)]
        events = ([*ids], [1] * commands, ["order.placed"] * commands, [self.payload] * commands)

        def call() -> None:
            with conn.pipeline() as pipeline, conn.transaction():
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO bench_raw_log (key, result) VALUES (%s, %s)", logs)
                    cur.executemany(
                        "INSERT INTO bench_raw_orders (order_id, order_number, customer_id,"
                        " customer_email, placed_at) VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        orders,
                    )
                    cur.executemany(
                        "INSERT INTO bench_raw_serials (serial, order_id, line_no)"
                        " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                        serials,
                    )
                with conn.cursor() as cur:
                    cur.execute(f"LOCK TABLE {RAW_TABLE} IN EXCLUSIVE MODE", prepare=True)
                    cur.execute(f"NOTIFY {RAW_TABLE}")
                    cur.execute(
                        f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic,"
                        " state) SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[],"
                        " %s::bytea[]) RETURNING notification_id",
                        events,
                        prepare=True,
                    )
                    pipeline.sync()
                    cur.fetchall()

        return call

    def point_select(self, conn: psycopg.Connection[tuple[object, ...]], row_id: UUID) -> Call:
        def call() -> None:
            conn.execute(
                f"SELECT state FROM {RAW_TABLE} WHERE originator_id = %s"
                " AND originator_version = 1",
                (row_id,),
                prepare=True,
            ).fetchall()
            conn.commit()

        return call

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        with psycopg.connect(self.url, autocommit=True) as conn:
            for table in (RAW_TABLE, *RAW_LOOKUPS):
                conn.execute(f"DROP TABLE IF EXISTS {table}")


# ---------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, url: str, plan: Plan, run_id: str) -> None:
        self.url = url
        self.plan = plan
        self.work = Workload(run_id)
        self.services: dict[int, ReturnsService] = {}
        self.cases: dict[str, Case] = {}
        result = Outcome(aggregate_id=uuid4(), status="placed").model_dump_json().encode()
        self.raw = Raw(url, self._payload_like_order_placed(), result)
        # Orders delivered by the mixed batches, waiting for request_return.
        self.delivered: list[OrderSpec] = []
        # Keys committed by the single place_order case, replayed as duplicates.
        self.committed: list[tuple[OrderSpec, Ctx]] = []

    def _payload_like_order_placed(self) -> bytes:
        spec = self.work.orders(1)[0]
        order = Order.place(
            order_number=spec.number,
            customer_id=f"cust-{spec.number}",
            customer_email=f"{spec.number}@example.com",
            channel=Channel.WEB,
            lines=spec.lines,
            payments=spec.payments,
            shipping=eur("5.00"),
            at=datetime.now(UTC),
            cause=self.work.cause,
        )
        stored = self.service(2).mapper.to_stored_event(order.pending_events[0])
        return bytes(stored.state)

    def service(self, pool_size: int) -> ReturnsService:
        if pool_size not in self.services:
            self.services[pool_size] = create_service(self.url, pool_size=pool_size)
        return self.services[pool_size]

    def close(self) -> None:
        for svc in self.services.values():
            svc.close()
        self.raw.close()

    def case(
        self,
        key: str,
        section: str,
        label: str,
        latency_of: str,
        baseline: str | None = None,
        per_event: bool = False,
        replica: str | None = None,
    ) -> Case:
        if key not in self.cases:
            self.cases[key] = Case(section, label, latency_of, baseline, per_event, replica)
        return self.cases[key]

    def replica_case(
        self, key: str, section: str, commands: int, baseline: str, connections: int = 1
    ) -> Case:
        label = f"raw: place_order's writes by hand, {commands} cmd/tx"
        if connections > 1:
            label += f", {connections} connections"
        return self.case(
            key, section, label, "transaction", baseline=baseline, per_event=commands > 1
        )

    def in_turns(
        self, entries: Sequence[tuple[Case, Sequence[Call], int, int]], service_events: int
    ) -> None:
        """Time (case, calls, ops per call, events per call) entries in turns and record them.

        ``service_events`` is what the event store must have gained, a check that every
        command did what it is counted for.
        """
        before = self.head()
        measured = timed_in_turns([calls for _, calls, _, _ in entries])
        written = self.events_written(before)
        if written != service_events:
            raise RuntimeError(f"expected {service_events} events, the store gained {written}")
        for (case, calls, ops, events), result in zip(entries, measured, strict=True):
            self.record(case, ops * len(calls), events * len(calls), result)

    def record(
        self, case: Case, ops: int, events: int, measured: tuple[float, list[float]]
    ) -> None:
        seconds, latencies = measured
        case.samples.append(Sample(ops, events, seconds, latencies))
        rate = f"{ops / seconds:,.0f} ops/s"
        if events:
            rate += f", {events / seconds:,.0f} events/s"
        progress(f"    {case.label}: {rate}, p50 {percentile(latencies, 50) * 1000:.2f} ms")

    def events_written(self, before: int) -> int:
        return (self.service(2).recorder.max_notification_id() or 0) - before

    def head(self) -> int:
        return self.service(2).recorder.max_notification_id() or 0

    # ------------------------------------------------------------------ sections
    def warm_up(self) -> None:
        """Prepared statements, pool connections and import-time caches, not measured."""
        for pool in (2, 4, 8):
            svc = self.service(pool)
            for spec in self.work.orders(3):
                svc.run(
                    self.work.keyed(spec, "warm"),
                    PlaceOrder(
                        order_number=spec.number,
                        customer_id="warm",
                        customer_email=None,
                        channel=Channel.WEB,
                        lines=spec.lines,
                        payments=spec.payments,
                        shipping=eur("5.00"),
                    ),
                )
        self._mixed_batch(self.service(2), 20)()
        self._mixed_batch(self.service(2), 20, prefetch=True)()
        conn = self.raw.connections(1)[0]
        for _ in range(20):
            self.raw.single_commit(conn)()
            self.raw.replica_commit(conn, 1)()
        self.raw.batch_commit(conn, 100)()

    def _mixed_batch(self, svc: ReturnsService, orders: int, prefetch: bool = False) -> Call:
        specs = self.work.orders(orders)
        commands: list[tuple[Ctx, Command]] = []
        for spec in specs:
            commands.append(
                (
                    self.work.keyed(spec, "place"),
                    self.work.place(spec),
                )
            )
        for spec in specs:
            ctx = self.work.keyed(spec, "fulfil")
            commands.append(
                (
                    ctx,
                    FulfilOrder(
                        order_number=spec.number, location_id="WH-1", lines=spec.fulfilment
                    ),
                )
            )
        for spec in specs:
            ctx = self.work.keyed(spec, "deliver")
            commands.append((ctx, DeliverOrder(order_number=spec.number)))

        def call() -> None:
            check(svc.run_batch(commands, prefetch=prefetch))
            self.delivered.extend(specs)

        return call

    def _place_batch(self, svc: ReturnsService, size: int, prefetch: bool) -> Call:
        specs = self.work.orders(size)
        commands = [(self.work.keyed(s, "place"), self.work.place(s)) for s in specs]
        return batch_call(svc, commands, prefetch)

    def batched(self) -> None:
        plan, svc = self.plan, self.service(2)
        conn = self.raw.connections(1)[0]
        for size, count in ((100, plan.batches_100), (500, plan.batches_500)):
            raw = self.case(
                f"raw-{size}", "batched", f"raw executemany, {size} rows/tx", "transaction"
            )
            replica = self.replica_case(f"replica-{size}", "batched", size, f"raw-{size}")
            plain = self.case(
                f"batch-{size}",
                "batched",
                f"run_batch, {size} place_order/tx",
                "transaction",
                baseline=f"raw-{size}",
                per_event=True,
                replica=f"replica-{size}",
            )
            # What one round trip for all the reads of a batch buys, next to the plain call.
            prefetched = self.case(
                f"batch-{size}-prefetch",
                "batched",
                f"run_batch, {size} place_order/tx, prefetch",
                "transaction",
                baseline=f"raw-{size}",
                per_event=True,
                replica=f"replica-{size}",
            )
            self.in_turns(
                [
                    (raw, [self.raw.batch_commit(conn, size) for _ in range(count)], size, size),
                    (
                        replica,
                        [self.raw.replica_commit(conn, size) for _ in range(count)],
                        size,
                        size,
                    ),
                    (
                        plain,
                        [self._place_batch(svc, size, False) for _ in range(count)],
                        size,
                        size,
                    ),
                    (
                        prefetched,
                        [self._place_batch(svc, size, True) for _ in range(count)],
                        size,
                        size,
                    ),
                ],
                service_events=2 * count * size,
            )

        orders, rows, count = plan.mixed_orders, 3 * plan.mixed_orders, plan.mixed_batches
        label = f"run_batch, place+fulfil+deliver of {orders} orders ({rows} cmds)/tx"
        raw = self.case(f"raw-{rows}", "batched", f"raw executemany, {rows} rows/tx", "transaction")
        plain = self.case(
            "mixed", "batched", label, "transaction", baseline=f"raw-{rows}", per_event=True
        )
        prefetched = self.case(
            "mixed-prefetch",
            "batched",
            f"{label}, prefetch",
            "transaction",
            baseline=f"raw-{rows}",
            per_event=True,
        )
        self.in_turns(
            [
                (raw, [self.raw.batch_commit(conn, rows) for _ in range(count)], rows, rows),
                (plain, [self._mixed_batch(svc, orders) for _ in range(count)], rows, rows),
                (
                    prefetched,
                    [self._mixed_batch(svc, orders, prefetch=True) for _ in range(count)],
                    rows,
                    rows,
                ),
            ],
            service_events=2 * count * rows,
        )

    def single(self) -> None:
        plan, svc = self.plan, self.service(2)
        conn = self.raw.connections(1)[0]
        section = "single, 1 thread"
        raw = self.case("raw-1", section, "raw INSERT + COMMIT, 1 row/tx", "transaction")
        replica = self.replica_case("replica-1", section, 1, "raw-1")
        keyed = self.case(
            "place-1",
            section,
            "place_order (idempotency key)",
            "command",
            baseline="raw-1",
            replica="replica-1",
        )
        bare = self.case(
            "place-1-nokey",
            section,
            "place_order (no key)",
            "command",
            baseline="raw-1",
            replica="replica-1",
        )
        placed = [(spec, self.work.keyed(spec, "place")) for spec in self.work.orders(plan.single)]
        self.in_turns(
            [
                (raw, [self.raw.single_commit(conn) for _ in range(plan.single)], 1, 1),
                (replica, [self.raw.replica_commit(conn, 1) for _ in range(plan.single)], 1, 1),
                (keyed, [place_call(self.work, svc, s, c) for s, c in placed], 1, 1),
                (
                    bare,
                    [
                        place_call(self.work, svc, s, self.work.ctx(None))
                        for s in self.work.orders(plan.single)
                    ],
                    1,
                    1,
                ),
            ],
            service_events=2 * plan.single,
        )
        self.committed = placed

        targets, self.delivered = self.delivered[: plan.returns], self.delivered[plan.returns :]
        if len(targets) < plan.returns:
            raise RuntimeError("not enough delivered orders for request_return")
        case = self.case(
            "return-1",
            "single, 1 thread",
            "request_return (loads Order; writes Order+Return)",
            "command",
            baseline="raw-1",
        )
        before = self.head()
        statuses: list[str] = []

        def request(spec: OrderSpec) -> None:
            ctx = self.work.keyed(spec, "return")
            outcome = svc.run(
                ctx,
                RequestReturn(
                    order_number=spec.number,
                    lines=(
                        RequestedLine(
                            line_no=1,
                            quantity=1,
                            reason=ReasonCode.SIZE_TOO_SMALL,
                            serial=spec.serial,
                        ),
                    ),
                ),
            )
            statuses.append(outcome.status)

        measured = timed([partial(request, s) for s in targets])
        if set(statuses) != {"authorized"}:
            raise RuntimeError(f"request_return did not authorize: {set(statuses)}")
        self.record(case, len(targets), self.events_written(before), measured)

    def idempotency(self) -> None:
        plan, svc = self.plan, self.service(2)
        conn = self.raw.connections(1)[0]
        section = "idempotency (all duplicates)"
        raw = self.case("raw-select", section, "raw point SELECT by primary key", "statement")
        single = self.case(
            "dup-1", section, "place_order again, same key", "command", baseline="raw-select"
        )
        batched = self.case(
            "dup-batch",
            section,
            "run_batch of 100 duplicates",
            "transaction",
            baseline="raw-select",
        )
        batches = [
            [(c, self.work.place(s)) for s, c in self.committed[i : i + 100]]
            for i in range(0, 100 * plan.duplicate_batches, 100)
        ]
        if any(len(b) < 100 for b in batches):
            raise RuntimeError("not enough committed keys for the duplicate batches")
        self.in_turns(
            [
                (
                    raw,
                    [
                        self.raw.point_select(conn, i)
                        for i in self.raw.written[-plan.point_selects :]
                    ],
                    1,
                    0,
                ),
                (
                    single,
                    [
                        place_call(self.work, svc, s, c)
                        for s, c in self.committed[: plan.duplicates]
                    ],
                    1,
                    0,
                ),
                (batched, [batch_call(svc, b) for b in batches], 100, 0),
            ],
            service_events=0,
        )

    def concurrent(self) -> None:
        plan = self.plan
        for threads in (4, 8):
            section = f"single, {threads} threads"
            raw = self.case(
                f"raw-t{threads}",
                section,
                f"raw INSERT + COMMIT, {threads} connections",
                "transaction",
            )
            per_thread = plan.concurrent // threads
            ops = per_thread * threads
            calls_by_conn = [
                [self.raw.single_commit(c) for _ in range(per_thread)]
                for c in self.raw.connections(threads)
            ]
            self.record(raw, ops, ops, timed_threads(calls_by_conn))
            replica = self.replica_case(
                f"replica-t{threads}", section, 1, f"raw-t{threads}", connections=threads
            )
            calls_by_conn = [
                [self.raw.replica_commit(c, 1) for _ in range(per_thread)]
                for c in self.raw.connections(threads)
            ]
            self.record(replica, ops, ops, timed_threads(calls_by_conn))

            svc = self.service(threads)
            case = self.case(
                f"place-t{threads}",
                section,
                f"place_order, {threads} threads, pool {threads}",
                "command",
                baseline=f"raw-t{threads}",
                replica=f"replica-t{threads}",
            )
            placed = [
                (spec, self.work.keyed(spec, "place")) for spec in self.work.orders(plan.concurrent)
            ]
            calls = [place_call(self.work, svc, s, c) for s, c in placed]
            before = self.head()
            measured = timed_threads(split(calls, threads))
            self.record(case, len(calls), self.events_written(before), measured)

    def run(self) -> None:
        progress("warming up")
        self.warm_up()
        started = time.perf_counter()
        for rep in range(1, self.plan.repeats + 1):
            progress(
                f"repetition {rep}/{self.plan.repeats} "
                f"({time.perf_counter() - started:.0f} s so far)"
            )
            # Batched first: its mixed batches deliver the orders request_return needs.
            self.batched()
            self.single()
            self.idempotency()
            self.concurrent()


# ---------------------------------------------------------------------------- report
SECTIONS = (
    "single, 1 thread",
    "single, 4 threads",
    "single, 8 threads",
    "batched",
    "idempotency (all duplicates)",
)


def code_snapshot() -> str:
    """A digest of the code under test: the tree has no commit to name while it changes."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("domain/*.py"), *root.glob("adapters/*.py")]):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def environment(url: str, embedded: bool, load_before: float) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            return str(row[0]) if row else "?"

        server = show("server_version")
        durability = f"fsync={show('fsync')}, synchronous_commit={show('synchronous_commit')}"
    cpu = "?"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    where = "embedded, fresh data directory" if embedded else "OMS_DATABASE_URL"
    return [
        f"- machine: nproc {len(os.sched_getaffinity(0))}, {cpu}, {platform.system()} "
        f"{platform.machine()}; 1-minute load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (other work shares this machine)",
        f"- Python {platform.python_version()}; eventsourcing {metadata.version('eventsourcing')}, "
        f"psycopg {metadata.version('psycopg')}, pydantic {metadata.version('pydantic')}",
        f"- PostgreSQL {server} ({where}), {durability}",
        f"- code under test: sha256 of domain/*.py + adapters/*.py = {code_snapshot()}",
    ]


def compare(case: Case, base: Case) -> str:
    if case.per_event:
        return f"{case.events_per_s() / base.events_per_s():.2f}x rows/s"
    return f"{case.ops_per_s() / base.ops_per_s():.2f}x ops/s"


def report(bench: Bench, header: list[str]) -> str:
    lines = [
        "# Command-side benchmark (bench/commands.py)",
        "",
        *header,
        "",
        "| section | case | ops/s | events/s | p50 ms | p95 ms | p99 ms | latency of "
        "| vs raw baseline | vs same writes by hand |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for section in SECTIONS:
        for case in bench.cases.values():
            if case.section != section:
                continue
            ratio = compare(case, bench.cases[case.baseline]) if case.baseline else ""
            by_hand = compare(case, bench.cases[case.replica]) if case.replica else ""
            events = f"{case.events_per_s():,.0f}" if case.latency_of != "statement" else ""
            lines.append(
                f"| {section} | {case.label} | {case.ops_per_s():,.0f} | {events} "
                f"| {case.percentile_ms(50):.2f} | {case.percentile_ms(95):.2f} "
                f"| {case.percentile_ms(99):.2f} | {case.latency_of} | {ratio} | {by_hand} |"
            )
    lines += [
        "",
        "ops are commands for the service and transactions (statements for SELECT) for the raw "
        "baseline; events/s counts rows added to the event store (raw: rows inserted). "
        "Throughputs are medians over the repetitions; each percentile is the median of the "
        "per-repetition percentiles. Ratios divide the service median by the raw median "
        "measured in the same repetitions: single commands per transaction, batches per row. "
        "Raw rows copy the stored_events shape and indexes with a payload the size of a real "
        "`order.placed` event. Every command carries an idempotency key unless noted. "
        "A place_order commits 5 rows (its event, an oms_orders row, 2 oms_serials rows, its "
        "oms_command_log row) under an EXCLUSIVE lock on the events table, with a NOTIFY; "
        '"place_order\'s writes by hand" sends exactly that with plain psycopg (pipeline, '
        "one transaction), so the last column is the cost of everything that is not SQL.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- profile
def profile(bench: Bench) -> None:
    """Where the time of single and batched commands goes, on stderr (cProfile)."""
    bench.warm_up()
    svc = bench.service(2)
    bench.batched()  # delivers orders for request_return; its numbers are not reported
    runs: list[tuple[str, Sequence[Call]]] = []
    placed = [(s, bench.work.keyed(s, "place")) for s in bench.work.orders(300)]
    runs.append(("300 x place_order", [place_call(bench.work, svc, s, c) for s, c in placed]))

    def request(spec: OrderSpec) -> None:
        svc.run(
            bench.work.keyed(spec, "return"),
            RequestReturn(
                order_number=spec.number,
                lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
            ),
        )

    runs.append(("200 x request_return", [partial(request, s) for s in bench.delivered[:200]]))
    batches = []
    for _ in range(5):
        specs = bench.work.orders(100)
        batches.append(
            [
                (
                    bench.work.keyed(s, "place"),
                    bench.work.place(s),
                )
                for s in specs
            ]
        )
    runs.append(("5 x run_batch of 100 place_order", [batch_call(svc, b) for b in batches]))
    runs.append(
        (
            "5 x run_batch of 100 place_order, prefetch",
            [bench._place_batch(svc, 100, prefetch=True) for _ in range(5)],
        )
    )
    for title, calls in runs:
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for call in calls:
            call()
        profiler.disable()
        wall = time.perf_counter() - started
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(18)
        stats.sort_stats("cumulative").print_stats(30)
        progress(f"==== {title}: {wall:.2f} s wall (profiled)\n{out.getvalue()}")


# ---------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commands", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, smaller repetitions")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile single and batched commands with cProfile instead",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file (default bench/results/commands[-quick].md)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    output: Path = args.output or RESULTS_DIR / (
        "commands-quick.md" if args.quick else "commands.md"
    )

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    url = os.environ.get("OMS_DATABASE_URL")
    scratch: Path | None = None
    server: EmbeddedPostgres | None = None
    try:
        if url is None:
            scratch = Path(tempfile.mkdtemp(prefix="oms-bench-"))
            progress(f"starting embedded PostgreSQL in {scratch}")
            server = EmbeddedPostgres(scratch / "pgdata").start()
            url = server.url
        bench = Bench(url, plan, run_id=f"{time.time_ns():x}"[-10:])
        try:
            if args.profile:
                profile(bench)
                return 0
            bench.run()
            header = [
                f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; mode {plan.name}, "
                f"{plan.repeats} repetitions, medians; "
                f"runtime {time.perf_counter() - started:.0f} s",
                *environment(url, embedded=server is not None, load_before=load_before),
            ]
        finally:
            bench.close()
    finally:
        if server is not None:
            progress("stopping embedded PostgreSQL")
            server.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    text = report(bench, header)
    print(text)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    progress(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
