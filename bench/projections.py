"""Projection throughput, rebuild speed and end-to-end latency, next to baselines.

Run as ``python -m bench.projections [--quick] [--profile] [--output PATH]``. It starts
its own embedded PostgreSQL and Tansu (``bench.common.stack``), fills the event store with
a scenario driven through ``ReturnsService.run_batch`` (orders placed, fulfilled and
delivered; returns requested, received, inspected and refunded or exchanged; in-store
returns; failed refunds; stock counts and adjustments), prints progress on stderr and a
markdown report on stdout. A full run writes it to ``bench/results/projections.md``; a
quick run writes only where ``--output`` says.

1. Projection events/s for one worker.
   a. In process: the worker's loop without Kafka. The relayed CloudEvents (bytes, as the
      relay would publish them, with a topic and partition each) are cut per topic into
      batches of 500 or 2000, decoded, and applied with ``ReadModelStore.apply_many`` to
      every projection that reads that topic, with their offsets, in one transaction per
      batch: exactly what
      ``streams.projectors.Projector.apply`` does, less the publication of changed rows.
      In turns with two baselines on the same batches: ``InMemoryReadModel`` (decode,
      reduce and merge, no I/O: the Python ceiling), and raw PostgreSQL (one
      ``INSERT ... SELECT FROM unnest ... ON CONFLICT DO UPDATE`` per transaction, as many
      rows and transactions (one per batch) as the store writes: the database ceiling).
      ``--sections costs`` (not in the default) times each projection alone on the largest
      batches, in CPU seconds: its ``reduce_all`` + ``merge`` with no I/O, and ``apply_many``
      with it alone (bench process + PostgreSQL), to say which projection costs most.
   b. Through Kafka: broker restarted empty, read models dropped, one projections worker
      started and joined (not timed), then a relay process with a new name publishes the
      whole log. Timed from the relay's first recorded position to lag 0: the sum of the
      ``version`` column of each projection's state table equals the sum of the last
      versions of the aggregates it reads (polled every 50 ms, then confirmed with
      ``projection_lag``).
2. Rebuild: ``rebuild(projection, switch=False)`` for each projection, then
   ``rebuild_many`` of all of them in one pass, after a baseline that reads and decodes the
   log the same way (pages of 2000, ``cloud_event_for``).
3. End-to-end latency with the whole pipeline running (relay process, integrations worker,
   projections worker): ``order.placed`` messages published with kafka-python to
   ``oms.orders.v1`` at a steady rate; the publish time is ``time.time()`` just before
   ``send``. The commit time is PostgreSQL's own: ``track_commit_timestamp`` is switched on
   (the embedded server is restarted once for it), and after the run
   ``pg_xact_commit_timestamp(xmin)`` of each order's rows gives when the transaction
   that wrote them committed, on the same host clock, with no polling to skew it and no
   load added while measuring. Every order has its own customer and nothing else touches
   its rows, so xmin is the transaction that applied that order's event. Stages: the
   ``order.placed`` row in ``oms_events`` (inbound: integrations worker), the
   ``rm_customers`` row, and the last of the state rows of the three projections that
   read order events (the order is in every read model). The commit timestamp is taken
   just before the commit's WAL flush, so it is early by that flush (about a millisecond).
   Beside them, a plain kafka-python consumer with the workers' fetch wait reads the
   inbound topic and ``oms.order-events.v1``: when each message reaches a consumer that
   does nothing else (the Kafka-only baseline), and the relay's send time (CreateTime).
   The integrations group is moved to the end of ``rma.events.v1`` first, so the
   scenario's refund requests are not dispatched again. An order still not committed
   ``drain_s`` after the last send counts as infinitely late (nearest-rank percentiles).

The machine is small and shared: every figure is a median over repetitions, baselines run
in turns with the cases they scale, and CPU use per process is reported next to them.
``--profile`` prints cProfile tables of one in-process run; for the worker processes,
sample them with ``py-spy record --idle -p PID`` while section 1b or 3 runs.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import math
import os
import pstats
import random
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from psycopg.types.json import Jsonb

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import (
    EVENT_TOPIC_BY_KIND,
    ORDER_EVENTS,
    ORDERS,
    RMA_EVENTS,
    topic_specs,
)
from adapters.driven.readmodels.base import topics_of
from adapters.driven.readmodels.positions import projection_lag
from adapters.driven.readmodels.rebuild import rebuild, rebuild_many
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import KIND_BY_TYPE, cloud_event_for
from adapters.driven.relay import SCHEMA as RELAY_SCHEMA
from bench.common import (
    ROOT,
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
from domain.application import Ctx, Outcome, ReturnsService
from domain.commands import (
    AdjustStock,
    Command,
    CountStock,
    DeliverOrder,
    FailRefund,
    FulfilOrder,
    InspectItems,
    PlaceOrder,
    ReceiveParcel,
    RecordInStoreReturn,
    RequestReturn,
    SettleRefund,
)
from domain.errors import DomainError
from domain.events import Cause, FulfilledLine, InspectedItem, OrderLine, Payment, ReceivedItem
from domain.order import order_id_for
from domain.returns import CounterCheck, RequestedLine
from domain.values import (
    Channel,
    Condition,
    Disposition,
    Money,
    PaymentMethod,
    ReasonCode,
    RefundMethod,
)
from projections import Event, Projection, default_projections
from projections.core import ORDER, InMemoryReadModel, State, all_tables, merge, reduce_all
from projections.schema import state_table
from streams.worker import WorkerProcess
from tests.integration.builders import order_placed

PARTITIONS = 4
FETCH_WAIT_MS = int(os.environ.get("OMS_FETCH_MAX_WAIT_MS", "20"))
WORKER_TARGET = 5_000
REBUILD_TARGET = 20_000
LATENCY_TARGETS_MS = {250: 100.0, 1000: 500.0}
REBUILD_SUFFIX = "_bench"
RAW_TABLE = "bench_rm_raw"
RAW_DOC = orjson.dumps(
    {
        "version": 4,
        "customer_id": "C0042",
        "lines": {str(i): {"sku": "SKU-X", "qty": 2, "price": "39.90"} for i in range(5)},
        "status": "authorized",
        "currency": "EUR",
    }
)
Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Plan:
    name: str
    orders: int
    repeats: int
    kafka_repeats: int
    batch_sizes: tuple[int, ...]
    rates: tuple[int, ...]
    seconds: float
    warmup_s: float
    drain_s: float


FULL = Plan(
    "full",
    orders=3300,
    repeats=3,
    kafka_repeats=2,
    batch_sizes=(500, 2000),
    rates=(250, 1000),
    seconds=30.0,
    warmup_s=5.0,
    drain_s=45.0,
)
QUICK = Plan(
    "quick",
    orders=700,
    repeats=1,
    kafka_repeats=1,
    batch_sizes=(500, 2000),
    rates=(250, 1000),
    seconds=10.0,
    warmup_s=3.0,
    drain_s=30.0,
)


@dataclass
class Series:
    """One case's repetitions: events and wall seconds per run, CPU per role."""

    section: str
    label: str
    events: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)
    ratios: list[tuple[Series, str]] = field(default_factory=list)
    """Baselines measured in the same run, with what to call the ratio."""
    target: int | None = None
    note: str = ""

    def add(self, events: int, seconds: float, cpu: dict[str, float] | None = None) -> None:
        self.events.append(events)
        self.seconds.append(seconds)
        if cpu is not None:
            self.cpu.append(cpu)

    def rates(self) -> list[float]:
        return [e / s for e, s in zip(self.events, self.seconds, strict=True)]

    def rate(self) -> float:
        return median(self.rates())


