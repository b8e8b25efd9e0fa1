"""The queue of repair and return-to-vendor legs: one row per leg, open ones oldest first.

A leg belongs to one return, so its row is rewritten whole (an upsert) from the reducer's
state on every event of that leg; statuses follow the Return aggregate's own leg states
(domain/returns/state.py), so the queue never invents one. ``GET /v1/legs`` reads it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from projections.core import RETURN, Change, Event, Reducer, State, Upsert, money, on, parse_time
from projections.schema import LEGS, Table

TABLE = LEGS.name
OPEN = ("awaiting_dispatch", "at_repair", "repaired", "at_vendor")
UNKNOWN = "unknown"


class Legs(Reducer):
    name = "legs"
    kinds = (RETURN,)

    @property
    def tables(self) -> tuple[Table, ...]:
        return (LEGS,)

    # ------------------------------------------------------------ the return
    @on("rma.requested")
    def _requested(self, state: State, event: Event, out: list[Change]) -> None:
        self._lines(state, event)

    @on("rma.blind_return_matched", "rma.in_store_return_recorded")
    def _numbered_with_lines(self, state: State, event: Event, out: list[Change]) -> None:
        self._lines(state, event)
        self._numbered(state, event, out)

    @on("rma.authorized")
    def _authorized(self, state: State, event: Event, out: list[Change]) -> None:
        self._numbered(state, event, out)

    @staticmethod
    def _lines(state: State, event: Event) -> None:
        d = event.data
        state["currency"] = d.get("currency")
        state["suppliers"] = {
            str(line["line_no"]): line.get("supplier", UNKNOWN) for line in d["lines"]
        }

    def _numbered(self, state: State, event: Event, out: list[Change]) -> None:
        state["rma_number"] = event.data["rma_number"]
        # Legs opened before the number was known (an inspected blind parcel) get it now.
        for leg_id in state.get("legs", {}):
            self._write(state, event, leg_id, out)

    # ------------------------------------------------------------ the legs
    @on("rma.items_inspected")
    def _inspected(self, state: State, event: Event, out: list[Change]) -> None:
        # Leg ids are "L<n>" over every item inspected on this return so far
        # (domain/returns/state.py).
        start = int(state.get("inspected", 0))
        legs: dict[str, Any] = state.setdefault("legs", {})
        suppliers = state.get("suppliers", {})
        at = event.time.isoformat()
        for index, item in enumerate(event.data["items"], start=start):
            if item["disposition"] not in ("repair", "return_to_vendor"):
                continue
            leg_id = f"L{index + 1}"
            legs[leg_id] = {
                "kind": item["disposition"],
                "status": "awaiting_dispatch",
                "sku": item["sku"],
                "serial": item.get("serial"),
                "quantity": int(item["quantity"]),
                "supplier": suppliers.get(str(item.get("line_no")), UNKNOWN),
                "location_id": item.get("location_id"),
                "opened_at": at,
                "status_since": at,
            }
            self._write(state, event, leg_id, out)
        state["inspected"] = start + len(event.data["items"])

    @on("rma.repair_sent")
    def _repair_sent(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        self._move(
            state, event, out, "at_repair", partner=d["repair_center"], reference=d.get("reference")
        )

    @on("rma.repair_completed")
    def _repair_completed(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        status = "scrapped" if d["outcome"] == "beyond_repair" else "repaired"
        self._move(
            state,
            event,
            out,
            status,
            outcome=d["outcome"],
            replacement_serial=d.get("replacement_serial"),
        )

    @on("rma.repaired_item_restocked")
    def _restocked(self, state: State, event: Event, out: list[Change]) -> None:
        self._move(state, event, out, "restocked", restocked_at=event.data["location_id"])

    @on("rma.vendor_return_shipped")
    def _shipped(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        self._move(state, event, out, "at_vendor", partner=d["supplier"], reference=d["vendor_rma"])

    @on("rma.supplier_credit_received")
    def _credited(self, state: State, event: Event, out: list[Change]) -> None:
        self._move(
            state,
            event,
            out,
            "credited",
            credit=str(money(event.data["amount"])),
            credit_reference=event.data.get("reference"),
        )

    @on("rma.vendor_item_returned")
    def _returned(self, state: State, event: Event, out: list[Change]) -> None:
        self._move(state, event, out, "returned_by_vendor", restocked_at=event.data["location_id"])

    def _move(
        self, state: State, event: Event, out: list[Change], status: str, **values: Any
    ) -> None:
        leg_id = event.data["leg_id"]
        leg = state.get("legs", {}).get(leg_id)
        if leg is None:
            return  # its inspection was never seen: nothing to show
        leg.update(status=status, status_since=event.time.isoformat(), **values)
        if status not in OPEN:
            leg["closed_at"] = event.time.isoformat()
        self._write(state, event, leg_id, out)

    @staticmethod
    def _write(state: State, event: Event, leg_id: str, out: list[Change]) -> None:
        leg = state["legs"][leg_id]
        row: dict[str, Any] = {
            name: leg.get(name)
            for name in (
                "kind",
                "status",
                "sku",
                "serial",
                "quantity",
                "supplier",
                "location_id",
                "partner",
                "reference",
                "outcome",
                "replacement_serial",
                "restocked_at",
                "credit_reference",
            )
        }
        row["rma_number"] = state.get("rma_number")
        row["currency"] = state.get("currency")
        row["open"] = leg["status"] in OPEN
        row["credit"] = None if leg.get("credit") is None else Decimal(leg["credit"])
        for name in ("opened_at", "status_since", "closed_at"):
            row[name] = None if leg.get(name) is None else parse_time(leg[name])
        key = {"return_id": event.aggregate_id, "leg_id": leg_id}
        out.append(Upsert(TABLE, key, row))
