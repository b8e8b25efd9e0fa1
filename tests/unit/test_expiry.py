"""Deadlines: an RMA never shipped expires after the policy's period; a keep-the-item offer
nobody accepted lapses, and the RMA waits for its parcel again with a fresh period.

The default policy gives 30 days; every RMA here is authorized on day 10 (shop_order's
second line is cheap enough to keep, tests/unit/builders.py).
"""

from __future__ import annotations

import pytest

from domain.application import deadline_row
from domain.errors import InvalidTransition, OfferLapsed
from domain.events import KeepItemLapsed, ReturnExpired
from domain.lookups import DeadlineRow
from domain.policy import PolicyBook
from domain.returns import Return, ReturnStatus
from projections.core import InMemoryReadModel, key_of
from projections.rma_status import RmaStatus
from tests.unit.builders import (
    BOOK,
    CAUSE,
    RETURN_ID,
    RMA,
    authorized_return,
    day,
    decide,
    given,
    receive,
    relayed,
    requested_return,
    shop_order,
    snapshot,
    wants,
)


def live(book: PolicyBook = BOOK) -> Return:
    """Requested and authorized on day 10, every event still pending (see ``reloaded``)."""
    order = shop_order()
    rma = requested_return(order, wants(2))
    decide(rma, order, book=book)
    return rma


def offered(until: float = 17) -> Return:
    rma = live()
    rma.offer_keep_item(BOOK, day(until), day(10), CAUSE)
    return rma


def reloaded(rma: Return) -> Return:
    """What the next command loads: the aggregate replayed from all its events (it must have
    been live since its creation), with nothing pending."""
    return given(rma)


# ---------------------------------------------------------------- expiry
def test_an_rma_waits_its_whole_period_and_expires_on_its_last_instant() -> None:
    rma = authorized_return(shop_order())
    assert not rma.expire(BOOK, day(39.99), CAUSE)
    assert rma.pending_events == []
    assert rma.expire(BOOK, day(40), CAUSE)
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


def test_expiring_an_expired_rma_again_records_nothing() -> None:
    rma = live()
    assert rma.expire(BOOK, day(41), CAUSE)
    rma = reloaded(rma)
    before = snapshot(rma)
    assert not rma.expire(BOOK, day(42), CAUSE)
    assert rma.pending_events == []
    assert snapshot(rma) == before


def test_a_shipped_rma_never_expires() -> None:
    rma = authorized_return(shop_order())
    receive(rma, at=day(15))
    assert not rma.expire(BOOK, day(400), CAUSE)
    assert rma.expires_at(BOOK) is None


def test_a_category_with_a_longer_period_expires_later() -> None:
    book = PolicyBook(by_category={"general": {"expiry_days": 60}})
    rma = authorized_return(shop_order(), book=book)
    assert rma.expires_at(book) == day(70)
    assert not rma.expire(book, day(69), CAUSE)
    assert rma.expire(book, day(70), CAUSE)


# ---------------------------------------------------------------- keep-the-item offers
def test_an_offer_still_runs_on_its_last_instant() -> None:
    rma = reloaded(offered(until=17))
    assert not rma.lapse_keep_item(day(17), CAUSE)
    assert rma.pending_events == []
    assert rma.state.status is ReturnStatus.KEEP_ITEM_OFFERED


def test_an_offer_nobody_accepted_lapses_and_the_rma_waits_for_its_parcel_again() -> None:
    rma = reloaded(offered(until=17))
    assert rma.lapse_keep_item(day(18), CAUSE)
    assert rma.pending_events == [
        KeepItemLapsed(
            originator_id=RETURN_ID,
            originator_version=4,
            timestamp=day(18),
            cause=CAUSE,
            expired_at=day(17),
        )
    ]
    assert rma.state.status is ReturnStatus.AUTHORIZED
    assert rma.state.keep_item_offer is None
    assert snapshot(replayed_after_lapse()) == snapshot(rma)  # replay folds it the same way


def test_a_lapsed_offer_lapses_once() -> None:
    rma = offered()
    assert rma.lapse_keep_item(day(18), CAUSE)
    rma = reloaded(rma)
    assert not rma.lapse_keep_item(day(19), CAUSE)
    assert rma.pending_events == []


def test_accepting_a_lapsed_offer_is_refused_with_its_own_code() -> None:
    rma = offered()
    rma.lapse_keep_item(day(18), CAUSE)
    rma = reloaded(rma)
    before = snapshot(rma)
    with pytest.raises(OfferLapsed, match=f"offer of {RMA} lapsed at 2025-03-21") as refused:
        rma.accept_keep_item(day(18.5), CAUSE)
    assert refused.value.code == "keep_item_offer_lapsed"
    assert isinstance(refused.value, InvalidTransition)  # a 409, as before
    assert rma.pending_events == []
    assert snapshot(rma) == before


def test_an_accepted_offer_never_lapses() -> None:
    rma = offered()
    rma.accept_keep_item(day(12), CAUSE)
    rma = reloaded(rma)
    assert not rma.lapse_keep_item(day(30), CAUSE)
    assert rma.pending_events == []


def test_after_a_lapse_the_time_to_ship_counts_from_the_lapse() -> None:
    rma = offered()
    rma.lapse_keep_item(day(18), CAUSE)
    rma = reloaded(rma)
    assert rma.expires_at(BOOK) == day(48)
    assert not rma.expire(BOOK, day(40), CAUSE)  # authorization + 30 days is not enough
    assert rma.expire(BOOK, day(48), CAUSE)


def test_an_offered_rma_does_not_expire_while_its_offer_runs() -> None:
    rma = reloaded(offered(until=60))
    assert not rma.expire(BOOK, day(45), CAUSE)


# ---------------------------------------------------------------- the deadlines lookup rows
def replayed_after_lapse() -> Return:
    rma = offered(until=17)
    rma.lapse_keep_item(day(18), CAUSE)
    return reloaded(rma)


def test_the_deadline_row_follows_what_the_rma_waits_for() -> None:
    rma = reloaded(live())
    assert deadline_row(rma) == DeadlineRow(RETURN_ID, ship_clock_from=day(10))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    assert deadline_row(rma) == DeadlineRow(RETURN_ID, offer_expires_at=day(17))
    rma.lapse_keep_item(day(18), CAUSE)
    assert deadline_row(rma) == DeadlineRow(RETURN_ID, ship_clock_from=day(18))
    rma.expire(BOOK, day(48), CAUSE)
    assert deadline_row(rma) == DeadlineRow(RETURN_ID)


# ---------------------------------------------------------------- the read side
def test_the_status_read_model_follows_a_lapse_and_a_later_expiry() -> None:
    rma = offered()
    rma.lapse_keep_item(day(18), CAUSE)
    rma.expire(BOOK, day(48), CAUSE)
    history = rma.pending_events
    model = InMemoryReadModel(RmaStatus())
    seen = []
    for n, event in enumerate(relayed(history), start=1):
        model.apply([event])
        expected = Return.replay(rma.id, history[:n]).state.status.value
        row = model.tables["rm_rma_status"][key_of({"return_id": str(rma.id)})]
        assert row["status"] == expected, event.type
        seen.append(row["status"])
    assert seen[-3:] == ["keep_item_offered", "authorized", "expired"]
