"""``chat-demo`` as a user runs it: one command, then a Node client, a browser and the terminal chat all talk
through the local APIM gateway to the local SignalR service and see each other's messages."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from chat.app import ChatApp
from chat.widgets import StatusBar
from signalr.client import TransportChoice
from tests.support.browser import DriverFactory, connected_status, entries, screenshot, until
from tests.support.fixtures import JsPeerFactory
from tests.support.processes import Process, script
from tests.support.tui import log_text, wait_until

from .conftest import DemoFactory

SIZE = (120, 36)


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


async def _three_way_chat(
    info: dict[str, Any], transport: str, browser: DriverFactory, js_peer: JsPeerFactory, tmp_path: Path
) -> None:
    gateway_host = info["gateway_url"].removeprefix("http://")
    node = await js_peer(info["chat_url"], transport=transport)
    assert node.base_url is None or node.base_url.startswith(info["gateway_url"] + "/client/")

    page = browser()
    page.get(f"{info['web_url']}?name=webby&transport={transport}")
    status = await connected_status(page)
    assert status.endswith(f"via {gateway_host}"), status

    choice = {
        "websockets": TransportChoice.WEBSOCKETS,
        "sse": TransportChoice.SERVER_SENT_EVENTS,
        "longpolling": TransportChoice.LONG_POLLING,
    }[transport]
    mode = info["service_mode"]
    app = ChatApp(info["chat_url"], choice, name="termy", gateway_profile=info["profile"], service_mode=mode)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "termy JOINED" in log_text(app), timeout=20, what="the TUI to join")
        shown = app.status_bar.info
        assert shown is not None and f"mode {mode.capitalize()}" in StatusBar.render_info(shown).plain
        await until(lambda: ("system", "termy JOINED") in entries(page), "the page to see the TUI join")
        assert ("broadcastMessage", ["_SYSTEM_", "termy JOINED"]) in await node.messages_until(2, timeout=10)

        await node.send("broadcastMessage", "nodey", "hello from node")
        await wait_until(pilot, lambda: "nodey: hello from node" in log_text(app), timeout=10, what="node → TUI")
        await until(lambda: ("theirs", "nodey hello from node") in entries(page), "node → page")

        page.find_element(By.ID, "message").send_keys("hello from the page\n")
        await wait_until(pilot, lambda: "webby: hello from the page" in log_text(app), timeout=10, what="page → TUI")

        await pilot.press(*"hello from the terminal", "enter")
        await until(lambda: ("theirs", "termy hello from the terminal") in entries(page), "TUI → page")
        received = [m for _ in range(3) if (m := await node.next_message("broadcastMessage", timeout=10))]
        assert ("broadcastMessage", ["webby", "hello from the page"]) in received
        assert ("broadcastMessage", ["termy", "hello from the terminal"]) in received
        screenshot(page, tmp_path, f"demo-page-{transport}")
        await pilot.press("ctrl+q")


MODES = pytest.mark.parametrize("mode", ["default", "serverless"])


@MODES
async def test_demo_websocket_profile_node_browser_and_tui_chat_together(
    chat_demo: DemoFactory, browser: DriverFactory, js_peer: JsPeerFactory, tmp_path: Path, mode: str
) -> None:
    demo, info = chat_demo() if mode == "default" else chat_demo("--service-mode", mode)
    assert set(info) == {
        "chat_url",
        "web_url",
        "gateway_url",
        "service_url",
        "profile",
        "service",
        "service_mode",
        "flow_url",
    }
    assert (info["service"], info["profile"], info["service_mode"]) == ("signalr", "websocket", mode)
    await _three_way_chat(info, "websockets", browser, js_peer, tmp_path)

    # The websocket profile has no API for SSE or LongPolling on client/: APIM's 404, no fallback.
    refused = await js_peer(info["chat_url"], transport="longpolling", expect_start=False)
    assert refused.error is not None and "404" in refused.error

    demo.signal(signal.SIGTERM)
    assert demo.popen.wait(20) == 0
    for url in (info["gateway_url"], info["service_url"], info["web_url"].rstrip("/")):
        assert not _listening(url), f"{url} still accepts connections after the demo stopped"


@MODES
async def test_demo_sse_lp_profile_serves_sse_and_longpolling(
    chat_demo: DemoFactory, browser: DriverFactory, js_peer: JsPeerFactory, tmp_path: Path, mode: str
) -> None:
    demo, info = chat_demo("--profile", "sse-lp", "--service-mode", mode)
    assert (info["profile"], info["service_mode"]) == ("sse-lp", mode)
    await _three_way_chat(info, "sse", browser, js_peer, tmp_path)
    lp = await js_peer(info["chat_url"], transport="longpolling")
    await lp.send("broadcastMessage", "lp", "polling works")
    assert await lp.next_message("broadcastMessage", timeout=10) == ("broadcastMessage", ["lp", "polling works"])

    # The sse-lp profile has no WebSocket API on client/: the upgrade reaches an HTTP API and is never switched.
    refused = await js_peer(info["chat_url"], transport="websockets", expect_start=False)
    assert refused.error is not None and "WebSocket" in refused.error, refused.error
    demo.signal(signal.SIGINT)
    assert demo.popen.wait(20) == 0


def test_demo_reports_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = Process([script("chat-demo"), "--no-tui", "--gateway-port", str(port)])
        assert process.popen.wait(60) != 0
        err = process.stderr()
        process.stop()
    assert "chat-demo: error:" in err and "apim-gateway" in err
