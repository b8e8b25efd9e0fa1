"""The Return's state and how each event evolves it: the one place its status machine lives.

The customer's leg (request, parcel, inspection, refund) drives ``status``. Repair and
return-to-vendor legs that follow a disposition are tracked apart in ``legs``: the
customer's refund never waits on a repair shop or a supplier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.events import (
    BlindInspectionAssessed,
    BlindReturnClosedUnidentified,
    BlindReturnDetected,
    BlindReturnLinked,
    BlindReturnMatched,
    ExchangeOrdered,
    InspectedItem,
    InstantExchangeCharged,
    InStoreReturnRecorded,
    ItemsInspected,
    KeepItemAccepted,
    KeepItemLapsed,
    KeepItemOffered,
    LineDecision,
    ReceivedItem,
    RefundAllocation,
    RefundDiscrepancy,
    RefundFailed,
    RefundPaymentSettled,
    RefundRequested,
    RefundSettled,
    RepairCompleted,
    RepairedItemRestocked,
    RepairSent,
    ReturnAuthorized,
    ReturnCancelled,
    ReturnClosed,
    ReturnEvent,
    ReturnExpired,
    ReturnHeldForReview,
    ReturnLabelIssued,
    ReturnLine,
    ReturnParcelReceived,
    ReturnRejected,
    ReturnRequested,
    ReturnResolutionChanged,
    ReturnUnexpectedParcelReceived,
    StoreCreditIssued,
    SupplierCreditReceived,
    VendorItemReturned,
    VendorReturnShipped,
)
from domain.values import (
    Channel,
    Disposition,
    Money,
    RefundMethod,
    ReturnChannel,
    ReturnMethod,
)


class ReturnStatus(StrEnum):
    REQUESTED = "requested"
    PENDING_REVIEW = "pending_review"
    AUTHORIZED = "authorized"
    REJECTED = "rejected"
    KEEP_ITEM_OFFERED = "keep_item_offered"
    BLIND_UNMATCHED = "blind_unmatched"
    RECEIVED = "received"
    INSPECTED = "inspected"
    REFUND_PENDING = "refund_pending"
    REFUND_FAILED = "refund_failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    EXCEPTION = "exception"


OPEN_FOR_PARCELS = {ReturnStatus.AUTHORIZED, ReturnStatus.KEEP_ITEM_OFFERED}
# Further parcels of a partly received RMA are still welcome while items are outstanding.
OPEN_FOR_MORE_PARCELS = {
    ReturnStatus.RECEIVED,
    ReturnStatus.INSPECTED,
    ReturnStatus.REFUND_PENDING,
    ReturnStatus.REFUND_FAILED,
    ReturnStatus.PARTIALLY_REFUNDED,
}
# Where inspection results and customer payments can still be recorded.
SETTLING = OPEN_FOR_MORE_PARCELS
CANCELLABLE = {
    ReturnStatus.REQUESTED,
    ReturnStatus.PENDING_REVIEW,
    ReturnStatus.AUTHORIZED,
    ReturnStatus.KEEP_ITEM_OFFERED,
}
ENDED = {ReturnStatus.REJECTED, ReturnStatus.CLOSED, ReturnStatus.CANCELLED, ReturnStatus.EXPIRED}


@dataclass
class Discrepancy:
    """A settlement that disagreed with the refund instruction (``rma.refund_discrepancy``)."""

    payment_id: str | None
    provider_reference: str
    amount: Money
    reason: str
    at: datetime
    kind: str | None = None


@dataclass
class RefundState:
    amount: Money
    allocations: tuple[RefundAllocation, ...]
    shipping: Money | None = None
    status: str = "requested"
    provider_reference: str | None = None
    settled_by_payment: dict[str, Money] = field(default_factory=dict)
    """Paid back so far per payment id, when the provider settles payment by payment."""
    settlements: list[str] = field(default_factory=list)
    """``payment_id:provider_reference`` of each per-payment settlement: a repeat is a no-op."""
    discrepancies: list[Discrepancy] = field(default_factory=list)
    """Settlements that disagreed with the instruction, kept for finance to reconcile."""


@dataclass
class Leg:
    """A repair or return-to-vendor journey of one inspected item, apart from the customer's."""

    kind: Disposition
    sku: str
    quantity: int
    supplier: str
    status: str = "awaiting_dispatch"
    outcome: str | None = None
    credit: Money | None = None
    serial: str | None = None
    location_id: str | None = None
    """Where the item was inspected: its in_repair / returned_to_vendor stock is there."""
    opened_at: datetime | None = None
    partner: str | None = None
    """The repair centre, or the supplier once shipped."""
    reference: str | None = None
    replacement_serial: str | None = None
    restocked_at: str | None = None
    steps: dict[str, str] = field(default_factory=dict)
    """Each step taken (``sent``, ``completed``...) and what it said, so a repeat of the
    same step with the same data is recognised as a repeat."""


