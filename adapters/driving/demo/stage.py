"""The demo's shared state and its plumbing to the outside systems (Kafka, the database)."""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from kafka import KafkaProducer

from adapters.contracts import envelope_bytes
from adapters.driven.kafka.topics import WMS_RECEIPTS
from adapters.driven.readmodels.positions import projection_lag
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driving.demo.cast import HISTORY, People, Progress, Report
from projections import default_projections


def wait_for_projections(database_url: str, timeout: float = 300) -> None:
    """Block until every projection has applied the whole event store."""
    store = ReadModelStore(database_url, default_projections())
    deadline = time.monotonic() + timeout
    try:
        while True:
            behind = sum(
                projection_lag(store.connection, p)["events_behind"] for p in default_projections()
            )
            sys.stderr.write(f"\rread models: {behind} events behind      ")
            if behind == 0:
                sys.stderr.write("\n")
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"projections still {behind} events behind")
            time.sleep(0.5)
    finally:
        store.close()


class Stage:
    """What every step of the day uses: the people, the broker, the clock and the report."""

    def __init__(
        self,
        people: People,
        database_url: str,
        bootstrap: str,
        *,
        orders: int,
        seed: int,
        quiet: bool,
        report: Report,
    ) -> None:
        self.people = people
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.order_count = orders
        self.random = random.Random(seed)
        self.progress = Progress(quiet)
        self.run_id = uuid.uuid4().hex[:5].upper()
        self.start = datetime.now(UTC) - HISTORY
        self.report = report
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")

    # ------------------------------------------------------------ outside systems
    def publish(
        self, topic: str, key: str, event_type: str, data: dict[str, Any], at: datetime, source: str
    ) -> None:
        value = envelope_bytes(
            event_id=str(uuid.uuid4()),
            source=source,
            event_type=event_type,
            time=at.isoformat(),
            subject=key,
            data=data,
        )
        self.producer.send(topic, key=key.encode(), value=value)

    def warehouse_reports(
        self,
        event_type: str,
        receipt: str,
        rma_number: str | None,
        items: list[dict[str, Any]],
        at: datetime | None = None,
    ) -> None:
        """WH-1's WMS publishes ``parcel.received`` or ``items.inspected`` for ``receipt``."""
        self.publish(
            WMS_RECEIPTS,
            receipt,
            event_type,
            {
                "receipt_id": receipt,
                "warehouse_id": "WH-1",
                "rma_number": rma_number,
                "items": items,
            },
            at or datetime.now(UTC),
            "wms/WH-1",
        )

    def wait(self, label: str, done: Callable[[], int], total: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            count = done()
            self.progress.step(label, min(count, total), total)
            if count >= total:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {count}/{total} after {timeout:.0f} s")
            time.sleep(0.25)

    def count(self, query: str, *params: Any) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0

    def key(self, purpose: str) -> str:
        """A fresh Idempotency-Key: the tool would keep it to retry the same POST safely."""
        return f"demo-{self.run_id}-{purpose}-{uuid.uuid4().hex[:12]}"
