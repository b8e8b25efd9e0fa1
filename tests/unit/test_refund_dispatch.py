"""What the refund dispatcher relies on in the domain: one settlement per refund, the
pending refunds of an RMA, and lookup rows that say where each refund stands."""

from __future__ import annotations

import pytest

from domain.application import refund_rows
from domain.errors import InvalidTransition
from domain.events import RefundSettled
from domain.returns import Return
from tests.unit.builders import (
    CAUSE,
    day,
    delivered_order,
    eur,
    inspected_return,
    line,
    request_refund,
    wants,
)


def refund_pending() -> Return:
    rma = inspected_return(delivered_order(line(1, price="40.00")), lines=(wants(1),))
    request_refund(rma, "40.00")
    return rma


def test_the_provider_settling_twice_records_one_settlement() -> None:
    rma = refund_pending()
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(17), CAUSE)
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(18), CAUSE)
    assert [type(e) for e in rma.pending_events].count(RefundSettled) == 1


def test_a_pending_refund_can_be_sent_again_until_the_provider_answers() -> None:
    rma = refund_pending()
    assert rma.check_refund_pending() == ["RF-1"]
    rma.fail_refund("RF-1", "declined", day(17), CAUSE)
    with pytest.raises(InvalidTransition):
        rma.check_refund_pending()


def test_lookup_rows_keep_the_request_and_carry_the_latest_status() -> None:
    rma = inspected_return(delivered_order(line(1, price="40.00")), lines=(wants(1),))
    rma.collect_events()
    request_refund(rma, "40.00")
    [requested] = refund_rows(rma)
    assert (requested.refund_id, requested.status, requested.amount) == ("RF-1", "requested", 40)
    assert requested.requested_at == day(16) and requested.currency == "EUR"

    # Requested and settled in one commit: one row (an upsert cannot touch a row twice).
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(17), CAUSE)
    [settled] = refund_rows(rma)
    assert (settled.status, settled.requested_at, settled.amount) == ("settled", day(16), 40)

    rma.collect_events()
    assert refund_rows(rma) == []
