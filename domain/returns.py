"""The Return aggregate (the RMA): from request or blind arrival to refund and closure.

The customer's leg (request, parcel, inspection, refund) drives ``status``. Repair and
return-to-vendor legs that follow a disposition are tracked apart in ``legs``: the
customer's refund never waits on a repair shop or a supplier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.aggregate import Aggregate
from domain.errors import (
    InvalidCommand,
    InvalidTransition,
    PolicyViolation,
    RefundLimitExceeded,
    ResolutionLocked,
)
from domain.events import (
    BlindReturnDetected,
    BlindReturnMatched,
    Cause,
    ExchangeOrdered,
    InspectedItem,
    InStoreReturnRecorded,
    ItemsInspected,
    KeepItemAccepted,
    KeepItemOffered,
    LineDecision,
    OrderLine,
    ReceivedItem,
    RefundAllocation,
    RefundFailed,
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
    VendorReturnShipped,
)
from domain.order import Order
from domain.policy import PolicyBook, ReturnPolicy, evaluate_line, refund_rate
from domain.values import (
    Channel,
    Condition,
    Disposition,
    Money,
    ReasonCode,
    RefundMethod,
    ReturnChannel,
    ReturnMethod,
)

RETURN_NAMESPACE = uuid5(NAMESPACE_URL, "urn:oms:return")


def blind_return_id_for(receipt_id: str) -> UUID:
    """A re-sent warehouse receipt maps to the same blind return, never to a second one."""
    return uuid5(RETURN_NAMESPACE, f"receipt:{receipt_id}")


def store_return_id_for(store_id: str, store_return_id: str) -> UUID:
    return uuid5(RETURN_NAMESPACE, f"store:{store_id}:{store_return_id}")


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
class RefundState:
    amount: Money
    allocations: tuple[RefundAllocation, ...]
    shipping: Money | None = None
    status: str = "requested"
    provider_reference: str | None = None


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
    requested_at: datetime | None = None
    authorized_at: datetime | None = None
    rejection_code: str | None = None
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
    legs: dict[str, Leg] = field(default_factory=dict)
    blind_receipt_id: str | None = None
    blind_warehouse_id: str | None = None
    blind_claimed_rma: str | None = None
    blind_order_hint: str | None = None
    store_id: str | None = None
    closed_outcome: str | None = None


@dataclass(frozen=True)
class RequestedLine:
    """A line of a customer's request, before it is enriched from the order."""

    line_no: int
    quantity: int
    reason: ReasonCode
    serial: str | None = None
    comment: str = ""


@dataclass(frozen=True)
class CounterCheck:
    """What a store clerk sees of one returned line at the counter."""

    line_no: int
    quantity: int
    condition: Condition
    disposition: Disposition
    serial: str | None = None


