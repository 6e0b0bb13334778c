"""The web page on Azure Web PubSub in headless Chromium: ``chat-server --service webpubsub`` (its ClientEndpoint an
``apim-gateway --profile webpubsub`` in front of ``webpubsub-emulator``) serves the page, which chats with a Node peer
(``@azure/web-pubsub-client``) through the gateway.

Assertions are on rendered text (what a user sees), on what the Node peer receives, on the browser's own network log
(Chrome's performance log: the page's WebSocket, its URL and handshake status) and on the gateway's access log.
Screenshots go to the test's tmp dir and to ``$ARTIFACTS_DIR``.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.browser import CHROMEDRIVER, CHROMIUM, CHROMIUM_INSTALLED, entries, screenshot, text_of, until
from tests.support.processes import free_port
from tests.support.stack import Gateway, start_gateway
from tests.support.wps_emulator import start_webpubsub_emulator
from tests.support.wps_jspeer import WpsJsPeer
from tests.support.wps_server import start_webpubsub_chat_server

pytestmark = pytest.mark.skipif(
    not CHROMIUM_INSTALLED,
    reason="Chromium is not installed (Debian packages chromium and chromium-driver; `make test` installs them)",
)

HUB = "chat"
SUBSCRIPTION_KEY = "WpsPageKey0000DoNotShow1111"


@dataclass
class WpsStack:
    emulator: Any
    gateway: Gateway
    server: Any

    @property
    def page_url(self) -> str:
        return str(self.server.url).rstrip("/") + "/"

    @property
    def negotiate_url(self) -> str:
        return self.page_url + f"{HUB}/negotiate"

    def stop(self) -> None:
        self.server.stop()
        self.gateway.stop()
        self.emulator.stop()


def start_wps_stack(*gateway_args: str) -> WpsStack:
    """The emulator (events to the chat server), a gateway in front of it and the chat server sending clients there."""
    server_port = free_port()
    emulator = start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{server_port}/eventhandler")
    try:
        gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub", *gateway_args)
        try:
            server = start_webpubsub_chat_server(
                f"{emulator.connection_string}ClientEndpoint={gateway.url};", port=server_port
            )
        except BaseException:
            gateway.stop()
            raise
    except BaseException:
        emulator.stop()
        raise
    return WpsStack(emulator, gateway, server)


@pytest.fixture(scope="module")
def stack() -> Iterator[WpsStack]:
    running = start_wps_stack()
    yield running
    running.stop()


@pytest.fixture
def logged_browser() -> Iterator[Any]:
    """Headless Chromium sessions as ``tests.support.browser.browser`` starts them, with the network log on
    (``goog:loggingPrefs`` performance: the DevTools ``Network.*`` events, read with :func:`websockets_of`)."""
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
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
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


@dataclass
class SocketSeen:
    url: str
    status: int | None
    protocol: str | None


def websockets_of(driver: WebDriver, seen: dict[str, SocketSeen]) -> dict[str, SocketSeen]:
    """The page's WebSockets from the browser's network log, by request id (the log is drained on reading, so
    ``seen`` accumulates)."""
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.webSocketCreated":
            seen[params["requestId"]] = SocketSeen(params["url"], None, None)
        elif method == "Network.webSocketHandshakeResponseReceived" and params["requestId"] in seen:
            response = params["response"]
            headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
            seen[params["requestId"]].status = int(response["status"])
            seen[params["requestId"]].protocol = headers.get("sec-websocket-protocol")
    return seen


async def page_status(driver: WebDriver, prefix: str, what: str, timeout: float = 20) -> str:
    text: str = await until(lambda: (t := text_of(driver, "status")).startswith(prefix) and t, what, timeout)
    return text


def visible_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


async def test_the_page_chats_with_a_node_client_through_the_gateway(
    stack: WpsStack, logged_browser: Any, tmp_path: Path
) -> None:
    page = logged_browser()
    page.get(stack.page_url + "?name=alice")
    status = await page_status(page, "Connected", "the page to connect")
    assert status == f"Connected as alice · Web PubSub via {stack.gateway.host}"
    assert page.find_element(By.CSS_SELECTOR, ".topbar h1").text == "Azure Web PubSub Group Chat"
    assert page.title == "Azure Web PubSub Group Chat"
    assert text_of(page, "protocol") == "Subprotocol: reliable JSON"
    await until(lambda: ("system", "alice JOINED") in entries(page), "alice's JOINED line")

    carol = await WpsJsPeer.start(negotiate=stack.negotiate_url + "?id=carol", protocol="reliable")
    try:
        assert carol.url is not None and carol.url.startswith(f"ws://{stack.gateway.host}/client/hubs/{HUB}?")

        # The page's broadcast (sent with Enter) reaches the Node client and the page itself; markup stays text.
        hostile = "<b>bold?</b> & <img src=x onerror=alert(1)>"
        page.find_element(By.ID, "message").send_keys(hostile + "\n")
        assert await carol.next_data() == {"name": "alice", "message": hostile, "target": "broadcastMessage"}
        await until(lambda: ("mine", f"alice {hostile}") in entries(page), "alice to see her own message")
        assert page.find_elements(By.CSS_SELECTOR, "#messages b, #messages img") == []

        # The Node client's broadcast reaches the page.
        await carol.send_event("broadcastMessage", {"name": "carol", "message": "hello browser"})
        await until(lambda: ("theirs", "carol hello browser") in entries(page), "alice to see carol")
        assert await carol.next_data() == {"name": "carol", "message": "hello browser", "target": "broadcastMessage"}

        # Echo goes back to its caller only: the page's to the page, the Node client's to the Node client.
        page.find_element(By.ID, "message").send_keys("echo test")
        page.find_element(By.ID, "echo").click()
        await until(lambda: ("mine", "alice echo test (echo from server)") in entries(page), "alice's echo")
        await carol.send_event("echo", {"name": "carol", "message": "mine only"})
        assert await carol.next_data() == {"name": "carol", "message": "mine only (echo from server)", "target": "echo"}
        await carol.send_event("broadcastMessage", {"name": "carol", "message": "last"})
        await until(lambda: ("theirs", "carol last") in entries(page), "carol's last message")
        assert await carol.next_data() == {"name": "carol", "message": "last", "target": "broadcastMessage"}
        assert carol.pending("server-message") == []  # the page's echo never reached carol
    finally:
        await carol.stop()

    # What a user sees, in order: no echo of carol's, nothing twice.
    assert entries(page) == [
        ("system", "alice JOINED"),
        ("mine", f"alice {hostile}"),
        ("theirs", "carol hello browser"),
        ("mine", "alice echo test (echo from server)"),
        ("theirs", "carol last"),
    ]
    shot = screenshot(page, tmp_path, "chatroom-webpubsub-alice")
    assert shot.exists()

    # The browser's network log: the page's one WebSocket went to the gateway, in the reliable subprotocol.
    sockets = list(websockets_of(page, {}).values())
    assert len(sockets) == 1, sockets
    socket = sockets[0]
    assert socket.url.startswith(f"ws://{stack.gateway.host}/client/hubs/{HUB}?access_token="), socket.url
    assert (socket.status, socket.protocol) == (101, "json.reliable.webpubsub.azure.v1")
    # The gateway's access log has it, with the token redacted; the page's text never shows a token.
    token = socket.url.split("access_token=", 1)[1].split("&")[0]
    line = await stack.gateway.log_line(rf"/client/hubs/{HUB}\b.*\b101\b")
    assert token not in stack.gateway.stderr() and token not in line
    assert token not in visible_text(page)


async def test_server_messages_that_are_not_chat_are_left_out(stack: WpsStack, logged_browser: Any) -> None:
    """What the service may push besides the chat's {name, message, target}: the page shows none of it, stays
    connected, and shows the next chat message."""
    page = logged_browser()
    page.get(stack.page_url + "?name=erin&userId=erin")
    await page_status(page, "Connected", "the page to connect")
    await until(lambda: ("system", "erin JOINED") in entries(page), "erin's JOINED line")
    rest = WebPubSubServiceClient.from_connection_string(stack.emulator.connection_string, hub=HUB)
    async with rest:
        await rest.send_to_user("erin", "plain text", content_type="text/plain")
        await rest.send_to_user("erin", io.BytesIO(b"\x00\x01binary"), content_type="application/octet-stream")
        for data in (
            [1, 2, 3],
            '"a JSON string"',  # a str goes as it is: this is JSON text
            "null",
            {"name": "eve", "message": "no target"},
            {"name": "eve", "message": "unknown target", "target": "alert"},
            {"name": {"html": "<b>x</b>"}, "message": "name not a string", "target": "broadcastMessage"},
            {"name": "eve", "message": ["not", "a", "string"], "target": "echo"},
            {"name": "eve", "target": "broadcastMessage"},
        ):
            await rest.send_to_user("erin", data, content_type="application/json")
        await rest.send_to_user(
            "erin",
            {"name": "eve", "message": "<i>real</i>", "target": "broadcastMessage"},
            content_type="application/json",
        )
    await until(lambda: ("theirs", "eve <i>real</i>") in entries(page), "the real message")
    assert entries(page) == [("system", "erin JOINED"), ("theirs", "eve <i>real</i>")]
    assert page.find_elements(By.CSS_SELECTOR, "#messages i, #messages b") == []
    assert text_of(page, "status") == f"Connected as erin · Web PubSub via {stack.gateway.host}"
    errors = [e for e in page.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []


async def test_a_closed_connection_reconnects_and_a_dead_app_server_ends_in_the_closed_notice(
    logged_browser: Any, tmp_path: Path
) -> None:
    """The service closes every connection (REST close: no resume): the page negotiates again and chats on a new
    connection. With the app server gone too, reconnecting fails: the sample's connection-closed notice, and what is
    typed then is shown as not delivered."""
    running = start_wps_stack()
    try:
        page = logged_browser()
        page.get(running.page_url + "?name=frank")
        await page_status(page, "Connected", "the page to connect")
        await until(lambda: ("system", "frank JOINED") in entries(page), "frank's JOINED line")
        rest = WebPubSubServiceClient.from_connection_string(running.emulator.connection_string, hub=HUB)
        async with rest:
            await rest.close_all_connections(reason="Maintenance")
            sockets: dict[str, SocketSeen] = {}
            await until(lambda: len(websockets_of(page, sockets)) == 2, "a second WebSocket", timeout=20)
            await page_status(page, "Connected", "the page to connect again")
            # The second handshake's answer may reach the browser's log after its creation did: read the log until
            # both are known (a socket created but not yet answered has no status), then check them.
            await until(
                lambda: all(s.status is not None for s in websockets_of(page, sockets).values()), "both handshakes"
            )
            assert all(s.url.startswith(f"ws://{running.gateway.host}/client/hubs/{HUB}?") for s in sockets.values())
            assert [s.status for s in sockets.values()] == [101, 101]
            await rest.send_to_all({"name": "gus", "message": "still there?", "target": "broadcastMessage"})
            await until(lambda: ("theirs", "gus still there?") in entries(page), "a message on the new connection")

            running.server.stop()
            await rest.close_all_connections(reason="Maintenance")
        await until(lambda: page.find_element(By.ID, "closed-modal").is_displayed(), "the closed notice", timeout=40)
        assert "Connection Error... Hit Refresh/F5 to rejoin. ;)" in text_of(page, "closed-modal")
        assert text_of(page, "status") == "Disconnected"
        screenshot(page, tmp_path, "chatroom-webpubsub-closed")
        page.find_element(By.ID, "closed-dismiss").click()
        page.find_element(By.ID, "message").send_keys("too late\n")
        notice = await until(lambda: page.find_elements(By.CSS_SELECTOR, ".undelivered-text"), "the undelivered line")
        assert notice[0].text.startswith("Message not delivered: \u201ctoo late\u201d \u2014 ")
        assert entries(page)[-1] != ("mine", "frank too late")
    finally:
        running.stop()


async def test_any_chat_name_works_and_a_bad_user_id_is_named(stack: WpsStack, logged_browser: Any) -> None:
    """The chat name is shown, not used as the user id (it may hold spaces or any letter); a ?userId= the app server
    refuses is named with the server's reason, and nothing is sent."""
    page = logged_browser()
    page.get(stack.page_url + "?name=Jos%C3%A9%20Mar%C3%ADa")
    status = await page_status(page, "Connected", "the page to connect")
    assert status == f"Connected as José María · Web PubSub via {stack.gateway.host}"
    await until(lambda: ("system", "José María JOINED") in entries(page), "the JOINED line")

    page = logged_browser()
    page.get(stack.page_url + "?name=ivy&userId=not%20valid%21")
    await until(lambda: page.find_element(By.ID, "connect-error").is_displayed(), "the connect error")
    host = stack.page_url.removeprefix("http://").rstrip("/")
    assert text_of(page, "connect-error-text").startswith(
        f"The app server {host} refused to negotiate (400): Invalid user id: use "
    )
    assert not page.find_element(By.ID, "connect-error-details").is_displayed()
    assert text_of(page, "status") == "Could not connect"
    assert not page.find_element(By.ID, "message").is_enabled()
    assert websockets_of(page, {}) == {}


