"""The Return aggregate (the RMA), split by concept: lines, state, payouts, settlement.

Importers keep writing ``from domain.returns import X``: the names they use are here.
"""

from domain.returns.aggregate import Return
from domain.returns.lines import (
    CounterCheck,
    RequestedLine,
    blind_return_id_for,
    quantities_of,
    store_return_id_for,
)
from domain.returns.state import ReturnState, ReturnStatus, status_after

__all__ = [
    "CounterCheck",
    "RequestedLine",
    "Return",
    "ReturnState",
    "ReturnStatus",
    "blind_return_id_for",
    "quantities_of",
    "status_after",
    "store_return_id_for",
]
