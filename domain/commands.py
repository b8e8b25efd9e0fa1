"""Commands as data: what a caller asks the service to do, one frozen dataclass each.

A command carries business data only; who asks, when, under which idempotency key and
at which expected version travel beside it in a ``Ctx``. Sequences are tuples, so a
command is immutable and hashable, and a rerun after a conflict sees exactly what the
first attempt saw (``RequestReturn.return_id`` is drawn once, at construction).

``reads()`` names the aggregate a command loads first, so a batch can read them all in
one round trip (``ReturnsService.run_batch(prefetch=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID, uuid4

from pydantic import BaseModel

from domain.events import FulfilledLine, InspectedItem, OrderLine, Payment, ReceivedItem
from domain.inventory import inventory_id_for
from domain.order import order_id_for
from domain.returns import CounterCheck, RequestedLine, store_return_id_for
from domain.values import Channel, Money, RefundMethod, ReturnChannel, ReturnMethod


class Outcome(BaseModel):
    """The result of a command, stored with its idempotency key so a retry gets the same one."""

    aggregate_id: UUID
    status: str
    rma_number: str | None = None
    code: str | None = None
    message: str | None = None
    refund_id: str | None = None
    amount: Money | None = None
    leg_id: str | None = None


class Command:
    """Base of every command; a handler is registered per subclass (domain/handlers)."""

    __slots__ = ()

    def reads(self) -> UUID | None:
        """The aggregate the command loads first, to load in bulk with its batch; None: no hint."""
        return None


# ---------------------------------------------------------------- orders
@dataclass(frozen=True, slots=True)
class PlaceOrder(Command):
    order_number: str
    customer_id: str
    customer_email: str | None
    channel: Channel
    lines: tuple[OrderLine, ...]
    payments: tuple[Payment, ...]
    shipping: Money
    store_id: str | None = None
    placed_at: datetime | None = None
    """When the order was placed, if not when the command runs (an inbound message's time)."""

    def reads(self) -> UUID | None:
        return order_id_for(self.order_number)


@dataclass(frozen=True, slots=True)
class FulfilOrder(Command):
    order_number: str
    location_id: str
    lines: tuple[FulfilledLine, ...]

    def reads(self) -> UUID | None:
        return order_id_for(self.order_number)


@dataclass(frozen=True, slots=True)
class DeliverOrder(Command):
    order_number: str
    delivered_at: datetime | None = None

    def reads(self) -> UUID | None:
        return order_id_for(self.order_number)


@dataclass(frozen=True, slots=True)
class CancelOrder(Command):
    order_number: str
    reason: str

    def reads(self) -> UUID | None:
        return order_id_for(self.order_number)


# ---------------------------------------------------------------- RMA requests and reviews
@dataclass(frozen=True, slots=True)
class RequestReturn(Command):
    order_number: str
    lines: tuple[RequestedLine, ...]
    channel: ReturnChannel = ReturnChannel.PORTAL
    method: ReturnMethod = ReturnMethod.CARRIER_DROP_OFF
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT
    comment: str = ""
    return_id: UUID = field(default_factory=uuid4)


@dataclass(frozen=True, slots=True)
class ApproveReturn(Command):
    return_id: UUID


@dataclass(frozen=True, slots=True)
class RefuseReturn(Command):
    return_id: UUID
    reason: str


@dataclass(frozen=True, slots=True)
class IssueLabel(Command):
    rma_number: str
    carrier: str = "sandbox-carrier"


@dataclass(frozen=True, slots=True)
class CancelReturn(Command):
    return_id: UUID
    reason: str


@dataclass(frozen=True, slots=True)
class ExpireReturn(Command):
    """Expire the RMA if its policy's time to ship has run out (a no-op otherwise)."""

    return_id: UUID


@dataclass(frozen=True, slots=True)
class ChangeResolution(Command):
    return_id: UUID
    refund_method: RefundMethod
    reason: str = ""


# ---------------------------------------------------------------- warehouse and blind returns
@dataclass(frozen=True, slots=True)
class ReceiveParcel(Command):
    receipt_id: str
    warehouse_id: str
    rma_number: str | None
    tracking_number: str | None
    items: tuple[ReceivedItem, ...]
    order_number: str | None = None


@dataclass(frozen=True, slots=True)
class InspectItems(Command):
    rma_number: str
    receipt_id: str | None
    items: tuple[InspectedItem, ...]


@dataclass(frozen=True, slots=True)
class MatchBlindReturn(Command):
    return_id: UUID
    order_number: str
    lines: tuple[RequestedLine, ...]
    matched_by: str


# ---------------------------------------------------------------- settlement and refunds
@dataclass(frozen=True, slots=True)
class SettleRefund(Command):
    refund_id: str
    provider_reference: str
    amount: Money
    payment_id: str | None = None
    """The one payment of the refund this settles; none: the whole refund at once."""


@dataclass(frozen=True, slots=True)
class FailRefund(Command):
    refund_id: str
    reason: str
    payment_id: str | None = None
    """The one payment the provider says failed; none: the whole refund."""


@dataclass(frozen=True, slots=True)
class RetryRefund(Command):
    return_id: UUID
    as_store_credit: bool = False


@dataclass(frozen=True, slots=True)
class ResendRefund(Command):
    """A check only: a refund is waiting for the provider; records no events."""

    return_id: UUID
    as_store_credit: bool = False


@dataclass(frozen=True, slots=True)
class OfferKeepItem(Command):
    return_id: UUID
    valid_days: int = 7


@dataclass(frozen=True, slots=True)
class AcceptKeepItem(Command):
    return_id: UUID


@dataclass(frozen=True, slots=True)
class LapseKeepItemOffer(Command):
    """Let the keep-the-item offer lapse if it ran out unaccepted (a no-op otherwise)."""

    return_id: UUID

    def reads(self) -> UUID | None:
        return self.return_id


# ---------------------------------------------------------------- store counter
@dataclass(frozen=True, slots=True)
class RecordInStoreReturn(Command):
    store_return_id: str
    store_id: str
    staff_id: str
    order_number: str
    lines: tuple[RequestedLine, ...]
    checks: tuple[CounterCheck, ...]
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT

    def reads(self) -> UUID | None:
        return store_return_id_for(self.store_id, self.store_return_id)


@dataclass(frozen=True, slots=True)
class ReceiveRmaAtCounter(Command):
    """A store-method RMA brought to any store counter: received and inspected there, and
    settled at once. ``refund_method`` None keeps the one the RMA was authorized with."""

    rma_number: str
    store_id: str
    store_return_id: str
    staff_id: str
    checks: tuple[CounterCheck, ...]
    refund_method: RefundMethod | None = None
    order_number: str | None = None
    """The order the counter believes it is; refused when the RMA is another order's."""


# ---------------------------------------------------------------- repair and vendor legs
@dataclass(frozen=True, slots=True)
class SendToRepair(Command):
    return_id: UUID
    leg_id: str
    repair_center: str


@dataclass(frozen=True, slots=True)
class CompleteRepair(Command):
    return_id: UUID
    leg_id: str
    outcome: str


@dataclass(frozen=True, slots=True)
class RestockRepaired(Command):
    return_id: UUID
    leg_id: str
    location_id: str


@dataclass(frozen=True, slots=True)
class ShipToVendor(Command):
    return_id: UUID
    leg_id: str
    vendor_rma: str


@dataclass(frozen=True, slots=True)
class ReceiveSupplierCredit(Command):
    return_id: UUID
    leg_id: str
    amount: Money


class LegAction(StrEnum):
    """What the warehouse or repair desk reports about a leg (one ``MoveLeg`` each)."""

    SENT_TO_REPAIR = "sent_to_repair"
    REPAIRED = "repaired"
    REPLACED = "replaced"
    UNREPAIRABLE = "unrepairable"
    RESTOCKED = "restocked"
    SHIPPED_TO_VENDOR = "shipped_to_vendor"
    CREDITED = "credited"


@dataclass(frozen=True, slots=True)
class MoveLeg(Command):
    """A leg named by RMA number (or ``return_id``) and leg id, or by the serial (else SKU)
    of its item when the sender does not know our leg ids; see ``Return.find_leg``."""

    rma_number: str | None
    action: LegAction
    leg_id: str | None = None
    serial: str | None = None
    sku: str | None = None
    repair_center: str | None = None
    reference: str | None = None
    location_id: str | None = None
    amount: Money | None = None
    replacement_serial: str | None = None
    return_id: UUID | None = None

    def reads(self) -> UUID | None:
        return self.return_id


# ---------------------------------------------------------------- inventory
@dataclass(frozen=True, slots=True)
class CountStock(Command):
    sku: str
    location_id: str
    quantity: int
    count_id: str
    counted_at: datetime | None = None
    """When the count was taken, if not when the command runs (the message's time)."""

    def reads(self) -> UUID | None:
        return inventory_id_for(self.sku, self.location_id)


@dataclass(frozen=True, slots=True)
class AdjustStock(Command):
    sku: str
    location_id: str
    delta: int
    reason: str
    adjustment_id: str

    def reads(self) -> UUID | None:
        return inventory_id_for(self.sku, self.location_id)


# ---------------------------------------------------------------- blind returns (issue 11)
@dataclass(frozen=True, slots=True)
class InspectBlindReturn(Command):
    """The warehouse inspected a parcel by its receipt id alone: the blind return it opened."""

    receipt_id: str
    items: tuple[InspectedItem, ...]


@dataclass(frozen=True, slots=True)
class LinkBlindReturn(Command):
    """End a blind return as the same return another system reported (``linked``: its RMA
    number or return id)."""

    return_id: UUID
    linked: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CloseUnidentifiedBlindReturn(Command):
    """Close the blind return as unidentified if it waited longer than the policy allows
    (a no-op otherwise)."""

    return_id: UUID


# ---------------------------------------------------------------- reconciliation
@dataclass(frozen=True, slots=True)
class ReconcileSettlement(Command):
    """One line of a payment provider's settlement file, compared with the refund it names.

    The outcome's ``code`` is the verdict (``matched``, ``pending`` or a discrepancy kind),
    its ``message`` the reason and its ``amount`` what the refund expected."""

    refund_id: str
    provider: str
    provider_reference: str
    amount: Money
    status: Literal["settled", "failed"] = "settled"
    payment_id: str | None = None
