"""A serial's life: one timeline entry per fact about it, from orders and returns alike,
with where the item is after each."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.core import InMemoryReadModel
from projections.serials import SerialLives
from tests.unit.builders import assert_folds_like_reduce
from tests.unit.serial_stories import serial_life
from tests.unit.stock_stories import arrivals


def timeline(model: InMemoryReadModel) -> list[tuple[Any, ...]]:
    rows = sorted(model.rows("rm_serial_events"), key=lambda r: (r["at"], r["position"], r["id"]))
    return [(r["kind"], r["state"], r["customer_id"], r["location_id"]) for r in rows]


def test_a_serial_sold_returned_repaired_restocked_and_sold_again() -> None:
    model = InMemoryReadModel(SerialLives())
    model.apply(serial_life("SN-1"))
    assert timeline(model) == [
        ("shipped", "with_customer", "C-1", "WH-1"),
        ("return_requested", None, "C-1", None),
        ("rma_authorized", None, "C-1", None),
        ("received", "received", None, "WH-RET"),
        ("inspected", "in_repair", None, "WH-RET"),
        ("repair_sent", "in_repair", None, "WH-RET"),
        ("repair_completed", None, None, "WH-RET"),
        ("restocked", "in_stock", None, "WH-B"),
        ("sold", "with_customer", "C-3", None),
        ("shipped", "with_customer", "C-3", "WH-B"),
    ]
    rows = {r["kind"]: r for r in model.rows("rm_serial_events")}
    assert rows["inspected"]["summary"] == {
        "receipt_id": "R-SN-1",
        "condition": "defective",
        "disposition": "repair",
    }
    assert rows["repair_sent"]["summary"] == {"leg_id": "L1", "repair_center": "FixIt"}
    assert rows["restocked"]["rma_number"] == "RMA-SN-1"
    assert rows["shipped"]["order_number"] in {"W1-SN-1", "W3-SN-1"}


def test_a_unit_the_repair_centre_replaced_leaves_and_its_replacement_is_restocked_and_sold() -> (
    None
):
    model = InMemoryReadModel(SerialLives())
    model.apply(serial_life("SN-R", ending="replaced"))
    rows = sorted(model.rows("rm_serial_events"), key=lambda r: (r["at"], r["position"], r["id"]))
    old = [(r["kind"], r["state"]) for r in rows if r["serial"] == "SN-R"]
    new = [(r["kind"], r["state"], r["location_id"]) for r in rows if r["serial"] == "SN-R-NEW"]
    assert old[-2:] == [("repair_sent", "in_repair"), ("replaced", "replaced")]
    assert new == [
        ("replacement_received", "in_repair", "WH-RET"),
        ("restocked", "in_stock", "WH-B"),
        ("sold", "with_customer", None),
        ("shipped", "with_customer", "WH-B"),
    ]
    received = next(r for r in rows if r["kind"] == "replacement_received")
    assert received["summary"]["replaced_serial"] == "SN-R"
    assert received["rma_number"] == "RMA-SN-R"


def test_an_item_the_vendor_sent_back_is_in_stock_where_it_was_put() -> None:
    model = InMemoryReadModel(SerialLives())
    model.apply(serial_life("SN-V", ending="vendor_sent_back"))
    assert timeline(model)[4:7] == [
        ("inspected", "at_vendor", None, "WH-RET"),
        ("vendor_shipped", "at_vendor", None, "WH-RET"),
        ("vendor_returned", "in_stock", None, "WH-B"),
    ]


def test_a_store_sale_hands_the_serial_over_at_its_store() -> None:
    model = InMemoryReadModel(SerialLives())
    model.apply(serial_life("SN-2", sold_while_in_repair=True))
    sale = [r for r in model.rows("rm_serial_events") if r["order_number"] == "S2-SN-2"]
    assert [(r["kind"], r["state"], r["customer_id"], r["location_id"]) for r in sale] == [
        ("sold", "with_customer", "C-2", "ST-1")
    ]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5))
def test_the_timeline_does_not_depend_on_arrival_order_or_redelivery(seed: int, batch: int) -> None:
    events = serial_life("SN-3", sold_while_in_repair=True)
    reference = InMemoryReadModel(SerialLives())
    reference.apply(events)
    model = InMemoryReadModel(SerialLives())
    for delivery in arrivals(events, seed, batch):
        model.apply(delivery)
    for delivery in arrivals(events, seed + 1, 2):
        assert len(model.apply(delivery)) == 0  # a redelivery appends nothing
    assert model.tables == reference.tables


def test_folding_equals_reducing() -> None:
    assert_folds_like_reduce(SerialLives(), serial_life("SN-4", sold_while_in_repair=True))
