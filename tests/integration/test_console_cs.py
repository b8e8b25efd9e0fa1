"""Customer service's console pages through HTTP on the real PostgreSQL: the RMA search and
its CSV, an RMA's page and its actions (approve, refuse, refund retry), an RMA created for
a caller, blind parcels matched; each form's errors beside its field, role refusals, a
stale page refused, a double submit run once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import EVENT_TOPIC_BY_KIND
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import cloud_event_for
from adapters.driving.api import ApiSettings, KeyRing, create_api
from domain.application import ReturnsService
from domain.commands import (
    DeliverOrder,
    FailRefund,
    FulfilOrder,
    PlaceOrder,
    ReceiveParcel,
    RequestReturn,
)
from domain.events import FulfilledLine, OrderLine, Payment, ReceivedItem
from domain.returns import RequestedLine
from domain.values import Channel, PaymentMethod, ReasonCode
from projections import default_projections
from projections.core import Event
from tests.e2e.console import CONSOLE_KEYS
from tests.integration.builders import ctx, delivered_order, fresh_database, receive_and_inspect
from tests.unit.builders import eur

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[tuple[TestClient, ReturnsService, str]]:
    url = fresh_database(database_url, "console_cs")
    service = create_service(url, pool_size=3)
    try:
        app = create_api(service, url, ApiSettings(), KeyRing.with_keys(CONSOLE_KEYS))
        # https: the session cookie is Secure, and the client sends it back only over https.
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
            yield client, service, url
    finally:
        service.close()


@pytest.fixture
def api(stack: tuple[TestClient, ReturnsService, str]) -> TestClient:
    client = stack[0]
    client.cookies.clear()
    return client


@pytest.fixture
def service(stack: tuple[TestClient, ReturnsService, str]) -> ReturnsService:
    return stack[1]


def sign_in(client: TestClient, key: str = "console-cs") -> None:
    client.cookies.clear()
    page = client.post("/console/sign-in", data={"api_key": key, "next": "/console"})
    assert page.status_code == 303, page.text


class _Forms(HTMLParser):
    """Each form's action and its hidden fields, as a browser would post them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and a.get("type") == "hidden" and self.forms:
            self.forms[-1][1][a["name"]] = a.get("value", "")


def form(html: str, action_ends: str) -> tuple[str, dict[str, str]]:
    parser = _Forms()
    parser.feed(html)
    found = [(a, f) for a, f in parser.forms if a.endswith(action_ends) and "csrf" in f]
    assert found, f"no form posting to …{action_ends}"
    return found[0]


def held_rma(service: ReturnsService) -> str:
    """An RMA the policy held for review (a high value): its return id."""
    order = delivered_order(service, unit_price="1500.00")
    outcome = service.run(
        ctx(),
        RequestReturn(
            order_number=order,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.DEFECTIVE),),
        ),
    )
    assert outcome.status == "pending_review", outcome
    return str(outcome.aggregate_id)


def events_of(service: ReturnsService, return_id: str) -> list[str]:
    return [e["type"] for e in service.events_of(uuid.UUID(return_id))]


# ---------------------------------------------------------------- roles
@pytest.mark.parametrize("key", ["console-store-s1", "console-warehouse", "console-analytics"])
def test_other_roles_get_a_403_page_on_customer_services_pages(
    api: TestClient, service: ReturnsService, key: str
) -> None:
    held = held_rma(service)
    sign_in(api, key)
    for path in (
        "/console/returns",
        f"/console/returns/{held}",
        "/console/returns/new",
        f"/console/blind/{held}",
        "/console/returns.csv",
    ):
        page = api.get(path)
        assert page.status_code == 403, path
        assert "Not for your role" in page.text and "Traceback" not in page.text
    csrf = api.get("/console").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    refused = api.post(
        f"/console/returns/{held}/approve", data={"csrf": csrf, "form_id": "x", "version": "3"}
    )
    assert refused.status_code == 403
    assert events_of(service, held)[-1] == "rma.held_for_review"


def test_admin_is_admitted_and_a_post_without_the_sessions_token_changes_nothing(
    api: TestClient, service: ReturnsService
) -> None:
    held = held_rma(service)
    sign_in(api, "console-admin")
    page = api.get(f"/console/returns/{held}")
    assert page.status_code == 200
    _, hidden = form(page.text, "/approve")
    forged = api.post(f"/console/returns/{held}/approve", data={**hidden, "csrf": "forged"})
    assert forged.status_code == 403
    assert events_of(service, held)[-1] == "rma.held_for_review"