# A leg is open until its item is back in stock, scrapped, credited or returned by the vendor.
OPEN_LEG_STATUSES = ("awaiting_dispatch", "at_repair", "repaired", "at_vendor")


@dataclass
class ReturnState:
    status: ReturnStatus = ReturnStatus.REQUESTED
    order_id: UUID | None = None
    order_number: str | None = None
    customer_id: str | None = None
    channel: ReturnChannel = ReturnChannel.PORTAL
    order_channel: Channel | None = None
    method: ReturnMethod | None = None
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT
    currency: str = "EUR"
    customer_comment: str = ""
    lines: dict[int, ReturnLine] = field(default_factory=dict)
    decisions: dict[int, LineDecision] = field(default_factory=dict)
    rma_number: str | None = None
    destination_warehouse: str | None = None
    label_reference: str | None = None
    instructions: str | None = None
    expected_refund: Money | None = None
    restocking_fee: Money | None = None
    shipping_refund: Money | None = None
    keep_item_eligible: bool = False
    keep_item_offer: Money | None = None
    keep_item_expires_at: datetime | None = None
    keep_item_accepted: bool = False
    keep_item_lapsed_at: datetime | None = None
    """When the last keep-the-item offer lapsed: the time to ship counts from there."""
    requested_at: datetime | None = None
    authorized_at: datetime | None = None
    rejection_code: str | None = None
    rejection_reason: str | None = None
    receipts: list[str] = field(default_factory=list)
    received_items: list[ReceivedItem] = field(default_factory=list)
    unexpected_receipts: list[str] = field(default_factory=list)
    inspected_receipts: list[str | None] = field(default_factory=list)
    inspected_items: list[InspectedItem] = field(default_factory=list)
    refund_due: Money | None = None
    refunds: dict[str, RefundState] = field(default_factory=dict)
    store_credit: Money | None = None
    store_credit_paid: Money | None = None
    store_credit_shipping: Money | None = None
    replacement_order_id: UUID | None = None
    exchange_refund_difference: Money | None = None
    exchange_amount_due: Money | None = None
    replacement_order_number: str | None = None
    instant_exchange: bool = False
    instant_exchange_value: Money | None = None
    """What the returned lines were worth when an instant exchange shipped their replacement."""
    instant_exchange_charged: Money | None = None
    legs: dict[str, Leg] = field(default_factory=dict)
    blind_receipt_id: str | None = None
    blind_warehouse_id: str | None = None
    blind_claimed_rma: str | None = None
    blind_order_hint: str | None = None
    store_id: str | None = None
    closed_outcome: str | None = None
    matched_by: str | None = None
    linked_return_id: UUID | None = None
    review_rules: tuple[str, ...] = ()
    """The review rules that held it (domain/review.py), while or since it was held."""
    review_reason: str | None = None


