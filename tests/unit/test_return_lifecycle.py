"""The life of a return after its request: cancel and expire, repair and vendor legs,
and replay.

Given a return's history, when a command, then events or an error. The order of most
tests is ``shop_order`` (tests/unit/builders.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from domain.errors import InvalidCommand, InvalidTransition
from domain.events import (
    RepairCompleted,
    RepairedItemRestocked,
    RepairSent,
    ReturnCancelled,
    ReturnExpired,
    SupplierCreditReceived,
    VendorReturnShipped,
)
from domain.policy import PolicyBook
from domain.returns import Return, ReturnStatus
from domain.values import Condition, Disposition, ReasonCode
from tests.unit.builders import (
    BOOK,
    CAUSE,
    RETURN_ID,
    authorized_return,
    day,
    decide,
    eur,
    expensive_order,
    given,
    inspect,
    inspected,
    inspected_return,
    issue_store_credit,
    last,
    receive,
    received,
    received_return,
    request_refund,
    requested_return,
    shop_order,
    types,
    usd,
    wants,
)


# ---------------------------------------------------------------- cancel and expire
@pytest.mark.parametrize("stage", ["requested", "pending_review", "authorized", "keep_offered"])
def test_a_return_not_shipped_yet_can_be_cancelled(stage: str) -> None:
    order = expensive_order() if stage == "pending_review" else shop_order()
    rma = requested_return(order, wants(quantity=2) if stage == "pending_review" else wants(2))
    if stage != "requested":
        decide(rma, order)
    if stage == "keep_offered":
        rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma = given(rma)
    assert rma.state.status.value == stage.replace("keep_offered", "keep_item_offered")
    rma.cancel("no longer needed", day(12), CAUSE)
    assert rma.pending_events == [
        ReturnCancelled(
            originator_id=RETURN_ID,
            originator_version=rma.version,
            timestamp=day(12),
            cause=CAUSE,
            reason="no longer needed",
        )
    ]
    assert rma.state.status is ReturnStatus.CANCELLED


def test_a_return_whose_parcel_arrived_cannot_be_cancelled() -> None:
    rma = received_return(shop_order())
    with pytest.raises(InvalidTransition):
        rma.cancel("too late", day(16), CAUSE)
    assert rma.pending_events == []


def test_an_authorized_return_never_shipped_expires_after_30_days() -> None:
    rma = authorized_return(shop_order())
    assert rma.expire(BOOK, day(40), CAUSE) is True
    assert rma.pending_events == [
        ReturnExpired(
            originator_id=RETURN_ID,
            originator_version=3,
            timestamp=day(40),
            cause=CAUSE,
            authorized_days=30,
        )
    ]
    assert rma.state.status is ReturnStatus.EXPIRED


def test_an_authorized_return_does_not_expire_before_30_days() -> None:
    rma = authorized_return(shop_order())
    assert rma.expire(BOOK, day(39.9), CAUSE) is False
    assert rma.pending_events == []


def test_a_return_whose_parcel_arrived_never_expires() -> None:
    rma = received_return(shop_order())
    assert rma.expire(BOOK, day(400), CAUSE) is False
    assert rma.pending_events == []


def test_the_expiry_follows_the_policy_of_the_category() -> None:
    book = PolicyBook(by_category={"general": {"expiry_days": 7}})
    rma = authorized_return(shop_order(), book=book)
    assert rma.expire(BOOK, day(17), CAUSE) is False
    assert rma.expire(book, day(17), CAUSE) is True


# ---------------------------------------------------------------- repair and vendor legs
def with_leg(disposition: Disposition) -> Return:
    return inspected_return(
        shop_order(),
        inspected(condition=Condition.DEFECTIVE, disposition=disposition),
        lines=(wants(reason=ReasonCode.DEFECTIVE),),
    )


def test_an_item_sent_for_repair_opens_a_leg_apart_from_the_customer() -> None:
    rma = with_leg(Disposition.REPAIR)
    leg = rma.state.legs["L1"]
    assert (leg.kind, leg.sku, leg.quantity, leg.supplier, leg.status) == (
        Disposition.REPAIR,
        "SKU-1",
        1,
        "ACME",
        "awaiting_dispatch",
    )
    request_refund(rma, "45.00", shipping="5.00")
    assert rma.state.status is ReturnStatus.REFUND_PENDING


def test_the_repair_leg_goes_out_comes_back_and_is_restocked() -> None:
    rma = with_leg(Disposition.REPAIR)
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    rma.complete_repair("L1", "repaired", day(30), CAUSE)
    rma.restock_repaired("L1", "WH-1", day(31), CAUSE)
    assert types(rma) == (RepairSent, RepairCompleted, RepairedItemRestocked)
    assert last(rma) == RepairedItemRestocked(
        originator_id=RETURN_ID,
        originator_version=7,
        timestamp=day(31),
        cause=CAUSE,
        leg_id="L1",
        location_id="WH-1",
    )
    assert (rma.state.legs["L1"].status, rma.state.legs["L1"].outcome) == (
        "restocked",
        "repaired",
    )
    assert rma.state.status is ReturnStatus.INSPECTED


def test_an_item_beyond_repair_is_not_restocked() -> None:
    rma = with_leg(Disposition.REPAIR)
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    rma.complete_repair("L1", "beyond_repair", day(30), CAUSE)
    with pytest.raises(InvalidTransition, match=r"beyond repair"):
        rma.restock_repaired("L1", "WH-1", day(31), CAUSE)


def test_a_repair_ends_with_a_known_outcome() -> None:
    rma = with_leg(Disposition.REPAIR)
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    with pytest.raises(InvalidCommand, match=r"unknown repair outcome"):
        rma.complete_repair("L1", "lost", day(30), CAUSE)


def test_a_repair_leg_moves_only_forward() -> None:
    rma = with_leg(Disposition.REPAIR)
    with pytest.raises(InvalidTransition, match=r"L1 is awaiting_dispatch; this needs at_repair"):
        rma.complete_repair("L1", "repaired", day(30), CAUSE)
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    # Sent again to the same centre is a repeat (tests/unit/test_legs.py); elsewhere, refused.
    with pytest.raises(InvalidTransition):
        rma.send_to_repair("L1", "REPAIR-PARIS", day(18), CAUSE)


def test_the_vendor_leg_ships_to_the_supplier_and_is_credited() -> None:
    rma = with_leg(Disposition.RETURN_TO_VENDOR)
    rma.ship_to_vendor("L1", "V-RMA-1", day(17), CAUSE)
    rma.receive_supplier_credit("L1", eur("30.00"), day(40), CAUSE)
    assert rma.pending_events == [
        VendorReturnShipped(
            originator_id=RETURN_ID,
            originator_version=5,
            timestamp=day(17),
            cause=CAUSE,
            leg_id="L1",
            supplier="ACME",
            vendor_rma="V-RMA-1",
        ),
        SupplierCreditReceived(
            originator_id=RETURN_ID,
            originator_version=6,
            timestamp=day(40),
            cause=CAUSE,
            leg_id="L1",
            amount=eur("30.00"),
        ),
    ]
    assert (rma.state.legs["L1"].status, rma.state.legs["L1"].credit) == (
        "credited",
        eur("30.00"),
    )


@pytest.mark.parametrize("amount", [eur("-1.00"), usd("30.00")])
def test_a_supplier_credit_is_a_non_negative_amount_in_the_return_currency(amount: Any) -> None:
    rma = with_leg(Disposition.RETURN_TO_VENDOR)
    rma.ship_to_vendor("L1", "V-RMA-1", day(17), CAUSE)
    with pytest.raises(InvalidCommand):
        rma.receive_supplier_credit("L1", amount, day(40), CAUSE)


def test_a_leg_command_for_the_wrong_kind_or_an_unknown_leg_is_refused() -> None:
    rma = with_leg(Disposition.RETURN_TO_VENDOR)
    with pytest.raises(InvalidCommand, match=r"has no repair leg L1"):
        rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    with pytest.raises(InvalidCommand, match=r"no return_to_vendor leg L2"):
        rma.ship_to_vendor("L2", "V-RMA-1", day(17), CAUSE)
    assert rma.pending_events == []


def test_an_item_restocked_at_inspection_opens_no_leg() -> None:
    assert inspected_return(shop_order()).state.legs == {}


# ---------------------------------------------------------------- replay
def test_replaying_a_whole_return_gives_the_live_state() -> None:
    order = shop_order()
    rma = requested_return(order, wants(1, 2, ReasonCode.DEFECTIVE, serial="SN-1"))
    decide(rma, order)
    rma.issue_label("LBL-2", "colissimo", day(11), CAUSE)
    receive(rma, received(quantity=2))
    inspect(
        rma, inspected(quantity=2, condition=Condition.DEFECTIVE, disposition=Disposition.REPAIR)
    )
    request_refund(rma, "85.00", shipping="5.00")
    rma.fail_refund("RF-1", "card expired", day(17), CAUSE)
    request_refund(rma, "85.00", "RF-2", shipping="5.00", at=day(18))
    rma.send_to_repair("L1", "REPAIR-LYON", day(18), CAUSE)
    replayed = Return.replay(rma.id, rma.pending_events)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(rma.state)
    assert replayed.version == rma.version == 9
    assert (replayed.paid_out(), replayed.shipping_paid()) == (eur("85.00"), eur("5.00"))


def test_replaying_a_return_paid_over_two_parcels_gives_the_live_state() -> None:
    order = shop_order()
    rma = requested_return(order, wants(1, quantity=2, reason=ReasonCode.DEFECTIVE))
    decide(rma, order)
    receive(rma, receipt_id="RCPT-1", at=day(15))
    inspect(rma, receipt_id="RCPT-1", at=day(16))
    request_refund(rma, "45.00", "RF-1", shipping="5.00", at=day(16))
    rma.settle_refund("RF-1", "PSP-1", eur("45.00"), day(17), CAUSE)
    receive(rma, receipt_id="RCPT-2", at=day(18))
    inspect(
        rma,
        inspected(condition=Condition.DEFECTIVE, disposition=Disposition.REPAIR),
        receipt_id="RCPT-2",
        at=day(19),
    )
    issue_store_credit(rma, "20.00", "SC-1", bonus="2.00", at=day(19))
    issue_store_credit(rma, "20.00", "SC-2", bonus="2.00", at=day(20))
    assert rma.state.status is ReturnStatus.CLOSED
    replayed = Return.replay(rma.id, rma.pending_events)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(rma.state)
    assert replayed.version == rma.version
    assert (replayed.state.store_credit, replayed.paid_out(), replayed.items_due_unpaid()) == (
        eur("44.00"),
        eur("85.00"),
        eur("0.00"),
    )


def test_replaying_an_accepted_keep_item_offer_keeps_its_expiry_and_acceptance() -> None:
    rma = requested_return(shop_order(), wants(2))
    decide(rma, shop_order())
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.accept_keep_item(day(12), CAUSE)
    replayed = Return.replay(rma.id, rma.pending_events)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(rma.state)
    assert (replayed.state.keep_item_expires_at, replayed.state.keep_item_accepted) == (
        day(17),
        True,
    )
