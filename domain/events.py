"""The event catalogue: every fact the OMS records, as immutable pydantic models.

Each class declares its stable wire ``type`` (``rma.authorized``); that name, not the
Python module path, is what the event store records, so classes can move freely and
the relay publishes the same name as the CloudEvents ``type``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.values import (
    Channel,
    Condition,
    Disposition,
    LocationId,
    Money,
    PaymentMethod,
    ReasonCode,
    RefundMethod,
    ReturnChannel,
    ReturnMethod,
    Serial,
    Sku,
    Value,
)

EVENT_TYPES: dict[str, type[DomainEvent]] = {}


class Cause(Value):
    """Who and what caused an event: the audit trail of every change."""

    actor: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200)
    correlation_id: str = Field(min_length=1, max_length=200)
    causation_id: str | None = None


class DomainEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type_name: ClassVar[str] = ""
    aggregate_kind: ClassVar[str] = ""

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    cause: Cause

    def __init_subclass__(cls, type_name: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if type_name:
            if type_name in EVENT_TYPES:
                raise TypeError(f"event type {type_name!r} declared twice")
            cls.type_name = type_name
            EVENT_TYPES[type_name] = cls


# ---------------------------------------------------------------- Order
class OrderLine(Value):
    line_no: int = Field(ge=1)
    sku: Sku
    name: str = ""
    quantity: int = Field(ge=1)
    unit_price: Money
    serials: tuple[Serial, ...] = ()
    supplier: str = "unknown"
    category: str = "general"
    returnable: bool = True
    warranty_months: int | None = Field(default=None, ge=0)


class Payment(Value):
    payment_id: str = Field(min_length=1)
    method: PaymentMethod
    amount: Money
    store_credit_code: str | None = None
    """A ``store_credit`` payment by code: the code's account pays (else the customer's)."""


class FulfilledLine(Value):
    line_no: int = Field(ge=1)
    quantity: int = Field(ge=1)
    serials: tuple[Serial, ...] = ()


class RefundAllocation(Value):
    """The part of one refund that goes back to one payment (or to store credit)."""

    payment_id: str | None
    method: PaymentMethod
    amount: Money


class OrderEvent(DomainEvent):
    aggregate_kind: ClassVar[str] = "order"


class OrderPlaced(OrderEvent, type_name="order.placed"):
    order_number: str
    customer_id: str
    customer_email: str | None = None
    channel: Channel
    store_id: str | None = None
    currency: str
    lines: tuple[OrderLine, ...]
    payments: tuple[Payment, ...]
    shipping: Money
    replacement_for: UUID | None = None
    replacement_return_id: UUID | None = None
    # An exchange's replacement that ships later: its lines are reserved at this location
    # (the return's destination warehouse) until fulfilled or cancelled (stock projection).
    reservation_location: str | None = None


class OrderLinesFulfilled(OrderEvent, type_name="order.lines_fulfilled"):
    location_id: LocationId
    lines: tuple[FulfilledLine, ...]


class OrderDelivered(OrderEvent, type_name="order.delivered"):
    delivered_at: datetime


class OrderCancelled(OrderEvent, type_name="order.cancelled"):
    reason: str


class OrderReplacementCreated(OrderEvent, type_name="order.replacement_created"):
    replacement_order_id: UUID
    return_id: UUID


class OrderReturnReserved(OrderEvent, type_name="order.return_reserved"):
    """Quantities set aside for an open return, so two RMAs cannot return one item twice."""

    return_id: UUID
    quantities: dict[int, int]


class OrderReturnReleased(OrderEvent, type_name="order.return_released"):
    return_id: UUID


class OrderRefundAllocated(OrderEvent, type_name="order.refund_allocated"):
    refund_id: str
    return_id: UUID
    allocations: tuple[RefundAllocation, ...]
    shipping_refunded: Money


class OrderRefundReleased(OrderEvent, type_name="order.refund_released"):
    refund_id: str
    reason: str


# ---------------------------------------------------------------- Return
class ReturnPolicyTerms(Value):
    """The policy in force for one line when a return was decided; recorded for audit."""

    window_days: int
    warranty_months: int
    restocking_fee_rate: str
    late_change_of_mind_days: int
    returnable: bool


class ExchangeChoice(Value):
    """What the customer wants instead of a returned line (another size or SKU). There is
    no catalogue: its name and unit price are the request's own."""

    sku: Sku
    unit_price: Money
    name: str = ""


