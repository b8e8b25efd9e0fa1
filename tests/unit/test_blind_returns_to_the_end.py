"""Blind returns that run to their end: placed automatically, inspected before their match,
linked to the return another system reported, or closed as unidentified.

Given a history, when a command, then events (or an error). The order is ``shop_order``:
line 1 two SKU-1 at 40.00 with serials SN-1 and SN-2, line 2 one SKU-2 at 10.00.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from adapters.driven.relay import cloud_event_for
from domain.errors import InvalidCommand, InvalidTransition
from domain.events import (
    BlindInspectionAssessed,
    BlindReturnClosedUnidentified,
    BlindReturnLinked,
    ItemsInspected,
)
from domain.handlers.blind_matching import Candidate, automatic_match, fit, suggestions
from domain.policy import PolicyBook, ReturnPolicy
from domain.returns import RequestedLine, Return, ReturnStatus
from domain.serialization import event_to_json
from domain.values import Disposition, ReasonCode
from projections.core import Event, InMemoryReadModel, key_of
from projections.reasons import ReturnReasons
from projections.rma_status import RmaStatus
from projections.schema import RETURN_COSTS
from projections.stock import StockLevels
from tests.unit.builders import (
    BOOK,
    CAUSE,
    WAREHOUSE,
    OrderHistory,
    assert_folds_like_reduce,
    blind_parcel,
    day,
    decide,
    eur,
    given,
    inspect,
    inspected,
    inspected_return,
    line,
    match,
    receive,
    received,
    requested_return,
    shop_order,
    types,
    wants,
)


def inspected_blind(*items: Any) -> Return:
    """Detected on day 12, inspected on day 13; its whole history pending."""
    rma = blind_parcel("RCPT-B1", *(items or (received("SKU-1", serial="SN-1"),)))
    rma.inspect_blind(items=(inspected("SKU-1", serial="SN-1"),), at=day(13), cause=CAUSE)
    return rma


class Log:
    """Events as projectors receive them: collected from aggregates, numbered like the store."""

    def __init__(self) -> None:
        self.position = 0

    def take(self, *aggregates: Return) -> list[Event]:
        out = []
        for aggregate in aggregates:
            for e in aggregate.collect_events():
                self.position += 1
                row = (
                    self.position,
                    e.originator_id,
                    e.originator_version,
                    e.type_name,
                    orjson.dumps(event_to_json(e)),
                )
                out.append(Event.from_cloud_event(cloud_event_for(row)))
        return out


def projected(*aggregates: Return) -> list[Event]:
    return Log().take(*aggregates)


# ---------------------------------------------------------------- fitting a parcel to an order
def test_a_sold_serial_fits_the_line_it_was_sold_on() -> None:
    found = fit(shop_order(), [received("SKU-1", serial="SN-2")])
    assert found.complete
    assert found.lines == (RequestedLine(1, 1, ReasonCode.OTHER, serial="SN-2"),)


def test_items_without_serials_fit_lines_of_their_sku_within_what_is_returnable() -> None:
    order = shop_order()
    assert fit(order, [received("SKU-1", 2), received("SKU-2")]).complete
    too_many = fit(order, [received("SKU-1", 3)])
    assert not too_many.complete
    assert not fit(order, [received("SKU-9")]).complete


def test_a_cancelled_order_fits_nothing() -> None:
    cancelled = OrderHistory().placed(line(1)).cancelled().order()
    assert fit(cancelled, [received("SKU-1")]).lines == ()


def test_one_whole_fit_matches_itself_and_two_wait_for_a_person() -> None:
    a, b = shop_order(), OrderHistory("WEB-2002").placed(line(1)).fulfilled().order()
    items = [received("SKU-1")]
    by_serial = Candidate(a, "serial", fit(a, items))
    by_hint = Candidate(b, "order_hint", fit(b, items))
    by_sku = Candidate(b, "sku", fit(b, items))
    assert automatic_match([by_serial]) is by_serial
    assert automatic_match([by_serial, by_sku]) is by_serial  # a mere guess never competes
    assert automatic_match([by_serial, by_hint]) is None  # two orders fit: ambiguous
    assert [c.by for c in suggestions([by_sku, by_hint, by_serial])] == [
        "serial",
        "order_hint",
    ]  # the undelivered SKU guess is no suggestion


# ---------------------------------------------------------------- inspect before the match
def test_a_blind_parcel_inspected_before_its_match_waits_with_its_goods_placed() -> None:
    rma = given(blind_parcel("RCPT-B1", received("SKU-1", serial="SN-1")))
    rma.inspect_blind(items=(inspected("SKU-1", serial="SN-1"),), at=day(13), cause=CAUSE)
    assert types(rma) == (ItemsInspected,)
    event = rma.pending_events[-1]
    assert event.receipt_id == "RCPT-B1"
    assert event.refund_due == eur("0.00")
    assert event.items[0].line_no is None
    assert rma.state.status is ReturnStatus.BLIND_UNMATCHED


def test_a_blind_parcel_is_inspected_once() -> None:
    rma = given(inspected_blind())
    with pytest.raises(InvalidTransition, match="already inspected"):
        rma.inspect_blind(items=(inspected("SKU-1"),), at=day(14), cause=CAUSE)


def test_the_match_prices_the_recorded_inspection_less_the_blind_fee() -> None:
    rma = given(inspected_blind())
    match(rma, shop_order(), wants(1, serial="SN-1"))
    assert rma.assess_blind_inspection(BOOK, day(13), CAUSE)
    assessed = rma.pending_events[-1]
    assert isinstance(assessed, BlindInspectionAssessed)
    assert assessed.items[0].line_no == 1
    assert assessed.refund_due == eur("36.00")  # 40.00 less the 10% blind restocking fee
    assert rma.state.status is ReturnStatus.INSPECTED
    assert rma.items_due_unpaid() == eur("36.00")


def test_a_match_without_an_inspection_prices_nothing() -> None:
    rma = given(blind_parcel("RCPT-B1", received("SKU-1", serial="SN-1")))
    match(rma, shop_order(), wants(1, serial="SN-1"))
    assert not rma.assess_blind_inspection(BOOK, day(13), CAUSE)
    assert rma.state.status is ReturnStatus.RECEIVED


# ---------------------------------------------------------------- dismiss and link
def test_a_linked_blind_parcel_ends_withdrawing_what_its_inspection_placed() -> None:
    blind = given(inspected_blind())
    other = inspected_return(shop_order(), inspected("SKU-1", serial="SN-1"))
    blind.link_to(other, "the store took it back", day(14), CAUSE)
    linked = blind.pending_events[-1]
    assert isinstance(linked, BlindReturnLinked)
    assert (linked.linked_return_id, linked.linked_rma_number) == (other.id, other.state.rma_number)
    assert [i.sku for i in linked.withdrawn] == ["SKU-1"]
    assert (blind.state.status, blind.state.closed_outcome) == (ReturnStatus.CLOSED, "linked")
    assert blind.paid_out().is_zero


def test_a_link_to_a_return_without_the_parcels_goods_is_refused() -> None:
    blind = given(blind_parcel("RCPT-B1", received("SKU-9")))
    other = inspected_return(shop_order())
    with pytest.raises(InvalidCommand, match="holds no SKU-9"):
        blind.link_to(other, "", day(14), CAUSE)


def test_inspected_twice_and_linked_the_goods_count_once_in_stock() -> None:
    order, log, model = shop_order(), Log(), InMemoryReadModel(StockLevels())
    blind = blind_parcel("RCPT-B1", received("SKU-1", serial="SN-1"))
    blind.inspect_blind(items=(inspected("SKU-1", serial="SN-1"),), at=day(13), cause=CAUSE)
    other = requested_return(order, wants(1, serial="SN-1"))
    decide(other, order)
    receive(other)
    inspect(other, inspected("SKU-1", serial="SN-1"))
    model.apply(log.take(blind, other))
    key = key_of({"sku": "SKU-1", "location_id": WAREHOUSE})
    assert model.tables["rm_stock_levels"][key]["available"] == 2  # two reports, one item
    blind.link_to(other, "same parcel", day(17), CAUSE)
    model.apply(log.take(blind))
    assert model.tables["rm_stock_levels"][key]["available"] == 1


# ---------------------------------------------------------------- close unidentified
def test_a_blind_parcel_waits_the_policys_time_then_closes_as_unidentified() -> None:
    book = PolicyBook(default=ReturnPolicy(blind_unidentified_days=30))
    rma = given(blind_parcel("RCPT-B1", received("SKU-7", 2)))
    assert not rma.close_unidentified(book, day(12 + 29), CAUSE)
    assert rma.close_unidentified(book, day(12 + 30), CAUSE)
    closed = rma.pending_events[-1]
    assert isinstance(closed, BlindReturnClosedUnidentified)
    assert (closed.waited_days, closed.disposition, closed.location_id) == (
        30,
        Disposition.QUARANTINE,
        WAREHOUSE,
    )
    assert [(i.sku, i.quantity) for i in closed.placed] == [("SKU-7", 2)]
    assert (rma.state.status, rma.state.closed_outcome) == (ReturnStatus.CLOSED, "unidentified")
    assert not rma.close_unidentified(book, day(80), CAUSE)  # once


def test_an_inspected_unidentified_parcel_keeps_its_inspections_dispositions() -> None:
    rma = given(inspected_blind())
    assert rma.close_unidentified(BOOK, day(12 + 90), CAUSE)
    closed = rma.pending_events[-1]
    assert (closed.disposition, closed.placed) == (None, ())


def test_stock_and_status_follow_an_unidentified_parcel() -> None:
    book = PolicyBook(default=ReturnPolicy(blind_unidentified_days=30))
    rma = blind_parcel("RCPT-B1", received("SKU-7", 2))
    rma.close_unidentified(book, day(50), CAUSE)
    events = projected(rma)
    stock = InMemoryReadModel(StockLevels())
    stock.apply(events)
    row = stock.tables["rm_stock_levels"][key_of({"sku": "SKU-7", "location_id": WAREHOUSE})]
    assert row["quarantined"] == 2
    status = InMemoryReadModel(RmaStatus())
    status.apply(events)
    (row,) = status.tables["rm_rma_status"].values()
    assert (row["status"], row["closed_outcome"]) == ("closed", "unidentified")


def test_the_status_read_model_shows_the_assessed_refund_due() -> None:
    rma = inspected_blind()
    match(rma, shop_order(), wants(1, serial="SN-1"))
    rma.assess_blind_inspection(BOOK, day(13), CAUSE)
    status = InMemoryReadModel(RmaStatus())
    status.apply(projected(rma))
    (row,) = status.tables["rm_rma_status"].values()
    assert (row["status"], row["refund_due"]) == ("inspected", Decimal("36.00"))


def test_a_replay_of_the_blind_journeys_equals_the_live_read_models() -> None:
    order, log = shop_order(), Log()
    blind = blind_parcel("RCPT-B1", received("SKU-1", serial="SN-1"))
    blind.inspect_blind(items=(inspected("SKU-1", serial="SN-1"),), at=day(13), cause=CAUSE)
    other = requested_return(order, wants(1, serial="SN-1"))
    decide(other, order)
    receive(other)
    inspect(other, inspected("SKU-1", serial="SN-1"))
    blind.link_to(other, "same parcel", day(17), CAUSE)
    lost = blind_parcel("RCPT-B2", received("SKU-7", 2))
    lost.close_unidentified(BOOK, day(120), CAUSE)
    late = blind_parcel("RCPT-B3", received("SKU-1", serial="SN-2"))
    late.inspect_blind(items=(inspected("SKU-1", serial="SN-2"),), at=day(13), cause=CAUSE)
    match(late, order, wants(1, serial="SN-2"))
    late.assess_blind_inspection(BOOK, day(13), CAUSE)
    events = log.take(blind, other, lost, late)
    for projection in (StockLevels(), RmaStatus(), ReturnReasons()):
        assert_folds_like_reduce(projection, events)
    once, twice = InMemoryReadModel(StockLevels()), InMemoryReadModel(StockLevels())
    once.apply(events)
    twice.apply(events)
    twice.apply(events)  # every event delivered again
    assert once.tables == twice.tables


def test_a_vendor_leg_opened_before_the_match_learns_its_supplier_at_the_match() -> None:
    rma = blind_parcel("RCPT-B1", received("SKU-1", serial="SN-1"))
    vendor = inspected("SKU-1", serial="SN-1", disposition=Disposition.RETURN_TO_VENDOR)
    rma.inspect_blind(items=(vendor,), at=day(13), cause=CAUSE)
    assert rma.state.legs["L1"].supplier == "unknown"
    match(rma, shop_order(), wants(1, serial="SN-1"))
    rma.assess_blind_inspection(BOOK, day(13), CAUSE)
    assert rma.state.legs["L1"].supplier == "ACME"


def costs(model: InMemoryReadModel, supplier: str, sku: str = "SKU-1") -> dict[str, Any]:
    row = model.tables[RETURN_COSTS.name].get(
        key_of({"supplier": supplier, "sku": sku, "currency": "EUR"}), {}
    )
    return {k: row.get(k) for k in ("scrapped_items", "open_repair_legs")}


def test_costs_booked_before_the_match_move_to_the_supplier_and_a_link_withdraws_them() -> None:
    order, log = shop_order(), Log()
    scrap = inspected("SKU-1", quantity=1, disposition=Disposition.SCRAP)
    repair = inspected("SKU-1", quantity=1, disposition=Disposition.REPAIR)
    matched = blind_parcel("RCPT-B1", received("SKU-1", 2))
    matched.inspect_blind(items=(scrap, repair), at=day(13), cause=CAUSE)
    linked = blind_parcel("RCPT-B2", received("SKU-1", 2))
    linked.inspect_blind(items=(scrap, repair), at=day(13), cause=CAUSE)
    model = InMemoryReadModel(ReturnReasons())
    model.apply(log.take(matched, linked))
    assert costs(model, "unknown") == {"scrapped_items": 2, "open_repair_legs": 2}
    match(matched, order, wants(1, quantity=2))
    matched.assess_blind_inspection(BOOK, day(13), CAUSE)
    other = requested_return(order, wants(1))
    decide(other, order)
    linked.link_to(other, "same goods", day(14), CAUSE)
    model.apply(log.take(matched, linked))
    assert costs(model, "unknown") == {"scrapped_items": 0, "open_repair_legs": 0}
    assert costs(model, "ACME") == {"scrapped_items": 1, "open_repair_legs": 1}