# Where each event moves the customer's leg; events not listed leave the status as it is.
# The read models follow the same table (projections/rma_status.py), so it is written once.
STATUS_AFTER: Mapping[str, ReturnStatus] = {
    ReturnRequested.type_name: ReturnStatus.REQUESTED,
    ReturnAuthorized.type_name: ReturnStatus.AUTHORIZED,
    ReturnHeldForReview.type_name: ReturnStatus.PENDING_REVIEW,
    ReturnRejected.type_name: ReturnStatus.REJECTED,
    ReturnParcelReceived.type_name: ReturnStatus.RECEIVED,
    BlindReturnDetected.type_name: ReturnStatus.BLIND_UNMATCHED,
    BlindReturnMatched.type_name: ReturnStatus.RECEIVED,
    InStoreReturnRecorded.type_name: ReturnStatus.RECEIVED,
    ItemsInspected.type_name: ReturnStatus.INSPECTED,
    RefundRequested.type_name: ReturnStatus.REFUND_PENDING,
    RefundFailed.type_name: ReturnStatus.REFUND_FAILED,
    StoreCreditIssued.type_name: ReturnStatus.PARTIALLY_REFUNDED,
    KeepItemOffered.type_name: ReturnStatus.KEEP_ITEM_OFFERED,
    ReturnClosed.type_name: ReturnStatus.CLOSED,
    ReturnCancelled.type_name: ReturnStatus.CANCELLED,
    ReturnExpired.type_name: ReturnStatus.EXPIRED,
    KeepItemLapsed.type_name: ReturnStatus.AUTHORIZED,
    BlindInspectionAssessed.type_name: ReturnStatus.INSPECTED,
    BlindReturnLinked.type_name: ReturnStatus.CLOSED,
    BlindReturnClosedUnidentified.type_name: ReturnStatus.CLOSED,
}


def status_after(
    current: ReturnStatus, event_type: str, *, refunds_in_flight: bool
) -> ReturnStatus:
    """The status after an event of ``event_type``; ``refunds_in_flight`` counts the
    refunds still awaiting the provider once that event is applied."""
    if current is ReturnStatus.BLIND_UNMATCHED and event_type == ItemsInspected.type_name:
        # Inspected before its match: the goods are placed, but it still waits for an order.
        return current
    if event_type == RefundSettled.type_name:
        # Paid so far: closed by the next event if nothing more is due.
        return current if refunds_in_flight else ReturnStatus.PARTIALLY_REFUNDED
    return STATUS_AFTER.get(event_type, current)


def leg_step(*said: object) -> str:
    """What a leg step said, compared when the same step comes again."""
    return "|".join("" if part is None else str(part) for part in said)


