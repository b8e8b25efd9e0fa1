"""JSON views of aggregates for the API: curated fields, no internal bookkeeping."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from pydantic import TypeAdapter

from domain.application import ReturnsService
from domain.events import DomainEvent
from domain.order import Order
from domain.returns import Return, ReturnState

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
)


def return_view(rma: Return) -> dict[str, Any]:
    state = _STATE.dump_python(rma.state, mode="json")
    view = {"return_id": str(rma.id), "version": rma.version}
    view.update({name: state[name] for name in RETURN_FIELDS})
    view["lines"] = list(state["lines"].values())
    view["decisions"] = list(state["decisions"].values())
    return view


def events_of(service: ReturnsService, return_id: UUID) -> list[dict[str, Any]]:
    """The RMA's own events: its authoritative timeline (the read model may lag)."""
    return [
        {
            "version": e.originator_version,
            "type": e.type_name,
            "at": e.timestamp.isoformat(),
            "actor": e.cause.actor,
            "source": e.cause.source,
            "correlation_id": e.cause.correlation_id,
        }
        for e in cast(list[DomainEvent], list(service.events.get(return_id)))
    ]


def order_number_of(service: ReturnsService, order_id: UUID) -> str | None:
    # The service has no query by order id; its loader is the one way in.
    order = service._load(Order, order_id)
    return order.state.order_number if isinstance(order, Order) else None
