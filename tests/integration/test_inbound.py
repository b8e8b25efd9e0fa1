"""Inbound messages become commands exactly once, bad ones become rejections."""

from __future__ import annotations

import uuid

import orjson
import pytest

from domain.application import ReturnsService
from domain.commands import RequestReturn
from domain.returns import RequestedLine
from domain.values import ReasonCode
from streams.inbound import process_batch
from tests.integration import builders as m
from tests.integration.builders import ctx

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def delivered(service: ReturnsService, order_id: str) -> None:
    results = process_batch(
        service,
        "oms.orders.v1",
        [
            m.order_placed(order_id),
            m.order_fulfilled(order_id),
            m.order_delivered(order_id),
        ],
    )
    assert results == [None, None, None]


def test_an_order_placed_shipped_and_delivered_in_one_batch_is_returnable(
    service: ReturnsService,
) -> None:
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    delivered(service, order_id)
    view = service.order_view(order_id)
    assert view["lines"][0]["returnable_quantity"] == 2
    assert view["delivered_at"] is not None


def test_a_receipt_published_five_times_has_one_effect(service: ReturnsService) -> None:
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    delivered(service, order_id)
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=order_id,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
        ),
    )
    assert rma.rma_number
    receipt = m.parcel_received("REC-1-" + order_id, rma.rma_number, event_id="wms-evt-" + order_id)
    results = process_batch(service, "wms.receipts.v1", [receipt] * 3)
    results += process_batch(service, "wms.receipts.v1", [receipt] * 2)
    assert results == [None] * 5
    assert service.get_return(rma.aggregate_id).version == 3  # requested, authorized, received


def test_the_warehouse_and_payment_provider_close_a_return(service: ReturnsService) -> None:
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    delivered(service, order_id)
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=order_id,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
        ),
    )
    assert rma.rma_number
    receipt = "REC-" + order_id
    assert process_batch(
        service,
        "wms.receipts.v1",
        [
            m.parcel_received(receipt, rma.rma_number),
            m.items_inspected(receipt, rma.rma_number),
        ],
    ) == [None, None]
    state = service.get_return(rma.aggregate_id).state
    (refund_id,) = state.refunds
    assert process_batch(service, "psp.refunds.v1", [m.refund_settled(refund_id, "30.00")]) == [
        None
    ]
    assert service.get_return(rma.aggregate_id).state.status.value == "closed"


def test_malformed_and_refused_messages_are_rejected_with_reasons_and_the_rest_processed(
    service: ReturnsService,
) -> None:
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    values = [
        b"{not json",
        orjson.dumps(
            {"specversion": "1.0", "id": "x", "source": "s", "type": "order.exploded", "data": {}}
        ),
        m.cloud_event("order.placed", {"order_id": order_id}, source="commerce/web"),
        m.order_placed(order_id),
        m.cloud_event("order.cancelled", {"order_id": "NO-SUCH-ORDER"}, source="commerce/web"),
        b"x" * 300_000,
    ]
    results = process_batch(service, "oms.orders.v1", values)
    codes = [r.code if r else None for r in results]
    assert codes == ["invalid_json", "unknown_type", "invalid_data", None, "not_found", "oversized"]
    assert results[2] is not None and "lines" in results[2].reason
    assert service.order_view(order_id)["order_number"] == order_id


def test_an_in_store_return_of_a_web_order_is_refunded_at_once(service: ReturnsService) -> None:
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    delivered(service, order_id)
    assert process_batch(service, "pos.returns.v1", [m.store_return(order_id, "SR-1")]) == [None]
    view = service.order_view(order_id)
    assert view["lines"][0]["returnable_quantity"] == 1
    assert view["refunded_total"]["amount"] == "30.00"
