"""The TUI end to end: real ``signalr-emulator``, ``apim-gateway`` and ``chat-server`` processes on 127.0.0.1, the
real ``signalr.client.HubConnection`` inside the app, and the official JavaScript client as the other chatter.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from textual.widgets import Input

from chat.app import ChatApp
from signalr.client import ConnectionState, TransportChoice
from signalr.messagepack_protocol import MESSAGEPACK
from signalr.messages import Invocation
from tests.support.fixtures import JsPeerFactory
from tests.support.processes import free_port
from tests.support.stack import Gateway, Stack, start_gateway, start_stack
from tests.support.tui import seen, wait_until

SIZE = (120, 36)
ACCESS_KEY = "e2e-access-key-0123456789abcdefghijklmnop"


@dataclass
class DemoStack(Stack):
    """The three servers as ``chat-demo`` runs them: the app server's ClientEndpoint is the gateway, whose profile
    can be switched (each switch is recorded in ``switches``)."""

    switches: list[str] = field(default_factory=list)

    @property
    def running_gateway(self) -> Gateway:
        assert self.gateway is not None
        return self.gateway

    def restart_gateway(self, profile: str) -> None:
        """Stop the gateway (if it still runs) and start it with ``profile`` on the same port."""
        port = self.running_gateway.port
        self.running_gateway.stop()
        self.gateway = start_gateway(self.emulator_url, "--profile", profile, port=port)
        assert (self.gateway.port, self.gateway.profile) == (port, profile)

    async def switch_profile(self, profile: str) -> None:
        """The demo's profile switcher: restart the gateway with ``profile`` on the same port."""
        self.switches.append(profile)
        self.restart_gateway(profile)


@pytest.fixture(scope="module")
def stack() -> Iterator[DemoStack]:
    started = start_stack("--access-key", ACCESS_KEY, gateway_args=("--profile", "websocket"))
    running = DemoStack(started.emulator, started.server, started.gateway)
    yield running
    running.stop()


@pytest.fixture
def reset_profile(stack: DemoStack) -> Iterator[None]:
    """Each test starts with the gateway in the websocket profile."""
    if stack.running_gateway.profile != "websocket":
        stack.restart_gateway("websocket")
    stack.switches.clear()
    yield


def status(app: ChatApp) -> str:
    return str(app.status_bar.render())


async def test_chat_with_the_official_js_client_through_the_gateway(
    stack: DemoStack, reset_profile: None, js_peer: JsPeerFactory
) -> None:
    bob = await js_peer(stack.hub_url, transport="websockets")
    app = ChatApp(stack.hub_url, TransportChoice.WEBSOCKETS, name="alice", gateway_profile="websocket")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"), timeout=20, what="own JOINED line")
        assert await bob.next_message("broadcastMessage", timeout=10) == (
            "broadcastMessage",
            ["_SYSTEM_", "alice JOINED"],
        )

        await wait_until(pilot, lambda: "Connected" in status(app), what="status Connected")
        line = status(app)
        assert "Connected" in line and "WebSockets" in line
        assert f"{stack.running_gateway.host} via gateway" in line
        assert app.connection is not None and app.connection.connection_id and app.connection.connection_id in line

        await bob.send("broadcastMessage", "bob", "hi from node [bold]x[/]")
        await wait_until(pilot, lambda: seen(app, "bob: hi from node [bold]x[/]"), timeout=10, what="bob's line")
        assert await bob.next_message(timeout=10) == ("broadcastMessage", ["bob", "hi from node [bold]x[/]"])

        await pilot.press(*"hello node", "enter")
        assert await bob.next_message("broadcastMessage", timeout=10) == ("broadcastMessage", ["alice", "hello node"])
        await wait_until(pilot, lambda: seen(app, "alice (you): hello node"), timeout=10)
        assert re.search(r"rtt \d+ ms", status(app)), status(app)  # our broadcast's way back was timed

        await pilot.press(*"ping", "ctrl+e")
        await wait_until(pilot, lambda: seen(app, "alice (you): ping (echo from server)"), timeout=10, what="echo")
        assert bob.pending_messages() == []  # the echo went to the caller only

        await pilot.press("f12")
        await wait_until(pilot, lambda: len(app.trace_panel.plain_rows) >= 4, what="trace rows")
        rows = app.trace_panel.plain_rows
        assert any("negotiate" in r and f"127.0.0.1:{stack.server.port}" in r for r in rows)
        assert any("negotiate" in r and stack.running_gateway.host in r for r in rows)
        assert not any(stack.emulator.access_key in r or "eyJ" in r for r in rows)

        connection = app.connection
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert connection is not None and connection.state is ConnectionState.DISCONNECTED
    # The service saw the WebSocket close, so the peer is alone now; it is still connected and fine.
    await bob.send("broadcastMessage", "bob", "still here")
    assert await bob.next_message("broadcastMessage", timeout=10) == ("broadcastMessage", ["bob", "still here"])


