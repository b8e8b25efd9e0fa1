"""The demo: a day of a shop's returns, played through the real topics and services.

Outside systems are simulated as they would integrate: the commerce platform publishes
orders, the warehouse receipts and inspections, the stores their counter returns, and the
payment sandbox settles refunds, all on Kafka; customers and customer service act through
the application service. The relay, the integrations worker and the projections worker
run for real. Time is simulated with each message's CloudEvents ``time``.
"""

from __future__ import annotations

import html
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from adapters.contracts import envelope_bytes
from adapters.embedded import provision_topics
from adapters.readmodels import (
    ReadModelStore,
    differences,
    projection_lag,
    rebuild,
    snapshot,
    unbalanced_refunds,
)
from adapters.relay import Relay
from adapters.topics import INBOUND_TOPICS, ORDERS, POS_RETURNS, WMS_RECEIPTS, dlq, topic_specs
from domain.application import Ctx, ReturnsService
from domain.errors import DomainError
from domain.events import Cause
from domain.returns import RequestedLine
from domain.values import ReasonCode, RefundMethod, ReturnChannel
from projections import default_projections

CATALOGUE = [
    ("SHOE-RUN-42", "Running shoe", "39.90", "Stride Ltd", "shoes", None),
    ("JACKET-RAIN-M", "Rain jacket", "89.00", "Northwind", "apparel", None),
    ("HEADPHONES-X1", "Headphones X1", "129.00", "SoundCo", "electronics", 24),
    ("SOCKS-3P", "Socks, 3 pairs", "9.90", "Stride Ltd", "apparel", None),
    ("GAME-KEY-01", "Game licence", "59.00", "PixelWorks", "software", None),
    ("KETTLE-2L", "Kettle 2 l", "34.50", "HomeGoods", "kitchen", 24),
]
# Customers say why; suppliers differ in what goes wrong with their goods.
REASONS_BY_SUPPLIER = {
    "Stride Ltd": [ReasonCode.SIZE_TOO_SMALL, ReasonCode.SIZE_TOO_LARGE, ReasonCode.CHANGED_MIND],
    "Northwind": [
        ReasonCode.COLOR_NOT_AS_PICTURED,
        ReasonCode.SIZE_TOO_LARGE,
        ReasonCode.NOT_AS_DESCRIBED,
    ],
    "SoundCo": [ReasonCode.DEFECTIVE, ReasonCode.DEFECTIVE, ReasonCode.BETTER_PRICE],
    "PixelWorks": [ReasonCode.CHANGED_MIND, ReasonCode.WRONG_ITEM],
    "HomeGoods": [ReasonCode.DAMAGED_IN_TRANSIT, ReasonCode.DEFECTIVE, ReasonCode.CHANGED_MIND],
}


@dataclass
class Sale:
    order_id: str
    customer_id: str
    channel: str
    placed_at: datetime
    lines: list[dict[str, Any]]


