"""A real browser for tests of pages a person looks at: headless Debian Chromium driven by
selenium (``make browser-deps`` installs ``chromium`` and ``chromium-driver``; selenium comes
with the dev extras). Screenshots go to ``tests/artifacts/`` (not committed) for a person to
look at after the run."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # This machine's network is closed: no background calls home.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium(width: int = 1366, height: int = 860) -> webdriver.Chrome:
    """A fresh headless Chromium with its own empty profile."""
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='pygw-chromium-')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    return driver


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save what the page looks like now as tests/artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(
    driver: WebDriver, what: str, predicate: Callable[[WebDriver], object], timeout: float = 15
) -> None:
    """Poll ``predicate(driver)`` until it is truthy; fail saying ``what`` was awaited."""
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        predicate, message=f"waited {timeout} s for {what}"
    )


def by_id(driver: WebDriver, element_id: str) -> str:
    """The text of the element with this id."""
    return str(driver.find_element(By.ID, element_id).text)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()