class Return(Aggregate[ReturnEvent]):
    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.state = ReturnState()

    # ------------------------------------------------------------ creation
    @classmethod
    def request(
        cls,
        return_id: UUID,
        *,
        order: Order,
        lines: tuple[RequestedLine, ...],
        channel: ReturnChannel,
        method: ReturnMethod,
        refund_method: RefundMethod,
        comment: str,
        at: datetime,
        cause: Cause,
    ) -> Return:
        """Record the request; deciding it is a separate step so the request is always kept."""
        order.check_not_cancelled()
        return_lines = enrich_lines(order, lines)
        rma = cls(return_id)
        rma._trigger(
            ReturnRequested,
            cause,
            at,
            order_id=order.id,
            order_number=order.state.order_number,
            customer_id=order.state.customer_id,
            channel=channel,
            order_channel=order.state.channel,
            method=method,
            refund_method=refund_method,
            currency=order.state.currency,
            lines=return_lines,
            customer_comment=comment,
        )
        return rma

    def decide(
        self,
        *,
        order: Order,
        book: PolicyBook,
        rma_number: str,
        destination_warehouse: str,
        label_reference: str,
        at: datetime,
        cause: Cause,
    ) -> None:
        """Apply the policy: authorize, hold for review, or reject with the policy's reason."""
        self.check_status(ReturnStatus.REQUESTED)
        decisions = decide_lines(order, tuple(self.state.lines.values()), book, at, blind=False)
        refused = [d for d in decisions if not d.accepted]
        if refused:
            first = refused[0]
            self._trigger(
                ReturnRejected,
                cause,
                at,
                code=first.code,
                reason=rejection_message(first),
                decisions=decisions,
            )
            return
        fee = sum_fees(decisions, self.state.currency)
        shipping = shipping_refund_for(order, tuple(self.state.lines.values()))
        expected = max_zero(self.lines_value() - fee + shipping)
        policy = self.policy(book)
        if expected.amount > policy.review_threshold:
            self._trigger(
                ReturnHeldForReview,
                cause,
                at,
                reason=f"expected refund {expected} is above the review threshold "
                f"{policy.review_threshold} {self.state.currency}",
                decisions=decisions,
            )
            return
        self._authorize(
            decisions,
            rma_number,
            destination_warehouse,
            label_reference,
            fee,
            shipping,
            book,
            at,
            cause,
        )

    def approve(
        self,
        *,
        order: Order,
        book: PolicyBook,
        rma_number: str,
        destination_warehouse: str,
        label_reference: str,
        at: datetime,
        cause: Cause,
    ) -> None:
        self.check_status(ReturnStatus.PENDING_REVIEW)
        decisions = tuple(self.state.decisions.values())
        fee = sum_fees(decisions, self.state.currency)
        shipping = shipping_refund_for(order, tuple(self.state.lines.values()))
        self._authorize(
            decisions,
            rma_number,
            destination_warehouse,
            label_reference,
            fee,
            shipping,
            book,
            at,
            cause,
        )

    def refuse(self, reason: str, at: datetime, cause: Cause) -> None:
        self.check_status(ReturnStatus.PENDING_REVIEW, ReturnStatus.REQUESTED)
        self._trigger(ReturnRejected, cause, at, code="refused_by_review", reason=reason)

    def _authorize(
        self,
        decisions: tuple[LineDecision, ...],
        rma_number: str,
        destination_warehouse: str,
        label_reference: str,
        fee: Money,
        shipping: Money,
        book: PolicyBook,
        at: datetime,
        cause: Cause,
    ) -> None:
        policy = self.policy(book)
        keep_eligible = self.lines_value().amount < policy.keep_item_threshold and all(
            line.reason is not ReasonCode.WRONG_ITEM for line in self.state.lines.values()
        )
        self._trigger(
            ReturnAuthorized,
            cause,
            at,
            rma_number=rma_number,
            destination_warehouse=destination_warehouse,
            label_reference=label_reference,
            instructions=packing_instructions(self.state, rma_number),
            expected_refund=max_zero(self.lines_value() - fee + shipping),
            restocking_fee=fee,
            shipping_refund=shipping,
            decisions=decisions,
            keep_item_eligible=keep_eligible,
        )

    @classmethod
    def detect_blind(
        cls,
        *,
        receipt_id: str,
        warehouse_id: str,
        tracking_number: str | None,
        claimed_rma_number: str | None,
        order_number_hint: str | None,
        items: tuple[ReceivedItem, ...],
        at: datetime,
        cause: Cause,
    ) -> Return:
        if not items:
            raise InvalidCommand(f"receipt {receipt_id} lists no items")
        rma = cls(blind_return_id_for(receipt_id))
        rma._trigger(
            BlindReturnDetected,
            cause,
            at,
            receipt_id=receipt_id,
            warehouse_id=warehouse_id,
            tracking_number=tracking_number,
            claimed_rma_number=claimed_rma_number,
            order_number_hint=order_number_hint,
            items=items,
        )
        return rma

    def match_blind(
        self,
        *,
        order: Order,
        lines: tuple[RequestedLine, ...],
        matched_by: str,
        rma_number: str,
        book: PolicyBook,
        at: datetime,
        cause: Cause,
    ) -> None:
        self.check_status(ReturnStatus.BLIND_UNMATCHED)
        order.check_not_cancelled()
        return_lines = enrich_lines(order, lines)
        decisions = decide_lines(order, return_lines, book, at, blind=True)
        self._trigger(
            BlindReturnMatched,
            cause,
            at,
            order_id=order.id,
            order_number=order.state.order_number,
            customer_id=order.state.customer_id,
            order_channel=order.state.channel,
            currency=order.state.currency,
            matched_by=matched_by,
            rma_number=rma_number,
            lines=return_lines,
            decisions=decisions,
            restocking_fee=sum_fees(decisions, order.state.currency),
        )

    @classmethod
    def record_in_store(
        cls,
        *,
        store_return_id: str,
        store_id: str,
        staff_id: str,
        order: Order,
        lines: tuple[RequestedLine, ...],
        refund_method: RefundMethod,
        rma_number: str,
        book: PolicyBook,
        at: datetime,
        cause: Cause,
    ) -> Return:
        """A web order brought back to a store counter: checked by policy before it is taken."""
        order.check_not_cancelled()
        return_lines = enrich_lines(order, lines)
        decisions = decide_lines(order, return_lines, book, at, blind=False)
        refused = [d for d in decisions if not d.accepted]
        if refused:
            raise PolicyViolation(refused[0].code, rejection_message(refused[0]))
        rma = cls(store_return_id_for(store_id, store_return_id))
        rma._trigger(
            InStoreReturnRecorded,
            cause,
            at,
            store_return_id=store_return_id,
            store_id=store_id,
            staff_id=staff_id,
            order_id=order.id,
            order_number=order.state.order_number,
            customer_id=order.state.customer_id,
            order_channel=order.state.channel,
            rma_number=rma_number,
            currency=order.state.currency,
            refund_method=refund_method,
            lines=return_lines,
            decisions=decisions,
            restocking_fee=sum_fees(decisions, order.state.currency),
        )
        return rma

    # ------------------------------------------------------------ the customer's leg
    def issue_label(self, label_reference: str, carrier: str, at: datetime, cause: Cause) -> None:
        self.check_status(ReturnStatus.AUTHORIZED)
        self._trigger(
            ReturnLabelIssued, cause, at, label_reference=label_reference, carrier=carrier
        )

    def receive_parcel(
        self,
        *,
        receipt_id: str,
        warehouse_id: str,
        tracking_number: str | None,
        items: tuple[ReceivedItem, ...],
        at: datetime,
        cause: Cause,
    ) -> None:
        if receipt_id in self.state.receipts or receipt_id in self.state.unexpected_receipts:
            return  # the same receipt again: already recorded
        if not items:
            raise InvalidCommand(f"receipt {receipt_id} lists no items")
        if self.state.status in OPEN_FOR_PARCELS or (
            self.state.status in OPEN_FOR_MORE_PARCELS and self.outstanding_quantity() > 0
        ):
            self._trigger(
                ReturnParcelReceived,
                cause,
                at,
                receipt_id=receipt_id,
                warehouse_id=warehouse_id,
                tracking_number=tracking_number,
                items=items,
            )
            return
        # Goods physically arrived for an RMA that can no longer take them: a business fact
        # for customer service to resolve, never a message to drop.
        self._trigger(
            ReturnUnexpectedParcelReceived,
            cause,
            at,
            receipt_id=receipt_id,
            warehouse_id=warehouse_id,
            tracking_number=tracking_number,
            items=items,
            state_at_arrival=self.state.status.value,
        )

    def inspect(
        self,
        *,
        receipt_id: str | None,
        items: tuple[InspectedItem, ...],
        book: PolicyBook,
        at: datetime,
        cause: Cause,
    ) -> None:
        if receipt_id in self.state.unexpected_receipts:
            raise InvalidCommand(
                f"receipt {receipt_id} came after this return could take it: inspect it as"
                " the blind return it opened, once customer service has matched it"
            )
        self.check_status(*SETTLING)
        if receipt_id is not None and receipt_id not in self.state.receipts:
            raise InvalidCommand(f"receipt {receipt_id} was not received for this return")
        if receipt_id in self.state.inspected_receipts:
            raise InvalidTransition(f"receipt {receipt_id} is already inspected")
        if not items:
            raise InvalidCommand("an inspection lists at least one item")
        assigned = assign_lines(self.state, items)
        due = self.refund_for(assigned, book)
        self._trigger(
            ItemsInspected, cause, at, receipt_id=receipt_id, items=assigned, refund_due=due
        )

    def request_refund(
        self,
        *,
        refund_id: str,
        amount: Money,
        allocations: tuple[RefundAllocation, ...],
        at: datetime,
        cause: Cause,
        shipping: Money | None = None,
        keep_item: bool = False,
    ) -> None:
        zero = Money.zero(self.state.currency)
        if keep_item:
            if not self.state.keep_item_accepted:
                raise InvalidTransition("the keep-the-item offer was not accepted")
            self.check_status(ReturnStatus.KEEP_ITEM_OFFERED, ReturnStatus.REFUND_FAILED)
            shipping = zero
            limit = max_zero((self.state.keep_item_offer or zero) - self.paid_out())
        else:
            self.check_status(*SETTLING)
            shipping = self.checked_shipping(amount, shipping)
            limit = self.items_due_unpaid() + shipping
        if refund_id in self.state.refunds:
            raise InvalidTransition(f"refund {refund_id} already exists")
        self.check_payout(amount, limit)
        self._trigger(
            RefundRequested,
            cause,
            at,
            refund_id=refund_id,
            amount=amount,
            restocking_fee=zero if keep_item else self.unbilled_fee(),
            shipping_refund=shipping,
            allocations=allocations,
            keep_item=keep_item,
        )

    def settle_refund(
        self, refund_id: str, provider_reference: str, amount: Money, at: datetime, cause: Cause
    ) -> None:
        refund = self.refund(refund_id)
        if refund.status == "settled":
            return  # the provider told us twice
        if refund.status == "failed":
            raise InvalidTransition(f"refund {refund_id} already failed")
        if amount != refund.amount:
            raise InvalidCommand(f"refund {refund_id} was {refund.amount}, settled {amount}")
        self._trigger(
            RefundSettled,
            cause,
            at,
            refund_id=refund_id,
            provider_reference=provider_reference,
            amount=amount,
        )
        self._close_if_done("refunded", at, cause)

    def fail_refund(self, refund_id: str, reason: str, at: datetime, cause: Cause) -> bool:
        """Returns whether anything changed, so the caller releases the money only once."""
        refund = self.refund(refund_id)
        if refund.status == "failed":
            return False
        if refund.status == "settled":
            raise InvalidTransition(f"refund {refund_id} already settled")
        self._trigger(RefundFailed, cause, at, refund_id=refund_id, reason=reason)
        return True

    def issue_store_credit(
        self,
        *,
        credit_id: str,
        amount: Money,
        bonus: Money,
        at: datetime,
        cause: Cause,
        shipping: Money | None = None,
    ) -> None:
        self.check_status(*SETTLING)
        shipping = self.checked_shipping(amount, shipping)
        self.check_payout(amount, self.items_due_unpaid() + shipping)
        if bonus.currency != self.state.currency or bonus.amount < 0:
            raise InvalidCommand(f"a store credit bonus is a non-negative {self.state.currency}")
        self._trigger(
            StoreCreditIssued,
            cause,
            at,
            credit_id=credit_id,
            amount=amount,
            bonus=bonus,
            restocking_fee=self.unbilled_fee(),
            shipping=shipping,
        )
        self._close_if_done("store_credit", at, cause)

    def close_if_settled(self, at: datetime, cause: Cause) -> None:
        """Nothing more to pay for what was inspected: close, if nothing else is pending."""
        self.check_status(*SETTLING)
        if self.state.replacement_order_id is not None:
            outcome = "exchanged"
        elif self.paid_out().is_zero:
            outcome = "nothing_due"  # wrong item, non-returnable, condition worth nothing
        elif self.state.refunds:
            outcome = "refunded"
        else:
            outcome = "store_credit"
        self._close_if_done(outcome, at, cause)

    def order_exchange(
        self,
        *,
        replacement_order_id: UUID,
        replacement_order_number: str,
        lines: tuple[OrderLine, ...],
        at: datetime,
        cause: Cause,
    ) -> None:
        self.check_status(ReturnStatus.INSPECTED)
        if self.state.replacement_order_id is not None:
            raise InvalidTransition("an exchange was already ordered for this return")
        self._trigger(
            ExchangeOrdered,
            cause,
            at,
            replacement_order_id=replacement_order_id,
            replacement_order_number=replacement_order_number,
            lines=lines,
        )
        self._close_if_done("exchanged", at, cause)

    def change_resolution(
        self, refund_method: RefundMethod, reason: str, at: datetime, cause: Cause
    ) -> bool:
        """Settle the customer another way (refund, store credit, exchange) than first chosen.

        Only until the first payment or exchange: after that the money or goods have moved
        and a change would need undoing them. Returns whether anything changed (asking for
        the method already chosen records nothing).
        """
        s = self.state
        if s.status in ENDED or s.status is ReturnStatus.EXCEPTION:
            raise ResolutionLocked(
                f"return {s.rma_number or self.id} is {s.status.value}: "
                "its resolution can no longer change"
            )
        if s.refunds or s.store_credit_paid is not None or s.keep_item_accepted:
            raise ResolutionLocked(
                f"return {s.rma_number or self.id} has paid the customer already "
                f"({s.refund_method.value})"
            )
        if s.replacement_order_id is not None:
            raise ResolutionLocked(f"return {s.rma_number or self.id} has ordered an exchange")
        if refund_method is s.refund_method:
            return False
        self._trigger(
            ReturnResolutionChanged,
            cause,
            at,
            from_refund_method=s.refund_method,
            to_refund_method=refund_method,
            reason=reason,
        )
        return True

    def offer_keep_item(
        self, book: PolicyBook, expires_at: datetime, at: datetime, cause: Cause
    ) -> Money:
        self.check_status(ReturnStatus.AUTHORIZED)
        if not self.state.keep_item_eligible:
            raise PolicyViolation(
                "keep_item_not_eligible",
                f"return {self.state.rma_number} is worth too much to let the customer keep it",
            )
        rate = self.policy(book).keep_item_refund_rate
        offer = self.lines_value().times(rate)
        self._trigger(KeepItemOffered, cause, at, refund_amount=offer, expires_at=expires_at)
        return offer

    def accept_keep_item(self, at: datetime, cause: Cause) -> Money:
        self.check_status(ReturnStatus.KEEP_ITEM_OFFERED)
        offer = self.state.keep_item_offer
        if offer is None:
            raise InvalidTransition("no keep-the-item offer to accept")
        expires_at = self.state.keep_item_expires_at
        if expires_at is not None and at > expires_at:
            raise InvalidTransition(
                f"the keep-the-item offer of {self.state.rma_number} "
                f"expired at {expires_at:%Y-%m-%d}"
            )
        self._trigger(KeepItemAccepted, cause, at)
        return offer

    def cancel(self, reason: str, at: datetime, cause: Cause) -> None:
        self.check_status(*CANCELLABLE)
        self._trigger(ReturnCancelled, cause, at, reason=reason)

    def expire(self, book: PolicyBook, at: datetime, cause: Cause) -> bool:
        if self.state.status is not ReturnStatus.AUTHORIZED or self.state.authorized_at is None:
            return False
        days = (at - self.state.authorized_at).days
        if days < self.policy(book).expiry_days:
            return False
        self._trigger(ReturnExpired, cause, at, authorized_days=days)
        return True

    # ------------------------------------------------------------ repair and vendor legs
    def send_to_repair(self, leg_id: str, repair_center: str, at: datetime, cause: Cause) -> None:
        self.check_leg(leg_id, Disposition.REPAIR, "awaiting_dispatch")
        self._trigger(RepairSent, cause, at, leg_id=leg_id, repair_center=repair_center)

    def complete_repair(self, leg_id: str, outcome: str, at: datetime, cause: Cause) -> None:
        self.check_leg(leg_id, Disposition.REPAIR, "at_repair")
        if outcome not in {"repaired", "replaced", "beyond_repair"}:
            raise InvalidCommand(f"unknown repair outcome {outcome!r}")
        self._trigger(RepairCompleted, cause, at, leg_id=leg_id, outcome=outcome)

    def restock_repaired(self, leg_id: str, location_id: str, at: datetime, cause: Cause) -> None:
        leg = self.check_leg(leg_id, Disposition.REPAIR, "repaired")
        if leg.outcome == "beyond_repair":
            raise InvalidTransition(f"leg {leg_id} was beyond repair: nothing to restock")
        self._trigger(RepairedItemRestocked, cause, at, leg_id=leg_id, location_id=location_id)

    def ship_to_vendor(self, leg_id: str, vendor_rma: str, at: datetime, cause: Cause) -> None:
        leg = self.check_leg(leg_id, Disposition.RETURN_TO_VENDOR, "awaiting_dispatch")
        self._trigger(
            VendorReturnShipped,
            cause,
            at,
            leg_id=leg_id,
            supplier=leg.supplier,
            vendor_rma=vendor_rma,
        )

    def receive_supplier_credit(
        self, leg_id: str, amount: Money, at: datetime, cause: Cause
    ) -> None:
        self.check_leg(leg_id, Disposition.RETURN_TO_VENDOR, "at_vendor")
        if amount.currency != self.state.currency or amount.amount < 0:
            raise InvalidCommand(f"supplier credit must be a non-negative {self.state.currency}")
        self._trigger(SupplierCreditReceived, cause, at, leg_id=leg_id, amount=amount)

    # ------------------------------------------------------------ guards and queries
    def check_status(self, *allowed: ReturnStatus) -> None:
        if self.state.status not in allowed:
            names = ", ".join(s.value for s in allowed)
            raise InvalidTransition(
                f"return {self.state.rma_number or self.id} is {self.state.status.value}; "
                f"this needs {names}"
            )

    def check_leg(self, leg_id: str, kind: Disposition, status: str) -> Leg:
        leg = self.state.legs.get(leg_id)
        if leg is None or leg.kind is not kind:
            raise InvalidCommand(f"return {self.state.rma_number} has no {kind.value} leg {leg_id}")
        if leg.status != status:
            raise InvalidTransition(f"leg {leg_id} is {leg.status}; this needs {status}")
        return leg

    def _close_if_done(self, outcome: str, at: datetime, cause: Cause) -> None:
        """Close once every item is in and inspected, and every payment went through."""
        if self.outstanding_quantity() > 0:
            return
        if set(self.state.receipts) - set(self.state.inspected_receipts):
            return  # a parcel still waits for inspection
        if any(r.status == "requested" for r in self.state.refunds.values()):
            return
        if self.items_due_unpaid().amount > 0 and self.state.replacement_order_id is None:
            return
        self._trigger(ReturnClosed, cause, at, outcome=outcome)

    def check_payout(self, amount: Money, limit: Money) -> None:
        self.check_positive(amount)
        if amount > limit:
            raise RefundLimitExceeded(
                f"return {self.state.rma_number} can pay out {limit} more, not {amount}"
            )

    def check_positive(self, amount: Money) -> None:
        if amount.currency != self.state.currency or amount.amount <= 0:
            raise InvalidCommand(f"a payout is a positive {self.state.currency} amount")

    def checked_shipping(self, amount: Money, shipping: Money | None) -> Money:
        """The shipping part of a payout: within the payout and within what shipping is owed."""
        self.check_positive(amount)
        if shipping is None:
            return Money.zero(self.state.currency)
        if shipping.currency != self.state.currency or shipping.amount < 0:
            raise InvalidCommand(f"the shipping part is a non-negative {self.state.currency}")
        if shipping > amount or shipping > self.shipping_due_unpaid():
            raise RefundLimitExceeded(
                f"shipping part {shipping} is more than the {self.shipping_due_unpaid()} owed"
            )
        return shipping

    def outstanding_quantity(self) -> int:
        """Items of an RMA still on their way back (blind and counter returns have none)."""
        if self.state.channel in (ReturnChannel.BLIND, ReturnChannel.STORE):
            return 0
        if self.state.keep_item_accepted:
            return 0
        expected = sum(line.quantity for line in self.state.lines.values())
        received = sum(item.quantity for item in self.state.received_items)
        return max(0, expected - received)

    def paid_out(self) -> Money:
        """Money already on its way to the customer: live refunds and store credit (no bonus)."""
        total = Money.zero(self.state.currency)
        for refund in self.state.refunds.values():
            if refund.status != "failed":
                total = total + refund.amount
        return total + (self.state.store_credit_paid or Money.zero(self.state.currency))

    def shipping_paid(self) -> Money:
        total = Money.zero(self.state.currency)
        for refund in self.state.refunds.values():
            if refund.status != "failed" and refund.shipping is not None:
                total = total + refund.shipping
        return total + (self.state.store_credit_shipping or Money.zero(self.state.currency))

    def shipping_due_unpaid(self) -> Money:
        """The original shipping, owed once the first items are inspected, if not yet paid."""
        zero = Money.zero(self.state.currency)
        if not self.state.inspected_items:
            return zero
        return max_zero((self.state.shipping_refund or zero) - self.shipping_paid())

    def items_due_unpaid(self) -> Money:
        if self.state.replacement_order_id is not None:
            return Money.zero(self.state.currency)  # the replacement settles the items
        items_paid = self.paid_out() - self.shipping_paid()
        return max_zero((self.state.refund_due or Money.zero(self.state.currency)) - items_paid)

    def unbilled_fee(self) -> Money:
        """The restocking fee is recorded with the first payout, never twice."""
        if any(r.status != "failed" for r in self.state.refunds.values()):
            return Money.zero(self.state.currency)
        if self.state.store_credit_paid is not None:
            return Money.zero(self.state.currency)
        return self.state.restocking_fee or Money.zero(self.state.currency)

    def pending_refunds(self) -> list[str]:
        """Refunds handed to the provider that it has not answered yet."""
        return [rid for rid, refund in self.state.refunds.items() if refund.status == "requested"]

    def check_refund_pending(self) -> list[str]:
        pending = self.pending_refunds()
        if not pending:
            raise InvalidTransition(f"return {self.state.rma_number} has no refund pending")
        return pending

    def refund(self, refund_id: str) -> RefundState:
        try:
            return self.state.refunds[refund_id]
        except KeyError:
            raise InvalidCommand(
                f"return {self.state.rma_number} has no refund {refund_id}"
            ) from None

    def counter_inspection(
        self, checks: tuple[CounterCheck, ...], location_id: str
    ) -> tuple[InspectedItem, ...]:
        items = []
        for check in checks:
            line = self.state.lines.get(check.line_no)
            if line is None:
                raise InvalidCommand(f"the counter checked line {check.line_no}, not returned")
            items.append(
                InspectedItem(
                    sku=line.sku,
                    quantity=check.quantity,
                    serial=check.serial,
                    condition=check.condition,
                    disposition=check.disposition,
                    line_no=check.line_no,
                    location_id=location_id,
                )
            )
        return tuple(items)

    def lines_value(self) -> Money:
        total = Money.zero(self.state.currency)
        for line in self.state.lines.values():
            total = total + line.unit_price.times(line.quantity)
        return total

    def policy(self, book: PolicyBook) -> ReturnPolicy:
        line = next(iter(self.state.lines.values()), None)
        category = line.category if line else "general"
        return book.policy_for(category, self.state.order_channel or Channel.WEB)

    def refund_for(self, items: tuple[InspectedItem, ...], book: PolicyBook) -> Money:
        """What the inspected items earn back: price by condition, less restocking fees.

        Shipping is owed apart (``shipping_due_unpaid``), once, whatever the parcels."""
        total = Money.zero(self.state.currency)
        taken: dict[int, int] = {}
        fee_charged = Money.zero(self.state.currency)
        for item in items:
            if item.line_no is None:
                continue
            line = self.state.lines[item.line_no]
            decision = self.state.decisions.get(item.line_no)
            if decision is not None and not decision.accepted:
                continue
            already = taken.get(item.line_no, 0) + self.inspected_quantity(item.line_no)
            quantity = min(item.quantity, line.quantity - already)
            if quantity <= 0:
                continue
            taken[item.line_no] = taken.get(item.line_no, 0) + quantity
            policy = book.policy_for(line.category, self.state.order_channel or Channel.WEB)
            rate = refund_rate(policy, line.reason, item.condition)
            total = total + line.unit_price.times(quantity).times(rate)
            if decision is not None and not decision.restocking_fee.is_zero:
                per_unit = decision.restocking_fee.amount / line.quantity
                fee_charged = fee_charged + Money(
                    amount=per_unit * quantity, currency=self.state.currency
                )
        return max_zero(total - fee_charged)

    def inspected_quantity(self, line_no: int) -> int:
        return sum(i.quantity for i in self.state.inspected_items if i.line_no == line_no)

    # ------------------------------------------------------------ evolution
    def apply(self, event: ReturnEvent) -> None:
        s = self.state
        match event:
            case ReturnRequested():
                s.status = ReturnStatus.REQUESTED
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
                s.status = ReturnStatus.AUTHORIZED
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
                s.status = ReturnStatus.PENDING_REVIEW
                s.decisions = {d.line_no: d for d in event.decisions}
            case ReturnRejected():
                s.status = ReturnStatus.REJECTED
                s.rejection_code = event.code
                if event.decisions:
                    s.decisions = {d.line_no: d for d in event.decisions}
            case ReturnLabelIssued():
                s.label_reference = event.label_reference
            case ReturnParcelReceived():
                s.status = ReturnStatus.RECEIVED
                s.receipts.append(event.receipt_id)
                s.received_items.extend(event.items)
            case ReturnUnexpectedParcelReceived():
                # Recorded, not taken in: its goods go to a blind return of their own (see
                # ReturnsService.cmd_receive_parcel), so this RMA keeps its status and its
                # counts, and a refund still in flight here settles as if nothing came.
                s.unexpected_receipts.append(event.receipt_id)
            case BlindReturnDetected():
                s.status = ReturnStatus.BLIND_UNMATCHED
                s.channel = ReturnChannel.BLIND
                s.blind_receipt_id = event.receipt_id
                s.blind_warehouse_id = event.warehouse_id
                s.blind_claimed_rma = event.claimed_rma_number
                s.blind_order_hint = event.order_number_hint
                s.receipts.append(event.receipt_id)
                s.received_items.extend(event.items)
                s.requested_at = event.timestamp
            case BlindReturnMatched():
                s.status = ReturnStatus.RECEIVED
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
            case InStoreReturnRecorded():
                s.status = ReturnStatus.RECEIVED
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
                s.status = ReturnStatus.INSPECTED
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
                        )
            case RefundRequested():
                s.status = ReturnStatus.REFUND_PENDING
                s.refunds[event.refund_id] = RefundState(
                    event.amount, event.allocations, shipping=event.shipping_refund
                )
            case RefundSettled():
                refund = s.refunds[event.refund_id]
                refund.status = "settled"
                refund.provider_reference = event.provider_reference
                if all(r.status != "requested" for r in s.refunds.values()):
                    s.status = ReturnStatus.PARTIALLY_REFUNDED
            case RefundFailed():
                s.refunds[event.refund_id].status = "failed"
                s.status = ReturnStatus.REFUND_FAILED
            case StoreCreditIssued():
                zero = Money.zero(s.currency)
                s.store_credit = (s.store_credit or zero) + event.amount + event.bonus
                s.store_credit_paid = (s.store_credit_paid or zero) + event.amount
                s.store_credit_shipping = (s.store_credit_shipping or zero) + (
                    event.shipping or zero
                )
                s.status = ReturnStatus.PARTIALLY_REFUNDED
            case ExchangeOrdered():
                s.replacement_order_id = event.replacement_order_id
            case ReturnResolutionChanged():
                s.refund_method = event.to_refund_method
            case KeepItemOffered():
                s.status = ReturnStatus.KEEP_ITEM_OFFERED
                s.keep_item_offer = event.refund_amount
                s.keep_item_expires_at = event.expires_at
            case KeepItemAccepted():
                s.keep_item_accepted = True
            case ReturnClosed():
                s.status = ReturnStatus.CLOSED
                s.closed_outcome = event.outcome
            case ReturnCancelled():
                s.status = ReturnStatus.CANCELLED
            case ReturnExpired():
                s.status = ReturnStatus.EXPIRED
            case RepairSent():
                s.legs[event.leg_id].status = "at_repair"
            case RepairCompleted():
                s.legs[event.leg_id].status = "repaired"
                s.legs[event.leg_id].outcome = event.outcome
            case RepairedItemRestocked():
                s.legs[event.leg_id].status = "restocked"
            case VendorReturnShipped():
                s.legs[event.leg_id].status = "at_vendor"
            case SupplierCreditReceived():
                s.legs[event.leg_id].status = "credited"
                s.legs[event.leg_id].credit = event.amount


