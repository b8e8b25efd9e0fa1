"""Moved to ``adapters.driven.kafka.topics``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.kafka.topics import (
    COMPACTED,
    CUSTOMER_HISTORY,
    EVENT_TOPIC_BY_KIND,
    INBOUND_TOPICS,
    INVENTORY_EVENTS,
    NOTIFICATIONS,
    ORDER_EVENTS,
    ORDERS,
    POS_RETURNS,
    PSP_REFUNDS,
    REFUND_LEDGER,
    RELAY_EPOCH,
    RMA_EVENTS,
    RMA_STATUS,
    STOCK_LEVELS,
    UNKNOWN_EVENTS,
    WMS_RECEIPTS,
    dlq,
    topic_specs,
)

__all__ = [
    "COMPACTED",
    "CUSTOMER_HISTORY",
    "EVENT_TOPIC_BY_KIND",
    "INBOUND_TOPICS",
    "INVENTORY_EVENTS",
    "NOTIFICATIONS",
    "ORDERS",
    "ORDER_EVENTS",
    "POS_RETURNS",
    "PSP_REFUNDS",
    "REFUND_LEDGER",
    "RELAY_EPOCH",
    "RMA_EVENTS",
    "RMA_STATUS",
    "STOCK_LEVELS",
    "UNKNOWN_EVENTS",
    "WMS_RECEIPTS",
    "dlq",
    "topic_specs",
]
