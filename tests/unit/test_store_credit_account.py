"""The store-credit account: credited by returns and refunds, spent by orders, never below
zero, and a move repeated under the same reference counted once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InsufficientStoreCredit, InvalidCommand
from domain.events import StoreCreditCredited, StoreCreditSpent
from domain.store_credit import StoreCreditAccount, store_credit_id_for
from domain.values import Money
from tests.unit.builders import CAUSE, day, eur

CUSTOMER = "cust-42"


def account_with(credit: str) -> StoreCreditAccount:
    account = StoreCreditAccount.open(CUSTOMER)
    account.credit(eur(credit), "SC-RMA-1-5", "return", day(1), CAUSE)
    return account


def test_a_return_paid_as_store_credit_credits_the_customers_account() -> None:
    account = account_with("110.00")
    assert account.pending_events == [
        StoreCreditCredited(
            originator_id=store_credit_id_for(CUSTOMER),
            originator_version=1,
            timestamp=day(1),
            cause=CAUSE,
            customer_id=CUSTOMER,
            reference="SC-RMA-1-5",
            reason="return",
            amount=eur("110.00"),
            balance=eur("110.00"),
        )
    ]
    assert account.balance("EUR") == eur("110.00")


def test_an_order_spends_part_of_the_balance() -> None:
    account = account_with("110.00")
    account.spend(eur("60.00"), "WEB-7", day(2), CAUSE)
    spent = account.pending_events[-1]
    assert isinstance(spent, StoreCreditSpent)
    assert (spent.reference, spent.amount, spent.balance) == ("WEB-7", eur("60.00"), eur("50.00"))
    assert account.balance("EUR") == eur("50.00")


def test_an_order_spending_more_than_the_balance_is_refused_and_moves_nothing() -> None:
    account = account_with("110.00")
    with pytest.raises(InsufficientStoreCredit, match=r"spends 500\.00 EUR") as refused:
        account.spend(eur("500.00"), "WEB-8", day(2), CAUSE)
    assert refused.value.code == "insufficient_store_credit"
    assert account.balance("EUR") == eur("110.00")
    assert account.version == 1


def test_credit_in_one_currency_pays_nothing_in_another() -> None:
    account = account_with("110.00")
    with pytest.raises(InsufficientStoreCredit):
        account.spend(Money.of("10.00", "USD"), "US-1", day(2), CAUSE)


def test_the_same_reference_moves_the_balance_once() -> None:
    account = account_with("110.00")
    account.credit(eur("110.00"), "SC-RMA-1-5", "return", day(2), CAUSE)
    account.spend(eur("10.00"), "WEB-9", day(2), CAUSE)
    account.spend(eur("10.00"), "WEB-9", day(3), CAUSE)
    assert account.balance("EUR") == eur("100.00")
    assert account.version == 2


def test_a_cancelled_order_gives_its_credit_back_under_its_own_reason() -> None:
    account = account_with("50.00")
    account.spend(eur("50.00"), "WEB-9", day(2), CAUSE)
    account.credit(eur("50.00"), "WEB-9", "order_cancelled", day(3), CAUSE)
    assert account.balance("EUR") == eur("50.00")


def test_negative_moves_and_unknown_reasons_are_refused() -> None:
    account = account_with("50.00")
    with pytest.raises(InvalidCommand):
        account.spend(eur("-1.00"), "WEB-1", day(2), CAUSE)
    with pytest.raises(InvalidCommand):
        account.credit(eur("5.00"), "X", "goodwill", day(2), CAUSE)


def test_replaying_the_history_gives_the_same_balance_and_moves() -> None:
    account = account_with("80.00")
    account.spend(eur("30.00"), "WEB-1", day(2), CAUSE)
    replayed = StoreCreditAccount.replay(account.id, account.collect_events())
    assert replayed.balance("EUR") == eur("50.00")
    assert [m.reference for m in replayed.movements] == ["SC-RMA-1-5", "WEB-1"]
    assert replayed.customer_id == CUSTOMER


cents = st.integers(min_value=0, max_value=100_000).map(lambda c: Decimal(c) / 100)
moves = st.lists(st.tuples(st.sampled_from(["credit", "spend"]), cents), max_size=40)


@given(moves)
def test_the_balance_is_never_negative_and_equals_the_sum_of_its_moves(
    steps: list[tuple[str, Decimal]],
) -> None:
    account = StoreCreditAccount.open(CUSTOMER)
    for index, (kind, amount) in enumerate(steps):
        before = account.balance("EUR")
        if kind == "credit":
            account.credit(eur(amount), f"R-{index}", "refund", day(1), CAUSE)
        else:
            try:
                account.spend(eur(amount), f"O-{index}", day(1), CAUSE)
            except InsufficientStoreCredit:
                assert amount > before.amount
                assert account.balance("EUR") == before
        assert account.balance("EUR").amount >= 0
    signed = sum(
        (m.amount.amount if isinstance(m, StoreCreditCredited) else -m.amount.amount)
        for m in account.movements
    )
    assert account.balance("EUR").amount == signed
    assert all(m.balance.amount >= 0 for m in account.movements)
