"""The serial-returner rule on the real event store: the customer's earlier returns are
counted from the lookups written with the events, within the policy's period, and a batch
of one customer's requests counts each before the next."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from adapters.driven.eventstore import create_service
from domain.application import Ctx, ReturnsService
from domain.commands import RequestReturn
from domain.events import Cause, ReturnHeldForReview
from domain.policy_file import parse_policy
from domain.returns import RequestedLine
from domain.values import ReasonCode, ReturnMethod
from tests.integration.builders import delivered_order, fresh_database

STRICT = parse_policy('version = "strict"\n[review]\nserial_returner_returns = 2\n'
                      "serial_returner_days = 10\n")  # fmt: skip


@pytest.fixture
def own_service(database_url: str) -> Iterator[ReturnsService]:
    service = create_service(fresh_database(database_url, "review"), pool_size=2)
    service.policy_book = STRICT
    yield service
    service.close()


def request(number: str, at: datetime) -> tuple[Ctx, RequestReturn]:
    cause = Cause(actor="tests", source="pytest", correlation_id=str(uuid.uuid4()))
    line = RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL)
    command = RequestReturn(order_number=number, lines=(line,), method=ReturnMethod.STORE)
    return Ctx(cause, at=at), command


def test_a_customer_with_two_returns_in_the_period_has_the_third_held(
    own_service: ReturnsService,
) -> None:
    service = own_service
    now = datetime.now(UTC)
    orders = [delivered_order(service, customer_id="cust-serial") for _ in range(4)]
    other = delivered_order(service, customer_id="cust-once")
    assert [service.run(*request(n, now)).status for n in orders[:2]] == ["authorized"] * 2
    since = now - timedelta(days=10)
    assert len(service.lookups.returns_of_customer_since("cust-serial", since)) == 2
    assert service.lookups.returns_of_customer_since("cust-serial", now + timedelta(1)) == []

    third = service.run(*request(orders[2], now))
    assert third.status == "pending_review"
    held = service.stored_events(third.aggregate_id)[-1]
    assert isinstance(held, ReturnHeldForReview)
    assert (held.rules, held.policy_version) == (("serial_returner",), "strict")
    assert "opened 2 returns in the 10 days before" in held.reason
    # Another customer's first return is not counted against them.
    assert service.run(*request(other, now)).status == "authorized"
    # 15 days later the first three are outside the period: the fourth is authorized.
    assert service.run(*request(orders[3], now + timedelta(days=15))).status == "authorized"


def test_a_batch_of_one_customers_requests_counts_each_before_the_next(
    own_service: ReturnsService,
) -> None:
    service = own_service
    now = datetime.now(UTC)
    orders = [delivered_order(service, customer_id="cust-batch") for _ in range(3)]
    outcomes = service.run_batch([request(n, now) for n in orders])
    assert [getattr(o, "status", o) for o in outcomes] == [
        "authorized",
        "authorized",
        "pending_review",
    ]
