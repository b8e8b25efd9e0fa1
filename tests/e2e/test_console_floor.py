"""The store tablet and the warehouse dock in a real headless Chromium, on the embedded
stack: orders arrive on the orders topic, RMAs are made through the portal's HTTP API,
refunds settle through the PSP topic; each journey ends with a screenshot."""

from __future__ import annotations

import io
import uuid

import httpx
import psycopg
import pytest
from pypdf import PdfReader
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.e2e.builders import System, delivered_web_order, eventually
from tests.e2e.console import screenshot, sign_in, wait_for, wait_for_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def portal_rma(console: str, order_id: str, method: str, reason: str = "size_too_small") -> str:
    """An RMA for one item as the customer asks for it on the portal (HTTP)."""
    answer = httpx.post(
        f"{console}/v1/returns",
        json={
            "order_number": order_id,
            "lines": [{"line_no": 1, "quantity": 1, "reason": reason}],
            "method": method,
        },
        headers={
            "Authorization": "Bearer console-portal",
            "X-Customer-Email": f"{order_id.lower()}@example.com",
            "Idempotency-Key": str(uuid.uuid4()),
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    number: str = answer.json()["rma_number"]
    return number


def timeline_has_receipt(system: System, receipt_id: str) -> bool:
    with psycopg.connect(system.database_url) as conn:
        row = conn.execute(
            "SELECT 1 FROM rm_rma_timeline WHERE summary->>'receipt_id' = %s", (receipt_id,)
        ).fetchone()
    return row is not None


def click(browser: WebDriver, label: str) -> None:
    browser.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()


def choose(browser: WebDriver, field: str, value: str) -> None:
    Select(browser.find_element(By.ID, f"f-{field}")).select_by_value(value)


def test_store_finds_a_web_order_by_e_mail_returns_one_item_and_prints_the_receipt(
    system: System, console: str, browser: WebDriver
) -> None:
    order_id = delivered_web_order(system)
    sign_in(browser, console, "console-store-s1", then="/console/store")
    choose(browser, "by", "email")
    search = wait_for(browser, "#f-q")
    search.send_keys(f"{order_id.lower()}@example.com", Keys.ENTER)
    wait_for_text(browser, "h1", f"Order {order_id}")
    assert wait_for(browser, "[data-testid=order-type]").text == "Web order"
    assert wait_for(browser, "[data-testid=returnable-1]").text == "2"
    screenshot(browser, "store-order-page")

    wait_for(browser, "#f-qty-1").send_keys("1")
    choose(browser, "reason-1", "size_too_large")
    choose(browser, "condition-1", "resellable")
    click(browser, "Return these items")
    wait_for_text(browser, "[data-testid=receipt-done]", "Return recorded at store S1")
    rma = wait_for(browser, "[data-testid=receipt-rma]").text
    assert rma.startswith("RMA-")
    assert "TEE-BLUE-M" in wait_for(browser, "[data-testid=receipt-lines]").text
    printed = wait_for(browser, "[data-testid=print-receipt]")
    assert printed.text == "Print receipt"
    screenshot(browser, "store-return-one-item")

    # The printed receipt, fetched with the tablet's session as its link is followed.
    session = browser.get_cookie("oms_console")
    assert session
    pdf = httpx.get(
        str(printed.get_attribute("href")),
        headers={"Cookie": f"oms_console={session['value']}"},
        timeout=30,
    )
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert rma in text and "S1" in text

    # The order page now says one item is left to return and lists the return.
    browser.get(f"{console}/console/store/orders/{order_id}")
    assert wait_for(browser, "[data-testid=returnable-1]").text == "1"
    assert rma in wait_for(browser, "[data-testid=customer-returns]").text


def test_store_receives_a_store_method_rma_by_its_number(
    system: System, console: str, browser: WebDriver
) -> None:
    order_id = delivered_web_order(system)
    rma = portal_rma(console, order_id, "store")
    sign_in(browser, console, "console-store-s1", then="/console/store")
    choose(browser, "by", "rma_number")
    wait_for(browser, "#f-q").send_keys(rma, Keys.ENTER)
    wait_for_text(browser, "h1", f"RMA {rma}")
    assert wait_for(browser, "[data-testid=rma-status]").text == "authorized"
    assert wait_for(browser, "#f-qty-1").get_attribute("value") == "1"
    choose(browser, "condition-1", "new")
    click(browser, "Receive at this counter")
    wait_for_text(browser, "[data-testid=receipt-done]", f"under RMA {rma}")
    assert wait_for(browser, "[data-testid=print-receipt]").is_displayed()
    screenshot(browser, "store-receive-rma")
    state = system.service.get_return_by_rma(rma).state
    assert [(i.location_id, i.quantity) for i in state.inspected_items] == [("S1", 1)]


def test_warehouse_scans_receives_and_inspects_and_the_refund_closes_the_rma(
    system: System, console: str, browser: WebDriver
) -> None:
    order_id = delivered_web_order(system)
    rma = portal_rma(console, order_id, "carrier_drop_off")
    sign_in(browser, console, "console-warehouse", then="/console/warehouse")
    # A barcode scanner types the code and presses Enter.
    wait_for(browser, "#f-scan").send_keys(rma, Keys.ENTER)
    wait_for_text(browser, "h1", f"RMA {rma}")
    assert "TEE-BLUE-M" in wait_for(browser, "[data-testid=expected-lines]").text
    receipt_id = f"WMS-{uuid.uuid4().hex[:8]}"
    receipt = wait_for(browser, "#f-receipt_id")
    receipt.clear()
    receipt.send_keys(receipt_id)
    click(browser, "Record the receipt")
    wait_for_text(browser, "[data-testid=rma-status]", "received")
    choose(browser, "condition-1", "resellable")
    choose(browser, "disposition-1", "restock")
    click(browser, "Record the inspection")
    wait_for(browser, "[data-testid=refund-due]")

    # The refund goes to the PSP as any refund does: the sandbox provider settles (closing
    # the RMA) or declines it by itself, on psp.refunds.v1.
    final = eventually(
        lambda: (
            (status := system.service.get_return_by_rma(rma).state.status.value)
            in {"closed", "refund_failed"}
            and status
        ),
        what="the refund settled or declined by the sandbox",
    )
    browser.refresh()
    wait_for_text(browser, "[data-testid=rma-status]", final.replace("_", " "))
    screenshot(browser, "warehouse-receive-inspect")

    # The receipt id scans to its RMA too, once the timeline's read model has it.
    eventually(lambda: timeline_has_receipt(system, receipt_id), what="receipt in timeline")
    browser.get(f"{console}/console/warehouse")
    wait_for(browser, "#f-scan").send_keys(receipt_id, Keys.ENTER)
    wait_for_text(browser, "h1", f"RMA {rma}")
    actors = {
        e["actor"] for e in system.service.events_of(system.service.get_return_by_rma(rma).id)
    }
    assert "dock-wh1" in actors


def test_warehouse_moves_a_repair_leg_to_repaired_and_back_to_stock(
    system: System, console: str, browser: WebDriver
) -> None:
    order_id = delivered_web_order(system)
    rma = portal_rma(console, order_id, "carrier_drop_off", reason="defective")
    sign_in(browser, console, "console-warehouse", then="/console/warehouse")
    wait_for(browser, "#f-scan").send_keys(rma, Keys.ENTER)
    wait_for_text(browser, "h1", f"RMA {rma}")
    click(browser, "Record the receipt")
    wait_for_text(browser, "[data-testid=rma-status]", "received")
    choose(browser, "condition-1", "defective")
    choose(browser, "disposition-1", "repair")
    click(browser, "Record the inspection")
    wait_for(browser, "a[href*='/console/warehouse/legs/']").click()
    wait_for_text(browser, "[data-testid=leg-status]", "awaiting dispatch")
    wait_for(browser, "#f-repair_center").send_keys("FixIt Lyon")
    click(browser, "Sent to repair")
    wait_for_text(browser, "[data-testid=leg-status]", "at repair")
    choose(browser, "outcome", "repaired")
    click(browser, "Record the repair")
    wait_for_text(browser, "[data-testid=leg-status]", "repaired")
    wait_for(browser, "#f-location_id").send_keys("WH-1")
    click(browser, "Back in stock")
    wait_for_text(browser, "[data-testid=leg-status]", "restocked")
    assert wait_for(browser, "[data-testid=leg-done]").is_displayed()
    screenshot(browser, "warehouse-repair-leg")
