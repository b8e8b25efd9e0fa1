"""The store tablet and warehouse pages of the console, through HTTP on the real PostgreSQL:
their forms' errors, roles and scoping, double submits, and who is recorded as actor."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from adapters.driving.api import ApiSettings, KeyRing, create_api
from adapters.driving.api.auth import Principal, Role
from domain.application import ReturnsService
from domain.commands import ReceiveParcel, RecordInStoreReturn
from domain.events import ReceivedItem
from domain.returns import CounterCheck, RequestedLine
from domain.values import Condition, Disposition, ReasonCode, ReturnMethod
from tests.e2e.console import CONSOLE_KEYS
from tests.integration.builders import authorized_return, ctx, delivered_order

pytestmark = pytest.mark.timeout(180)

KEYS = {
    **CONSOLE_KEYS,
    "console-store-s2": Principal("tablet-S2", Role.STORE, store_id="S2"),
    "console-warehouse-2": Principal("dock-wh2", Role.WAREHOUSE, warehouse_id="WH-2"),
}


@pytest.fixture
def api(service: ReturnsService, database_url: str) -> Iterator[TestClient]:
    app = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, key: str) -> None:
    page = client.post("/console/sign-in", data={"api_key": key, "next": "/console"})
    assert page.status_code == 303, page.text


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden {name} in the page"
    return found.group(1)


def form_of(page: str, **fields: Any) -> dict[str, Any]:
    return {"csrf": hidden(page, "csrf"), "form_id": hidden(page, "form_id"), **fields}


def email_of(service: ReturnsService, number: str) -> str:
    return service.get_order(number).state.customer_email or ""


# ---------------------------------------------------------------- roles
@pytest.mark.parametrize("key", ["console-cs", "console-analytics"])
def test_customer_service_and_analytics_get_a_403_page_on_the_floor(
    api: TestClient, key: str
) -> None:
    sign_in(api, key)
    for path in ("/console/store", "/console/warehouse", "/console/warehouse/legs"):
        page = api.get(path)
        assert page.status_code == 403, path
        assert "Not for your role" in page.text
    assert 'href="/console/store"' not in api.get("/console").text


def test_the_store_and_the_warehouse_see_only_their_own_pages(api: TestClient) -> None:
    sign_in(api, "console-store-s1")
    assert 'href="/console/store"' in api.get("/console").text
    assert api.get("/console/warehouse").status_code == 403
    sign_in(api, "console-warehouse")
    assert 'href="/console/warehouse"' in api.get("/console").text
    assert api.get("/console/store").status_code == 403


# ---------------------------------------------------------------- the store tablet
def test_the_store_finds_a_web_order_by_e_mail_and_sees_its_type_and_lines(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    sign_in(api, "console-store-s1")
    found = api.get("/console/store", params={"by": "email", "q": email_of(service, number)})
    assert found.status_code == 303
    page = api.get(found.headers["location"])
    assert page.status_code == 200
    assert f"Order {number}" in page.text
    assert 'data-testid="order-type">Web order' in page.text
    assert 'data-testid="returnable-1">2' in page.text


def test_the_finder_says_beside_the_field_what_is_missing_or_not_found(api: TestClient) -> None:
    sign_in(api, "console-store-s1")
    empty = api.get("/console/store", params={"by": "email", "q": ""})
    assert empty.status_code == 422
    assert 'id="e-q"' in empty.text and "enter the e-mail" in empty.text
    unknown = api.get("/console/store", params={"by": "order_number", "q": "NOPE-1"})
    assert unknown.status_code == 404
    assert 'aria-invalid="true"' in unknown.text and "no order found" in unknown.text


def test_a_counter_return_of_one_item_is_recorded_once_as_the_clerk(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    sign_in(api, "console-store-s1")
    page = api.get(f"/console/store/orders/{number}").text
    form = form_of(
        page,
        store="S1",
        whole="0",
        **{
            "qty-1": "1",
            "reason-1": "size_too_small",
            "condition-1": "resellable",
            "disposition-1": "restock",
            "refund_method": "original_payment",
        },
    )
    first = api.post(f"/console/store/orders/{number}/return", data=form)
    again = api.post(f"/console/store/orders/{number}/return", data=form)  # a double tap
    assert first.status_code == again.status_code == 303, first.text
    assert first.headers["location"] == again.headers["location"]
    receipt = api.get(first.headers["location"])
    assert receipt.status_code == 200
    assert "Print receipt" in receipt.text
    # Handed over at the counter: nothing is left "to bring", on the page or on paper.
    assert "to bring" not in receipt.text
    pdf_link = re.search(r'href="([^"]*format=pdf)"', receipt.text)
    assert pdf_link
    printed = api.get(pdf_link.group(1).replace("&amp;", "&"))
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(printed.content)).pages)
    assert "SHOE-RED-42" in text and "to bring" not in text
    view = service.order_view(number)
    assert view["lines"][0]["returnable_quantity"] == 1  # one item returned, not two
    (return_id,) = view["returns"]
    actors = {e["actor"] for e in service.events_of(uuid.UUID(return_id))}
    assert actors == {"tablet-S1"}


def test_the_whole_order_returns_every_returnable_item(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    sign_in(api, "console-store-s1")
    page = api.get(f"/console/store/orders/{number}").text
    form = form_of(
        page,
        store="S1",
        whole="1",
        **{"reason-1": "changed_mind", "condition-1": "new", "disposition-1": "restock"},
        refund_method="store_credit",
    )
    assert api.post(f"/console/store/orders/{number}/return", data=form).status_code == 303
    assert service.order_view(number)["lines"][0]["returnable_quantity"] == 0


def test_the_return_form_shows_each_error_beside_its_field(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    sign_in(api, "console-store-s1")
    page = api.get(f"/console/store/orders/{number}").text
    base = {"store": "S1", "whole": "0", "refund_method": "original_payment"}
    too_many = api.post(
        f"/console/store/orders/{number}/return",
        data=form_of(page, **base, **{"qty-1": "3", "reason-1": "other"}),
    )
    assert too_many.status_code == 422
    assert 'id="e-qty-1"' in too_many.text and "at most 2" in too_many.text
    no_reason = api.post(
        f"/console/store/orders/{number}/return",
        data=form_of(page, **base, **{"qty-1": "1", "reason-1": ""}),
    )
    assert no_reason.status_code == 422
    assert 'id="e-reason-1"' in no_reason.text and "choose the reason" in no_reason.text
    nothing = api.post(
        f"/console/store/orders/{number}/return", data=form_of(page, **base, **{"qty-1": "0"})
    )
    assert nothing.status_code == 422
    assert 'class="problem"' in nothing.text and "nothing to return" in nothing.text
    assert service.order_view(number)["returns"] == []


def test_a_store_key_works_at_its_own_counter_and_sees_no_other_stores_rma(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    outcome = service.run(
        ctx(),
        RecordInStoreReturn(
            store_return_id=f"S2-{uuid.uuid4().hex[:8]}",
            store_id="S2",
            staff_id="s2-clerk",
            order_number=number,
            lines=(RequestedLine(1, 1, ReasonCode.CHANGED_MIND),),
            checks=(CounterCheck(1, 1, Condition.NEW, Disposition.RESTOCK),),
        ),
    )
    assert outcome.rma_number
    sign_in(api, "console-store-s1")
    assert api.get(f"/console/store/rmas/{outcome.rma_number}").status_code == 403
    assert api.get(f"/console/store/orders/{number}?store=S2").status_code == 403
    order_page = api.get(f"/console/store/orders/{number}")
    assert outcome.rma_number not in order_page.text  # S2's return is not listed to S1
    sign_in(api, "console-store-s2")
    assert outcome.rma_number in api.get(f"/console/store/orders/{number}").text


def test_a_store_method_rma_is_received_at_the_counter_and_its_receipt_printed(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    rma = authorized_return(service, number, quantity=1, method=ReturnMethod.STORE).rma_number
    assert rma
    sign_in(api, "console-store-s1")
    found = api.get("/console/store", params={"by": "rma_number", "q": rma})
    assert found.status_code == 303
    page = api.get(found.headers["location"])
    assert page.status_code == 200 and f"RMA {rma}" in page.text
    form = form_of(
        page.text,
        store="S1",
        refund_method="",
        **{"qty-1": "1", "condition-1": "resellable", "disposition-1": "restock"},
    )
    first = api.post(f"/console/store/rmas/{rma}/receive", data=form)
    again = api.post(f"/console/store/rmas/{rma}/receive", data=form)
    assert first.status_code == again.status_code == 303, first.text
    assert first.headers["location"] == again.headers["location"]
    receipt = api.get(first.headers["location"])
    assert rma in receipt.text
    pdf_link = re.search(r'href="([^"]*format=pdf)"', receipt.text)
    assert pdf_link
    printed = api.get(pdf_link.group(1).replace("&amp;", "&"))
    assert printed.status_code == 200
    assert printed.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(printed.content)).pages)
    assert rma in text and "S1" in text
    html_link = re.search(r'href="([^"]*format=html)"', receipt.text)
    assert html_link
    as_page = api.get(html_link.group(1).replace("&amp;", "&"))
    assert rma in as_page.text
    # Its own <style> may apply; still no script may run in it.
    policy = as_page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    events = service.events_of(service.get_return_by_rma(rma).id)
    counter = [e for e in events if e["actor"] == "tablet-S1"]
    assert counter and all(e["source"] == "console/store" for e in counter)


def test_a_carrier_rma_is_refused_at_the_counter_with_the_reason(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service)
    rma = authorized_return(service, number, method=ReturnMethod.CARRIER_DROP_OFF).rma_number
    sign_in(api, "console-store-s1")
    page = api.get(f"/console/store/rmas/{rma}")
    assert page.status_code == 200
    assert 'data-testid="refusal"' in page.text
    assert "Receive at this counter" not in page.text


# ---------------------------------------------------------------- the warehouse
def dock_form(page: str, **fields: Any) -> dict[str, Any]:
    return form_of(page, **fields)


def test_the_warehouse_scans_receives_and_inspects_an_rma_once_as_the_dock(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    rma = authorized_return(service, number, quantity=2).rma_number
    assert rma
    sign_in(api, "console-warehouse")
    scanned = api.get("/console/warehouse", params={"scan": rma})
    assert scanned.status_code == 303
    page = api.get(scanned.headers["location"]).text
    assert 'data-testid="expected-lines"' in page and "SHOE-RED-42" in page
    receipt_id = f"WMS-{uuid.uuid4().hex[:8]}"
    form = dock_form(page, receipt_id=receipt_id, tracking="", **{"qty-1": "2", "serial-1": ""})
    first = api.post(f"/console/warehouse/rmas/{rma}/receive", data=form)
    again = api.post(f"/console/warehouse/rmas/{rma}/receive", data=form)
    assert first.status_code == again.status_code == 303, first.text
    state = service.get_return_by_rma(rma).state
    assert state.receipts == [receipt_id] and state.status.value == "received"
    page = api.get(f"/console/warehouse/rmas/{rma}").text
    assert f"Inspect receipt {receipt_id}" in page
    inspect = dock_form(
        page,
        receipt_id=receipt_id,
        **{"inspect-1": "2", "condition-1": "resellable", "disposition-1": "restock"},
    )
    first = api.post(f"/console/warehouse/rmas/{rma}/inspect", data=inspect)
    again = api.post(f"/console/warehouse/rmas/{rma}/inspect", data=inspect)
    assert first.status_code == again.status_code == 303, first.text
    rma_state = service.get_return_by_rma(rma)
    assert sum(i.quantity for i in rma_state.state.inspected_items) == 2
    assert rma_state.state.status.value in ("refund_pending", "inspected")
    assert len(rma_state.state.refunds) == 1
    dock = [e for e in service.events_of(rma_state.id) if e["actor"] == "dock-wh1"]
    assert {e["type"] for e in dock} >= {"rma.parcel_received", "rma.items_inspected"}


def test_the_dock_forms_show_their_errors_beside_the_fields(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    rma = authorized_return(service, number, quantity=1).rma_number
    sign_in(api, "console-warehouse")
    page = api.get(f"/console/warehouse/rmas/{rma}").text
    bad = api.post(
        f"/console/warehouse/rmas/{rma}/receive",
        data=dock_form(page, receipt_id="", **{"qty-1": "x"}),
    )
    assert bad.status_code == 422
    assert 'id="e-receipt_id"' in bad.text and 'id="e-qty-1"' in bad.text
    empty_scan = api.get("/console/warehouse", params={"scan": " "})
    assert empty_scan.status_code == 422 and 'id="e-scan"' in empty_scan.text
    unknown = api.get("/console/warehouse", params={"scan": "NO-SUCH-CODE"})
    assert unknown.status_code == 404 and "no RMA or receipt NO-SUCH-CODE" in unknown.text
    assert service.get_return_by_rma(rma or "").state.receipts == []


def test_a_warehouse_key_sees_only_rmas_heading_to_its_warehouse(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service)
    rma = authorized_return(service, number).rma_number
    heading_to = service.get_return_by_rma(rma or "").state.destination_warehouse
    assert heading_to == "WH-1"
    sign_in(api, "console-warehouse-2")
    assert api.get(f"/console/warehouse/rmas/{rma}").status_code == 403
    sign_in(api, "console-warehouse")
    assert api.get(f"/console/warehouse/rmas/{rma}").status_code == 200


def test_a_repair_leg_is_sent_repaired_and_restocked_from_the_dock(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=1)
    rma = authorized_return(service, number, quantity=1, reason=ReasonCode.DEFECTIVE).rma_number
    assert rma
    sign_in(api, "console-warehouse")
    page = api.get(f"/console/warehouse/rmas/{rma}").text
    receipt_id = f"WMS-{uuid.uuid4().hex[:8]}"
    received = api.post(
        f"/console/warehouse/rmas/{rma}/receive",
        data=dock_form(page, receipt_id=receipt_id, **{"qty-1": "1"}),
    )
    assert received.status_code == 303, received.text
    page = api.get(f"/console/warehouse/rmas/{rma}").text
    inspected = api.post(
        f"/console/warehouse/rmas/{rma}/inspect",
        data=dock_form(
            page,
            receipt_id=receipt_id,
            **{"inspect-1": "1", "condition-1": "defective", "disposition-1": "repair"},
        ),
    )
    assert inspected.status_code == 303, inspected.text
    (leg_id,) = service.get_return_by_rma(rma).state.legs
    leg_path = f"/console/warehouse/legs/{rma}/{leg_id}"

    def step(name: str, **fields: str) -> Any:
        page = api.get(leg_path).text
        return api.post(f"{leg_path}/{name}", data=form_of(page, **fields))

    missing = step("repair-sent", repair_center="")
    assert missing.status_code == 422 and 'id="e-repair_center"' in missing.text
    sent_form = form_of(api.get(leg_path).text, repair_center="FixIt", reference="FX-1")
    sent = api.post(f"{leg_path}/repair-sent", data=sent_form)
    again = api.post(f"{leg_path}/repair-sent", data=sent_form)  # a double tap
    assert sent.status_code == again.status_code == 303, again.text
    sent_events = [
        e
        for e in service.events_of(service.get_return_by_rma(rma).id)
        if e["actor"] == "dock-wh1" and "repair" in e["type"]
    ]
    assert len(sent_events) == 1, sent_events
    assert step("repair-completed", outcome="repaired").status_code == 303
    too_early = step("repair-sent", repair_center="FixIt")  # a stale page's step
    assert too_early.status_code == 422 and 'class="problem"' in too_early.text
    assert step("restocked", location_id="WH-1").status_code == 303
    leg = service.get_return_by_rma(rma).state.legs[leg_id]
    assert leg.status == "restocked"
    assert "Nothing more to do" in api.get(leg_path).text


def test_a_vendor_leg_is_shipped_and_credited_with_the_amount_checked(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=1)
    rma = authorized_return(service, number, quantity=1, reason=ReasonCode.DEFECTIVE).rma_number
    assert rma
    sign_in(api, "console-admin")  # admin: says which warehouse receives
    page = api.get(f"/console/warehouse/rmas/{rma}").text
    receipt_id = f"WMS-{uuid.uuid4().hex[:8]}"
    no_warehouse = api.post(
        f"/console/warehouse/rmas/{rma}/receive",
        data=form_of(page, warehouse="", receipt_id=receipt_id, **{"qty-1": "1"}),
    )
    assert no_warehouse.status_code == 422 and 'id="e-warehouse"' in no_warehouse.text
    received = api.post(
        f"/console/warehouse/rmas/{rma}/receive",
        data=form_of(page, warehouse="WH-1", receipt_id=receipt_id, **{"qty-1": "1"}),
    )
    assert received.status_code == 303, received.text
    page = api.get(f"/console/warehouse/rmas/{rma}").text
    fields = {"inspect-1": "1", "condition-1": "defective", "disposition-1": "return_to_vendor"}
    inspected = api.post(
        f"/console/warehouse/rmas/{rma}/inspect",
        data=form_of(page, warehouse="WH-1", receipt_id=receipt_id, **fields),
    )
    assert inspected.status_code == 303, inspected.text
    (leg_id,) = service.get_return_by_rma(rma).state.legs
    leg_path = f"/console/warehouse/legs/{rma}/{leg_id}"

    def step(name: str, **fields: str) -> Any:
        page = api.get(leg_path).text
        return api.post(f"{leg_path}/{name}", data=form_of(page, **fields))

    assert step("vendor-shipped", reference="ACME-RMA-7").status_code == 303
    bad = step("vendor-credited", amount="twelve")
    assert bad.status_code == 422 and 'id="e-amount"' in bad.text
    assert step("vendor-credited", amount="12.50", reference="CN-1").status_code == 303
    leg = service.get_return_by_rma(rma).state.legs[leg_id]
    assert leg.status == "credited" and leg.credit is not None
    assert str(leg.credit.amount) == "12.50"
    listed = api.get("/console/warehouse/legs").text
    assert f"{rma} {leg_id}" not in listed  # ended: off the open legs


def test_an_admin_says_which_counter_and_a_store_key_cannot_name_another(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    line = {"qty-1": "1", "reason-1": "other", "condition-1": "new", "disposition-1": "restock"}
    sign_in(api, "console-admin")
    page = api.get(f"/console/store/orders/{number}").text
    unnamed = api.post(
        f"/console/store/orders/{number}/return",
        data=form_of(page, store="", whole="0", refund_method="original_payment", **line),
    )
    assert unnamed.status_code == 422 and 'id="e-store"' in unnamed.text
    named = api.post(
        f"/console/store/orders/{number}/return",
        data=form_of(page, store="S3", whole="0", refund_method="original_payment", **line),
    )
    assert named.status_code == 303 and named.headers["location"].startswith(
        "/console/store/receipts/S3/"
    )
    sign_in(api, "console-store-s1")
    page = api.get(f"/console/store/orders/{number}").text
    elsewhere = api.post(
        f"/console/store/orders/{number}/return",
        data=form_of(page, store="S2", whole="0", refund_method="original_payment", **line),
    )
    assert elsewhere.status_code == 403
    assert api.get(named.headers["location"]).status_code == 403  # S3's receipt
    assert service.order_view(number)["lines"][0]["returnable_quantity"] == 1


def test_a_form_without_its_one_time_id_is_refused_and_records_nothing(
    api: TestClient, service: ReturnsService
) -> None:
    number = delivered_order(service, quantity=2)
    sign_in(api, "console-store-s1")
    page = api.get(f"/console/store/orders/{number}").text
    form = form_of(
        page,
        store="S1",
        whole="0",
        refund_method="original_payment",
        **{"qty-1": "1", "reason-1": "other", "condition-1": "new", "disposition-1": "restock"},
    )
    form["form_id"] = "not-one-we-drew"
    refused = api.post(f"/console/store/orders/{number}/return", data=form)
    assert refused.status_code == 422
    assert 'class="problem"' in refused.text and "reload the page" in refused.text
    assert service.order_view(number)["returns"] == []


def test_a_blind_parcel_scanned_by_receipt_id_says_customer_service_matches_it(
    api: TestClient, service: ReturnsService
) -> None:
    receipt_id = f"BL-{uuid.uuid4().hex[:10]}"
    service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=receipt_id,
            warehouse_id="WH-1",
            rma_number=None,
            tracking_number=None,
            items=(ReceivedItem(sku="MYSTERY-1", quantity=1),),
        ),
    )
    sign_in(api, "console-warehouse")
    scanned = api.get("/console/warehouse", params={"scan": receipt_id})
    assert scanned.status_code == 303
    page = api.get(scanned.headers["location"]).text
    assert 'data-testid="blind"' in page and receipt_id in page
    assert "receive-form" not in page and "inspect-form" not in page
