"""JSON views of aggregates for the API: curated fields, no internal bookkeeping."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from domain.returns import Return, ReturnState
from domain.returns.state import OPEN_LEG_STATUSES

_STATE = TypeAdapter(ReturnState)
RETURN_FIELDS = (
    "status",
    "rma_number",
    "order_number",
    "customer_id",
    "channel",
    "method",
    "refund_method",
    "currency",
    "lines",
    "decisions",
    "destination_warehouse",
    "label_reference",
    "instructions",
    "expected_refund",
    "restocking_fee",
    "shipping_refund",
    "keep_item_eligible",
    "keep_item_offer",
    "keep_item_expires_at",
    "keep_item_accepted",
    "requested_at",
    "authorized_at",
    "rejection_code",
    "refund_due",
    "refunds",
    "store_credit",
    "store_id",
    "closed_outcome",
    "exchange_refund_difference",
    "exchange_amount_due",
    "replacement_order_number",
    "instant_exchange",
    "instant_exchange_charged",
)


def return_view(rma: Return, *, legs: bool = False) -> dict[str, Any]:
    """``legs``: add the repair and vendor legs (staff only: suppliers, references and
    credits are the shop's business, not the customer's)."""
    state = _STATE.dump_python(rma.state, mode="json")
    view = {"return_id": str(rma.id), "version": rma.version}
    view.update({name: state[name] for name in RETURN_FIELDS})
    outstanding = rma.amount_outstanding()
    view["amount_outstanding"] = (
        None if outstanding is None else outstanding.model_dump(mode="json")
    )
    view["lines"] = list(state["lines"].values())
    view["decisions"] = list(state["decisions"].values())
    if legs:
        # Which review rules held it (serial_returner...) is for staff, like the legs.
        view["review_rules"] = state["review_rules"]
        view["review_reason"] = state["review_reason"]
        view["legs"] = [
            {
                "leg_id": leg_id,
                **{k: v for k, v in leg.items() if k != "steps"},
                "open": leg["status"] in OPEN_LEG_STATUSES,
            }
            for leg_id, leg in state["legs"].items()
        ]
    return view
