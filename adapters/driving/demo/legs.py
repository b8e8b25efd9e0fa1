"""Repair and return-to-vendor legs in the day: a pair of faulty headphones comes back,
one unit goes to the repair centre and back to the shelf (the WMS reports it on
wms.receipts.v1), the other to its supplier, shipped and credited by the warehouse desk
through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS
from adapters.driving.demo.cast import eur
from adapters.driving.demo.stage import Stage

SKU, SUPPLIER, PRICE = "HEADPHONES-X1", "SoundCo", "129.00"
CREDIT = "95.00"


class LegSteps(Stage):
    """The legs journey: machines publish, the warehouse desk acts over HTTP."""

    def repair_and_vendor_legs(self) -> None:
        rma_number, serials = self._faulty_pair_returned()
        if rma_number is None:
            return
        desk = self.people.warehouse
        # The desk's queue, oldest first: this RMA's two legs once inspected.
        self.wait("legs opened", lambda: len(self._legs(rma_number)), 2)
        legs = {leg["kind"]: leg for leg in self._legs(rma_number)}
        repair, vendor = legs["repair"], legs["return_to_vendor"]

        # The repair centre's answers reach us through the WMS, naming the unit by serial.
        unit = {"rma_number": rma_number, "serial": repair["serial"]}
        now = datetime.now(UTC)
        job = f"JOB-{self.run_id}"
        for event_type, data in (
            ("repair.sent", {**unit, "repair_center": "REPAIR-LYON", "reference": job}),
            ("repair.completed", {**unit, "outcome": "repaired"}),
            ("leg.restocked", {**unit, "location_id": "WH-1"}),
        ):
            self.publish(WMS_RECEIPTS, rma_number, event_type, data, now, "wms/WH-1")
        self.producer.flush()

        # The supplier's leg, by the desk: shipped under the supplier's authorization,
        # then the credit note booked.
        path = f"/v1/legs/{rma_number}/{vendor['leg_id']}"
        authorization = f"VRA-{self.run_id}"
        desk.post(
            f"{path}/vendor-shipped",
            {"reference": authorization},
            idempotency_key=self.key("vendor-shipped"),
        )
        desk.post(
            f"{path}/vendor-credited",
            {"amount": eur(CREDIT), "reference": f"CN-{self.run_id}"},
            idempotency_key=self.key("vendor-credited"),
        )
        self.wait(
            "legs ended",
            lambda: sum(
                leg["status"] in ("restocked", "credited")
                for leg in self._legs(rma_number, include_closed=True)
            ),
            2,
        )
        credits = self._supplier_credits()
        self.report.journeys.append(
            f"repair leg {repair['leg_id']} of {rma_number} (serial {serials[0]}) sent to"
            f" REPAIR-LYON as {job}, repaired and back in stock at WH-1 through wms.receipts.v1:"
            " stock moved from in_repair to available"
        )
        self.report.journeys.append(
            f"vendor leg {vendor['leg_id']} of {rma_number} (serial {serials[1]}) shipped to"
            f" {SUPPLIER} as {authorization} and credited {CREDIT} EUR over HTTP by the"
            f" warehouse: {SUPPLIER}'s supplier credits in the costs read model now {credits} EUR"
        )

    def _supplier_credits(self) -> str:
        """The supplier's credits in the costs read model (``rm_return_costs``), once this
        journey's credit is in: the projections trail the event store."""
        query = (
            "SELECT coalesce(sum(supplier_credits), 0) FROM rm_return_costs"
            " WHERE supplier = %s AND currency = 'EUR'"
        )
        self.wait(
            "supplier credit in the costs",
            lambda: int(self._scalar(query, SUPPLIER) >= Decimal(CREDIT)),
            1,
        )
        return f"{self._scalar(query, SUPPLIER):.2f}"

    def _scalar(self, query: str, *params: Any) -> Decimal:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query, params).fetchone()
        return Decimal(row[0]) if row and row[0] is not None else Decimal(0)

    def _legs(self, rma_number: str, *, include_closed: bool = False) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.people.warehouse.get(
            "/v1/legs", rma_number=rma_number, include_closed=include_closed
        ).body["items"]
        return items

    def _faulty_pair_returned(self) -> tuple[str | None, list[str]]:
        """Sold six days ago, both units come back defective: one for repair, one for the
        supplier. The RMA number, or None when the policy would not take them."""
        order_id = f"LEGS-{self.run_id}"
        serials = [f"SNL{self.run_id}{n}" for n in (1, 2)]
        at = datetime.now(UTC) - timedelta(days=6)
        line = {
            "line_no": 1,
            "sku": SKU,
            "name": "Headphones X1",
            "quantity": 2,
            "unit_price": eur(PRICE),
            "serials": serials,
            "supplier": SUPPLIER,
            "category": "electronics",
            "warranty_months": 24,
        }
        placed = {
            "order_id": order_id,
            "customer_id": "C0001",
            "channel": "web",
            "customer_email": "c0001@example.com",
            "placed_at": at.isoformat(),
            "lines": [line],
            "shipping": eur("4.90"),
            "payments": [{"payment_id": "p1", "method": "card", "amount": eur("262.90")}],
        }
        fulfilled = {
            "order_id": order_id,
            "location_id": "WH-1",
            "lines": [{"line_no": 1, "quantity": 2, "serials": serials}],
        }
        delivered = {"order_id": order_id, "delivered_at": (at + timedelta(days=2)).isoformat()}
        self.publish(ORDERS, order_id, "order.placed", placed, at, "commerce/web")
        self.publish(ORDERS, order_id, "order.fulfilled", fulfilled, at, "wms/WH-1")
        self.publish(ORDERS, order_id, "order.delivered", delivered, at, "carrier/tracking")
        self.producer.flush()
        self.wait(
            "legs order delivered",
            lambda: self.count(
                "SELECT count(*) FROM oms_events e"
                " JOIN oms_orders o ON o.order_id = e.originator_id"
                " WHERE e.topic = 'order.delivered' AND o.order_number = %s",
                order_id,
            ),
            1,
        )
        answer = self.people.cs.post(
            "/v1/returns",
            {
                "order_number": order_id,
                "comment": "both crackle on the left side",
                "lines": [{"line_no": 1, "quantity": 2, "reason": "defective"}],
            },
            idempotency_key=self.key("legs-rma"),
            refusals=(422,),
        )
        if answer.body.get("status") != "authorized":
            self.progress.say(f"legs journey skipped: {order_id} -> {answer.body}")
            return None, serials
        rma_number = str(answer.body["rma_number"])
        receipt = f"REC-LEGS-{self.run_id}"
        units = [{"sku": SKU, "quantity": 1, "serial": s} for s in serials]
        now = datetime.now(UTC)
        self.warehouse_reports("parcel.received", receipt, rma_number, units, now)
        inspected = [
            {**unit, "condition": "defective", "disposition": disposition}
            for unit, disposition in zip(units, ("repair", "return_to_vendor"), strict=True)
        ]
        self.warehouse_reports("items.inspected", receipt, rma_number, inspected, now)
        self.producer.flush()
        return rma_number, serials
