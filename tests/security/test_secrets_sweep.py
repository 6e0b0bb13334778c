"""The secrets sweep: a whole chat through the local APIM with known secrets planted, then every place a person or a
log collector can read is searched for them. Allowed occurrences: none.

Planted: the AccessKey (emulator ``--access-key``), a subscription key (required by the gateway, sent by the clients as
a header and in the page's URL). Searched: the stderr of the emulator, the gateway and the app server, the terminal
chat's trace and screen, the web page's source and text, and the trace of our own client. Besides the planted values,
nothing that looks like a JWT (``eyJ…``) and no connection token (an ``id=`` that is not the short ``~`` tag) may show.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from selenium.webdriver.common.by import By

from chat.app import ChatApp
from signalr.client import HubConnection, TraceEvent, TransportChoice
from tests.support.browser import (
    CHROMIUM_INSTALLED,
    DriverFactory,
    browser,  # noqa: F401  (pytest finds fixtures by name)
    connected_status,
    entries,
    until,
)
from tests.support.fixtures import (
    JsPeerFactory,
    js_peer,  # noqa: F401
)
from tests.support.processes import free_port
from tests.support.stack import (
    ChatServer,
    EmulatorProcess,
    Gateway,
    start_chat_server,
    start_emulator,
    start_gateway,
)
from tests.support.tui import seen, wait_until

ACCESS_KEY = "PlantedAccessKeyZZ0123456789abcdefghijklmnopqr"
SUBSCRIPTION_KEY = "PlantedSubscriptionKeyQQ0123456789"
SIZE = (160, 40)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}")
_RAW_CONNECTION_TOKEN = re.compile(r"[?&]id=(?!~[0-9a-f]{8}(?:[&\s\"'#]|$))[^&\s\"'#]+")

pytestmark = pytest.mark.skipif(not CHROMIUM_INSTALLED, reason="Chromium is not installed (`make test` installs it)")


@dataclass
class Planted:
    emulator: EmulatorProcess
    gateway: Gateway
    server: ChatServer

    def logs(self) -> dict[str, str]:
        return {
            "emulator": self.emulator.process.stderr(),
            "gateway": self.gateway.stderr(),
            "chat-server": self.server.process.stderr(),
        }


@pytest.fixture
def planted() -> Iterator[Planted]:
    emulator = start_emulator("--service-mode", "default", "--access-key", ACCESS_KEY)
    gateway = start_gateway(emulator.base, "--profile", "websocket", "--subscription-key", SUBSCRIPTION_KEY)
    server = start_chat_server(
        emulator.connection_string_to(gateway.url), "--service-mode", "default", port=free_port()
    )
    try:
        server.wait_for_server_connections()
        yield Planted(emulator, gateway, server)
    finally:
        server.stop()
        gateway.stop()
        emulator.stop()


def assert_clean(where: str, text: str) -> None:
    """No planted secret, no JWT, no raw connection token in ``text``."""
    assert ACCESS_KEY not in text, f"AccessKey in {where}"
    assert SUBSCRIPTION_KEY not in text, f"subscription key in {where}"
    jwt = _JWT.search(text)
    assert jwt is None, f"a JWT in {where}: …{text[max(0, jwt.start() - 60) : jwt.end() + 10]}…"
    raw = _RAW_CONNECTION_TOKEN.search(text)
    assert raw is None, f"a connection token in {where}: {raw.group(0)}"


async def test_no_secret_anywhere_after_a_chat_through_apim(
    planted: Planted,
    js_peer: JsPeerFactory,  # noqa: F811
    browser: DriverFactory,  # noqa: F811
) -> None:
    keyed_url = f"{planted.server.hub_url}?subscription-key={SUBSCRIPTION_KEY}"
    headers = {"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}

    # The official JS client, the key in its hub URL (as a browser page would carry it).
    node = await js_peer(keyed_url, transport="websockets")
    await node.send("broadcastMessage", "node", "from node")

    # Our client, the key as a header, its own trace collected.
    trace: list[TraceEvent] = []
    ours = HubConnection(
        planted.server.hub_url, transport=TransportChoice.WEBSOCKETS, headers=headers, trace=trace.append
    )
    await ours.start()
    await ours.invoke("broadcastMessage", "ours", "from our client")
    await ours.stop()

    # The web page, the key in its URL.
    page = browser()
    page.get(f"{planted.server.url}?name=webby&transport=websockets&subscription-key={SUBSCRIPTION_KEY}")
    await connected_status(page)
    page.find_element(By.ID, "message").send_keys("from the page\n")
    await until(lambda: ("mine", "webby from the page") in entries(page), "the page's message")

    # The terminal chat with the trace open.
    app = ChatApp(planted.server.hub_url, TransportChoice.WEBSOCKETS, name="termy", headers=headers)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "termy JOINED"), timeout=20, what="the TUI to join")
        await pilot.press("f12")
        await pilot.press(*"from the terminal", "enter")
        await wait_until(pilot, lambda: seen(app, "termy (you): from the terminal"), timeout=10, what="the echo")
        screen = app.export_screenshot()
        trace_rows = "\n".join(app.trace_panel.plain_rows)
        await pilot.press("ctrl+q")

    assert await node.next_message("broadcastMessage") == ("broadcastMessage", ["node", "from node"])
    await node.stop()
    for where, text in planted.logs().items():
        assert "negotiate" in text or where != "chat-server"  # the logs were really written
        assert_clean(f"the {where} log", text)
    assert_clean("our client's trace", "\n".join(f"{e.url} {e.detail} {e.host}" for e in trace))
    assert trace, "the trace recorded nothing"
    assert_clean("the terminal screen", screen)
    assert "negotiate" in trace_rows  # the trace really recorded the connection
    assert_clean("the terminal trace", trace_rows)
    assert_clean("the page's text", page.find_element(By.TAG_NAME, "body").text)
    assert_clean("the page's source", page.page_source)
