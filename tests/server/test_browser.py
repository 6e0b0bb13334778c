"""The web page in headless Chromium: two browsers and a Node client chat through the emulator and ``chat-server``.

Assertions are on rendered text (what a user sees); screenshots go to the test's tmp dir and to ``$ARTIFACTS_DIR``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.server.conftest import ACCESS_KEY
from tests.support.browser import (
    CHROMIUM_INSTALLED,
    DriverFactory,
    connected_status,
    entries,
    screenshot,
    text_of,
    until,
)
from tests.support.fixtures import JsPeerFactory
from tests.support.stack import Stack, start_chat_server, start_stack

pytestmark = pytest.mark.skipif(
    not CHROMIUM_INSTALLED,
    reason="Chromium is not installed (Debian packages chromium and chromium-driver; `make test` installs them)",
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # Its own emulator: the last step stops it to show the page's connection-closed notice.
    running = start_stack(cwd=tmp_path)
    yield running
    running.stop()


async def connected(driver: WebDriver, name: str, transport: str, host: str) -> None:
    status = await connected_status(driver, f"{name} to connect", timeout=20)
    assert status == f"Connected as {name} · {transport} via {host}"


async def connect_error(driver: WebDriver) -> str:
    """The short line of the page's connect-error panel, once shown; checks the layout rules around it."""
    await until(lambda: driver.find_element(By.ID, "connect-error").is_displayed(), "the connect error", timeout=20)
    assert text_of(driver, "status") == "Could not connect"
    assert title_lines(driver) == 1  # the error never squeezes the title
    # Nothing to send on a connection that never started: the composer is off, so no "Cannot send data…" notices.
    assert not driver.find_element(By.ID, "message").is_enabled()
    assert entries(driver) == []
    return text_of(driver, "connect-error-text")


def title_lines(driver: WebDriver) -> int:
    """How many lines the page title takes on screen."""
    return int(
        driver.execute_script(
            "const h = document.querySelector('.topbar h1');"
            "return Math.round(h.getBoundingClientRect().height / parseFloat(getComputedStyle(h).lineHeight));"
        )
    )


def full_error(driver: WebDriver) -> str:
    """The client's own error text, from the panel's collapsed details (opened first, as a user would)."""
    details = driver.find_element(By.ID, "connect-error-details")
    assert details.get_attribute("open") is None
    details.find_element(By.TAG_NAME, "summary").click()
    return text_of(driver, "connect-error-full")


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
    # What was typed is not lost without a word: the page shows it as not delivered, with the client's reason.
    refused = (
        "broadcast",
        "Message not delivered: \u201ctoo late\u201d \u2014 Cannot send data if the connection is not in the "
        "'Connected' State. Resend",
    )
    await until(lambda: refused in entries(bob), "the rejected send notice")


async def test_subscription_key_never_shows_and_bad_transport_is_explained(
    stack: Stack, browser: DriverFactory
) -> None:
    page = browser()
    page.get(stack.server.url + "?name=_zed")  # an invalid ?name= opens the prompt in its "invalid" state
    await until(lambda: page.find_element(By.ID, "name-modal").is_displayed(), "the name prompt")
    assert text_of(page, "name-label") == "Invalid input. Enter your name:"
    page.get(stack.server.url + "?name=zed&transport=carrier-pigeon")
    assert await connect_error(page) == (
        "Unknown transport 'carrier-pigeon': use websockets, sse, longpolling or sse-lp."
    )

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
        assert text_of(page, "library-error") == (
            "The SignalR client library is missing. Run make node in the project directory (it installs the "
            "@microsoft/signalr npm package), then reload this page."
        )
        assert text_of(page, "status") == "The SignalR client library is missing: run make node, then reload."
        assert not page.find_element(By.ID, "message").is_enabled()
        assert title_lines(page) == 1
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
    key = "BrowserSubKey0123456789"
    stack = start_stack(cwd=tmp_path, gateway_args=("--profile", profile, "--subscription-key", key))
    try:
        assert stack.gateway is not None
        page = browser()
        page.get(f"{stack.server.url}?name=hana&transport={transport}&subscription-key={key}")
        await connected(page, "hana", name, stack.gateway.host)
        page.find_element(By.ID, "message").send_keys("through apim")
        page.find_element(By.ID, "echo").click()
        await until(lambda: ("mine", "hana through apim (echo from server)") in entries(page), "the echo via APIM")
        screenshot(page, tmp_path, f"chatroom-apim-{profile}")
        assert key not in page.find_element(By.TAG_NAME, "body").text

        # No key: APIM's 401 has no CORS headers, so the browser reports only "Failed to fetch" (docs/apim.md §5).
        page.get(f"{stack.server.url}?name=hana&transport={transport}")
        assert await connect_error(page) == (
            f"The gateway {stack.gateway.host} refused the request or is unreachable. A gateway refuses a missing or "
            "invalid subscription key: add ?subscription-key=… to the page URL."
        )
        assert "Failed to fetch" in full_error(page)
        screenshot(page, tmp_path, f"chatroom-apim-{profile}-no-key")
    finally:
        stack.stop()


