"""The operator's console (``/admin/ui``) in a real browser, on two Redis-backed nodes: an
admin signs in on node A and sees the whole cluster live (clients connecting to node B move
the figures without a reload), publishes to a channel a client on node B is subscribed to, and
a non-admin is refused. Screenshots of the main views land in tests/artifacts/."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from wsclient import WS

from browser import by_id, screenshot, wait_for
from conftest import Account, new_account
from gateway_process import GatewayProcess
from redis_server import RedisServer

ADMIN = "console_admin"
PASSWORD = "correct-horse-1"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, ...]]:
    logs = tmp_path_factory.mktemp("console")
    with RedisServer() as redis:
        # The route registered through the console names a loopback backend: needs the opt-in.
        env = {
            "PYGW_ADMIN_USERS": ADMIN,
            "PYGW_ADMIN_PASSWORD": PASSWORD,
            "PYGW_PROXY_ALLOW_PRIVATE": "true",
        }
        a = GatewayProcess(redis_url=redis.url, env=env, log_path=logs / "a.log")
        b = GatewayProcess(redis_url=redis.url, env=env, log_path=logs / "b.log")
        try:
            a.start()
            b.start()
            yield a, b
        finally:
            a.stop()
            b.stop()


def sign_in(driver: WebDriver, base: str, username: str, password: str) -> None:
    driver.get(base + "/admin/ui")
    driver.find_element(By.ID, "signin-username").send_keys(username)
    driver.find_element(By.ID, "signin-password").send_keys(password)
    driver.find_element(By.ID, "signin-submit").click()


def tab(driver: WebDriver, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'nav button[data-tab="{name}"]').click()


async def test_console_shows_the_cluster_live_and_publishes(
    nodes: tuple[GatewayProcess, GatewayProcess], browser: WebDriver
) -> None:
    a, b = nodes
    loop = asyncio.get_running_loop()

    async def run(fn: object, *args: object) -> object:
        return await loop.run_in_executor(None, fn, *args)  # type: ignore[arg-type]

    await run(sign_in, browser, a.url, ADMIN, PASSWORD)
    await run(wait_for, browser, "the live badge", lambda d: by_id(d, "live") == "live")
    await run(wait_for, browser, "both nodes", lambda d: by_id(d, "total-nodes") == "2")
    # The console's own socket is the only connection so far.
    await run(wait_for, browser, "one connection", lambda d: by_id(d, "total-connections") == "1")
    page_url = browser.current_url
    await run(screenshot, browser, "console-overview-idle")

    with httpx.Client(base_url=b.url, timeout=10) as client:
        accounts = [new_account(client, "console") for _ in range(3)]
    sockets = [await WS.open(b.ws_url, acc.token, acc.session_id) for acc in accounts]
    await run(wait_for, browser, "4 connections", lambda d: by_id(d, "total-connections") == "4")
    await run(wait_for, browser, "4 users", lambda d: by_id(d, "total-users") == "4")
    await run(screenshot, browser, "console-overview")

    # A client on node B subscribes; the console (node A) sees the channel and publishes to it.
    reply = await sockets[0].request({"type": "subscribe", "channel": "ops:announce"})
    assert reply["type"] == "subscribed", reply
    await run(tab, browser, "channels")
    await run(
        wait_for,
        browser,
        "the channel row",
        lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-channel="ops:announce"]'),
    )
    await run(screenshot, browser, "console-channels")

    def publish() -> None:
        tab(browser, "publish")
        Select(browser.find_element(By.ID, "publish-kind")).select_by_value("channel")
        target = browser.find_element(By.ID, "publish-target")
        target.clear()
        target.send_keys("ops:announce")
        data = browser.find_element(By.ID, "publish-data")
        data.clear()
        data.send_keys('{"text": "maintenance at 10:00"}')
        browser.find_element(By.ID, "publish-submit").click()

    await run(publish)
    (message,) = await sockets[0].messages(1, "ops:announce", timeout=10)
    assert message["data"] == {"text": "maintenance at 10:00"}
    await run(wait_for, browser, "the publish result", lambda d: "offset" in by_id(d, "result"))
    await run(screenshot, browser, "console-publish")

    await run(tab, browser, "users")
    await run(
        wait_for,
        browser,
        "the user list",
        lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-user="{ADMIN}"]'),
    )
    await run(screenshot, browser, "console-users")

    def register_route() -> None:
        tab(browser, "routes")
        form = browser.find_element(By.ID, "route-form")
        for field, value in (("name", "billing"), ("base_url", "http://127.0.0.1:9")):
            form.find_element(By.NAME, field).send_keys(value)
        form.find_element(By.NAME, "path").send_keys("/invoices")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    await run(register_route)
    await run(
        wait_for,
        browser,
        "the new route with its breaker state",
        lambda d: "closed" in d.find_element(By.CSS_SELECTOR, 'tr[data-route="billing"]').text,
    )
    await run(screenshot, browser, "console-routes")
    # The row comes from the server's route table (GET /admin/routes after the registration).
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-route="billing"]').text
    assert "http://127.0.0.1:9/invoices" in row

    # Clients leave: the figures fall, and the page was never reloaded.
    for ws in sockets:
        await ws.close()
    await run(tab, browser, "overview")
    await run(wait_for, browser, "back to 1", lambda d: by_id(d, "total-connections") == "1")
    assert browser.current_url == page_url
    assert await run(lambda: browser.execute_script("return performance.navigation.type")) == 0


def test_a_non_admin_is_refused(
    nodes: tuple[GatewayProcess, GatewayProcess], browser: WebDriver, tmp_path: Path
) -> None:
    a, _b = nodes
    with httpx.Client(base_url=a.url, timeout=10) as client:
        user: Account = new_account(client, "plain")
        # The API refuses the user's token whatever the page does.
        assert client.get("/admin/users", headers=user.headers).status_code == 403
    sign_in(browser, a.url, user.username, user.password)
    wait_for(browser, "the refusal", lambda d: "Access denied" in by_id(d, "signin-error"))
    assert not browser.find_element(By.ID, "app").is_displayed()
    screenshot(browser, "console-refused")
