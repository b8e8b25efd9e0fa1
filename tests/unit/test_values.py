from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from domain.errors import InvalidValue
from domain.events import ReceivedItem
from domain.values import RMA_ALPHABET, Money, ReasonCode, RmaNumber
from tests.unit.builders import eur, usd


# ---------------------------------------------------------------- Money
def test_money_is_kept_in_cents_and_a_sub_cent_amount_is_refused_not_rounded() -> None:
    assert eur("19.9").amount == Decimal("19.90")
    assert eur(7).amount == Decimal("7.00")
    with pytest.raises(InvalidValue, match="more decimals than EUR allows"):
        eur("0.125")


def test_money_adds_exactly_where_floats_would_not() -> None:
    assert eur("0.10") + eur("0.20") == eur("0.30")
    assert eur("100.00") - eur("0.01") == eur("99.99")


def test_money_times_a_factor_is_rounded_to_the_cent() -> None:
    assert eur("33.33").times(3) == eur("99.99")
    assert eur("9.99").times(Decimal("0.10")) == eur("1.00")
    assert eur("0.05").times(Decimal("0.50")) == eur("0.02")


def test_money_of_never_accepts_a_float() -> None:
    with pytest.raises(InvalidValue) as error:
        Money.of(19.9, "EUR")  # type: ignore[arg-type]
    assert error.value.code == "invalid_value"


def test_money_built_directly_never_accepts_a_float() -> None:
    with pytest.raises(ValidationError, match="never floats"):
        Money(amount=0.1, currency="EUR")


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "twelve", ""])
def test_money_of_refuses_an_amount_that_is_not_a_finite_number(amount: str) -> None:
    with pytest.raises(InvalidValue):
        Money.of(amount, "EUR")


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", "", "€"])
def test_money_refuses_a_currency_that_is_not_an_iso_4217_code(currency: str) -> None:
    with pytest.raises(InvalidValue):
        Money.of("1.00", currency)


def test_adding_money_in_two_currencies_raises_invalid_value() -> None:
    with pytest.raises(InvalidValue, match="cannot combine EUR with USD"):
        _ = eur("1.00") + usd("1.00")


def test_subtracting_money_in_two_currencies_raises_invalid_value() -> None:
    with pytest.raises(InvalidValue):
        _ = eur("1.00") - usd("1.00")


@pytest.mark.parametrize("compare", ["<", "<=", ">", ">="])
def test_comparing_money_in_two_currencies_raises_invalid_value(compare: str) -> None:
    a, b = eur("1.00"), usd("2.00")
    operations = {
        "<": lambda: a < b,
        "<=": lambda: a <= b,
        ">": lambda: a > b,
        ">=": lambda: a >= b,
    }
    with pytest.raises(InvalidValue):
        operations[compare]()


def test_money_in_two_currencies_is_never_equal() -> None:
    assert eur("1.00") != usd("1.00")


def test_money_compares_by_amount_within_a_currency() -> None:
    assert eur("1.00") < eur("1.01") <= eur("1.01") < eur("2")
    assert eur("1.0") == eur("1.00")


def test_zero_money_is_zero_and_prints_with_its_currency() -> None:
    assert Money.zero("EUR").is_zero
    assert not eur("0.01").is_zero
    assert str(eur("19.9")) == "19.90 EUR"


def test_money_is_immutable() -> None:
    price = eur("1.00")
    with pytest.raises(ValidationError):
        price.amount = Decimal(2)  # type: ignore[misc]


# ---------------------------------------------------------------- RmaNumber
def test_an_rma_number_is_normalised_to_upper_case_without_surrounding_spaces() -> None:
    assert RmaNumber("  rma-7k2q-m4xd \n") == "RMA-7K2Q-M4XD"
    assert isinstance(RmaNumber("RMA-7K2Q-M4XD"), str)


@pytest.mark.parametrize(
    "text",
    [
        "RMA-7K2Q-M4XI",  # I is not in the alphabet (reads as 1)
        "RMA-7K2Q-M4XL",  # L reads as 1
        "RMA-OK2Q-M4XD",  # O reads as 0
        "RMA-7K2Q-M4XU",  # U is left out of Crockford base32
        "RMA-7K2QM4XD",
        "RMA-7K2Q-M4X",
        "RMA-7K2Q-M4XDD",
        "RMX-7K2Q-M4XD",
        "RMA 7K2Q M4XD",
        "",
    ],
)
def test_an_rma_number_of_the_wrong_shape_or_alphabet_is_refused(text: str) -> None:
    with pytest.raises(InvalidValue) as error:
        RmaNumber(text)
    assert error.value.code == "invalid_value"


def test_generated_rma_numbers_are_valid_and_unguessable() -> None:
    numbers = {RmaNumber.generate() for _ in range(200)}
    assert len(numbers) == 200
    for number in numbers:
        assert RmaNumber(number) == number
        assert set(number[4:8] + number[9:]) <= set(RMA_ALPHABET)


# ---------------------------------------------------------------- vocabularies and codes
def test_only_defects_transit_damage_and_wrong_items_are_the_sellers_fault() -> None:
    assert {code for code in ReasonCode if code.is_fault_of_seller} == {
        ReasonCode.DEFECTIVE,
        ReasonCode.DAMAGED_IN_TRANSIT,
        ReasonCode.WRONG_ITEM,
    }


@pytest.mark.parametrize("sku", ["", "-LEADING-DASH", "has space", "x" * 65, "emoji-🙂"])
def test_a_malformed_sku_is_refused(sku: str) -> None:
    with pytest.raises(ValidationError):
        ReceivedItem(sku=sku, quantity=1)


@pytest.mark.parametrize("serial", ["", "SN 1", "SN/1"])
def test_a_malformed_serial_number_is_refused(serial: str) -> None:
    with pytest.raises(ValidationError):
        ReceivedItem(sku="SKU-1", quantity=1, serial=serial)


def test_a_well_formed_sku_and_serial_are_kept_as_given() -> None:
    item = ReceivedItem(sku="TSHIRT/M.blue_2", quantity=1, serial="SN-0001.a")
    assert (item.sku, item.serial) == ("TSHIRT/M.blue_2", "SN-0001.a")