class ReturnLine(Value):
    line_no: int = Field(ge=1)
    sku: Sku
    quantity: int = Field(ge=1)
    reason: ReasonCode
    unit_price: Money
    serial: Serial | None = None
    supplier: str = "unknown"
    category: str = "general"
    comment: str = ""
    exchange: ExchangeChoice | None = None


class LineDecision(Value):
    line_no: int
    accepted: bool
    code: str
    within_window: bool
    under_warranty: bool
    restocking_fee: Money
    terms: ReturnPolicyTerms
    # The version of the operators' policy file that made this decision (issue 13); None:
    # the built-in defaults, or a decision recorded before policies were versioned.
    policy_version: str | None = None


class ReceivedItem(Value):
    sku: Sku
    quantity: int = Field(ge=1)
    serial: Serial | None = None


class InspectedItem(Value):
    sku: Sku
    quantity: int = Field(ge=1)
    serial: Serial | None = None
    condition: Condition
    disposition: Disposition
    line_no: int | None = None
    location_id: LocationId


class ReturnEvent(DomainEvent):
    aggregate_kind: ClassVar[str] = "return"


class ReturnRequested(ReturnEvent, type_name="rma.requested"):
    order_id: UUID
    order_number: str
    customer_id: str
    channel: ReturnChannel
    order_channel: Channel
    method: ReturnMethod
    refund_method: RefundMethod
    currency: str
    lines: tuple[ReturnLine, ...]
    customer_comment: str = ""


class ReturnAuthorized(ReturnEvent, type_name="rma.authorized"):
    rma_number: str
    destination_warehouse: str
    label_reference: str
    instructions: str
    expected_refund: Money
    restocking_fee: Money
    shipping_refund: Money
    decisions: tuple[LineDecision, ...]
    keep_item_eligible: bool = False


class ReturnHeldForReview(ReturnEvent, type_name="rma.held_for_review"):
    reason: str
    decisions: tuple[LineDecision, ...]
    # The review rules that held it (domain/review.py names them) and the policy version
    # that stated them; empty and None on holds recorded before the rules were named.
    rules: tuple[str, ...] = ()
    policy_version: str | None = None


class ReturnRejected(ReturnEvent, type_name="rma.rejected"):
    code: str
    reason: str
    decisions: tuple[LineDecision, ...] = ()


class ReturnLabelIssued(ReturnEvent, type_name="rma.label_issued"):
    label_reference: str
    carrier: str


class ReturnParcelReceived(ReturnEvent, type_name="rma.parcel_received"):
    receipt_id: str
    warehouse_id: LocationId
    tracking_number: str | None = None
    items: tuple[ReceivedItem, ...]


class ReturnUnexpectedParcelReceived(ReturnEvent, type_name="rma.unexpected_parcel_received"):
    """A parcel for an RMA that can no longer take one (cancelled, expired, closed, or all
    its items already back): recorded on the RMA; its goods open a blind return
    (``rma.blind_return_detected`` claiming this RMA's number) for customer service."""

    receipt_id: str
    warehouse_id: LocationId
    tracking_number: str | None = None
    items: tuple[ReceivedItem, ...]
    state_at_arrival: str


class BlindReturnDetected(ReturnEvent, type_name="rma.blind_return_detected"):
    receipt_id: str
    warehouse_id: LocationId
    tracking_number: str | None = None
    claimed_rma_number: str | None = None
    order_number_hint: str | None = None
    items: tuple[ReceivedItem, ...]


class BlindReturnMatched(ReturnEvent, type_name="rma.blind_return_matched"):
    order_id: UUID
    order_number: str
    customer_id: str
    order_channel: Channel
    currency: str
    matched_by: str
    rma_number: str
    lines: tuple[ReturnLine, ...]
    decisions: tuple[LineDecision, ...]
    restocking_fee: Money


class InStoreReturnRecorded(ReturnEvent, type_name="rma.in_store_return_recorded"):
    store_return_id: str
    store_id: LocationId
    staff_id: str
    order_id: UUID
    order_number: str
    customer_id: str
    order_channel: Channel
    rma_number: str
    currency: str
    refund_method: RefundMethod
    lines: tuple[ReturnLine, ...]
    decisions: tuple[LineDecision, ...]
    restocking_fee: Money


