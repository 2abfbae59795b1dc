"""``/docs`` and ``/redoc`` in a real browser (headless Chromium): the pages must render the
OpenAPI 3.1 document, list the operations, and load nothing from outside the gateway. A status
200 is not enough: Swagger UI 4 answers 200 and then refuses 3.1 ("does not specify a valid
version field"). Screenshots land in tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from browser import screenshot
from gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    log = tmp_path_factory.mktemp("docs") / "gateway.log"
    with GatewayProcess(log_path=log) as proc:
        yield proc


def resources_outside(driver: WebDriver, base: str) -> list[str]:
    """URLs the page asked for anywhere but the gateway (a CDN, a validator badge, a logo)."""
    urls: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    origin = urlsplit(base).netloc
    return [
        u for u in urls if urlsplit(u).scheme in ("http", "https") and urlsplit(u).netloc != origin
    ]


def blocked_by_policy(driver: WebDriver) -> set[str]:
    """URLs the page's Content-Security-Policy stopped (this machine has no network, so a
    request that left would fail anyway: what shows it never leaves is the policy)."""
    blocked = set()
    for entry in driver.get_log("browser"):
        message = entry["message"]
        if "violates the following Content Security Policy" in message:
            blocked.add(message.split("'")[1])
    return blocked


def test_swagger_ui_lists_the_operations(gw: GatewayProcess, browser: WebDriver) -> None:
    browser.get(gw.url + "/docs")
    refusals = ".version-pragma, .errors-wrapper"  # "Unable to render this definition", ...
    try:
        WebDriverWait(browser, 20, poll_frequency=0.2).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f".opblock-summary-path, {refusals}"),
            message="Swagger UI rendered neither operations nor an error",
        )
    finally:
        screenshot(browser, "docs_swagger_ui")
    refused = browser.find_elements(By.CSS_SELECTOR, refusals)
    assert not refused, refused[0].text
    paths = {
        e.get_attribute("data-path")
        for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert {"/sessions/login", "/sessions/create", "/ws/health", "/api/register"} <= paths, paths
    assert browser.find_element(By.CSS_SELECTOR, ".info .title").text.startswith("pygw")
    # An operation opens and shows its request body schema.
    login = browser.find_element(
        By.CSS_SELECTOR, '.opblock-summary-path[data-path="/sessions/login"]'
    )
    login.click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, ".opblock.is-open .opblock-section-request-body"
        ),
        message="the login operation did not expand",
    )
    screenshot(browser, "docs_swagger_ui_login")
    # "Try it out" calls the gateway from the page: GET /ws/health answers 200.
    browser.find_element(By.CSS_SELECTOR, '.opblock-summary-path[data-path="/ws/health"]').click()
    block = '.opblock.is-open:has(.opblock-summary-path[data-path="/ws/health"])'
    WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"{block} .try-out__btn")
    ).pop().click()
    browser.find_element(By.CSS_SELECTOR, f"{block} .execute").click()
    status = WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, f"{block} .live-responses-table tbody .response-col_status"
        ),
        message="no live response to Execute",
    )
    screenshot(browser, "docs_swagger_ui_try_it_out")
    assert status[0].text.strip() == "200"
    body = browser.find_element(By.CSS_SELECTOR, f"{block} .live-responses-table .microlight")
    assert '"active_connections"' in body.text
    assert resources_outside(browser, gw.url) == []


def test_redoc_lists_the_operations(gw: GatewayProcess, browser: WebDriver) -> None:
    browser.get(gw.url + "/redoc")
    try:
        WebDriverWait(browser, 20, poll_frequency=0.2).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[data-section-id^='operation/']"),
            message="ReDoc rendered no operation",
        )
    finally:
        screenshot(browser, "docs_redoc")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "/sessions/login" in text and "Log in" in text
    # ReDoc shows its vendor's logo from cdn.redoc.ly: the page's policy keeps it from loading
    # (ReDoc then hides it).
    outside = resources_outside(browser, gw.url)
    assert set(outside) <= blocked_by_policy(browser), outside
