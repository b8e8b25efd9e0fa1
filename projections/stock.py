"""Stock levels per SKU and location, with every movement kept.

Buckets: available, quarantined, in_repair, returned_to_vendor, scrapped (cumulative: those
items left the sellable stock for good), expected_returns (authorized, not yet here) and
reserved (on the shelf, promised to an exchange's replacement order until it ships or is
cancelled: ``available_to_promise`` = available - reserved, a generated column).

A count means "at ``counted_at`` there were N": ``available`` is the latest count (by
``counted_at``) plus every available movement that happened after it, in (time, event-store
position) order, the position breaking ties only. Neither arrival order nor the event store's
order decides, so a count taken at 07:00 and reported at 10:00 keeps a 09:00 restock, and
the live level equals a replay whatever the partitions' lag. Movements add to ``available``
as increments; a count sets ``counted``/``counted_at``/``counted_position`` (the inventory
aggregate owns them: an upsert, skipped for a count older than the row's) and a ``Rebase``
recomputes the row from ``rm_stock_movements``. A movement that happened at or before the
row's count (it arrived after the count) triggers the same recomputation. For this table a
``Rebase``'s position is the movement's time in microseconds since the epoch (``mark``): the
store keeps the earliest of a batch and STOCK_REBASE_SQL compares it with ``counted_at``.

Legs (README "Repair and return-to-vendor legs"): an item stays ``in_repair`` at the location
it was inspected until it is back in stock (to ``available`` where the WMS put it; a unit the
repair centre replaced takes the faulty one's place, so stock moves the same way) or found
unrepairable (to ``scrapped``). It stays ``returned_to_vendor`` while the supplier has it; the
supplier's credit ends it there (the supplier owns it now), and an item the supplier sends
back goes to ``available`` where it was put.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from projections.core import (
    INVENTORY,
    ORDER,
    RETURN,
    Append,
    Change,
    Event,
    Increment,
    KeyTuple,
    Rebase,
    Reducer,
    State,
    Upsert,
    key_of,
    on,
    parse_time,
)
from projections.schema import STOCK_LEVELS, STOCK_MOVEMENTS, STOCK_REBASE_SQL, Bucket, Table

LEVELS = STOCK_LEVELS.name
MOVEMENTS = STOCK_MOVEMENTS.name
BUCKET_OF_DISPOSITION = {
    "restock": Bucket.AVAILABLE,
    "quarantine": Bucket.QUARANTINED,
    "repair": Bucket.IN_REPAIR,
    "return_to_vendor": Bucket.RETURNED_TO_VENDOR,
    "scrap": Bucket.SCRAPPED,
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def mark(moment: datetime) -> int:
    """A moment as whole microseconds since the epoch (exact: both sides keep microseconds)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def counted_at(event: Event) -> datetime:
    """When a count was taken: recorded on the event since counts carry it, else its time."""
    moment = event.data.get("counted_at")
    return parse_time(moment) if moment else event.time


