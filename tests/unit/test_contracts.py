"""The wire contract: parsing rules and the checked-in JSON Schemas."""

from __future__ import annotations

from decimal import Decimal

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


# Values PostgreSQL or the projections could never hold: refused here, one message at a time.
LINE = PLACED["lines"][0]  # type: ignore[index]
NUL = "A\u0000B"


def event(event_type: str, data: object, **envelope_fields: object) -> bytes:
    document = {"specversion": "1.0", "id": "e-1", "source": "wms/WH-1", "type": event_type}
    return orjson.dumps({**document, "data": data, **envelope_fields})


@pytest.mark.parametrize(
    ("topic", "raw"),
    [
        ("oms.orders.v1", envelope("order.placed", {**PLACED, "order_id": NUL})),
        ("oms.orders.v1", envelope("order.placed", {**PLACED, "customer_id": NUL})),
        ("oms.orders.v1", envelope("order.placed", {**PLACED, "customer_email": NUL})),
        ("oms.orders.v1", envelope("order.placed", {**PLACED, "store_id": NUL})),
        ("oms.orders.v1", envelope("order.placed", {**PLACED, "lines": [{**LINE, "name": NUL}]})),
        (
            "oms.orders.v1",
            envelope("order.placed", {**PLACED, "lines": [{**LINE, "supplier": NUL}]}),
        ),
        ("oms.orders.v1", envelope("order.placed", {**PLACED, "lines": [{**LINE, "sku": NUL}]})),
        (
            "oms.orders.v1",
            envelope("order.placed", {**PLACED, "lines": [{**LINE, "serials": ["S1", NUL]}]}),
        ),
        (
            "oms.orders.v1",
            envelope("order.placed", {**PLACED, "lines": [{**LINE, "line_no": 10**19}]}),
        ),
        ("oms.orders.v1", envelope("order.placed", {**PLACED, "placed_at": "9999-12-31T00:00Z"})),
        (
            "oms.orders.v1",
            envelope("order.placed", {**PLACED, "placed_at": "0001-01-01T00:00:00+05:00"}),
        ),
        ("oms.orders.v1", envelope("order.cancelled", {"order_id": "W-1", "reason": NUL})),
        (
            "oms.orders.v1",
            envelope("order.delivered", {"order_id": "W-1", "delivered_at": "9999-01-01T00:00Z"}),
        ),
        (
            "oms.orders.v1",
            envelope(
                "order.fulfilled",
                {
                    "order_id": "W-1",
                    "location_id": "WH-1",
                    "lines": [{"line_no": 1, "quantity": 10**19}],
                },
            ),
        ),
        (
            "wms.receipts.v1",
            event(
                "stock.adjusted",
                {"sku": "A", "location_id": "WH-1", "delta": 10**19, "reason": "x"},
            ),
        ),
        (
            "wms.receipts.v1",
            event("stock.counted", {"sku": "A", "location_id": "WH-1", "quantity": 2**63}),
        ),
        (
            "wms.receipts.v1",
            event(
                "parcel.received",
                {
                    "receipt_id": "R",
                    "warehouse_id": "WH-1",
                    "tracking_number": NUL,
                    "items": [{"sku": "A", "quantity": 1}],
                },
            ),
        ),
        (
            "pos.returns.v1",
            event(
                "return.recorded",
                {
                    "store_return_id": "S",
                    "store_id": "ST",
                    "staff_id": NUL,
                    "order_id": "W-1",
                    "items": [{"line": 1, "quantity": 1, "reason_code": "defective"}],
                },
            ),
        ),
        ("psp.refunds.v1", event("refund.failed", {"refund_id": NUL, "reason": "declined"})),
    ],
)
def test_values_no_store_could_hold_are_invalid_data(topic: str, raw: bytes) -> None:
    with pytest.raises(ContractError) as refused:
        parse_inbound(topic, raw)
    assert refused.value.code == "invalid_data"


@pytest.mark.parametrize(
    "fields",
    [
        {"id": NUL},
        {"source": NUL},
        {"subject": NUL},
        {"time": "0001-01-01T00:00:00+05:00"},
        {"time": "9999-12-31T23:59:59Z"},
        {"time": "1999-12-31T23:59:59Z"},
    ],
)
def test_an_envelope_with_such_values_is_an_invalid_envelope(fields: dict[str, str]) -> None:
    raw = event("order.cancelled", {"order_id": "W-1"}, **fields)
    with pytest.raises(ContractError) as refused:
        parse_inbound("oms.orders.v1", raw)
    assert refused.value.code == "invalid_envelope"


def test_moments_from_2000_to_a_day_ahead_are_accepted_with_or_without_an_offset() -> None:
    for moment in ("2000-01-01T00:00:00Z", "2026-03-01T10:00:00+05:00", "2026-03-01T10:00:00"):
        parse_inbound("oms.orders.v1", event("order.cancelled", {"order_id": "W-1"}, time=moment))


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ({"amount": "0.005", "currency": "EUR"}, "0.005 EUR has more decimals than EUR allows (2)"),
        ({"amount": "4.5", "currency": "JPY"}, "4.5 JPY has more decimals than JPY allows (0)"),
        ({"amount": "1.00", "currency": "XYZ"}, "unknown currency 'XYZ'"),
    ],
)
def test_an_amount_finer_than_its_currency_is_invalid_data_saying_so(
    amount: dict[str, str], reason: str
) -> None:
    with pytest.raises(ContractError) as refused:
        parse_inbound("oms.orders.v1", envelope("order.placed", {**PLACED, "shipping": amount}))
    assert refused.value.code == "invalid_data"
    assert reason in refused.value.reason


def test_three_decimals_are_a_valid_dinar_amount() -> None:
    kwd = {"amount": "12.345", "currency": "KWD"}
    data = {
        **PLACED,
        "lines": [{**PLACED["lines"][0], "unit_price": kwd}],  # type: ignore[index]
        "payments": [{"payment_id": "p", "method": "card", "amount": kwd}],
        "shipping": {"amount": "0", "currency": "KWD"},
    }
    message = parse_inbound("oms.orders.v1", envelope("order.placed", data))
    assert isinstance(message.data, OrderPlacedData)
    assert message.data.lines[0].unit_price.decimal() == Decimal("12.345")
