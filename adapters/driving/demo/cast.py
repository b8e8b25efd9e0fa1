"""The demo's cast and props: the catalogue, sales, RMAs, the report, the API's clients,
and the money text helpers.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from adapters.driving.demo.clients import Caller
from domain.values import ReasonCode

CATALOGUE = [
    ("SHOE-RUN-42", "Running shoe", "39.90", "Stride Ltd", "shoes", None),
    ("JACKET-RAIN-M", "Rain jacket", "89.00", "Northwind", "apparel", None),
    ("HEADPHONES-X1", "Headphones X1", "129.00", "SoundCo", "electronics", 24),
    ("SOCKS-3P", "Socks, 3 pairs", "9.90", "Stride Ltd", "apparel", None),
    ("GAME-KEY-01", "Game licence", "59.00", "PixelWorks", "software", None),
    ("KETTLE-2L", "Kettle 2 l", "34.50", "HomeGoods", "kitchen", 24),
    # Above the policy's review threshold: its returns wait for customer service.
    ("LAPTOP-PRO-14", "Laptop Pro 14", "1299.00", "Lumen", "electronics", 24),
]
# Customers say why; suppliers differ in what goes wrong with their goods.
REASONS_BY_SUPPLIER = {
    "Stride Ltd": [ReasonCode.SIZE_TOO_SMALL, ReasonCode.SIZE_TOO_LARGE, ReasonCode.CHANGED_MIND],
    "Northwind": [
        ReasonCode.COLOR_NOT_AS_PICTURED,
        ReasonCode.SIZE_TOO_LARGE,
        ReasonCode.NOT_AS_DESCRIBED,
    ],
    "SoundCo": [ReasonCode.DEFECTIVE, ReasonCode.DEFECTIVE, ReasonCode.BETTER_PRICE],
    "PixelWorks": [ReasonCode.CHANGED_MIND, ReasonCode.WRONG_ITEM],
    "HomeGoods": [ReasonCode.DAMAGED_IN_TRANSIT, ReasonCode.DEFECTIVE, ReasonCode.CHANGED_MIND],
    "Lumen": [ReasonCode.DEFECTIVE, ReasonCode.NOT_AS_DESCRIBED, ReasonCode.CHANGED_MIND],
}
# What customer service will not take back after a review: a used laptop returned on a whim.
REFUSED_IN_REVIEW = {ReasonCode.CHANGED_MIND, ReasonCode.BETTER_PRICE}
HISTORY = timedelta(days=36)  # the oldest order; the newest is three days old


@dataclass
class Sale:
    order_id: str
    customer_id: str
    channel: str
    placed_at: datetime
    lines: list[dict[str, Any]]
    business: bool = False

    @property
    def email(self) -> str:
        return f"{self.customer_id.lower()}@example.com"


@dataclass
class Rma:
    """An RMA the demo follows: what was asked for, and its ids as the API gave them."""

    sale: Sale
    line: dict[str, Any]
    return_id: UUID
    rma_number: str
    quantity: int = 1

    def units(self) -> list[dict[str, Any]]:
        """The parcel's items, one per unit so each carries its serial."""
        serials = self.line["serials"][: self.quantity]
        return [
            {"sku": self.line["sku"], "quantity": 1, "serial": s}
            for s in serials + [None] * (self.quantity - len(serials))
        ]


@dataclass
class Report:
    orders: int = 0
    rmas: dict[str, str] = field(default_factory=dict)
    portal_rmas: int = 0
    cs_rmas: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    reviewed: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    blind: int = 0
    blind_matched: int = 0
    blind_matched_at_receipt: int = 0
    store_returns: int = 0
    malformed: int = 0
    refunds_as_store_credit: int = 0
    replays: int = 0
    journeys: list[str] = field(default_factory=list)
    """One line per workflow journey the day played (blind parcels, counters, legs,
    expiry...), each saying what happened and through which interface."""
    api_url: str = ""
    first_position: int = 0  # the event store's head before the day: what came later is ours
    calls: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def step(self, label: str, done: int, total: int) -> None:
        if self.tty:
            filled = 30 * done // max(total, 1)
            sys.stderr.write(f"\r{label:<26} [{'#' * filled:<30}] {done}/{total}")
            if done >= total:
                sys.stderr.write("\n")
        elif done >= total or done % max(1, total // 5) == 0:
            sys.stderr.write(f"{label}: {done}/{total}\n")
        sys.stderr.flush()

    def say(self, line: str) -> None:
        if not self.quiet:
            print(("\r\x1b[K" if self.tty else "") + line, flush=True)


@dataclass
class People:
    """The API's clients: the customer portal, customer service, analytics and the
    warehouse desk."""

    portal: Caller
    cs: Caller
    analytics: Caller
    warehouse: Caller

    def close(self) -> None:
        for caller in (self.portal, self.cs, self.analytics, self.warehouse):
            caller.close()


# ---------------------------------------------------------------- money text helpers
def eur(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


def sum_amounts(prices: list[str], quantities: list[int], shipping: str) -> str:
    total = Decimal(shipping) + sum(
        (Decimal(p) * q for p, q in zip(prices, quantities, strict=True)), Decimal(0)
    )
    return f"{total:.2f}"


def subtract(total: str, part: str) -> str:
    return f"{Decimal(total) - Decimal(part):.2f}"