async def test_status_follows_reconnect_when_the_gateway_restarts(stack: DemoStack, reset_profile: None) -> None:
    app = ChatApp(stack.hub_url, TransportChoice.WEBSOCKETS, name="frank", gateway_profile="websocket")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "frank JOINED"), timeout=20)
        first_id = app.connection.connection_id if app.connection else None
        stack.running_gateway.stop()  # the gateway goes away: the WebSocket drops
        await wait_until(pilot, lambda: "Reconnecting" in status(app), timeout=10, what="Reconnecting state")
        assert seen(app, "Connection lost — reconnecting…")
        stack.restart_gateway("websocket")
        await wait_until(pilot, lambda: "Connected" in status(app), timeout=20, what="Connected again")
        assert seen(app, f"Reconnected with WebSockets to {stack.running_gateway.host}")
        assert app.connection is not None and app.connection.connection_id != first_id
        assert str(app.connection.connection_id) in status(app)
        app.query_one("#message", Input).value = "back again"
        await pilot.press("enter")
        await wait_until(pilot, lambda: seen(app, "frank (you): back again"), timeout=10)


async def test_switching_to_longpolling_switches_the_gateway_profile(stack: DemoStack, reset_profile: None) -> None:
    app = ChatApp(
        stack.hub_url,
        TransportChoice.WEBSOCKETS,
        name="carol",
        gateway_profile="websocket",
        profile_switcher=stack.switch_profile,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "carol JOINED"), timeout=20)
        await pilot.press("ctrl+t")
        await pilot.pause()
        await pilot.press("down", "down", "enter")  # WebSockets → ServerSentEvents → LongPolling
        await wait_until(
            pilot,
            lambda: (
                app.connection is not None
                and app.connection.transport_name == "LongPolling"
                and app.connection.state is ConnectionState.CONNECTED
            ),
            timeout=30,
            what="LongPolling connection",
        )
        assert stack.switches == ["sse-lp"]
        assert seen(app, "switching the local gateway to the sse-lp profile")
        await wait_until(pilot, lambda: " ".join(app.chat_log.plain_lines).count("carol JOINED") == 2, timeout=10)
        line = status(app)
        assert "LongPolling" in line and f"{stack.running_gateway.host} via gateway" in line and "APIM sse-lp" in line
        app.query_one("#message", Input).value = "over long polling"
        await pilot.press("enter")
        await wait_until(pilot, lambda: seen(app, "carol (you): over long polling"), timeout=10)
        started = time.monotonic()
        await pilot.press("ctrl+q")
        await pilot.pause()
    # LP stop sends DELETE, which the seed doc's sse-lp profile lacks (APIM 404): quitting must not hang on it.
    assert time.monotonic() - started < 10


