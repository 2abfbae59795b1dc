"""The browser chat example (``/examples/chat.html``, served by pygw with the JS client) in two
real headless Chromium pages: one user registers on the page, the other signs in; both see
each other online and exchange messages through pygw. Screenshots in tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from browser import by_id, chromium, screenshot, wait_for
from conftest import register, unique
from gateway_process import GatewayProcess

PASSWORD = "correct-horse-1"
NAMESPACES = [{"name": "room", "history_size": 100, "history_ttl": 600, "presence": True}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    log = tmp_path_factory.mktemp("chat") / "gateway.log"
    with GatewayProcess(
        env={"PYGW_NAMESPACES": orjson.dumps(NAMESPACES).decode()}, log_path=log
    ) as proc:
        yield proc


@pytest.fixture
def second_browser() -> Iterator[WebDriver]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def messages(driver: WebDriver) -> list[str]:
    return [str(li.text) for li in driver.find_elements(By.CSS_SELECTOR, "#messages li")]


def open_chat(driver: WebDriver, base: str, username: str, room: str, button: str) -> None:
    driver.get(base + "/examples/chat.html")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    room_input = driver.find_element(By.ID, "room")
    room_input.clear()
    room_input.send_keys(room)
    driver.find_element(By.ID, button).click()
    wait_for(driver, f"{username} connected", lambda d: by_id(d, "status") == "connected")


def say(driver: WebDriver, text: str) -> None:
    driver.find_element(By.ID, "text").send_keys(text)
    driver.find_element(By.ID, "send").click()


def console_errors(driver: WebDriver) -> list[str]:
    """Severe browser console entries (a CSP violation or a script error shows up here)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]


def test_two_pages_chat_through_pygw(
    gw: GatewayProcess, browser: WebDriver, second_browser: WebDriver, tmp_path: Path
) -> None:
    alice, bob = unique("alice"), unique("bob")
    with httpx.Client(base_url=gw.url) as client:
        register(client, bob, PASSWORD)
    room = unique("room")

    open_chat(browser, gw.url, alice, room, "register")  # registers on the page
    open_chat(second_browser, gw.url, bob, room, "signin")
    for driver in (browser, second_browser):
        wait_for(driver, "both online", lambda d: by_id(d, "presence") == "2 online")
        assert by_id(driver, "room-name") == room

    say(browser, "hello from alice <b>not bold</b>")
    wait_for(
        second_browser,
        "alice's message on bob's page",
        lambda d: f"{alice}hello from alice <b>not bold</b>" in messages(d),
    )
    # Text stays text: nothing the sender typed became markup.
    assert not second_browser.find_elements(By.CSS_SELECTOR, "#messages b")
    say(second_browser, "hi alice, bob here")
    wait_for(
        browser,
        "bob's reply on alice's page",
        lambda d: f"{bob}hi alice, bob here" in messages(d),
    )
    assert messages(browser) == [
        f"{alice}hello from alice <b>not bold</b>",
        f"{bob}hi alice, bob here",
    ]
    assert browser.find_element(By.ID, "text").get_attribute("value") == ""
    screenshot(browser, "chat-alice")
    screenshot(second_browser, "chat-bob")

    # Signing out closes bob's socket with 1000; alice sees one user online.
    second_browser.find_element(By.ID, "signout").click()
    wait_for(browser, "bob gone", lambda d: by_id(d, "presence") == "1 online")
    assert console_errors(browser) == []
    assert console_errors(second_browser) == []


def test_the_page_and_client_are_served_with_a_strict_policy(gw: GatewayProcess) -> None:
    page = httpx.get(gw.url + "/examples/chat.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in policy
    assert "unsafe-inline" not in policy
    client = httpx.get(gw.url + "/clients/js/index.js")
    assert client.status_code == 200
    assert client.headers["content-type"].startswith("application/javascript")
    repo = Path(__file__).resolve().parents[2]
    assert client.content == (repo / "clients/js/index.js").read_bytes()
    assert page.content == (repo / "examples/chat.html").read_bytes()