async def test_an_oversized_message_is_shown_as_not_delivered(stack: WpsStack, logged_browser: Any) -> None:
    """A message larger than a client may send (1 MiB): the service closes the connection, the page shows the
    message as not delivered with the client's reason, connects again and sends the next message."""
    page = logged_browser()
    page.get(stack.page_url + "?name=kim")
    await page_status(page, "Connected", "the page to connect")
    await until(lambda: ("system", "kim JOINED") in entries(page), "kim's JOINED line")
    page.execute_script("document.getElementById('message').value = 'x'.repeat(1100000);")
    page.find_element(By.ID, "sendmessage").click()
    notice = await until(lambda: page.find_elements(By.CSS_SELECTOR, ".undelivered-text"), "the undelivered line")
    text = notice[0].text
    assert text.startswith("Message not delivered: \u201cxxxx"), text[:80]
    reason = text.rsplit("\u201d \u2014 ", 1)[1]
    assert "disconnected" in reason, reason  # the client's: "Connection is disconnected before receive ack …"
    await page_status(page, "Connected as kim", "the page to connect again")
    page.find_element(By.ID, "message").send_keys("small again\n")
    await until(lambda: ("mine", "kim small again") in entries(page), "the next message")
    assert [e for e in entries(page) if e[0] == "mine"] == [("mine", "kim small again")]