@pytest.mark.parametrize(
    ("profile", "wrong", "failed", "suggested", "works"),
    [
        ("websocket", "sse", "ServerSentEvents", "websockets", "WebSockets"),
        ("websocket", "sse-lp", "ServerSentEvents and LongPolling", "websockets", "WebSockets"),
        ("sse-lp", "websockets", "WebSockets", "sse-lp", "ServerSentEvents"),
    ],
)
async def test_a_transport_the_apim_profile_does_not_serve_is_explained_with_the_one_to_pick(
    browser: DriverFactory, tmp_path: Path, profile: str, wrong: str, failed: str, suggested: str, works: str
) -> None:
    key = "BrowserSubKey0123456789"
    stack = start_stack(cwd=tmp_path, gateway_args=("--profile", profile, "--subscription-key", key))
    try:
        assert stack.gateway is not None
        page = browser()
        page.get(f"{stack.server.url}?name=ivo&transport={wrong}&subscription-key={key}")
        assert await connect_error(page) == (
            f"{failed} could not connect through the gateway {stack.gateway.host}. API Management serves either "
            f"WebSockets (profile websocket) or SSE/LongPolling (profile sse-lp) on client/, not both: try "
            f"?transport={suggested}."
        )
        assert full_error(page).startswith("Unable to connect to the server with any of the available transports.")
        screenshot(page, tmp_path, f"chatroom-apim-{profile}-wrong-{wrong}")
        assert key not in page.find_element(By.TAG_NAME, "body").text

        # The suggestion is a link to the same page with that transport (and the other parameters kept).
        page.find_element(By.LINK_TEXT, f"?transport={suggested}").click()
        await connected(page, "ivo", works, stack.gateway.host)
        assert not page.find_element(By.ID, "connect-error").is_displayed()
        assert page.find_element(By.ID, "message").is_enabled()
    finally:
        stack.stop()


async def test_an_app_server_that_went_away_is_named(stack: Stack, browser: DriverFactory) -> None:
    page = browser()
    page.get(stack.server.url + "?transport=websockets")  # loaded; it negotiates once the name is given
    await until(lambda: page.find_element(By.ID, "name-modal").is_displayed(), "the name prompt")
    stack.server.stop()
    page.find_element(By.ID, "name-input").send_keys("\n")
    host = stack.server.url.removeprefix("http://").rstrip("/")
    assert await connect_error(page) == f"The app server {host} is unreachable: is chat-server running?"


async def test_a_message_the_hub_never_took_is_shown_with_a_resend_button(stack: Stack, browser: DriverFactory) -> None:
    """Serverless mode with the app server gone: the service cannot reach the hub, the invocation completes with an
    error, and the page says so with the text that was typed; once the app server is back, Resend delivers it."""
    page = browser()
    page.get(stack.server.url + "?name=pat&transport=websockets")
    await connected_status(page)
    await until(lambda: ("system", "pat JOINED") in entries(page), "the JOINED line")
    port = stack.server.port
    stack.server.stop()
    page.find_element(By.ID, "message").send_keys("typed while the hub was down\n")
    notice = await until(
        lambda: (found := page.find_elements(By.CSS_SELECTOR, ".undelivered")) and found[0], "the undelivered line"
    )
    text = notice.find_element(By.CLASS_NAME, "undelivered-text").text
    assert text.startswith("Message not delivered: \u201ctyped while the hub was down\u201d \u2014 ")
    assert len(text.split(" \u2014 ", 1)[1]) > 10  # the reason the client got (here: the service's upstream error)
    assert ("mine", "pat typed while the hub was down") not in entries(page)

    stack.server = start_chat_server(stack.connection_string, "--service-mode", "serverless", port=port)
    notice.find_element(By.CLASS_NAME, "resend").click()
    await until(lambda: ("mine", "pat typed while the hub was down") in entries(page), "the resent message")
    assert page.find_elements(By.CSS_SELECTOR, ".undelivered") == []
