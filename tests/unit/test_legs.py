"""Repair and return-to-vendor legs as the warehouse drives them: found by id, serial or
SKU, repeats that change nothing, the outcomes that end a leg, and refusals that say why.

Given an inspected return with legs, when a leg step, then events or an error.
"""

from __future__ import annotations

import pytest

from domain.commands import LegAction
from domain.errors import InvalidCommand, InvalidTransition
from domain.events import RepairCompleted, RepairSent, VendorItemReturned
from domain.handlers.legs import TAKES
from domain.returns import Return
from domain.values import Condition, Disposition, ReasonCode
from tests.unit.builders import (
    CAUSE,
    day,
    eur,
    inspected,
    inspected_return,
    shop_order,
    types,
    wants,
)

REPAIR, VENDOR = Disposition.REPAIR, Disposition.RETURN_TO_VENDOR


def with_legs(*items: tuple[Disposition, str | None]) -> Return:
    return inspected_return(
        shop_order(),
        *(
            inspected(condition=Condition.DEFECTIVE, disposition=kind, serial=serial)
            for kind, serial in items
        ),
        lines=(wants(quantity=len(items), reason=ReasonCode.DEFECTIVE),),
    )


def find(rma: Return, action: LegAction, **named: str | None) -> str:
    step = {"sent_to_repair": "sent", "restocked": "restocked", "credited": "credited"}
    return rma.find_leg(
        TAKES[action],
        leg_id=named.get("leg_id"),
        serial=named.get("serial"),
        sku=named.get("sku"),
        step=step.get(action.value, "completed"),
    )


def test_a_leg_remembers_the_serial_and_where_its_item_was_inspected() -> None:
    rma = with_legs((REPAIR, "SN-1"))
    leg = rma.state.legs["L1"]
    assert (leg.serial, leg.location_id, leg.opened_at) == ("SN-1", "WH-RET", day(16))


def test_the_warehouse_names_a_leg_by_serial_when_it_does_not_know_our_leg_ids() -> None:
    rma = with_legs((REPAIR, "SN-1"), (REPAIR, "SN-2"))
    assert find(rma, LegAction.SENT_TO_REPAIR, serial="SN-2") == "L2"
    assert find(rma, LegAction.SENT_TO_REPAIR, leg_id="L1") == "L1"


def test_a_sku_names_the_one_leg_ready_for_the_step_and_two_are_refused() -> None:
    rma = with_legs((REPAIR, None), (REPAIR, None))
    with pytest.raises(InvalidCommand, match=r"2 legs of return .* hold sku SKU-1 \(L1, L2\)"):
        find(rma, LegAction.SENT_TO_REPAIR, sku="SKU-1")
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    # Only L1 is at the repair centre, so only L1 can come back repaired.
    assert find(rma, LegAction.REPAIRED, sku="SKU-1") == "L1"
    assert find(rma, LegAction.SENT_TO_REPAIR, sku="SKU-1") == "L2"


def test_a_step_no_leg_is_ready_for_is_refused_with_the_legs_states() -> None:
    rma = with_legs((VENDOR, "SN-9"))
    with pytest.raises(InvalidTransition, match=r"no return_to_vendor leg with serial SN-9 ready"):
        find(rma, LegAction.CREDITED, serial="SN-9")
    with pytest.raises(InvalidTransition, match=r"legs with it: none"):
        find(rma, LegAction.SENT_TO_REPAIR, serial="SN-9")
    with pytest.raises(InvalidCommand, match=r"has no leg L7"):
        find(rma, LegAction.CREDITED, leg_id="L7")
    with pytest.raises(InvalidCommand, match=r"leg_id, serial or sku"):
        find(rma, LegAction.CREDITED)
    with pytest.raises(InvalidCommand, match=r"leg L1 of return .* holds SKU-1 SN-9, not SN-8"):
        find(rma, LegAction.CREDITED, leg_id="L1", serial="SN-8")


