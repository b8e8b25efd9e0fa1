"""Inbound integrations: each valid message of an outside system becomes one command.

Exactly once in effect: the command's idempotency key is the message's CloudEvents
``source`` and ``id``, stored in the same transaction as the events it caused, so a
redelivered or republished message changes nothing. A batch of messages commits in one
transaction. Messages that break the contract, and commands the domain refuses, come
back as rejections for the dead-letter topic; the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adapters.contracts import (
    Amount,
    ContractError,
    Inbound,
    InspectedItemData,
    ItemsInspectedData,
    LegData,
    LegRestockedData,
    OrderCancelledData,
    OrderDeliveredData,
    OrderFulfilledData,
    OrderPlacedData,
    ParcelReceivedData,
    RefundFailedData,
    RefundSettledData,
    RepairCompletedData,
    RepairSentData,
    ReturnRecordedData,
    StockAdjustedData,
    StockCountedData,
    VendorCreditedData,
    VendorShippedData,
    parse_inbound,
)
from domain.application import Ctx, ReturnsService
from domain.commands import (
    AdjustStock,
    CancelOrder,
    Command,
    CountStock,
    DeliverOrder,
    FailRefund,
    FulfilOrder,
    InspectBlindReturn,
    InspectItems,
    LegAction,
    MoveLeg,
    PlaceOrder,
    ReceiveParcel,
    ReceiveRmaAtCounter,
    RecordInStoreReturn,
    SettleRefund,
)
from domain.errors import DomainError
from domain.events import Cause, FulfilledLine, InspectedItem, OrderLine, Payment, ReceivedItem
from domain.returns import CounterCheck, RequestedLine
from domain.values import Disposition, Money, RmaNumber


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


def to_command(message: Inbound) -> Command:
    """The command one valid message asks for."""
    data = message.data
    match data:
        case OrderPlacedData():
            return PlaceOrder(
                order_number=data.order_id,
                customer_id=data.customer_id,
                customer_email=data.customer_email,
                channel=data.channel,
                lines=tuple(
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
                ),
                payments=tuple(
                    Payment(
                        payment_id=p.payment_id,
                        method=p.method,
                        amount=money(p.amount),
                        store_credit_code=p.store_credit_code,
                    )
                    for p in data.payments
                ),
                shipping=money(data.shipping),
                store_id=data.store_id,
                placed_at=data.placed_at,
            )
        case OrderFulfilledData():
            return FulfilOrder(
                order_number=data.order_id,
                location_id=data.location_id,
                lines=tuple(
                    FulfilledLine(
                        line_no=ln.line_no, quantity=ln.quantity, serials=tuple(ln.serials)
                    )
                    for ln in data.lines
                ),
            )
        case OrderDeliveredData():
            return DeliverOrder(data.order_id, data.delivered_at)
        case OrderCancelledData():
            return CancelOrder(data.order_id, data.reason)
        case ParcelReceivedData():
            return ReceiveParcel(
                receipt_id=data.receipt_id,
                warehouse_id=data.warehouse_id,
                rma_number=data.rma_number,
                tracking_number=data.tracking_number,
                items=tuple(
                    ReceivedItem(sku=i.sku, quantity=i.quantity, serial=i.serial)
                    for i in data.items
                ),
                order_number=data.order_id,
            )
        case ItemsInspectedData():
            location = data.warehouse_id or message.envelope.source.rsplit("/", 1)[-1]
            if data.rma_number is None:
                # No RMA: the receipt's own blind return, matched or not yet.
                return InspectBlindReturn(
                    receipt_id=data.receipt_id,
                    items=tuple(inspected(i, location) for i in data.items),
                )
            return InspectItems(
                rma_number=data.rma_number,
                receipt_id=data.receipt_id,
                items=tuple(inspected(i, location) for i in data.items),
            )
        case StockCountedData():
            return CountStock(
                sku=data.sku,
                location_id=data.location_id,
                quantity=data.quantity,
                count_id=data.count_id or message.envelope.id,
                counted_at=data.counted_at,
            )
        case StockAdjustedData():
            return AdjustStock(
                sku=data.sku,
                location_id=data.location_id,
                delta=data.delta,
                reason=data.reason,
                adjustment_id=data.adjustment_id or message.envelope.id,
            )
        case ReturnRecordedData():
            if data.rma_number:
                return rma_at_counter(data, data.rma_number)
            return store_return(data)
        case RefundSettledData():
            return SettleRefund(
                refund_id=data.refund_id,
                provider_reference=data.provider_reference,
                amount=money(data.amount),
                payment_id=data.payment_id,
            )
        case RefundFailedData():
            return FailRefund(data.refund_id, data.reason, payment_id=data.payment_id)
        case LegData():
            return leg_move(data)
    raise ContractError("unknown_type", f"no command for {type(data).__name__}")


def leg_move(data: LegData) -> MoveLeg:
    """``MoveLeg`` for one of the leg messages of ``wms.receipts.v1``."""
    match data:
        case RepairSentData():
            return _leg(
                data,
                LegAction.SENT_TO_REPAIR,
                repair_center=data.repair_center,
                reference=data.reference,
            )
        case RepairCompletedData():
            return _leg(data, LegAction(data.outcome), replacement_serial=data.replacement_serial)
        case LegRestockedData():
            return _leg(data, LegAction.RESTOCKED, location_id=data.location_id)
        case VendorShippedData():
            return _leg(data, LegAction.SHIPPED_TO_VENDOR, reference=data.reference)
        case VendorCreditedData():
            return _leg(
                data, LegAction.CREDITED, amount=money(data.amount), reference=data.reference
            )
    raise ContractError("unknown_type", f"no command for {type(data).__name__}")


def _leg(
    data: LegData,
    action: LegAction,
    *,
    repair_center: str | None = None,
    reference: str | None = None,
    location_id: str | None = None,
    amount: Money | None = None,
    replacement_serial: str | None = None,
) -> MoveLeg:
    return MoveLeg(
        rma_number=data.rma_number,
        action=action,
        leg_id=data.leg_id,
        serial=data.serial,
        sku=data.sku,
        repair_center=repair_center,
        reference=reference,
        location_id=location_id,
        amount=amount,
        replacement_serial=replacement_serial,
    )


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


def store_return(data: ReturnRecordedData) -> RecordInStoreReturn:
    return RecordInStoreReturn(
        store_return_id=data.store_return_id,
        store_id=data.store_id,
        staff_id=data.staff_id,
        order_number=data.order_id,
        lines=tuple(
            RequestedLine(
                line_no=i.line, quantity=i.quantity, reason=i.reason_code, serial=i.serial
            )
            for i in data.items
        ),
        checks=tuple(
            CounterCheck(
                line_no=i.line,
                quantity=i.quantity,
                serial=i.serial,
                condition=i.condition,
                disposition=i.disposition or Disposition.RESTOCK,
            )
            for i in data.items
        ),
        refund_method=data.refund_method,
    )


def rma_at_counter(data: ReturnRecordedData, rma_number: str) -> ReceiveRmaAtCounter:
    # The counter names an RMA but sends no refund method of its own: the pydantic default
    # is then the RMA's choice, not original_payment.
    method = data.refund_method if "refund_method" in data.model_fields_set else None
    return ReceiveRmaAtCounter(
        rma_number=RmaNumber(rma_number),
        store_id=data.store_id,
        store_return_id=data.store_return_id,
        staff_id=data.staff_id,
        checks=store_return(data).checks,
        refund_method=method,
        order_number=data.order_id,
    )


def process_batch(
    service: ReturnsService, topic: str, values: Sequence[bytes]
) -> list[Rejection | None]:
    """Run one batch of raw messages from ``topic``; one result per message, in order."""
    results: list[Rejection | None] = [None] * len(values)
    commands: list[tuple[Ctx, Command]] = []
    positions: list[int] = []
    for index, value in enumerate(values):
        try:
            message = parse_inbound(topic, value)
            ctx = context(topic, message)
            command = to_command(message)
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
    if commands:
        outcomes = service.run_batch(commands)
        for index, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                results[index] = Rejection(outcome.code, outcome.message)
    return results
