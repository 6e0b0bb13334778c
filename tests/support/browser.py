"""Headless Chromium for the web-page tests: the ``browser`` fixture and helpers that read what the page shows.

Use the fixture from a test package's ``conftest.py``::

    from tests.support.browser import browser  # noqa: F401  (pytest finds fixtures by name)

Helpers read rendered text (what a user sees); :func:`until` polls without blocking the event loop, so peers running
in it (a JS peer's reader) keep going. Screenshots go to the test's tmp dir and to ``$ARTIFACTS_DIR``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "CHROMIUM_INSTALLED",
    "DriverFactory",
    "browser",
    "connected_status",
    "entries",
    "screenshot",
    "text_of",
    "until",
]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_INSTALLED = os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)

DriverFactory = Callable[[], WebDriver]


@pytest.fixture
def browser() -> Iterator[DriverFactory]:
    """Start headless Chromium sessions, each with a fresh profile; all are quit at teardown."""
    drivers: list[WebDriver] = []
    profiles: list[str] = []

    def start() -> WebDriver:
        profile = tempfile.mkdtemp(prefix="chromium-profile-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--window-size=900,640",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(20)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        try:
            driver.quit()
        except WebDriverException:
            pass
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    """Save the page as ``<tmp_path>/<name>.png`` (copied to ``$ARTIFACTS_DIR`` when set); asserts it is an image."""
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    artifacts = os.environ.get("ARTIFACTS_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / path.name)
    return path


def text_of(driver: WebDriver, element_id: str) -> str:
    """The rendered text of the element with ``element_id``."""
    return str(driver.find_element(By.ID, element_id).text)


def entries(driver: WebDriver) -> list[tuple[str, str]]:
    """Rendered messages as ``(kind, text)``: kind is ``system``, ``broadcast``, ``mine`` or ``theirs``."""
    out: list[tuple[str, str]] = []
    for entry in driver.find_elements(By.CSS_SELECTOR, "#messages .message-entry"):
        classes = set((entry.get_attribute("class") or "").split())
        kind = next((k for k in ("mine", "theirs") if k in classes), "system")
        if "system-message" not in classes and kind == "system":
            kind = "broadcast"
        out.append((kind, " ".join(str(entry.text).split())))
    return out


async def until(predicate: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    """Poll ``predicate`` (a quick WebDriver call) without blocking the event loop the JS peer needs."""
    for _ in range(int(timeout / 0.1)):
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def connected_status(driver: WebDriver, what: str = "the page to connect", timeout: float = 15) -> str:
    """The page's status line once it says ``Connected…`` (``Connected as <name> · <transport> via <host>``)."""
    text: str = await until(lambda: (t := text_of(driver, "status")).startswith("Connected") and t, what, timeout)
    return text
