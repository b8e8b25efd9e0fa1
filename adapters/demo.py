"""The demo: a day of a shop's returns, played through the real topics and the HTTP API.

Outside machines are simulated as they integrate: the commerce platform publishes orders,
the warehouse receipts and inspections, the stores their counter returns, and the payment
sandbox settles refunds, all on Kafka. People act through the API, served in process on a
free local port, each tool with its own key: customers request RMAs on the portal (order
number and e-mail), customer service requests some for callers, reviews the expensive
ones, offers keep-the-item, matches blind parcels and pays failed refunds as store credit.
The relay, the integrations worker and the projections worker run for real.

The orders are the past five weeks' history, dated with each message's CloudEvents
``time``; the returns happen today, on the real clock, because the API stamps every command
with its own clock as it would for the real portal. So order age decides the policy: orders
delivered more than 30 days ago are refused as outside the window.
"""

from __future__ import annotations

import html
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from kafka import KafkaProducer

from adapters.api import ApiSettings, create_api
from adapters.api.serving import served
from adapters.contracts import envelope_bytes
from adapters.deadletters import count_by_code
from adapters.demo_api import PRINCIPALS, ApiError, Caller, demo_keys
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
from adapters.topics import ORDERS, POS_RETURNS, WMS_RECEIPTS, topic_specs
from domain.application import ReturnsService
from domain.values import ReasonCode, RefundMethod
from projections import default_projections

CATALOGUE = [
    ("SHOE-RUN-42", "Running shoe", "39.90", "Stride Ltd", "shoes", None),
    ("JACKET-RAIN-M", "Rain jacket", "89.00", "Northwind", "apparel", None),
    ("HEADPHONES-X1", "Headphones X1", "129.00", "SoundCo", "electronics", 24),
    ("SOCKS-3P", "Socks, 3 pairs", "9.90", "Stride Ltd", "apparel", None),
    ("GAME-KEY-01", "Game licence", "59.00", "PixelWorks", "software", None),
    ("KETTLE-2L", "Kettle 2 l", "34.50", "HomeGoods", "kitchen", 24),
    # Above the policy's review threshold: its returns wait for customer service.
    ("LAPTOP-PRO-14", "Laptop Pro 14", "1299.00", "Lumen", "electronics", 24),
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
    "Lumen": [ReasonCode.DEFECTIVE, ReasonCode.NOT_AS_DESCRIBED, ReasonCode.CHANGED_MIND],
}
# What customer service will not take back after a review: a used laptop returned on a whim.
REFUSED_IN_REVIEW = {ReasonCode.CHANGED_MIND, ReasonCode.BETTER_PRICE}
HISTORY = timedelta(days=36)  # the oldest order; the newest is three days old


@dataclass
class Sale:
    order_id: str
    customer_id: str
    channel: str
    placed_at: datetime
    lines: list[dict[str, Any]]
    business: bool = False

    @property
    def email(self) -> str:
        return f"{self.customer_id.lower()}@example.com"


@dataclass
class Rma:
    """An RMA the demo follows: what was asked for, and its ids as the API gave them."""

    sale: Sale
    line: dict[str, Any]
    return_id: UUID
    rma_number: str
    quantity: int = 1

    def units(self) -> list[dict[str, Any]]:
        """The parcel's items, one per unit so each carries its serial."""
        serials = self.line["serials"][: self.quantity]
        return [
            {"sku": self.line["sku"], "quantity": 1, "serial": s}
            for s in serials + [None] * (self.quantity - len(serials))
        ]


@dataclass
class Report:
    orders: int = 0
    rmas: dict[str, str] = field(default_factory=dict)
    portal_rmas: int = 0
    cs_rmas: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    reviewed: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    blind: int = 0
    blind_matched: int = 0
    store_returns: int = 0
    malformed: int = 0
    refunds_as_store_credit: int = 0
    replays: int = 0
    api_url: str = ""
    first_position: int = 0  # the event store's head before the day: what came later is ours
    calls: Counter[str] = field(default_factory=Counter)
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