async def test_sse_chat_with_the_js_client_after_a_switch_at_start(
    stack: DemoStack, reset_profile: None, js_peer: JsPeerFactory
) -> None:
    app = ChatApp(
        stack.hub_url,
        TransportChoice.SSE_THEN_LONG_POLLING,
        name="grace",
        gateway_profile="websocket",
        profile_switcher=stack.switch_profile,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "grace JOINED"), timeout=30, what="JOINED after the switch")
        assert stack.switches == ["sse-lp"]
        assert app.connection is not None and app.connection.transport_name == "ServerSentEvents"
        heidi = await js_peer(stack.hub_url, transport="sse")
        assert heidi.transport == "ServerSentEvents"
        await heidi.send("broadcastMessage", "heidi", "hello over SSE")
        await wait_until(pilot, lambda: seen(app, "heidi: hello over SSE"), timeout=10, what="heidi's line")
        await pilot.press(*"hi heidi", "enter")
        messages = await heidi.messages_until(2, timeout=10)
        assert ("broadcastMessage", ["grace", "hi heidi"]) in messages
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_strict_apim_shows_why_the_transport_fails(stack: DemoStack, reset_profile: None) -> None:
    calls: list[str] = []

    async def switcher(profile: str) -> None:
        calls.append(profile)

    app = ChatApp(
        stack.hub_url,
        TransportChoice.SERVER_SENT_EVENTS,
        name="dave",
        gateway_profile="websocket",
        profile_switcher=switcher,
        strict_apim=True,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "Could not connect"), timeout=30, what="failure line")
        assert calls == []
        assert seen(app, f"the gateway at {stack.running_gateway.host} has no API for ServerSentEvents on client/")
        assert seen(app, "press ctrl+r to retry")
        assert "Disconnected" in status(app)
        await pilot.press(*"anyone?", "enter")
        await wait_until(
            pilot, lambda: seen(app, "Cannot send data if the connection is not in the 'Connected' State.")
        )


async def test_unreachable_server_is_named(stack: DemoStack) -> None:
    port = free_port()
    app = ChatApp(f"http://127.0.0.1:{port}/chat", TransportChoice.WEBSOCKETS, name="erin")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "Could not connect"), timeout=20)
        assert seen(app, f"127.0.0.1:{port}")


def frames(app: ChatApp, what: str) -> list[tuple[int, int, str]]:
    """Trace rows of frames the client summarised as ``messagepack, N bytes: <what> #id``: (bytes column, N, id)."""
    found = []
    for row in app.trace_panel.plain_rows:
        match = re.search(rf"\s(\d+) \S+\s+messagepack, (\d+) bytes: {re.escape(what)} #(\d+)", row)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return found