# ---------------------------------------------------------------- helpers (pure)
def enrich_lines(order: Order, lines: tuple[RequestedLine, ...]) -> tuple[ReturnLine, ...]:
    if not lines:
        raise InvalidCommand("a return needs at least one line")
    seen: set[int] = set()
    enriched = []
    for requested in lines:
        if requested.line_no in seen:
            raise InvalidCommand(f"line {requested.line_no} appears twice")
        seen.add(requested.line_no)
        line = order.line(requested.line_no)
        if requested.quantity < 1:
            raise InvalidCommand(f"line {requested.line_no}: quantity must be positive")
        if requested.serial is not None and order.serial_line(requested.serial) != line.line_no:
            raise InvalidCommand(
                f"serial {requested.serial} was not sold on line {requested.line_no} "
                f"of order {order.state.order_number}"
            )
        enriched.append(
            ReturnLine(
                line_no=line.line_no,
                sku=line.sku,
                quantity=requested.quantity,
                reason=requested.reason,
                unit_price=line.unit_price,
                serial=requested.serial,
                supplier=line.supplier,
                category=line.category,
                comment=requested.comment,
            )
        )
    return tuple(enriched)


def decide_lines(
    order: Order, lines: tuple[ReturnLine, ...], book: PolicyBook, at: datetime, *, blind: bool
) -> tuple[LineDecision, ...]:
    decisions = []
    for line in lines:
        order_line = order.line(line.line_no)
        policy = book.policy_for(order_line.category, order.state.channel)
        decisions.append(
            evaluate_line(
                line,
                policy=policy,
                line_returnable=order_line.returnable,
                warranty_months=order_line.warranty_months,
                reference_date=order.reference_date(),
                at=at,
                blind=blind,
            )
        )
    return tuple(decisions)


