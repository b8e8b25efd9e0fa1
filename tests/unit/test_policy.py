"""The return policy, rule by rule: ``evaluate_line``, ``refund_rate``, the policy book
and ``allocate_proportionally``. Dates count from delivery on day 0 of ``DELIVERED``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from domain.events import LineDecision, RefundAllocation, ReturnLine
from domain.policy import (
    PolicyBook,
    ReturnPolicy,
    add_months,
    allocate_proportionally,
    evaluate_line,
    refund_rate,
)
from domain.values import Channel, Condition, Money, PaymentMethod, ReasonCode
from tests.unit.builders import day, eur

DELIVERED = day(0)
POLICY = ReturnPolicy()
SELLER_FAULTS = [ReasonCode.DEFECTIVE, ReasonCode.DAMAGED_IN_TRANSIT, ReasonCode.WRONG_ITEM]
CUSTOMER_REASONS = [r for r in ReasonCode if not r.is_fault_of_seller]


def return_line(
    reason: ReasonCode = ReasonCode.CHANGED_MIND,
    *,
    quantity: int = 1,
    price: str = "80.00",
    serial: str | None = None,
) -> ReturnLine:
    return ReturnLine(
        line_no=1,
        sku="SKU-1",
        quantity=quantity,
        reason=reason,
        unit_price=eur(price),
        serial=serial,
    )


def decide(
    line: ReturnLine,
    *,
    on_day: float = 10,
    policy: ReturnPolicy = POLICY,
    returnable: bool = True,
    warranty_months: int | None = None,
    reference_date: datetime | None = DELIVERED,
    blind: bool = False,
) -> LineDecision:
    return evaluate_line(
        line,
        policy=policy,
        line_returnable=returnable,
        warranty_months=warranty_months,
        reference_date=reference_date,
        at=day(on_day),
        blind=blind,
    )


# ---------------------------------------------------------------- the window
def test_a_return_on_the_last_day_of_the_window_is_accepted() -> None:
    decision = decide(return_line(), on_day=30.9)
    assert (decision.accepted, decision.code, decision.within_window) == (True, "accepted", True)


def test_a_return_a_day_after_the_window_is_rejected_as_outside_the_return_window() -> None:
    decision = decide(return_line(), on_day=31)
    assert (decision.accepted, decision.code, decision.within_window) == (
        False,
        "outside_return_window",
        False,
    )


def test_an_order_not_delivered_yet_is_always_inside_its_window() -> None:
    decision = decide(return_line(), on_day=400, reference_date=None)
    assert decision.accepted and decision.within_window


def test_the_window_follows_the_policy_in_force() -> None:
    generous = ReturnPolicy(window_days=100)
    assert decide(return_line(), on_day=90, policy=generous).accepted
    assert decide(return_line(), on_day=101, policy=generous).code == "outside_return_window"


# ---------------------------------------------------------------- warranty
def test_a_defective_item_with_a_serial_outside_the_window_is_a_warranty_claim() -> None:
    decision = decide(return_line(ReasonCode.DEFECTIVE, serial="SN-1"), on_day=200)
    assert (decision.accepted, decision.code) == (True, "warranty_claim")
    assert decision.under_warranty and not decision.within_window
    assert decision.restocking_fee == eur("0.00")


def test_a_defective_item_without_a_serial_outside_the_window_is_rejected() -> None:
    decision = decide(return_line(ReasonCode.DEFECTIVE), on_day=200)
    assert (decision.accepted, decision.code) == (False, "outside_return_window")


def test_a_warranty_claim_after_the_24_months_warranty_is_rejected() -> None:
    late = (add_months(DELIVERED, 24) - DELIVERED).days + 1
    assert decide(return_line(ReasonCode.DEFECTIVE, serial="SN-1"), on_day=late - 1).accepted
    decision = decide(return_line(ReasonCode.DEFECTIVE, serial="SN-1"), on_day=late)
    assert (decision.accepted, decision.code) == (False, "outside_return_window")


def test_the_warranty_months_of_the_line_override_the_policy() -> None:
    line = return_line(ReasonCode.DEFECTIVE, serial="SN-1")
    decision = decide(line, on_day=400, warranty_months=12)
    assert (decision.accepted, decision.terms.warranty_months) == (False, 12)
    assert decide(line, on_day=400, warranty_months=36).code == "warranty_claim"


@pytest.mark.parametrize("reason", [ReasonCode.WRONG_ITEM, ReasonCode.DAMAGED_IN_TRANSIT])
def test_only_a_defect_makes_a_warranty_claim_outside_the_window(reason: ReasonCode) -> None:
    decision = decide(return_line(reason, serial="SN-1"), on_day=60)
    assert (decision.accepted, decision.code) == (False, "outside_return_window")


# ---------------------------------------------------------------- non-returnable lines
@pytest.mark.parametrize("reason", CUSTOMER_REASONS)
def test_a_non_returnable_line_is_rejected_for_a_customer_reason(reason: ReasonCode) -> None:
    decision = decide(return_line(reason), returnable=False)
    assert (decision.accepted, decision.code) == (False, "non_returnable_item")
    assert decision.terms.returnable is False


@pytest.mark.parametrize("reason", [ReasonCode.DEFECTIVE, ReasonCode.WRONG_ITEM])
def test_a_non_returnable_line_is_accepted_when_defective_or_the_wrong_item(
    reason: ReasonCode,
) -> None:
    decision = decide(return_line(reason), returnable=False)
    assert (decision.accepted, decision.code) == (True, "accepted")


def test_a_non_returnable_line_damaged_in_transit_is_rejected() -> None:
    # An opened licence damaged in transit is still opened.
    decision = decide(return_line(ReasonCode.DAMAGED_IN_TRANSIT), returnable=False)
    assert (decision.accepted, decision.code) == (False, "non_returnable_item")


@pytest.mark.parametrize("category", ["software", "hygiene"])
def test_the_policy_book_makes_software_and_hygiene_non_returnable(category: str) -> None:
    policy = PolicyBook().policy_for(category, Channel.WEB)
    assert policy.returnable is False
    decision = decide(return_line(), policy=policy)
    assert (decision.accepted, decision.code) == (False, "non_returnable_item")
    assert decide(return_line(ReasonCode.DEFECTIVE), policy=policy).accepted


def test_an_ordinary_category_keeps_the_default_policy() -> None:
    book = PolicyBook()
    assert book.policy_for("general", Channel.WEB) is book.default


def test_a_category_override_wins_over_a_channel_override() -> None:
    book = PolicyBook(
        by_channel={Channel.STORE: {"window_days": 14, "expiry_days": 7}},
        by_category={"furniture": {"window_days": 60}},
    )
    assert book.policy_for("general", Channel.STORE).window_days == 14
    furniture_in_store = book.policy_for("furniture", Channel.STORE)
    assert (furniture_in_store.window_days, furniture_in_store.expiry_days) == (60, 7)
    assert book.policy_for("furniture", Channel.WEB).window_days == 60


# ---------------------------------------------------------------- restocking fee
@pytest.mark.parametrize("on_day", [0, 10, 14])
def test_changed_mind_within_14_days_bears_no_restocking_fee(on_day: int) -> None:
    assert decide(return_line(quantity=2), on_day=on_day).restocking_fee == eur("0.00")


@pytest.mark.parametrize("on_day", [15, 30])
def test_changed_mind_after_14_days_bears_ten_percent_of_the_line_value(on_day: int) -> None:
    decision = decide(return_line(quantity=2, price="80.00"), on_day=on_day)
    assert decision.accepted
    assert decision.restocking_fee == eur("16.00")


@pytest.mark.parametrize(
    "reason", [ReasonCode.SIZE_TOO_SMALL, ReasonCode.BETTER_PRICE, ReasonCode.OTHER]
)
def test_other_customer_reasons_bear_no_fee_however_late_in_the_window(
    reason: ReasonCode,
) -> None:
    assert decide(return_line(reason), on_day=30).restocking_fee == eur("0.00")


@pytest.mark.parametrize("reason", CUSTOMER_REASONS)
def test_a_blind_return_bears_a_ten_percent_restocking_fee(reason: ReasonCode) -> None:
    decision = decide(return_line(reason, price="45.50"), on_day=3, blind=True)
    assert decision.restocking_fee == eur("4.55")


@pytest.mark.parametrize("reason", SELLER_FAULTS)
@pytest.mark.parametrize("blind", [False, True])
def test_a_seller_fault_never_bears_a_restocking_fee(reason: ReasonCode, blind: bool) -> None:
    decision = decide(return_line(reason), on_day=25, blind=blind)
    assert decision.accepted
    assert decision.restocking_fee == eur("0.00")


def test_a_rejected_line_bears_no_restocking_fee() -> None:
    decision = decide(return_line(), on_day=45, blind=True)
    assert not decision.accepted
    assert decision.restocking_fee == eur("0.00")


def test_the_restocking_fee_is_rounded_to_the_cent() -> None:
    assert decide(return_line(price="33.35"), on_day=20).restocking_fee == eur("3.34")


def test_the_decision_records_the_terms_in_force() -> None:
    policy = ReturnPolicy(restocking_fee_rate=Decimal("0.15"), late_change_of_mind_days=7)
    decision = decide(return_line(), policy=policy, warranty_months=36, on_day=8)
    assert decision.terms.model_dump() == {
        "window_days": 30,
        "warranty_months": 36,
        "restocking_fee_rate": "0.15",
        "late_change_of_mind_days": 7,
        "returnable": True,
    }
    assert decision.restocking_fee == eur("12.00")


def test_add_months_clamps_to_the_last_day_of_a_shorter_month() -> None:
    assert add_months(day(0).replace(month=1, day=31), 1).date().isoformat() == "2025-02-28"
    assert add_months(day(0).replace(month=12, day=31), 2).date().isoformat() == "2026-02-28"
    assert add_months(day(0).replace(month=1, day=31), 13).date().isoformat() == "2026-02-28"


# ---------------------------------------------------------------- refund by condition
@pytest.mark.parametrize(
    ("condition", "rate"),
    [
        (Condition.NEW, "1"),
        (Condition.RESELLABLE, "1"),
        (Condition.DEFECTIVE, "1"),
        (Condition.DAMAGED, "0.50"),
        (Condition.MISSING_PARTS, "0.50"),
        (Condition.WRONG_ITEM, "0"),
    ],
)
def test_a_customer_at_fault_is_refunded_by_the_condition_found(
    condition: Condition, rate: str
) -> None:
    assert refund_rate(POLICY, ReasonCode.CHANGED_MIND, condition) == Decimal(rate)


@pytest.mark.parametrize("reason", SELLER_FAULTS)
@pytest.mark.parametrize(
    "condition", [Condition.DAMAGED, Condition.MISSING_PARTS, Condition.DEFECTIVE]
)
def test_a_seller_fault_is_refunded_in_full_whatever_the_condition(
    reason: ReasonCode, condition: Condition
) -> None:
    assert refund_rate(POLICY, reason, condition) == Decimal(1)


@pytest.mark.parametrize("reason", list(ReasonCode))
def test_a_wrong_item_found_in_the_parcel_is_refunded_nothing(reason: ReasonCode) -> None:
    assert refund_rate(POLICY, reason, Condition.WRONG_ITEM) == Decimal(0)


# ---------------------------------------------------------------- allocation to payments
CARD = ("PAY-CARD", PaymentMethod.CARD)
PAYPAL = ("PAY-PP", PaymentMethod.PAYPAL)
GIFT = ("PAY-GIFT", PaymentMethod.GIFT_CARD)


def capacity(payment: tuple[str, PaymentMethod], amount: str) -> tuple[str, PaymentMethod, Money]:
    return (payment[0], payment[1], eur(amount))


def shares(allocations: tuple[RefundAllocation, ...]) -> dict[str | None, str]:
    return {a.payment_id: str(a.amount.amount) for a in allocations}


def test_a_refund_is_split_across_payments_in_proportion_to_their_capacity() -> None:
    allocations = allocate_proportionally(
        eur("50.00"), [capacity(CARD, "60.00"), capacity(PAYPAL, "40.00")]
    )
    assert allocations == (
        RefundAllocation(payment_id="PAY-CARD", method=PaymentMethod.CARD, amount=eur("30.00")),
        RefundAllocation(payment_id="PAY-PP", method=PaymentMethod.PAYPAL, amount=eur("20.00")),
    )


def test_the_split_adds_up_exactly_to_the_cent() -> None:
    allocations = allocate_proportionally(
        eur("100.00"),
        [capacity(CARD, "100.00"), capacity(PAYPAL, "100.00"), capacity(GIFT, "100.00")],
    )
    assert sorted(shares(allocations).values()) == ["33.33", "33.33", "33.34"]
    assert sum(a.amount.amount for a in allocations) == Decimal("100.00")


def test_the_leftover_cent_goes_to_the_largest_remainder() -> None:
    allocations = allocate_proportionally(
        eur("0.10"), [capacity(CARD, "2.00"), capacity(PAYPAL, "1.00")]
    )
    assert shares(allocations) == {"PAY-CARD": "0.07", "PAY-PP": "0.03"}


def test_a_refund_of_the_whole_capacity_empties_every_payment() -> None:
    allocations = allocate_proportionally(
        eur("70.01"), [capacity(CARD, "70.00"), capacity(GIFT, "0.01")]
    )
    assert shares(allocations) == {"PAY-CARD": "70.00", "PAY-GIFT": "0.01"}


def test_an_exhausted_payment_takes_no_part_of_the_refund() -> None:
    allocations = allocate_proportionally(
        eur("10.00"), [capacity(CARD, "0.00"), capacity(PAYPAL, "25.00")]
    )
    assert shares(allocations) == {"PAY-PP": "10.00"}


def test_a_refund_above_the_remaining_capacity_raises() -> None:
    with pytest.raises(ValueError, match="exceeds remaining capacity"):
        allocate_proportionally(eur("100.01"), [capacity(CARD, "60.00"), capacity(GIFT, "40")])


def test_a_refund_with_no_payment_left_to_take_it_raises() -> None:
    with pytest.raises(ValueError):
        allocate_proportionally(eur("0.01"), [capacity(CARD, "0.00")])


def test_a_zero_refund_allocates_nothing() -> None:
    assert allocate_proportionally(eur("0.00"), [capacity(CARD, "10.00")]) == ()
