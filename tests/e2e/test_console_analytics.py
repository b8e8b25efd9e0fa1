"""The analytics page in a real headless Chromium: an analyst picks a period and a dimension
and reads a return (from an order on oms.orders.v1, requested over HTTP) in the figures,
the table and the server-drawn bars; a period the wrong way round is refused beside its
field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

from adapters.driven.kafka.topics import ORDERS
from tests.e2e.builders import System, eventually, publish
from tests.e2e.console import screenshot, sign_in, wait_for
from tests.integration.builders import amount, cloud_event, order_delivered, order_fulfilled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def a_returned_sku(system: System, console: str) -> tuple[str, str]:
    """An order of 4 units of a SKU of its own, placed two days ago on the orders topic,
    and a return of 1 over HTTP: the SKU and the day of the sale."""
    run = uuid.uuid4().hex[:8]
    sku, order = f"CON-{run}", f"CON-{run}-1"
    placed = cloud_event(
        "order.placed",
        {
            "order_id": order,
            "customer_id": f"cust-{order}",
            "channel": "web",
            "customer_email": f"{order.lower()}@example.com",
            "lines": [
                {
                    "line_no": 1,
                    "sku": sku,
                    "quantity": 4,
                    "unit_price": amount("25.00"),
                    "supplier": f"Sup-{run}",
                    "category": "console-e2e",
                }
            ],
            "payments": [{"payment_id": "pay-1", "method": "card", "amount": amount("100.00")}],
            "shipping": amount("0.00"),
        },
        source="commerce/web",
        time=datetime.now(UTC) - timedelta(days=2),
    )
    publish(
        system.bootstrap,
        ORDERS,
        [placed, order_fulfilled(order, 4), order_delivered(order, days_ago=1)],
        key=order.encode(),
    )

    def requested() -> bool:
        # Through the API the console is served with, as customer service would.
        answer = httpx.post(
            f"{console}/v1/returns",
            json={
                "order_number": order,
                "lines": [{"line_no": 1, "quantity": 1, "reason": "not_as_described"}],
            },
            headers={"Authorization": "Bearer console-cs"},
            timeout=30,
        )
        return answer.status_code == 201

    eventually(requested, what=f"a return of {order} (once the order is delivered)")
    return sku, (datetime.now(UTC) - timedelta(days=2)).date().isoformat()


def test_an_analyst_reads_a_period_by_sku_in_figures_table_and_bars(
    console: str, browser: WebDriver, system: System
) -> None:
    sku, sale_day = a_returned_sku(system, console)
    today = datetime.now(UTC).date().isoformat()
    period = f"from={sale_day}&to={today}"
    sign_in(browser, console, "console-analytics", then=f"/console/analytics?{period}")

    def shown() -> bool:
        # The figures trail the events by the projections' lag: the analyst reloads.
        browser.get(f"{console}/console/analytics?{period}&group_by=sku")
        return bool(browser.find_elements(By.CSS_SELECTOR, f'tr[data-key="{sku}"]'))

    eventually(shown, timeout=120, what=f"{sku} on the analytics page")
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, f'tr[data-key="{sku}"] td')]
    # Returns, units, refused lines, units sold, rate: 1 of 4 sold.
    assert cells == ["1", "1", "0", "4", "25.0 %"]
    bar = wait_for(browser, f'#returns-chart g[data-label="{sku}"] rect')
    assert int(bar.get_attribute("width") or 0) > 0
    assert browser.find_element(By.ID, "f-from").get_attribute("value") == sale_day

    # The picker: another dimension, sent as a person does (the form, then Show).
    Select(browser.find_element(By.ID, "f-group_by")).select_by_value("category")
    browser.find_element(By.CSS_SELECTOR, "form.period button").click()
    row = wait_for(browser, 'tr[data-key="console-e2e"]')
    assert "group_by=category" in browser.current_url and "25.0 %" in row.text
    screenshot(browser, "analytics-period-by-category")

    browser.get(f"{console}/console/analytics?from={today}&to={sale_day}")
    error = wait_for(browser, "#e-to")
    assert "is after" in error.text
    assert browser.find_element(By.ID, "f-to").get_attribute("aria-invalid") == "true"
