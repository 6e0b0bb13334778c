"""The TUI on Azure Web PubSub end to end: real ``webpubsub-emulator``, ``apim-gateway --profile webpubsub`` and
``chat-server --service webpubsub`` processes on 127.0.0.1, our Web PubSub client inside the app: a connection that
drops is resumed (or replaced from a fresh negotiate) and the chat goes on; the gateway's subscription key is sent.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial

import pytest
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from textual.widgets import Input

from chat.app import ChatApp
from chat.probe import exit_code
from chat.service_connection import ServiceConnection
from chat.webpubsub_connection import WebPubSubConnection
from signalr.client import ConnectionState, TraceEvent, TransportChoice
from tests.support.processes import free_port
from tests.support.stack import Gateway, start_gateway
from tests.support.tui import seen, wait_until
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator
from tests.support.wps_server import WebPubSubChatServer, start_webpubsub_chat_server
from webpubsub.client import WebPubSubClient
from webpubsub.tokens import mint_client_token

from .fake_webpubsub import negotiate_server

SIZE = (120, 36)
KEY = "wps-e2e-subscription-key-0123456789"


@dataclass
class WpsStack:
    emulator: WebPubSubEmulator
    server: WebPubSubChatServer
    gateway: Gateway

    @property
    def chat_url(self) -> str:
        return f"{self.server.url}/chat"

    def restart_gateway(self, *args: str) -> None:
        """A new gateway on the same port (the old one must be gone)."""
        self.gateway = start_gateway(self.emulator.endpoint, "--profile", "webpubsub", *args, port=self.gateway.port)


@pytest.fixture
def stack() -> Iterator[WpsStack]:
    # The emulator's event handler is the chat server, whose port is picked first; the server's clients go through
    # the gateway (ClientEndpoint), which needs the emulator's port.
    server_port, gateway_port = free_port(), free_port()
    emulator = start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{server_port}/eventhandler")
    started: list[WebPubSubEmulator | WebPubSubChatServer | Gateway] = [emulator]
    try:
        gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub", port=gateway_port)
        started.append(gateway)
        client_endpoint = emulator.connection_string_to(f"http://127.0.0.1:{gateway_port}")
        server = start_webpubsub_chat_server(client_endpoint, port=server_port)
        started.append(server)
        running = WpsStack(emulator, server, gateway)
        yield running
        started[1] = running.gateway
    finally:
        for process in reversed(started):
            process.stop()


def status(app: ChatApp) -> str:
    return str(app.status_bar.render())


async def test_a_dropped_connection_is_resumed(stack: WpsStack) -> None:
    app = ChatApp(stack.chat_url, TransportChoice.WEBSOCKETS, name="rita", gateway_profile="webpubsub")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "rita JOINED"), timeout=20, what="the JOINED line")
        assert app.connection is not None
        first = app.connection.connection_id
        # The gateway dies without closing anything: the service keeps the connection for its reconnect window.
        stack.gateway.process.popen.send_signal(signal.SIGKILL)
        stack.gateway.process.popen.wait(10)
        await wait_until(pilot, lambda: "Reconnecting" in status(app), timeout=10, what="Reconnecting")
        assert seen(app, "Connection lost — reconnecting…")
        stack.restart_gateway()
        await wait_until(pilot, lambda: "Connected" in status(app), timeout=20, what="Connected again")
        assert seen(app, f"Reconnected with Web PubSub to {stack.gateway.host}")
        assert app.connection.connection_id == first  # the same connection, resumed with its reconnection token
        app.query_one("#message", Input).value = "still here"
        await pilot.press("enter")
        await wait_until(pilot, lambda: seen(app, "rita (you): still here"), timeout=10, what="a message after it")
        await pilot.press("f12")
        await wait_until(pilot, lambda: bool(app.trace_panel.plain_rows), what="trace rows")
        assert any("reconnect" in r and "recovering connection" in r for r in app.trace_panel.plain_rows)
        assert not any("awps_reconnection_token=" in r and "***" not in r for r in app.trace_panel.plain_rows)
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_a_gateway_restart_resumes_the_same_connection(stack: WpsStack) -> None:
    """A clean gateway stop ends the service side with 1001 "going away": the service keeps the reliable session, and
    the chat resumes it through the new gateway (same connection id, nothing lost)."""
    app = ChatApp(stack.chat_url, TransportChoice.WEBSOCKETS, name="rae", gateway_profile="webpubsub")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "rae JOINED"), timeout=20, what="the JOINED line")
        assert app.connection is not None
        first = app.connection.connection_id
        stack.gateway.stop()
        await wait_until(pilot, lambda: "Reconnecting" in status(app), timeout=10, what="Reconnecting")
        stack.restart_gateway()
        await wait_until(pilot, lambda: "Connected" in status(app), timeout=30, what="Connected again")
        assert app.connection.connection_id == first
        app.query_one("#message", Input).value = "on the same connection"
        await pilot.press("enter")
        await wait_until(pilot, lambda: seen(app, "rae (you): on the same connection"), timeout=10)
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_a_connection_the_service_closes_is_replaced_from_a_fresh_negotiate(stack: WpsStack) -> None:
    """The service closes the connection (the REST API's close, code 1008): nothing to resume, so the chat asks the
    app server for a fresh client access URL and goes on over a new connection."""
    app = ChatApp(stack.chat_url, TransportChoice.WEBSOCKETS, name="sam", gateway_profile="webpubsub")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "sam JOINED"), timeout=20, what="the JOINED line")
        assert app.connection is not None
        first = app.connection.connection_id
        assert first is not None
        service = WebPubSubServiceClient.from_connection_string(stack.emulator.connection_string, hub="chat")
        service.close_connection(first, reason="closed by the test")
        await wait_until(
            pilot,
            lambda: app.connection is not None and app.connection.connection_id not in (None, first),
            timeout=30,
            what="a new connection",
        )
        await wait_until(pilot, lambda: "Connected" in status(app), timeout=30, what="Connected again")
        app.query_one("#message", Input).value = "on a new connection"
        await pilot.press("enter")
        await wait_until(pilot, lambda: seen(app, "sam (you): on a new connection"), timeout=10)
        await pilot.press("f12")
        await wait_until(pilot, lambda: bool(app.trace_panel.plain_rows), what="trace rows")
        rows = app.trace_panel.plain_rows
        negotiates = [r for r in rows if "negotiate" in r and f"127.0.0.1:{stack.server.port}" in r]
        assert len(negotiates) >= 2, rows  # the first answer, then a fresh client access URL
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_f2_probes_the_web_pubsub_path_beside_the_chat(stack: WpsStack) -> None:
    """F2 on a Web PubSub chat runs the probe's Web PubSub checks through the gateway; the chat's connection stays."""
    app = ChatApp(stack.chat_url, TransportChoice.WEBSOCKETS, name="pia", gateway_profile="webpubsub")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "pia JOINED"), timeout=20, what="the JOINED line")
        await pilot.press("f2")
        await wait_until(pilot, lambda: app.probe_run is not None and app.probe_run.done, timeout=30, what="the probe")
        run = app.probe_run
        assert run is not None and run.error is None and run.report is not None
        assert exit_code(run.report) == 0, run.report
        assert [p.value for p in run.report.working_profiles] == ["webpubsub"]
        await pilot.press("escape")
        assert app.connection is not None and "Connected" in status(app)
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_the_subscription_key_goes_on_the_websocket_upgrade(stack: WpsStack) -> None:
    stack.gateway.stop()
    stack.restart_gateway("--subscription-key", KEY)
    refused = ChatApp(stack.chat_url, TransportChoice.WEBSOCKETS, name="una", gateway_profile="webpubsub")
    async with refused.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(refused, "Could not connect"), timeout=20, what="the refusal")
        assert seen(refused, "subscription key")
        assert refused.connection is not None and refused.connection.state is ConnectionState.DISCONNECTED
        await pilot.press("ctrl+q")
        await pilot.pause()
    headers = {"Ocp-Apim-Subscription-Key": KEY}
    app = ChatApp(stack.chat_url, TransportChoice.WEBSOCKETS, name="vic", headers=headers, gateway_profile="webpubsub")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "vic JOINED"), timeout=20, what="the JOINED line")
        await pilot.press("f12")
        await wait_until(pilot, lambda: bool(app.trace_panel.plain_rows), what="trace rows")
        assert not any(KEY in r for r in app.trace_panel.plain_rows)
        assert KEY not in " ".join(app.chat_log.plain_lines) and KEY not in status(app)
        await pilot.press("ctrl+q")
        await pilot.pause()


def impatient_client(
    url: str | Callable[[], Awaitable[str]],
    *,
    protocol: str,
    headers: Mapping[str, str] | None,
    trace: Callable[[TraceEvent], None] | None,
) -> WebPubSubClient:
    """Our client with short recovery and two reconnect attempts (the chat's own gives up after about a minute)."""
    return WebPubSubClient(
        url,
        protocol=protocol,
        headers=headers,
        trace=trace,
        recovery_timeout=1.0,
        recovery_interval=0.2,
        reconnect_delay=0.2,
        max_reconnect_attempts=2,
    )


async def test_the_chat_says_when_the_client_gives_up(stack: WpsStack) -> None:
    factory = partial(
        ServiceConnection, webpubsub_factory=partial(WebPubSubConnection, client_factory=impatient_client)
    )
    app = ChatApp(stack.chat_url, TransportChoice.WEBSOCKETS, name="walt", connection_factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "walt JOINED"), timeout=20, what="the JOINED line")
        stack.gateway.process.popen.send_signal(signal.SIGKILL)  # and it does not come back
        stack.gateway.process.popen.wait(10)
        await wait_until(pilot, lambda: seen(app, "Connection closed:"), timeout=20, what="the final close")
        assert seen(app, "2 reconnect attempts failed") and seen(app, "press ctrl+r to reconnect")
        assert app.connection is not None and app.connection.state is ConnectionState.DISCONNECTED
        assert "Disconnected" in status(app)
        await pilot.press(*"anyone?", "enter")
        await wait_until(
            pilot, lambda: seen(app, "Cannot send data if the connection is not in the 'Connected' State.")
        )
        # The gateway is back: ctrl+r connects again (negotiate, the Web PubSub answer, a new client).
        stack.restart_gateway()
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: " ".join(app.chat_log.plain_lines).count("walt JOINED") == 2, timeout=20)
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_an_expired_client_access_url_is_refused_with_the_reason(stack: WpsStack) -> None:
    # An app server that hands out a token that expired an hour ago: the service refuses the upgrade (401).
    audience = f"{stack.emulator.endpoint}/client/hubs/chat"
    expired = mint_client_token(stack.emulator.access_key, audience, lifetime=60, now=time.time() - 3600)
    body = json.dumps({"service": "webpubsub", "hub": "chat", "url": f"{audience}?access_token={expired}"}).encode()
    body = body.replace(b'"http://', b'"ws://')
    async with negotiate_server(lambda n: (200, body)) as server:
        app = ChatApp(server.url, TransportChoice.WEBSOCKETS, name="xena")
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: seen(app, "Could not connect"), timeout=20, what="the refusal")
            assert seen(app, "401") and seen(app, "press ctrl+r to retry")
            await pilot.press("f12")
            await wait_until(pilot, lambda: bool(app.trace_panel.plain_rows), what="trace rows")
            assert not any(expired in r or expired[:30] in r for r in app.trace_panel.plain_rows)
            assert expired not in " ".join(app.chat_log.plain_lines)
            await pilot.press("ctrl+q")
            await pilot.pause()
