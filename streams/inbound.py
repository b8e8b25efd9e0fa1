"""Inbound integrations: each valid message of an outside system becomes one command.

Exactly once in effect: the command's idempotency key is the message's CloudEvents
``source`` and ``id``, stored in the same transaction as the events it caused, so a
redelivered or republished message changes nothing. A batch of messages commits in one
transaction. Messages that break the contract, and commands the domain refuses, come
back as rejections for the dead-letter topic; the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from adapters.contracts import (
    Amount,
    ContractError,
    Inbound,
    InspectedItemData,
    ItemsInspectedData,
    OrderCancelledData,
    OrderDeliveredData,
    OrderFulfilledData,
    OrderPlacedData,
    ParcelReceivedData,
    RefundFailedData,
    RefundSettledData,
    ReturnRecordedData,
    StockAdjustedData,
    StockCountedData,
    parse_inbound,
)
from domain.application import Ctx, Outcome, ReturnsService
from domain.errors import DomainError
from domain.events import Cause, FulfilledLine, InspectedItem, OrderLine, Payment, ReceivedItem
from domain.inventory import inventory_id_for
from domain.order import order_id_for
from domain.returns import CounterCheck, RequestedLine, store_return_id_for
from domain.unit_of_work import UnitOfWork
from domain.values import Disposition, Money

Command = Callable[[UnitOfWork, datetime], Outcome]


@dataclass(frozen=True)
class Rejection:
    code: str
    reason: str


def money(amount: Amount) -> Money:
    return Money.of(amount.amount, amount.currency)


def context(topic: str, message: Inbound) -> Ctx:
    envelope = message.envelope
    return Ctx(
        Cause(
            actor=envelope.source,
            source=topic,
            correlation_id=envelope.subject or envelope.id,
            causation_id=envelope.id,
        ),
        at=envelope.time,
        idempotency_key=f"{topic}|{envelope.source}|{envelope.id}",
    )


def to_command(service: ReturnsService, message: Inbound, ctx: Ctx) -> tuple[Command, UUID | None]:
    """The command for one message, and the aggregate it reads first (to load in bulk)."""
    data = message.data
    match data:
        case OrderPlacedData():
            lines = [
                OrderLine(
                    line_no=ln.line_no,
                    sku=ln.sku,
                    name=ln.name,
                    quantity=ln.quantity,
                    unit_price=money(ln.unit_price),
                    serials=tuple(ln.serials),
                    supplier=ln.supplier,
                    category=ln.category,
                    returnable=ln.returnable,
                    warranty_months=ln.warranty_months,
                )
                for ln in data.lines
            ]
            payments = [
                Payment(payment_id=p.payment_id, method=p.method, amount=money(p.amount))
                for p in data.payments
            ]
            placed = Ctx(ctx.cause, data.placed_at or ctx.at, ctx.idempotency_key)
            command = service.cmd_place_order(
                placed,
                order_number=data.order_id,
                customer_id=data.customer_id,
                customer_email=data.customer_email,
                channel=data.channel,
                lines=lines,
                payments=payments,
                shipping=money(data.shipping),
                store_id=data.store_id,
            )
            return command, order_id_for(data.order_id)
        case OrderFulfilledData():
            return service.cmd_fulfil_order(
                ctx,
                order_number=data.order_id,
                location_id=data.location_id,
                lines=[
                    FulfilledLine(
                        line_no=ln.line_no, quantity=ln.quantity, serials=tuple(ln.serials)
                    )
                    for ln in data.lines
                ],
            ), order_id_for(data.order_id)
        case OrderDeliveredData():
            return service.cmd_deliver_order(
                ctx, order_number=data.order_id, delivered_at=data.delivered_at
            ), order_id_for(data.order_id)
        case OrderCancelledData():
            return service.cmd_cancel_order(
                ctx, order_number=data.order_id, reason=data.reason
            ), order_id_for(data.order_id)
        case ParcelReceivedData():
            return service.cmd_receive_parcel(
                ctx,
                receipt_id=data.receipt_id,
                warehouse_id=data.warehouse_id,
                rma_number=data.rma_number,
                tracking_number=data.tracking_number,
                items=[
                    ReceivedItem(sku=i.sku, quantity=i.quantity, serial=i.serial)
                    for i in data.items
                ],
                order_number=data.order_id,
            ), None
        case ItemsInspectedData():
            location = data.warehouse_id or message.envelope.source.rsplit("/", 1)[-1]
            return service.cmd_inspect_items(
                ctx,
                rma_number=data.rma_number,
                receipt_id=data.receipt_id,
                items=[inspected(i, location) for i in data.items],
            ), None
        case StockCountedData():
            return service.cmd_count_stock(
                ctx,
                sku=data.sku,
                location_id=data.location_id,
                quantity=data.quantity,
                count_id=data.count_id or message.envelope.id,
            ), inventory_id_for(data.sku, data.location_id)
        case StockAdjustedData():
            return service.cmd_adjust_stock(
                ctx,
                sku=data.sku,
                location_id=data.location_id,
                delta=data.delta,
                reason=data.reason,
                adjustment_id=data.adjustment_id or message.envelope.id,
            ), inventory_id_for(data.sku, data.location_id)
        case ReturnRecordedData():
            return store_return(service, data, ctx), store_return_id_for(
                data.store_id, data.store_return_id
            )
        case RefundSettledData():
            return service.cmd_settle_refund(
                ctx,
                refund_id=data.refund_id,
                provider_reference=data.provider_reference,
                amount=money(data.amount),
            ), None
        case RefundFailedData():
            return service.cmd_fail_refund(ctx, refund_id=data.refund_id, reason=data.reason), None
    raise ContractError("unknown_type", f"no command for {type(data).__name__}")


def inspected(item: InspectedItemData, location_id: str) -> InspectedItem:
    return InspectedItem(
        sku=item.sku,
        quantity=item.quantity,
        serial=item.serial,
        condition=item.condition,
        disposition=item.disposition,
        line_no=item.line_no,
        location_id=location_id,
    )


def store_return(service: ReturnsService, data: ReturnRecordedData, ctx: Ctx) -> Command:
    lines = [
        RequestedLine(line_no=i.line, quantity=i.quantity, reason=i.reason_code, serial=i.serial)
        for i in data.items
    ]
    return service.cmd_record_in_store_return(
        ctx,
        store_return_id=data.store_return_id,
        store_id=data.store_id,
        staff_id=data.staff_id,
        order_number=data.order_id,
        lines=lines,
        checks=[
            CounterCheck(
                line_no=i.line,
                quantity=i.quantity,
                serial=i.serial,
                condition=i.condition,
                disposition=i.disposition or Disposition.RESTOCK,
            )
            for i in data.items
        ],
        refund_method=data.refund_method,
    )


def process_batch(
    service: ReturnsService, topic: str, values: Sequence[bytes]
) -> list[Rejection | None]:
    """Run one batch of raw messages from ``topic``; one result per message, in order."""
    results: list[Rejection | None] = [None] * len(values)
    commands: list[tuple[Ctx, Command]] = []
    positions: list[int] = []
    prefetch: list[UUID] = []
    for index, value in enumerate(values):
        try:
            message = parse_inbound(topic, value)
            ctx = context(topic, message)
            command, reads = to_command(service, message, ctx)
        except ContractError as broken:
            results[index] = Rejection(broken.code, broken.reason)
            continue
        except DomainError as refused:  # e.g. an invalid RMA number in a valid message
            results[index] = Rejection(refused.code, refused.message)
            continue
        except ValueError as invalid:  # a value object refusing what the schema let through
            results[index] = Rejection("invalid_data", str(invalid)[:500])
            continue
        commands.append((ctx, command))
        positions.append(index)
        if reads is not None:
            prefetch.append(reads)
    if commands:
        outcomes = service.run_batch(commands, prefetch=prefetch)
        for index, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                results[index] = Rejection(outcome.code, outcome.message)
    return results