def timer() -> Callable[[], float]:
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


# ---------------------------------------------------------------------------- scenario
CATALOGUE = [
    # sku, name, price, supplier, category, serialised
    ("SHOE-RUN-42", "Running shoe", "39.90", "Stride Ltd", "shoes", False),
    ("JACKET-RAIN-M", "Rain jacket", "89.00", "Northwind", "apparel", False),
    ("HEADPHONES-X1", "Headphones X1", "129.00", "SoundCo", "electronics", True),
    ("SOCKS-3P", "Socks, 3 pairs", "9.90", "Stride Ltd", "apparel", False),
    ("KETTLE-2L", "Kettle 2 l", "34.50", "HomeGoods", "kitchen", True),
    ("TEE-BLUE-M", "T-shirt", "19.90", "Threads", "apparel", False),
]
DISPOSITION = {
    Condition.NEW: Disposition.RESTOCK,
    Condition.RESELLABLE: Disposition.RESTOCK,
    Condition.DAMAGED: Disposition.SCRAP,
    Condition.DEFECTIVE: Disposition.REPAIR,
}
CONDITIONS = [
    Condition.NEW,
    Condition.NEW,
    Condition.RESELLABLE,
    Condition.DAMAGED,
    Condition.DEFECTIVE,
]


@dataclass
class OrderPlan:
    number: str
    lines: tuple[OrderLine, ...]
    web: bool


class Scenario:
    """A shop's activity through ``run_batch``, chunk by chunk, one command kind a batch."""

    def __init__(self, svc: ReturnsService, seed: int) -> None:
        self.svc = svc
        self.random = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:6].upper()
        self.cause = Cause(actor="bench", source="bench.projections", correlation_id=self.run_id)
        self.ctx = Ctx(self.cause)
        self.outcomes: Counter[str] = Counter()
        self.seq = itertools.count()

    def batch(self, commands: Sequence[Command]) -> list[Outcome]:
        results = self.svc.run_batch([(self.ctx, c) for c in commands])
        done = []
        for result in results:
            if isinstance(result, DomainError):
                self.outcomes[f"refused:{result.code}"] += 1
            else:
                self.outcomes[result.status] += 1
                done.append(result)
        return done

    def order(self, index: int) -> OrderPlan:
        web = self.random.random() < 0.8
        number = f"{'WEB' if web else 'STO'}-{self.run_id}-{index:05d}"
        lines = []
        for line_no, (sku, name, price, supplier, category, serialised) in enumerate(
            self.random.sample(CATALOGUE, k=self.random.randint(1, 3)), 1
        ):
            quantity = self.random.randint(1, 2)
            lines.append(
                OrderLine(
                    line_no=line_no,
                    sku=sku,
                    name=name,
                    quantity=quantity,
                    unit_price=Money.of(price, "EUR"),
                    serials=tuple(f"SN-{number}-{line_no}-{q}" for q in range(quantity))
                    if serialised
                    else (),
                    supplier=supplier,
                    category=category,
                )
            )
        return OrderPlan(number, tuple(lines), web)

    def chunk(self, size: int) -> None:
        plans = [self.order(next(self.seq)) for _ in range(size)]
        rnd = self.random
        commands: list[Any] = []
        for plan in plans:
            shipping = Money.of("4.90" if plan.web else "0.00", "EUR")
            total = shipping
            for line in plan.lines:
                total = total + line.unit_price.times(line.quantity)
            commands.append(
                PlaceOrder(
                    order_number=plan.number,
                    customer_id=f"C{rnd.randint(1, 3000):05d}",
                    customer_email=None,
                    channel=Channel.WEB if plan.web else Channel.STORE,
                    lines=plan.lines,
                    shipping=shipping,
                    store_id=None if plan.web else "STORE-7",
                    payments=(Payment(payment_id="p1", method=PaymentMethod.CARD, amount=total),),
                )
            )
            if plan.web:
                commands.append(
                    FulfilOrder(
                        order_number=plan.number,
                        location_id="WH-1",
                        lines=tuple(
                            FulfilledLine(
                                line_no=ln.line_no, quantity=ln.quantity, serials=ln.serials
                            )
                            for ln in plan.lines
                        ),
                    )
                )
                commands.append(DeliverOrder(order_number=plan.number))
        self.batch(commands)

        # Stock counts and adjustments (the stock projection's rebases).
        stock: list[Any] = []
        for sku, *_ in rnd.sample(CATALOGUE, k=2):
            stock.append(
                CountStock(
                    sku=sku,
                    location_id="WH-1",
                    quantity=rnd.randint(50, 500),
                    count_id=f"CNT-{uuid.uuid4().hex[:10]}",
                )
            )
            stock.append(
                AdjustStock(
                    sku=sku,
                    location_id="WH-1",
                    delta=rnd.choice([-2, -1, 1, 3]),
                    reason="shrink",
                    adjustment_id=f"ADJ-{uuid.uuid4().hex[:10]}",
                )
            )
        self.batch(stock)

        web = [p for p in plans if p.web]
        asked = [p for p in web if rnd.random() < 0.45]
        at_counter = [p for p in web if p not in asked and rnd.random() < 0.06]
        requests: list[Any] = []
        lines_of: dict[str, OrderLine] = {}
        for plan in asked:
            line = rnd.choice(plan.lines)
            lines_of[plan.number] = line
            requests.append(
                RequestReturn(
                    order_number=plan.number,
                    refund_method=rnd.choice(
                        [RefundMethod.ORIGINAL_PAYMENT] * 16
                        + [RefundMethod.STORE_CREDIT] * 2
                        + [RefundMethod.EXCHANGE]
                    ),
                    lines=(
                        RequestedLine(
                            line_no=line.line_no,
                            quantity=1,
                            reason=rnd.choice(list(ReasonCode)),
                            serial=line.serials[0] if line.serials else None,
                        ),
                    ),
                )
            )
        requested = self.batch(requests)
        by_return = dict(zip([r.aggregate_id for r in requested], asked, strict=False))

        # Parcels received and inspected (one batch; most authorized RMAs come back).
        inspections: list[Any] = []
        for outcome in requested:
            owner = by_return.get(outcome.aggregate_id)
            if outcome.status != "authorized" or not outcome.rma_number or owner is None:
                continue
            if rnd.random() < 0.1:
                continue  # never shipped back
            line = lines_of[owner.number]
            serial = line.serials[0] if line.serials else None
            receipt = f"REC-{outcome.aggregate_id.hex[:12]}"
            condition = rnd.choice(CONDITIONS)
            inspections.append(
                ReceiveParcel(
                    receipt_id=receipt,
                    warehouse_id="WH-1",
                    rma_number=outcome.rma_number,
                    tracking_number=f"TRK{rnd.randint(10**8, 10**9)}",
                    items=(ReceivedItem(sku=line.sku, quantity=1, serial=serial),),
                )
            )
            inspections.append(
                InspectItems(
                    rma_number=outcome.rma_number,
                    receipt_id=receipt,
                    items=(
                        InspectedItem(
                            sku=line.sku,
                            quantity=1,
                            serial=serial,
                            condition=condition,
                            disposition=DISPOSITION[condition],
                            location_id="WH-1",
                        ),
                    ),
                )
            )
        paid = self.batch(inspections)

        counter: list[Any] = []
        for index, plan in enumerate(at_counter):
            line = plan.lines[0]
            serial = line.serials[-1] if line.serials else None
            counter.append(
                RecordInStoreReturn(
                    store_return_id=f"SR-{self.run_id}-{plan.number}-{index}",
                    store_id="STORE-7",
                    staff_id="staff-12",
                    order_number=plan.number,
                    refund_method=RefundMethod.ORIGINAL_PAYMENT,
                    lines=(
                        RequestedLine(
                            line_no=line.line_no,
                            quantity=1,
                            reason=ReasonCode.SIZE_TOO_LARGE,
                            serial=serial,
                        ),
                    ),
                    checks=(
                        CounterCheck(
                            line_no=line.line_no,
                            quantity=1,
                            serial=serial,
                            condition=Condition.NEW,
                            disposition=Disposition.RESTOCK,
                        ),
                    ),
                )
            )
        paid += self.batch(counter)

        # The payment provider answers: most refunds settle, a few fail.
        answers: list[Any] = []
        for outcome in paid:
            if not outcome.refund_id or outcome.amount is None:
                continue
            if rnd.random() < 0.05:
                answers.append(FailRefund(refund_id=outcome.refund_id, reason="card expired"))
            else:
                answers.append(
                    SettleRefund(
                        refund_id=outcome.refund_id,
                        amount=outcome.amount,
                        provider_reference=f"psp-{uuid.uuid4().hex[:10]}",
                    )
                )
        self.batch(answers)


