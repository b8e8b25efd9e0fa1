"""The read-model framework: relayed events, merging, folding and the in-memory model.

The story builder the reducer tests share lives in tests/unit/builders.py.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from projections import default_projections
from projections.core import (
    Append,
    Event,
    Increment,
    InMemoryReadModel,
    Rebase,
    Upsert,
    merge,
    split_pro_rata,
)
from projections.ledger import RefundLedger
from tests.unit.builders import (
    T0,
    Story,
    assert_folds_like_reduce,
    eur,
    return_line,
    return_requested,
    uid,
    wire,
)


# ---------------------------------------------------------------- the tests
def test_an_event_is_read_from_the_relayed_cloud_event() -> None:
    from domain.events import StockAdjusted

    story = Story()
    inventory = uid("inv")
    event = story.add(
        StockAdjusted,
        inventory,
        sku="SKU-1",
        location_id="WH-1",
        delta=-2,
        reason="x",
        adjustment_id="A",
    )
    assert event.id == f"{inventory}:1"
    assert (event.type, event.kind, event.version, event.position) == (
        "inventory.adjusted",
        "inventory",
        1,
        1,
    )
    assert event.time == T0 and event.data["delta"] == -2


def test_a_message_that_is_not_a_relayed_event_is_refused() -> None:
    with pytest.raises(ValueError, match="not a relayed domain event"):
        Event.from_cloud_event({"id": "x", "type": "rma.closed", "data": {}})


def test_merging_sums_increments_dedupes_appends_and_keeps_the_earliest_rebase() -> None:
    key = {"sku": "A", "location_id": "L"}
    merged = merge(
        [
            Increment("levels", key, {"available": 2}),
            Increment(
                "levels", dict(reversed(list(key.items()))), {"available": -5, "scrapped": 1}
            ),
            Append("moves", "e:1", {"delta": 2}),
            Append("moves", "e:1", {"delta": 99}),
            Rebase("levels", key, 7),
            Rebase("levels", key, 3),
            Upsert("levels", key, {"counted": 4}),
            Upsert("levels", key, {"counted": 6, "counted_position": 3}),
        ]
    )
    (row,) = merged.increments["levels"].values()
    assert row == {"sku": "A", "location_id": "L", "available": -3, "scrapped": 1}
    assert list(merged.appends["moves"].values()) == [{"id": "e:1", "delta": 2}]
    assert list(merged.rebases["levels"].values()) == [3]
    (upserted,) = merged.upserts["levels"].values()
    assert upserted["counted"] == 6 and upserted["counted_position"] == 3


def test_a_column_both_set_and_incremented_in_one_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="both set and incremented"):
        merge([Upsert("t", {"k": 1}, {"n": 5}), Increment("t", {"k": 1}, {"n": 1})])


@pytest.mark.parametrize(
    ("total", "weights"),
    [
        ("100.00", ["1", "1", "1"]),
        ("0.05", ["3", "1"]),
        ("-10.01", ["2", "5", "0"]),
        ("7.00", ["0", "0"]),
    ],
)
def test_a_split_adds_up_to_the_cent(total: str, weights: list[str]) -> None:
    parts = split_pro_rata(Decimal(total), [Decimal(w) for w in weights])
    assert sum(parts, Decimal(0)) == Decimal(total)
    assert all(p == p.quantize(Decimal("0.01")) for p in parts)


def test_a_redelivered_event_changes_nothing_and_the_given_state_is_never_mutated() -> None:
    from domain.events import RefundRequested

    story = Story()
    rma = uid("rma")
    event = story.add(
        RefundRequested,
        rma,
        refund_id="RF-1",
        amount=eur("10.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire("10.00")},),
    )
    ledger = RefundLedger()
    state, changes = ledger.reduce(None, event)
    assert state is not None and state["version"] == 1 and changes
    frozen = orjson.dumps(state)
    again, nothing = ledger.reduce(state, event)
    assert again is state and nothing == []
    assert orjson.dumps(state) == frozen


def test_the_in_memory_model_applies_a_batch_once_however_often_it_is_given() -> None:
    from domain.events import RefundRequested, RefundSettled

    story = Story()
    rma = uid("rma-twice")
    story.add(
        RefundRequested,
        rma,
        refund_id="RF-1",
        amount=eur("10.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire("10.00")},),
    )
    story.add(RefundSettled, rma, refund_id="RF-1", provider_reference="psp", amount=eur("10.00"))
    once = InMemoryReadModel(RefundLedger())
    once.apply(story.events)
    twice = InMemoryReadModel(RefundLedger())
    twice.apply(story.events)
    twice.apply(story.events)
    twice.apply(story.events[:1])
    assert twice.tables == once.tables and twice.states == once.states


def test_folding_in_place_equals_reducing_event_by_event_for_every_projection() -> None:
    from domain.events import RefundRequested, RefundSettled

    story = Story()
    rma = uid("rma-fold")
    return_requested(story, rma, uid("order-fold"), (return_line(1, "SKU-1", 2),))
    story.add(
        RefundRequested,
        rma,
        refund_id="RF-1",
        amount=eur("10.00"),
        restocking_fee=eur("1.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire("10.00")},),
    )
    story.add(RefundSettled, rma, refund_id="RF-1", provider_reference="psp", amount=eur("10.00"))
    for projection in default_projections():
        assert_folds_like_reduce(projection, story.events)
