"""A serial's whole life: every sale, return, inspection, repair, vendor leg and restock of
one item, as entries of a timeline, each with where the item is after it.

Facts about one serial come from many aggregates (the orders that sold it, the returns that
brought it back), so no aggregate owns a per-serial row: each event appends entries (an
``Append``: insert once, whatever the order of arrival), and the current state and the
flags are read from the timeline in (time, event-store position) order when asked
(adapters/driven/readmodels/serials.py). A replay appends the same entries, so it equals
the live table.

An entry's ``state`` is where the item is after it (``STATES``), or NULL when the fact moves
nothing (a return requested: the customer still has the item). A sale (``SALES``) whose
state before it was in repair, at a vendor, or with another customer is flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from projections.core import (
    ORDER,
    RETURN,
    Append,
    Change,
    Event,
    Reducer,
    State,
    on,
    summary_of,
)
from projections.schema import SERIAL_EVENTS, Table

EVENTS = SERIAL_EVENTS.name

WITH_CUSTOMER = "with_customer"
RECEIVED = "received"
IN_STOCK = "in_stock"
QUARANTINED = "quarantined"
IN_REPAIR = "in_repair"
AT_VENDOR = "at_vendor"
SCRAPPED = "scrapped"
REPLACED = "replaced"
"""The repair centre kept the unit and sent another in its place: it is not ours any more."""
STATES = (
    WITH_CUSTOMER,
    RECEIVED,
    IN_STOCK,
    QUARANTINED,
    IN_REPAIR,
    AT_VENDOR,
    SCRAPPED,
    REPLACED,
)

SALES = ("sold", "shipped")
"""Entries that hand a serial to a customer: the ones checked for a flag."""
FLAGGED_STATES = (IN_REPAIR, AT_VENDOR)
"""States a serial must not be sold from (with another customer is checked apart)."""

STATE_OF_DISPOSITION = {
    "restock": IN_STOCK,
    "quarantine": QUARANTINED,
    "repair": IN_REPAIR,
    "return_to_vendor": AT_VENDOR,
    "scrap": SCRAPPED,
}
SUMMARY_FIELDS = (
    "receipt_id",
    "condition",
    "disposition",
    "leg_id",
    "repair_center",
    "outcome",
    "supplier",
    "vendor_rma",
    "amount",
    "code",
    "reason",
    "matched_by",
    "store_return_id",
    "replacement_serial",
    "replaced_serial",
)


class _Entries:
    """The timeline entries of one event, numbered so each gets a stable id."""

    def __init__(self, event: Event, out: list[Change]) -> None:
        self.event, self.out, self.n = event, out, 0

    def add(
        self,
        serial: str | None,
        kind: str,
        state: str | None,
        *,
        customer_id: str | None = None,
        location_id: str | None = None,
        order_number: str | None = None,
        rma_number: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        if not serial:
            return
        self.n += 1
        event = self.event
        self.out.append(
            Append(
                EVENTS,
                f"{event.id}:{self.n}",
                {
                    "serial": serial,
                    "kind": kind,
                    "state": state,
                    "customer_id": customer_id,
                    "location_id": location_id,
                    "order_number": order_number,
                    "rma_number": rma_number,
                    "aggregate_id": event.aggregate_id,
                    "event_id": event.id,
                    "event_type": event.type,
                    "position": event.position,
                    "at": event.time,
                    "summary": summary_of({**event.data, **(details or {})}, SUMMARY_FIELDS),
                },
            )
        )


def _serials(lines: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(s) for line in lines for s in line.get("serials") or ()]


class SerialLives(Reducer):
    name = "serials"
    kinds = (ORDER, RETURN)

    @property
    def tables(self) -> tuple[Table, ...]:
        return (SERIAL_EVENTS,)

    # ------------------------------------------------------------ orders
    @on("order.placed")
    def _placed(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        state["order_number"], state["customer_id"] = d["order_number"], d["customer_id"]
        store = d.get("store_id") if d["channel"] == "store" else None
        serials = _serials(d["lines"])
        state["serials"] = serials
        entries = _Entries(event, out)
        for serial in serials:
            entries.add(
                serial,
                "sold",
                WITH_CUSTOMER,
                customer_id=d["customer_id"],
                location_id=store,
                order_number=d["order_number"],
            )

    @on("order.lines_fulfilled")
    def _fulfilled(self, state: State, event: Event, out: list[Change]) -> None:
        entries = _Entries(event, out)
        for serial in _serials(event.data["lines"]):
            entries.add(
                serial,
                "shipped",
                WITH_CUSTOMER,
                customer_id=state.get("customer_id"),
                location_id=event.data["location_id"],
                order_number=state.get("order_number"),
            )

    @on("order.cancelled")
    def _cancelled(self, state: State, event: Event, out: list[Change]) -> None:
        # Only an order with nothing shipped can be cancelled: serials named at placement
        # never left the shelf.
        entries = _Entries(event, out)
        for serial in state.get("serials", []):
            entries.add(serial, "sale_cancelled", IN_STOCK, order_number=state.get("order_number"))

    # ------------------------------------------------------------ returns: the customer
    def _remember(self, state: State, event: Event) -> None:
        d = event.data
        for name in ("order_number", "customer_id", "rma_number"):
            if d.get(name):
                state[name] = d[name]
        serials: dict[str, str] = state.setdefault("serials", {})
        for line in d.get("lines", ()):
            if line.get("serial"):
                serials[str(line["line_no"])] = line["serial"]

    def _each(
        self, state: State, event: Event, out: list[Change], kind: str, new_state: str | None
    ) -> None:
        entries = _Entries(event, out)
        for serial in dict.fromkeys(state.get("serials", {}).values()):
            entries.add(
                serial,
                kind,
                new_state,
                customer_id=state.get("customer_id"),
                order_number=state.get("order_number"),
                rma_number=state.get("rma_number"),
            )

    @on("rma.requested")
    def _requested(self, state: State, event: Event, out: list[Change]) -> None:
        self._remember(state, event)
        self._each(state, event, out, "return_requested", None)

    @on("rma.authorized")
    def _authorized(self, state: State, event: Event, out: list[Change]) -> None:
        self._remember(state, event)
        self._each(state, event, out, "rma_authorized", None)

    @on("rma.rejected", "rma.cancelled", "rma.expired")
    def _ended(self, state: State, event: Event, out: list[Change]) -> None:
        self._each(state, event, out, event.type.removeprefix("rma."), None)

    @on("rma.blind_return_matched")
    def _matched(self, state: State, event: Event, out: list[Change]) -> None:
        self._remember(state, event)
        self._each(state, event, out, "matched", None)

    @on("rma.in_store_return_recorded")
    def _in_store(self, state: State, event: Event, out: list[Change]) -> None:
        self._remember(state, event)
        entries = _Entries(event, out)
        for serial in dict.fromkeys(state["serials"].values()):
            entries.add(
                serial,
                "returned_in_store",
                RECEIVED,
                customer_id=state.get("customer_id"),
                location_id=event.data["store_id"],
                order_number=state.get("order_number"),
                rma_number=state.get("rma_number"),
            )

    # ------------------------------------------------------------ returns: the goods
    @on("rma.parcel_received", "rma.blind_return_detected", "rma.unexpected_parcel_received")
    def _received(self, state: State, event: Event, out: list[Change]) -> None:
        entries = _Entries(event, out)
        for item in event.data["items"]:
            entries.add(
                item.get("serial"),
                "received",
                RECEIVED,
                location_id=event.data["warehouse_id"],
                order_number=state.get("order_number"),
                rma_number=state.get("rma_number") or event.data.get("claimed_rma_number"),
            )

    @on("rma.items_inspected")
    def _inspected(self, state: State, event: Event, out: list[Change]) -> None:
        # Leg ids are "L<n>" over every item inspected on this return so far
        # (domain/returns/state.py), with or without a serial.
        start = int(state.get("inspected", 0))
        legs: dict[str, list[str]] = state.setdefault("legs", {})
        entries = _Entries(event, out)
        for index, item in enumerate(event.data["items"], start=start):
            serial = item.get("serial")
            if serial and item["disposition"] in ("repair", "return_to_vendor"):
                legs[f"L{index + 1}"] = [serial, item["location_id"]]
            entries.add(
                serial,
                "inspected",
                STATE_OF_DISPOSITION.get(item["disposition"]),
                location_id=item["location_id"],
                order_number=state.get("order_number"),
                rma_number=state.get("rma_number"),
                details={"condition": item["condition"], "disposition": item["disposition"]},
            )
        state["inspected"] = start + len(event.data["items"])

    def _leg(
        self,
        state: State,
        event: Event,
        out: list[Change],
        kind: str,
        new_state: str | None,
        location_id: str | None = None,
    ) -> None:
        leg = state.get("legs", {}).get(event.data["leg_id"])
        if leg is None:
            return
        serial, leg_location = leg
        _Entries(event, out).add(
            serial,
            kind,
            new_state,
            location_id=location_id or leg_location,
            order_number=state.get("order_number"),
            rma_number=state.get("rma_number"),
        )

    @on("rma.repair_sent")
    def _repair_sent(self, state: State, event: Event, out: list[Change]) -> None:
        self._leg(state, event, out, "repair_sent", IN_REPAIR)

    @on("rma.repair_completed")
    def _repair_completed(self, state: State, event: Event, out: list[Change]) -> None:
        outcome, replacement = event.data["outcome"], event.data.get("replacement_serial")
        leg = state.get("legs", {}).get(event.data["leg_id"])
        if outcome != "replaced" or not replacement or leg is None:
            scrapped = outcome == "beyond_repair"
            self._leg(state, event, out, "repair_completed", SCRAPPED if scrapped else None)
            return
        # The faulty unit stays with the repair centre; the new one takes its place on the
        # leg (at the repair centre until it is back in stock), so the restock moves it.
        serial, location = leg
        entries = _Entries(event, out)
        for unit, kind, unit_state in (
            (serial, "replaced", REPLACED),
            (replacement, "replacement_received", IN_REPAIR),
        ):
            entries.add(
                unit,
                kind,
                unit_state,
                location_id=location,
                order_number=state.get("order_number"),
                rma_number=state.get("rma_number"),
                details={"replaced_serial": serial} if unit == replacement else None,
            )
        state["legs"][event.data["leg_id"]] = [replacement, location]

    @on("rma.repaired_item_restocked")
    def _repaired_restocked(self, state: State, event: Event, out: list[Change]) -> None:
        self._leg(state, event, out, "restocked", IN_STOCK, event.data["location_id"])

    @on("rma.vendor_return_shipped")
    def _vendor_shipped(self, state: State, event: Event, out: list[Change]) -> None:
        self._leg(state, event, out, "vendor_shipped", AT_VENDOR)

    @on("rma.vendor_item_returned")
    def _vendor_returned(self, state: State, event: Event, out: list[Change]) -> None:
        self._leg(state, event, out, "vendor_returned", IN_STOCK, event.data["location_id"])

    @on("rma.blind_return_closed_unidentified")
    def _closed_unidentified(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        entries = _Entries(event, out)
        for item in d.get("placed") or ():
            entries.add(
                item.get("serial"),
                "closed_unidentified",
                STATE_OF_DISPOSITION.get(str(d.get("disposition"))),
                location_id=d.get("location_id"),
            )

    @on("rma.supplier_credit_received")
    def _supplier_credit(self, state: State, event: Event, out: list[Change]) -> None:
        self._leg(state, event, out, "supplier_credit", None)

    def message_key(self, table: str, row: Mapping[str, Any]) -> str | None:
        return None

    outbound_topic: ClassVar[str | None] = None
