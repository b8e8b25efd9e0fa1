"""Wire contract v1: the CloudEvents envelope and one model per inbound message type.

These models are public: other systems validate against the JSON Schemas exported from
them (``docs/schemas``). Evolve them compatibly: add optional fields, never rename or
tighten; a breaking change is a new ``.v2`` topic. Unknown fields are ignored. The one kind
of tightening allowed refuses values that could never be stored or projected correctly
(NUL in text, integers beyond any business range, moments outside 2000 .. tomorrow; see
``adapters/validation.py``): refused here, one message at a time, as ``invalid_data``
(``invalid_envelope`` in the envelope), rather than failing their batch's transaction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adapters.driven.kafka.topics import ORDERS, POS_RETURNS, PSP_REFUNDS, WMS_RECEIPTS
from adapters.validation import (
    LineNo,
    Moment,
    Quantity,
    SafeStr,
    StockDelta,
    StockQuantity,
    Text,
)
from domain.currencies import MINOR_UNITS
from domain.values import (
    Channel,
    Condition,
    Disposition,
    PaymentMethod,
    ReasonCode,
    RefundMethod,
)

MAX_MESSAGE_BYTES = 256 * 1024


class Contract(BaseModel):
    # Unknown fields are ignored so producers can add fields before we read them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Amount(Contract):
    """A decimal string and an ISO 4217 currency: ``{"amount": "19.90", "currency": "EUR"}``."""

    amount: Annotated[str, Field(pattern=r"^-?\d{1,12}(\.\d{1,4})?$")]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]

    def decimal(self) -> Decimal:
        return Decimal(self.amount)

    @model_validator(mode="after")
    def _in_minor_units(self) -> Self:
        # Refused at the edge, as invalid_data naming the currency, rather than rounded:
        # 12.345 is a KWD amount but not a EUR one, and a yen has no decimals.
        if self.currency not in MINOR_UNITS:
            raise ValueError(f"unknown currency {self.currency!r}: not an ISO 4217 code")
        exponent = MINOR_UNITS[self.currency]
        if Decimal(self.amount) != Decimal(self.amount).quantize(Decimal(1).scaleb(-exponent)):
            raise ValueError(
                f"{self.amount} {self.currency} has more decimals than {self.currency} "
                f"allows ({exponent})"
            )
        return self


class CloudEvent(Contract):
    """CloudEvents 1.0, structured mode, JSON."""

    specversion: Literal["1.0"]
    id: Text
    source: Text
    type: Text
    time: Moment | None = None
    subject: SafeStr | None = None
    datacontenttype: SafeStr | None = "application/json"
    data: dict[str, Any]


# ---------------------------------------------------------------- oms.orders.v1
class OrderLineData(Contract):
    line_no: LineNo
    sku: Text
    name: SafeStr = ""
    quantity: Quantity
    unit_price: Amount
    serials: list[Text] = []
    supplier: SafeStr = "unknown"
    category: SafeStr = "general"
    returnable: bool = True
    warranty_months: int | None = Field(default=None, ge=0, le=240)


class PaymentData(Contract):
    payment_id: Text
    method: PaymentMethod
    amount: Amount
    store_credit_code: SafeStr | None = None
    """A ``store_credit`` payment by code (``SC-`` and 12 base32 characters): the code's
    account pays instead of the ordering customer's."""


class OrderPlacedData(Contract):
    order_id: Text
    customer_id: Text
    customer_email: SafeStr | None = None
    channel: Channel
    store_id: SafeStr | None = None
    placed_at: Moment | None = None
    lines: list[OrderLineData] = Field(min_length=1, max_length=500)
    payments: list[PaymentData] = Field(max_length=20)
    shipping: Amount


class FulfilledLineData(Contract):
    line_no: LineNo
    quantity: Quantity
    serials: list[Text] = []


class OrderFulfilledData(Contract):
    order_id: Text
    location_id: Text
    lines: list[FulfilledLineData] = Field(min_length=1)


class OrderDeliveredData(Contract):
    order_id: Text
    delivered_at: Moment | None = None


class OrderCancelledData(Contract):
    order_id: Text
    reason: SafeStr = "cancelled by the commerce platform"


# ---------------------------------------------------------------- wms.receipts.v1
class ReceivedItemData(Contract):
    sku: Text
    quantity: Quantity
    serial: SafeStr | None = None


class ParcelReceivedData(Contract):
    receipt_id: Text
    warehouse_id: Text
    rma_number: SafeStr | None = None
    tracking_number: SafeStr | None = None
    order_id: SafeStr | None = None
    items: list[ReceivedItemData] = Field(min_length=1, max_length=500)


class InspectedItemData(Contract):
    sku: Text
    serial: SafeStr | None = None
    quantity: Quantity
    condition: Condition
    disposition: Disposition
    line_no: LineNo | None = None


class ItemsInspectedData(Contract):
    receipt_id: Text
    rma_number: Text | None = None
    """None: a parcel received with no RMA, inspected as the blind return it opened."""
    warehouse_id: SafeStr | None = None
    items: list[InspectedItemData] = Field(min_length=1, max_length=500)


class StockCountedData(Contract):
    sku: Text
    location_id: Text
    quantity: StockQuantity
    count_id: SafeStr | None = None
    counted_at: Moment | None = None
    """When the shelf held ``quantity`` (a count published later than taken); absent: the
    envelope's ``time``. Movements after it still apply (projections/stock.py)."""