def fill(url: str, orders: int, chunk: int = 150) -> int:
    svc = create_service(url, pool_size=2)
    scenario = Scenario(svc, seed=7)
    elapsed = timer()
    try:
        for start in range(0, orders, chunk):
            scenario.chunk(min(chunk, orders - start))
            progress(
                f"  scenario: {start + chunk:,}/{orders:,} orders, "
                f"{svc.recorder.max_notification_id() or 0:,} events"
            )
        events = svc.recorder.max_notification_id() or 0
    finally:
        svc.close()
    progress(
        f"  filled {events:,} events in {elapsed():.1f} s; command outcomes: "
        + ", ".join(f"{k} {v}" for k, v in scenario.outcomes.most_common())
    )
    return events


# ---------------------------------------------------------------------------- the log
@dataclass(frozen=True, slots=True)
class Record:
    """A relayed message as a worker receives it."""

    topic: str
    partition: int
    offset: int
    value: bytes


def load_records(url: str) -> list[Record]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM oms_events ORDER BY notification_id"
        ).fetchall()
    next_offset: Counter[tuple[str, int]] = Counter()
    records = []
    for row in rows:
        message = cloud_event_for(row)
        topic = EVENT_TOPIC_BY_KIND[message["source"].removeprefix("oms/")]
        partition = zlib.crc32(message["subject"].encode()) % PARTITIONS
        offset = next_offset[(topic, partition)]
        next_offset[(topic, partition)] += 1
        records.append(Record(topic, partition, offset, orjson.dumps(message)))
    return records


def worker_batches(records: Sequence[Record], size: int) -> list[list[Record]]:
    """Per-topic batches (one agent per topic), interleaved across topics."""
    by_topic: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_topic[record.topic].append(record)
    chunks = [[rs[i : i + size] for i in range(0, len(rs), size)] for rs in by_topic.values()]
    return [c for group in itertools.zip_longest(*chunks) for c in group if c]


def decode(batch: Sequence[Record]) -> tuple[list[Event], dict[tuple[str, int], int]]:
    events = []
    offsets: dict[tuple[str, int], int] = {}
    for record in batch:
        offsets[(record.topic, record.partition)] = record.offset + 1
        events.append(
            Event.from_cloud_event(
                orjson.loads(record.value), topic=record.topic, partition=record.partition
            )
        )
    return events, offsets


def readers_of(projections: Sequence[Projection]) -> dict[str, list[Projection]]:
    readers: dict[str, list[Projection]] = defaultdict(list)
    for projection in projections:
        for topic in topics_of(projection):
            readers[topic].append(projection)
    return readers


