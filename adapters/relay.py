"""Moved to ``adapters.driven.relay``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.relay import (
    KIND_BY_TYPE,
    NOTIFY_TEMPLATES,
    SCHEMA,
    OutboundRecord,
    Relay,
    RelayStats,
    cloud_event_for,
    lag,
    records_for,
)

__all__ = [
    "KIND_BY_TYPE",
    "NOTIFY_TEMPLATES",
    "SCHEMA",
    "OutboundRecord",
    "Relay",
    "RelayStats",
    "cloud_event_for",
    "lag",
    "records_for",
]