class _Moves:
    """Movements of one event, numbered so each gets a stable id."""

    def __init__(self, event: Event, out: list[Change]) -> None:
        self.event, self.out, self.n = event, out, 0

    def add(self, sku: str, location: str, bucket: Bucket, delta: int, kind: str) -> None:
        if delta == 0:
            return
        key = {"sku": sku, "location_id": location}
        self._append(key, bucket, kind, delta=delta, counted=None)
        # ``.value``: a plain str, as a column name and a JSON key must be.
        self.out.append(Increment(LEVELS, key, {bucket.value: delta}))
        if bucket is Bucket.AVAILABLE:
            self.out.append(Rebase(LEVELS, key, mark(self.event.time)))

    def count(self, sku: str, location: str, quantity: int, state: State) -> None:
        """Kept as a movement always; the row's base only if it is the latest count taken
        (this aggregate's events come in version order, so a later one has a higher position)."""
        key = {"sku": sku, "location_id": location}
        taken = counted_at(self.event)
        self._append(key, Bucket.AVAILABLE, "count", delta=None, counted=quantity, at=taken)
        if mark(taken) < int(state.get("counted_mark", -(2**62))):
            return
        state["counted_mark"] = mark(taken)
        self.out.append(
            Upsert(
                LEVELS,
                key,
                {
                    "counted": quantity,
                    "counted_position": self.event.position,
                    "counted_at": taken,
                },
            )
        )
        self.out.append(Rebase(LEVELS, key, mark(taken)))

    def _append(
        self,
        key: dict[str, str],
        bucket: Bucket,
        kind: str,
        *,
        delta: int | None,
        counted: int | None,
        at: datetime | None = None,
    ) -> None:
        self.n += 1
        self.out.append(
            Append(
                MOVEMENTS,
                f"{self.event.id}:{self.n}",
                {
                    **key,
                    "bucket": bucket.value,
                    "delta": delta,
                    "counted": counted,
                    "kind": kind,
                    "event_id": self.event.id,
                    "event_type": self.event.type,
                    "position": self.event.position,
                    "at": at or self.event.time,
                },
            )
        )


def _reserve(state: State, event: Event, out: list[Change]) -> None:
    """An exchange's replacement order promises its lines where it will ship from. The
    order's own state keeps what is still held per line, so only its fulfilment or
    cancellation (this aggregate's later events) can release it, and never more."""
    location = event.data["reservation_location"]
    held: dict[str, int] = {}
    moves = _Moves(event, out)
    for line in event.data["lines"]:
        quantity = int(line["quantity"])
        held[str(line["line_no"])] = held.get(str(line["line_no"]), 0) + quantity
        moves.add(line["sku"], location, Bucket.RESERVED, quantity, "reserved")
    state["reserved"] = {"location": location, "lines": held}


def _release(
    state: State, moves: _Moves, kind: str, shipped: list[tuple[str, int]] | None = None
) -> None:
    """Releases what shipped (a fulfilment's lines, at most what is held) or everything still
    held (a cancellation: ``shipped`` None)."""
    reserved = state.get("reserved")
    if not reserved:
        return
    held: dict[str, int] = reserved["lines"]
    skus = state.get("skus", {})
    for line_no, quantity in sorted(held.items()) if shipped is None else shipped:
        released = min(quantity, held.get(line_no, 0))
        if released > 0 and line_no in skus:
            held[line_no] -= released
            moves.add(skus[line_no], reserved["location"], Bucket.RESERVED, -released, kind)