@dataclass
class Report:
    orders: int = 0
    rmas: dict[str, str] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    blind: int = 0
    store_returns: int = 0
    malformed: int = 0
    seconds: float = 0.0


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def step(self, label: str, done: int, total: int) -> None:
        if self.tty:
            filled = 30 * done // max(total, 1)
            sys.stderr.write(f"\r{label:<26} [{'#' * filled:<30}] {done}/{total}")
            if done >= total:
                sys.stderr.write("\n")
        elif done >= total or done % max(1, total // 5) == 0:
            sys.stderr.write(f"{label}: {done}/{total}\n")
        sys.stderr.flush()

    def say(self, line: str) -> None:
        if not self.quiet:
            print(("\r\x1b[K" if self.tty else "") + line, flush=True)


class Demo:
    def __init__(
        self,
        service: ReturnsService,
        database_url: str,
        bootstrap: str,
        *,
        orders: int,
        seed: int,
        quiet: bool,
    ) -> None:
        self.service = service
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.order_count = orders
        self.random = random.Random(seed)
        self.progress = Progress(quiet)
        self.run_id = uuid.uuid4().hex[:5].upper()
        self.start = datetime.now(UTC) - timedelta(days=40)
        self.report = Report()
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

    def ctx(self, at: datetime, actor: str, source: str) -> Ctx:
        return Ctx(Cause(actor=actor, source=source, correlation_id=str(uuid.uuid4())), at=at)

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

    # ------------------------------------------------------------ the day
    def run(self) -> Report:
        began = time.perf_counter()
        sales = self.commerce_platform_sells()
        rmas = self.customers_ask_to_return(sales)
        self.warehouse_receives_and_inspects(rmas)
        self.parcels_arrive_without_rma(sales)
        self.stores_take_back_web_orders(sales)
        self.someone_publishes_garbage()
        self.payments_settle_and_customer_service_follows_up(rmas)
        self.report.seconds = time.perf_counter() - began
        self.producer.close()
        return self.report

    def commerce_platform_sells(self) -> list[Sale]:
        sales = []
        for index in range(self.order_count):
            channel = self.random.choice(["web", "web", "click_and_collect", "store"])
            at = self.start + timedelta(minutes=7 * index)
            order_id = f"{channel[:3].upper()}-{self.run_id}-{index:04d}"
            lines: list[dict[str, Any]] = []
            for line_no, (sku, name, price, supplier, category, warranty) in enumerate(
                self.random.sample(CATALOGUE, k=self.random.randint(1, 3)), 1
            ):
                quantity = self.random.randint(1, 2)
                serials = (
                    [f"SN{self.run_id}{index:04d}{line_no}{q}" for q in range(quantity)]
                    if category == "electronics"
                    else []
                )
                lines.append(
                    {
                        "line_no": line_no,
                        "sku": sku,
                        "name": name,
                        "quantity": quantity,
                        "unit_price": eur(price),
                        "serials": serials,
                        "supplier": supplier,
                        "category": category,
                        "warranty_months": warranty,
                    }
                )
            store = channel == "store"
            shipping = "0.00" if store else "4.90"
            total = sum_amounts(
                [ln["unit_price"]["amount"] for ln in lines],
                [ln["quantity"] for ln in lines],
                shipping,
            )
            customer = f"C{self.random.randint(1, max(8, self.order_count // 3)):04d}"
            self.publish(
                ORDERS,
                order_id,
                "order.placed",
                {
                    "order_id": order_id,
                    "customer_id": customer,
                    "channel": channel,
                    "customer_email": f"{customer.lower()}@example.com",
                    "store_id": "STORE-7" if store else None,
                    "placed_at": at.isoformat(),
                    "lines": lines,
                    "shipping": eur(shipping),
                    "payments": self.payments(total),
                },
                at,
                "commerce/web",
            )
            if not store:
                self.publish(
                    ORDERS,
                    order_id,
                    "order.fulfilled",
                    {
                        "order_id": order_id,
                        "location_id": "WH-1",
                        "lines": [
                            {
                                "line_no": ln["line_no"],
                                "quantity": ln["quantity"],
                                "serials": ln["serials"],
                            }
                            for ln in lines
                        ],
                    },
                    at + timedelta(hours=5),
                    "wms/WH-1",
                )
                self.publish(
                    ORDERS,
                    order_id,
                    "order.delivered",
                    {
                        "order_id": order_id,
                        "delivered_at": (at + timedelta(days=2)).isoformat(),
                    },
                    at + timedelta(days=2),
                    "carrier/tracking",
                )
            sales.append(Sale(order_id, customer, channel, at, lines))
        self.producer.flush()
        self.report.orders = len(sales)
        self.wait(
            "orders recorded",
            lambda: self.count(
                "SELECT count(*) FROM oms_orders WHERE order_number LIKE %s", f"%-{self.run_id}-%"
            ),
            len(sales),
        )
        delivered = sum(1 for s in sales if s.channel != "store")
        self.wait(
            "orders delivered",
            lambda: self.count(
                "SELECT count(*) FROM oms_events e"
                " JOIN oms_orders o ON o.order_id = e.originator_id"
                " WHERE e.topic = 'order.delivered' AND o.order_number LIKE %s",
                f"%-{self.run_id}-%",
            ),
            delivered,
        )
        return sales

    def payments(self, total: str) -> list[dict[str, Any]]:
        if self.random.random() < 0.25 and Decimal(total) > 25:
            rest = subtract(total, "20.00")
            return [
                {"payment_id": "gift", "method": "gift_card", "amount": eur("20.00")},
                {"payment_id": "card", "method": "card", "amount": eur(rest)},
            ]
        method = self.random.choice(["card", "card", "paypal", "bnpl"])
        return [{"payment_id": "p1", "method": method, "amount": eur(total)}]

    def customers_ask_to_return(self, sales: list[Sale]) -> list[tuple[Sale, dict[str, Any], Any]]:
        chosen = [s for s in sales if self.random.random() < 0.4]
        rmas = []
        for done, sale in enumerate(chosen, 1):
            line = self.random.choice(sale.lines)
            reason = self.random.choice(REASONS_BY_SUPPLIER[line["supplier"]])
            late = self.random.random() < 0.12
            base = sale.placed_at + (timedelta(0) if sale.channel == "store" else timedelta(days=2))
            at = base + timedelta(days=41 if late else self.random.randint(1, 20))
            channel = self.random.choice(
                [ReturnChannel.PORTAL, ReturnChannel.PORTAL, ReturnChannel.CUSTOMER_SERVICE]
            )
            method = self.random.choice(
                [RefundMethod.ORIGINAL_PAYMENT] * 6
                + [RefundMethod.STORE_CREDIT, RefundMethod.EXCHANGE]
            )
            serial = line["serials"][0] if line["serials"] else None
            actor = sale.customer_id if channel is ReturnChannel.PORTAL else "cs-agent-3"
            try:
                outcome = self.service.request_return(
                    self.ctx(at, actor, channel.value),
                    order_number=sale.order_id,
                    channel=channel,
                    refund_method=method,
                    comment="demo",
                    lines=[
                        RequestedLine(
                            line_no=line["line_no"], quantity=1, reason=reason, serial=serial
                        )
                    ],
                )
            except DomainError as refused:
                self.report.refused[refused.code] = self.report.refused.get(refused.code, 0) + 1
                continue
            if outcome.status == "pending_review":
                outcome = self.service.approve_return(
                    self.ctx(at + timedelta(hours=3), "cs-lead", "customer_service"),
                    return_id=outcome.aggregate_id,
                )
            self.report.rmas[str(outcome.aggregate_id)] = outcome.status
            if outcome.status == "rejected":
                code = outcome.code or "rejected"
                self.report.refused[code] = self.report.refused.get(code, 0) + 1
            self.progress.say(
                f"{sale.order_id}: {line['sku']} ({reason.value}) -> "
                f"{outcome.status} {outcome.rma_number or outcome.code or ''}"
            )
            if outcome.status == "authorized":
                rmas.append((sale, line, outcome))
            self.progress.step("customer return requests", done, len(chosen))
        return rmas

    def warehouse_receives_and_inspects(self, rmas: list[tuple[Sale, dict[str, Any], Any]]) -> None:
        shipped = [r for r in rmas if self.random.random() < 0.92]  # the rest never ship
        for sale, line, outcome in shipped:
            receipt = f"REC-{self.run_id}-{outcome.aggregate_id.hex[:8]}"
            at = sale.placed_at + timedelta(days=self.random.randint(8, 25))
            serial = line["serials"][0] if line["serials"] else None
            self.publish(
                WMS_RECEIPTS,
                receipt,
                "parcel.received",
                {
                    "receipt_id": receipt,
                    "warehouse_id": "WH-1",
                    "rma_number": outcome.rma_number,
                    "tracking_number": f"TRK{self.random.randint(10**8, 10**9)}",
                    "items": [{"sku": line["sku"], "quantity": 1, "serial": serial}],
                },
                at,
                "wms/WH-1",
            )
            condition, disposition = self.random.choice(
                [
                    ("new", "restock"),
                    ("new", "restock"),
                    ("resellable", "restock"),
                    ("damaged", "scrap"),
                    ("defective", "repair"),
                    ("defective", "return_to_vendor"),
                    ("missing_parts", "quarantine"),
                ]
            )
            self.publish(
                WMS_RECEIPTS,
                receipt,
                "items.inspected",
                {
                    "receipt_id": receipt,
                    "rma_number": outcome.rma_number,
                    "warehouse_id": "WH-1",
                    "items": [
                        {
                            "sku": line["sku"],
                            "quantity": 1,
                            "serial": serial,
                            "condition": condition,
                            "disposition": disposition,
                        }
                    ],
                },
                at + timedelta(hours=20),
                "wms/WH-1",
            )
        self.producer.flush()
        ids = [o.aggregate_id for _, _, o in shipped]
        self.wait(
            "parcels inspected",
            lambda: self.count(
                "SELECT count(DISTINCT originator_id) FROM oms_events"
                " WHERE topic = 'rma.items_inspected' AND originator_id = ANY(%s)",
                ids,
            ),
            len(ids),
        )

    def parcels_arrive_without_rma(self, sales: list[Sale]) -> None:
        web = [s for s in sales if s.channel != "store"]
        for sale in self.random.sample(web, k=max(1, len(web) // 25)):
            line = sale.lines[0]
            receipt = f"BLIND-{self.run_id}-{sale.order_id}"
            at = sale.placed_at + timedelta(days=12)
            self.publish(
                WMS_RECEIPTS,
                receipt,
                "parcel.received",
                {
                    "receipt_id": receipt,
                    "warehouse_id": "WH-1",
                    "rma_number": None,
                    "order_id": sale.order_id,
                    "items": [{"sku": line["sku"], "quantity": 1}],
                },
                at,
                "wms/WH-1",
            )
            self.report.blind += 1
        self.producer.flush()
        self.wait(
            "blind returns detected",
            lambda: self.count(
                "SELECT count(*) FROM oms_events WHERE topic = 'rma.blind_return_detected'"
                " AND convert_from(state, 'UTF8') LIKE %s",
                f"%BLIND-{self.run_id}-%",
            ),
            self.report.blind,
        )
        # Customer service finds each one's order and matches it.
        for blind in self.service.open_blind_returns(limit=1000):
            hint = blind.state.blind_order_hint
            if not hint or f"-{self.run_id}-" not in hint:
                continue
            order = self.service.get_order(hint)
            sku = blind.state.received_items[0].sku
            line_no = next(n for n, ln in order.state.lines.items() if ln.sku == sku)
            at = (order.reference_date() or self.start) + timedelta(days=11)
            try:
                matched = self.service.match_blind_return(
                    self.ctx(at, "cs-agent-2", "customer_service"),
                    return_id=blind.id,
                    order_number=hint,
                    matched_by="order_id",
                    lines=[
                        RequestedLine(line_no=line_no, quantity=1, reason=ReasonCode.CHANGED_MIND)
                    ],
                )
            except DomainError as refused:
                self.progress.say(f"blind parcel for {hint} stays open: {refused.message}")
                continue
            assert blind.state.blind_receipt_id and matched.rma_number
            self.publish(
                WMS_RECEIPTS,
                blind.state.blind_receipt_id,
                "items.inspected",
                {
                    "receipt_id": blind.state.blind_receipt_id,
                    "rma_number": matched.rma_number,
                    "warehouse_id": "WH-1",
                    "items": [
                        {"sku": sku, "quantity": 1, "condition": "new", "disposition": "restock"}
                    ],
                },
                at,
                "wms/WH-1",
            )
            self.progress.say(f"blind parcel matched to {hint} as {matched.rma_number}")
        self.producer.flush()

    def stores_take_back_web_orders(self, sales: list[Sale]) -> None:
        web = [s for s in sales if s.channel != "store"]
        for index, sale in enumerate(self.random.sample(web, k=max(1, len(web) // 12))):
            line = sale.lines[-1]
            serial = line["serials"][-1] if line["serials"] else None
            at = sale.placed_at + timedelta(days=9)
            key = f"SR-{self.run_id}-{index}"
            self.publish(
                POS_RETURNS,
                "STORE-7",
                "return.recorded",
                {
                    "store_return_id": key,
                    "store_id": "STORE-7",
                    "staff_id": "staff-12",
                    "order_id": sale.order_id,
                    "refund_method": self.random.choice(["original_payment", "store_credit"]),
                    "items": [
                        {
                            "line": line["line_no"],
                            "quantity": 1,
                            "serial": serial,
                            "reason_code": "size_too_large",
                            "condition": "new",
                        }
                    ],
                },
                at,
                "pos/STORE-7",
            )
            self.report.store_returns += 1
        self.producer.flush()

    def someone_publishes_garbage(self) -> None:
        for index in range(20):
            self.producer.send(ORDERS, value=b"{not json " + str(index).encode())
        self.producer.flush()
        self.report.malformed = 20

    def payments_settle_and_customer_service_follows_up(
        self, rmas: list[tuple[Sale, dict[str, Any], Any]]
    ) -> None:
        ids = [o.aggregate_id for _, _, o in rmas]

        def settled() -> int:
            return self.count(
                "SELECT count(*) FROM oms_returns WHERE return_id = ANY(%s) AND status IN"
                " ('closed', 'refund_failed', 'partially_refunded', 'authorized', 'expired')",
                ids,
            )

        self.wait("refunds settled", settled, len(ids))
        for return_id in ids:
            rma = self.service.get_return(return_id)
            if rma.state.status.value == "refund_failed":
                self.service.retry_refund(
                    self.ctx(datetime.now(UTC), "cs-agent-1", "customer_service"),
                    return_id=return_id,
                    as_store_credit=True,
                )
                self.progress.say(
                    f"{rma.state.rma_number}: refund declined by the provider, "
                    "paid as store credit instead"
                )


# ---------------------------------------------------------------- money text helpers
def eur(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


def sum_amounts(prices: list[str], quantities: list[int], shipping: str) -> str:
    total = Decimal(shipping) + sum(
        (Decimal(p) * q for p, q in zip(prices, quantities, strict=True)), Decimal(0)
    )
    return f"{total:.2f}"


def subtract(total: str, part: str) -> str:
    return f"{Decimal(total) - Decimal(part):.2f}"


# ---------------------------------------------------------------- what it shows
def wait_for_projections(database_url: str, timeout: float = 300) -> None:
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


def dead_letters(bootstrap: str) -> dict[str, int]:
    """Dead-lettered inbound messages by error code (read from the DLQ topics' headers)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1500
    )
    codes: dict[str, int] = {}
    try:
        for topic in INBOUND_TOPICS:
            partitions = [
                TopicPartition(dlq(topic), p)
                for p in consumer.partitions_for_topic(dlq(topic)) or set()
            ]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            for message in consumer:
                code = dict(message.headers).get("x-dlq-error-code", b"?").decode()
                codes[code] = codes.get(code, 0) + 1
        return codes
    finally:
        consumer.close()


def summary(database_url: str, bootstrap: str, report: Report, out_dir: Path) -> list[str]:
    """Print what the read models now say; write the reasons-by-supplier chart."""
    lines = ["", "== Summary"]
    lines.append(
        f"orders placed: {report.orders}; RMAs requested: {len(report.rmas)}; "
        f"blind parcels: {report.blind}; store returns: {report.store_returns}"
    )
    lines.append(
        "refused by policy: "
        + (", ".join(f"{code} {n}" for code, n in sorted(report.refused.items())) or "none")
    )
    with psycopg.connect(database_url) as conn:
        stock = conn.execute(
            "SELECT sku, location_id, bucket, sum(delta) FROM rm_stock_movements"
            " WHERE kind IN ('inspection', 'repaired', 'beyond_repair')"
            " GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 4 DESC, 1 LIMIT 8"
        ).fetchall()
        lines.append("stock moved by returns (sku, location, bucket, units):")
        lines += [
            f"  {sku:<15} {loc:<8} {bucket:<19} {int(units):+d}"
            for sku, loc, bucket, units in stock
        ]
        debit, credit = conn.execute(
            "SELECT coalesce(sum(debit), 0), coalesce(sum(credit), 0) FROM rm_ledger_lines"
        ).fetchone() or (0, 0)
        unbalanced = unbalanced_refunds(conn)
        lines.append(
            f"refund ledger: debits {debit} = credits {credit}; unbalanced refunds: "
            f"{len(unbalanced)}"
        )
        refunds = conn.execute(
            "SELECT status, count(*), coalesce(sum(requested), 0) FROM rm_refunds GROUP BY 1"
            " ORDER BY 1"
        ).fetchall()
        lines += [f"  refunds {status:<10} {n:>4}  {amount} EUR" for status, n, amount in refunds]
        reasons = conn.execute(
            "SELECT supplier, reason, sum(returns) FROM rm_return_reasons GROUP BY 1, 2"
            " ORDER BY 3 DESC, 1, 2 LIMIT 8"
        ).fetchall()
        lines.append("top return reasons by supplier:")
        lines += [f"  {supplier:<11} {reason:<22} {n}" for supplier, reason, n in reasons]
        returners = conn.execute(
            "SELECT customer_id, returns, return_rate FROM rm_customers WHERE serial_returner"
            " ORDER BY returns DESC LIMIT 5"
        ).fetchall()
        lines.append(
            "serial returners: "
            + (", ".join(f"{c} ({r} returns, rate {rate})" for c, r, rate in returners) or "none")
        )
        chart_rows = conn.execute(
            "SELECT supplier, reason, sum(returns) FROM rm_return_reasons GROUP BY 1, 2"
        ).fetchall()
    codes = dead_letters(bootstrap)
    lines.append(
        f"dead-lettered inbound messages: {sum(codes.values())} ("
        + ", ".join(f"{code} {n}" for code, n in sorted(codes.items()))
        + f"; the demo published {report.malformed} malformed ones)"
    )
    chart = out_dir / "returns-by-reason-and-supplier.html"
    chart.write_text(reasons_chart(chart_rows))
    lines.append(f"chart: {chart}")
    lines.append(f"played in {report.seconds:.1f} s")
    return lines


def reasons_chart(rows: list[tuple[str, str, int]]) -> str:
    """A self-contained HTML bar chart (inline SVG): no plotting library to install."""
    suppliers = sorted({r[0] for r in rows})
    reasons = sorted({r[1] for r in rows})
    counts = {(s, r): int(n) for s, r, n in rows}
    top = max(counts.values(), default=1)
    palette = [
        "#4e79a7",
        "#f28e2b",
        "#e15759",
        "#76b7b2",
        "#59a14f",
        "#edc948",
        "#b07aa1",
        "#ff9da7",
        "#9c755f",
        "#bab0ac",
        "#86bcb6",
    ]
    bar_h, gap = 14, 26
    height = len(suppliers) * (len(reasons) * bar_h + gap) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    ]
    y = 20
    for supplier in suppliers:
        parts.append(f'<text x="0" y="{y}" font-weight="bold">{html.escape(supplier)}</text>')
        y += 6
        for index, reason in enumerate(reasons):
            n = counts.get((supplier, reason), 0)
            if not n:
                continue
            width = 420 * n // top
            color = palette[index % len(palette)]
            parts.append(
                f'<rect x="170" y="{y}" width="{width}" height="{bar_h - 3}" '
                f'fill="{color}"/><text x="0" y="{y + 10}">{html.escape(reason)}</text>'
                f'<text x="{175 + width}" y="{y + 10}">{n}</text>'
            )
            y += bar_h
        y += gap
    parts.append("</svg>")
    return (
        "<!doctype html><meta charset='utf-8'><title>Returns by reason and supplier</title>"
        "<h1>Returns by reason and supplier</h1>" + "".join(parts)
    )


def rebuild_check(database_url: str) -> list[str]:
    """Replay the event store into fresh tables and compare with the live read models."""
    problems: list[str] = []
    store = ReadModelStore(database_url, default_projections())
    try:
        for projection in default_projections():
            rebuild(projection, database_url, switch=False)
            live = snapshot(store.connection, projection)
            rebuilt = snapshot(store.connection, projection, "_rebuild")
            problems += [f"{projection.name}: {d}" for d in differences(live, rebuilt)]
    finally:
        store.close()
    return problems


def play(
    service: ReturnsService,
    database_url: str,
    bootstrap: str,
    *,
    orders: int,
    seed: int,
    quiet: bool,
    out_dir: Path,
) -> int:
    report = Demo(service, database_url, bootstrap, orders=orders, seed=seed, quiet=quiet).run()
    wait_for_projections(database_url)
    for line in summary(database_url, bootstrap, report, out_dir):
        print(line)
    problems = rebuild_check(database_url)
    if problems:
        print("REBUILD DIFFERS from the live read models:")
        for problem in problems[:20]:
            print("  " + problem)
        return 1
    print("rebuild check: a replay of the event store equals the live read models (5 projections)")
    return 0


def start_relay(
    database_url: str, bootstrap: str, partitions: int
) -> tuple[Relay, threading.Event, threading.Thread]:
    provision_topics(bootstrap, topic_specs(partitions))
    relay = Relay(database_url, bootstrap, topic_specs=topic_specs(partitions), name="relay")
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True, name="relay")
    thread.start()
    return relay, stop, thread


__all__ = ["Demo", "play", "start_relay"]