# ---------------------------------------------------------------- review
def test_approving_a_held_rma_records_the_agent_and_a_double_submit_runs_once(
    api: TestClient, service: ReturnsService
) -> None:
    held = held_rma(service)
    sign_in(api)
    page = api.get(f"/console/returns/{held}")
    assert page.status_code == 200 and "pending review" in page.text
    action, hidden = form(page.text, "/approve")
    first = api.post(action, data=hidden)
    assert first.status_code == 303, first.text
    assert first.headers["location"] == f"/console/returns/{held}?done=approved"
    again = api.post(action, data=hidden)  # the second click of a double click
    assert again.status_code == 303 and again.headers["location"] == first.headers["location"]
    assert events_of(service, held).count("rma.authorized") == 1
    rma = service.get_return(uuid.UUID(held))
    assert rma.state.status.value == "authorized"
    shown = api.get(first.headers["location"]).text
    assert "Approved: the RMA is authorized" in shown
    assert f"Authorized as {rma.state.rma_number}" in shown
    assert "agent-ann" in shown and "console/customer_service" in shown
    assert "Return note (PDF)" in shown
    note = api.get(f"/console/returns/{held}/note")
    assert note.status_code == 200 and rma.state.rma_number in note.text
    # A printable sheet: its own inline styles allowed, still no script and no framing.
    assert note.headers["content-security-policy"].startswith("default-src 'none'")
    pdf = api.get(f"/console/returns/{held}/note", params={"format": "pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_a_stale_page_is_told_to_reload_and_changes_nothing(
    api: TestClient, service: ReturnsService
) -> None:
    held = held_rma(service)
    sign_in(api)
    page = api.get(f"/console/returns/{held}").text
    action, hidden = form(page, "/approve")
    stale = {**hidden, "version": str(int(hidden["version"]) - 1)}
    answer = api.post(action, data=stale)
    assert answer.status_code == 409
    assert "this RMA changed since you opened it: reload" in answer.text
    assert 'class="problem"' in answer.text
    missing = api.post(action, data={k: v for k, v in hidden.items() if k != "version"})
    assert missing.status_code == 409
    assert events_of(service, held)[-1] == "rma.held_for_review"


def test_refusing_needs_a_reason_beside_the_field_then_refuses(
    api: TestClient, service: ReturnsService
) -> None:
    held = held_rma(service)
    sign_in(api)
    action, hidden = form(api.get(f"/console/returns/{held}").text, "/refuse")
    empty = api.post(action, data={**hidden, "reason": "  "})
    assert empty.status_code == 422
    assert 'id="e-reason"' in empty.text and 'aria-invalid="true"' in empty.text
    assert "say why the RMA is refused" in empty.text
    assert events_of(service, held)[-1] == "rma.held_for_review"
    done = api.post(action, data={**hidden, "reason": "serial belongs to another order"})
    assert done.status_code == 303
    shown = api.get(done.headers["location"]).text
    assert "Refused: serial belongs to another order" in shown and "agent-ann" in shown
    # The page read before the refusal is stale now: its approve cannot undo the refusal.
    assert 'data-testid="approve"' not in shown
    late = api.post(f"/console/returns/{held}/approve", data={**hidden, "form_id": "new-one"})
    assert late.status_code == 409 and "reload" in late.text


def test_an_rma_is_paid_back_another_way_then_cancelled_with_a_reason(
    api: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=order,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_LARGE),),
        ),
    )
    assert rma.status == "authorized" and rma.rma_number
    sign_in(api)
    page = api.get(f"/console/returns/{rma.rma_number}").text
    action, hidden = form(page, "/resolution")
    wrong = api.post(action, data={**hidden, "refund_method": "exchange"})
    assert wrong.status_code == 422 and 'id="e-refund_method"' in wrong.text
    changed = api.post(action, data={**hidden, "refund_method": "store_credit"})
    assert changed.status_code == 303, changed.text
    assert service.get_return(rma.aggregate_id).state.refund_method.value == "store_credit"
    shown = api.get(changed.headers["location"]).text
    assert "Settlement changed from original payment to store credit" in shown

    action, hidden = form(shown, "/cancel")
    blank = api.post(action, data={**hidden, "cancel_reason": ""})
    assert blank.status_code == 422 and 'id="e-cancel_reason"' in blank.text
    assert "say why the RMA is cancelled" in blank.text
    cancelled = api.post(action, data={**hidden, "cancel_reason": "the caller keeps it"})
    assert cancelled.status_code == 303
    assert service.get_return(rma.aggregate_id).state.status.value == "cancelled"
    shown = api.get(cancelled.headers["location"]).text
    assert "Cancelled: the caller keeps it" in shown and 'data-testid="cancel"' not in shown


