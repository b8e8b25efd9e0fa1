"""Topic names and shapes: part of the public contract (DESIGN.md, "Wire contract v1")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.customers import CustomerHistory
from projections.ledger import RefundLedger
from projections.rma_status import RmaStatus
from projections.stock import StockLevels

if TYPE_CHECKING:  # the wire contracts import this module: keep it free of server helpers
    from adapters.driven.kafka.provisioning import TopicSpec

ORDERS = "oms.orders.v1"
WMS_RECEIPTS = "wms.receipts.v1"
POS_RETURNS = "pos.returns.v1"
PSP_REFUNDS = "psp.refunds.v1"
INBOUND_TOPICS = (ORDERS, WMS_RECEIPTS, POS_RETURNS, PSP_REFUNDS)

RMA_EVENTS = "rma.events.v1"
ORDER_EVENTS = "oms.order-events.v1"
INVENTORY_EVENTS = "oms.inventory-events.v1"
STORE_CREDIT_EVENTS = "oms.store-credit-events.v1"
NOTIFICATIONS = "rma.notifications.v1"
# The read models' topics are named by their reducers (projections/ may not import adapters/).
STOCK_LEVELS = StockLevels.outbound_topic
CUSTOMER_HISTORY = CustomerHistory.outbound_topic
REFUND_LEDGER = RefundLedger.outbound_topic
RMA_STATUS = RmaStatus.outbound_topic
# Where the relay puts an event of an aggregate kind it does not know (never provisioned).
UNKNOWN_EVENTS = "oms.unknown-events.v1"

# The relay writes one record here per broker incarnation; its absence means the broker
# lost its data (the embedded broker keeps nothing across a restart) and must be refilled.
RELAY_EPOCH = "oms.relay-epoch.v1"

EVENT_TOPIC_BY_KIND = {
    "return": RMA_EVENTS,
    "order": ORDER_EVENTS,
    "inventory": INVENTORY_EVENTS,
    "store_credit": STORE_CREDIT_EVENTS,
}
COMPACTED = {STOCK_LEVELS, CUSTOMER_HISTORY, RMA_STATUS}


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def topic_specs(partitions: int) -> dict[str, TopicSpec]:
    """Every topic a deployment needs: contract topics, their DLQs, the relay's own.

    Provisioned explicitly: Tansu auto-creates a topic it has never seen with 4 partitions
    whatever we want, and cannot add partitions afterwards. Faust itself needs no internal
    topic for our apps: ``streams.app.create_app`` runs without tables (no changelog),
    without ``group_by`` (no repartition topic), without the leader topic
    (``topic_disable_leader``) and without agent replies. Checked by listing the broker's
    topics after a worker ran.
    """
    from adapters.driven.kafka.provisioning import TopicSpec

    names = [
        *INBOUND_TOPICS,
        *(dlq(t) for t in INBOUND_TOPICS),
        *(dlq(t) for t in (RMA_EVENTS, ORDER_EVENTS, INVENTORY_EVENTS, STORE_CREDIT_EVENTS)),
        RMA_EVENTS,
        ORDER_EVENTS,
        INVENTORY_EVENTS,
        STORE_CREDIT_EVENTS,
        NOTIFICATIONS,
        STOCK_LEVELS,
        CUSTOMER_HISTORY,
        REFUND_LEDGER,
        RMA_STATUS,
    ]
    specs = {name: TopicSpec(partitions, compacted=name in COMPACTED) for name in names}
    specs[RELAY_EPOCH] = TopicSpec(1)
    return specs
