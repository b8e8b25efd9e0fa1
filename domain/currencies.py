"""ISO 4217 currencies and their minor units (the number of decimals an amount may have).

A small table instead of a dependency: the list changes a few times a decade. A code that
is not here is refused rather than guessed at, because guessing the exponent is exactly
how 12.345 KWD became 12.34 and yen got cents.
"""

from __future__ import annotations

from decimal import Decimal

from domain.errors import InvalidValue

# Codes whose minor unit is not 2; every other listed code has 2 decimals.
_NOT_TWO: dict[str, int] = {
    # no decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0,
    # three decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four decimals (units of account)
    "CLF": 4, "UYW": 4,
}  # fmt: skip

_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
    "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS "
    "KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN "
    "MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
    "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS "
    "UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

MINOR_UNITS: dict[str, int] = {**dict.fromkeys(_TWO.split(), 2), **_NOT_TWO}


def minor_units(currency: str) -> int:
    """How many decimals an amount in ``currency`` may have; unknown codes are refused."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise InvalidValue(f"unknown currency {currency!r}: not an ISO 4217 code") from None


def quantum(currency: str) -> Decimal:
    """The currency's smallest amount: 1 for JPY, 0.01 for EUR, 0.001 for KWD."""
    return Decimal(1).scaleb(-minor_units(currency))
