"""Store-credit codes: every credit carries an unguessable code, kept through replays,
listed by the account and found by the lookups; an order names a code only on a
store-credit payment."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.application import lookup_rows_for
from domain.errors import InsufficientStoreCredit, InvalidCommand
from domain.events import Payment, StoreCreditCredited
from domain.lookups import StoreCreditCodeRow
from domain.order import Order
from domain.store_credit import (
    StoreCreditAccount,
    is_store_credit_code,
    new_store_credit_code,
)
from domain.values import Channel, PaymentMethod
from tests.unit.builders import CAUSE, day, eur, line

CUSTOMER = "cust-codes"
CODE = re.compile(r"^SC-[A-Z2-7]{12}$")


def test_a_code_is_sc_and_twelve_base32_characters_and_never_repeats() -> None:
    codes = {new_store_credit_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(CODE.match(code) and is_store_credit_code(code) for code in codes)
    assert not is_store_credit_code("SC-RMA-1-5")  # a return's credit id is not a code
    assert not is_store_credit_code("SC-abcdefghijkl")


def test_a_credit_carries_its_code_and_the_account_lists_it_after_a_replay() -> None:
    account = StoreCreditAccount.open(CUSTOMER)
    first, second = new_store_credit_code(), new_store_credit_code()
    account.credit(eur("20.00"), "SC-RMA-1-5", "return", day(1), CAUSE, code=first)
    account.credit(eur("5.00"), "RF-1", "refund", day(2), CAUSE, code=second)
    credited = account.pending_events[0]
    assert isinstance(credited, StoreCreditCredited)
    assert credited.code == first
    replayed = StoreCreditAccount.replay(account.id, account.collect_events())
    assert replayed.codes == [first, second]
    assert replayed.balance("EUR") == eur("25.00")


def test_a_credit_repeated_under_its_reference_keeps_its_first_code_only() -> None:
    account = StoreCreditAccount.open(CUSTOMER)
    code = new_store_credit_code()
    account.credit(eur("20.00"), "SC-RMA-1-5", "return", day(1), CAUSE, code=code)
    account.credit(
        eur("20.00"), "SC-RMA-1-5", "return", day(2), CAUSE, code=new_store_credit_code()
    )
    assert account.codes == [code]
    assert account.version == 1


def test_a_malformed_code_is_refused() -> None:
    account = StoreCreditAccount.open(CUSTOMER)
    with pytest.raises(InvalidCommand, match="not a store-credit code"):
        account.credit(eur("20.00"), "R-1", "return", day(1), CAUSE, code="SC-1234")
    assert account.version == 0


def test_the_lookups_learn_each_new_code_and_whose_account_it_spends() -> None:
    account = StoreCreditAccount.open(CUSTOMER)
    code = new_store_credit_code()
    account.credit(eur("20.00"), "R-1", "return", day(1), CAUSE, code=code)
    account.credit(eur("3.00"), "WEB-1", "order_cancelled", day(1), CAUSE)  # an older move
    assert lookup_rows_for([account]).store_credit_codes == [StoreCreditCodeRow(code, CUSTOMER)]


def place(payment: Payment) -> Order:
    return Order.place(
        order_number="WEB-CODE-1",
        customer_id=CUSTOMER,
        customer_email=None,
        channel=Channel.WEB,
        lines=(line(1, price="30.00"),),
        payments=(payment,),
        shipping=eur("0.00"),
        at=day(1),
        cause=CAUSE,
    )


def test_an_order_names_a_code_only_on_a_store_credit_payment() -> None:
    code = new_store_credit_code()
    by_code = place(
        Payment(
            payment_id="P-1",
            method=PaymentMethod.STORE_CREDIT,
            amount=eur("30.00"),
            store_credit_code=code,
        )
    )
    assert by_code.state.payments["P-1"].store_credit_code == code
    with pytest.raises(InvalidCommand, match="only a store_credit payment"):
        place(
            Payment(
                payment_id="P-1",
                method=PaymentMethod.CARD,
                amount=eur("30.00"),
                store_credit_code=code,
            )
        )
    with pytest.raises(InvalidCommand, match="only a store_credit payment"):
        place(
            Payment(
                payment_id="P-1",
                method=PaymentMethod.STORE_CREDIT,
                amount=eur("30.00"),
                store_credit_code="SC-guess",
            )
        )


# ---------------------------------------------------------------- property
cents = st.integers(min_value=0, max_value=50_000).map(lambda c: Decimal(c) / 100)
steps = st.lists(
    st.tuples(st.sampled_from(["issue", "spend", "cancel"]), cents, st.integers(0, 10)),
    max_size=40,
)


@given(steps)
def test_issued_and_spent_by_code_the_balance_never_goes_negative(
    script: list[tuple[str, Decimal, int]],
) -> None:
    """Credits issued with codes, orders spending them and cancellations giving them back,
    repeated references included: never below zero, and a replay gives the same account."""
    account = StoreCreditAccount.open(CUSTOMER)
    issued: list[str] = []
    spent: list[str] = []
    for index, (kind, amount, pick) in enumerate(script):
        before = account.balance("EUR")
        if kind == "issue":
            code = new_store_credit_code()
            reference = f"R-{pick}"  # references repeat: a credit repeated moves nothing
            known = ("return", reference) in account.applied
            account.credit(eur(amount), reference, "return", day(1), CAUSE, code=code)
            if not known and amount:
                issued.append(code)
        elif kind == "spend":
            try:
                account.spend(eur(amount), f"O-{index}", day(1), CAUSE)
                if amount:
                    spent.append(f"O-{index}")
            except InsufficientStoreCredit:
                assert amount > before.amount
                assert account.balance("EUR") == before
        elif spent:
            order = spent[pick % len(spent)]
            given_back = next(m.amount for m in account.movements if m.reference == order)
            account.credit(
                given_back, order, "order_cancelled", day(1), CAUSE, code=new_store_credit_code()
            )
        assert account.balance("EUR").amount >= 0
    assert all(m.balance.amount >= 0 for m in account.movements)
    assert set(issued) <= set(account.codes)
    assert len(account.codes) == sum(isinstance(m, StoreCreditCredited) for m in account.movements)
    replayed = StoreCreditAccount.replay(account.id, account.collect_events())
    assert (replayed.balances, replayed.codes) == (account.balances, account.codes)
