"""The discrepancy queue: one row per ``rma.refund_discrepancy``, for finance to reconcile.

A discrepancy is a settlement (or a provider's file) that disagreed with the refund
instruction; the Return aggregate records it and changes nothing else, so here it is only
shown: appended once per event (a replay inserts nothing), with the refund's provider and
what was expected. ``GET /v1/queues/discrepancies``, ``GET /v1/refunds/discrepancies`` and
the daily reconciliation read it.
"""

from __future__ import annotations

from typing import Any

from projections.core import RETURN, Append, Change, Event, Reducer, State, day_of, money, on
from projections.schema import MONEY, Column, Index, Table, text

DISCREPANCIES = Table(
    "rm_refund_discrepancies",
    (
        text("id", not_null=True),
        text("refund_id", not_null=True),
        text("return_id", not_null=True),
        text("rma_number"),
        text("payment_id"),
        text("provider", not_null=True),
        text("kind", not_null=True),
        text("reason", not_null=True),
        text("provider_reference"),
        Column("amount", MONEY, not_null=True),
        text("currency", not_null=True),
        Column("expected", MONEY),
        text("expected_currency"),
        Column("at", "timestamptz", not_null=True),
        Column("day", "date", not_null=True),
    ),
    key=("id",),
    indexes=(
        Index("by_age", '"at"'),
        Index("by_day", '"day", "provider"'),
        Index("by_refund", '"refund_id"'),
    ),
)
TABLE = DISCREPANCIES.name
# Discrepancies recorded before they named their kind (older events).
UNSPECIFIED = "unspecified"


class RefundDiscrepancies(Reducer):
    name = "discrepancies"
    kinds = (RETURN,)

    @property
    def tables(self) -> tuple[Table, ...]:
        return (DISCREPANCIES,)

    @on("rma.authorized", "rma.blind_return_matched", "rma.in_store_return_recorded")
    def _numbered(self, state: State, event: Event, out: list[Change]) -> None:
        state["rma_number"] = event.data["rma_number"]

    @on("rma.refund_requested")
    def _requested(self, state: State, event: Event, out: list[Change]) -> None:
        # Each payment's method: the provider of discrepancies recorded without one.
        state.setdefault("refunds", {})[event.data["refund_id"]] = {
            str(a.get("payment_id")): a["method"] for a in event.data["allocations"]
        }

    @on("rma.refund_discrepancy")
    def _discrepancy(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        expected = d.get("expected")
        row: dict[str, Any] = {
            "refund_id": d["refund_id"],
            "return_id": event.aggregate_id,
            "rma_number": state.get("rma_number"),
            "payment_id": d.get("payment_id"),
            "provider": d.get("provider") or self._provider(state, d),
            "kind": d.get("kind") or UNSPECIFIED,
            "reason": d["reason"],
            "provider_reference": d.get("provider_reference") or None,
            "amount": money(d["amount"]),
            "currency": d["amount"]["currency"],
            "expected": money(expected) if expected else None,
            "expected_currency": expected["currency"] if expected else None,
            "at": event.time,
            "day": day_of(event.time),
        }
        out.append(Append(TABLE, event.id, row))

    @staticmethod
    def _provider(state: State, data: Any) -> str:
        methods: dict[str, str] = state.get("refunds", {}).get(data["refund_id"], {})
        method = methods.get(str(data.get("payment_id")))
        return method or "+".join(sorted(set(methods.values()))) or "unknown"
