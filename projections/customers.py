"""Customer history: what each customer bought, returned and got back, and a timeline.

Counts and money are increments (a customer's orders and returns are different aggregates
on different partitions); the return rate and the serial-returner flag are generated
columns over those counts, so they can never disagree with them.

Definitions: ``items_bought`` counts items of placed orders less cancelled ones (exchange
replacements are counted apart: nothing was bought); ``returns`` counts returns attributed
to the customer (requested, blind and matched, in store), ``rejected_returns`` those the
policy refused; ``items_returned`` counts items that physically came back (parcels, matched
blind parcels, store counters). Money is per currency in ``rm_customer_money``; the store
credit balance is credit issued plus refunds paid back to store credit less store credit
spent on orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from projections.core import (
    ORDER,
    RETURN,
    Append,
    Change,
    Event,
    Increment,
    Reducer,
    State,
    money,
    on,
    summary_of,
)
from projections.schema import Table, customer_tables

CUSTOMERS = "rm_customers"
MONEY = "rm_customer_money"
TIMELINE = "rm_customer_timeline"

SUMMARY_FIELDS = (
    "order_number",
    "rma_number",
    "channel",
    "store_id",
    "receipt_id",
    "refund_id",
    "credit_id",
    "amount",
    "bonus",
    "refund_amount",
    "expected_refund",
    "refund_due",
    "code",
    "reason",
    "outcome",
    "replacement_order_number",
    "matched_by",
)

# Customer-facing events of a return; internal ones (legs, reservations) stay out of the timeline.
RETURN_TIMELINE = {
    "rma.requested",
    "rma.authorized",
    "rma.held_for_review",
    "rma.rejected",
    "rma.label_issued",
    "rma.parcel_received",
    "rma.unexpected_parcel_received",
    "rma.blind_return_matched",
    "rma.in_store_return_recorded",
    "rma.items_inspected",
    "rma.refund_requested",
    "rma.refund_settled",
    "rma.refund_failed",
    "rma.store_credit_issued",
    "rma.exchange_ordered",
    "rma.instant_exchange_charged",
    "rma.keep_item_offered",
    "rma.keep_item_accepted",
    "rma.keep_item_lapsed",
    "rma.closed",
    "rma.cancelled",
    "rma.expired",
}


class CustomerHistory(Reducer):
    name = "customers"
    kinds = (ORDER, RETURN)
    # The one definition of this topic's name: adapters/driven/kafka/topics.py derives from it.
    outbound_topic: ClassVar[str] = "oms.customer-history.v1"

    def __init__(self, min_returns: int = 3, min_return_rate: Decimal | str = "0.5") -> None:
        """``min_returns`` kept returns and a return rate of ``min_return_rate`` or more
        flag a customer as a serial returner."""
        self.min_returns = min_returns
        self.min_return_rate = Decimal(min_return_rate)
        self._tables = customer_tables(min_returns, self.min_return_rate)

    @property
    def tables(self) -> tuple[Table, ...]:
        return self._tables

    def message_key(self, table: str, row: Mapping[str, Any]) -> str | None:
        # Keyed by primary key: on a compacted topic a money row per currency must not
        # replace the customer's counts row.
        if table == CUSTOMERS:
            return str(row["customer_id"])
        if table == MONEY:
            return f"{row['customer_id']}:{row['currency']}"
        return None

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _count(out: list[Change], customer: str, **deltas: int) -> None:
        out.append(Increment(CUSTOMERS, {"customer_id": customer}, deltas))

    @staticmethod
    def _money(out: list[Change], customer: str, currency: str, **deltas: Decimal) -> None:
        deltas = {k: v for k, v in deltas.items() if v}
        if deltas:
            out.append(Increment(MONEY, {"customer_id": customer, "currency": currency}, deltas))

    @staticmethod
    def _timeline(out: list[Change], customer: str | None, event: Event) -> None:
        if customer is None:
            return
        out.append(
            Append(
                TIMELINE,
                event.id,
                {
                    "customer_id": customer,
                    "aggregate_id": event.aggregate_id,
                    "event_type": event.type,
                    "position": event.position,
                    "at": event.time,
                    "summary": summary_of(event.data, SUMMARY_FIELDS, event.type),
                },
            )
        )

    # ------------------------------------------------------------ orders
    @on("order.placed")
    def _placed(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        customer, currency = d["customer_id"], d["currency"]
        items = sum(int(line["quantity"]) for line in d["lines"])
        paid = sum((money(p["amount"]) for p in d["payments"]), Decimal(0))
        credit = sum(
            (money(p["amount"]) for p in d["payments"] if p["method"] == "store_credit"),
            Decimal(0),
        )
        replacement = d.get("replacement_for") is not None
        state.update(
            customer=customer,
            currency=currency,
            items=items,
            paid=str(paid),
            credit=str(credit),
            replacement=replacement,
        )
        if replacement:
            self._count(out, customer, replacement_orders=1)
        else:
            self._count(out, customer, orders=1, items_bought=items)
        self._money(out, customer, currency, spent=paid, store_credit_spent=credit)
        self._timeline(out, customer, event)

    @on("order.cancelled")
    def _cancelled(self, state: State, event: Event, out: list[Change]) -> None:
        customer = state.get("customer")
        if customer is None:
            return
        if not state["replacement"]:
            self._count(out, customer, cancelled_orders=1, items_bought=-int(state["items"]))
        # A cancelled order's payments go back where they came from, store credit included.
        self._money(
            out,
            customer,
            state["currency"],
            spent=-Decimal(state["paid"]),
            store_credit_spent=-Decimal(state["credit"]),
        )
        self._timeline(out, customer, event)

    @on("order.delivered")
    def _delivered(self, state: State, event: Event, out: list[Change]) -> None:
        self._timeline(out, state.get("customer"), event)

    # ------------------------------------------------------------ returns
    @on("rma.requested")
    def _requested(self, state: State, event: Event, out: list[Change]) -> None:
        state.update(customer=event.data["customer_id"], currency=event.data["currency"])
        self._count(out, state["customer"], returns=1)
        self._timeline(out, state["customer"], event)

    @on("rma.rejected")
    def _rejected(self, state: State, event: Event, out: list[Change]) -> None:
        if state.get("customer") is not None:
            self._count(out, state["customer"], rejected_returns=1)
        self._timeline(out, state.get("customer"), event)

    @on("rma.parcel_received")
    def _parcel(self, state: State, event: Event, out: list[Change]) -> None:
        items = sum(int(item["quantity"]) for item in event.data["items"])
        if state.get("customer") is not None:
            self._count(out, state["customer"], items_returned=items)
        self._timeline(out, state.get("customer"), event)

    @on("rma.unexpected_parcel_received")
    def _unexpected_parcel(self, state: State, event: Event, out: list[Change]) -> None:
        # Its items count once, when the blind return it opened is matched to the customer.
        self._timeline(out, state.get("customer"), event)

    @on("rma.blind_return_detected")
    def _blind(self, state: State, event: Event, out: list[Change]) -> None:
        # Whose parcel this is becomes known only when it is matched.
        state["unattributed_items"] = sum(int(item["quantity"]) for item in event.data["items"])

    @on("rma.blind_return_matched")
    def _matched(self, state: State, event: Event, out: list[Change]) -> None:
        state.update(customer=event.data["customer_id"], currency=event.data["currency"])
        items = int(state.pop("unattributed_items", 0))
        self._count(out, state["customer"], returns=1, blind_returns=1, items_returned=items)
        self._timeline(out, state["customer"], event)

    @on("rma.in_store_return_recorded")
    def _in_store(self, state: State, event: Event, out: list[Change]) -> None:
        state.update(customer=event.data["customer_id"], currency=event.data["currency"])
        items = sum(int(line["quantity"]) for line in event.data["lines"])
        self._count(out, state["customer"], returns=1, in_store_returns=1, items_returned=items)
        self._timeline(out, state["customer"], event)

    @on("rma.refund_requested")
    def _refund_requested(self, state: State, event: Event, out: list[Change]) -> None:
        to_credit = sum(
            (
                money(a["amount"])
                for a in event.data["allocations"]
                if a["method"] == "store_credit"
            ),
            Decimal(0),
        )
        state.setdefault("refunds", {})[event.data["refund_id"]] = str(to_credit)
        self._timeline(out, state.get("customer"), event)

    @on("rma.refund_settled")
    def _refund_settled(self, state: State, event: Event, out: list[Change]) -> None:
        customer = state.get("customer")
        if customer is not None:
            to_credit = Decimal(state.get("refunds", {}).get(event.data["refund_id"], "0"))
            self._money(
                out,
                customer,
                state["currency"],
                refunded=money(event.data["amount"]),
                store_credit_refunded=to_credit,
            )
        self._timeline(out, customer, event)

    @on("rma.store_credit_issued")
    def _store_credit(self, state: State, event: Event, out: list[Change]) -> None:
        customer = state.get("customer")
        if customer is not None:
            issued = money(event.data["amount"]) + money(event.data["bonus"])
            self._money(out, customer, state["currency"], store_credit_issued=issued)
        self._timeline(out, customer, event)

    @on(
        *(
            RETURN_TIMELINE
            - {
                "rma.requested",
                "rma.rejected",
                "rma.parcel_received",
                "rma.unexpected_parcel_received",
                "rma.blind_return_matched",
                "rma.in_store_return_recorded",
                "rma.refund_requested",
                "rma.refund_settled",
                "rma.store_credit_issued",
            }
        )
    )
    def _other_return_event(self, state: State, event: Event, out: list[Change]) -> None:
        self._timeline(out, state.get("customer"), event)
