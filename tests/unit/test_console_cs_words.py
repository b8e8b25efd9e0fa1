"""What customer service's console says in words: every RMA event has a sentence for the
timeline, and the blind parcel's suggestions are offered one order at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from adapters.driving.console.cs_blind import grouped
from adapters.driving.console.cs_forms import EVENT_WORDS, describe, money
from domain.events import (
    EVENT_TYPES,
    Cause,
    InspectedItem,
    ItemsInspected,
    RefundFailed,
    ReturnEvent,
    ReturnRejected,
)
from domain.values import Condition, Disposition
from tests.unit.builders import eur

CAUSE = Cause(actor="agent-ann", source="console/customer_service", correlation_id="c-1")


def stamped(cls: type[ReturnEvent], **fields: Any) -> ReturnEvent:
    return cls(
        originator_id=uuid.uuid4(),
        originator_version=2,
        timestamp=datetime.now(UTC),
        cause=CAUSE,
        **fields,
    )


def test_every_rma_event_has_its_sentence_on_the_timeline() -> None:
    # A new RMA event must say what happened in words, not show its type to the agent.
    rma_events = {name for name, cls in EVENT_TYPES.items() if issubclass(cls, ReturnEvent)}
    assert rma_events - set(EVENT_WORDS) == set()


def test_an_event_says_what_happened_with_its_own_details() -> None:
    assert describe(stamped(ReturnRejected, code="outside_window", reason="window closed")) == (
        "Refused: window closed"
    )
    assert describe(stamped(RefundFailed, refund_id="RF-1", reason="card expired")) == (
        "Refund RF-1 failed: card expired"
    )
    inspected = stamped(
        ItemsInspected,
        receipt_id="REC-1",
        items=(
            InspectedItem(
                sku="TEE-BLUE-M",
                quantity=2,
                condition=Condition.MISSING_PARTS,
                disposition=Disposition.QUARANTINE,
                location_id="WH-1",
            ),
        ),
        refund_due=eur("19.90"),
    )
    assert describe(inspected) == "Inspected: 2 x TEE-BLUE-M missing parts; refund due 19.90 EUR"


def test_amounts_read_as_value_and_currency_from_the_wire_or_the_domain() -> None:
    assert money({"amount": "19.90", "currency": "EUR"}) == "19.90 EUR"
    assert money(eur("5.00")) == "5.00 EUR"
    assert money(None) == ""


def test_suggestions_are_offered_one_order_at_a_time_with_every_line_it_would_take() -> None:
    def line(order: str, no: int, by: str) -> dict[str, Any]:
        return {
            "order_number": order,
            "line_no": no,
            "sku": f"SKU-{no}",
            "quantity": 1,
            "serial": None,
            "by": by,
            "whole": True,
            "customer_id": "c",
            "delivered_at": None,
        }

    offered = grouped([line("A", 1, "serial"), line("A", 2, "serial"), line("B", 1, "sku")])
    assert [(o["order_number"], o["matched_by"]) for o in offered] == [
        ("A", "serial"),
        ("B", "order_id"),
    ]
    assert [li["line_no"] for li in offered[0]["lines"]] == [1, 2]
