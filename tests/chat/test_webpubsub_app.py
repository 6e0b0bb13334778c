"""The chat UI when the app server answers for Azure Web PubSub: a real HTTP app server on 127.0.0.1 answers the
negotiate, the real SignalR client meets the answer, and the chat goes on over Web PubSub (an in-memory client here;
the end-to-end test uses the real one against real processes).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from functools import partial

import pytest
from textual.widgets import Input, Select, Static

from chat.app import ChatApp
from chat.service_connection import ServiceConnection
from chat.webpubsub_connection import WebPubSubConnection
from signalr.client import ConnectionState, TransportChoice
from signalr.messagepack_protocol import MESSAGEPACK
from tests.support.tui import seen, wait_until

from .fake_webpubsub import TOKEN, AppServer, FakeSendError, FakeWebPubSub, negotiate_server, webpubsub_body

SIZE = (120, 36)
SUBPROTOCOL = "json.reliable.webpubsub.azure.v1"
KEY = "apim-subscription-key-0123456789"


@pytest.fixture
async def app_server() -> AsyncIterator[AppServer]:
    async with negotiate_server(lambda n: (200, webpubsub_body(n))) as server:
        yield server


def make_app(server: AppServer, fake: FakeWebPubSub, **options: object) -> ChatApp:
    factory = partial(ServiceConnection, webpubsub_factory=partial(WebPubSubConnection, client_factory=fake.factory))
    settings: dict[str, object] = {
        "name": "alice",
        "connection_factory": factory,
        "clock": lambda: datetime(2024, 5, 17, 12, 34, 56),
    }
    settings.update(options)
    return ChatApp(server.url, TransportChoice.WEBSOCKETS, **settings)  # type: ignore[arg-type]


def status(app: ChatApp) -> str:
    return str(app.status_bar.render())


async def test_the_chat_goes_on_over_web_pubsub(app_server: AppServer) -> None:
    service = FakeWebPubSub()
    app = make_app(app_server, service, headers={"Ocp-Apim-Subscription-Key": KEY})
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"), what="the JOINED line")
        # The JOINED notice went as a broadcastMessage event with JSON {name, message}.
        assert service.events[0][:2] == ("broadcastMessage", {"name": "_SYSTEM_", "message": "alice JOINED"})
        assert service.created[0].headers == {"Ocp-Apim-Subscription-Key": KEY}
        assert seen(app, f"Connected with Web PubSub and {SUBPROTOCOL} to 127.0.0.1:9")
        await wait_until(pilot, lambda: f"Web PubSub · {SUBPROTOCOL}" in status(app), what="the status bar")
        assert "Connected" in status(app) and "wps-1" in status(app)
        assert app.title == "Web PubSub Chatroom"
        # Transport and hub protocol are SignalR's: both selectors give way to a label that says why.
        for selector in app.query("#transport, #protocol").results(Select):
            assert selector.disabled and not selector.display
        label = app.query_one("#service-label", Static)
        assert label.display and str(label.render()) == f"Web PubSub · {SUBPROTOCOL}"
        assert f"Azure Web PubSub: one WebSocket speaking {SUBPROTOCOL}" in str(label.tooltip)
        footer_keys = {binding.action for (_, binding, enabled, _) in app.active_bindings.values() if enabled}
        assert "choose_transport" not in footer_keys and "choose_protocol" not in footer_keys

        service.push({"name": "bob", "message": "hi from [bold]bob[/]", "target": "broadcastMessage"})
        await wait_until(pilot, lambda: seen(app, "bob: hi from [bold]bob[/]"), what="bob's line")
        await pilot.press(*"hello", "enter")
        await wait_until(pilot, lambda: seen(app, "alice (you): hello"), what="our broadcast back")
        await pilot.press(*"ping", "ctrl+e")
        await wait_until(pilot, lambda: seen(app, "alice (you): ping (echo from server)"), what="the echo")
        assert [event[:2] for event in service.events[1:]] == [
            ("broadcastMessage", {"name": "alice", "message": "hello"}),
            ("echo", {"name": "alice", "message": "ping"}),
        ]

        await pilot.press("f12")
        await wait_until(pilot, lambda: len(app.trace_panel.plain_rows) >= 4, what="trace rows")
        assert app.trace_panel.border_title == f"Network trace · Web PubSub {SUBPROTOCOL} (text)"
        rows = app.trace_panel.plain_rows
        assert any("negotiate" in r and "answers for Azure Web PubSub" in r for r in rows), rows
        assert any("redirect" in r and "on to its client access URL" in r for r in rows), rows
        assert any("connect" in r and "connected as wps-1" in r for r in rows), rows
        assert any("send" in r and "event echo" in r for r in rows), rows
        assert any("/eventhandler" in r for r in rows), rows  # the hops behind the service, once
        assert not any(TOKEN[:20] in r or KEY in r for r in rows)
        assert not any(r.split()[1:2] == ["error"] for r in rows), rows
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert service.created[0].stopped


async def test_transport_and_protocol_choices_are_refused_with_the_reason(app_server: AppServer) -> None:
    service = FakeWebPubSub()
    app = make_app(app_server, service)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        await pilot.press("ctrl+t")
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "message"  # no selector opened
        app.switch_transport(TransportChoice.LONG_POLLING)  # as the palette or a script would
        app.switch_protocol(MESSAGEPACK)
        await pilot.pause()
        assert app.transport is TransportChoice.WEBSOCKETS and len(service.created) == 1  # no reconnect
        assert app.protocol is not MESSAGEPACK
        assert " ".join(app.chat_log.plain_lines).count("Not switched: Azure Web PubSub: one WebSocket speaking") == 2
        commands = [command.title for command in app.get_system_commands(app.screen)]
        assert not any(title.startswith(("Transport:", "Protocol:")) for title in commands), commands
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_a_refused_event_is_kept_for_resend(app_server: AppServer) -> None:
    service = FakeWebPubSub()
    app = make_app(app_server, service)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        service.ack_error = FakeSendError("InternalServerError", "the event handler answered 500")
        app.query_one("#message", Input).value = "lost?"
        await pilot.press("enter")
        await wait_until(pilot, lambda: seen(app, 'Message not delivered: "lost?"'), what="the refusal")
        assert seen(app, "InternalServerError: the event handler answered 500 — press F5 to resend")
        service.ack_error = None
        await pilot.press("f5")
        await wait_until(pilot, lambda: seen(app, "alice (you): lost?"), what="the resent message")
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_reconnect_and_final_loss_are_shown(app_server: AppServer) -> None:
    service = FakeWebPubSub()
    app = make_app(app_server, service)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        client = service.created[0]
        await client.drop()  # a new connection from a fresh negotiate
        await wait_until(pilot, lambda: seen(app, "Reconnected with Web PubSub to 127.0.0.1:9"), what="reconnected")
        assert seen(app, "Connection lost — reconnecting…")
        assert len(app_server.requests) == 2  # the SignalR client's first negotiate, then the fresh URL
        await wait_until(pilot, lambda: "wps-2" in status(app), what="the new connection id")
        client.give_up(ConnectionError("the service went away"))
        await wait_until(pilot, lambda: seen(app, "Connection closed: the service went away"), what="the loss")
        assert app.connection is not None and app.connection.state is ConnectionState.DISCONNECTED
        # ctrl+r starts again: negotiate, the Web PubSub answer, a new client.
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(service.created) == 2 and "Connected" in status(app), what="again")
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_the_demo_knows_the_service_before_connecting(app_server: AppServer) -> None:
    switched: list[str] = []

    async def switcher(profile: str) -> None:
        switched.append(profile)

    service = FakeWebPubSub()
    app = make_app(
        app_server, service, gateway_profile="webpubsub", profile_switcher=switcher, service="webpubsub", name=None
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        # Before any connection: the status bar and the selectors already say Web PubSub.
        assert f"Web PubSub · {SUBPROTOCOL}" in status(app)
        assert all(s.disabled for s in app.query("#transport, #protocol").results(Select))
        assert app.query_one("#service-label", Static).display
        await pilot.press("enter")  # the name prompt's default
        await wait_until(pilot, lambda: seen(app, "JOINED"), what="the JOINED line")
        assert switched == []  # the webpubsub gateway profile is never switched to a SignalR one
        assert "APIM webpubsub" in status(app) and "via gateway" in status(app)
        await pilot.press("ctrl+q")
        await pilot.pause()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://res.webpubsub.azure.com/client/hubs/chat", "res.webpubsub.azure.com (service, direct)"),
        ("wss://apim1.azure-api.net/client/hubs/chat", "apim1.azure-api.net via gateway"),
        ("ws://127.0.0.1:8889/client/hubs/chat", "127.0.0.1:8889 via ClientEndpoint"),
    ],
)
async def test_the_connected_line_says_whose_host_it_is(url: str, shown: str) -> None:
    answer = json.dumps({"service": "webpubsub", "hub": "chat", "url": f"{url}?access_token={TOKEN}"}).encode()
    async with negotiate_server(lambda n: (200, answer)) as server:
        app = make_app(server, FakeWebPubSub())
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: seen(app, "alice JOINED"))
            assert seen(app, f"Connected with Web PubSub and {SUBPROTOCOL} to {shown}")
            await wait_until(pilot, lambda: f"→ {shown} │" in status(app), what="the status bar")
            await pilot.press("ctrl+q")
            await pilot.pause()
