"""Moved to ``adapters.driving.demo.clients``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driving.demo.clients import PRINCIPALS, Answer, ApiError, Caller, demo_keys, route_of

__all__ = [
    "PRINCIPALS",
    "Answer",
    "ApiError",
    "Caller",
    "demo_keys",
    "route_of",
]
