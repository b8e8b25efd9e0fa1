"""RMA status for the portal and customer service: one row per return, and its timeline.

The row belongs to one aggregate, so it is rewritten whole from the state on every event
(an upsert); the status comes from the Return aggregate's own status machine
(``domain.returns.status_after``), so the read model never invents a state.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from domain.returns import ReturnStatus, status_after
from projections.core import (
    RETURN,
    Append,
    Change,
    Event,
    Reducer,
    State,
    Upsert,
    money,
    on,
    parse_time,
    summary_of,
)
from projections.schema import RMA_STATUS, RMA_TIMELINE, Table

STATUS = RMA_STATUS.name
TIMELINE = RMA_TIMELINE.name

SUMMARY_FIELDS = (
    "rma_number",
    "order_number",
    "receipt_id",
    "warehouse_id",
    "store_id",
    "refund_id",
    "credit_id",
    "leg_id",
    "amount",
    "bonus",
    "refund_due",
    "expected_refund",
    "refund_amount",
    "code",
    "reason",
    "outcome",
    "carrier",
    "label_reference",
    "matched_by",
    "state_at_arrival",
    "replacement_order_number",
    "repair_center",
    "vendor_rma",
    "reference",
    "location_id",
    "replacement_serial",
    "to_refund_method",
)

TIMES = ("requested_at", "authorized_at", "received_at", "inspected_at", "refunded_at", "closed_at")
AMOUNTS = ("expected_refund", "restocking_fee", "refund_due", "refunded", "store_credit")


class RmaStatus(Reducer):
    name = "rma_status"
    kinds = (RETURN,)
    # The one definition of this topic's name: adapters/driven/kafka/topics.py derives from it.
    outbound_topic: ClassVar[str] = "rma.status.v1"

    @property
    def tables(self) -> tuple[Table, ...]:
        return (RMA_STATUS, RMA_TIMELINE)

    def message_key(self, table: str, row: Mapping[str, Any]) -> str | None:
        # Blind parcels have no RMA number until they are matched.
        return str(row["rma_number"] or row["return_id"]) if table == STATUS else None

    def fold(self, state: State, event: Event, out: list[Change]) -> None:
        super().fold(state, event, out)
        refunds: dict[str, str] = state.get("refunds", {})
        state["status"] = status_after(
            ReturnStatus(state.get("status", ReturnStatus.REQUESTED)),
            event.type,
            refunds_in_flight=any(status == "requested" for status in refunds.values()),
        ).value
        out.append(Upsert(STATUS, {"return_id": event.aggregate_id}, self._row(state, event)))
        cause = event.data.get("cause") or {}
        out.append(
            Append(
                TIMELINE,
                event.id,
                {
                    "return_id": event.aggregate_id,
                    "version": event.version,
                    "event_type": event.type,
                    "status": state["status"],
                    "actor": cause.get("actor"),
                    "source": cause.get("source"),
                    "position": event.position,
                    "at": event.time,
                    "summary": summary_of(event.data, SUMMARY_FIELDS, event.type),
                },
            )
        )

    @staticmethod
    def _row(state: State, event: Event) -> dict[str, Any]:
        row: dict[str, Any] = {
            name: state.get(name)
            for name in (
                "rma_number",
                "order_id",
                "order_number",
                "customer_id",
                "status",
                "channel",
                "order_channel",
                "method",
                "refund_method",
                "currency",
                "store_id",
                "destination_warehouse",
                "label_reference",
                "replacement_order_number",
                "rejection_code",
                "closed_outcome",
            )
        }
        row["blind"] = bool(state.get("blind"))
        row["lines"] = state.get("lines", [])
        for name in AMOUNTS:
            row[name] = None if state.get(name) is None else Decimal(state[name])
        for name in TIMES:
            row[name] = None if state.get(name) is None else parse_time(state[name])
        row["updated_at"] = event.time
        row["version"] = event.version
        row["last_event"] = event.type
        return row

    # ------------------------------------------------------------ what each event records
    @staticmethod
    def _opened(state: State, event: Event, *names: str) -> None:
        d = event.data
        for name in ("order_id", "order_number", "customer_id", "currency", "rma_number", *names):
            if d.get(name) is not None:
                state[name] = d[name]
        state["lines"] = [
            {
                "line_no": line["line_no"],
                "sku": line["sku"],
                "quantity": line["quantity"],
                "reason": line["reason"],
                "unit_price": line["unit_price"],
            }
            for line in d["lines"]
        ]

    @on("rma.requested")
    def _requested(self, state: State, event: Event, out: list[Change]) -> None:
        self._opened(state, event, "channel", "order_channel", "method", "refund_method")
        state["requested_at"] = event.time.isoformat()

    @on("rma.authorized")
    def _authorized(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        state.update(
            rma_number=d["rma_number"],
            destination_warehouse=d["destination_warehouse"],
            label_reference=d["label_reference"],
            expected_refund=str(money(d["expected_refund"])),
            restocking_fee=str(money(d["restocking_fee"])),
            authorized_at=event.time.isoformat(),
        )

    @on("rma.rejected")
    def _rejected(self, state: State, event: Event, out: list[Change]) -> None:
        state["rejection_code"] = event.data["code"]

    @on("rma.label_issued")
    def _label(self, state: State, event: Event, out: list[Change]) -> None:
        state["label_reference"] = event.data["label_reference"]

    @on("rma.parcel_received", "rma.unexpected_parcel_received")
    def _parcel(self, state: State, event: Event, out: list[Change]) -> None:
        state.setdefault("received_at", event.time.isoformat())

    @on("rma.blind_return_detected")
    def _blind(self, state: State, event: Event, out: list[Change]) -> None:
        state.update(
            blind=True,
            channel="blind",
            requested_at=event.time.isoformat(),
            received_at=event.time.isoformat(),
            destination_warehouse=event.data["warehouse_id"],
        )

    @on("rma.blind_return_matched")
    def _matched(self, state: State, event: Event, out: list[Change]) -> None:
        self._opened(state, event, "order_channel")
        state["restocking_fee"] = str(money(event.data["restocking_fee"]))

    @on("rma.in_store_return_recorded")
    def _in_store(self, state: State, event: Event, out: list[Change]) -> None:
        self._opened(state, event, "order_channel", "refund_method", "store_id")
        state.update(
            channel="store",
            method="store",
            restocking_fee=str(money(event.data["restocking_fee"])),
            requested_at=event.time.isoformat(),
            received_at=event.time.isoformat(),
        )

    @on("rma.items_inspected")
    def _inspected(self, state: State, event: Event, out: list[Change]) -> None:
        due = Decimal(state.get("refund_due") or 0) + money(event.data["refund_due"])
        state.update(refund_due=str(due), inspected_at=event.time.isoformat())

    @on("rma.refund_requested")
    def _refund_requested(self, state: State, event: Event, out: list[Change]) -> None:
        state.setdefault("refunds", {})[event.data["refund_id"]] = "requested"

    @on("rma.refund_failed")
    def _refund_failed(self, state: State, event: Event, out: list[Change]) -> None:
        state.setdefault("refunds", {})[event.data["refund_id"]] = "failed"

    @on("rma.refund_settled")
    def _settled(self, state: State, event: Event, out: list[Change]) -> None:
        refunds: dict[str, str] = state.setdefault("refunds", {})
        refunds[event.data["refund_id"]] = "settled"
        refunded = Decimal(state.get("refunded") or 0) + money(event.data["amount"])
        state.update(refunded=str(refunded), refunded_at=event.time.isoformat())

    @on("rma.store_credit_issued")
    def _store_credit(self, state: State, event: Event, out: list[Change]) -> None:
        credit = Decimal(state.get("store_credit") or 0)
        credit += money(event.data["amount"]) + money(event.data["bonus"])
        state.update(store_credit=str(credit), refunded_at=event.time.isoformat())

    @on("rma.exchange_ordered")
    def _exchange(self, state: State, event: Event, out: list[Change]) -> None:
        state["replacement_order_number"] = event.data["replacement_order_number"]

    @on("rma.resolution_changed")
    def _resolution(self, state: State, event: Event, out: list[Change]) -> None:
        state["refund_method"] = event.data["to_refund_method"]

    @on("rma.closed")
    def _closed(self, state: State, event: Event, out: list[Change]) -> None:
        state.update(closed_outcome=event.data["outcome"], closed_at=event.time.isoformat())

    # ------------------------------------------------------------ blind returns (issue 11)
    @on("rma.blind_inspection_assessed")
    def _blind_assessed(self, state: State, event: Event, out: list[Change]) -> None:
        # The inspection before the match added nothing due; this is what it is worth.
        state["refund_due"] = str(money(event.data["refund_due"]))

    @on("rma.blind_return_linked")
    def _blind_linked(self, state: State, event: Event, out: list[Change]) -> None:
        state.update(closed_outcome="linked", closed_at=event.time.isoformat())

    @on("rma.blind_return_closed_unidentified")
    def _blind_unidentified(self, state: State, event: Event, out: list[Change]) -> None:
        state.update(closed_outcome="unidentified", closed_at=event.time.isoformat())

    @on("rma.cancelled", "rma.expired")
    def _ended(self, state: State, event: Event, out: list[Change]) -> None:
        state["closed_at"] = event.time.isoformat()