def evolve(state: ReturnState, event: ReturnEvent) -> None:
    """Fold one event into ``state``; never checks anything, so replay cannot fail."""
    s = state
    # The status moves after the rest, so a settled refund sees the refunds updated.
    match event:
        case ReturnRequested():
            s.order_id = event.order_id
            s.order_number = event.order_number
            s.customer_id = event.customer_id
            s.channel = event.channel
            s.order_channel = event.order_channel
            s.method = event.method
            s.refund_method = event.refund_method
            s.currency = event.currency
            s.customer_comment = event.customer_comment
            s.lines = {line.line_no: line for line in event.lines}
            s.requested_at = event.timestamp
        case ReturnAuthorized():
            s.rma_number = event.rma_number
            s.destination_warehouse = event.destination_warehouse
            s.label_reference = event.label_reference
            s.instructions = event.instructions
            s.expected_refund = event.expected_refund
            s.restocking_fee = event.restocking_fee
            s.shipping_refund = event.shipping_refund
            s.decisions = {d.line_no: d for d in event.decisions}
            s.keep_item_eligible = event.keep_item_eligible
            s.authorized_at = event.timestamp
        case ReturnHeldForReview():
            s.decisions = {d.line_no: d for d in event.decisions}
            s.review_rules = event.rules
            s.review_reason = event.reason
        case ReturnRejected():
            s.rejection_code = event.code
            s.rejection_reason = event.reason
            if event.decisions:
                s.decisions = {d.line_no: d for d in event.decisions}
        case ReturnLabelIssued():
            s.label_reference = event.label_reference
        case ReturnParcelReceived():
            s.receipts.append(event.receipt_id)
            s.received_items.extend(event.items)
        case ReturnUnexpectedParcelReceived():
            # Recorded, not taken in: its goods go to a blind return of their own (the
            # receive-parcel command opens it), so this RMA keeps its status and its
            # counts, and a refund still in flight here settles as if nothing came.
            s.unexpected_receipts.append(event.receipt_id)
        case BlindReturnDetected():
            s.channel = ReturnChannel.BLIND
            s.blind_receipt_id = event.receipt_id
            s.blind_warehouse_id = event.warehouse_id
            s.blind_claimed_rma = event.claimed_rma_number
            s.blind_order_hint = event.order_number_hint
            s.receipts.append(event.receipt_id)
            s.received_items.extend(event.items)
            s.requested_at = event.timestamp
        case BlindReturnMatched():
            s.order_id = event.order_id
            s.order_number = event.order_number
            s.customer_id = event.customer_id
            s.order_channel = event.order_channel
            s.currency = event.currency
            s.rma_number = event.rma_number
            s.lines = {line.line_no: line for line in event.lines}
            s.decisions = {d.line_no: d for d in event.decisions}
            s.restocking_fee = event.restocking_fee
            s.shipping_refund = Money.zero(event.currency)
            s.matched_by = event.matched_by
        case InStoreReturnRecorded():
            s.channel = ReturnChannel.STORE
            s.store_id = event.store_id
            s.order_id = event.order_id
            s.order_number = event.order_number
            s.customer_id = event.customer_id
            s.order_channel = event.order_channel
            s.rma_number = event.rma_number
            s.currency = event.currency
            s.refund_method = event.refund_method
            s.method = ReturnMethod.STORE
            s.lines = {line.line_no: line for line in event.lines}
            s.decisions = {d.line_no: d for d in event.decisions}
            s.restocking_fee = event.restocking_fee
            s.shipping_refund = Money.zero(event.currency)
            s.receipts.append(event.store_return_id)
            s.requested_at = event.timestamp
        case ItemsInspected():
            s.inspected_receipts.append(event.receipt_id)
            start = len(s.inspected_items)
            s.inspected_items.extend(event.items)
            due = s.refund_due or Money.zero(s.currency)
            s.refund_due = due + event.refund_due
            for index, item in enumerate(event.items, start=start):
                if item.disposition in (Disposition.REPAIR, Disposition.RETURN_TO_VENDOR):
                    line = s.lines.get(item.line_no) if item.line_no else None
                    s.legs[f"L{index + 1}"] = Leg(
                        kind=item.disposition,
                        sku=item.sku,
                        quantity=item.quantity,
                        supplier=line.supplier if line else "unknown",
                        serial=item.serial,
                        location_id=item.location_id,
                        opened_at=event.timestamp,
                    )
        case RefundRequested():
            s.refunds[event.refund_id] = RefundState(
                event.amount, event.allocations, shipping=event.shipping_refund
            )
        case RefundSettled():
            refund = s.refunds[event.refund_id]
            refund.status = "settled"
            refund.provider_reference = event.provider_reference
        case RefundFailed():
            s.refunds[event.refund_id].status = "failed"
        case RefundPaymentSettled():
            refund = s.refunds[event.refund_id]
            so_far = refund.settled_by_payment.get(event.payment_id, Money.zero(s.currency))
            refund.settled_by_payment[event.payment_id] = so_far + event.amount
            refund.settlements.append(f"{event.payment_id}:{event.provider_reference}")
        case RefundDiscrepancy():
            s.refunds[event.refund_id].discrepancies.append(
                Discrepancy(
                    event.payment_id,
                    event.provider_reference,
                    event.amount,
                    event.reason,
                    event.timestamp,
                    event.kind,
                )
            )
        case StoreCreditIssued():
            zero = Money.zero(s.currency)
            s.store_credit = (s.store_credit or zero) + event.amount + event.bonus
            s.store_credit_paid = (s.store_credit_paid or zero) + event.amount
            s.store_credit_shipping = (s.store_credit_shipping or zero) + (event.shipping or zero)
        case ExchangeOrdered():
            s.replacement_order_id = event.replacement_order_id
            s.exchange_refund_difference = event.refund_difference
            s.exchange_amount_due = event.amount_due
            s.instant_exchange = event.instant
            s.replacement_order_number = event.replacement_order_number
            s.instant_exchange_value = event.amount_outstanding if event.instant else None
        case InstantExchangeCharged():
            s.instant_exchange_charged = event.amount
        case ReturnResolutionChanged():
            s.refund_method = event.to_refund_method
        case KeepItemOffered():
            s.keep_item_offer = event.refund_amount
            s.keep_item_expires_at = event.expires_at
        case KeepItemAccepted():
            s.keep_item_accepted = True
        case KeepItemLapsed():
            s.keep_item_offer = None
            s.keep_item_lapsed_at = event.timestamp
        case ReturnClosed():
            s.closed_outcome = event.outcome
        case RepairSent():
            leg = s.legs[event.leg_id]
            leg.status = "at_repair"
            leg.partner, leg.reference = event.repair_center, event.reference
            leg.steps["sent"] = leg_step(event.repair_center, event.reference)
        case RepairCompleted():
            leg = s.legs[event.leg_id]
            # Nothing comes back from beyond repair: the item is scrapped there.
            leg.status = "scrapped" if event.outcome == "beyond_repair" else "repaired"
            leg.outcome = event.outcome
            leg.replacement_serial = event.replacement_serial
            leg.steps["completed"] = leg_step(event.outcome, event.replacement_serial)
        case RepairedItemRestocked():
            leg = s.legs[event.leg_id]
            leg.status = "restocked"
            leg.restocked_at = event.location_id
            leg.steps["restocked"] = leg_step(event.location_id)
        case VendorReturnShipped():
            leg = s.legs[event.leg_id]
            leg.status = "at_vendor"
            leg.partner, leg.reference = event.supplier, event.vendor_rma
            leg.steps["shipped"] = leg_step(event.vendor_rma)
        case SupplierCreditReceived():
            s.legs[event.leg_id].status = "credited"
            s.legs[event.leg_id].credit = event.amount
            s.legs[event.leg_id].steps["credited"] = leg_step(str(event.amount))
        case VendorItemReturned():
            leg = s.legs[event.leg_id]
            leg.status = "returned_by_vendor"
            leg.restocked_at = event.location_id
            leg.steps["restocked"] = leg_step(event.location_id)
        case BlindInspectionAssessed():
            # The parcel's one inspection, now tied to the matched lines.
            s.inspected_items = list(event.items)
            s.refund_due = event.refund_due
            for index, item in enumerate(event.items):
                # Legs opened before the match knew no line: now their supplier is known.
                opened = s.legs.get(f"L{index + 1}")
                line = s.lines.get(item.line_no) if item.line_no else None
                if opened is not None and line is not None:
                    opened.supplier = line.supplier
        case BlindReturnLinked():
            s.linked_return_id = event.linked_return_id
            s.closed_outcome = "linked"
            s.legs.clear()  # the goods are the linked return's now, legs included
        case BlindReturnClosedUnidentified():
            s.closed_outcome = "unidentified"
    s.status = status_after(
        s.status,
        event.type_name,
        refunds_in_flight=any(r.status == "requested" for r in s.refunds.values()),
    )
