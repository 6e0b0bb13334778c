"""The web page in MessagePack mode (``?protocol=messagepack``), in headless Chromium against the emulator and
``chat-server``: a MessagePack page, a JSON page and a Node client in MessagePack chat through the app server's
negotiate redirect; the page names its protocol; MessagePack with ServerSentEvents, an unknown protocol and a missing
MessagePack bundle are explained on the page.

What the page puts on the wire is read from the page's own WebSocket frames (text or binary, recorded by a script
added before the page loads); what it shows is read as rendered text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.server.test_browser import connect_error, connected, title_lines
from tests.support.browser import CHROMIUM_INSTALLED, DriverFactory, entries, screenshot, text_of, until
from tests.support.fixtures import JsPeerFactory
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.skipif(
    not CHROMIUM_INSTALLED,
    reason="Chromium is not installed (Debian packages chromium and chromium-driver; `make test` installs them)",
)

# Records every WebSocket frame the page sends or receives as [direction, "text" | "binary", bytes].
RECORD_FRAMES = """
(() => {
  const frames = [];
  window.__frames = frames;
  const kind = (data) => (typeof data === "string" ? "text" : "binary");
  const size = (data) =>
    typeof data === "string" ? new TextEncoder().encode(data).length : data.byteLength ?? data.size;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    frames.push(["out", kind(data), size(data)]);
    return send.call(this, data);
  };
  const onmessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
  Object.defineProperty(WebSocket.prototype, "onmessage", {
    configurable: true,
    get() {
      return onmessage.get.call(this);
    },
    set(handler) {
      const recorded = handler && function (event) {
        frames.push(["in", kind(event.data), size(event.data)]);
        return handler.call(this, event);
      };
      onmessage.set.call(this, recorded);
    },
  });
})();
"""


def recording(driver: WebDriver) -> WebDriver:
    """``driver`` with :data:`RECORD_FRAMES` run before every page's own scripts."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_FRAMES})
    return driver


def frames(driver: WebDriver, direction: str) -> list[str]:
    """The kinds (``text``/``binary``) of the WebSocket frames the page sent (``out``) or received (``in``)."""
    recorded = driver.execute_script("return window.__frames || [];")
    return [str(kind) for way, kind, _ in recorded if way == direction]


def protocol_badge(driver: WebDriver) -> str:
    return text_of(driver, "protocol")


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    running = start_stack(cwd=tmp_path, service_mode=getattr(request, "param", "serverless"))
    yield running
    running.stop()


@pytest.mark.parametrize("stack", ["serverless", "default"], indirect=True)
async def test_a_messagepack_page_a_json_page_and_a_node_client_chat(
    stack: Stack, browser: DriverFactory, js_peer: JsPeerFactory, tmp_path: Path
) -> None:
    service_host = stack.emulator_url.removeprefix("http://")
    alice, bob = recording(browser()), recording(browser())
    alice.get(stack.server.url + "?name=alice&transport=websockets&protocol=messagepack")
    await connected(alice, "alice", "WebSockets", service_host)
    assert protocol_badge(alice) == "Hub protocol: MessagePack"
    assert title_lines(alice) == 1  # the badge never squeezes the title
    bob.get(stack.server.url + "?name=bob")  # JSON, the default; the client picks WebSockets
    await connected(bob, "bob", "WebSockets", service_host)
    assert protocol_badge(bob) == "Hub protocol: JSON"
    await until(lambda: ("system", "bob JOINED") in entries(alice), "alice to see bob join")
    carol = await js_peer(stack.hub_url, transport="longpolling", protocol="messagepack")

    alice.find_element(By.ID, "message").send_keys("hi from binary ✓\n")
    await until(lambda: ("theirs", "alice hi from binary ✓") in entries(bob), "bob to see alice")
    await until(lambda: ("mine", "alice hi from binary ✓") in entries(alice), "alice to see her own message")
    assert await carol.next_message("broadcastMessage") == ("broadcastMessage", ["alice", "hi from binary ✓"])
    bob.find_element(By.ID, "message").send_keys("hi from text\n")
    await until(lambda: ("theirs", "bob hi from text") in entries(alice), "alice to see bob")
    await carol.send("broadcastMessage", "carol", "from node, binary too")
    await until(lambda: ("theirs", "carol from node, binary too") in entries(alice), "alice to see carol")
    await until(lambda: ("theirs", "carol from node, binary too") in entries(bob), "bob to see carol")
    alice.find_element(By.ID, "message").send_keys("only mine")
    alice.find_element(By.ID, "echo").click()
    await until(lambda: ("mine", "alice only mine (echo from server)") in entries(alice), "alice's echo")
    assert [e for e in entries(bob) if "echo from server" in e[1]] == []

    # On the wire: the MessagePack page's handshake is JSON text, everything after it binary, both ways; the JSON
    # page's frames are all text.
    sent, received = frames(alice, "out"), frames(alice, "in")
    assert sent[0] == "text" and len(sent) >= 4 and set(sent[1:]) == {"binary"}, sent
    assert received and set(received) == {"binary"}, received
    assert set(frames(bob, "out")) == {"text"} and set(frames(bob, "in")) == {"text"}
    screenshot(alice, tmp_path, f"chatroom-messagepack-{stack.server.port}")


