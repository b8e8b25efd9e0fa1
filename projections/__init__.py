"""Read models as pure reducers (event in, row changes out) plus their SQL schema.

``default_projections()`` is the set a deployment runs; each one is independent (its own
tables, states and consumed offsets) and can be rebuilt alone.
"""

from __future__ import annotations

from decimal import Decimal

from projections.core import Event, Projection
from projections.customers import CustomerHistory
from projections.discrepancies import RefundDiscrepancies
from projections.ledger import RefundLedger
from projections.legs import Legs
from projections.period import PeriodAnalytics
from projections.reasons import ReturnReasons
from projections.rma_status import RmaStatus
from projections.serials import SerialLives
from projections.stock import StockLevels

__all__ = [
    "CustomerHistory",
    "Event",
    "Legs",
    "PeriodAnalytics",
    "Projection",
    "RefundDiscrepancies",
    "RefundLedger",
    "ReturnReasons",
    "RmaStatus",
    "SerialLives",
    "StockLevels",
    "default_projections",
]


def default_projections(
    *, serial_returner_min_returns: int = 3, serial_returner_min_rate: Decimal | str = "0.5"
) -> list[Projection]:
    return [
        StockLevels(),
        CustomerHistory(serial_returner_min_returns, serial_returner_min_rate),
        RefundLedger(),
        ReturnReasons(),
        RmaStatus(),
        SerialLives(),
        Legs(),
        PeriodAnalytics(),
        RefundDiscrepancies(),
    ]
