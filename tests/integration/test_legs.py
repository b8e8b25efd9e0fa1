"""Legs on the real PostgreSQL: MoveLeg through the service, found by serial or SKU,
repeats recorded once, and the stock, costs and queue read models rebuilt from the log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from adapters.driven.eventstore import create_service
from adapters.driven.readmodels.rebuild import rebuild_many
from domain.application import ReturnsService
from domain.commands import InspectItems, LegAction, MoveLeg, ReceiveParcel
from domain.errors import InvalidCommand, InvalidTransition, InvalidValue
from domain.events import InspectedItem, ReceivedItem
from domain.values import Condition, Disposition, ReasonCode
from projections import default_projections
from tests.integration.builders import authorized_return, ctx, delivered_order, fresh_database
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
SKU = "SHOE-RED-42"
SERIALS = ("SN-A", "SN-B", "SN-C")
SHELF = "WH-B"


@pytest.fixture(scope="module")
def own_database(database_url: str) -> str:
    return fresh_database(database_url, "legs")


@pytest.fixture(scope="module")
def legs_service(own_database: str) -> Iterator[ReturnsService]:
    service = create_service(own_database, pool_size=4)
    try:
        yield service
    finally:
        service.close()


def rows(database_url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def three_legs(service: ReturnsService, location: str) -> str:
    """Two items for repair and one for the supplier, inspected at ``location``."""
    order = delivered_order(service, quantity=3, serials=SERIALS)
    rma = authorized_return(service, order, quantity=3, reason=ReasonCode.DEFECTIVE)
    assert rma.rma_number
    receipt = f"REC-{uuid.uuid4().hex[:8]}"
    service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=receipt,
            warehouse_id=location,
            rma_number=rma.rma_number,
            tracking_number=None,
            items=tuple(ReceivedItem(sku=SKU, quantity=1, serial=s) for s in SERIALS),
        ),
    )
    kinds = (Disposition.REPAIR, Disposition.REPAIR, Disposition.RETURN_TO_VENDOR)
    service.run(
        ctx(),
        InspectItems(
            rma_number=rma.rma_number,
            receipt_id=receipt,
            items=tuple(
                InspectedItem(
                    sku=SKU,
                    quantity=1,
                    serial=serial,
                    condition=Condition.DEFECTIVE,
                    disposition=kind,
                    location_id=location,
                )
                for serial, kind in zip(SERIALS, kinds, strict=True)
            ),
        ),
    )
    return rma.rma_number


def move(
    service: ReturnsService, rma: str, action: LegAction, key: str | None = None, **more: Any
) -> str:
    outcome = service.run(ctx(key), MoveLeg(rma_number=rma, action=action, **more))
    assert outcome.leg_id is not None
    return outcome.leg_id


def test_legs_move_stock_and_costs_and_leave_the_queue_once_each(
    legs_service: ReturnsService, own_database: str
) -> None:
    service = legs_service
    location = f"WH-RET-{uuid.uuid4().hex[:4]}"
    rma = three_legs(service, location)
    return_id = service.get_return_by_rma(rma).id
    with pytest.raises(InvalidCommand, match=r"2 legs of return .* hold sku SHOE-RED-42"):
        move(service, rma, LegAction.SENT_TO_REPAIR, sku=SKU, repair_center="REPAIR-LYON")

    # SN-A: replaced by a new unit and put on the shelf; SN-B: unrepairable.
    assert move(service, rma, LegAction.SENT_TO_REPAIR, serial="SN-A", repair_center="RC") == "L1"
    move(service, rma, LegAction.REPLACED, serial="SN-A", replacement_serial="SN-A2")
    # A location no event can hold is refused as a value, not a failure of the batch.
    with pytest.raises(InvalidValue, match=r"invalid location id: 'WH 2'"):
        move(service, rma, LegAction.RESTOCKED, serial="SN-A", location_id="WH 2")
    move(service, rma, LegAction.RESTOCKED, serial="SN-A", location_id=SHELF)
    assert move(service, rma, LegAction.SENT_TO_REPAIR, sku=SKU, repair_center="RC") == "L2"
    move(service, rma, LegAction.UNREPAIRABLE, leg_id="L2")
    # SN-C: shipped, then sent back by the supplier; a resend under a new key is a repeat.
    move(service, rma, LegAction.SHIPPED_TO_VENDOR, serial="SN-C", reference="V-1")
    version = service.get_return(return_id).version
    move(service, rma, LegAction.SHIPPED_TO_VENDOR, serial="SN-C", reference="V-1", key="again")
    assert service.get_return(return_id).version == version
    with pytest.raises(InvalidTransition, match=r"already took the step shipped"):
        move(service, rma, LegAction.SHIPPED_TO_VENDOR, serial="SN-C", reference="V-2")
    move(service, rma, LegAction.RESTOCKED, serial="SN-C", location_id=SHELF)

    assert [leg.status for leg in service.get_return(return_id).state.legs.values()] == [
        "restocked",
        "scrapped",
        "returned_by_vendor",
    ]
    rebuild_many(default_projections(), own_database, "_legs1")
    inspected = rows(
        own_database,
        "SELECT * FROM rm_stock_levels WHERE sku = %s AND location_id = %s",
        SKU,
        location,
    )[0]
    assert (
        inspected["in_repair"],
        inspected["returned_to_vendor"],
        inspected["scrapped"],
    ) == (0, 0, 1)
    shelf = rows(
        own_database,
        "SELECT * FROM rm_stock_levels WHERE sku = %s AND location_id = %s",
        SKU,
        SHELF,
    )[0]
    assert shelf["available"] == 2
    kinds = {
        r["kind"]
        for r in rows(
            own_database, "SELECT kind FROM rm_stock_movements WHERE location_id = %s", SHELF
        )
    }
    assert kinds == {"replaced", "vendor_returned"}
    costs = rows(own_database, "SELECT * FROM rm_return_costs WHERE supplier = 'Acme'")[0]
    assert (costs["open_repair_legs"], costs["open_vendor_legs"]) == (0, 0)
    assert costs["supplier_credits"] == Decimal("0.00")
    legs = rows(own_database, "SELECT * FROM rm_legs ORDER BY leg_id")
    assert [(r["leg_id"], r["status"], r["open"]) for r in legs] == [
        ("L1", "restocked", False),
        ("L2", "scrapped", False),
        ("L3", "returned_by_vendor", False),
    ]
    assert (legs[0]["replacement_serial"], legs[0]["restocked_at"]) == ("SN-A2", SHELF)


def test_a_supplier_credit_shows_in_the_costs_per_supplier(
    legs_service: ReturnsService, own_database: str
) -> None:
    service = legs_service
    rma = three_legs(service, "WH-RET")
    move(service, rma, LegAction.SHIPPED_TO_VENDOR, serial="SN-C", reference="V-9")
    move(service, rma, LegAction.CREDITED, serial="SN-C", amount=eur("18.50"))
    move(service, rma, LegAction.CREDITED, serial="SN-C", amount=eur("18.50"), key="twice")
    rebuild_many(default_projections(), own_database, "_legs2")
    credited = rows(
        own_database,
        "SELECT sum(supplier_credits) AS credits FROM rm_return_costs WHERE supplier = 'Acme'",
    )[0]
    assert credited["credits"] == Decimal("18.50")
    stock = rows(
        own_database,
        "SELECT * FROM rm_stock_levels WHERE sku = %s AND location_id = 'WH-RET'",
        SKU,
    )[0]
    assert (stock["in_repair"], stock["returned_to_vendor"]) == (2, 0)
    open_legs = rows(
        own_database,
        "SELECT leg_id, kind FROM rm_legs WHERE open ORDER BY opened_at, leg_id",
    )
    assert open_legs == [{"leg_id": "L1", "kind": "repair"}, {"leg_id": "L2", "kind": "repair"}]