@dataclass
class People:
    """The API's clients: the customer portal, customer service and analytics."""

    portal: Caller
    cs: Caller
    analytics: Caller

    def close(self) -> None:
        for caller in (self.portal, self.cs, self.analytics):
            caller.close()


class Demo:
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

    # ------------------------------------------------------------ the day
    def run(self) -> Report:
        began = time.perf_counter()
        sales = self.commerce_platform_sells()
        rmas = self.customers_ask_to_return(sales)
        rmas, kept = self.customer_service_offers_keep_item(rmas)
        self.warehouse_receives_and_inspects(rmas)
        matched = self.parcels_arrive_without_rma(sales)
        self.stores_take_back_web_orders(sales)
        self.someone_publishes_garbage()
        self.payments_settle_and_customer_service_follows_up(rmas + kept + matched)
        self.report.seconds = time.perf_counter() - began
        self.producer.close()
        return self.report

    def commerce_platform_sells(self) -> list[Sale]:
        sales = []
        # Spread over the history, oldest first: those delivered over 30 days ago (about
        # one in eight) fall outside the return window.
        spacing = (HISTORY - timedelta(days=3)) / max(self.order_count, 1)
        for index in range(self.order_count):
            # One order is a company's five laptops: see a_business_returns_a_faulty_batch.
            business = index == self.order_count // 2
            channel = (
                "web"
                if business
                else self.random.choice(["web", "web", "click_and_collect", "store"])
            )
            at = self.start + spacing * index
            order_id = f"{channel[:3].upper()}-{self.run_id}-{index:04d}"
            lines: list[dict[str, Any]] = []
            picked = (
                [CATALOGUE[-1]]
                if business
                else self.random.sample(CATALOGUE, k=self.random.randint(1, 3))
            )
            for line_no, (sku, name, price, supplier, category, warranty) in enumerate(picked, 1):
                quantity = 5 if business else self.random.randint(1, 2)
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
            customer = (
                "B0001"
                if business
                else f"C{self.random.randint(1, max(8, self.order_count // 3)):04d}"
            )
            sale = Sale(order_id, customer, channel, at, lines, business)
            self.publish(
                ORDERS,
                order_id,
                "order.placed",
                {
                    "order_id": order_id,
                    "customer_id": customer,
                    "channel": channel,
                    "customer_email": sale.email,
                    "store_id": "STORE-7" if store else None,
                    "placed_at": at.isoformat(),
                    "lines": lines,
                    "shipping": eur(shipping),
                    "payments": (
                        [{"payment_id": "p1", "method": "card", "amount": eur(total)}]
                        if business
                        else self.payments(total)
                    ),
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
            sales.append(sale)
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

    # ------------------------------------------------------------ people, through the API
    def customers_ask_to_return(self, sales: list[Sale]) -> list[Rma]:
        """Two in three ask on the portal, the others call customer service, who asks for
        them; a policy refusal is a 422 problem whose code the summary counts."""
        chosen = [s for s in sales if not s.business and self.random.random() < 0.4]
        rmas = [self.a_business_returns_a_faulty_batch(s) for s in sales if s.business]
        for done, sale in enumerate(chosen, 1):
            line = self.random.choice(sale.lines)
            reason = self.random.choice(REASONS_BY_SUPPLIER[line["supplier"]])
            on_portal = self.random.random() < 2 / 3
            method = self.random.choice(
                [RefundMethod.ORIGINAL_PAYMENT] * 6
                + [RefundMethod.STORE_CREDIT, RefundMethod.EXCHANGE]
            )
            caller = self.people.portal if on_portal else self.people.cs
            email = sale.email if on_portal else None
            # The tool shows the order with what is still returnable before the form.
            order = caller.get(f"/v1/orders/{sale.order_id}", email=email).body
            shown = next(ln for ln in order["lines"] if ln["line_no"] == line["line_no"])
            if shown["returnable_quantity"] < 1:
                self.progress.say(f"{sale.order_id}: {line['sku']} has nothing left to return")
                self.progress.step("customer return requests", done, len(chosen))
                continue
            body = {
                "order_number": sale.order_id,
                "refund_method": method.value,
                "comment": "demo",
                "lines": [
                    {
                        "line_no": shown["line_no"],
                        "quantity": 1,
                        "reason": reason.value,
                        "serial": line["serials"][0] if line["serials"] else None,
                    }
                ],
            }
            key = self.key("rma")
            answer = caller.post(
                "/v1/returns", body, idempotency_key=key, email=email, refusals=(422,)
            )
            if answer.status == 422:
                code = answer.code or "refused"
                self.report.refused[code] = self.report.refused.get(code, 0) + 1
                if answer.body.get("return_id"):  # a policy's refusal is stored on an RMA
                    self.report.rmas[str(answer.body["return_id"])] = "rejected"
                self.progress.say(f"{sale.order_id}: {line['sku']} ({reason.value}) -> 422 {code}")
                self.progress.step("customer return requests", done, len(chosen))
                continue
            if on_portal:
                self.report.portal_rmas += 1
            else:
                self.report.cs_rmas += 1
            if not self.report.replays:
                self.show_a_retried_post(caller, body, key, email, answer.body)
            result = answer.body
            if result["status"] == "pending_review":
                result = self.customer_service_reviews(result, reason)
            self.report.rmas[result["return_id"]] = result["status"]
            self.progress.say(
                f"{sale.order_id}: {line['sku']} ({reason.value}, {method.value}) -> "
                f"{result['status']} {result.get('rma_number') or result.get('code') or ''}"
            )
            if result["status"] == "authorized":
                rmas.append(Rma(sale, line, UUID(result["return_id"]), result["rma_number"]))
            self.progress.step("customer return requests", done, len(chosen))
        return rmas

    def a_business_returns_a_faulty_batch(self, sale: Sale) -> Rma:
        """A company calls customer service about four faulty laptops of five. Worth more
        than the review threshold, the RMA waits for an agent's approval; its card refund
        is above the payment provider's limit, so it will be declined and followed up."""
        line = sale.lines[0]
        body = {
            "order_number": sale.order_id,
            "comment": "four of five laptops show dead pixels",
            "lines": [{"line_no": line["line_no"], "quantity": 4, "reason": "defective"}],
        }
        answer = self.people.cs.post("/v1/returns", body, idempotency_key=self.key("rma"))
        self.report.cs_rmas += 1
        result = answer.body
        if result["status"] == "pending_review":
            result = self.customer_service_reviews(result, ReasonCode.DEFECTIVE)
        self.report.rmas[result["return_id"]] = result["status"]
        self.progress.say(
            f"{sale.order_id}: 4 x {line['sku']} (defective) -> {result['status']} "
            f"{result.get('rma_number') or ''}"
        )
        if result["status"] != "authorized":
            raise ApiError("POST", "/v1/returns", answer.status, result.get("code"), str(result))
        return Rma(sale, line, UUID(result["return_id"]), result["rma_number"], quantity=4)

    def show_a_retried_post(
        self,
        caller: Caller,
        body: dict[str, Any],
        key: str,
        email: str | None,
        first: dict[str, Any],
    ) -> None:
        """Send a POST again under its key, as a client does after a lost answer: the API
        must give back the first result and record nothing new."""
        again = caller.post("/v1/returns", body, idempotency_key=key, email=email).body
        if again["return_id"] != first["return_id"]:
            raise ApiError(
                "POST", "/v1/returns", 201, "not_idempotent", f"{again} differs from {first}"
            )
        self.report.replays += 1
        self.progress.say(
            f"retried POST /v1/returns with the same Idempotency-Key: the same RMA "
            f"{first['rma_number'] or first['return_id']} came back, nothing new was recorded"
        )

    def customer_service_reviews(self, held: dict[str, Any], reason: ReasonCode) -> dict[str, Any]:
        """Approve or refuse an RMA held for review, on the version the agent read."""
        path = f"/v1/returns/{held['return_id']}"
        read = self.people.cs.get(path)
        refuse = reason in REFUSED_IN_REVIEW
        answer = self.people.cs.post(
            f"{path}/refuse" if refuse else f"{path}/approve",
            {"reason": "a used laptop is not taken back for a change of mind"} if refuse else {},
            idempotency_key=self.key("review"),
            if_match=read.etag,
        )
        verdict = "refused" if refuse else "approved"
        self.report.reviewed[verdict] = self.report.reviewed.get(verdict, 0) + 1
        self.progress.say(
            f"held for review: customer service {verdict} it on version {read.etag} (If-Match)"
        )
        return answer.body

    def customer_service_offers_keep_item(self, rmas: list[Rma]) -> tuple[list[Rma], list[Rma]]:
        """Cheap items are not worth the freight: customer service offers a partial refund
        to keep them, the customer accepts on the portal. Returns (to ship, kept)."""
        to_ship, kept = [], []
        for rma in rmas:
            path = f"/v1/returns/{rma.return_id}"
            read = self.people.cs.get(path)
            if not read.body["keep_item_eligible"]:
                to_ship.append(rma)
                continue
            offer = self.people.cs.post(
                f"{path}/keep-item/offer",
                {"valid_days": 7},
                idempotency_key=self.key("keep-offer"),
                if_match=read.etag,
            )
            seen = self.people.portal.get(path, email=rma.sale.email)
            self.people.portal.post(
                f"{path}/keep-item/accept",
                {},
                idempotency_key=self.key("keep-accept"),
                if_match=seen.etag,
                email=rma.sale.email,
            )
            self.report.kept += 1
            kept.append(rma)
            amount = offer.body.get("amount") or {}
            self.progress.say(
                f"{rma.rma_number}: {rma.line['sku']} kept by the customer for "
                f"{amount.get('amount', '?')} {amount.get('currency', '')}"
            )
        return to_ship, kept

    # ------------------------------------------------------------ the warehouse
    def warehouse_receives_and_inspects(self, rmas: list[Rma]) -> None:
        # A few customers never ship; the company does.
        shipped = [r for r in rmas if r.sale.business or self.random.random() < 0.92]
        for rma in shipped:
            receipt = f"REC-{self.run_id}-{rma.return_id.hex[:8]}"
            self.publish(
                WMS_RECEIPTS,
                receipt,
                "parcel.received",
                {
                    "receipt_id": receipt,
                    "warehouse_id": "WH-1",
                    "rma_number": rma.rma_number,
                    "tracking_number": f"TRK{self.random.randint(10**8, 10**9)}",
                    "items": rma.units(),
                },
                datetime.now(UTC),
                "wms/WH-1",
            )
            condition, disposition = (
                ("defective", "return_to_vendor")
                if rma.sale.business
                else self.random.choice(
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
            )
            self.publish(
                WMS_RECEIPTS,
                receipt,
                "items.inspected",
                {
                    "receipt_id": receipt,
                    "rma_number": rma.rma_number,
                    "warehouse_id": "WH-1",
                    "items": [
                        {**unit, "condition": condition, "disposition": disposition}
                        for unit in rma.units()
                    ],
                },
                datetime.now(UTC),
                "wms/WH-1",
            )
        self.producer.flush()
        ids = [r.return_id for r in shipped]
        self.wait(
            "parcels inspected",
            lambda: self.count(
                "SELECT count(DISTINCT originator_id) FROM oms_events"
                " WHERE topic = 'rma.items_inspected' AND originator_id = ANY(%s)",
                ids,
            ),
            len(ids),
        )

    def parcels_arrive_without_rma(self, sales: list[Sale]) -> list[Rma]:
        """The warehouse receives parcels with no RMA; customer service finds them in the
        blind-returns list, looks up the order and matches them."""
        web = [s for s in sales if s.channel != "store"]
        for sale in self.random.sample(web, k=max(1, len(web) // 25)):
            line = sale.lines[0]
            receipt = f"BLIND-{self.run_id}-{sale.order_id}"
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
                datetime.now(UTC),
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
        sales_by_id = {s.order_id: s for s in sales}
        matched = []
        for blind in self.open_blind_returns():
            hint = blind.get("order_hint")
            if not hint or hint not in sales_by_id:
                continue  # another run's parcel, or one with nothing to go on
            order = self.people.cs.get(f"/v1/orders/{hint}").body
            sku = blind["received_items"][0]["sku"]
            line_no = next(ln["line_no"] for ln in order["lines"] if ln["sku"] == sku)
            answer = self.people.cs.post(
                f"/v1/blind-returns/{blind['return_id']}/match",
                {
                    "order_number": hint,
                    "matched_by": "order_id",
                    "lines": [{"line_no": line_no, "quantity": 1, "reason": "changed_mind"}],
                },
                idempotency_key=self.key("blind-match"),
                if_match=f'"{blind["version"]}"',
                refusals=(409, 422),
            )
            if not 200 <= answer.status < 300:
                self.progress.say(
                    f"blind parcel for {hint} stays open: {answer.status} {answer.code}"
                    f" ({answer.body.get('detail')})"
                )
                continue
            rma_number = str(answer.body["rma_number"])
            self.publish(
                WMS_RECEIPTS,
                blind["receipt_id"],
                "items.inspected",
                {
                    "receipt_id": blind["receipt_id"],
                    "rma_number": rma_number,
                    "warehouse_id": "WH-1",
                    "items": [
                        {"sku": sku, "quantity": 1, "condition": "new", "disposition": "restock"}
                    ],
                },
                datetime.now(UTC),
                "wms/WH-1",
            )
            self.report.blind_matched += 1
            line = next(ln for ln in sales_by_id[hint].lines if ln["line_no"] == line_no)
            matched.append(Rma(sales_by_id[hint], line, UUID(blind["return_id"]), rma_number))
            self.progress.say(f"blind parcel matched to {hint} as {rma_number}")
        self.producer.flush()
        return matched

    def open_blind_returns(self) -> list[dict[str, Any]]:
        """Every page of the open blind returns (other runs' parcels may still be open)."""
        found: list[dict[str, Any]] = []
        page = self.people.cs.get("/v1/blind-returns", limit=200).body
        while True:
            found += page["items"]
            if not page["next"]:
                return found
            page = self.people.cs.get(page["next"]).body

    # ------------------------------------------------------------ stores
    def stores_take_back_web_orders(self, sales: list[Sale]) -> None:
        # Customers bring back what they bought in the last three weeks (inside the window).
        recent = [
            s
            for s in sales
            if s.channel != "store" and s.placed_at > datetime.now(UTC) - timedelta(days=21)
        ]
        for index, sale in enumerate(self.random.sample(recent, k=max(1, len(recent) // 12))):
            line = sale.lines[-1]
            serial = line["serials"][-1] if line["serials"] else None
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
                datetime.now(UTC),
                "pos/STORE-7",
            )
            self.report.store_returns += 1
        self.producer.flush()

    def someone_publishes_garbage(self) -> None:
        for index in range(20):
            self.producer.send(ORDERS, value=b"{not json " + str(index).encode())
        self.producer.flush()
        self.report.malformed = 20

    # ------------------------------------------------------------ money
    def payments_settle_and_customer_service_follows_up(self, rmas: list[Rma]) -> None:
        """Once the provider has answered, customer service lists the failed refunds on the
        read side and pays each again as store credit, on the RMA version it read."""
        ids = [r.return_id for r in rmas]

        def settled() -> int:
            return self.count(
                "SELECT count(*) FROM oms_returns WHERE return_id = ANY(%s) AND status IN"
                " ('closed', 'refund_failed', 'partially_refunded', 'authorized', 'expired')",
                ids,
            )

        self.wait("refunds settled", settled, len(ids))
        wait_for_projections(self.database_url)  # the refunds list is a read model
        ours = {str(i) for i in ids}
        failed: list[str] = []
        page = self.people.cs.get("/v1/refunds", status="failed", limit=200).body
        while True:
            failed += [r["return_id"] for r in page["items"] if r["return_id"] in ours]
            if not page["next"]:
                break
            page = self.people.cs.get(page["next"]).body
        for return_id in dict.fromkeys(failed):
            path = f"/v1/returns/{return_id}"
            read = self.people.cs.get(path)
            if read.body["status"] != "refund_failed":
                continue  # paid since, or already followed up
            self.people.cs.post(
                f"{path}/refund-retry",
                {"as_store_credit": True},
                idempotency_key=self.key("refund-retry"),
                if_match=read.etag,
            )
            self.report.refunds_as_store_credit += 1
            self.progress.say(
                f"{read.body['rma_number']}: refund declined by the provider, "
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


def summary(
    database_url: str, bootstrap: str, report: Report, out_dir: Path, analytics: Caller
) -> list[str]:
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
    lines += api_lines(database_url, report, analytics)
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
    codes = count_by_code(bootstrap)
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


def api_lines(database_url: str, report: Report, analytics: Caller) -> list[str]:
    """What people did through the API, the audit trail it left, and a read-side figure
    read back through it as analytics would."""
    reviewed = ", ".join(f"{v} {n}" for v, n in sorted(report.reviewed.items())) or "none"
    lines = [
        f"through the API at {report.api_url}:",
        f"  RMAs requested on the portal {report.portal_rmas}, by customer service "
        f"{report.cs_rmas}; held for review: {reviewed}; kept by the customer: {report.kept}",
        f"  blind parcels matched by customer service: {report.blind_matched} of {report.blind}; "
        f"failed refunds paid as store credit: {report.refunds_as_store_credit}; "
        f"retried POSTs answered with their first result: {report.replays}",
        "  calls: " + ", ".join(f"{call} x{n}" for call, n in sorted(report.calls.items())),
    ]
    # Every command records the acting key's principal as its events' actor. Earlier runs
    # in the same data directory used the same names: count this run's events only.
    with psycopg.connect(database_url) as conn:
        actors = conn.execute(
            "SELECT a, count(*) FROM (SELECT convert_from(state, 'UTF8')::jsonb"
            " #>> '{cause,actor}' AS a FROM oms_events WHERE notification_id > %s) e"
            " WHERE a = ANY(%s) GROUP BY a ORDER BY a",
            [report.first_position, list(PRINCIPALS.values())],
        ).fetchall()
    lines.append(
        "events recorded with an API key's principal as actor: "
        + (", ".join(f"{actor} {n}" for actor, n in actors) or "none")
    )
    reasons = analytics.get("/v1/analytics/return-reasons", by="reason", limit=6).body["items"]
    lines.append(
        "return reasons (GET /v1/analytics/return-reasons as analytics): "
        + ", ".join(f"{r['reason']} {r['returns']}" for r in reasons)
    )
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


def event_store_head(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM oms_events").fetchone()
    return int(row[0]) if row else 0


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
    """Serve the API on ``service``, play the day, summarise, check a rebuild."""
    keys, plain = demo_keys()
    with served(create_api(service, database_url, ApiSettings(), keys)) as api_url:
        report = Report(api_url=api_url, first_position=event_store_head(database_url))
        print(f"API:        {report.api_url} (keys for {', '.join(PRINCIPALS.values())})")
        people = People(
            *(Caller(report.api_url, plain[role], role, report.calls) for role in PRINCIPALS)
        )
        try:
            Demo(
                people,
                database_url,
                bootstrap,
                orders=orders,
                seed=seed,
                quiet=quiet,
                report=report,
            ).run()
            wait_for_projections(database_url)
            for line in summary(database_url, bootstrap, report, out_dir, people.analytics):
                print(line)
        finally:
            people.close()
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


__all__ = ["Demo", "Rma", "Sale", "play", "start_relay"]
