"""Customer service's journeys in a real headless Chromium, against the running stack:
orders come through the orders topic, parcels through the warehouse topic, RMAs through
HTTP; the person then works in the console. Each journey ends with a screenshot."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS
from tests.e2e.builders import System, eventually, publish
from tests.e2e.console import screenshot, sign_in, wait_for, wait_for_text
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
AGENT = {"Authorization": "Bearer console-cs"}


def delivered_order(system: System, *, price: str = "30.00") -> str:
    """An order placed, shipped and delivered through the orders topic (keyed by order)."""
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        ORDERS,
        [
            m.order_placed(order_id, price=price),
            m.order_fulfilled(order_id),
            m.order_delivered(order_id),
        ],
        key=order_id.encode(),
    )

    def delivered() -> bool:
        try:
            return system.service.order_view(order_id)["delivered_at"] is not None
        except Exception:
            return False

    eventually(delivered, what=f"{order_id} delivered")
    return order_id


def queue_holds(console: str, queue: str, return_id: str) -> bool:
    answer = httpx.get(f"{console}/v1/queues/{queue}", headers=AGENT, params={"limit": 200})
    items: list[dict[str, Any]] = answer.json()["items"]
    return any(item["return_id"] == return_id for item in items)


def test_a_held_rma_found_in_its_queue_is_approved_and_shows_the_agent(
    system: System, console: str, browser: WebDriver
) -> None:
    order = delivered_order(system, price="1500.00")
    requested = httpx.post(
        f"{console}/v1/returns",
        headers=AGENT,
        json={
            "order_number": order,
            "lines": [{"line_no": 1, "quantity": 1, "reason": "defective"}],
        },
    )
    assert requested.status_code == 201 and requested.json()["status"] == "pending_review"
    return_id = requested.json()["return_id"]
    eventually(lambda: queue_holds(console, "held_for_review", return_id), what="queued")

    sign_in(browser, console, "console-cs", then="/console/queues/held_for_review")
    browser.find_element(By.CSS_SELECTOR, f'a[href="/console/returns/{return_id}"]').click()
    wait_for_text(browser, "[data-testid=rma-status]", "pending review")
    assert "Held for review" in wait_for(browser, "[data-testid=timeline]").text
    browser.find_element(By.CSS_SELECTOR, "[data-testid=approve]").click()

    wait_for_text(browser, "[data-testid=done]", "Approved")
    assert wait_for(browser, "[data-testid=rma-status]").text == "authorized"
    timeline = wait_for(browser, "[data-testid=timeline]").text
    assert "Authorized as RMA-" in timeline and "agent-ann" in timeline
    assert browser.find_element(By.LINK_TEXT, "Return note (PDF)")
    screenshot(browser, "customer-service-approve-held")


def test_an_rma_is_created_for_a_caller(system: System, console: str, browser: WebDriver) -> None:
    order = delivered_order(system)
    sign_in(browser, console, "console-cs", then="/console/returns/new")
    field = wait_for(browser, "#f-order_number")
    field.send_keys(order)
    field.submit()
    wait_for(browser, "[data-testid=order-lines]")

    quantity = browser.find_element(By.ID, "f-quantity-1")
    quantity.clear()
    quantity.send_keys("1")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=create]").click()
    # Forgot the reason: told beside the line, nothing created.
    assert "choose why the item comes back" in wait_for(browser, "#e-reason-1").text
    assert system.service.order_view(order)["returns"] == []
    Select(browser.find_element(By.ID, "f-reason-1")).select_by_value("size_too_small")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=create]").click()

    wait_for_text(browser, "[data-testid=done]", "The RMA is created.")
    assert wait_for(browser, "[data-testid=rma-status]").text == "authorized"
    assert "size too small" in browser.find_element(By.TAG_NAME, "main").text
    assert "agent-ann" in wait_for(browser, "[data-testid=timeline]").text
    (return_id,) = system.service.order_view(order)["returns"]
    assert system.service.get_return(uuid.UUID(return_id)).state.channel == "customer_service"
    screenshot(browser, "customer-service-new-rma")

    # Found again by its order in the search, once the read model has it.
    eventually(
        lambda: httpx.get(
            f"{console}/v1/returns", headers=AGENT, params={"order_number": order}
        ).json()["items"],
        what="the RMA in the search",
    )
    browser.find_element(By.LINK_TEXT, "Find returns").click()
    field = wait_for(browser, "#f-order_number")
    field.send_keys(order)
    field.submit()
    results = wait_for(browser, "[data-testid=search-results]").text
    assert order in results and "authorized" in results
    assert browser.find_element(By.PARTIAL_LINK_TEXT, "Download this search as CSV")
    screenshot(browser, "customer-service-search")


def test_a_blind_parcel_is_matched_from_a_suggestion(
    system: System, console: str, browser: WebDriver
) -> None:
    order = delivered_order(system)
    receipt = f"REC-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.parcel_received(receipt, None)],
        key=receipt.encode(),
    )
    blind = eventually(
        lambda: next(
            (
                item["return_id"]
                for item in httpx.get(
                    f"{console}/v1/queues/blind_unmatched",
                    headers=AGENT,
                    params={"limit": 200},
                ).json()["items"]
                if item["status"] == "blind_unmatched"
                and system.service.get_return(uuid.UUID(item["return_id"])).state.blind_receipt_id
                == receipt
            ),
            None,
        ),
        what="the parcel in the blind queue",
    )

    sign_in(browser, console, "console-cs", then="/console/queues/blind_unmatched")
    # The queue opens a blind parcel's matching page; its RMA page links there too.
    browser.find_element(By.CSS_SELECTOR, f'a[href="/console/blind/{blind}"]').click()
    assert order in wait_for(browser, "[data-testid=suggestions]").text
    browser.get(f"{console}/console/returns/{blind}")
    wait_for(browser, "[data-testid=match-link]").click()
    assert order in wait_for(browser, "[data-testid=suggestions]").text
    screenshot(browser, "customer-service-blind-suggestions")
    browser.find_element(By.CSS_SELECTOR, f'[data-testid="match-{order}"]').click()

    wait_for_text(browser, "[data-testid=done]", "matched to its order")
    assert wait_for(browser, "[data-testid=rma-status]").text != "blind unmatched"
    timeline = wait_for(browser, "[data-testid=timeline]").text
    assert f"Matched to order {order}" in timeline and "agent-ann" in timeline
    screenshot(browser, "customer-service-blind-match")


def test_a_failed_refund_is_paid_as_store_credit(
    system: System, console: str, browser: WebDriver
) -> None:
    # The sandbox provider declines card refunds above 5000: this one fails for real.
    order = delivered_order(system, price="6000.00")
    requested = httpx.post(
        f"{console}/v1/returns",
        headers=AGENT,
        json={
            "order_number": order,
            "lines": [{"line_no": 1, "quantity": 1, "reason": "defective"}],
        },
    )
    assert requested.status_code == 201, requested.text
    return_id = requested.json()["return_id"]
    approved = httpx.post(
        f"{console}/v1/returns/{return_id}/approve",
        headers={**AGENT, "If-Match": requested.headers["ETag"]},
    )
    assert approved.status_code == 200, approved.text
    rma_number = approved.json()["rma_number"]
    receipt = f"REC-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.parcel_received(receipt, rma_number), m.items_inspected(receipt, rma_number)],
        key=receipt.encode(),
    )
    eventually(lambda: queue_holds(console, "refunds_failed", return_id), what="refund failed")

    sign_in(browser, console, "console-cs", then="/console/queues/refunds_failed")
    browser.find_element(By.CSS_SELECTOR, f'a[href="/console/returns/{rma_number}"]').click()
    wait_for_text(browser, "[data-testid=rma-status]", "refund failed")
    assert "need manual review" in wait_for(browser, "[data-testid=timeline]").text
    browser.find_element(By.CSS_SELECTOR, "[data-testid=store-credit]").click()

    wait_for_text(browser, "[data-testid=done]", "paid as store credit")
    timeline = wait_for(browser, "[data-testid=timeline]").text
    assert "Store credit of 6004.90 EUR issued" in timeline  # the goods and the shipping
    assert "agent-ann (console/customer_service)" in timeline
    assert "refund failed" not in wait_for(browser, "[data-testid=rma-status]").text
    screenshot(browser, "customer-service-refund-as-store-credit")