async def test_messagepack_chat_with_json_and_messagepack_js_clients(
    stack: DemoStack, reset_profile: None, js_peer: JsPeerFactory
) -> None:
    bob = await js_peer(stack.hub_url, transport="websockets")  # JSON
    carol = await js_peer(stack.hub_url, transport="websockets", protocol="messagepack")
    app = ChatApp(
        stack.hub_url,
        TransportChoice.WEBSOCKETS,
        name="mallory",
        gateway_profile="websocket",
        profile_switcher=stack.switch_profile,
        protocol=MESSAGEPACK,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "mallory JOINED"), timeout=20, what="own JOINED line")
        for peer in (bob, carol):
            assert await peer.next_message("broadcastMessage", timeout=10) == (
                "broadcastMessage",
                ["_SYSTEM_", "mallory JOINED"],
            )
        assert app.connection is not None and app.connection.protocol is MESSAGEPACK
        await wait_until(pilot, lambda: "Connected │ WebSockets · MessagePack │" in status(app), what="status")
        assert seen(app, f"Connected with WebSockets and MessagePack to {stack.running_gateway.host} via gateway")

        # A JSON client and a MessagePack client reach the MessagePack TUI, and it reaches both.
        await bob.send("broadcastMessage", "bob", "json to binary ✓")
        await wait_until(pilot, lambda: seen(app, "bob: json to binary ✓"), timeout=10, what="bob's line")
        await carol.send("broadcastMessage", "carol", "binary to binary")
        await wait_until(pilot, lambda: seen(app, "carol: binary to binary"), timeout=10, what="carol's line")
        await pilot.press(*"hello both", "enter")
        for peer in (bob, carol):
            assert await peer.next_message("broadcastMessage", timeout=10) == (
                "broadcastMessage",
                ["bob", "json to binary ✓"],
            )
            assert await peer.next_message("broadcastMessage", timeout=10) == (
                "broadcastMessage",
                ["carol", "binary to binary"],
            )
            assert await peer.next_message("broadcastMessage", timeout=10) == (
                "broadcastMessage",
                ["mallory", "hello both"],
            )
        await wait_until(pilot, lambda: seen(app, "mallory (you): hello both"), timeout=10)
        await pilot.press(*"just me", "ctrl+e")
        await wait_until(pilot, lambda: seen(app, "mallory (you): just me (echo from server)"), timeout=10)

        # The trace: the handshake names messagepack, and each sent frame's size is the MessagePack encoding's.
        await pilot.press("f12")
        await wait_until(pilot, lambda: bool(frames(app, "Invocation echo")), timeout=10, what="traced frames")
        assert app.trace_panel.border_title == "Network trace · MessagePack (binary)"
        rows = app.trace_panel.plain_rows
        assert any("handshake request (messagepack v1)" in r for r in rows), rows
        assert any("handshake complete (messagepack, version 1)" in r for r in rows), rows
        for target, arguments in (("broadcastMessage", ("mallory", "hello both")), ("echo", ("mallory", "just me"))):
            column, size, invocation_id = frames(app, f"Invocation {target}")[-1]
            assert column == size == len(MESSAGEPACK.encode(Invocation(target, arguments, invocation_id)))

        # LongPolling carries MessagePack too (binary bodies through the gateway's sse-lp profile).
        await pilot.press("ctrl+t")
        await pilot.pause()
        await pilot.press("down", "enter")  # WebSockets → (SSE is disabled) → LongPolling
        await wait_until(
            pilot,
            lambda: (
                app.connection is not None
                and app.connection.transport_name == "LongPolling"
                and app.connection.state is ConnectionState.CONNECTED
            ),
            timeout=30,
            what="LongPolling connection",
        )
        assert stack.switches == ["sse-lp"]
        await wait_until(pilot, lambda: "LongPolling · MessagePack" in status(app), what="LongPolling in the status")
        dave = await js_peer(stack.hub_url, transport="longpolling", protocol="messagepack")
        await pilot.press(*"over long polling", "enter")
        assert ("broadcastMessage", ["mallory", "over long polling"]) in await dave.messages_until(1, timeout=10)
        await dave.send("broadcastMessage", "dave", "polled back")
        await wait_until(pilot, lambda: seen(app, "dave: polled back"), timeout=10, what="dave's line")
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_messagepack_in_default_mode_through_server_connections(js_peer: JsPeerFactory) -> None:
    # chat-demo's default: the service hands messages to the app server over its server connections.
    default = start_stack("--access-key", ACCESS_KEY, service_mode="default")
    try:
        bob = await js_peer(default.hub_url, transport="longpolling")  # JSON
        app = ChatApp(
            default.hub_url, TransportChoice.WEBSOCKETS, name="trent", service_mode="default", protocol=MESSAGEPACK
        )
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: seen(app, "trent JOINED"), timeout=20, what="own JOINED line")
            await wait_until(pilot, lambda: "WebSockets · MessagePack" in status(app) and "mode Default" in status(app))
            await bob.send("broadcastMessage", "bob", "to the binary side")
            await wait_until(pilot, lambda: seen(app, "bob: to the binary side"), timeout=10, what="bob's line")
            await pilot.press(*"and back", "enter")
            messages = await bob.messages_until(3, timeout=10)
            assert ("broadcastMessage", ["trent", "and back"]) in messages
            await pilot.press(*"echo me", "ctrl+e")
            await wait_until(pilot, lambda: seen(app, "trent (you): echo me (echo from server)"), timeout=10)
            await pilot.press("ctrl+q")
            await pilot.pause()
    finally:
        default.stop()