def reset_read_models(url: str, projections: Sequence[Projection]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for projection in projections:
            for table in all_tables(projection):
                for suffix in ("", REBUILD_SUFFIX):
                    conn.execute(f'DROP TABLE IF EXISTS "{table.physical(suffix)}"'.encode())
        for statement in (
            "DELETE FROM rm_offsets",
            "DELETE FROM oms_consumer_positions WHERE consumer LIKE 'readmodel:%'",
        ):
            with suppress(psycopg.errors.UndefinedTable):
                conn.execute(statement.encode())


# ---------------------------------------------------------------------------- 1a
def run_memory(
    projections: Sequence[Projection], batches: Sequence[list[Record]]
) -> tuple[float, list[int]]:
    """Decode, reduce and merge with no I/O; returns seconds and rows per transaction."""
    models = {p.name: InMemoryReadModel(p) for p in projections}
    readers = readers_of(projections)
    rows: list[int] = []
    elapsed = timer()
    for batch in batches:
        events, _ = decode(batch)
        written = 0
        for projection in readers[batch[0].topic]:
            mine = [e for e in events if e.kind in projection.kinds]
            merged = models[projection.name].apply(mine)
            written += len(merged) + len({e.aggregate_id for e in mine})
        rows.append(written)  # one transaction per batch, as Projector.apply commits it
    return elapsed(), rows


def run_reduce_only(projections: Sequence[Projection], batches: Sequence[list[Record]]) -> float:
    """The store's own Python per batch with no I/O: decode, ``reduce_all`` into states
    held in memory, ``merge``. InMemoryReadModel (above) also applies the merged rows to
    dict tables, whose stock rebase rescans every movement: not the store's work."""
    states: dict[str, dict[str, State]] = {p.name: {} for p in projections}
    readers = readers_of(projections)
    elapsed = timer()
    for batch in batches:
        events, _ = decode(batch)
        for projection in readers[batch[0].topic]:
            mine = [e for e in events if e.kind in projection.kinds]
            merge(reduce_all(projection, states[projection.name], mine))
    return elapsed()


def run_store(
    url: str,
    projections: Sequence[Projection],
    batches: Sequence[list[Record]],
    roles: Mapping[str, Sequence[int]],
    profile: cProfile.Profile | None = None,
) -> tuple[float, dict[str, float]]:
    reset_read_models(url, projections)
    store = ReadModelStore(url, projections)  # tables created before the clock starts
    readers = readers_of(projections)
    meter = CpuMeter(roles)
    try:
        meter.start()
        elapsed = timer()
        if profile is not None:
            profile.enable()
        for batch in batches:
            events, offsets = decode(batch)
            store.apply_many(readers[batch[0].topic], events, offsets)
        if profile is not None:
            profile.disable()
        seconds = elapsed()
        return seconds, meter.stop()
    finally:
        store.close()


def run_raw(url: str, rows: Sequence[int]) -> float:
    """As many transactions and rows as the store wrote, one unnest upsert each."""
    rnd = random.Random(1)
    pool = max(10, sum(rows) // 3)
    doc = orjson.loads(RAW_DOC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}".encode())
        conn.execute(
            f"CREATE TABLE {RAW_TABLE} (k text PRIMARY KEY, v bigint NOT NULL,"
            " doc jsonb NOT NULL)".encode()
        )
        plans: list[tuple[list[str], list[int], list[Jsonb]]] = []
        for n in rows:
            keys = sorted(f"k{i}" for i in rnd.sample(range(pool), min(n, pool)))
            plans.append((keys, [1] * len(keys), [Jsonb(doc, dumps=orjson.dumps)] * len(keys)))
        # Binary parameters and orjson, as the store sends them.
        statement = (
            f"INSERT INTO {RAW_TABLE} (k, v, doc) SELECT * FROM unnest(%b::text[],"
            " %b::bigint[], %b::jsonb[]) ON CONFLICT (k) DO UPDATE SET"
            f" v = {RAW_TABLE}.v + EXCLUDED.v, doc = EXCLUDED.doc"
        ).encode()
        elapsed = timer()
        for plan in plans:
            with conn.transaction():
                conn.execute(statement, plan)
        seconds = elapsed()
        conn.execute(f"DROP TABLE {RAW_TABLE}".encode())
    return seconds


def section_in_process(
    running: Stack,
    plan: Plan,
    records: Sequence[Record],
    projections: Sequence[Projection],
    profile: bool,
) -> list[Series]:
    out: list[Series] = []
    for size in plan.batch_sizes:
        batches = worker_batches(records, size)
        memory = Series("1a in process", f"decode + reduce + merge, no I/O, batches of {size}")
        raw = Series(
            "1a in process",
            f"raw PostgreSQL: same rows and transactions, "
            f"one unnest upsert each, batches of {size}",
        )
        python = Series(
            "1a in process",
            f"decode + reduce_all + merge, the store's Python without I/O, batches of {size}",
        )
        store = Series(
            "1a in process",
            f"ReadModelStore.apply_many, all {len(projections)} in one transaction, "
            f"batches of {size}",
            ratios=[(raw, "raw PostgreSQL"), (memory, "no I/O"), (python, "store's Python")],
            target=WORKER_TARGET,
        )
        for rep in range(plan.repeats):
            seconds, rows = run_memory(projections, batches)
            memory.add(len(records), seconds)
            python.add(len(records), run_reduce_only(projections, batches))
            postgres = {k: v for k, v in running.processes().items() if k == "postgres"}
            seconds, cpu = run_store(running.url, projections, batches, postgres)
            store.add(len(records), seconds, cpu)
            raw.add(len(records), run_raw(running.url, rows))
            progress(
                f"  1a batch {size} rep {rep + 1}: store {store.rates()[-1]:,.0f}/s, "
                f"in memory {memory.rates()[-1]:,.0f}/s, reduce only {python.rates()[-1]:,.0f}/s, "
                f"raw {raw.rates()[-1]:,.0f}/s "
                f"({len(rows)} transactions, {sum(rows):,} rows)"
            )
        memory.note = f"{len(batches)} batches"
        raw.note = f"{sum(rows):,} rows in {len(rows)} transactions"
        out += [store, memory, python, raw]
    if profile:
        batches = worker_batches(records, max(plan.batch_sizes))
        prof = cProfile.Profile()
        run_store(running.url, projections, batches, {}, profile=prof)
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text).strip_dirs()
        stats.sort_stats("tottime").print_stats(22)
        stats.sort_stats("cumulative").print_stats(30)
        progress(text.getvalue())
    return out


# ---------------------------------------------------------------------------- costs
@dataclass
class Cost:
    """One projection's share of 1a: its reducer alone (no I/O) and its store alone."""

    projection: str
    events: int = 0
    """Events of its kinds in the log (what it folds)."""
    rows: int = 0
    """State and table rows merged per pass, summed over the batches (what it writes)."""
    reduce_s: list[float] = field(default_factory=list)
    """CPU seconds of the bench process: on a loaded machine, wall time mostly measures
    the wait for a core."""
    store_s: list[float] = field(default_factory=list)
    """CPU seconds of the bench process and of PostgreSQL together."""
    store_wall_s: list[float] = field(default_factory=list)


def section_costs(
    running: Stack,
    plan: Plan,
    records: Sequence[Record],
    projections: Sequence[Projection],
) -> list[Cost]:
    """Each projection alone on the largest batches: ``reduce_all`` + ``merge`` of its
    events with no I/O (decoded beforehand, so the shared decode is not counted), then
    ``apply_many`` with it alone (its own transaction per batch it reads, decode included).
    Timed in CPU seconds, the reducers with the collector paused. The reducer times add
    up to the Python of 1a less the decode; the store-alone times do not add up to 1a's
    store (each pays its own transactions)."""
    batches = worker_batches(records, max(plan.batch_sizes))
    decoded = [(batch[0].topic, *decode(batch)) for batch in batches]
    readers = readers_of(projections)
    costs = {p.name: Cost(p.name) for p in projections}
    for topic, events, _ in decoded:
        for projection in readers[topic]:
            costs[projection.name].events += sum(1 for e in events if e.kind in projection.kinds)
    postgres = {k: v for k, v in running.processes().items() if k == "postgres"}
    for rep in range(plan.repeats):
        for projection in projections:
            cost = costs[projection.name]
            states: dict[str, State] = {}
            rows = 0
            # A full collection lands on whichever projection happens to cross the
            # threshold (~0.1 s here): paused, so each pays only for its own work.
            gc.collect()
            gc.disable()
            started = time.process_time()
            try:
                for topic, events, _ in decoded:
                    if projection not in readers[topic]:
                        continue
                    mine = [e for e in events if e.kind in projection.kinds]
                    rows += len(merge(reduce_all(projection, states, mine))) + len(
                        {e.aggregate_id for e in mine}
                    )
                cost.reduce_s.append(time.process_time() - started)
            finally:
                gc.enable()
            cost.rows = rows
        for projection in projections:
            mine_only = [b for b in batches if projection in readers[b[0].topic]]
            seconds, cpu = run_store(running.url, [projection], mine_only, postgres)
            costs[projection.name].store_s.append(sum(cpu.values()) * seconds)
            costs[projection.name].store_wall_s.append(seconds)
        progress(
            f"  costs rep {rep + 1} (CPU ms, reducer/store): "
            + ", ".join(
                f"{c.projection} {c.reduce_s[-1] * 1e3:.0f}/{c.store_s[-1] * 1e3:.0f}"
                for c in costs.values()
            )
        )
    return list(costs.values())


def costs_table(costs: Sequence[Cost], log_events: int) -> list[str]:
    total = sum(median(c.reduce_s) for c in costs)
    store_total = sum(median(c.store_s) for c in costs)
    lines = [
        "| projection | events of its kinds | rows merged | reducer: CPU ms (min-max) "
        "| µs per log event | µs per event of its kinds | share of the reducers "
        "| store alone: CPU ms, bench + PostgreSQL (min-max) | µs per log event "
        "| store alone: wall ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in sorted(costs, key=lambda c: -median(c.reduce_s)):
        reduce_s, store_s = median(c.reduce_s), median(c.store_s)
        lines.append(
            f"| {c.projection} | {c.events:,} | {c.rows:,} | {reduce_s * 1e3:,.0f} "
            f"({spread([s * 1e3 for s in c.reduce_s])}) | {reduce_s / log_events * 1e6:.1f} | "
            f"{reduce_s / max(c.events, 1) * 1e6:.1f} | {reduce_s / total:.0%} | "
            f"{store_s * 1e3:,.0f} ({spread([s * 1e3 for s in c.store_s])}) | "
            f"{store_s / log_events * 1e6:.1f} | {median(c.store_wall_s) * 1e3:,.0f} |"
        )
    lines.append(
        f"| all {len(costs)}, summed | | | {total * 1e3:,.0f} | "
        f"{total / log_events * 1e6:.1f} | | 100% | {store_total * 1e3:,.0f} | "
        f"{store_total / log_events * 1e6:.1f} | |"
    )
    return lines


# ---------------------------------------------------------------------------- 2 rebuild
def read_log_only(url: str, page: int = 2000) -> tuple[int, float]:
    """The rebuild's read side alone: the same pages, CloudEvents and Events built."""
    events = 0
    with psycopg.connect(url, autocommit=True) as conn:
        elapsed = timer()
        after = 0
        while True:
            rows = conn.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state"
                " FROM oms_events WHERE notification_id > %s ORDER BY notification_id"
                " LIMIT %s",
                [after, page],
            ).fetchall()
            if not rows:
                break
            events += len([Event.from_cloud_event(cloud_event_for(row)) for row in rows])
            after = int(rows[-1][0])
        return events, elapsed()


def section_rebuild(
    running: Stack,
    plan: Plan,
    projections: Sequence[Projection],
    log_events: int,
    profile: bool = False,
) -> list[Series]:
    read = Series("2 rebuild", "baseline: read + decode the log only (pages of 2000)")
    vs_read = [(read, "read only")]
    per: dict[str, Series] = {
        p.name: Series(
            "2 rebuild",
            f"rebuild {p.name} (events of its kinds)",
            ratios=vs_read,
            target=REBUILD_TARGET,
        )
        for p in projections
    }
    everything = Series(
        "2 rebuild",
        f"rebuild all {len(projections)}, one after another (log events)",
        ratios=vs_read,
        target=REBUILD_TARGET,
    )
    applied = Series(
        "2 rebuild",
        f"rebuild all {len(projections)} (events applied, summed)",
        ratios=vs_read,
        target=REBUILD_TARGET,
    )
    one_pass = Series(
        "2 rebuild",
        f"rebuild all {len(projections)} in one pass, rebuild_many (log events)",
        ratios=vs_read,
        target=REBUILD_TARGET,
    )
    for rep in range(plan.repeats):
        events, seconds = read_log_only(running.url)
        read.add(events, seconds)
        total_s, total_events = 0.0, 0
        usage: list[dict[str, float]] = []
        for projection in projections:
            # The bench process only: rebuild's own connection ends before the meter stops,
            # and its backend's CPU is not reliably reaped by then.
            meter = CpuMeter({})
            meter.start()
            elapsed = timer()
            done = rebuild(projection, running.url, REBUILD_SUFFIX, switch=False)
            seconds = elapsed()
            cpu = meter.stop()
            usage.append(cpu)
            per[projection.name].add(done.events, seconds, cpu)
            total_s += seconds
            total_events += done.events
        everything.add(log_events, total_s)
        applied.add(total_events, total_s)
        meter = CpuMeter({})
        meter.start()
        elapsed = timer()
        rebuild_many(projections, running.url, REBUILD_SUFFIX, switch=False)
        seconds = elapsed()
        one_pass.add(log_events, seconds, meter.stop())
        progress(
            f"  2 rebuild rep {rep + 1}: all {len(projections)} {log_events / total_s:,.0f} log "
            f"events/s, {total_events / total_s:,.0f} applied/s; read only "
            f"{read.rates()[-1]:,.0f}/s; one pass {one_pass.rates()[-1]:,.0f}/s; "
            + ", ".join(f"{n} {s.rates()[-1]:,.0f}/s" for n, s in per.items())
        )
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        rebuild_many(projections, running.url, REBUILD_SUFFIX, switch=False)
        prof.disable()
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text).strip_dirs()
        stats.sort_stats("tottime").print_stats(22)
        stats.sort_stats("cumulative").print_stats(30)
        progress(text.getvalue())
    with psycopg.connect(running.url, autocommit=True) as conn:
        for projection in projections:
            for table in all_tables(projection):
                conn.execute(f'DROP TABLE IF EXISTS "{table.physical(REBUILD_SUFFIX)}"'.encode())
    return [*per.values(), everything, applied, one_pass, read]