class ItemsInspected(ReturnEvent, type_name="rma.items_inspected"):
    receipt_id: str | None
    items: tuple[InspectedItem, ...]
    refund_due: Money


class RefundRequested(ReturnEvent, type_name="rma.refund_requested"):
    refund_id: str
    amount: Money
    restocking_fee: Money
    shipping_refund: Money
    allocations: tuple[RefundAllocation, ...]
    keep_item: bool = False


class RefundSettled(ReturnEvent, type_name="rma.refund_settled"):
    refund_id: str
    provider_reference: str
    amount: Money


class RefundFailed(ReturnEvent, type_name="rma.refund_failed"):
    refund_id: str
    reason: str


class RefundPaymentSettled(ReturnEvent, type_name="rma.refund_payment_settled"):
    """The provider paid back (part of) one payment of a refund. The refund itself is
    settled (``rma.refund_settled``) once every payment has been paid back in full."""

    refund_id: str
    payment_id: str
    provider_reference: str
    amount: Money


class RefundDiscrepancy(ReturnEvent, type_name="rma.refund_discrepancy"):
    """A settlement that disagrees with the refund instruction (more than is outstanding,
    another currency, a payment the refund does not name, a refund that failed): kept for
    finance to reconcile, and nothing else changes."""

    refund_id: str
    payment_id: str | None = None
    provider_reference: str
    amount: Money
    reason: str
    # Added for reconciliation (absent on older events): what kind of disagreement
    # (``DISCREPANCY_KINDS`` in domain/returns/reconciliation.py), what the instruction
    # expected, and the provider (the payment method the money goes back through).
    kind: str | None = None
    expected: Money | None = None
    provider: str | None = None


class StoreCreditIssued(ReturnEvent, type_name="rma.store_credit_issued"):
    credit_id: str
    amount: Money
    bonus: Money
    restocking_fee: Money
    shipping: Money | None = None  # the part of ``amount`` that pays back shipping
    code: str | None = None
    """The code the customer spends the credit with (``SC-`` and 12 base32 characters)."""


class ExchangeOrdered(ReturnEvent, type_name="rma.exchange_ordered"):
    replacement_order_id: UUID
    replacement_order_number: str
    lines: tuple[OrderLine, ...]
    # Uneven exchanges: the returned lines' price minus the replacement's, refunded when
    # positive (``refund_difference``) or owed by the customer when negative (``amount_due``).
    refund_difference: Money | None = None
    amount_due: Money | None = None
    instant: bool = False
    """Ordered at authorization (the policy's ``instant_exchange``), before the returned
    items arrive: they are owed until received (``amount_outstanding``)."""
    amount_outstanding: Money | None = None
    """Instant: the value of the returned lines, owed by the customer until they arrive."""


class InstantExchangeCharged(ReturnEvent, type_name="rma.instant_exchange_charged"):
    """An instant exchange's RMA expired with items never returned: the customer owes
    their value (recorded only: no payment is captured here)."""

    replacement_order_number: str
    amount: Money


class ReturnResolutionChanged(ReturnEvent, type_name="rma.resolution_changed"):
    """The customer (or customer service for them) chose another way to be settled, before
    anything was paid or an exchange ordered."""

    from_refund_method: RefundMethod
    to_refund_method: RefundMethod
    reason: str = ""


class KeepItemOffered(ReturnEvent, type_name="rma.keep_item_offered"):
    refund_amount: Money
    expires_at: datetime


class KeepItemAccepted(ReturnEvent, type_name="rma.keep_item_accepted"):
    pass


class KeepItemLapsed(ReturnEvent, type_name="rma.keep_item_lapsed"):
    """The offer to keep the item ran out unaccepted: the RMA is authorized again and waits
    for its parcel, its time to ship counted afresh from here."""

    expired_at: datetime


class RepairSent(ReturnEvent, type_name="rma.repair_sent"):
    leg_id: str
    repair_center: str
    reference: str | None = None  # the repair centre's job or shipment reference


