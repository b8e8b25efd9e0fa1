"""Moved to ``adapters.driven.eventstore``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.eventstore import (
    INSERT_ORDERS,
    INSERT_SERIALS,
    LOOKUP_TABLES,
    UPSERT_REFUNDS,
    UPSERT_RETURNS,
    OmsRecorder,
    T,
    columns,
    create_service,
    database_unavailable,
    eventsourcing_env,
)

__all__ = [
    "INSERT_ORDERS",
    "INSERT_SERIALS",
    "LOOKUP_TABLES",
    "UPSERT_REFUNDS",
    "UPSERT_RETURNS",
    "OmsRecorder",
    "T",
    "columns",
    "create_service",
    "database_unavailable",
    "eventsourcing_env",
]
