"""Driving the staff console in a real headless Chromium (Debian's chromium and
chromedriver, installed by ``./run test``), against the session's embedded stack.

Every journey ends with ``screenshot(driver, name)``: the pictures are written under
``test-output/screenshots/`` (or ``$OMS_TEST_OUTPUT/screenshots``) for people to look at.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from adapters.driving.api.auth import Principal, Role

ROOT = Path(__file__).resolve().parents[2]

# Plain keys of the console tests' people (hashed into the served API's key ring).
CONSOLE_KEYS = {
    "console-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "console-store-s1": Principal("tablet-S1", Role.STORE, store_id="S1"),
    "console-warehouse": Principal("dock-wh1", Role.WAREHOUSE, warehouse_id="WH-1"),
    "console-analytics": Principal("analyst-ada", Role.ANALYTICS),
    "console-admin": Principal("admin-al", Role.ADMIN),
    "console-portal": Principal("portal-web", Role.PORTAL),
}
# A loaded 2-core machine renders slowly: generous, but a hang still fails fast.
WAIT_S = 30


def output_dir() -> Path:
    return Path(os.environ.get("OMS_TEST_OUTPUT") or ROOT / "test-output")


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """Headless Chromium with the flags this machine needs: no sandbox (root in CI), and
    nothing that reaches for the closed network at start (each refused connection costs
    time and log noise)."""
    with tempfile.TemporaryDirectory(prefix="oms-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--window-size=1024,1366",  # a tablet held upright
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        driver.set_page_load_timeout(WAIT_S)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for(driver: WebDriver, css: str, timeout: float = WAIT_S) -> WebElement:
    element: WebElement = WebDriverWait(driver, timeout).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
    )
    return element


def wait_for_text(driver: WebDriver, css: str, text: str, timeout: float = WAIT_S) -> None:
    WebDriverWait(driver, timeout).until(
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
    )


def sign_in(driver: WebDriver, base: str, key: str, then: str = "/console") -> None:
    """Sign in through the form, as a person does, and land on ``then``."""
    driver.delete_all_cookies()
    driver.get(f"{base}{then}")
    field = wait_for(driver, "#f-api_key")  # the console sent us to sign in
    field.send_keys(key)
    field.submit()
    WebDriverWait(driver, WAIT_S).until(lambda d: "/sign-in" not in d.current_url)
    wait_for(driver, "[data-testid=who]")


def screenshot(driver: WebDriver, name: str) -> Path:
    folder = output_dir() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    # The whole page, not the window: set the window to the document's height first.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(int(height) + 120, 800))
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    return path
