"""One serial's life, as the machines and people play it: sold, returned, restocked and sold
again, then sold once more at a counter while the last buyer still has it (flagged); read
back in one query over HTTP (``GET /v1/serials/{serial}``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from adapters.driven.kafka.topics import ORDERS
from adapters.driving.demo.cast import CATALOGUE, eur
from adapters.driving.demo.stage import Stage
from domain.order import order_id_for

LIFE_ENTRIES = 9
"""sold, shipped, return requested, RMA authorized, received, inspected, sold, shipped, and
the counter's sale."""


class SerialSteps(Stage):
    def a_serial_lives_its_life(self) -> None:
        sku, name, price, supplier, category, warranty = CATALOGUE[2]  # headphones: serials
        serial = f"SN{self.run_id}LIFE"
        first, again, counter = (
            f"WEB-{self.run_id}-LIFE1",
            f"WEB-{self.run_id}-LIFE2",
            f"STO-{self.run_id}-LIFE3",
        )
        line = {
            "line_no": 1,
            "sku": sku,
            "name": name,
            "quantity": 1,
            "unit_price": eur(price),
            "serials": [serial],
            "supplier": supplier,
            "category": category,
            "warranty_months": warranty,
        }
        sold = datetime.now(UTC) - timedelta(days=6)
        self._sell(first, "CLIFE1", line, sold, sold + timedelta(hours=5), price)
        self.publish(
            ORDERS,
            first,
            "order.delivered",
            {"order_id": first, "delivered_at": (sold + timedelta(days=2)).isoformat()},
            sold + timedelta(days=2),
            "carrier/tracking",
        )
        self.producer.flush()
        self._wait_for(
            lambda: self.count(
                "SELECT count(*) FROM oms_events WHERE originator_id = %s"
                " AND topic = 'order.delivered'",
                order_id_for(first),
            ),
            "the first sale of the serial",
        )
        # Customer service takes the return over the phone, with the serial.
        rma = self.people.cs.post(
            "/v1/returns",
            {
                "order_number": first,
                "lines": [
                    {"line_no": 1, "quantity": 1, "reason": "not_as_described", "serial": serial}
                ],
            },
            idempotency_key=self.key("serial-rma"),
        ).body
        receipt = f"REC-{self.run_id}-LIFE"
        item = {"sku": sku, "quantity": 1, "serial": serial}
        now = datetime.now(UTC)
        self.warehouse_reports("parcel.received", receipt, rma["rma_number"], [item], now)
        restocked = {**item, "condition": "resellable", "disposition": "restock"}
        self.warehouse_reports(
            "items.inspected", receipt, rma["rma_number"], [restocked], now + timedelta(seconds=1)
        )
        self._sell(
            again, "CLIFE2", line, now + timedelta(seconds=2), now + timedelta(seconds=2), price
        )
        # A counter sells the same serial while CLIFE2 has it: a mistyped or cloned serial.
        self.publish(
            ORDERS,
            counter,
            "order.placed",
            {
                "order_id": counter,
                "customer_id": "CWALKIN",
                "channel": "store",
                "store_id": "STORE-7",
                "placed_at": (now + timedelta(seconds=3)).isoformat(),
                "lines": [line],
                "shipping": eur("0.00"),
                "payments": [{"payment_id": "p1", "method": "card", "amount": eur(price)}],
            },
            now + timedelta(seconds=3),
            "pos/STORE-7",
        )
        self.producer.flush()
        life: dict[str, Any] = self._wait_for(
            lambda: self._life(serial), "the serial's life in the read model"
        )
        steps = " -> ".join(self._step(entry) for entry in life["timeline"])
        current = life["current"]
        self.report.journeys.append(
            f"serial {serial} (GET /v1/serials/{{serial}}): {steps}; now {current['state']}"
            f" {current.get('customer_id') or current.get('location_id') or ''}".rstrip()
        )
        for flag in life["flags"]:
            self.report.journeys.append(
                f"flagged sale of serial {serial}: {flag['order_number']} to"
                f" {flag['customer_id']}, {flag['reason']}"
            )

    def _sell(
        self,
        order_id: str,
        customer: str,
        line: dict[str, Any],
        at: datetime,
        shipped: datetime,
        price: str,
    ) -> None:
        self.publish(
            ORDERS,
            order_id,
            "order.placed",
            {
                "order_id": order_id,
                "customer_id": customer,
                "channel": "web",
                "customer_email": f"{customer.lower()}@example.com",
                "placed_at": at.isoformat(),
                "lines": [line],
                "shipping": eur("0.00"),
                "payments": [{"payment_id": "p1", "method": "card", "amount": eur(price)}],
            },
            at,
            "commerce/web",
        )
        self.publish(
            ORDERS,
            order_id,
            "order.fulfilled",
            {
                "order_id": order_id,
                "location_id": "WH-1",
                "lines": [{"line_no": 1, "quantity": 1, "serials": line["serials"]}],
            },
            shipped,
            "wms/WH-1",
        )

    def _life(self, serial: str) -> dict[str, Any] | None:
        # Asked over HTTP once the projection holds every entry: no 404s while it catches up.
        try:
            applied = self.count("SELECT count(*) FROM rm_serial_events WHERE serial = %s", serial)
        except psycopg.errors.UndefinedTable:  # the projections worker has not created it yet
            return None
        if applied < LIFE_ENTRIES:
            return None
        body: dict[str, Any] = self.people.cs.get(f"/v1/serials/{serial}").body
        return body

    @staticmethod
    def _step(entry: dict[str, Any]) -> str:
        where = entry.get("customer_id") if entry["state"] == "with_customer" else None
        where = (
            where
            or entry.get("location_id")
            or entry.get("rma_number")
            or entry.get("order_number")
            or ""
        )
        words = entry["kind"].replace("_", " ")
        return f"{words} {where}".rstrip()

    def _wait_for(self, check: Any, what: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not there after {timeout:.0f} s")
            time.sleep(0.2)