class StockLevels(Reducer):
    name = "stock"
    kinds = (ORDER, RETURN, INVENTORY)
    # The one definition of this topic's name: adapters/driven/kafka/topics.py derives from it.
    outbound_topic: ClassVar[str] = "oms.stock-levels.v1"
    rebase_sql: ClassVar[Mapping[str, str]] = {LEVELS: STOCK_REBASE_SQL}

    @property
    def tables(self) -> tuple[Table, ...]:
        return (STOCK_LEVELS, STOCK_MOVEMENTS)

    def message_key(self, table: str, row: Mapping[str, Any]) -> str | None:
        return f"{row['sku']}@{row['location_id']}" if table == LEVELS else None

    # ------------------------------------------------------------ inventory (the WMS)
    @on("inventory.counted")
    def _counted(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        _Moves(event, out).count(d["sku"], d["location_id"], int(d["quantity"]), state)

    @on("inventory.adjusted")
    def _adjusted(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        _Moves(event, out).add(
            d["sku"], d["location_id"], Bucket.AVAILABLE, int(d["delta"]), "adjustment"
        )

    # ------------------------------------------------------------ orders
    @on("order.placed")
    def _placed(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        state["skus"] = {str(line["line_no"]): line["sku"] for line in d["lines"]}
        if d["channel"] == "store" and d.get("store_id"):
            # Sold and handed over at the counter: the order is fulfilled as it is placed.
            moves = _Moves(event, out)
            for line in d["lines"]:
                moves.add(
                    line["sku"], d["store_id"], Bucket.AVAILABLE, -int(line["quantity"]), "sale"
                )
        elif d.get("reservation_location"):
            _reserve(state, event, out)

    @on("order.lines_fulfilled")
    def _fulfilled(self, state: State, event: Event, out: list[Change]) -> None:
        moves = _Moves(event, out)
        skus = state.get("skus", {})
        for line in event.data["lines"]:
            sku = skus.get(str(line["line_no"]))
            if sku is not None:
                moves.add(
                    sku,
                    event.data["location_id"],
                    Bucket.AVAILABLE,
                    -int(line["quantity"]),
                    "fulfilment",
                )
        shipped = [(str(ln["line_no"]), int(ln["quantity"])) for ln in event.data["lines"]]
        _release(state, moves, "fulfilment", shipped)

    @on("order.cancelled")
    def _cancelled(self, state: State, event: Event, out: list[Change]) -> None:
        _release(state, _Moves(event, out), "cancelled")

    # ------------------------------------------------------------ returns
    @on("rma.requested", "rma.blind_return_matched", "rma.in_store_return_recorded")
    def _lines(self, state: State, event: Event, out: list[Change]) -> None:
        expected: dict[str, int] = {}
        for line in event.data["lines"]:
            expected[line["sku"]] = expected.get(line["sku"], 0) + int(line["quantity"])
        state["lines"] = expected

    @on("rma.authorized")
    def _authorized(self, state: State, event: Event, out: list[Change]) -> None:
        destination = event.data["destination_warehouse"]
        state["destination"] = destination
        state["expected"] = dict(state.get("lines", {}))
        moves = _Moves(event, out)
        for sku, quantity in sorted(state["expected"].items()):
            moves.add(sku, destination, Bucket.EXPECTED_RETURNS, quantity, "expected")

    @on("rma.parcel_received")
    def _received(self, state: State, event: Event, out: list[Change]) -> None:
        expected: dict[str, int] = state.get("expected", {})
        moves = _Moves(event, out)
        for item in event.data["items"]:
            arrived = min(int(item["quantity"]), expected.get(item["sku"], 0))
            if arrived:
                expected[item["sku"]] -= arrived
                moves.add(
                    item["sku"], state["destination"], Bucket.EXPECTED_RETURNS, -arrived, "received"
                )

    @on("rma.cancelled", "rma.expired", "rma.closed", "rma.keep_item_accepted")
    def _nothing_more_expected(self, state: State, event: Event, out: list[Change]) -> None:
        expected: dict[str, int] = state.pop("expected", {})
        moves = _Moves(event, out)
        for sku, quantity in sorted(expected.items()):
            moves.add(sku, state["destination"], Bucket.EXPECTED_RETURNS, -quantity, "released")

    @on("rma.items_inspected")
    def _inspected(self, state: State, event: Event, out: list[Change]) -> None:
        # Leg ids are "L<n>" over every item inspected on this return so far
        # (domain/returns/state.py).
        start = int(state.get("inspected", 0))
        legs: dict[str, Any] = state.setdefault("legs", {})
        moves = _Moves(event, out)
        for index, item in enumerate(event.data["items"], start=start):
            bucket = BUCKET_OF_DISPOSITION[item["disposition"]]
            quantity = int(item["quantity"])
            moves.add(item["sku"], item["location_id"], bucket, quantity, "inspection")
            if item["disposition"] in ("repair", "return_to_vendor"):
                legs[f"L{index + 1}"] = [item["sku"], item["location_id"], quantity]
        state["inspected"] = start + len(event.data["items"])

    @on("rma.repair_completed")
    def _repair_completed(self, state: State, event: Event, out: list[Change]) -> None:
        if event.data["outcome"] == "replaced":
            # Remembered for the restock's movement kind: a new unit, not the one sent.
            state.setdefault("replaced", {})[event.data["leg_id"]] = "replaced"
        leg = state.get("legs", {}).get(event.data["leg_id"])
        if leg is not None and event.data["outcome"] == "beyond_repair":
            sku, location, quantity = leg
            moves = _Moves(event, out)
            moves.add(sku, location, Bucket.IN_REPAIR, -quantity, "beyond_repair")
            moves.add(sku, location, Bucket.SCRAPPED, quantity, "beyond_repair")

    @on("rma.repaired_item_restocked")
    def _repaired_restocked(self, state: State, event: Event, out: list[Change]) -> None:
        leg = state.get("legs", {}).get(event.data["leg_id"])
        if leg is not None:
            sku, location, quantity = leg
            kind = state.get("replaced", {}).get(event.data["leg_id"], "repaired")
            moves = _Moves(event, out)
            moves.add(sku, location, Bucket.IN_REPAIR, -quantity, kind)
            moves.add(sku, event.data["location_id"], Bucket.AVAILABLE, quantity, kind)

    @on("rma.supplier_credit_received")
    def _credited(self, state: State, event: Event, out: list[Change]) -> None:
        leg = state.get("legs", {}).get(event.data["leg_id"])
        if leg is not None:
            sku, location, quantity = leg
            _Moves(event, out).add(
                sku, location, Bucket.RETURNED_TO_VENDOR, -quantity, "supplier_credit"
            )

    @on("rma.vendor_item_returned")
    def _back_from_vendor(self, state: State, event: Event, out: list[Change]) -> None:
        leg = state.get("legs", {}).get(event.data["leg_id"])
        if leg is not None:
            sku, location, quantity = leg
            moves = _Moves(event, out)
            moves.add(sku, location, Bucket.RETURNED_TO_VENDOR, -quantity, "vendor_returned")
            moves.add(sku, event.data["location_id"], Bucket.AVAILABLE, quantity, "vendor_returned")

    # ------------------------------------------------------------ blind returns (issue 11)
    @on("rma.blind_return_linked")
    def _blind_linked(self, state: State, event: Event, out: list[Change]) -> None:
        # The linked return owns the goods (inspected or to be): what this parcel's own
        # inspection placed comes back out, so stock counts them once.
        moves = _Moves(event, out)
        for item in event.data.get("withdrawn", ()):
            bucket = BUCKET_OF_DISPOSITION[item["disposition"]]
            moves.add(item["sku"], item["location_id"], bucket, -int(item["quantity"]), "linked")
        state.pop("legs", None)

    @on("rma.blind_return_closed_unidentified")
    def _blind_unidentified(self, state: State, event: Event, out: list[Change]) -> None:
        # Uninspected goods are on a shelf all the same: they take the default disposition.
        d = event.data
        if not d.get("placed") or d.get("disposition") is None:
            return
        bucket = BUCKET_OF_DISPOSITION[d["disposition"]]
        moves = _Moves(event, out)
        for item in d["placed"]:
            moves.add(item["sku"], d["location_id"], bucket, int(item["quantity"]), "unidentified")

    # ------------------------------------------------------------ the in-memory twin
    def rebase_in_memory(
        self,
        tables: dict[str, dict[KeyTuple, dict[str, Any]]],
        table: str,
        key: dict[str, Any],
        position: int,
    ) -> None:
        """STOCK_REBASE_SQL on dicts, for InMemoryReadModel (``position``: a ``mark``)."""
        row = tables[table].get(key_of(key))
        if row is None or row.get("counted_position") is None:
            return
        if position > mark(row["counted_at"]):
            return
        base = (row["counted_at"], row["counted_position"])
        later = sum(
            m["delta"]
            for m in tables[MOVEMENTS].values()
            if m["sku"] == key["sku"]
            and m["location_id"] == key["location_id"]
            and m["bucket"] == Bucket.AVAILABLE
            and m["kind"] != "count"
            and (m["at"], m["position"]) > base
        )
        row[Bucket.AVAILABLE.value] = row["counted"] + later
