"""CloudEvents as the outside systems publish them (the wire contract v1)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson


def cloud_event(
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "source": source,
            "type": event_type,
            "time": (time or datetime.now(UTC)).isoformat(),
            "datacontenttype": "application/json",
            "data": data,
        }
    )


def amount(value: str) -> dict[str, str]:
    return {"amount": value, "currency": "EUR"}


def order_placed(
    order_id: str,
    *,
    quantity: int = 2,
    price: str = "30.00",
    serials: list[str] | None = None,
    days_ago: int = 10,
) -> bytes:
    total = f"{float(price) * quantity + 4.9:.2f}"  # test data only; the system never floats
    return cloud_event(
        "order.placed",
        {
            "order_id": order_id,
            "customer_id": f"cust-{order_id}",
            "channel": "web",
            "customer_email": f"{order_id.lower()}@example.com",
            "lines": [
                {
                    "line_no": 1,
                    "sku": "TEE-BLUE-M",
                    "quantity": quantity,
                    "unit_price": amount(price),
                    "serials": serials or [],
                    "supplier": "Threads",
                    "category": "apparel",
                }
            ],
            "payments": [{"payment_id": "pay-1", "method": "card", "amount": amount(total)}],
            "shipping": amount("4.90"),
        },
        source="commerce/web",
        time=datetime.now(UTC) - timedelta(days=days_ago),
    )


def order_fulfilled(order_id: str, quantity: int = 2, serials: list[str] | None = None) -> bytes:
    return cloud_event(
        "order.fulfilled",
        {
            "order_id": order_id,
            "location_id": "WH-1",
            "lines": [{"line_no": 1, "quantity": quantity, "serials": serials or []}],
        },
        source="wms/WH-1",
    )


def order_delivered(order_id: str, days_ago: int = 8) -> bytes:
    return cloud_event(
        "order.delivered",
        {
            "order_id": order_id,
            "delivered_at": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
        },
        source="carrier/tracking",
    )


def parcel_received(
    receipt_id: str, rma_number: str | None, quantity: int = 1, event_id: str | None = None
) -> bytes:
    return cloud_event(
        "parcel.received",
        {
            "receipt_id": receipt_id,
            "warehouse_id": "WH-1",
            "rma_number": rma_number,
            "tracking_number": "TRK-1",
            "items": [{"sku": "TEE-BLUE-M", "quantity": quantity}],
        },
        source="wms/WH-1",
        event_id=event_id,
    )


def items_inspected(receipt_id: str, rma_number: str, condition: str = "new") -> bytes:
    return cloud_event(
        "items.inspected",
        {
            "receipt_id": receipt_id,
            "rma_number": rma_number,
            "warehouse_id": "WH-1",
            "items": [
                {
                    "sku": "TEE-BLUE-M",
                    "quantity": 1,
                    "condition": condition,
                    "disposition": "restock",
                }
            ],
        },
        source="wms/WH-1",
    )


def refund_settled(refund_id: str, value: str) -> bytes:
    return cloud_event(
        "refund.settled",
        {
            "refund_id": refund_id,
            "provider_reference": f"psp-{refund_id}",
            "amount": amount(value),
        },
        source="psp/sandbox",
    )


def store_return(order_id: str, store_return_id: str, method: str = "original_payment") -> bytes:
    return cloud_event(
        "return.recorded",
        {
            "store_return_id": store_return_id,
            "store_id": "STORE-3",
            "staff_id": "clerk-9",
            "order_id": order_id,
            "refund_method": method,
            "items": [
                {"line": 1, "quantity": 1, "reason_code": "size_too_large", "condition": "new"}
            ],
        },
        source="pos/STORE-3",
    )


def stock_counted(sku: str, quantity: int, location_id: str = "WH-1") -> bytes:
    return cloud_event(
        "stock.counted",
        {"sku": sku, "location_id": location_id, "quantity": quantity},
        source=f"wms/{location_id}",
    )