def rejection_message(decision: LineDecision) -> str:
    messages = {
        "non_returnable_item": f"line {decision.line_no} cannot be returned unless defective "
        "or the wrong item",
        "outside_return_window": f"line {decision.line_no} is past its "
        f"{decision.terms.window_days}-day return window and not a warranty claim",
    }
    return messages.get(decision.code, f"line {decision.line_no} refused: {decision.code}")


def sum_fees(decisions: tuple[LineDecision, ...], currency: str) -> Money:
    total = Money.zero(currency)
    for decision in decisions:
        if decision.accepted:
            total = total + decision.restocking_fee
    return total


def shipping_refund_for(order: Order, lines: tuple[ReturnLine, ...]) -> Money:
    """Shipping comes back once per order, and only when the fault was ours."""
    zero = Money.zero(order.state.currency)
    if order.state.shipping is None or order.shipping_refunded():
        return zero
    if any(line.reason.is_fault_of_seller for line in lines):
        return order.state.shipping
    return zero


def max_zero(amount: Money) -> Money:
    return amount if amount.amount > 0 else Money.zero(amount.currency)


def min_money(a: Money, b: Money) -> Money:
    return a if a <= b else b


def packing_instructions(state: ReturnState, rma_number: str) -> str:
    items = "; ".join(f"{line.quantity} x {line.sku}" for line in state.lines.values())
    method = {
        ReturnMethod.CARRIER_DROP_OFF: "drop it at any carrier point",
        ReturnMethod.RELAY_POINT: "leave it at the relay point of your choice",
        ReturnMethod.STORE: "bring it to any of our stores",
        ReturnMethod.PICKUP: "a courier will collect it at your address",
        None: "send it back",
    }[state.method]
    return (
        f"Pack {items} in its original packaging with accessories, write {rma_number} on the "
        f"parcel, put the printed return note inside, and {method}."
    )


def assign_lines(state: ReturnState, items: tuple[InspectedItem, ...]) -> tuple[InspectedItem, ...]:
    """Tie each inspected item to the return line it belongs to, by serial first, then by SKU."""
    by_serial = {line.serial: line.line_no for line in state.lines.values() if line.serial}
    by_sku: dict[str, int] = {}
    for line in state.lines.values():
        by_sku.setdefault(line.sku, line.line_no)
    assigned = []
    for item in items:
        line_no = item.line_no
        if line_no is None and item.serial is not None:
            line_no = by_serial.get(item.serial)
        if line_no is None:
            line_no = by_sku.get(item.sku)
        if line_no is not None and line_no not in state.lines:
            raise InvalidCommand(f"return {state.rma_number} has no line {line_no}")
        assigned.append(item.model_copy(update={"line_no": line_no}))
    return tuple(assigned)


def quantities_of(lines: Mapping[int, ReturnLine]) -> dict[int, int]:
    return {line_no: line.quantity for line_no, line in lines.items()}
