"""Store-credit codes on the real event store: issued with a return's credit, found by the
lookups, spent by code from the code's account (refused past its balance or when unknown),
given back there by a cancellation; and the ledger, applied on PostgreSQL, books the
spends and still balances."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.driven.readmodels.queries import unbalanced_refunds
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import cloud_event_for
from domain.application import ReturnsService
from domain.commands import CancelOrder, PlaceOrder, RequestReturn
from domain.errors import InsufficientStoreCredit, UnknownStoreCreditCode
from domain.events import OrderLine, Payment, StoreCreditCredited, StoreCreditIssued
from domain.order import order_id_for
from domain.returns import RequestedLine
from domain.store_credit import is_store_credit_code, store_credit_id_for
from domain.values import Channel, PaymentMethod, ReasonCode, RefundMethod
from projections.core import Event
from projections.ledger import RefundLedger
from tests.integration.builders import ctx, delivered_order, receive_and_inspect
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def returned_as_store_credit(service: ReturnsService) -> tuple[str, StoreCreditIssued]:
    """One 50.00 item of a delivered order returned as store credit: 55.00 with the bonus."""
    number = delivered_order(service, quantity=2, unit_price="50.00", shipping="0.00")
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
            refund_method=RefundMethod.STORE_CREDIT,
        ),
    )
    assert rma.rma_number
    receive_and_inspect(service, rma.rma_number)
    issued = next(
        e for e in service.stored_events(rma.aggregate_id) if isinstance(e, StoreCreditIssued)
    )
    return f"cust-{number}", issued


def pay_by_code(service: ReturnsService, customer_id: str, code: str, credit: str) -> str:
    number = f"CODE-{uuid.uuid4().hex[:10]}"
    service.run(
        ctx(),
        PlaceOrder(
            order_number=number,
            customer_id=customer_id,
            customer_email=None,
            channel=Channel.WEB,
            lines=(OrderLine(line_no=1, sku="SHOE-RED-42", quantity=1, unit_price=eur(credit)),),
            payments=(
                Payment(
                    payment_id="pay-code",
                    method=PaymentMethod.STORE_CREDIT,
                    amount=eur(credit),
                    store_credit_code=code,
                ),
            ),
            shipping=eur("0.00"),
        ),
    )
    return number


def test_a_returns_credit_has_a_code_that_spends_its_account_from_any_till(
    service: ReturnsService,
) -> None:
    owner, issued = returned_as_store_credit(service)  # 55.00 with the bonus
    assert issued.code is not None and is_store_credit_code(issued.code)
    credited = service.get_store_credit(owner).movements[-1]
    assert isinstance(credited, StoreCreditCredited) and credited.code == issued.code
    assert service.lookups.customer_of_store_credit_code(issued.code) == owner
    assert service.get_store_credit_by_code(issued.code).balance("EUR") == eur("55.00")

    # Another customer's order (a gift passed on): the code pays, from its own account.
    number = pay_by_code(service, f"walk-in-{uuid.uuid4().hex[:6]}", issued.code, "40.00")
    assert service.get_store_credit(owner).balance("EUR") == eur("15.00")

    with pytest.raises(InsufficientStoreCredit, match=r"has 15\.00 EUR"):
        pay_by_code(service, owner, issued.code, "20.00")
    with pytest.raises(UnknownStoreCreditCode):
        pay_by_code(service, owner, "SC-AAAAAAAAAAAA", "1.00")
    with pytest.raises(UnknownStoreCreditCode):
        service.get_store_credit_by_code("SC-AAAAAAAAAAAA")

    service.run(ctx(), CancelOrder(order_number=number, reason="changed their mind"))
    account = service.get_store_credit(owner)
    assert account.balance("EUR") == eur("55.00")
    assert service.stored_events(order_id_for(number))[0].originator_version == 1
    # The cancellation's credit has a code of its own, which spends the same account.
    assert len(account.codes) == 2
    assert service.get_store_credit_by_code(account.codes[-1]).balance("EUR") == eur("55.00")


def events_of(database_url: str, aggregate_ids: list[uuid.UUID]) -> list[Event]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM oms_events WHERE originator_id = ANY(%s) ORDER BY notification_id",
            [aggregate_ids],
        ).fetchall()
    return [Event.from_cloud_event(cloud_event_for(row)) for row in rows]


def ledger_rows(store: ReadModelStore, query: str, *params: Any) -> list[dict[str, Any]]:
    with store.connection.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query.encode(), params)
        return list(cur.fetchall())


def test_the_ledger_on_postgresql_books_credit_issued_and_spent_and_balances(
    service: ReturnsService, database_url: str
) -> None:
    owner, issued = returned_as_store_credit(service)
    assert issued.code is not None
    kept = pay_by_code(service, owner, issued.code, "30.00")
    cancelled = pay_by_code(service, owner, issued.code, "10.00")
    service.run(ctx(), CancelOrder(order_number=cancelled, reason="out of stock"))
    events = events_of(database_url, [issued.originator_id, store_credit_id_for(owner)])
    ledger = RefundLedger()
    with ReadModelStore(database_url) as store:
        store.ensure(ledger)
        store.apply(ledger, events)
        assert store.apply(ledger, events) == []  # redelivered: nothing changes twice
        lines = ledger_rows(
            store,
            "SELECT refund_id, entry, account, debit, credit FROM rm_ledger_lines"
            " WHERE refund_id = ANY(%s) ORDER BY position, id",
            [issued.credit_id, kept, cancelled],
        )
        unbalanced = unbalanced_refunds(store.connection)
    liability = sum(
        (r["credit"] - r["debit"] for r in lines if r["account"] == "store_credit_liability"),
        Decimal(0),
    )
    assert liability == Decimal("25.00")  # 55.00 issued, 30.00 spent for good
    assert [(r["refund_id"], r["entry"]) for r in lines if r["refund_id"] != issued.credit_id] == [
        (kept, "store_credit_spent"),
        (kept, "store_credit_spent"),
        (cancelled, "store_credit_spent"),
        (cancelled, "store_credit_spent"),
        (cancelled, "store_credit_restored"),
        (cancelled, "store_credit_restored"),
    ]
    assert sum((r["debit"] for r in lines), Decimal(0)) == sum(
        (r["credit"] for r in lines), Decimal(0)
    )
    assert unbalanced == []