async def test_messagepack_over_sse_is_explained_with_the_transports_that_carry_it(
    stack: Stack, browser: DriverFactory, tmp_path: Path
) -> None:
    page = recording(browser())
    page.get(stack.server.url + "?name=zed&transport=sse&protocol=messagepack")
    assert await connect_error(page) == (
        "MessagePack is binary and ServerSentEvents carries only text: use ?transport=websockets, "
        "?transport=longpolling or ?transport=sse-lp, or ?protocol=json for ServerSentEvents."
    )
    assert protocol_badge(page) == "Hub protocol: MessagePack"
    assert not page.find_element(By.ID, "connect-error-details").is_displayed()  # no client text: nothing was tried
    assert page.execute_script("return window.__frames.length;") == 0
    screenshot(page, tmp_path, "chatroom-messagepack-sse")

    # Each suggestion is a link to the same page with that one parameter changed.
    page.find_element(By.LINK_TEXT, "?transport=sse-lp").click()
    await connected(page, "zed", "LongPolling", stack.emulator_url.removeprefix("http://"))  # SSE skipped
    assert protocol_badge(page) == "Hub protocol: MessagePack"
    page.find_element(By.ID, "message").send_keys("polled binary")
    page.find_element(By.ID, "echo").click()
    await until(lambda: ("mine", "zed polled binary (echo from server)") in entries(page), "the echo over LP")

    page.get(stack.server.url + "?name=zed&transport=sse&protocol=messagepack")
    await connect_error(page)
    page.find_element(By.LINK_TEXT, "?protocol=json").click()
    await connected(page, "zed", "ServerSentEvents", stack.emulator_url.removeprefix("http://"))
    assert protocol_badge(page) == "Hub protocol: JSON"


async def test_an_unknown_protocol_is_named(stack: Stack, browser: DriverFactory) -> None:
    page = browser()
    page.get(stack.server.url + "?name=zed&protocol=protobuf")
    assert await connect_error(page) == "Unknown protocol 'protobuf': use json or messagepack."
    assert not page.find_element(By.ID, "protocol").is_displayed()
    page.get(stack.server.url + "?name=zed&protocol=MessagePack")  # names are not case-sensitive
    await connected(page, "zed", "WebSockets", stack.emulator_url.removeprefix("http://"))
    assert protocol_badge(page) == "Hub protocol: MessagePack"


async def test_a_missing_messagepack_bundle_is_explained(stack: Stack, browser: DriverFactory) -> None:
    page = browser()
    page.execute_cdp_cmd("Network.enable", {})
    page.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/lib/signalr-protocol-msgpack.min.js"]})
    page.get(stack.server.url + "?name=zed&protocol=messagepack")
    assert await connect_error(page) == (
        "The MessagePack protocol library is missing: run make node in the project directory (it installs the "
        "@microsoft/signalr-protocol-msgpack npm package), then reload this page, or use ?protocol=json."
    )