async def test_an_event_the_app_server_refuses_is_shown_once_and_not_sent_again(logged_browser: Any) -> None:
    """A chat name over the app server's 128 characters: the event handler refuses the event (400), the service fails
    it, and the page shows the message as not delivered with the service's reason, after one try only."""
    running = start_wps_stack()
    try:
        name = "n" * 129
        page = logged_browser()
        page.get(running.page_url + f"?name={name}")
        await page_status(page, "Connected", "the page to connect")
        await until(lambda: ("system", f"{name} JOINED") in entries(page), "the JOINED line")
        page.find_element(By.ID, "message").send_keys("hello\n")
        notice = await until(lambda: page.find_elements(By.CSS_SELECTOR, ".undelivered-text"), "the undelivered line")
        text = notice[0].text
        assert text.startswith("Message not delivered: \u201chello\u201d \u2014 "), text
        assert "InvocationFailed" in text, text
        await asyncio.sleep(1)  # time for retries, if the page made any
        refused = [
            line for line in running.server.stderr().splitlines() if "POST /eventhandler" in line and " 400" in line
        ]
        assert len(refused) == 1, refused
        assert len(page.find_elements(By.CSS_SELECTOR, ".undelivered")) == 1
        assert text_of(page, "status").startswith("Connected as ")
    finally:
        running.stop()


