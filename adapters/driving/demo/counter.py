"""Store counters in the day: a customer picks "return at a store" on the portal and brings
the parcel to a counter, which scans the RMA (the POS publishes it on pos.returns.v1); and
a counter return the POS sent before the platform published its order, parked until then."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.driven.kafka.topics import ORDERS, POS_RETURNS
from adapters.driving.demo.cast import Sale, eur
from adapters.driving.demo.stage import Stage
from domain.returns import store_return_id_for

STORE = "STORE-9"


class CounterSteps(Stage):
    """The store counter's journeys, machines on the topics and people on the API."""

    def a_store_rma_is_received_at_a_counter(self, sales: list[Sale]) -> None:
        recent = [
            s
            for s in sales
            if s.channel == "web"
            and not s.business
            and s.placed_at > datetime.now(UTC) - timedelta(days=21)
        ]
        for sale in recent[-5:]:
            if self._store_rma(sale):
                return
        self.report.journeys.append("store-method RMA: no recent web order left to return")

    def _store_rma(self, sale: Sale) -> bool:
        portal = self.people.portal
        order = portal.get(f"/v1/orders/{sale.order_id}", email=sale.email).body
        line = next((ln for ln in order["lines"] if ln["returnable_quantity"] > 0), None)
        if line is None:
            return False
        body = {
            "order_number": sale.order_id,
            "method": "store",
            "lines": [{"line_no": line["line_no"], "quantity": 1, "reason": "size_too_large"}],
        }
        answer = portal.post(
            "/v1/returns", body, idempotency_key=self.key("rma"), email=sale.email, refusals=(422,)
        )
        if answer.status == 422:
            code = answer.code or "refused"
            self.report.refused[code] = self.report.refused.get(code, 0) + 1
            return False
        self.report.portal_rmas += 1
        rma_number = str(answer.body["rma_number"])
        receipt = f"SR-{self.run_id}-RMA"
        self.publish(
            POS_RETURNS,
            STORE,
            "return.recorded",
            {
                "store_return_id": receipt,
                "store_id": STORE,
                "staff_id": "staff-3",
                "order_id": sale.order_id,
                "rma_number": rma_number,  # scanned from the RMA's QR code
                "items": [
                    {
                        "line": line["line_no"],
                        "quantity": 1,
                        "reason_code": "size_too_large",
                        "condition": "resellable",
                    }
                ],
            },
            datetime.now(UTC),
            f"pos/{STORE}",
        )
        self.producer.flush()
        rma = self._until(
            lambda: (
                (r := self.people.cs.get(f"/v1/returns/{rma_number}").body)["status"]
                != "authorized"
                and r
            ),
            f"{rma_number} received at {STORE}",
        )
        self.report.rmas[str(rma["return_id"])] = str(rma["status"])
        printed = self.people.cs.get_text(
            f"/v1/stores/{STORE}/returns/{receipt}/receipt", rma_number=rma_number
        )
        settled, pending = (_entries(printed, name) for name in ("settled", "pending"))
        self.report.journeys.append(
            f"store-method RMA {rma_number} of {sale.order_id} received at counter {STORE} "
            f"by its RMA number, {rma['status']}; receipt: {settled} settled, {pending} pending"
        )
        return True

    def a_counter_return_comes_before_its_order(self) -> None:
        order_id = f"EARLY-{self.run_id}"
        receipt = f"SR-{self.run_id}-EARLY"
        now = datetime.now(UTC)
        self.publish(
            POS_RETURNS,
            STORE,
            "return.recorded",
            {
                "store_return_id": receipt,
                "store_id": STORE,
                "staff_id": "staff-3",
                "order_id": order_id,
                "items": [{"line": 1, "quantity": 1, "reason_code": "other", "condition": "new"}],
            },
            now,
            f"pos/{STORE}",
        )
        self.producer.flush()
        parked = self._until(
            lambda: self.count(
                "SELECT count(*) FROM oms_parked_messages WHERE reason LIKE %s", f"%{order_id}%"
            ),
            f"the return of {order_id} parked",
        )
        sku, name, price = "TEE-DEMO", "Demo tee", "19.90"
        total = f"{float(price) + 4.90:.2f}"  # demo data only; the system never floats
        self.publish(
            ORDERS,
            order_id,
            "order.placed",
            {
                "order_id": order_id,
                "customer_id": "C9999",
                "channel": "web",
                "customer_email": "c9999@example.com",
                "placed_at": (now - timedelta(days=6)).isoformat(),
                "lines": [
                    {
                        "line_no": 1,
                        "sku": sku,
                        "name": name,
                        "quantity": 1,
                        "unit_price": eur(price),
                        "serials": [],
                        "supplier": "Threads",
                        "category": "apparel",
                    }
                ],
                "shipping": eur("4.90"),
                "payments": [{"payment_id": "p1", "method": "card", "amount": eur(total)}],
            },
            now - timedelta(days=6),
            "commerce/web",
        )
        self.publish(
            ORDERS,
            order_id,
            "order.fulfilled",
            {
                "order_id": order_id,
                "location_id": "WH-1",
                "lines": [{"line_no": 1, "quantity": 1, "serials": []}],
            },
            now - timedelta(days=5),
            "wms/WH-1",
        )
        self.publish(
            ORDERS,
            order_id,
            "order.delivered",
            {"order_id": order_id, "delivered_at": (now - timedelta(days=4)).isoformat()},
            now - timedelta(days=4),
            "carrier/tracking",
        )
        self.producer.flush()
        return_id = store_return_id_for(STORE, receipt)
        rma = self._until(
            lambda: (
                self.count(
                    "SELECT count(*) FROM oms_parked_messages WHERE reason LIKE %s", f"%{order_id}%"
                )
                == 0
                and self.people.cs.get(f"/v1/returns/{return_id}").body
            ),
            f"the parked return of {order_id} applied",
        )
        self.report.rmas[str(return_id)] = str(rma["status"])
        self.report.store_returns += 1
        self.report.journeys.append(
            f"counter return {receipt} sent before its order {order_id}: parked "
            f"({parked} message), applied once the order came as {rma['rma_number']}, "
            f"{rma['status']}"
        )

    def _until(self, check: Any, what: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := check()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {timeout:.0f} s")
            time.sleep(0.25)
        return result


def _entries(html: str, section: str) -> int:
    found = re.search(f"<ul class={section}>(.*?)</ul>", html)
    if found is None or found.group(1) == "<li>none</li>":
        return 0
    return found.group(1).count("<li>")
