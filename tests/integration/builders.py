"""Builders for integration scenarios: a delivered order in one call, and the CloudEvents
outside systems publish (the wire contract v1) to feed the inbound topics."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql

from domain.application import Ctx, Outcome, ReturnsService
from domain.commands import (
    DeliverOrder,
    FulfilOrder,
    InspectItems,
    PlaceOrder,
    ReceiveParcel,
    RequestReturn,
)
from domain.events import Cause, FulfilledLine, InspectedItem, OrderLine, Payment, ReceivedItem
from domain.returns import RequestedLine
from domain.values import (
    Channel,
    Condition,
    Disposition,
    Money,
    PaymentMethod,
    ReasonCode,
    ReturnMethod,
)
from tests.unit.builders import eur

_numbers = itertools.count(1)


def ctx(key: str | None = None, actor: str = "tests") -> Ctx:
    return Ctx(
        Cause(actor=actor, source="pytest", correlation_id=str(uuid.uuid4())),
        idempotency_key=key,
    )


def delivered_order(
    service: ReturnsService,
    *,
    quantity: int = 2,
    unit_price: str = "50.00",
    shipping: str = "5.00",
    serials: tuple[str, ...] = (),
    payments: tuple[tuple[PaymentMethod, str], ...] | None = None,
    category: str = "shoes",
    customer_id: str | None = None,
) -> str:
    """Place, ship and deliver a one-line web order; returns its order number."""
    number = f"T-{uuid.uuid4().hex[:10]}-{next(_numbers)}"
    total = Money.of(unit_price, "EUR").times(quantity) + eur(shipping)
    paid = payments or ((PaymentMethod.CARD, str(total.amount)),)
    service.run(
        ctx(),
        PlaceOrder(
            order_number=number,
            customer_id=customer_id or f"cust-{number}",
            customer_email=f"{number.lower()}@example.com",
            channel=Channel.WEB,
            lines=(
                OrderLine(
                    line_no=1,
                    sku="SHOE-RED-42",
                    name="Red shoe",
                    quantity=quantity,
                    unit_price=eur(unit_price),
                    serials=serials,
                    supplier="Acme",
                    category=category,
                ),
            ),
            payments=tuple(
                Payment(payment_id=f"pay-{i}", method=method, amount=eur(amount))
                for i, (method, amount) in enumerate(paid, start=1)
            ),
            shipping=eur(shipping),
        ),
    )
    service.run(
        ctx(),
        FulfilOrder(
            order_number=number,
            location_id="WH-1",
            lines=(FulfilledLine(line_no=1, quantity=quantity, serials=serials),),
        ),
    )
    service.run(ctx(), DeliverOrder(order_number=number))
    return number


def place_orders_in_batches(service: ReturnsService, *, orders: int, batch: int) -> list[str]:
    """Many one-line orders through ``run_batch``: quick volume for relay tests."""
    numbers = []
    for start in range(0, orders, batch):
        commands = []
        for _ in range(min(batch, orders - start)):
            number = f"B-{uuid.uuid4().hex[:12]}"
            numbers.append(number)
            c = ctx()
            commands.append(
                (
                    c,
                    PlaceOrder(
                        order_number=number,
                        customer_id="bulk",
                        customer_email=None,
                        channel=Channel.WEB,
                        lines=(
                            OrderLine(line_no=1, sku="BULK-1", quantity=1, unit_price=eur("10.00")),
                        ),
                        payments=(
                            Payment(payment_id="p", method=PaymentMethod.CARD, amount=eur("10.00")),
                        ),
                        shipping=eur("0.00"),
                    ),
                )
            )
        service.run_batch(commands)
    return numbers


def receive_and_inspect(service: ReturnsService, rma_number: str, quantity: int = 1) -> Outcome:
    receipt = f"REC-{uuid.uuid4().hex[:8]}"
    service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=receipt,
            warehouse_id="WH-1",
            rma_number=rma_number,
            tracking_number=None,
            items=(ReceivedItem(sku="SHOE-RED-42", quantity=quantity),),
        ),
    )
    return service.run(
        ctx(),
        InspectItems(
            rma_number=rma_number,
            receipt_id=receipt,
            items=(
                InspectedItem(
                    sku="SHOE-RED-42",
                    quantity=quantity,
                    condition=Condition.NEW,
                    disposition=Disposition.RESTOCK,
                    location_id="WH-1",
                ),
            ),
        ),
    )


def fresh_database(database_url: str, prefix: str) -> str:
    """A new, empty database on the same server: a stack of its own without a second server."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url.rsplit("/", 1)[0] + f"/{name}"


# ---------------------------------------------------------------- inbound wire messages
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
    customer_id: str | None = None,
) -> bytes:
    total = f"{float(price) * quantity + 4.9:.2f}"  # test data only; the system never floats
    return cloud_event(
        "order.placed",
        {
            "order_id": order_id,
            "customer_id": customer_id or f"cust-{order_id}",
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


def authorized_return(
    service: ReturnsService,
    number: str,
    *,
    quantity: int = 1,
    reason: ReasonCode = ReasonCode.SIZE_TOO_SMALL,
    method: ReturnMethod = ReturnMethod.CARRIER_DROP_OFF,
) -> Outcome:
    """An RMA for line 1 of order ``number``, authorized by the policy (asserted)."""
    outcome = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=quantity, reason=reason),),
            method=method,
        ),
    )
    assert outcome.status == "authorized" and outcome.rma_number, outcome
    return outcome


def requested_refund(service: ReturnsService) -> str:
    """A delivered order returned, received and inspected: its refund is requested."""
    rma = authorized_return(service, delivered_order(service))
    assert rma.rma_number is not None
    refund = receive_and_inspect(service, rma.rma_number)
    assert refund.refund_id is not None
    return refund.refund_id


def requested_refunds(service: ReturnsService, count: int) -> list[str]:
    return [requested_refund(service) for _ in range(count)]
