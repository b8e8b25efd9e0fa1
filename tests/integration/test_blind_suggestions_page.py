"""A page of waiting blind parcels gets the suggestions each shows on its own page, read
in the same few statements whatever the page's size."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.driven.eventstore import create_service
from domain.application import Ctx, ReturnsService
from domain.commands import CancelReturn, ReceiveParcel
from domain.events import ReceivedItem
from domain.returns import ReturnStatus
from tests.integration.builders import authorized_return, ctx, delivered_order, fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SKU = "SHOE-RED-42"  # what delivered_order sells


@pytest.fixture
def own_service(database_url: str) -> Iterator[ReturnsService]:
    service = create_service(fresh_database(database_url, "suggest"), pool_size=2)
    yield service
    service.close()


def parcel(
    service: ReturnsService,
    *items: ReceivedItem,
    order_number: str | None = None,
    rma_number: str | None = None,
) -> uuid.UUID:
    outcome = service.run(
        Ctx(ctx().cause),
        ReceiveParcel(
            receipt_id=f"BL-{uuid.uuid4().hex[:10]}",
            warehouse_id="WH-1",
            rma_number=rma_number,
            tracking_number="TRK",
            items=items or (ReceivedItem(sku=SKU, quantity=1),),
            order_number=order_number,
        ),
    )
    assert outcome.status == ReturnStatus.BLIND_UNMATCHED.value
    return outcome.aggregate_id


def statements(service: ReturnsService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The lookup statements the event store runs from now on (spied, still run)."""
    seen: list[str] = []
    recorder: Any = service.recorder
    select = recorder._select

    def counted(statement: str, params: Any) -> Any:
        seen.append(statement)
        return select(statement, params)

    monkeypatch.setattr(recorder, "_select", counted)
    return seen


def test_a_page_of_parcels_gets_each_ones_suggestions_in_three_statements(
    own_service: ReturnsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = own_service
    serial = f"SN-{uuid.uuid4().hex[:8]}"
    by_serial = delivered_order(service, serials=(serial, f"{serial}-B"), customer_id="cust-s")
    same_customer = delivered_order(service, customer_id="cust-s")
    named = delivered_order(service)
    returned = delivered_order(service)
    claimed = authorized_return(service, returned)
    service.run(ctx(), CancelReturn(return_id=claimed.aggregate_id, reason="kept it"))
    parcels = [
        # The serial's order, the hinted one, the serial customer's other order, the SKU's.
        parcel(service, ReceivedItem(sku=SKU, quantity=1, serial=serial), order_number=named),
        parcel(service),  # nothing to go on: the SKU's recent orders
        parcel(service, ReceivedItem(sku="NOBODY-SOLD", quantity=1), order_number="NO-SUCH"),
        # Half of it fits the hinted order: suggested, not matched; the claim is no RMA.
        parcel(
            service,
            ReceivedItem(sku=SKU, quantity=1),
            ReceivedItem(sku="NOBODY-SOLD", quantity=1),
            rma_number="not-an-rma",
            order_number=named,
        ),
        # It claims a cancelled RMA and half of it fits that RMA's order.
        parcel(
            service,
            ReceivedItem(sku=SKU, quantity=1),
            ReceivedItem(sku="NOBODY-SOLD", quantity=1),
            rma_number=claimed.rma_number,
        ),
    ]
    one_by_one = {p: service.blind_suggestions(service.get_return(p), wide=True) for p in parcels}
    first = one_by_one[parcels[0]]
    assert {(s["order_number"], s["by"]) for s in first} >= {
        (by_serial, "serial"),
        (named, "order_hint"),
        (same_customer, "customer"),
    }
    assert one_by_one[parcels[2]] == []
    assert (returned, "claimed_rma", False) in [
        (s["order_number"], s["by"], s["whole"]) for s in one_by_one[parcels[4]]
    ]
    assert (named, "order_hint", False) in [
        (s["order_number"], s["by"], s["whole"]) for s in one_by_one[parcels[3]]
    ]

    seen = statements(service, monkeypatch)
    assert service.blind_suggestions_of_page(parcels) == one_by_one
    assert len(seen) == 3
    seen.clear()
    assert service.blind_suggestions_of_page(parcels[:1]) == {parcels[0]: first}
    assert len(seen) == 3
