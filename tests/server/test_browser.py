"""The web page in headless Chromium: two browsers and a Node client chat through the emulator and ``chat-server``.

Assertions are on rendered text (what a user sees); screenshots go to the test's tmp dir and to ``$ARTIFACTS_DIR``.
"""

from __future__ import annotations

import asyncio
import os
import re
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

from tests.server.conftest import ACCESS_KEY, ChatServer, Stack, start_chat_server, start_emulator, start_stack
from tests.support.fixtures import JsPeerFactory
from tests.support.processes import Process, free_port, script

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason="Chromium is not installed (Debian packages chromium and chromium-driver; `make test` installs them)",
)

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


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # Its own emulator: the last step stops it to show the page's connection-closed notice.
    running = start_stack(tmp_path)
    yield running
    running.stop()


def screenshot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    artifacts = os.environ.get("ARTIFACTS_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / path.name)
    return path


def text_of(driver: WebDriver, element_id: str) -> str:
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


async def connected(driver: WebDriver, name: str, transport: str, host: str) -> None:
    status = await until(
        lambda: (t := text_of(driver, "status")).startswith("Connected") and t, f"{name} to connect", timeout=20
    )
    assert status == f"Connected as {name} · {transport} via {host}"


async def test_two_browsers_and_a_node_client_chat(
    stack: Stack, browser: DriverFactory, js_peer: JsPeerFactory, tmp_path: Path
) -> None:
    service_host = stack.emulator_url.removeprefix("http://")
    alice, bob = browser(), browser()

    # The name prompt: the sample's texts and validation loop, in a page modal.
    alice.get(stack.server.url + "?transport=websockets")
    await until(lambda: alice.find_element(By.ID, "name-modal").is_displayed(), "the name prompt")
    assert text_of(alice, "name-label") == "Enter your name:"
    assert re.fullmatch(r"[0-9a-z]{1,8}", str(alice.find_element(By.ID, "name-input").get_attribute("value")))
    name_input = alice.find_element(By.ID, "name-input")
    for invalid in ("_SYSTEM_", "a<b", "x>y"):
        name_input.clear()
        name_input.send_keys(invalid + "\n")
        assert text_of(alice, "name-label") == "Invalid input. Enter your name:"
        assert name_input.get_attribute("value") == ""
    name_input.send_keys("alice\n")
    await connected(alice, "alice", "WebSockets", service_host)
    assert not alice.find_element(By.ID, "name-modal").is_displayed()

    # ?name= skips the prompt; ?transport= pins the transport.
    bob.get(stack.server.url + "?name=bob&transport=sse")
    await connected(bob, "bob", "ServerSentEvents", service_host)
    await until(lambda: ("system", "bob JOINED") in entries(alice), "alice to see bob join")
    assert entries(bob)[0] == ("system", "bob JOINED")

    carol = await js_peer(stack.hub_url, transport="longpolling")

    # Send with Enter; HTML in a message is shown as text, not markup.
    hostile = "<b>bold?</b> & <img src=x onerror=alert(1)>"
    alice.find_element(By.ID, "message").send_keys(hostile + "\n")
    assert await carol.next_message("broadcastMessage") == ("broadcastMessage", ["alice", hostile])
    await until(lambda: ("theirs", f"alice {hostile}") in entries(bob), "bob to see alice's message")
    await until(lambda: ("mine", f"alice {hostile}") in entries(alice), "alice to see her own message")
    assert alice.find_elements(By.CSS_SELECTOR, "#messages b, #messages img") == []

    # The Send button does nothing for empty input; Echo goes to the sender only, even when empty.
    bob.find_element(By.ID, "sendmessage").click()
    bob.find_element(By.ID, "message").send_keys("echo test")
    bob.find_element(By.ID, "echo").click()
    await until(lambda: ("mine", "bob echo test (echo from server)") in entries(bob), "bob's echo")
    bob.find_element(By.ID, "echo").click()
    await until(lambda: ("mine", "bob (echo from server)") in entries(bob), "bob's empty echo")

    # The Node client's broadcast reaches both browsers; it arrives after bob's echoes, so alice would have them.
    await carol.send("broadcastMessage", "carol", "hello browsers")
    await until(lambda: ("theirs", "carol hello browsers") in entries(alice), "alice to see carol")
    await until(lambda: ("theirs", "carol hello browsers") in entries(bob), "bob to see carol")
    assert [e for e in entries(alice) if "echo from server" in e[1]] == []
    assert [e for e in entries(bob) if e[0] == "theirs" and e[1].startswith("bob")] == []
    # carol's oldest message is her own: no empty message from bob's Send click, no echo.
    assert await carol.next_message() == ("broadcastMessage", ["carol", "hello browsers"])
    assert carol.pending_messages() == []

    shots = [screenshot(alice, tmp_path, "chatroom-alice"), screenshot(bob, tmp_path, "chatroom-bob")]
    assert all(s.exists() for s in shots)
    assert entries(alice) == [
        ("system", "alice JOINED"),
        ("system", "bob JOINED"),
        ("mine", f"alice {hostile}"),
        ("theirs", "carol hello browsers"),
    ]

    # The service goes away: the sample's connection-closed notice.
    stack.emulator.stop()
    for driver in (alice, bob):
        await until(lambda d=driver: d.find_element(By.ID, "closed-modal").is_displayed(), "the closed notice")
        assert "Connection Error... Hit Refresh/F5 to rejoin. ;)" in text_of(driver, "closed-modal")
        assert text_of(driver, "status") == "Disconnected"
    screenshot(bob, tmp_path, "chatroom-closed")
    bob.find_element(By.ID, "message").send_keys("too late\n")
    await until(
        lambda: ("broadcast", "Cannot send data if the connection is not in the 'Connected' State.") in entries(bob),
        "the rejected send notice",
    )


async def test_subscription_key_never_shows_and_bad_transport_is_explained(
    stack: Stack, browser: DriverFactory
) -> None:
    page = browser()
    page.get(stack.server.url + "?name=_zed")  # an invalid ?name= opens the prompt in its "invalid" state
    await until(lambda: page.find_element(By.ID, "name-modal").is_displayed(), "the name prompt")
    assert text_of(page, "name-label") == "Invalid input. Enter your name:"
    page.get(stack.server.url + "?name=zed&transport=carrier-pigeon")
    await until(lambda: "Unknown transport" in text_of(page, "status"), "the transport error")
    assert text_of(page, "status") == "Unknown transport 'carrier-pigeon': use websockets, sse, longpolling or sse-lp."

    page.get(stack.server.url + "?name=zed&transport=longpolling&subscription-key=TopSecretSubKey123")
    await connected(page, "zed", "LongPolling", stack.emulator_url.removeprefix("http://"))
    await until(lambda: ("system", "zed JOINED") in entries(page), "zed's join line")
    assert "TopSecretSubKey123" not in page.find_element(By.TAG_NAME, "body").text
    assert "TopSecretSubKey123" not in stack.server.process.stderr()
    assert ACCESS_KEY not in page.page_source


async def test_missing_library_is_explained_on_the_page(browser: DriverFactory, tmp_path: Path) -> None:
    connection_string = f"Endpoint=http://127.0.0.1;Port=9;AccessKey={ACCESS_KEY};Version=1.0;"
    server = start_chat_server(connection_string, "--signalr-js", str(tmp_path / "absent.js"), cwd=tmp_path)
    try:
        page = browser()
        page.get(server.url + "?name=x")
        await until(lambda: page.find_element(By.ID, "library-error").is_displayed(), "the missing-library banner")
        assert "The SignalR client library is missing. Run make" in text_of(page, "library-error")
        assert text_of(page, "status") == "The SignalR client library is missing: run make, then reload."
        screenshot(page, tmp_path, "chatroom-missing-library")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("profile", "transport", "name"), [("sse-lp", "sse", "ServerSentEvents"), ("websocket", "websockets", "WebSockets")]
)
async def test_page_through_the_apim_gateway_with_a_subscription_key(
    browser: DriverFactory, tmp_path: Path, profile: str, transport: str, name: str
) -> None:
    """The browser's only way to send a subscription key: the page URL → hub URL → redirect URL → APIM."""
    server_port = free_port()
    upstream = f"http://127.0.0.1:{server_port}/upstream/{{hub}}/{{category}}/{{event}}"
    emulator, emulator_url, connection_string = start_emulator("--upstream", upstream)
    gateway: Process | None = None
    server: ChatServer | None = None
    key = "BrowserSubKey0123456789"
    try:
        argv = [script("apim-gateway"), "--backend", emulator_url, "--profile", profile, "--port", "0"]
        gateway = Process([*argv, "--subscription-key", key])
        gateway_url = gateway.readline(timeout=20).split(" listening on ")[1].split(" ")[0]
        server = start_chat_server(
            connection_string + f"ClientEndpoint={gateway_url};", "--port", str(server_port), cwd=tmp_path
        )
        page = browser()
        page.get(f"{server.url}?name=hana&transport={transport}&subscription-key={key}")
        await connected(page, "hana", name, gateway_url.removeprefix("http://"))
        page.find_element(By.ID, "message").send_keys("through apim")
        page.find_element(By.ID, "echo").click()
        await until(lambda: ("mine", "hana through apim (echo from server)") in entries(page), "the echo via APIM")
        screenshot(page, tmp_path, f"chatroom-apim-{profile}")
        assert key not in page.find_element(By.TAG_NAME, "body").text

        page.get(f"{server.url}?name=hana&transport={transport}")  # no key: APIM refuses
        await until(lambda: text_of(page, "status").startswith("Could not connect"), "the refusal")
    finally:
        for process in (server.process if server else None, gateway, emulator):
            if process is not None:
                process.stop()