# ---------------------------------------------------------------------------- pipeline
class Pipeline:
    """The processes of a deployment, started as children: relay, workers."""

    def __init__(self, running: Stack, scratch: Path) -> None:
        assert running.bootstrap is not None
        self.running = running
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "OMS_DATABASE_URL": running.url,
            "OMS_KAFKA_BOOTSTRAP": running.bootstrap,
            "OMS_DATA_DIR": str(scratch),
            "OMS_TOPIC_PARTITIONS": str(PARTITIONS),
            "OMS_LOG_LEVEL": "WARNING",
        }
        self.projections: WorkerProcess | None = None
        self.integrations: WorkerProcess | None = None
        self.relay: subprocess.Popen[bytes] | None = None

    def worker(self, spec: str, tag: str) -> WorkerProcess:
        process = WorkerProcess(
            spec, workdir=self.scratch / tag, env=self.env, cwd=ROOT, loglevel="WARNING"
        )
        process.start().wait_ready(120)
        return process

    def start_relay(self, name: str) -> None:
        log = (self.scratch / f"{name}.log").open("ab")
        self.relay = subprocess.Popen(
            [sys.executable, "-m", "adapters.driving.cli", "relay", "--name", name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()

    def roles(self) -> dict[str, list[int]]:
        found = {k: list(v) for k, v in self.running.processes().items()}
        for role, pid in (
            ("projections worker", self.projections and self.projections.pid),
            ("integrations worker", self.integrations and self.integrations.pid),
            ("relay", self.relay and self.relay.pid),
        ):
            if pid:
                found[role] = [pid]
        return found

    def stop(self) -> None:
        for worker in (self.integrations, self.projections):
            if worker is not None and worker.is_running():
                worker.terminate()
        self.integrations = self.projections = None
        if self.relay is not None and self.relay.poll() is None:
            self.relay.terminate()
            try:
                self.relay.wait(30)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait(10)
        self.relay = None


@contextmanager
def pipeline(running: Stack, scratch: Path) -> Iterator[Pipeline]:
    started = Pipeline(running, scratch)
    try:
        yield started
    finally:
        started.stop()


def version_targets(conn: Conn, projections: Sequence[Projection]) -> dict[str, int]:
    """Per projection, the sum of the last versions of the aggregates it reads."""
    targets = {}
    for projection in projections:
        types = [t for t, kind in KIND_BY_TYPE.items() if kind in projection.kinds]
        row = conn.execute(
            "SELECT coalesce(sum(v), 0) FROM (SELECT max(originator_version) AS v"
            " FROM oms_events WHERE topic = ANY(%s) GROUP BY originator_id) s",
            [types],
        ).fetchone()
        targets[projection.name] = int(row[0]) if row else 0
    return targets


def applied_versions(conn: Conn, projections: Sequence[Projection]) -> dict[str, int]:
    found = {}
    for projection in projections:
        try:
            table = state_table(projection.name).name
            row = conn.execute(
                f'SELECT coalesce(sum(version), 0) FROM "{table}"'.encode()
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            row = (0,)
        found[projection.name] = int(row[0]) if row else 0
    return found


def relayed(conn: Conn, name: str) -> int | None:
    row = conn.execute(
        "SELECT notification_id FROM oms_relay_positions WHERE name = %s", [name]
    ).fetchone()
    return int(row[0]) if row else None


def kafka_run(
    running: Stack,
    pipe: Pipeline,
    projections: Sequence[Projection],
    rep: int,
    head: int,
    worker: Series,
    relay: Series,
) -> None:
    assert running.bootstrap is not None
    running.restart_broker()
    provision_topics(running.bootstrap, topic_specs(PARTITIONS))
    reset_read_models(running.url, projections)
    join = timer()
    pipe.projections = pipe.worker("streams.projectors:app_from_env", f"projections-{rep}")
    joined = join()
    name = f"bench-projections-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(running.url, autocommit=True) as conn:
        for statement in RELAY_SCHEMA:
            conn.execute(statement.encode())
        targets = version_targets(conn, projections)
        pipe.start_relay(name)
        deadline = time.monotonic() + 60
        while relayed(conn, name) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the relay did not start: see {pipe.scratch / name}.log")
            time.sleep(0.01)
        meter = CpuMeter(pipe.roles())
        meter.start()
        elapsed = timer()
        relay_s: float | None = None
        deadline = time.monotonic() + 600
        while True:
            if relay_s is None and (relayed(conn, name) or 0) >= head:
                relay_s = elapsed()
            if applied_versions(conn, projections) == targets:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the projections worker did not catch up within 10 min")
            time.sleep(0.05)
        seconds = elapsed()
        cpu = meter.stop()
        lags = [projection_lag(conn, p)["events_behind"] for p in projections]
    if any(lags):
        progress(f"  WARNING: versions matched but projection_lag says {lags}")
    worker.add(head, seconds, cpu)
    relay.add(head, relay_s or seconds)
    progress(
        f"  1b rep {rep + 1}: {head:,} events to lag 0 in {seconds:.1f} s "
        f"({head / seconds:,.0f}/s; relay done after {relay_s or 0:.1f} s; worker "
        f"joined in {joined:.1f} s, not counted); cores: {cores([cpu])}"
    )


def section_kafka(
    running: Stack,
    plan: Plan,
    pipe: Pipeline,
    projections: Sequence[Projection],
    head: int,
    in_process: Series,
) -> list[Series]:
    relay = Series("1b through Kafka", "relay alone: start to whole log published")
    worker = Series(
        "1b through Kafka",
        "relay process -> Tansu -> one projections worker, start to lag 0",
        ratios=[(in_process, "in process (2000)")],
        target=WORKER_TARGET,
    )
    for rep in range(plan.kafka_repeats):
        if rep:
            pipe.stop()
        kafka_run(running, pipe, projections, rep, head, worker, relay)
    return [worker, relay]


# ---------------------------------------------------------------------------- 3 latency
@dataclass
class LatencyRun:
    rate: int
    sent: int
    send_seconds: float
    drained_s: float
    stages: dict[str, list[float]]
    cpu: dict[str, float]
    missing: int = 0

    def rate_at(self, stage: str) -> float:
        """Orders that reached ``stage`` per second, from the first publication to the
        last arrival: what that stage sustained (the sending rate if it kept up)."""
        values = self.stages[stage]
        reached = [
            (at, lat) for at, lat in zip(self.sent_at, values, strict=True) if not math.isinf(lat)
        ]
        if not reached:
            return 0.0
        span = max(at + lat for at, lat in reached) - min(self.sent_at)
        return len(reached) / span if span > 0 else 0.0

    sent_at: list[float] = field(default_factory=list)


def skip_to_end(bootstrap: str, group: str, topics: Sequence[str]) -> None:
    """Commit the group's offsets at the end of ``topics``: a worker that joins then starts
    there (the scenario's refund requests would otherwise all be dispatched again)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        consumer.commit({tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in tps})
    finally:
        consumer.close()


def publish_steady(
    producer: KafkaProducer, rate: int, seconds: float, prefix: str
) -> tuple[list[tuple[str, float]], float]:
    count = int(rate * seconds)
    numbers = [f"{prefix}-{i:06d}" for i in range(count)]
    values = [order_placed(n, quantity=1) for n in numbers]
    sent: list[tuple[str, float]] = []
    start = time.perf_counter() + 0.02
    for i, (number, value) in enumerate(zip(numbers, values, strict=True)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        at = time.time()
        producer.send(ORDERS, key=number.encode(), value=value)
        sent.append((number, at))
    producer.flush(30)
    return sent, time.perf_counter() - start


def order_readers(projections: Sequence[Projection]) -> list[Projection]:
    return [p for p in projections if ORDER in p.kinds]


def wait_drained(
    conn: Conn, projections: Sequence[Projection], ids: Sequence[str], timeout: float
) -> float:
    elapsed = timer()
    tables = [state_table(p.name).name for p in order_readers(projections)]
    while elapsed() < timeout:
        done = [
            conn.execute(
                f'SELECT count(*) FROM "{t}" WHERE aggregate_id = ANY(%s)'.encode(), [list(ids)]
            ).fetchone()
            for t in tables
        ]
        if all(row is not None and int(row[0]) == len(ids) for row in done):
            break
        time.sleep(0.2)
    return elapsed()


def commit_times(conn: Conn, query: str, keys: Sequence[Any]) -> dict[str, float]:
    rows = conn.execute(query.encode(), [list(keys)]).fetchall()
    return {str(key): at.timestamp() for key, at in rows if isinstance(at, datetime)}


class Watcher:
    """A plain kafka-python consumer beside the pipeline: when each inbound message and each
    relayed event reaches a consumer that does nothing else (the Kafka-only baseline), and
    the relay's send time (the relayed record's CreateTime)."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self.seen: dict[tuple[str, str], tuple[float, float]] = {}
        self.stop = threading.Event()
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS
        )
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end(*tps)
        for tp in tps:
            self.consumer.position(tp)  # resolve now, not after the first messages
        self.thread = threading.Thread(target=self.run, name="watcher", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for messages in self.consumer.poll(timeout_ms=50).values():
                now = time.time()
                for message in messages:
                    key = message.key.decode() if message.key else ""
                    self.seen[(message.topic, key)] = (message.timestamp / 1000, now)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.consumer.close()


STAGES = (
    "inbound delivered to a plain consumer (Kafka only)",
    "event stored (integrations worker)",
    "relayed (relay's send)",
    "relayed, delivered to a plain consumer",
    "rm_customers row committed",
    "all read models committed",
)


def latencies(
    conn: Conn,
    projections: Sequence[Projection],
    sent: Sequence[tuple[str, float]],
    watcher: Watcher,
) -> tuple[dict[str, list[float]], int]:
    """Seconds from publication to each stage; an order that never got there counts as
    infinitely late (so percentiles are not flattered by what is still in flight)."""
    ids = {number: str(order_id_for(number)) for number, _ in sent}
    stored = commit_times(
        conn,
        "SELECT originator_id::text, pg_xact_commit_timestamp(xmin) FROM oms_events"
        " WHERE originator_id = ANY(%s::uuid[]) AND originator_version = 1",
        list(ids.values()),
    )
    customers = commit_times(
        conn,
        "SELECT customer_id, pg_xact_commit_timestamp(xmin) FROM rm_customers"
        " WHERE customer_id = ANY(%s)",
        [f"cust-{n}" for n, _ in sent],
    )
    per_projection = [
        commit_times(
            conn,
            f'SELECT aggregate_id, pg_xact_commit_timestamp(xmin) FROM "'
            f'{state_table(p.name).name}" WHERE aggregate_id = ANY(%s)',
            list(ids.values()),
        )
        for p in order_readers(projections)
    ]
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    inf = float("inf")
    missing = 0
    for number, at in sent:
        aggregate = ids[number]
        inbound = watcher.seen.get((ORDERS, number))
        relayed_ = watcher.seen.get((ORDER_EVENTS, aggregate))
        last = [found.get(aggregate) for found in per_projection]
        final = None if None in last else max(x for x in last if x is not None)
        missing += final is None
        for stage, moment in zip(
            STAGES,
            (
                inbound and inbound[1],
                stored.get(aggregate),
                relayed_ and relayed_[0],
                relayed_ and relayed_[1],
                customers.get(f"cust-{number}"),
                final,
            ),
            strict=True,
        ):
            stages[stage].append(inf if moment is None else moment - at)
    return stages, missing


def section_latency(
    running: Stack, plan: Plan, pipe: Pipeline, projections: Sequence[Projection]
) -> list[LatencyRun]:
    assert running.bootstrap is not None
    try:
        skip_to_end(running.bootstrap, "oms-integrations", [RMA_EVENTS])
    except Exception as error:  # the worker then replays them; the warm-up absorbs it
        progress(f"  could not move the integrations group to the end: {error!r}")
    pipe.integrations = pipe.worker("streams.integrations:app_from_env", "integrations")
    producer = KafkaProducer(bootstrap_servers=running.bootstrap, acks="all", linger_ms=0)
    runs: list[LatencyRun] = []
    run_id = uuid.uuid4().hex[:6].upper()
    try:
        with psycopg.connect(running.url, autocommit=True) as conn:
            progress(f"  3 warm-up: 250/s for {plan.warmup_s:.0f} s")
            sent, _ = publish_steady(producer, 250, plan.warmup_s, f"W{run_id}")
            wait_drained(conn, projections, [str(order_id_for(n)) for n, _ in sent], 120)
            for rate in plan.rates:
                progress(f"  3 latency: {rate}/s for {plan.seconds:.0f} s")
                watcher = Watcher(running.bootstrap, [ORDERS, ORDER_EVENTS])
                meter = CpuMeter(pipe.roles())
                meter.start()
                try:
                    sent, send_s = publish_steady(producer, rate, plan.seconds, f"L{run_id}-{rate}")
                    cpu = meter.stop()
                    drained = wait_drained(
                        conn,
                        projections,
                        [str(order_id_for(n)) for n, _ in sent],
                        plan.drain_s,
                    )
                    time.sleep(0.3)  # the watcher's last fetch
                finally:
                    watcher.close()
                stages, missing = latencies(conn, projections, sent, watcher)
                runs.append(
                    LatencyRun(
                        rate,
                        len(sent),
                        send_s,
                        drained,
                        stages,
                        cpu,
                        missing,
                        sent_at=[at for _, at in sent],
                    )
                )
                final = stages[STAGES[-1]]
                progress(
                    f"    sent {len(sent):,} in {send_s:.1f} s; drained {drained:.1f} s "
                    f"after; all read models p50 {ms(pct(final, 50))}, "
                    f"p99 {ms(pct(final, 99))} ms; not committed {missing}; "
                    f"cores: {cores([cpu])}"
                )
    finally:
        producer.close(5)
    return runs


def pct(values: Sequence[float], q: int) -> float:
    """Nearest-rank percentile (infinite values allowed)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return "timeout" if math.isinf(seconds) else f"{seconds * 1000:,.0f}"


# ---------------------------------------------------------------------------- setup
def enable_commit_timestamps(running: Stack) -> bool:
    with psycopg.connect(running.url, autocommit=True) as conn:
        row = conn.execute("SHOW track_commit_timestamp").fetchone()
        if row and row[0] == "on":
            return True
        if running.postgres is None:
            return False
        conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    progress("restarting the embedded PostgreSQL with track_commit_timestamp = on")
    running.postgres.stop()
    running.postgres.start()
    running.url = running.postgres.url
    with psycopg.connect(running.url, autocommit=True) as conn:
        row = conn.execute("SHOW track_commit_timestamp").fetchone()
        return bool(row and row[0] == "on")


def log_mix(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT topic, count(*) FROM oms_events GROUP BY topic ORDER BY 2 DESC"
        ).fetchall()
    kinds: Counter[str] = Counter()
    for type_name, count in rows:
        kinds[KIND_BY_TYPE.get(type_name, "?")] += int(count)
    top = ", ".join(f"{t} {c:,}" for t, c in rows[:12])
    return (
        f"{sum(kinds.values()):,} events ({', '.join(f'{k} {c:,}' for k, c in kinds.items())}"
        f"); {len(rows)} types, most frequent: {top}"
    )


# ---------------------------------------------------------------------------- report
def throughput_table(series: Sequence[Series]) -> list[str]:
    lines = [
        "| section | case | events | events/s (median) | min-max | ratio | target | "
        "cores used (median) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in series:
        ratio = (
            "; ".join(
                f"{s.rate() / base.rate():.2f}x {name}" for base, name in s.ratios if base.events
            )
            or s.note
        )
        target = ""
        if s.target:
            target = f"{s.target:,} ({'met' if s.rate() >= s.target else 'missed'})"
        lines.append(
            f"| {s.section} | {s.label} | {median([float(e) for e in s.events]):,.0f} | "
            f"{s.rate():,.0f} | {spread(s.rates())} | {ratio} | {target} | {cores(s.cpu)} |"
        )
    return lines


def latency_table(runs: Sequence[LatencyRun]) -> list[str]:
    lines = [
        "| rate/s | sent (achieved/s) | from publication to | p50 ms | p95 ms | p99 ms | max ms "
        "| reached/s | target p99 | cores used while sending |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        for index, (stage, values) in enumerate(run.stages.items()):
            target = ""
            if stage == STAGES[-1] and run.rate in LATENCY_TARGETS_MS:
                limit = LATENCY_TARGETS_MS[run.rate]
                target = f"{limit:.0f} ({'met' if pct(values, 99) * 1000 < limit else 'missed'})"
            first = index == 0
            lines.append(
                f"| {run.rate:,} | "
                f"{f'{run.sent:,} ({run.sent / run.send_seconds:,.0f}/s)' if first else ''} | "
                f"{stage} | {ms(pct(values, 50))} | {ms(pct(values, 95))} | "
                f"{ms(pct(values, 99))} | {ms(max(values, default=0.0))} | "
                f"{run.rate_at(stage):,.0f} | {target} | "
                f"{cores([run.cpu]) if first else ''} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.projections")
    parser.add_argument("--quick", action="store_true", help="about 1-2 minutes")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one in-process run (batches of the largest size) and one rebuild_many",
    )
    parser.add_argument("--output", type=Path, help="write the report here")
    parser.add_argument(
        "--sections",
        default="1a,2,1b,3",
        help="which to run, comma-separated (3 needs 1b's pipeline; 'costs': each "
        "projection's reducer and store alone, not in the default)",
    )
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    projections = default_projections()
    # 1a, costs and 2 need no broker: not starting one keeps a loaded machine quieter.
    with stack(kafka=bool(sections & {"1b", "3"})) as running:
        assert running.scratch is not None
        commit_ts = enable_commit_timestamps(running)
        create_service(running.url, pool_size=2).close()
        progress(f"scenario: {plan.orders:,} orders")
        head = fill(running.url, plan.orders)
        mix = log_mix(running.url)
        records = load_records(running.url)
        series: list[Series] = []
        if "1a" in sections:
            progress("1a: in process")
            series += section_in_process(running, plan, records, projections, args.profile)
        if "2" in sections:
            progress("2: rebuild")
            series += section_rebuild(running, plan, projections, head, args.profile)
        costs: list[Cost] = []
        if "costs" in sections:
            progress("costs: each projection alone")
            costs = section_costs(running, plan, records, projections)
        runs: list[LatencyRun] = []
        notes: list[str] = []
        if not sections & {"1b", "3"}:
            pass
        elif running.kafka is None:
            notes.append("- 1b and 3 skipped: they restart the broker, and this one is not ours")
        elif "1b" in sections:
            in_process = next(
                (
                    s
                    for s in series
                    if s.label.startswith("ReadModelStore")
                    and s.label.endswith(f"{max(plan.batch_sizes)}")
                ),
                Series("", ""),
            )
            with pipeline(running, running.scratch / "pipeline") as pipe:
                progress("1b: through Kafka")
                series += section_kafka(running, plan, pipe, projections, head, in_process)
                if "3" not in sections:
                    pass
                elif commit_ts:
                    progress("3: end-to-end latency")
                    runs = section_latency(running, plan, pipe, projections)
                else:
                    notes.append("- 3 skipped: track_commit_timestamp is off on this server")
        lines = [
            "# Projections benchmark (bench/projections.py)",
            "",
            *header(
                mode=plan.name,
                repeats=plan.repeats,
                started=started,
                load_before=load_before,
                running=running,
                packages=["psycopg", "orjson", "kafka-python", "faust-streaming", "aiokafka"],
                folders=["projections", "adapters", "streams"],
                extra=[
                    f"- {crc32c_status()}",
                    f"- scenario: {plan.orders:,} orders -> {mix}",
                    f"- sections run: {', '.join(sorted(sections))}",
                    *(
                        [
                            f"- {PARTITIONS} partitions per topic; 1b repeated "
                            f"{plan.kafka_repeats} times; fetch wait "
                            f"{FETCH_WAIT_MS} ms; a batch goes when the fetch is drained, at "
                            "most 50 ms after its first record (streams.app defaults)"
                        ]
                        if sections & {"1b", "3"}
                        else []
                    ),
                ],
            ),
            "",
            "## Throughput",
            "",
            *throughput_table(series),
            "",
            "events/s counts events of the log once each, though most are applied by several "
            f'projections (1a, 1b, "all {len(projections)} ... (log events)"); a single '
            "projection's rebuild "
            "counts the events of its kinds. Ratios divide medians measured in the same run: "
            "1a against raw PostgreSQL doing as many rows and transactions, 1b against 1a, "
            "rebuilds against reading and decoding the log alone. Cores: CPU seconds per wall "
            "second of each process (bench process = the in-process store or this script).",
            "",
        ]
        if costs:
            lines += [
                f"## Cost per projection (batches of {max(plan.batch_sizes)}, each alone)",
                "",
                *costs_table(costs, len(records)),
                "",
                "CPU time, not wall time: on this shared machine a wall clock mostly "
                "measures the wait for a core. Reducer: `reduce_all` + `merge` of the "
                "projection's events, decoded beforehand (the decode, shared by all, is not "
                "counted), states held in memory, the bench process's CPU with the garbage "
                "collector paused (a full collection otherwise lands on whichever projection "
                "crosses its threshold); these add up to the store's Python less the decode "
                "and the collections. Store alone: `ReadModelStore.apply_many` "
                "with that projection only, on the batches of the topics it reads, decode "
                "included, its own transaction per batch; CPU of the bench process plus "
                "PostgreSQL's, so these do not add up to the store running all of them (each "
                "pays its own round trips and commits). µs per log event divides by every "
                "event of the log, as events/s above does.",
                "",
            ]
        if runs:
            lines += [
                "## End-to-end latency (inbound order.placed published -> row committed)",
                "",
                *latency_table(runs),
                "",
                "Each row is cumulative from the publication (`time.time()` before "
                "kafka-python's `send`, acks=all, linger 0). Commits: "
                "`pg_xact_commit_timestamp(xmin)` of the order's rows (track_commit_timestamp "
                "on), on the same host clock: its order.placed row in oms_events, its "
                "rm_customers row, and the last of its stock, customers and reasons state "
                'rows ("all read models"). Kafka-only baseline: a plain kafka-python '
                "consumer (the workers' fetch wait) in the benchmark process, reading the inbound "
                "topic and oms.order-events.v1 (where the relay's send time is the record's "
                "CreateTime). reached/s: orders that got there, over the time from the first "
                "publication to the last arrival (what that stage sustained). One run per "
                f"rate of {plan.seconds:.0f} s after a "
                f"{plan.warmup_s:.0f} s warm-up; an order not committed {plan.drain_s:.0f} s "
                "after the last send counts as a timeout.",
                "",
            ]
        lines += notes
        text = "\n".join(lines).rstrip() + "\n"
    print(text)
    output = args.output or (None if args.quick else Path("bench/results/projections.md"))
    if output is not None:
        path = write_result(
            "projections", text, ROOT / output if not output.is_absolute() else output
        )
        progress(f"wrote {path}")
    progress(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