# ---------------------------------------------------------------- refunds
def test_a_failed_refund_is_paid_as_store_credit_once(
    api: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=order,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.DEFECTIVE),),
        ),
    )
    assert rma.rma_number
    refund = receive_and_inspect(service, rma.rma_number)
    service.run(ctx(), FailRefund(refund_id=refund.refund_id or "", reason="card expired"))
    sign_in(api)
    page = api.get(f"/console/returns/{rma.rma_number}")
    assert "Refund " in page.text and "failed: card expired" in page.text
    action, hidden = form(page.text, "/refund-retry")
    sent = {**hidden, "as_store_credit": "true"}
    first = api.post(action, data=sent)
    assert first.status_code == 303 and first.headers["location"].endswith("done=credited")
    assert api.post(action, data=sent).status_code == 303
    types = events_of(service, str(rma.aggregate_id))
    assert types.count("rma.store_credit_issued") == 1
    # Back to the page as it was, and the other button of the same form: not run again.
    other = api.post(action, data={**hidden, "as_store_credit": "false"})
    assert other.status_code == 409 and "already sent with other choices" in other.text
    assert events_of(service, str(rma.aggregate_id)) == types
    shown = api.get(first.headers["location"]).text
    assert "Store credit of" in shown and "The refund is paid as store credit." in shown


# ---------------------------------------------------------------- an RMA for a caller
def test_creating_an_rma_for_a_caller_says_each_mistake_beside_its_field(
    api: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service, quantity=2)
    sign_in(api)
    unknown = api.get("/console/returns/new", params={"order_number": "NO-SUCH-ORDER"})
    assert unknown.status_code == 404 and 'id="e-order_number"' in unknown.text
    page = api.get("/console/returns/new", params={"order_number": order})
    assert page.status_code == 200 and 'id="f-quantity-1"' in page.text
    action, hidden = form(page.text, "/console/returns/new")
    base = {**hidden, "method": "carrier_drop_off", "refund_method": "original_payment"}
    nothing = api.post(action, data={**base, "quantity-1": "0", "reason-1": ""})
    assert nothing.status_code == 422 and "give a quantity for at least one line" in nothing.text
    too_many = api.post(action, data={**base, "quantity-1": "3", "reason-1": "defective"})
    assert too_many.status_code == 422 and 'id="e-quantity-1"' in too_many.text
    assert "at most 2 can still be returned" in too_many.text
    no_reason = api.post(action, data={**base, "quantity-1": "1", "reason-1": ""})
    assert no_reason.status_code == 422 and 'id="e-reason-1"' in no_reason.text
    assert service.order_view(order)["returns"] == []
    good = {**base, "quantity-1": "1", "reason-1": "size_too_small"}
    created = api.post(action, data=good)
    assert created.status_code == 303, created.text
    assert created.headers["location"].startswith("/console/returns/")
    again = api.post(action, data=good)
    assert again.headers["location"] == created.headers["location"]
    (return_id,) = service.order_view(order)["returns"]
    rma = service.get_return(uuid.UUID(return_id))
    assert rma.state.channel.value == "customer_service"
    assert service.events_of(rma.id)[0]["actor"] == "agent-ann"
    shown = api.get(created.headers["location"]).text
    assert "The RMA is created." in shown and "size too small" in shown


def test_a_refused_request_says_why_beside_the_line(
    api: TestClient, service: ReturnsService
) -> None:
    number = f"T-{uuid.uuid4().hex[:10]}"
    service.run(
        ctx(),
        PlaceOrder(
            order_number=number,
            customer_id="cust-sealed",
            customer_email=None,
            channel=Channel.WEB,
            lines=(
                OrderLine(
                    line_no=1,
                    sku="SOFT-1",
                    name="Boxed software",
                    quantity=1,
                    unit_price=eur("40.00"),
                    returnable=False,
                ),
            ),
            payments=(Payment(payment_id="p", method=PaymentMethod.CARD, amount=eur("40.00")),),
            shipping=eur("0.00"),
        ),
    )
    service.run(
        ctx(),
        FulfilOrder(
            order_number=number,
            location_id="WH-1",
            lines=(FulfilledLine(line_no=1, quantity=1),),
        ),
    )
    service.run(ctx(), DeliverOrder(order_number=number))
    sign_in(api)
    action, hidden = form(
        api.get("/console/returns/new", params={"order_number": number}).text,
        "/console/returns/new",
    )
    refused = api.post(
        action,
        data={
            **hidden,
            "quantity-1": "1",
            "reason-1": "changed_mind",
            "method": "carrier_drop_off",
            "refund_method": "original_payment",
        },
    )
    assert refused.status_code == 422
    assert 'id="e-quantity-1"' in refused.text and "refused:" in refused.text
    assert 'class="problem"' in refused.text and "See the refused RMA" in refused.text


