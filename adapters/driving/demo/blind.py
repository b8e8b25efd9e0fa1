"""Blind parcels that run to their end: one placed by its serial with no person, one
inspected before customer service matched it, one linked as a duplicate report."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from adapters.driving.demo.cast import Rma, Sale
from adapters.driving.demo.stage import Stage
from domain.policy import PolicyBook
from domain.returns import blind_return_id_for

NOT_RETURNABLE = {
    category
    for category, terms in PolicyBook().by_category.items()
    if terms.get("returnable") is False
}


class BlindSteps(Stage):
    """The warehouse publishes what it received and inspected; customer service acts on
    the blind-returns routes."""

    def blind_parcels_run_to_their_end(self, sales: list[Sale], shipped: list[Rma]) -> list[Rma]:
        """The three journeys; the RMAs whose refunds the day then waits for."""
        followed: list[Rma] = []
        candidates = self._returnable_web_lines(sales)
        serial = next(((s, ln) for s, ln in candidates if ln["serials"]), None)
        if serial is not None:
            followed += self._matched_by_serial(*serial)
        plain = next(
            (
                (s, ln)
                for s, ln in candidates
                if not ln["serials"] and (serial is None or s is not serial[0])
            ),
            None,
        )
        if plain is not None:
            followed += self._inspected_before_its_match(*plain)
        if shipped:
            self._duplicate_report_linked(shipped[0])
        self.producer.flush()
        return followed

    # ------------------------------------------------------------ the three journeys
    def _matched_by_serial(self, sale: Sale, line: dict[str, Any]) -> list[Rma]:
        receipt = f"BLR-{self.run_id}-SERIAL"
        self._parcel(receipt, {"sku": line["sku"], "quantity": 1, "serial": line["serials"][-1]})
        view = self._view_when(receipt, lambda v: v["status"] != "blind_unmatched")
        if view["status"] == "blind_unmatched":
            self.report.journeys.append(f"blind parcel {receipt} was not matched by serial")
            return []
        self._inspect(receipt, view["rma_number"], line["sku"])
        self.report.journeys.append(
            f"blind parcel {receipt} matched automatically by {view['matched_by']} to "
            f"{view['order_number']} as {view['rma_number']} (no person; inspected, refunded)"
        )
        return [Rma(sale, line, UUID(view["return_id"]), view["rma_number"])]

    def _inspected_before_its_match(self, sale: Sale, line: dict[str, Any]) -> list[Rma]:
        receipt = f"BLR-{self.run_id}-INSPECTED"
        self._parcel(receipt, {"sku": line["sku"], "quantity": 1})
        self._inspect(receipt, None, line["sku"])
        view = self._view_when(receipt, lambda v: bool(v["inspected_items"]))
        # The customer phoned in: customer service finds the order among the suggestions
        # (or types it) and matches on the version it read.
        suggested = next(
            (s for s in view["suggested_matches"] if s["order_number"] == sale.order_id), None
        )
        line_no = suggested["line_no"] if suggested else line["line_no"]
        answer = self.people.cs.post(
            f"/v1/blind-returns/{view['return_id']}/match",
            {
                "order_number": sale.order_id,
                "matched_by": "customer",
                "lines": [{"line_no": line_no, "quantity": 1, "reason": "changed_mind"}],
            },
            idempotency_key=self.key("blind-match"),
            if_match=view["etag"],
            refusals=(409, 422),
        )
        if not 200 <= answer.status < 300:
            self.report.journeys.append(
                f"blind parcel {receipt} inspected before its match stays open: {answer.code}"
            )
            return []
        amount = answer.body.get("amount") or {}
        paid = (
            f"refund {amount['amount']} {amount['currency']} requested once"
            if answer.body.get("refund_id")
            else f"{answer.body['status']}, nothing to pay"
        )
        self.report.journeys.append(
            f"blind parcel {receipt} inspected before its match (stock moved at once), matched "
            f"by customer service to {sale.order_id} as {answer.body['rma_number']}"
            f"{' from the suggestions' if suggested else ''}: {paid}"
        )
        return [Rma(sale, line, UUID(view["return_id"]), str(answer.body["rma_number"]))]

    def _duplicate_report_linked(self, reported: Rma) -> None:
        receipt = f"BLR-{self.run_id}-DUPLICATE"
        # The RMA's own parcel scanned a second time, its label unread.
        self._parcel(receipt, {"sku": reported.line["sku"], "quantity": 1})
        view = self._view_when(receipt, lambda v: True)
        if view["status"] != "blind_unmatched":
            return  # its one SKU fitted an order by itself: nothing to link
        answer = self.people.cs.post(
            f"/v1/blind-returns/{view['return_id']}/link",
            {"linked": reported.rma_number, "reason": "the RMA's own parcel, scanned twice"},
            idempotency_key=self.key("blind-link"),
            if_match=view["etag"],
            refusals=(409, 422),
        )
        outcome = "closed" if answer.status == 200 else f"refused ({answer.code})"
        self.report.journeys.append(
            f"blind parcel {receipt} linked by customer service to {reported.rma_number}, "
            f"which reported the same goods: {outcome}, no refund, stock counted once"
        )

    def matched_at_receipt(self, receipts: list[str]) -> list[dict[str, Any]]:
        """The views of these parcels the system matched at receipt (they named an order)."""
        views = []
        for receipt in receipts:
            view = self.people.cs.get(f"/v1/blind-returns/{blind_return_id_for(receipt)}").body
            if view["status"] != "blind_unmatched":
                views.append(view)
        return views

    # ------------------------------------------------------------ plumbing
    def _returnable_web_lines(self, sales: list[Sale]) -> list[tuple[Sale, dict[str, Any]]]:
        """Delivered web lines nothing was returned from yet, newest first (in the window)."""
        found = []
        for sale in sorted(sales, key=lambda s: s.placed_at, reverse=True):
            if sale.channel == "store" or sale.business:
                continue
            order = self.people.cs.get(f"/v1/orders/{sale.order_id}").body
            if order["delivered_at"] is None:
                continue
            for shown, line in zip(order["lines"], sale.lines, strict=False):
                # Returnable (the default policy refuses software and hygiene unless faulty)
                # and untouched, so the parcel alone decides its fate.
                returnable = shown["returnable"] and shown["category"] not in NOT_RETURNABLE
                if returnable and shown["returnable_quantity"] == line["quantity"]:
                    found.append((sale, line))
            if len(found) >= 6:
                break
        return found

    def _parcel(self, receipt: str, item: dict[str, Any]) -> None:
        self.warehouse_reports("parcel.received", receipt, None, [item])
        self.producer.flush()

    def _inspect(self, receipt: str, rma_number: str | None, sku: str) -> None:
        item = {"sku": sku, "quantity": 1, "condition": "new", "disposition": "restock"}
        self.warehouse_reports("items.inspected", receipt, rma_number, [item])
        self.producer.flush()

    def _view_when(self, receipt: str, ready: Any) -> dict[str, Any]:
        """The blind return's view once the integrations worker recorded it and ``ready``."""
        return_id = blind_return_id_for(receipt)
        seen: dict[str, Any] = {}

        def done() -> int:
            if not self.count("SELECT count(*) FROM oms_returns WHERE return_id = %s", return_id):
                return 0  # not there yet: no GET to count as a 404
            answer = self.people.cs.get(f"/v1/blind-returns/{return_id}")
            seen.update(answer.body, etag=answer.etag)
            return int(bool(ready(seen)))

        self.wait(f"blind parcel {receipt}", done, 1, timeout=120)
        return seen
