"""Moved to ``adapters.driven.refunds``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.refunds import PendingRefund, RefundDispatches

__all__ = [
    "PendingRefund",
    "RefundDispatches",
]