# ---------------------------------------------------------------- blind parcels
def test_a_blind_parcel_is_matched_from_its_suggestion(
    api: TestClient, service: ReturnsService
) -> None:
    # No serial, no RMA, no order written on it: only a guess by its SKU, for a person.
    order = delivered_order(service, quantity=1)
    parcel = service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=f"REC-{uuid.uuid4().hex[:8]}",
            warehouse_id="WH-1",
            rma_number=None,
            tracking_number=None,
            items=(ReceivedItem(sku="SHOE-RED-42", quantity=1),),
        ),
    )
    assert parcel.status == "blind_unmatched"
    blind = str(parcel.aggregate_id)
    sign_in(api)
    rma_page = api.get(f"/console/returns/{blind}").text
    assert f'href="/console/blind/{blind}"' in rma_page
    page = api.get(f"/console/blind/{blind}")
    assert page.status_code == 200 and f"Match to {order}" in page.text
    assert api.get(f"/console/blind/{uuid.uuid4()}").status_code == 404
    assert api.get("/console/blind/not-an-id").status_code == 404
    parser = _Forms()
    parser.feed(page.text)
    (manual_action, manual) = next(
        (a, f) for a, f in parser.forms if a.endswith("/match") and "order_number" not in f
    )
    blank = api.post(manual_action, data={**manual, "order_number": "", "line_no-0": "x"})
    assert blank.status_code == 422
    assert 'id="e-order_number"' in blank.text and 'id="e-line_no-0"' in blank.text
    (action, suggested) = next(
        (a, f) for a, f in parser.forms if a.endswith("/match") and f.get("order_number") == order
    )
    assert suggested["matched_by"] == "order_id" and suggested["line_no-0"] == "1"
    matched = api.post(action, data={**suggested, "reason": "defective"})
    assert matched.status_code == 303, matched.text
    assert api.post(action, data={**suggested, "reason": "defective"}).status_code == 303
    types = events_of(service, blind)
    assert types.count("rma.blind_return_matched") == 1
    shown = api.get(matched.headers["location"]).text
    assert f"Matched to order {order} by order id" in shown and "agent-ann" in shown


# ---------------------------------------------------------------- search
def _project(url: str) -> None:
    """Every stored event through every projection, as the projectors apply them."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM oms_events ORDER BY notification_id"
        ).fetchall()
    events = [Event.from_cloud_event(cloud_event_for(row)) for row in rows]
    events = [replace(e, topic=EVENT_TOPIC_BY_KIND[e.kind], partition=0) for e in events]
    with ReadModelStore(url) as store:
        for projection in default_projections():
            store.ensure(projection)
            store.apply(projection, [e for e in events if e.kind in projection.kinds])


def test_the_search_finds_by_its_filters_pages_and_exports_csv(
    stack: tuple[TestClient, ReturnsService, str], api: TestClient, service: ReturnsService
) -> None:
    held = held_rma(service)
    order = service.get_return(uuid.UUID(held)).state.order_number
    _project(stack[2])
    sign_in(api)
    found = api.get("/console/returns", params={"order_number": order})
    assert found.status_code == 200 and 'data-testid="search-results"' in found.text
    assert f'href="/console/returns/{held}"' in found.text
    by_status = api.get("/console/returns", params={"status": "pending_review"}).text
    assert f'href="/console/returns/{held}"' in by_status
    none = api.get("/console/returns", params={"order_number": "NOTHING-HERE"}).text
    assert 'data-testid="search-empty"' in none
    bad_date = api.get("/console/returns", params={"created_from": "21/11/2026"})
    assert bad_date.status_code == 422 and 'id="e-created_from"' in bad_date.text
    backwards = api.get(
        "/console/returns", params={"created_from": "2026-12-02", "created_to": "2026-12-01"}
    )
    assert backwards.status_code == 422 and 'id="e-created_to"' in backwards.text
    changed_today = api.get(
        "/console/returns",
        params={"order_number": order, "updated_from": "2000-01-01", "updated_to": "2999-12-31"},
    )
    assert f'href="/console/returns/{held}"' in changed_today.text
    changed_long_ago = api.get(
        "/console/returns", params={"order_number": order, "updated_to": "2000-01-01"}
    )
    assert 'data-testid="search-empty"' in changed_long_ago.text
    bad_email = api.get("/console/returns", params={"email": "no-at-sign"})
    assert bad_email.status_code == 422 and 'id="e-email"' in bad_email.text
    first = api.get("/console/returns", params={"limit": "1"}).text
    assert 'data-testid="next-page"' in first and "Previous page" not in first
    second = api.get("/console/returns", params={"limit": "1", "offset": "1"}).text
    assert "Previous page" in second and 'data-testid="search-results"' in second
    assert f'href="/console/returns.csv?order_number={order}"' in found.text
    exported = api.get("/console/returns.csv", params={"order_number": order})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert held in exported.text and exported.text.startswith("return_id,")
