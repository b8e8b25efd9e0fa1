"""Orders paid by card and PayPal, refunded through the sandbox provider payment by
payment: the journey the payment-provider e2e tests start from."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from adapters.driven.kafka.topics import ORDERS, PSP_REFUNDS, WMS_RECEIPTS
from domain.values import ReasonCode
from tests.e2e.builders import System, eventually, publish, read_topic
from tests.integration import builders as m


def card_and_paypal_order(system: System) -> str:
    """An order of 64.90 paid 40.00 by card and 24.90 by PayPal, delivered."""
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    placed = orjson.loads(m.order_placed(order_id))
    placed["data"]["payments"] = [
        {"payment_id": "pay-card", "method": "card", "amount": m.amount("40.00")},
        {"payment_id": "pay-paypal", "method": "paypal", "amount": m.amount("24.90")},
    ]
    publish(
        system.bootstrap,
        ORDERS,
        [orjson.dumps(placed), m.order_fulfilled(order_id), m.order_delivered(order_id)],
        key=order_id.encode(),
    )
    eventually(lambda: delivered(system, order_id), what=f"{order_id} delivered")
    return order_id


def delivered(system: System, order_id: str) -> bool:
    try:
        return system.service.order_view(order_id)["delivered_at"] is not None
    except Exception:  # not placed yet
        return False


def refunded_return(system: System) -> tuple[uuid.UUID, str]:
    """A return of one item refunded to both payments; the sandbox declines a few refund ids
    (deterministically, about one in twenty): another order then."""
    for _ in range(4):
        order_id = card_and_paypal_order(system)
        rma = m.authorized_return(system.service, order_id, reason=ReasonCode.CHANGED_MIND)
        assert rma.rma_number
        receipt = f"REC-{order_id}"
        publish(
            system.bootstrap,
            WMS_RECEIPTS,
            [
                m.parcel_received(receipt, rma.rma_number),
                m.items_inspected(receipt, rma.rma_number),
            ],
            key=receipt.encode(),
        )
        final = eventually(
            lambda return_id=rma.aggregate_id: (
                (r := system.service.get_return(return_id)).state.status.value
                in {"closed", "refund_failed"}
                and r
            ),
            what="the sandbox to settle or decline the refund",
        )
        if final.state.status.value == "closed":
            [refund_id] = final.state.refunds
            return rma.aggregate_id, refund_id
    raise AssertionError("the sandbox declined four refunds in a row")


def settlements_of(system: System, refund_id: str) -> list[dict[str, Any]]:
    records = [orjson.loads(r.value) for r in read_topic(system.bootstrap, PSP_REFUNDS)]
    return [r for r in records if r["data"]["refund_id"] == refund_id]
