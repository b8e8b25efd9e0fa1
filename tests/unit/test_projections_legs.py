"""Legs on the read side: stock moving between buckets as a leg ends, supplier credits and
legs in the costs, and the queue of open legs."""

from __future__ import annotations

from typing import Any

from domain.events import (
    InspectedItem,
    ItemsInspected,
    OrderPlaced,
    RepairCompleted,
    RepairedItemRestocked,
    RepairSent,
    ReturnAuthorized,
    SupplierCreditReceived,
    VendorItemReturned,
    VendorReturnShipped,
)
from projections import Legs, ReturnReasons, StockLevels, default_projections
from projections.core import InMemoryReadModel, key_of
from tests.unit.builders import (
    Story,
    assert_folds_like_reduce,
    day,
    decision,
    eur,
    return_line,
    return_requested,
    uid,
)
from tests.unit.builders import story_line as line
from tests.unit.builders import story_payment as payment

ORDER, RMA = uid("order"), uid("rma")


def level(model: InMemoryReadModel, sku: str, location: str) -> dict[str, Any]:
    return model.tables["rm_stock_levels"].get(key_of({"sku": sku, "location_id": location}), {})


def placed(story: Story) -> None:
    story.add(
        OrderPlaced,
        ORDER,
        order_number="WEB-1",
        customer_id="C-1",
        channel="web",
        currency="EUR",
        lines=(line(1, "SKU-1", 3),),
        payments=(payment("150.00"),),
        shipping=eur("0.00"),
    )