async def test_without_the_library_the_page_says_how_to_get_it(stack: WpsStack, logged_browser: Any) -> None:
    page = logged_browser()
    page.execute_cdp_cmd("Network.enable", {})
    page.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/lib/web-pubsub-client.js"]})
    page.get(stack.page_url + "?name=bob")
    await until(lambda: page.find_element(By.ID, "wps-library-error").is_displayed(), "the library notice")
    assert "Run make node in the project directory" in text_of(page, "wps-library-error")
    assert "@azure/web-pubsub-client" in text_of(page, "wps-library-error")
    assert text_of(page, "status") == "The Web PubSub client library is missing: run make node, then reload."
    assert not page.find_element(By.ID, "message").is_enabled()
    assert not page.find_element(By.ID, "library-error").is_displayed()  # not the SignalR notice


async def test_an_app_server_that_went_away_is_named(logged_browser: Any) -> None:
    running = start_wps_stack()
    try:
        page = logged_browser()
        page.get(running.page_url)  # it asks for the name first, then negotiates
        await until(lambda: page.find_element(By.ID, "name-modal").is_displayed(), "the name prompt")
        running.server.stop()
        page.find_element(By.ID, "name-input").send_keys("\n")
        await until(lambda: page.find_element(By.ID, "connect-error").is_displayed(), "the connect error")
        host = running.page_url.removeprefix("http://").rstrip("/")
        assert text_of(page, "connect-error-text") == f"The app server {host} is unreachable: is chat-server running?"
        assert text_of(page, "status") == "Could not connect"
        assert not page.find_element(By.ID, "message").is_enabled()
    finally:
        running.stop()


async def test_a_gateway_that_wants_a_subscription_key(logged_browser: Any, tmp_path: Path) -> None:
    running = start_wps_stack("--subscription-key", SUBSCRIPTION_KEY)
    try:
        for given in (None, "wrong-key-1234"):
            page = logged_browser()
            page.get(running.page_url + "?name=dan" + (f"&subscription-key={given}" if given else ""))
            await until(lambda p=page: p.find_element(By.ID, "connect-error").is_displayed(), "the connect error")
            advice = (
                "check ?subscription-key=… in the page URL." if given else "add ?subscription-key=… to the page URL"
            )
            line = text_of(page, "connect-error-text")
            assert line.startswith(
                f"The gateway {running.gateway.host} refused the WebSocket or is unreachable. A gateway refuses a "
                "missing or invalid subscription key: "
            ), line
            assert advice in line
            assert not page.find_element(By.ID, "message").is_enabled()
            assert entries(page) == []

        page = logged_browser()
        page.get(running.page_url + f"?name=dan&subscription-key={SUBSCRIPTION_KEY}")
        status = await page_status(page, "Connected", "the page to connect with the key")
        assert status == f"Connected as dan · Web PubSub via {running.gateway.host}"
        await until(lambda: ("system", "dan JOINED") in entries(page), "dan's JOINED line")
        assert SUBSCRIPTION_KEY not in visible_text(page)
        assert SUBSCRIPTION_KEY not in running.gateway.stderr()
        screenshot(page, tmp_path, "chatroom-webpubsub-subscription-key")
    finally:
        running.stop()