class RepairCompleted(ReturnEvent, type_name="rma.repair_completed"):
    leg_id: str
    outcome: str
    replacement_serial: str | None = None  # outcome ``replaced``: the new unit's serial


class RepairedItemRestocked(ReturnEvent, type_name="rma.repaired_item_restocked"):
    leg_id: str
    location_id: LocationId


class VendorReturnShipped(ReturnEvent, type_name="rma.vendor_return_shipped"):
    leg_id: str
    supplier: str
    vendor_rma: str


class SupplierCreditReceived(ReturnEvent, type_name="rma.supplier_credit_received"):
    leg_id: str
    amount: Money
    reference: str | None = None  # the supplier's credit note


class VendorItemReturned(ReturnEvent, type_name="rma.vendor_item_returned"):
    """The supplier refused a vendor leg and sent the item back: it is in stock again at
    ``location_id`` and the leg ends with no credit."""

    leg_id: str
    location_id: LocationId


class ReturnClosed(ReturnEvent, type_name="rma.closed"):
    outcome: str


class ReturnCancelled(ReturnEvent, type_name="rma.cancelled"):
    reason: str


class ReturnExpired(ReturnEvent, type_name="rma.expired"):
    authorized_days: int


# ---------------------------------------------------------------- blind returns (issue 11)
class BlindInspectionAssessed(ReturnEvent, type_name="rma.blind_inspection_assessed"):
    """A blind parcel inspected before its match, now matched: the recorded inspection's
    items tied to the matched lines and what they earn back (the goods moved at the
    inspection; this only prices them)."""

    items: tuple[InspectedItem, ...]
    refund_due: Money


class BlindReturnLinked(ReturnEvent, type_name="rma.blind_return_linked"):
    """A blind parcel that is the same return another system reported: it ends here and
    the linked return is the one record of the goods and the money. ``withdrawn`` are the
    goods this parcel's own inspection had put in stock, taken back out, so stock counts
    them once (under the linked return, inspected or to be)."""

    linked_return_id: UUID
    linked_rma_number: str | None = None
    reason: str = ""
    withdrawn: tuple[InspectedItem, ...] = ()


class BlindReturnClosedUnidentified(ReturnEvent, type_name="rma.blind_return_closed_unidentified"):
    """A blind parcel nobody placed in time: closed, its goods where they lie. ``placed``
    are the goods put in stock now under ``disposition`` at ``location_id`` (none when an
    inspection placed them already)."""

    waited_days: int
    disposition: Disposition | None = None
    location_id: LocationId | None = None
    placed: tuple[ReceivedItem, ...] = ()


# ---------------------------------------------------------------- Inventory
class InventoryEvent(DomainEvent):
    aggregate_kind: ClassVar[str] = "inventory"

    sku: Sku
    location_id: LocationId


class StockCounted(InventoryEvent, type_name="inventory.counted"):
    quantity: int = Field(ge=0)
    count_id: str
    counted_at: datetime | None = None
    """When the shelf held ``quantity``; ``None`` (events recorded before it existed): the
    event's ``timestamp``. The stock level counts movements after it on top."""


class StockAdjusted(InventoryEvent, type_name="inventory.adjusted"):
    delta: int
    reason: str
    adjustment_id: str


# ---------------------------------------------------------------- Store credit
class StoreCreditEvent(DomainEvent):
    """A move on a customer's store-credit account (one per customer): the balance they
    can spend on orders paid with ``store_credit``."""

    aggregate_kind: ClassVar[str] = "store_credit"

    customer_id: str
    reference: str
    """What moved it: a return's credit id (``SC-...``), a refund id, or an order number."""
    amount: Money
    balance: Money
    """The balance in ``amount``'s currency after this move (never negative)."""


class StoreCreditCredited(StoreCreditEvent, type_name="store_credit.credited"):
    reason: str
    """``return`` (a return paid as store credit, bonus included), ``refund`` (the store-credit
    part of an order's refund, once settled) or ``order_cancelled``."""
    code: str | None = None
    """The code issued with this credit; any code of the account spends its whole balance.
    Drawn once by the handler and stored here, so a replay keeps it."""


class StoreCreditSpent(StoreCreditEvent, type_name="store_credit.spent"):
    """An order paid (in part) with store credit; ``reference`` is its order number."""