def authorized(story: Story, quantity: int) -> None:
    return_requested(story, RMA, ORDER, (return_line(1, "SKU-1", quantity),))
    story.add(
        ReturnAuthorized,
        RMA,
        rma_number="RMA-7K2Q-M4XD",
        destination_warehouse="WH-RET",
        label_reference="LBL",
        instructions="pack it",
        expected_refund=eur("100.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        decisions=(decision(1),),
    )


def item(disposition: str) -> InspectedItem:
    return InspectedItem.model_validate(
        {
            "sku": "SKU-1",
            "quantity": 1,
            "condition": "defective",
            "disposition": disposition,
            "line_no": 1,
            "location_id": "WH-RET",
        }
    )


def with_legs(*dispositions: str) -> Story:
    story = Story()
    placed(story)
    authorized(story, quantity=len(dispositions))
    story.add(
        ItemsInspected,
        RMA,
        at=day(16),
        receipt_id=None,
        items=tuple(item(d) for d in dispositions),
        refund_due=eur("0.00"),
    )
    return story


def leg(model: InMemoryReadModel, leg_id: str) -> dict[str, Any]:
    return model.tables["rm_legs"].get(key_of({"return_id": str(RMA), "leg_id": leg_id}), {})


def test_a_replaced_unit_goes_from_repair_to_available_where_it_was_put() -> None:
    story = with_legs("repair")
    story.add(RepairSent, RMA, leg_id="L1", repair_center="REPAIR-LYON", reference="JOB-1")
    story.add(RepairCompleted, RMA, leg_id="L1", outcome="replaced", replacement_serial="SN-N")
    story.add(RepairedItemRestocked, RMA, leg_id="L1", location_id="WH-B")
    model = InMemoryReadModel(StockLevels())
    model.apply(story.events)
    assert level(model, "SKU-1", "WH-RET")["in_repair"] == 0
    assert level(model, "SKU-1", "WH-B")["available"] == 1
    kinds = {m["kind"] for m in model.tables["rm_stock_movements"].values()}
    assert "replaced" in kinds


def test_a_vendor_leg_stays_at_the_vendor_until_credited_or_sent_back() -> None:
    story = with_legs("return_to_vendor", "return_to_vendor")
    story.add(VendorReturnShipped, RMA, leg_id="L1", supplier="ACME", vendor_rma="V-1")
    story.add(VendorReturnShipped, RMA, leg_id="L2", supplier="ACME", vendor_rma="V-2")
    model = InMemoryReadModel(StockLevels())
    model.apply(story.events)
    assert level(model, "SKU-1", "WH-RET")["returned_to_vendor"] == 2
    story.add(SupplierCreditReceived, RMA, leg_id="L1", amount=eur("30.00"))
    story.add(VendorItemReturned, RMA, leg_id="L2", location_id="WH-B")
    model.apply(story.events[-2:])
    assert level(model, "SKU-1", "WH-RET")["returned_to_vendor"] == 0
    assert level(model, "SKU-1", "WH-B")["available"] == 1


def test_a_credit_shows_per_supplier_and_an_item_sent_back_closes_its_leg_with_none() -> None:
    story = with_legs("return_to_vendor", "return_to_vendor")
    story.add(VendorReturnShipped, RMA, leg_id="L1", supplier="ACME", vendor_rma="V-1")
    story.add(VendorReturnShipped, RMA, leg_id="L2", supplier="ACME", vendor_rma="V-2")
    story.add(SupplierCreditReceived, RMA, leg_id="L1", amount=eur("30.00"))
    story.add(VendorItemReturned, RMA, leg_id="L2", location_id="WH-B")
    model = InMemoryReadModel(ReturnReasons())
    model.apply(story.events)
    costs = model.tables["rm_return_costs"][
        key_of({"supplier": "Acme", "sku": "SKU-1", "currency": "EUR"})
    ]
    assert (costs["open_vendor_legs"], str(costs["supplier_credits"])) == (0, "30.00")


def test_the_queue_holds_each_leg_with_its_item_partner_reference_and_state() -> None:
    story = with_legs("repair", "return_to_vendor", "restock")
    story.add(RepairSent, RMA, at=day(17), leg_id="L1", repair_center="REPAIR-LYON", reference="J1")
    model = InMemoryReadModel(Legs())
    model.apply(story.events)
    repair = leg(model, "L1")
    assert {k: repair[k] for k in ("rma_number", "kind", "status", "open", "sku", "supplier")} == {
        "rma_number": "RMA-7K2Q-M4XD",
        "kind": "repair",
        "status": "at_repair",
        "open": True,
        "sku": "SKU-1",
        "supplier": "Acme",
    }
    assert (repair["partner"], repair["reference"], repair["location_id"]) == (
        "REPAIR-LYON",
        "J1",
        "WH-RET",
    )
    assert (repair["opened_at"], repair["status_since"]) == (day(16), day(17))
    assert leg(model, "L2")["status"] == "awaiting_dispatch"
    assert leg(model, "L3") == {}  # restocked at inspection: no leg


def test_a_leg_leaves_the_open_queue_when_it_ends() -> None:
    story = with_legs("repair", "return_to_vendor")
    story.add(RepairSent, RMA, leg_id="L1", repair_center="REPAIR-LYON")
    story.add(RepairCompleted, RMA, at=day(30), leg_id="L1", outcome="beyond_repair")
    story.add(VendorReturnShipped, RMA, leg_id="L2", supplier="ACME", vendor_rma="V-1")
    story.add(SupplierCreditReceived, RMA, leg_id="L2", amount=eur("30.00"), reference="CN-1")
    model = InMemoryReadModel(Legs())
    model.apply(story.events)
    scrapped, credited = leg(model, "L1"), leg(model, "L2")
    assert (scrapped["status"], scrapped["open"], scrapped["closed_at"]) == (
        "scrapped",
        False,
        day(30),
    )
    assert (
        credited["status"],
        credited["open"],
        str(credited["credit"]),
        credited["credit_reference"],
    ) == ("credited", False, "30.00", "CN-1")
    # Replayed, the events change nothing more.
    before = dict(model.tables["rm_legs"])
    model.apply(story.events)
    assert model.tables["rm_legs"] == before


def test_every_projection_folds_leg_events_like_it_reduces_them() -> None:
    story = with_legs("repair", "return_to_vendor")
    story.add(RepairSent, RMA, leg_id="L1", repair_center="REPAIR-LYON")
    story.add(RepairCompleted, RMA, leg_id="L1", outcome="repaired")
    story.add(RepairedItemRestocked, RMA, leg_id="L1", location_id="WH-B")
    story.add(VendorReturnShipped, RMA, leg_id="L2", supplier="ACME", vendor_rma="V-1")
    story.add(VendorItemReturned, RMA, leg_id="L2", location_id="WH-B")
    for projection in default_projections():
        assert_folds_like_reduce(projection, story.events)
