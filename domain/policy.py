"""The return policy as data plus pure decision functions.

Defaults follow DESIGN.md; a ``PolicyBook`` overrides them per order channel and per
product category (category wins, being the more specific). The terms that decided a
line are copied into the RMA's events, so a later policy change never rewrites history.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import Field

from domain.events import LineDecision, RefundAllocation, ReturnLine, ReturnPolicyTerms
from domain.review import ReviewRules
from domain.values import (
    Channel,
    Condition,
    Disposition,
    Money,
    PaymentMethod,
    ReasonCode,
    Value,
    largest_remainder,
)

# Per-currency defaults, near 1000 EUR for review and 15 EUR for keep-the-item, rounded
# to figures a shop would state; amounts in each currency's minor units.
_REVIEW_THRESHOLDS: dict[str, Decimal] = {
    code: Decimal(limit)
    for code, limit in {
        "USD": "1100", "GBP": "850", "CHF": "950", "SEK": "11500", "NOK": "12000",
        "DKK": "7500", "PLN": "4300", "CZK": "25000", "HUF": "400000", "RON": "5000",
        "CAD": "1600", "AUD": "1750", "NZD": "1950", "JPY": "170000", "KRW": "1600000",
        "CNY": "8000", "HKD": "8500", "SGD": "1450", "INR": "95000", "AED": "4000",
        "SAR": "4100", "KWD": "330", "BHD": "410", "OMR": "420", "JOD": "780",
        "TND": "3400", "BRL": "6500", "MXN": "20000", "ZAR": "20000", "TRY": "45000",
    }.items()
}  # fmt: skip
_KEEP_ITEM_THRESHOLDS: dict[str, Decimal] = {
    code: Decimal(limit)
    for code, limit in {
        "USD": "16.50", "GBP": "12.75", "CHF": "14.25", "SEK": "170", "NOK": "180",
        "DKK": "110", "PLN": "65", "CZK": "375", "HUF": "6000", "RON": "75",
        "CAD": "24", "AUD": "26", "NZD": "29", "JPY": "2500", "KRW": "24000",
        "CNY": "120", "HKD": "125", "SGD": "21.75", "INR": "1400", "AED": "60",
        "SAR": "61.50", "KWD": "4.950", "BHD": "6.150", "OMR": "6.300", "JOD": "11.700",
        "TND": "51", "BRL": "97.50", "MXN": "300", "ZAR": "300", "TRY": "675",
    }.items()
}  # fmt: skip


class ReturnPolicy(Value):
    window_days: int = Field(default=30, ge=0)
    warranty_months: int = Field(default=24, ge=0)
    restocking_fee_rate: Decimal = Decimal("0.10")
    late_change_of_mind_days: int = 14
    keep_item_threshold: Decimal = Decimal("15.00")
    keep_item_refund_rate: Decimal = Decimal("0.50")
    store_credit_bonus_rate: Decimal = Decimal("0.10")
    review_threshold: Decimal = Decimal("1000.00")
    expiry_days: int = 30
    returnable: bool = True
    # An exchange's replacement ships at authorization, before the return arrives; the
    # returned items' value is owed until they do, and charged if the RMA expires.
    instant_exchange: bool = False
    # A blind parcel nobody could place in this many days is closed as unidentified, its
    # goods left under its inspection's dispositions or, uninspected, this one.
    blind_unidentified_days: int = Field(default=90, ge=1)
    blind_unidentified_disposition: Disposition = Disposition.QUARANTINE
    # The operators' policy file this came from (its ``version``, or its content hash);
    # None: the built-in defaults. Copied into every decision (LineDecision.policy_version).
    version: str | None = None
    # What fraction of an item's price comes back, by the condition found at inspection,
    # when the customer is at fault (changed mind, size); seller faults always refund in full.
    condition_refund_rates: Mapping[Condition, Decimal] = Field(
        default_factory=lambda: {
            Condition.NEW: Decimal(1),
            Condition.RESELLABLE: Decimal(1),
            Condition.DEFECTIVE: Decimal(1),
            Condition.DAMAGED: Decimal("0.50"),
            Condition.MISSING_PARTS: Decimal("0.50"),
            Condition.WRONG_ITEM: Decimal(0),
        }
    )

    # ``review_threshold`` and ``keep_item_threshold`` above are in EUR; these give them for
    # other currencies (roughly the same value). A currency listed in neither has no
    # automatic keep-the-item and every return in it is held for review: we cannot judge
    # what an amount is worth there, so a person does.
    review_thresholds: Mapping[str, Decimal] = Field(
        default_factory=lambda: dict(_REVIEW_THRESHOLDS)
    )
    keep_item_thresholds: Mapping[str, Decimal] = Field(
        default_factory=lambda: dict(_KEEP_ITEM_THRESHOLDS)
    )

    def review_threshold_in(self, currency: str) -> Money | None:
        """Refunds above this are held for review; None: no threshold for the currency."""
        if currency == "EUR":
            return Money.of(self.review_threshold, currency)
        limit = self.review_thresholds.get(currency)
        return None if limit is None else Money.of(limit, currency)

    def keep_item_threshold_in(self, currency: str) -> Money | None:
        """Lines worth less than this may be kept; None: never, in this currency."""
        if currency == "EUR":
            return Money.of(self.keep_item_threshold, currency)
        limit = self.keep_item_thresholds.get(currency)
        return None if limit is None else Money.of(limit, currency)

    def terms(self, warranty_months: int | None, returnable: bool) -> ReturnPolicyTerms:
        return ReturnPolicyTerms(
            window_days=self.window_days,
            warranty_months=self.warranty_months if warranty_months is None else warranty_months,
            restocking_fee_rate=str(self.restocking_fee_rate),
            late_change_of_mind_days=self.late_change_of_mind_days,
            returnable=self.returnable and returnable,
        )


class PolicyBook(Value):
    default: ReturnPolicy = Field(default_factory=ReturnPolicy)
    by_channel: Mapping[Channel, Mapping[str, Any]] = Field(default_factory=dict)
    by_category: Mapping[str, Mapping[str, Any]] = Field(
        default_factory=lambda: {
            "software": {"returnable": False},
            "hygiene": {"returnable": False},
        }
    )
    # Rules that hold a request for a person (the policy file's [review] section); the
    # amount thresholds are ReturnPolicy's, per category and channel.
    review: ReviewRules = Field(default_factory=ReviewRules)

    @property
    def version(self) -> str | None:
        return self.default.version

    def policy_for(self, category: str, channel: Channel) -> ReturnPolicy:
        overrides: dict[str, Any] = {}
        overrides.update(self.by_channel.get(channel, {}))
        overrides.update(self.by_category.get(category, {}))
        for name in ("review_thresholds", "keep_item_thresholds"):
            # Per-currency tables merge (default, then channel, then category): stating the
            # yen threshold for a channel keeps every other currency's.
            if name in overrides:
                merged = dict(getattr(self.default, name))
                for layer in (self.by_channel.get(channel, {}), self.by_category.get(category, {})):
                    merged.update(layer.get(name, {}))
                overrides[name] = merged
        if not overrides:
            return self.default
        return ReturnPolicy.model_validate({**self.default.model_dump(), **overrides})


# An opened licence damaged in transit is still opened: only a defect or our mistake
# makes a non-returnable line returnable.
_EXEMPT_FROM_NON_RETURNABLE = frozenset({ReasonCode.DEFECTIVE, ReasonCode.WRONG_ITEM})


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def evaluate_line(
    line: ReturnLine,
    *,
    policy: ReturnPolicy,
    line_returnable: bool,
    warranty_months: int | None,
    reference_date: datetime | None,
    at: datetime,
    blind: bool = False,
) -> LineDecision:
    """Decide one line: accepted or not, with the policy's reason code and the fee it bears.

    ``reference_date`` is the delivery date (the purchase date for store sales); an order
    not delivered yet is always inside its window.
    """
    terms = policy.terms(warranty_months, line_returnable)
    days = (at - reference_date).days if reference_date is not None else 0
    within_window = days <= terms.window_days
    under_warranty = (
        reference_date is not None
        and line.serial is not None
        and at <= add_months(reference_date, terms.warranty_months)
    ) or (reference_date is None)
    seller_fault = line.reason.is_fault_of_seller
    code = "accepted"
    accepted = True
    if not terms.returnable and line.reason not in _EXEMPT_FROM_NON_RETURNABLE:
        accepted, code = False, "non_returnable_item"
    elif not within_window:
        if line.reason is ReasonCode.DEFECTIVE and under_warranty:
            code = "warranty_claim"
        else:
            accepted, code = False, "outside_return_window"
    fee_rate = Decimal(0)
    if (
        accepted
        and not seller_fault
        and (
            blind
            or (line.reason is ReasonCode.CHANGED_MIND and days > terms.late_change_of_mind_days)
        )
    ):
        fee_rate = policy.restocking_fee_rate
    value = line.unit_price.times(line.quantity)
    return LineDecision(
        line_no=line.line_no,
        accepted=accepted,
        code=code,
        within_window=within_window,
        under_warranty=bool(under_warranty),
        restocking_fee=value.times(fee_rate),
        terms=terms,
        policy_version=policy.version,
    )


def refund_rate(policy: ReturnPolicy, reason: ReasonCode, condition: Condition) -> Decimal:
    if condition is Condition.WRONG_ITEM:
        # The parcel held something we never sold for this line: nothing to refund for it.
        return Decimal(0)
    if reason.is_fault_of_seller:
        return Decimal(1)
    return policy.condition_refund_rates.get(condition, Decimal(0))


def allocate_proportionally(
    amount: Money, capacities: Sequence[tuple[str, PaymentMethod, Money]]
) -> tuple[RefundAllocation, ...]:
    """Split ``amount`` over payments in proportion to what each can still take back.

    Cents are distributed by largest remainder so the parts add up exactly; no payment
    receives more than its remaining capacity. Raises ValueError when capacity is short.
    """
    open_capacities = [(pid, method, cap) for pid, method, cap in capacities if cap.amount > 0]
    total_capacity = sum((cap.amount for _, _, cap in open_capacities), Decimal(0))
    if amount.amount > total_capacity:
        raise ValueError(f"refund {amount} exceeds remaining capacity {total_capacity}")
    if amount.is_zero or not open_capacities:
        return ()
    # In the currency's minor units (yen, cents, fils), so the parts are exact amounts.
    units = amount.minor
    floors = largest_remainder(
        units,
        [cap.amount for _, _, cap in open_capacities],
        [cap.minor for _, _, cap in open_capacities],
    )
    allocations = []
    for (pid, method, cap), share in zip(open_capacities, floors, strict=True):
        if share:
            part = Money.of_minor(share, cap.currency)
            allocations.append(RefundAllocation(payment_id=pid, method=method, amount=part))
    return tuple(allocations)


def keep_item_limit_text(policy: ReturnPolicy, currency: str) -> str:
    """The keep-the-item rule for ``currency`` in words, for refusals."""
    limit = policy.keep_item_threshold_in(currency)
    if limit is None:
        return f"no keep-the-item in {currency}"
    return f"keep-the-item is for lines worth less than {limit}"
