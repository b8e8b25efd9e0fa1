"""The Return aggregate (the RMA): from request or blind arrival to refund and closure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from uuid import UUID

from domain.errors import (
    InvalidCommand,
    InvalidTransition,
    PolicyViolation,
)
from domain.events import (
    BlindInspectionAssessed,
    BlindReturnClosedUnidentified,
    BlindReturnDetected,
    BlindReturnLinked,
    BlindReturnMatched,
    Cause,
    InspectedItem,
    InstantExchangeCharged,
    InStoreReturnRecorded,
    ItemsInspected,
    LineDecision,
    ReceivedItem,
    RepairCompleted,
    RepairedItemRestocked,
    RepairSent,
    ReturnAuthorized,
    ReturnCancelled,
    ReturnExpired,
    ReturnHeldForReview,
    ReturnLabelIssued,
    ReturnParcelReceived,
    ReturnRejected,
    ReturnRequested,
    ReturnUnexpectedParcelReceived,
    SupplierCreditReceived,
    VendorItemReturned,
    VendorReturnShipped,
)
from domain.order import Order
from domain.policy import PolicyBook
from domain.returns.lines import (
    RequestedLine,
    assign_lines,
    blind_return_id_for,
    decide_lines,
    enrich_lines,
    packing_instructions,
    rejection_message,
    shipping_refund_for,
    store_return_id_for,
    sum_fees,
)
from domain.returns.payouts import max_zero
from domain.returns.settlement import Settlement
from domain.returns.state import (
    CANCELLABLE,
    OPEN_FOR_MORE_PARCELS,
    OPEN_FOR_PARCELS,
    SETTLING,
    ReturnStatus,
    leg_step,
)
from domain.review import review_holds
from domain.values import (
    Channel,
    Disposition,
    Money,
    ReasonCode,
    RefundMethod,
    ReturnChannel,
    ReturnMethod,
)

REPAIR_OUTCOMES = ("repaired", "replaced", "beyond_repair")


class Return(Settlement):
    """The RMA's commands: creation, review, parcels, inspection, cancel, expiry and legs.

    Paying back lives in ``Settlement``, the money owed and the shared guards in
    ``Payouts``, the state and its evolution in ``state.py``: one class, read by concept."""

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
        earlier_returns: int | None = None,
    ) -> None:
        """Apply the policy: authorize, hold for review, or reject with the policy's reason.

        ``earlier_returns``: the customer's returns opened in the policy's serial-returner
        period before this one, counted by the handler (None: not counted, the rule skipped).
        """
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
                reason=rejection_message(
                    first,
                    order.reference_date(),
                    self.state.lines[first.line_no],
                    from_purchase=order.state.channel is Channel.STORE,
                ),
                decisions=decisions,
            )
            return
        fee = sum_fees(decisions, self.state.currency)
        shipping = shipping_refund_for(order, tuple(self.state.lines.values()))
        expected = max_zero(self.lines_value() - fee + shipping)
        policy = self.policy(book)
        holds = review_holds(
            policy=policy,
            rules=book.review,
            expected_refund=expected,
            reasons=[line.reason for line in self.state.lines.values()],
            earlier_returns=earlier_returns,
        )
        if holds:
            self._trigger(
                ReturnHeldForReview,
                cause,
                at,
                reason="; ".join(hold.reason for hold in holds),
                decisions=decisions,
                rules=tuple(hold.rule for hold in holds),
                policy_version=book.version,
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
        keep_limit = policy.keep_item_threshold_in(self.state.currency)
        keep_eligible = (
            keep_limit is not None
            and self.lines_value() < keep_limit
            and all(line.reason is not ReasonCode.WRONG_ITEM for line in self.state.lines.values())
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
            first = refused[0]
            line = next(line for line in return_lines if line.line_no == first.line_no)
            raise PolicyViolation(
                first.code,
                rejection_message(
                    first,
                    order.reference_date(),
                    line,
                    from_purchase=order.state.channel is Channel.STORE,
                ),
            )
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

    def cancel(self, reason: str, at: datetime, cause: Cause) -> None:
        self.check_status(*CANCELLABLE)
        self._trigger(ReturnCancelled, cause, at, reason=reason)
        # A cancelled instant exchange keeps its replacement: the items are owed, as when
        # the RMA expires unreturned (else cancelling would make the replacement free).
        self._charge_instant_exchange(cause, at)

    def expire(self, book: PolicyBook, at: datetime, cause: Cause) -> bool:
        due = self.expires_at(book)
        if due is None or at < due or self.state.authorized_at is None:
            return False
        days = (at - self.state.authorized_at).days
        self._trigger(ReturnExpired, cause, at, authorized_days=days)
        self._charge_instant_exchange(cause, at)
        return True

    def _charge_instant_exchange(self, cause: Cause, at: datetime) -> None:
        owed = self.amount_outstanding()
        if owed is not None and not owed.is_zero and self.state.instant_exchange_charged is None:
            # The replacement shipped at authorization and the items never came back.
            self._trigger(
                InstantExchangeCharged,
                cause,
                at,
                replacement_order_number=self.state.replacement_order_number or "",
                amount=owed,
            )

    def ship_clock_started_at(self) -> datetime | None:
        """Since when an authorized RMA waits for its parcel: its authorization, or the
        lapse of a keep-the-item offer (the customer was told to keep the item until then)."""
        if self.state.status is not ReturnStatus.AUTHORIZED:
            return None
        return self.state.keep_item_lapsed_at or self.state.authorized_at

    def expires_at(self, book: PolicyBook) -> datetime | None:
        """When this RMA expires if no parcel comes; None when it is not waiting for one."""
        started = self.ship_clock_started_at()
        if started is None:
            return None
        return started + timedelta(days=self.policy(book).expiry_days)

    # ------------------------------------------------------------ repair and vendor legs
    # A step repeated with what it said the first time (a WMS resending under a new message
    # id) changes nothing; the same step saying something else is refused.
    def send_to_repair(
        self,
        leg_id: str,
        repair_center: str,
        at: datetime,
        cause: Cause,
        reference: str | None = None,
    ) -> None:
        if self._repeats(leg_id, "sent", leg_step(repair_center, reference)):
            return
        self.check_leg(leg_id, Disposition.REPAIR, "awaiting_dispatch")
        self._trigger(
            RepairSent, cause, at, leg_id=leg_id, repair_center=repair_center, reference=reference
        )

    def complete_repair(
        self,
        leg_id: str,
        outcome: str,
        at: datetime,
        cause: Cause,
        replacement_serial: str | None = None,
    ) -> None:
        if self._repeats(leg_id, "completed", leg_step(outcome, replacement_serial)):
            return
        self.check_leg(leg_id, Disposition.REPAIR, "at_repair")
        if outcome not in REPAIR_OUTCOMES:
            raise InvalidCommand(f"unknown repair outcome {outcome!r}")
        if replacement_serial is not None and outcome != "replaced":
            raise InvalidCommand("only a replaced item comes back with a new serial")
        self._trigger(
            RepairCompleted,
            cause,
            at,
            leg_id=leg_id,
            outcome=outcome,
            replacement_serial=replacement_serial,
        )

    def restock_repaired(self, leg_id: str, location_id: str, at: datetime, cause: Cause) -> None:
        if self._repeats(leg_id, "restocked", leg_step(location_id)):
            return
        found = self.state.legs.get(leg_id)
        if found is not None and found.outcome == "beyond_repair":
            raise InvalidTransition(f"leg {leg_id} was beyond repair: nothing to restock")
        self.check_leg(leg_id, Disposition.REPAIR, "repaired")
        self._trigger(RepairedItemRestocked, cause, at, leg_id=leg_id, location_id=location_id)

    def ship_to_vendor(self, leg_id: str, vendor_rma: str, at: datetime, cause: Cause) -> None:
        if self._repeats(leg_id, "shipped", leg_step(vendor_rma)):
            return
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
        self,
        leg_id: str,
        amount: Money,
        at: datetime,
        cause: Cause,
        reference: str | None = None,
    ) -> None:
        if self._repeats(leg_id, "credited", leg_step(str(amount))):
            return
        self.check_leg(leg_id, Disposition.RETURN_TO_VENDOR, "at_vendor")
        if amount.currency != self.state.currency or amount.amount < 0:
            raise InvalidCommand(f"supplier credit must be a non-negative {self.state.currency}")
        self._trigger(
            SupplierCreditReceived, cause, at, leg_id=leg_id, amount=amount, reference=reference
        )

    def take_back_from_vendor(
        self, leg_id: str, location_id: str, at: datetime, cause: Cause
    ) -> None:
        """The supplier refused the item and sent it back: in stock again, no credit."""
        if self._repeats(leg_id, "restocked", leg_step(location_id)):
            return
        self.check_leg(leg_id, Disposition.RETURN_TO_VENDOR, "at_vendor")
        self._trigger(VendorItemReturned, cause, at, leg_id=leg_id, location_id=location_id)

    def find_leg(
        self,
        takes: Mapping[Disposition, str],
        *,
        leg_id: str | None,
        serial: str | None,
        sku: str | None,
        step: str,
    ) -> str:
        """The leg a message names: by ``leg_id``, or else the one leg of the kinds in
        ``takes`` holding ``serial`` (or ``sku``) that is in the status the step needs
        (``takes[kind]``); failing that, the one that took this step already (a repeat)."""
        legs = self.state.legs
        rma = self.state.rma_number or str(self.id)
        if leg_id is not None:
            if leg_id not in legs:
                raise InvalidCommand(f"return {rma} has no leg {leg_id}")
            named = legs[leg_id]
            if (serial is not None and named.serial not in (None, serial)) or (
                sku is not None and named.sku != sku
            ):
                holds = " ".join(p for p in (named.sku, named.serial) if p)
                given = " ".join(p for p in (sku, serial) if p)
                raise InvalidCommand(f"leg {leg_id} of return {rma} holds {holds}, not {given}")
            return leg_id
        if serial is None and sku is None:
            raise InvalidCommand("name the leg by leg_id, serial or sku")
        what = f"serial {serial}" if serial is not None else f"sku {sku}"
        fits = [
            name
            for name, leg in legs.items()
            if leg.kind in takes
            and (leg.serial == serial if serial is not None else leg.sku == sku)
        ]
        ready = [name for name in fits if legs[name].status == takes[legs[name].kind]]
        chosen = ready or [name for name in fits if step in legs[name].steps]
        if len(chosen) == 1:
            return chosen[0]
        kinds = " or ".join(kind.value for kind in takes)
        if not chosen:
            found = ", ".join(f"{name} ({legs[name].status})" for name in fits) or "none"
            raise InvalidTransition(
                f"return {rma} has no {kinds} leg with {what} ready for this step"
                f" (legs with it: {found})"
            )
        raise InvalidCommand(
            f"{len(chosen)} legs of return {rma} hold {what} ({', '.join(chosen)}): name one"
            " by leg_id or serial"
        )

    def _repeats(self, leg_id: str, step: str, said: str) -> bool:
        leg = self.state.legs.get(leg_id)
        if leg is None or step not in leg.steps:
            return False
        if leg.steps[step] == said:
            return True
        raise InvalidTransition(
            f"leg {leg_id} already took the step {step} with other data"
            f" ({leg.steps[step] or 'none'}); it is {leg.status}"
        )

    # ------------------------------------------------------------ blind returns (issue 11)
    def inspect_blind(
        self, *, items: tuple[InspectedItem, ...], at: datetime, cause: Cause
    ) -> None:
        """The warehouse inspected the parcel before anyone matched it: the goods take
        their dispositions now (they are on the shelf); what they earn waits for the match."""
        self.check_status(ReturnStatus.BLIND_UNMATCHED)
        receipt_id = self.state.blind_receipt_id
        if receipt_id in self.state.inspected_receipts:
            raise InvalidTransition(f"receipt {receipt_id} is already inspected")
        if not items:
            raise InvalidCommand("an inspection lists at least one item")
        unassigned = tuple(item.model_copy(update={"line_no": None}) for item in items)
        self._trigger(
            ItemsInspected,
            cause,
            at,
            receipt_id=receipt_id,
            items=unassigned,
            refund_due=Money.zero(self.state.currency),
        )

    def assess_blind_inspection(self, book: PolicyBook, at: datetime, cause: Cause) -> bool:
        """Just matched after an inspection: price the recorded inspection against the
        matched lines. Whether there was one to price."""
        self.check_status(ReturnStatus.RECEIVED)
        if not self.state.inspected_items:
            return False
        assigned = assign_lines(self.state, tuple(self.state.inspected_items))
        due = self.refund_for(assigned, book)
        self._trigger(BlindInspectionAssessed, cause, at, items=assigned, refund_due=due)
        return True

    def link_to(self, other: Return, reason: str, at: datetime, cause: Cause) -> None:
        """End this blind return as the same goods ``other`` already records."""
        self.check_status(ReturnStatus.BLIND_UNMATCHED)
        if other.id == self.id:
            raise InvalidCommand("a blind return cannot be linked to itself")
        if other.state.status is ReturnStatus.BLIND_UNMATCHED:
            raise InvalidTransition(
                f"return {other.id} is an unmatched blind parcel too: match one of them first"
            )
        theirs = {line.sku for line in other.state.lines.values()}
        theirs |= {item.sku for item in other.state.received_items}
        missing = sorted({item.sku for item in self.state.received_items} - theirs)
        if missing:
            raise InvalidCommand(
                f"return {other.state.rma_number or other.id} holds no {', '.join(missing)}:"
                " not the same goods"
            )
        moved = [leg for leg in self.state.legs.values() if leg.status != "awaiting_dispatch"]
        if moved:
            raise InvalidTransition("goods of this parcel left for repair or a vendor already")
        self._trigger(
            BlindReturnLinked,
            cause,
            at,
            linked_return_id=other.id,
            linked_rma_number=other.state.rma_number,
            reason=reason,
            withdrawn=tuple(self.state.inspected_items),
        )

    def close_unidentified(self, book: PolicyBook, at: datetime, cause: Cause) -> bool:
        """Close as unidentified once it waited the policy's time; whether it closed."""
        if self.state.status is not ReturnStatus.BLIND_UNMATCHED:
            return False
        policy = book.default  # no order yet: no category or channel to pick another
        waited = (at - (self.state.requested_at or at)).days
        if waited < policy.blind_unidentified_days:
            return False
        inspected = bool(self.state.inspected_items)
        self._trigger(
            BlindReturnClosedUnidentified,
            cause,
            at,
            waited_days=waited,
            disposition=None if inspected else policy.blind_unidentified_disposition,
            location_id=None if inspected else self.state.blind_warehouse_id,
            placed=() if inspected else tuple(self.state.received_items),
        )
        return True
