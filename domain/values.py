"""Value objects of the returns domain: money, identifiers and the closed vocabularies.

Amounts are ``Decimal`` with a currency and never floats: a refund that is off by a
binary rounding error is a real customer complaint and a failed reconciliation.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator, model_validator

from domain.currencies import minor_units, quantum
from domain.errors import InvalidValue


class Value(BaseModel):
    """Immutable value object: equal by value, safe to share between aggregates."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Money(Value):
    amount: Decimal
    currency: str

    @field_validator("amount", mode="before")
    @classmethod
    def _no_floats(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError("amounts are decimal strings, never floats")
        return value

    @field_validator("amount")
    @classmethod
    def _finite_cents(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("amount must be finite")
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"currency must be an ISO 4217 code, got {value!r}")
        try:
            minor_units(value)
        except InvalidValue as error:
            raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _in_minor_units(self) -> Self:
        # Refused, never rounded: an amount finer than the currency's minor unit is a
        # mistake upstream (12.345 KWD is fine, 12.345 EUR and 0.5 JPY are not). Trailing
        # zeros are not precision: 29800.00 JPY is 29800 JPY, as stored before.
        exponent = minor_units(self.currency)
        try:
            exact = self.amount.quantize(quantum(self.currency))
        except InvalidOperation:
            raise ValueError(f"amount {self.amount} is too large") from None
        if exact != self.amount:
            raise ValueError(
                f"{self.amount} {self.currency} has more decimals than {self.currency} "
                f"allows ({exponent})"
            )
        object.__setattr__(self, "amount", exact)
        return self

    @classmethod
    def rounded(cls, amount: Decimal, currency: str) -> Money:
        """A derived amount (a rate applied, a share) rounded half-even to the currency's
        minor unit: the one place money is rounded, and only for computed amounts."""
        return cls(
            amount=amount.quantize(quantum(currency), rounding=ROUND_HALF_EVEN),
            currency=currency,
        )

    @property
    def minor(self) -> int:
        """The amount in minor units (cents, yen, fils): an integer, exact."""
        return int(self.amount.scaleb(minor_units(self.currency)))

    @classmethod
    def of_minor(cls, units: int, currency: str) -> Money:
        return cls(amount=Decimal(units).scaleb(-minor_units(currency)), currency=currency)

    @classmethod
    def of(cls, amount: str | int | Decimal, currency: str) -> Money:
        if isinstance(amount, float):
            raise InvalidValue("amounts are decimal strings, never floats")
        try:
            return cls(amount=Decimal(amount), currency=currency)
        except (InvalidOperation, ValueError) as error:
            raise InvalidValue(f"invalid money {amount!r} {currency!r}: {error}") from error

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=Decimal(0), currency=currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidValue(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def times(self, factor: int | Decimal) -> Money:
        """Quantity times price is exact; a rate (a fee, a partial refund) gives a derived
        amount, rounded half-even to the currency's minor unit."""
        return Money.rounded(self.amount * Decimal(factor), self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def _check_code(pattern: str, what: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"invalid {what}: {value!r}")
        return value

    return AfterValidator(check)


Sku = Annotated[str, _check_code(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}", "SKU")]
Serial = Annotated[str, _check_code(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "serial number")]
LocationId = Annotated[str, _check_code(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "location id")]

# Crockford base32 without I, L, O, U: no digit/letter confusion when read over the phone.
_RMA_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RMA_PATTERN = re.compile(rf"RMA-[{_RMA_ALPHABET}]{{4}}-[{_RMA_ALPHABET}]{{4}}")


class RmaNumber(str):
    """Human-readable RMA number such as ``RMA-7K2Q-M4XD``; random so it cannot be guessed."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        normalized = value.strip().upper()
        if not _RMA_PATTERN.fullmatch(normalized):
            raise InvalidValue(f"invalid RMA number: {value!r}")
        return super().__new__(cls, normalized)

    @classmethod
    def generate(cls) -> RmaNumber:
        chars = "".join(secrets.choice(_RMA_ALPHABET) for _ in range(8))
        return cls(f"RMA-{chars[:4]}-{chars[4:]}")


class ReasonCode(StrEnum):
    SIZE_TOO_SMALL = "size_too_small"
    SIZE_TOO_LARGE = "size_too_large"
    NOT_AS_DESCRIBED = "not_as_described"
    COLOR_NOT_AS_PICTURED = "color_not_as_pictured"
    DEFECTIVE = "defective"
    DAMAGED_IN_TRANSIT = "damaged_in_transit"
    WRONG_ITEM = "wrong_item"
    ARRIVED_LATE = "arrived_late"
    CHANGED_MIND = "changed_mind"
    BETTER_PRICE = "better_price"
    OTHER = "other"

    @property
    def is_fault_of_seller(self) -> bool:
        """Defects, transit damage and wrong items are ours to pay for: no fees, shipping back."""
        return self in _SELLER_FAULTS


_SELLER_FAULTS = frozenset(
    {ReasonCode.DEFECTIVE, ReasonCode.DAMAGED_IN_TRANSIT, ReasonCode.WRONG_ITEM}
)


class Condition(StrEnum):
    NEW = "new"
    RESELLABLE = "resellable"
    DAMAGED = "damaged"
    DEFECTIVE = "defective"
    MISSING_PARTS = "missing_parts"
    WRONG_ITEM = "wrong_item"


class Disposition(StrEnum):
    RESTOCK = "restock"
    QUARANTINE = "quarantine"
    REPAIR = "repair"
    RETURN_TO_VENDOR = "return_to_vendor"
    SCRAP = "scrap"


class Channel(StrEnum):
    WEB = "web"
    CLICK_AND_COLLECT = "click_and_collect"
    E_RESERVATION = "e_reservation"
    STORE = "store"


class PaymentMethod(StrEnum):
    CARD = "card"
    PAYPAL = "paypal"
    BNPL = "bnpl"
    GIFT_CARD = "gift_card"
    STORE_CREDIT = "store_credit"


class ReturnMethod(StrEnum):
    CARRIER_DROP_OFF = "carrier_drop_off"
    RELAY_POINT = "relay_point"
    STORE = "store"
    PICKUP = "pickup"


class RefundMethod(StrEnum):
    ORIGINAL_PAYMENT = "original_payment"
    STORE_CREDIT = "store_credit"
    EXCHANGE = "exchange"


class ReturnChannel(StrEnum):
    PORTAL = "portal"
    CUSTOMER_SERVICE = "customer_service"
    STORE = "store"
    BLIND = "blind"


RMA_ALPHABET = _RMA_ALPHABET


def largest_remainder(
    cents: int, weights: Sequence[Decimal], caps: Sequence[int] | None = None
) -> list[int]:
    """``cents`` (>= 0) split in proportion to ``weights`` (>= 0, not all zero), adding up
    exactly: each part is its floor, and the cents left over go one each to the largest
    remainders, ties to the lower index, never past the part's cap when ``caps`` are given.

    The one allocator of refunds over payments (domain/policy.py) and of money over lines
    (the read models' ``split_pro_rata``)."""
    whole = sum(weights, Decimal(0))
    raw = [Decimal(cents) * w / whole for w in weights]
    parts = [int(r.to_integral_value(rounding=ROUND_DOWN)) for r in raw]
    leftover = cents - sum(parts)
    for i in sorted(range(len(raw)), key=lambda i: (raw[i] - parts[i], -i), reverse=True):
        if leftover == 0:
            break
        if caps is None or parts[i] < caps[i]:
            parts[i] += 1
            leftover -= 1
    return parts
