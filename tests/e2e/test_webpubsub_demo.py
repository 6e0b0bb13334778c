"""``chat-demo --service webpubsub`` as a user runs it: one command, then the official JavaScript Web PubSub client
(Node), the official Python Web PubSub client and the terminal chat (our client) talk through the local APIM gateway
to the local Web PubSub service, whose event handler is the app server: a broadcast reaches everyone, an echo only
its sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from azure.messaging.webpubsubclient.aio import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OnServerDataMessageArgs,
    WebPubSubDataType,
    WebPubSubProtocolType,
)
from textual.widgets import Select

from chat.app import ChatApp
from signalr.client import ConnectionState, TransportChoice
from tests.support.processes import Process, script
from tests.support.tui import seen, wait_until
from tests.support.wps_jspeer import WpsJsPeer

from .conftest import DemoFactory

SIZE = (120, 36)
TIMEOUT = 10.0
SUBPROTOCOL = "json.reliable.webpubsub.azure.v1"


class PythonPeer:
    """The official ``azure-messaging-webpubsubclient`` (aio), its URL from the app server's negotiate."""

    def __init__(self, chat_url: str) -> None:
        async def url() -> str:
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{chat_url}/negotiate", timeout=aiohttp.ClientTimeout(TIMEOUT)) as answer,
            ):
                assert answer.status == 200, await answer.text()
                body = await answer.json()
            assert body["service"] == "webpubsub"
            return str(body["url"])

        self.client = WebPubSubClient(
            credential=WebPubSubClientCredential(url),
            protocol_type=WebPubSubProtocolType.JSON_RELIABLE,
            reconnect_retry_total=0,
            message_retry_total=0,
        )
        self.messages: asyncio.Queue[Any] = asyncio.Queue()

    async def start(self) -> None:
        async def on_message(args: OnServerDataMessageArgs) -> None:
            self.messages.put_nowait(args.data)

        await self.client.subscribe(CallbackType.SERVER_MESSAGE, on_message)
        await asyncio.wait_for(self.client.open(), TIMEOUT)

    async def next_message(self) -> Any:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    async def send(self, event: str, name: str, message: str) -> None:
        data = {"name": name, "message": message}
        await asyncio.wait_for(self.client.send_event(event, data, WebPubSubDataType.JSON), TIMEOUT)


@contextlib.asynccontextmanager
async def python_peer(chat_url: str) -> AsyncIterator[PythonPeer]:
    peer = PythonPeer(chat_url)
    try:
        await peer.start()
        yield peer
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(peer.client.close(), TIMEOUT)


@contextlib.asynccontextmanager
async def node_peer(chat_url: str) -> AsyncIterator[WpsJsPeer]:
    peer = await WpsJsPeer.start(negotiate=f"{chat_url}/negotiate", protocol="reliable")
    try:
        yield peer
    finally:
        await peer.stop()


def chat(name: str, message: str, target: str = "broadcastMessage") -> dict[str, str]:
    """A chat message as the app server sends it to Web PubSub clients."""
    return {"name": name, "message": message, "target": target}


def status(app: ChatApp) -> str:
    return str(app.status_bar.render())


