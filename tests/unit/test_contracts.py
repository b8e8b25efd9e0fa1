"""The wire contract: parsing rules and the checked-in JSON Schemas."""

from __future__ import annotations

import orjson
import pytest

from adapters.contracts import ContractError, OrderPlacedData, parse_inbound
from adapters.schemas import DEFAULT_DIR, schema_files


def envelope(event_type: str, data: object) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": "e-1",
            "source": "commerce/web",
            "type": event_type,
            "data": data,
            "unknown_field": "ignored",
        }
    )


PLACED = {
    "order_id": "WEB-1",
    "customer_id": "C1",
    "channel": "web",
    "lines": [
        {
            "line_no": 1,
            "sku": "A-1",
            "quantity": 1,
            "unit_price": {"amount": "19.90", "currency": "EUR"},
            "extra": True,
        }
    ],
    "payments": [
        {"payment_id": "p", "method": "card", "amount": {"amount": "19.90", "currency": "EUR"}}
    ],
    "shipping": {"amount": "0.00", "currency": "EUR"},
}


def test_a_valid_order_placed_parses_and_unknown_fields_are_ignored() -> None:
    message = parse_inbound("oms.orders.v1", envelope("order.placed", PLACED))
    assert isinstance(message.data, OrderPlacedData)
    assert message.data.lines[0].unit_price.amount == "19.90"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff\xfe", "invalid_json"),
        (b"42", "invalid_envelope"),
        (
            orjson.dumps({"specversion": "0.3", "id": "x", "source": "s", "type": "t", "data": {}}),
            "invalid_envelope",
        ),
        (envelope("order.teleported", {}), "unknown_type"),
        (envelope("order.placed", {**PLACED, "lines": []}), "invalid_data"),
        (
            envelope("order.placed", {**PLACED, "shipping": {"amount": 4.9, "currency": "EUR"}}),
            "invalid_data",
        ),
        (b" " * 300_000, "oversized"),
    ],
)
def test_broken_messages_are_refused_with_a_code(raw: bytes, code: str) -> None:
    with pytest.raises(ContractError) as refused:
        parse_inbound("oms.orders.v1", raw)
    assert refused.value.code == code
    assert refused.value.reason


def test_amounts_as_json_numbers_are_refused_because_floats_lose_cents() -> None:
    with pytest.raises(ContractError, match=r"shipping\.amount"):
        parse_inbound(
            "oms.orders.v1",
            envelope("order.placed", {**PLACED, "shipping": {"amount": 0.1, "currency": "EUR"}}),
        )


def test_a_type_of_another_topic_is_unknown_here() -> None:
    with pytest.raises(ContractError) as refused:
        parse_inbound("psp.refunds.v1", envelope("order.placed", PLACED))
    assert refused.value.code == "unknown_type"


def test_the_checked_in_json_schemas_are_current() -> None:
    expected = schema_files()
    on_disk = {
        str(path.relative_to(DEFAULT_DIR)): path.read_bytes()
        for path in DEFAULT_DIR.rglob("*.json")
    }
    assert sorted(on_disk) == sorted(expected), "run `rma schemas` and commit docs/schemas"
    stale = [name for name, content in expected.items() if on_disk[name] != content]
    assert not stale, f"stale schemas (run `rma schemas`): {stale}"
