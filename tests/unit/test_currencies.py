"""Money in each currency's minor units: refused when finer, derived amounts exact."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.currencies import minor_units, quantum
from domain.errors import InvalidValue, PolicyViolation
from domain.events import Payment, ReturnAuthorized, ReturnEvent, ReturnHeldForReview
from domain.order import Order
from domain.policy import PolicyBook, ReturnPolicy, allocate_proportionally
from domain.returns import Return
from domain.values import Channel, Condition, Money, PaymentMethod, ReasonCode
from projections.core import money, split_pro_rata
from projections.schema import MONEY
from tests.unit.builders import (
    BOOK,
    CAUSE,
    T0,
    decide,
    inspected,
    inspected_return,
    last,
    line,
    requested_return,
    wants,
)

# One currency per minor-unit class: yen (0), euro (2), Kuwaiti dinar (3).
CURRENCIES = ("JPY", "EUR", "KWD")


def order_in(currency: str, *prices: str, quantity: int = 1, cards: int = 1) -> Order:
    """A web order of one line per price, paid by ``cards`` payments, no shipping."""
    lines = tuple(
        line(n, price=p, quantity=quantity, currency=currency)
        for n, p in enumerate(prices, start=1)
    )
    total = sum((ln.unit_price.times(ln.quantity) for ln in lines), Money.zero(currency))
    shares = _split(total.minor, cards)
    payments = tuple(
        Payment(
            payment_id=f"PAY-{i}", method=PaymentMethod.CARD, amount=Money.of_minor(s, currency)
        )
        for i, s in enumerate(shares)
        if s
    )
    return Order.place(
        order_number="WEB-2001",
        customer_id="CUST-1",
        customer_email=None,
        channel=Channel.WEB,
        lines=lines,
        payments=payments
        or (Payment(payment_id="PAY-0", method=PaymentMethod.CARD, amount=total),),
        shipping=Money.zero(currency),
        at=T0,
        cause=CAUSE,
    )


def _split(units: int, parts: int) -> list[int]:
    base, extra = divmod(units, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# ---------------------------------------------------------------- the table
def test_minor_units_follow_iso_4217() -> None:
    assert (minor_units("JPY"), minor_units("EUR"), minor_units("KWD")) == (0, 2, 3)
    assert [minor_units(c) for c in ("BHD", "OMR", "JOD", "TND", "KRW", "USD")] == [
        3,
        3,
        3,
        3,
        0,
        2,
    ]
    assert quantum("KWD") == Decimal("0.001")


def test_an_unknown_currency_is_refused_by_name() -> None:
    with pytest.raises(InvalidValue, match="unknown currency 'XYZ'"):
        Money.of("1.00", "XYZ")


# ---------------------------------------------------------------- amounts
def test_kuwaiti_dinars_keep_their_three_decimals() -> None:
    assert Money.of("12.345", "KWD").amount == Decimal("12.345")
    assert str(Money.of("12.3", "KWD")) == "12.300 KWD"


def test_yen_have_no_decimals_and_stored_trailing_zeros_still_read() -> None:
    assert str(Money.of("29800", "JPY")) == "29800 JPY"
    # Events stored before kept every amount with two decimals: 29800.00 is still 29800.
    assert Money.of("29800.00", "JPY") == Money.of("29800", "JPY")


@pytest.mark.parametrize(
    ("amount", "currency", "decimals"),
    [("0.5", "JPY", 0), ("12.345", "EUR", 2), ("12.3456", "KWD", 3)],
)
def test_an_amount_finer_than_its_currency_is_refused_not_rounded(
    amount: str, currency: str, decimals: int
) -> None:
    with pytest.raises(InvalidValue, match=rf"more decimals than {currency} allows \({decimals}\)"):
        Money.of(amount, currency)


def test_a_rate_gives_an_amount_in_the_currencys_minor_unit() -> None:
    assert Money.of("999", "JPY").times(Decimal("0.10")) == Money.of("100", "JPY")
    assert Money.of("1.235", "KWD").times(Decimal("0.50")) == Money.of("0.618", "KWD")
    assert Money.of("19.99", "EUR").times(Decimal("0.50")) == Money.of("10.00", "EUR")


@given(
    currency=st.sampled_from(CURRENCIES),
    units=st.integers(min_value=0, max_value=10**12),
)
def test_minor_units_round_trip(currency: str, units: int) -> None:
    money = Money.of_minor(units, currency)
    assert money.minor == units
    assert money.amount.as_tuple().exponent == -minor_units(currency)


# ---------------------------------------------------------------- allocations
@settings(max_examples=300, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    capacities=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=4),
    fraction=st.fractions(min_value=0, max_value=1),
)
def test_allocations_sum_to_the_total_and_never_exceed_a_payment(
    currency: str, capacities: list[int], fraction: Fraction
) -> None:
    total_units = sum(capacities)
    asked = int(total_units * fraction)
    amount = Money.of_minor(asked, currency)
    caps = [
        (f"PAY-{i}", PaymentMethod.CARD, Money.of_minor(c, currency))
        for i, c in enumerate(capacities)
    ]
    allocations = allocate_proportionally(amount, caps)
    assert sum(a.amount.minor for a in allocations) == asked
    by_id = {pid: cap for pid, _, cap in caps}
    for allocation in allocations:
        assert allocation.amount.currency == currency
        assert Money.zero(currency) < allocation.amount <= by_id[allocation.payment_id or ""]


@settings(max_examples=200, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    price_units=st.integers(min_value=1, max_value=10**7),
    quantity=st.integers(min_value=1, max_value=5),
    cards=st.integers(min_value=1, max_value=3),
    asks=st.lists(st.integers(min_value=1, max_value=10**8), min_size=1, max_size=6),
)
def test_refunds_never_exceed_what_was_paid(
    currency: str, price_units: int, quantity: int, cards: int, asks: list[int]
) -> None:
    price = str(Money.of_minor(price_units, currency).amount)
    order = order_in(currency, price, quantity=quantity, cards=cards)
    paid = order.total_paid()
    for n, ask in enumerate(asks):
        capacities = order.refund_capacities()
        room = sum(cap.minor for _, _, cap in capacities)
        amount = Money.of_minor(min(ask, room), currency)
        allocations = allocate_proportionally(amount, capacities)
        assert sum(a.amount.minor for a in allocations) == amount.minor
        if allocations:
            order.allocate_refund(
                refund_id=f"RF-{n}",
                return_id=order.id,
                allocations=allocations,
                shipping_refunded=Money.zero(currency),
                at=T0,
                cause=CAUSE,
            )
    assert order.total_refunded() <= paid
    for payment in order.state.payments.values():
        refunded = order.refunded_by_payment().get(payment.payment_id, Money.zero(currency))
        assert refunded <= payment.amount


# ---------------------------------------------------------------- thresholds
def test_a_29800_yen_camera_is_not_held_as_above_1000() -> None:
    order = order_in("JPY", "29800")
    rma = requested_return(order, wants())
    decide(rma, order)
    event = last(rma)
    assert isinstance(event, ReturnAuthorized)
    assert event.expected_refund == Money.of("29800", "JPY")


def test_the_review_message_names_the_threshold_in_the_returns_currency() -> None:
    order = order_in("KWD", "412.500")
    rma = requested_return(order, wants())
    decide(rma, order)
    event = last(rma)
    assert isinstance(event, ReturnHeldForReview)
    assert "412.500 KWD is above the review threshold 330.000 KWD" in event.reason


def test_a_currency_without_thresholds_is_reviewed_and_never_kept() -> None:
    order = order_in("ISK", "500")
    rma = requested_return(order, wants())
    decide(rma, order)
    event = last(rma)
    assert isinstance(event, ReturnHeldForReview)
    assert "no review threshold is set for ISK" in event.reason
    policy = ReturnPolicy()
    assert policy.keep_item_threshold_in("ISK") is None
    assert policy.review_threshold_in("EUR") == Money.of("1000", "EUR")


def test_keep_the_item_follows_the_currency_threshold() -> None:
    cheap = order_in("JPY", "1980")
    rma = Return.replay(*_authorized(cheap))
    assert rma.state.keep_item_eligible
    dear = order_in("JPY", "2980")
    rma = Return.replay(*_authorized(dear))
    assert not rma.state.keep_item_eligible
    with pytest.raises(PolicyViolation, match="less than 2500 JPY"):
        rma.offer_keep_item(BOOK, T0, T0, CAUSE)


def test_a_book_can_state_thresholds_per_currency() -> None:
    book = PolicyBook(by_channel={Channel.WEB: {"review_thresholds": {"JPY": "10000"}}})
    order = order_in("JPY", "29800")
    rma = requested_return(order, wants())
    decide(rma, order, book=book)
    assert "above the review threshold 10000 JPY" in last(rma).reason
    web = book.policy_for("general", Channel.WEB)
    assert web.review_threshold_in("USD") == Money.of("1100", "USD")  # the rest stays


def _authorized(order: Order) -> tuple[UUID, list[ReturnEvent]]:
    rma = requested_return(order, wants(reason=ReasonCode.CHANGED_MIND))
    decide(rma, order)
    return rma.id, list(rma.collect_events())


def test_a_keep_item_offer_in_dinars_is_exact_to_the_fils() -> None:
    order = order_in("KWD", "3.333")
    rma = Return.replay(*_authorized(order))
    offer = rma.offer_keep_item(BOOK, T0, T0, CAUSE)
    assert offer == Money.of("1.666", "KWD")  # 1.6665 to the even fils


# ---------------------------------------------------------------- read models
def test_read_models_keep_each_currencys_scale() -> None:
    assert money({"amount": "12.345", "currency": "KWD"}) == Decimal("12.345")
    assert str(money({"amount": "29800.00", "currency": "JPY"})) == "29800"
    assert str(money({"amount": "19.9", "currency": "EUR"})) == "19.90"
    # numeric(18,2) would cut fils to cents in every money column.
    assert MONEY == "numeric"


@settings(max_examples=200, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    units=st.integers(min_value=-(10**9), max_value=10**9),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=5),
)
def test_a_split_over_lines_adds_up_in_the_currencys_minor_units(
    currency: str, units: int, weights: list[int]
) -> None:
    total = Money.of_minor(abs(units), currency).amount * (1 if units >= 0 else -1)
    parts = split_pro_rata(total, [Decimal(w) for w in weights], currency)
    assert sum(parts, Decimal(0)) == total
    step = quantum(currency)
    assert all(part % step == 0 for part in parts)


def test_ten_fils_over_three_lines_are_not_cut_to_a_cent() -> None:
    parts = split_pro_rata(Decimal("0.010"), [Decimal(1)] * 3, "KWD")
    assert parts == [Decimal("0.004"), Decimal("0.003"), Decimal("0.003")]


# ---------------------------------------------------------------- refunds by condition
NO_REVIEW = PolicyBook(
    default=ReturnPolicy(
        review_threshold=Decimal(10**13), review_thresholds={c: Decimal(10**13) for c in CURRENCIES}
    )
)


@settings(max_examples=100, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    price_units=st.integers(min_value=1, max_value=10**8),
    bought=st.integers(min_value=1, max_value=4),
    returned=st.integers(min_value=1, max_value=4),
    condition=st.sampled_from(list(Condition)),
    reason=st.sampled_from(
        [ReasonCode.CHANGED_MIND, ReasonCode.DEFECTIVE, ReasonCode.SIZE_TOO_SMALL]
    ),
)
def test_what_an_inspection_earns_is_in_minor_units_and_never_above_what_was_paid(
    currency: str,
    price_units: int,
    bought: int,
    returned: int,
    condition: Condition,
    reason: ReasonCode,
) -> None:
    quantity = min(bought, returned)
    order = order_in(currency, str(Money.of_minor(price_units, currency).amount), quantity=bought)
    rma = inspected_return(
        order,
        inspected(quantity=quantity, condition=condition),
        lines=(wants(quantity=quantity, reason=reason),),
        book=NO_REVIEW,
    )
    due = rma.items_due_unpaid()
    assert due.currency == currency
    assert due.amount == Money.of_minor(due.minor, currency).amount  # whole yen, cents, fils
    assert Money.zero(currency) <= due <= order.total_paid()
    bonus = due.times(NO_REVIEW.default.store_credit_bonus_rate)
    assert bonus.minor * 10 - due.minor in range(-5, 6)  # 10 % to the nearest minor unit


@pytest.mark.parametrize(
    ("currency", "price", "due"),
    [("JPY", "999", "500"), ("KWD", "1.235", "0.618"), ("EUR", "19.99", "10.00")],
)
def test_a_damaged_item_earns_half_to_the_nearest_yen_fils_or_cent(
    currency: str, price: str, due: str
) -> None:
    order = order_in(currency, price)
    rma = inspected_return(
        order, inspected(condition=Condition.DAMAGED), lines=(wants(),), book=NO_REVIEW
    )
    assert rma.items_due_unpaid() == Money.of(due, currency)