def test_the_same_step_twice_changes_nothing_and_other_data_is_refused() -> None:
    rma = with_legs((REPAIR, "SN-1"))
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE, reference="JOB-1")
    rma.send_to_repair("L1", "REPAIR-LYON", day(18), CAUSE, reference="JOB-1")
    rma.complete_repair("L1", "repaired", day(30), CAUSE)
    # A late copy of the first message, after the leg moved on: still a repeat.
    rma.send_to_repair("L1", "REPAIR-LYON", day(31), CAUSE, reference="JOB-1")
    assert types(rma) == (RepairSent, RepairCompleted)
    with pytest.raises(InvalidTransition, match=r"already took the step sent"):
        rma.send_to_repair("L1", "REPAIR-PARIS", day(31), CAUSE, reference="JOB-1")
    # A repeat found by serial finds the leg that took the step.
    assert find(rma, LegAction.SENT_TO_REPAIR, serial="SN-1") == "L1"


def test_an_unrepairable_item_is_scrapped_and_its_leg_ends() -> None:
    rma = with_legs((REPAIR, "SN-1"))
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    rma.complete_repair("L1", "beyond_repair", day(30), CAUSE)
    assert rma.state.legs["L1"].status == "scrapped"
    with pytest.raises(InvalidTransition, match=r"beyond repair"):
        rma.restock_repaired("L1", "WH-1", day(31), CAUSE)


def test_a_replaced_item_comes_back_with_its_new_serial_and_is_restocked() -> None:
    rma = with_legs((REPAIR, "SN-1"))
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    with pytest.raises(InvalidCommand, match=r"only a replaced item"):
        rma.complete_repair("L1", "repaired", day(30), CAUSE, replacement_serial="SN-NEW")
    rma.complete_repair("L1", "replaced", day(30), CAUSE, replacement_serial="SN-NEW")
    rma.restock_repaired("L1", "WH-2", day(31), CAUSE)
    leg = rma.state.legs["L1"]
    assert (leg.status, leg.outcome, leg.replacement_serial, leg.restocked_at) == (
        "restocked",
        "replaced",
        "SN-NEW",
        "WH-2",
    )


def test_a_vendor_that_sends_the_item_back_ends_the_leg_with_no_credit() -> None:
    rma = with_legs((VENDOR, "SN-5"))
    with pytest.raises(InvalidTransition, match=r"awaiting_dispatch; this needs at_vendor"):
        rma.take_back_from_vendor("L1", "WH-1", day(20), CAUSE)
    rma.ship_to_vendor("L1", "V-RMA-1", day(17), CAUSE)
    assert find(rma, LegAction.RESTOCKED, serial="SN-5") == "L1"
    rma.take_back_from_vendor("L1", "WH-1", day(40), CAUSE)
    rma.take_back_from_vendor("L1", "WH-1", day(41), CAUSE)
    assert types(rma)[-1] is VendorItemReturned
    assert len(rma.pending_events) == 2
    assert rma.state.legs["L1"].status == "returned_by_vendor"
    with pytest.raises(InvalidTransition, match=r"returned_by_vendor; this needs at_vendor"):
        rma.receive_supplier_credit("L1", eur("10.00"), day(42), CAUSE)


def test_a_credit_repeated_with_the_same_amount_changes_nothing() -> None:
    rma = with_legs((VENDOR, "SN-5"))
    rma.ship_to_vendor("L1", "V-RMA-1", day(17), CAUSE)
    rma.receive_supplier_credit("L1", eur("30.00"), day(40), CAUSE)
    rma.receive_supplier_credit("L1", eur("30.00"), day(41), CAUSE)
    assert len(rma.pending_events) == 2
    with pytest.raises(InvalidTransition, match=r"already took the step credited"):
        rma.receive_supplier_credit("L1", eur("31.00"), day(41), CAUSE)
