"""The topics of the wire contract (DESIGN.md, "Wire contract v1"), as the streams see them.

The names live in ``adapters.topics``, shared with the relay; this module re-exports them
rather than repeat them, so the two cannot drift. Workers provision every topic before
they start: Tansu auto-creates a topic it has never seen with 4 partitions whatever we
want, and cannot add partitions afterwards.
"""

from __future__ import annotations

from adapters.embedded import TopicSpec
from adapters.topics import (
    COMPACTED,
    CUSTOMER_HISTORY,
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
    WMS_RECEIPTS,
    dlq,
    topic_specs,
)

RMA_NOTIFICATIONS = NOTIFICATIONS

OUTBOUND_TOPICS: tuple[str, ...] = (
    RMA_EVENTS,
    ORDER_EVENTS,
    INVENTORY_EVENTS,
    STOCK_LEVELS,
    CUSTOMER_HISTORY,
    REFUND_LEDGER,
    RMA_STATUS,
    RMA_NOTIFICATIONS,
)


def all_topic_specs(partitions: int) -> dict[str, TopicSpec]:
    """Every topic a deployment needs: contract topics, their DLQs, the relay's own.

    Faust itself needs no internal topic for our apps: ``streams.app.create_app`` runs
    without tables (no changelog), without ``group_by`` (no repartition topic), without
    the leader topic (``topic_disable_leader``) and without agent replies. Checked by
    listing the broker's topics after a worker ran.
    """
    return topic_specs(partitions)


__all__ = [
    "COMPACTED",
    "CUSTOMER_HISTORY",
    "INBOUND_TOPICS",
    "INVENTORY_EVENTS",
    "ORDERS",
    "ORDER_EVENTS",
    "OUTBOUND_TOPICS",
    "POS_RETURNS",
    "PSP_REFUNDS",
    "REFUND_LEDGER",
    "RELAY_EPOCH",
    "RMA_EVENTS",
    "RMA_NOTIFICATIONS",
    "RMA_STATUS",
    "STOCK_LEVELS",
    "WMS_RECEIPTS",
    "all_topic_specs",
    "dlq",
]
