"""Return reasons and what returns cost, for buyers and suppliers.

- ``rm_return_reasons``: returned lines and items by reason x sku x supplier x category x
  the order's sales channel (lines of requests, matched blind parcels and counter
  returns), and lines the policy rejected.
- ``rm_items_sold``: items sold on the same keys (placed orders less cancelled ones;
  exchange replacements are not sales), the denominator of return rates.
- ``rm_return_costs`` per supplier x sku x currency: money paid back (settled refunds and
  store credit with its bonus), restocking fees kept, scrapped items and their value at
  the sale price, open repair and return-to-vendor legs, supplier credits received.

A refund is paid per return, not per line: it is attributed to the return's lines in
proportion to their value (exact to the cent).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from projections.core import (
    ORDER,
    RETURN,
    Change,
    Event,
    Increment,
    Reducer,
    State,
    money,
    on,
    split_pro_rata,
)
from projections.schema import ITEMS_SOLD, RETURN_COSTS, RETURN_REASONS, Table

REASONS = RETURN_REASONS.name
SOLD = ITEMS_SOLD.name
COSTS = RETURN_COSTS.name
UNKNOWN = "unknown"


class ReturnReasons(Reducer):
    name = "reasons"
    kinds = (ORDER, RETURN)

    @property
    def tables(self) -> tuple[Table, ...]:
        return (RETURN_REASONS, ITEMS_SOLD, RETURN_COSTS)

    # ------------------------------------------------------------ sales
    @on("order.placed")
    def _placed(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        if d.get("replacement_for") is not None:
            return
        state["sold"] = [
            [
                line["sku"],
                line.get("supplier", UNKNOWN),
                line.get("category", UNKNOWN),
                int(line["quantity"]),
            ]
            for line in d["lines"]
        ]
        state["channel"] = d["channel"]
        self._sold(out, state, 1)

    @on("order.cancelled")
    def _cancelled(self, state: State, event: Event, out: list[Change]) -> None:
        if "sold" in state:
            self._sold(out, state, -1)

    @staticmethod
    def _sold(out: list[Change], state: State, sign: int) -> None:
        for sku, supplier, category, quantity in state["sold"]:
            key = {
                "sku": sku,
                "supplier": supplier,
                "category": category,
                "channel": state["channel"],
            }
            out.append(Increment(SOLD, key, {"items": sign * quantity, "order_lines": sign}))

    # ------------------------------------------------------------ reasons
    @on("rma.requested", "rma.blind_return_matched", "rma.in_store_return_recorded")
    def _returned(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        state["channel"] = d["order_channel"]
        state["currency"] = d["currency"]
        state["lines"] = {
            str(line["line_no"]): {
                "sku": line["sku"],
                "supplier": line.get("supplier", UNKNOWN),
                "category": line.get("category", UNKNOWN),
                "reason": line["reason"],
                "quantity": int(line["quantity"]),
                "price": str(money(line["unit_price"])),
            }
            for line in d["lines"]
        }
        for line in state["lines"].values():
            out.append(
                Increment(
                    REASONS,
                    self._reason_key(state, line),
                    {"returns": 1, "items": line["quantity"]},
                )
            )
        self._decisions(state, d.get("decisions", ()))

    @on("rma.authorized", "rma.held_for_review")
    def _decided(self, state: State, event: Event, out: list[Change]) -> None:
        self._decisions(state, event.data.get("decisions", ()))

    @on("rma.rejected")
    def _rejected(self, state: State, event: Event, out: list[Change]) -> None:
        refused = {str(d["line_no"]) for d in event.data.get("decisions", ()) if not d["accepted"]}
        lines = state.get("lines", {})
        # A refusal by review names no line: the whole return was refused.
        for line_no in refused or set(lines):
            line = lines.get(line_no)
            if line is not None:
                out.append(Increment(REASONS, self._reason_key(state, line), {"rejected": 1}))

    @staticmethod
    def _reason_key(state: State, line: dict[str, Any]) -> dict[str, str]:
        return {
            "reason": line["reason"],
            "sku": line["sku"],
            "supplier": line["supplier"],
            "category": line["category"],
            "channel": state["channel"],
        }

    @staticmethod
    def _decisions(state: State, decisions: Any) -> None:
        state["fees"] = {
            str(d["line_no"]): str(money(d["restocking_fee"])) for d in decisions if d["accepted"]
        }

    # ------------------------------------------------------------ costs
    def _cost(
        self, out: list[Change], state: State, supplier: str, sku: str, **deltas: Any
    ) -> None:
        key = {"supplier": supplier, "sku": sku, "currency": state.get("currency", "EUR")}
        out.append(Increment(COSTS, key, deltas))

    @on("rma.items_inspected")
    def _inspected(self, state: State, event: Event, out: list[Change]) -> None:
        start = int(state.get("inspected", 0))
        lines = state.get("lines", {})
        legs = state.setdefault("legs", {})
        for index, item in enumerate(event.data["items"], start=start):
            line = lines.get(str(item.get("line_no")))
            supplier = line["supplier"] if line else UNKNOWN
            quantity = int(item["quantity"])
            disposition = item["disposition"]
            if disposition == "scrap":
                price = Decimal(line["price"]) if line else Decimal(0)
                self._cost(
                    out,
                    state,
                    supplier,
                    item["sku"],
                    scrapped_items=quantity,
                    scrapped_value=price * quantity,
                )
            elif disposition == "repair":
                legs[f"L{index + 1}"] = [supplier, item["sku"], "repair"]
                self._cost(out, state, supplier, item["sku"], open_repair_legs=1)
            elif disposition == "return_to_vendor":
                legs[f"L{index + 1}"] = [supplier, item["sku"], "vendor"]
                self._cost(out, state, supplier, item["sku"], open_vendor_legs=1)
        state["inspected"] = start + len(event.data["items"])

    # ------------------------------------------------------------ blind returns (issue 11)
    def _unplaced(self, out: list[Change], sku: str, **deltas: Any) -> None:
        """Costs booked by an inspection before the match: no supplier, and ``_cost``'s
        default currency (the return had none yet)."""
        key = {"supplier": UNKNOWN, "sku": sku, "currency": "EUR"}
        out.append(Increment(COSTS, key, deltas))

    @on("rma.blind_inspection_assessed")
    def _blind_assessed(self, state: State, event: Event, out: list[Change]) -> None:
        # The match names the supplier and price of what was inspected before it.
        lines = state.get("lines", {})
        legs = state.get("legs", {})
        for index, item in enumerate(event.data["items"]):
            line = lines.get(str(item.get("line_no")))
            if line is None:
                continue
            sku, quantity = item["sku"], int(item["quantity"])
            if item["disposition"] == "scrap":
                self._unplaced(out, sku, scrapped_items=-quantity)
                price = Decimal(line["price"])
                self._cost(
                    out,
                    state,
                    line["supplier"],
                    sku,
                    scrapped_items=quantity,
                    scrapped_value=price * quantity,
                )
            leg = legs.get(f"L{index + 1}")
            if leg is not None and leg[0] == UNKNOWN:
                column = "open_repair_legs" if leg[2] == "repair" else "open_vendor_legs"
                self._unplaced(out, sku, **{column: -1})
                self._cost(out, state, line["supplier"], sku, **{column: 1})
                leg[0] = line["supplier"]

    @on("rma.blind_return_linked")
    def _blind_linked(self, state: State, event: Event, out: list[Change]) -> None:
        # The linked return books these goods: what this parcel's inspection booked goes.
        for item in event.data.get("withdrawn", ()):
            if item["disposition"] == "scrap":
                self._unplaced(out, item["sku"], scrapped_items=-int(item["quantity"]))
        for leg_id in sorted(state.get("legs", {})):
            self._close_leg(state, leg_id, out)

    def _close_leg(self, state: State, leg_id: str, out: list[Change], **more: Any) -> None:
        leg = state.get("legs", {}).pop(leg_id, None)
        if leg is not None:
            supplier, sku, kind = leg
            column = "open_repair_legs" if kind == "repair" else "open_vendor_legs"
            self._cost(out, state, supplier, sku, **{column: -1}, **more)

    @on("rma.repair_completed")
    def _repair_completed(self, state: State, event: Event, out: list[Change]) -> None:
        if event.data["outcome"] == "beyond_repair":  # nothing comes back to restock
            self._close_leg(state, event.data["leg_id"], out)

    @on("rma.repaired_item_restocked")
    def _repaired_restocked(self, state: State, event: Event, out: list[Change]) -> None:
        self._close_leg(state, event.data["leg_id"], out)

    @on("rma.vendor_item_returned")
    def _back_from_vendor(self, state: State, event: Event, out: list[Change]) -> None:
        self._close_leg(state, event.data["leg_id"], out)

    @on("rma.supplier_credit_received")
    def _supplier_credit(self, state: State, event: Event, out: list[Change]) -> None:
        self._close_leg(
            state, event.data["leg_id"], out, supplier_credits=money(event.data["amount"])
        )

    @on("rma.refund_requested")
    def _refund_requested(self, state: State, event: Event, out: list[Change]) -> None:
        # The domain puts the return's fee on one payout only (``Return.unbilled_fee``): the
        # fee is kept when the refund that carries it settles.
        state.setdefault("fee_carried", {})[event.data["refund_id"]] = bool(
            money(event.data.get("restocking_fee"))
        )

    @on("rma.refund_settled")
    def _refund_settled(self, state: State, event: Event, out: list[Change]) -> None:
        fee_kept = state.get("fee_carried", {}).get(event.data["refund_id"], False)
        self._paid_back(state, money(event.data["amount"]), out, fee_kept=fee_kept)

    @on("rma.store_credit_issued")
    def _store_credit(self, state: State, event: Event, out: list[Change]) -> None:
        total = money(event.data["amount"]) + money(event.data["bonus"])
        fee_kept = bool(money(event.data.get("restocking_fee")))
        self._paid_back(state, total, out, fee_kept=fee_kept)

    def _paid_back(
        self, state: State, total: Decimal, out: list[Change], *, fee_kept: bool
    ) -> None:
        lines = state.get("lines", {})
        if not lines:
            return
        numbers = sorted(lines, key=int)
        weights = [Decimal(lines[n]["price"]) * lines[n]["quantity"] for n in numbers]
        fees = state.get("fees", {})
        parts = split_pro_rata(total, weights, state.get("currency"))
        for line_no, part in zip(numbers, parts, strict=True):
            line = lines[line_no]
            deltas: dict[str, Decimal] = {"refunded": part}
            if fee_kept and Decimal(fees.get(line_no, "0")):
                deltas["restocking_fees_kept"] = Decimal(fees[line_no])
            self._cost(out, state, line["supplier"], line["sku"], **deltas)
