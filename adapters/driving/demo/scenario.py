"""The day, as the outside machines play it: the commerce platform sells, the warehouse
receives and inspects, parcels arrive without RMA, stores take back web orders, someone
publishes garbage; and ``Demo.run``, the order of the day.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from adapters.driven.kafka.topics import ORDERS, POS_RETURNS, WMS_RECEIPTS
from adapters.driving.demo.blind import BlindSteps
from adapters.driving.demo.cast import (
    CATALOGUE,
    HISTORY,
    Report,
    Rma,
    Sale,
    eur,
    subtract,
    sum_amounts,
)
from adapters.driving.demo.counter import CounterSteps
from adapters.driving.demo.expiry import ExpirySteps
from adapters.driving.demo.legs import LegSteps
from adapters.driving.demo.people import PeopleSteps
from adapters.driving.demo.serials import SerialSteps


class Demo(PeopleSteps, ExpirySteps, SerialSteps, BlindSteps, LegSteps, CounterSteps):
    """One day of a shop's returns: the machines' steps here, the people's in ``PeopleSteps``."""

    # ------------------------------------------------------------ the day
    def run(self) -> Report:
        began = time.perf_counter()
        sales = self.commerce_platform_sells()
        rmas = self.customers_ask_to_return(sales)
        rmas, kept = self.customer_service_offers_keep_item(rmas)
        self.warehouse_receives_and_inspects(rmas)
        self.repair_and_vendor_legs()
        matched = self.parcels_arrive_without_rma(sales)
        matched += self.blind_parcels_run_to_their_end(sales, rmas)
        self.stores_take_back_web_orders(sales)
        self.a_store_rma_is_received_at_a_counter(sales)
        self.a_counter_return_comes_before_its_order()
        self.someone_publishes_garbage()
        self.a_serial_lives_its_life()
        self.payments_settle_and_customer_service_follows_up(rmas + kept + matched)
        self.deadlines_run_out()
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
        """The warehouse receives parcels with no RMA; those naming an order they fit whole
        are matched at receipt by the system, customer service finds the others in the
        blind-returns list, looks up the order and matches them."""
        web = [s for s in sales if s.channel != "store"]
        receipts = []
        for sale in self.random.sample(web, k=max(1, len(web) // 25)):
            line = sale.lines[0]
            receipt = f"BLIND-{self.run_id}-{sale.order_id}"
            receipts.append(receipt)
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
        for blind in self.open_blind_returns() + self.matched_at_receipt(receipts):
            hint = blind.get("order_hint")
            if not hint or hint not in sales_by_id:
                continue  # another run's parcel, or one with nothing to go on
            order = self.people.cs.get(f"/v1/orders/{hint}").body
            sku = blind["received_items"][0]["sku"]
            line_no = next(ln["line_no"] for ln in order["lines"] if ln["sku"] == sku)
            if blind["status"] != "blind_unmatched":
                # Its parcel named an order it fits whole: the system matched it at receipt.
                answer = self.people.cs.get(f"/v1/blind-returns/{blind['return_id']}")
                line_no = blind["lines"][0]["line_no"]
            else:
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
            if blind["status"] == "blind_unmatched":
                self.report.blind_matched += 1
            else:
                self.report.blind_matched_at_receipt += 1
            line = next(ln for ln in sales_by_id[hint].lines if ln["line_no"] == line_no)
            matched.append(Rma(sales_by_id[hint], line, UUID(blind["return_id"]), rma_number))
            self.progress.say(f"blind parcel matched to {hint} as {rma_number} ({blind['status']})")
        self.producer.flush()
        return matched

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
