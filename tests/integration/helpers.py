"""Builders for integration scenarios: a delivered order in one call."""

from __future__ import annotations

import itertools
import uuid

import psycopg
from psycopg import sql

from domain.application import Ctx, Outcome, ReturnsService
from domain.commands import DeliverOrder, FulfilOrder, InspectItems, PlaceOrder, ReceiveParcel
from domain.events import Cause, FulfilledLine, InspectedItem, OrderLine, Payment, ReceivedItem
from domain.values import Channel, Condition, Disposition, Money, PaymentMethod

_numbers = itertools.count(1)


def ctx(key: str | None = None, actor: str = "tests") -> Ctx:
    return Ctx(
        Cause(actor=actor, source="pytest", correlation_id=str(uuid.uuid4())),
        idempotency_key=key,
    )


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def delivered_order(
    service: ReturnsService,
    *,
    quantity: int = 2,
    unit_price: str = "50.00",
    shipping: str = "5.00",
    serials: tuple[str, ...] = (),
    payments: tuple[tuple[PaymentMethod, str], ...] | None = None,
    category: str = "shoes",
) -> str:
    """Place, ship and deliver a one-line web order; returns its order number."""
    number = f"T-{uuid.uuid4().hex[:10]}-{next(_numbers)}"
    total = Money.of(unit_price, "EUR").times(quantity) + eur(shipping)
    paid = payments or ((PaymentMethod.CARD, str(total.amount)),)
    service.run(
        ctx(),
        PlaceOrder(
            order_number=number,
            customer_id=f"cust-{number}",
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
