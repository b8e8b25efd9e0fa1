"""Request and response bodies; amounts are decimal strings with a currency, never floats."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from adapters.contracts import Amount
from adapters.validation import LineNo, Quantity, SafeStr
from domain.application import Outcome
from domain.events import ExchangeChoice
from domain.returns import CounterCheck, RequestedLine
from domain.values import (
    Condition,
    Disposition,
    Money,
    ReasonCode,
    RefundMethod,
    ReturnMethod,
    Sku,
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExchangeIn(Body):
    """What the customer wants instead of the line, when settled by exchange; the price
    and name are the request's own (there is no catalogue)."""

    sku: Sku
    unit_price: Amount
    """A decimal string and its currency, as every amount on the wire."""
    name: SafeStr = Field(default="", max_length=200)


class LineIn(Body):
    line_no: LineNo
    quantity: Quantity
    reason: ReasonCode
    serial: SafeStr | None = Field(default=None, max_length=64)
    comment: SafeStr = Field(default="", max_length=2000)
    exchange: ExchangeIn | None = None

    def requested(self) -> RequestedLine:
        choice = None
        if self.exchange is not None:
            price = self.exchange.unit_price
            choice = ExchangeChoice(
                sku=self.exchange.sku,
                unit_price=Money.of(price.amount, price.currency),
                name=self.exchange.name,
            )
        return RequestedLine(
            self.line_no, self.quantity, self.reason, self.serial, self.comment, choice
        )


class ReturnRequest(Body):
    order_number: SafeStr = Field(min_length=1, max_length=100)
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    method: ReturnMethod = ReturnMethod.CARRIER_DROP_OFF
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT
    comment: SafeStr = Field(default="", max_length=2000)


class Reason(Body):
    reason: SafeStr = Field(min_length=1, max_length=500)


class KeepItemOffer(Body):
    valid_days: int = Field(default=7, ge=1, le=90)


class RefundRetry(Body):
    as_store_credit: bool = False


class ResolutionChange(Body):
    refund_method: RefundMethod
    """How the customer is to be settled from now on."""
    reason: SafeStr = Field(default="", max_length=500)


class Label(Body):
    carrier: SafeStr = Field(default="sandbox-carrier", min_length=1, max_length=100)


class BlindMatch(Body):
    order_number: SafeStr = Field(min_length=1, max_length=100)
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    matched_by: str = Field(default="order_id", pattern="^(serial|order_id|customer)$")


class BlindLink(Body):
    linked: SafeStr = Field(min_length=1, max_length=100)
    """The RMA number, or the return id, of the return that already records these goods."""
    reason: SafeStr = Field(default="", max_length=500)


class CounterLineIn(LineIn):
    condition: Condition
    disposition: Disposition

    def check(self) -> CounterCheck:
        return CounterCheck(
            self.line_no, self.quantity, self.condition, self.disposition, self.serial
        )


class InStoreReturn(Body):
    store_return_id: SafeStr = Field(min_length=1, max_length=100)
    staff_id: SafeStr = Field(min_length=1, max_length=100)
    order_number: SafeStr = Field(min_length=1, max_length=100)
    lines: list[CounterLineIn] = Field(min_length=1, max_length=200)
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT


class CommandResult(BaseModel):
    """What a command did; the same body again for a retried ``Idempotency-Key``."""

    return_id: UUID
    status: str
    rma_number: str | None = None
    code: str | None = None
    message: str | None = None
    refund_id: str | None = None
    amount: Money | None = None
    leg_id: str | None = None

    @classmethod
    def of(cls, outcome: Outcome) -> CommandResult:
        return cls(
            return_id=outcome.aggregate_id,
            status=outcome.status,
            rma_number=outcome.rma_number,
            code=outcome.code,
            message=outcome.message,
            refund_id=outcome.refund_id,
            amount=outcome.amount,
            leg_id=outcome.leg_id,
        )


class PageOut(BaseModel):
    items: list[dict[str, Any]]
    limit: int
    offset: int
    next: str | None = None


class CounterCheckIn(Body):
    """One line of an RMA as the store clerk checked it; the reason is the RMA's own."""

    line_no: LineNo
    quantity: Quantity
    condition: Condition
    disposition: Disposition = Disposition.RESTOCK
    serial: SafeStr | None = Field(default=None, max_length=64)

    def check(self) -> CounterCheck:
        return CounterCheck(
            self.line_no, self.quantity, self.condition, self.disposition, self.serial
        )


class RmaAtCounter(Body):
    """A store-method RMA brought to the counter: what the clerk checked, under the store's
    own receipt number."""

    store_return_id: SafeStr = Field(min_length=1, max_length=100)
    staff_id: SafeStr = Field(min_length=1, max_length=100)
    lines: list[CounterCheckIn] = Field(min_length=1, max_length=200)
    refund_method: RefundMethod | None = None
    """None keeps the refund method the RMA was authorized with."""