@pytest.mark.timeout(180)
async def test_webpubsub_demo_node_python_and_tui_chat_together(chat_demo: DemoFactory) -> None:
    demo, info = chat_demo("--service", "webpubsub")
    assert set(info) == {"chat_url", "web_url", "gateway_url", "service_url", "profile", "service", "flow_url"}
    assert (info["service"], info["profile"]) == ("webpubsub", "webpubsub")
    gateway = info["gateway_url"].removeprefix("http://")

    async with node_peer(info["chat_url"]) as node, python_peer(info["chat_url"]) as python:
        # The client access URL the app server hands out points at the gateway (ClientEndpoint), token redacted.
        assert node.url is not None and node.url.startswith(f"ws://{gateway}/client/hubs/chat?"), node.url
        # The terminal chat as `chat --url …` runs it: it learns Web PubSub from the negotiate answer.
        app = ChatApp(info["chat_url"], TransportChoice.WEBSOCKETS, name="termy", gateway_profile=info["profile"])
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: seen(app, "termy JOINED"), timeout=30, what="the TUI to join")
            assert await node.next_data() == chat("_SYSTEM_", "termy JOINED")
            assert await python.next_message() == chat("_SYSTEM_", "termy JOINED")
            assert seen(app, f"Connected with Web PubSub and {SUBPROTOCOL} to {gateway} via gateway")
            await wait_until(pilot, lambda: f"Web PubSub · {SUBPROTOCOL}" in status(app), what="the status bar")
            assert all(s.disabled for s in app.query("#transport, #protocol").results(Select))

            # Node → everyone.
            await node.send_event("broadcastMessage", {"name": "nodey", "message": "hello from node"})
            await wait_until(pilot, lambda: seen(app, "nodey: hello from node"), timeout=TIMEOUT, what="node → TUI")
            assert await python.next_message() == chat("nodey", "hello from node")
            assert await node.next_data() == chat("nodey", "hello from node")

            # Python → everyone.
            await python.send("broadcastMessage", "pyth", "hello from python")
            await wait_until(pilot, lambda: seen(app, "pyth: hello from python"), timeout=TIMEOUT, what="py → TUI")
            assert await node.next_data() == chat("pyth", "hello from python")
            assert await python.next_message() == chat("pyth", "hello from python")

            # The terminal → everyone (its own line comes back through the service).
            await pilot.press(*"hello from the terminal", "enter")
            assert await node.next_data() == chat("termy", "hello from the terminal")
            assert await python.next_message() == chat("termy", "hello from the terminal")
            await wait_until(pilot, lambda: seen(app, "termy (you): hello from the terminal"), timeout=TIMEOUT)

            # Echoes go to their sender only: each peer's next message is the broadcast sent after the echoes.
            await pilot.press(*"just me", "ctrl+e")
            await wait_until(pilot, lambda: seen(app, "termy (you): just me (echo from server)"), timeout=TIMEOUT)
            await node.send_event("echo", {"name": "nodey", "message": "node only"})
            assert await node.next_data() == chat("nodey", "node only (echo from server)", "echo")
            await python.send("echo", "pyth", "python only")
            assert await python.next_message() == chat("pyth", "python only (echo from server)", "echo")
            await python.send("broadcastMessage", "pyth", "after the echoes")
            await wait_until(pilot, lambda: seen(app, "pyth: after the echoes"), timeout=TIMEOUT, what="last line")
            assert await node.next_data() == chat("pyth", "after the echoes")
            assert await python.next_message() == chat("pyth", "after the echoes")
            assert not seen(app, "node only") and not seen(app, "python only")
            assert node.pending("server-message") == []

            # The trace shows the Web PubSub hops: negotiate at the app server, the WebSocket at the gateway.
            await pilot.press("f12")
            await wait_until(pilot, lambda: len(app.trace_panel.plain_rows) >= 6, what="trace rows")
            rows = app.trace_panel.plain_rows
            server_host = info["chat_url"].removeprefix("http://").split("/")[0]
            assert any("negotiate" in r and server_host in r and "Azure Web PubSub" in r for r in rows), rows
            assert any("connect" in r and gateway in r and f"subprotocol {SUBPROTOCOL}" in r for r in rows), rows
            assert any("event echo" in r for r in rows), rows
            assert not any("access_token=ey" in r or "eyJ" in r for r in rows), rows

            connection = app.connection
            await pilot.press("ctrl+q")
            await pilot.pause()
        assert connection is not None and connection.state is ConnectionState.DISCONNECTED

        # The others still chat after the terminal left.
        await node.send_event("broadcastMessage", {"name": "nodey", "message": "still here"})
        assert await python.next_message() == chat("nodey", "still here")

    demo.signal(signal.SIGTERM)
    assert demo.popen.wait(20) == 0


def test_webpubsub_demo_refuses_signalr_options() -> None:
    for extra, reason in (
        (["--transport", "sse"], "--transport apply to SignalR only"),
        (["--profile", "websocket"], "--profile websocket is a SignalR profile"),
    ):
        process = Process([script("chat-demo"), "--no-tui", "--service", "webpubsub", *extra])
        assert process.popen.wait(20) == 2
        assert reason in process.stderr()
    process = Process([script("chat-demo"), "--no-tui", "--profile", "webpubsub"])
    assert process.popen.wait(20) == 2
    assert "--profile webpubsub needs --service webpubsub" in process.stderr()