class StockAdjustedData(Contract):
    sku: Text
    location_id: Text
    delta: StockDelta
    reason: Text
    adjustment_id: SafeStr | None = None


# ---------------------------------------------------------------- wms.receipts.v1: legs
class LegData(Contract):
    """A repair or return-to-vendor leg, named by `rma_number` and `leg_id` (as in
    `GET /v1/legs`); a WMS that does not know our leg ids gives the item's `serial`, or
    its `sku`, instead: the one leg of that RMA holding it that is ready for this step is
    moved, and several or none are refused (dead-lettered with the reason)."""

    rma_number: Text
    leg_id: SafeStr | None = None
    serial: SafeStr | None = None
    sku: SafeStr | None = None


class RepairSentData(LegData):
    """The item left for the repair centre."""

    repair_center: Text
    reference: SafeStr | None = None


class RepairCompletedData(LegData):
    """The repair centre's verdict: `repaired` (the same unit comes back), `replaced` (a
    new unit comes back instead, with its `replacement_serial`) or `unrepairable` (the
    item is scrapped there and the leg ends)."""

    outcome: Literal["repaired", "replaced", "unrepairable"]
    replacement_serial: SafeStr | None = None


class LegRestockedData(LegData):
    """Back in sellable stock at `location_id`: a repaired or replaced unit, or an item the
    vendor refused and sent back (the vendor leg then ends with no credit)."""

    location_id: Text


class VendorShippedData(LegData):
    """The item left for its supplier under the supplier's return authorization."""

    reference: Text


class VendorCreditedData(LegData):
    """The supplier's credit note for the item: ends the vendor leg."""

    amount: Amount
    reference: SafeStr | None = None


# ---------------------------------------------------------------- pos.returns.v1
class StoreReturnItemData(Contract):
    line: LineNo
    quantity: Quantity
    serial: SafeStr | None = None
    reason_code: ReasonCode
    condition: Condition = Condition.RESELLABLE
    disposition: Disposition | None = None


class ReturnRecordedData(Contract):
    store_return_id: Text
    store_id: Text
    staff_id: Text
    order_id: Text
    items: list[StoreReturnItemData] = Field(min_length=1, max_length=200)
    refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT
    # A store-method RMA brought to the counter (scanned or typed): its own goods are
    # received and inspected under it, instead of a new in-store return of the order.
    rma_number: SafeStr | None = None


# ---------------------------------------------------------------- psp.refunds.v1
class RefundSettledData(Contract):
    refund_id: Text
    provider_reference: Text
    amount: Amount
    # A provider settling payment by payment names the payment; without it the message
    # settles the whole refund at once.
    payment_id: Text | None = None


class RefundFailedData(Contract):
    refund_id: Text
    reason: Text
    # A provider that settles payment by payment may fail (or reverse) one payment; a
    # failure of what was settled is recorded as a reversal discrepancy.
    payment_id: Text | None = None

    @field_validator("reason")
    @classmethod
    def _short(cls, value: str) -> str:
        return value[:200]


INBOUND: dict[str, dict[str, type[Contract]]] = {
    ORDERS: {
        "order.placed": OrderPlacedData,
        "order.fulfilled": OrderFulfilledData,
        "order.delivered": OrderDeliveredData,
        "order.cancelled": OrderCancelledData,
    },
    WMS_RECEIPTS: {
        "parcel.received": ParcelReceivedData,
        "items.inspected": ItemsInspectedData,
        "stock.counted": StockCountedData,
        "stock.adjusted": StockAdjustedData,
        "repair.sent": RepairSentData,
        "repair.completed": RepairCompletedData,
        "leg.restocked": LegRestockedData,
        "vendor.shipped": VendorShippedData,
        "vendor.credited": VendorCreditedData,
    },
    POS_RETURNS: {"return.recorded": ReturnRecordedData},
    PSP_REFUNDS: {"refund.settled": RefundSettledData, "refund.failed": RefundFailedData},
}


class ContractError(ValueError):
    """Why a message breaks the contract; ``code`` goes into the DLQ headers."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    envelope: CloudEvent
    data: Contract


def parse_inbound(topic: str, raw: bytes) -> Inbound:
    """Validate one message of an inbound topic, or raise ContractError saying why not."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError("oversized", f"{len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ContractError("invalid_json", f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ContractError("invalid_envelope", "a CloudEvent is a JSON object")
    try:
        envelope = CloudEvent.model_validate(document)
    except ValidationError as error:
        raise ContractError("invalid_envelope", _describe(error)) from None
    models = INBOUND.get(topic, {})
    model = models.get(envelope.type)
    if model is None:
        known = ", ".join(sorted(models)) or "none"
        raise ContractError(
            "unknown_type", f"type {envelope.type!r} is not accepted on {topic} (known: {known})"
        )
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as error:
        raise ContractError("invalid_data", _describe(error)) from None
    return Inbound(envelope=envelope, data=data)


def _describe(error: ValidationError) -> str:
    parts = []
    for issue in error.errors()[:5]:
        where = ".".join(str(p) for p in issue["loc"]) or "message"
        parts.append(f"{where}: {issue['msg']}")
    return "; ".join(parts)[:500]


def envelope_bytes(
    *,
    event_id: str,
    source: str,
    event_type: str,
    time: str,
    subject: str | None,
    data: dict[str, Any],
) -> bytes:
    """Encode an outbound CloudEvent; orjson directly, as building models costs more."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": event_type,
            "time": time,
            "subject": subject,
            "datacontenttype": "application/json",
            "data": data,
        }
    )
