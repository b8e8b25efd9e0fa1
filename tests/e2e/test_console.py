"""The console in a real headless Chromium: signing in and out, and the queues' partial
refresh (htmx) on the customer-service start page."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.console import screenshot, sign_in, wait_for, wait_for_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_customer_service_signs_in_sees_the_queues_and_signs_out(
    console: str, browser: WebDriver
) -> None:
    browser.delete_all_cookies()
    browser.get(f"{console}/console/queues")
    field = wait_for(browser, "#f-api_key")
    field.send_keys("not-a-key")
    field.submit()
    error = wait_for(browser, "#e-api_key")
    assert error.text == "this key is not a staff key we know"
    assert wait_for(browser, "#f-api_key").get_attribute("aria-invalid") == "true"

    sign_in(browser, console, "console-cs", then="/console/queues")
    assert browser.current_url.endswith("/console/queues")
    assert "agent-ann" in wait_for(browser, "[data-testid=who]").text
    (cookie,) = [c for c in browser.get_cookies() if c["name"] == "oms_console"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read it
    held = browser.find_element(By.CSS_SELECTOR, "[data-queue=held_for_review]")
    assert held.text.isdigit()

    # The start page loads the queue counts as a fragment (htmx), not with the page.
    browser.get(f"{console}/console")
    wait_for(browser, "[data-testid=queue-summary]")
    assert browser.find_elements(By.CSS_SELECTOR, "main table caption")
    screenshot(browser, "customer-service-start")

    browser.find_element(By.CSS_SELECTOR, ".who button").click()
    wait_for(browser, "#f-api_key")
    browser.get(f"{console}/console")
    wait_for_text(browser, "h1", "Sign in")  # the session is over, not just the cookie


def test_a_person_signs_in_and_moves_around_with_the_keyboard_alone(
    console: str, browser: WebDriver
) -> None:
    browser.delete_all_cookies()
    browser.get(f"{console}/console")
    wait_for(browser, "#f-api_key")
    # The key field has the focus when the page opens: type and press Enter.
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "f-api_key"
    focused.send_keys("console-warehouse", Keys.ENTER)
    wait_for(browser, "[data-testid=who]")
    # Tab from the top reaches the skip link, then the console's links: Enter follows one.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    reached = []
    for _ in range(8):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(browser.switch_to.active_element.text)
        if reached[-1] == "Repair and vendor legs":
            break
    assert "Repair and vendor legs" in reached, reached
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/console/warehouse/legs"))
    screenshot(browser, "warehouse-keyboard-legs")
