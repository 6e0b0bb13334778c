"""The hub protocol in the chat: ``--protocol``, the protocol selector, the status bar and the trace in MessagePack
mode, and why ServerSentEvents is not offered with MessagePack (an event stream carries only text).

Driven with Textual's Pilot over the in-memory fake hub; ``test_e2e.py`` runs MessagePack against the real stack.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import Input, OptionList, Static

from chat.app import ChatApp
from chat.cli import OptionError, parse_options
from chat.protocol_choice import carries, why_not
from chat.screens import HelpScreen
from chat.widgets import ProtocolSelector, StatusBar, StatusInfo, TransportSelector
from signalr.client import ConnectionState, TransportChoice
from signalr.handshake import encode_handshake_request
from signalr.json_protocol import JSON
from signalr.messagepack_protocol import MESSAGEPACK
from signalr.messages import Invocation
from tests.support.processes import script
from tests.support.tui import log_text, seen, wait_until

from .fake_client import FakeHub
from .test_app import run_from_palette
from .test_transport_selector import cells, inner

SIZE = (120, 36)
WHY_NO_SSE = (
    "MessagePack is binary and ServerSentEvents carries only text; use WebSockets, LongPolling or "
    "ServerSentEvents → LongPolling"
)


def status(app: ChatApp) -> str:
    return str(app.status_bar.render())


async def joined(pilot: Any, app: ChatApp, times: int = 1) -> None:
    await wait_until(pilot, lambda: log_text(app).count("alice JOINED") >= times, what=f"JOINED line #{times}")


# ----------------------------------------------------------------------------------------------- which transports


def test_sse_alone_cannot_carry_messagepack_and_everything_carries_json() -> None:
    assert [c for c in TransportChoice if not carries(c, MESSAGEPACK)] == [TransportChoice.SERVER_SENT_EVENTS]
    assert all(carries(c, JSON) and why_not(c, JSON) is None for c in TransportChoice)
    assert why_not(TransportChoice.SERVER_SENT_EVENTS, MESSAGEPACK) == WHY_NO_SSE
    assert why_not(TransportChoice.SERVER_SENT_EVENTS, MESSAGEPACK, lambda c: c.value) == (
        "MessagePack is binary and ServerSentEvents carries only text; use websockets, longpolling or sse-lp"
    )


# ----------------------------------------------------------------------------------------------- command line


def test_protocol_option_and_environment() -> None:
    assert parse_options([], environ={}).protocol is JSON
    assert parse_options(["--protocol", "messagepack"], environ={}).protocol is MESSAGEPACK
    assert parse_options(["--protocol", " MessagePack "], environ={}).protocol is MESSAGEPACK
    assert parse_options([], environ={"CHAT_PROTOCOL": "messagepack"}).protocol is MESSAGEPACK
    assert parse_options(["--protocol", "json"], environ={"CHAT_PROTOCOL": "messagepack"}).protocol is JSON
    # SSE → LongPolling is fine: the client goes straight to LongPolling with MessagePack.
    options = parse_options(["--protocol", "messagepack", "--transport", "sse-lp"], environ={})
    assert (options.protocol, options.transport) == (MESSAGEPACK, TransportChoice.SSE_THEN_LONG_POLLING)


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--protocol", "protobuf"], {}, "--protocol must be one of json, messagepack"),
        (["--protocol", ""], {}, "--protocol must be one of json, messagepack"),
        (
            ["--protocol", "messagepack", "--transport", "sse"],
            {},
            "--protocol messagepack with --transport sse: MessagePack is binary and ServerSentEvents carries only "
            "text; use websockets, longpolling or sse-lp",
        ),
        (
            [],
            {"CHAT_PROTOCOL": "messagepack", "CHAT_TRANSPORT": "sse"},
            "--protocol messagepack with --transport sse: MessagePack is binary",
        ),
    ],
)
def test_bad_protocol_options_are_refused(argv: list[str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_options(argv, environ=environ)
    assert str(info.value).startswith(message)


def test_chat_process_refuses_messagepack_over_sse_in_one_line(tmp_path: object) -> None:
    result = subprocess.run(
        [script("chat"), "--protocol", "messagepack", "--transport", "sse"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "chat: error: --protocol messagepack with --transport sse: MessagePack is binary and ServerSentEvents "
        "carries only text; use websockets, longpolling or sse-lp"
    ]


def test_chat_demo_refuses_messagepack_over_sse_before_starting_anything(tmp_path: object) -> None:
    result = subprocess.run(
        [script("chat-demo"), "--protocol", "messagepack", "--transport", "sse", "--no-tui"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "chat-demo: error: --protocol messagepack with --transport sse: MessagePack is binary and ServerSentEvents "
        "carries only text; use websockets, longpolling or sse-lp"
    )


# ----------------------------------------------------------------------------------------------- status bar


def test_status_bar_names_the_protocol_after_the_transport() -> None:
    info = StatusInfo(state=ConnectionState.CONNECTED, transport="WebSockets", protocol="MessagePack", host="h:1")
    assert "● Connected │ WebSockets · MessagePack │ → h:1 │" in StatusBar.render_info(info).plain
    waiting = StatusInfo(wanted=TransportChoice.LONG_POLLING, protocol="MessagePack")
    assert "│ LongPolling (wanted) · MessagePack │" in StatusBar.render_info(waiting).plain


# ----------------------------------------------------------------------------------------------- MessagePack mode


async def test_messagepack_mode_chats_and_shows_the_protocol_and_frame_sizes(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(protocol=MESSAGEPACK)
    async with app.run_test(size=SIZE) as pilot:
        await joined(pilot, app)
        connection = hub.created[0]
        assert connection.protocol is MESSAGEPACK  # what the app handed to the client
        assert seen(app, "Connecting to http://127.0.0.1:5000/chat with WebSockets and MessagePack…")
        assert seen(app, "Connected with WebSockets and MessagePack to 127.0.0.1:8080 via ClientEndpoint")
        await wait_until(pilot, lambda: "● Connected │ WebSockets · MessagePack │" in status(app), what="status")
        assert app.query_one("#protocol", ProtocolSelector).value == "messagepack"

        # Sending and receiving work as with JSON: the chat never sees the bytes.
        await pilot.press(*"hello in binary", "enter")
        await wait_until(pilot, lambda: seen(app, "alice (you): hello in binary"), what="own line")
        hub.push("broadcastMessage", "bob", "hi alice")
        await wait_until(pilot, lambda: seen(app, "bob: hi alice"), what="bob's line")
        await pilot.press(*"ping", "ctrl+e")
        await wait_until(pilot, lambda: seen(app, "alice (you): ping (echo from server)"), what="the echo")
        assert ("broadcastMessage", ("alice", "hello in binary")) in hub.sent

        # The trace names the protocol in its title and shows each frame's protocol and size.
        await pilot.press("f12")
        await wait_until(pilot, lambda: len(app.trace_panel.plain_rows) >= 6, what="trace rows")
        assert app.trace_panel.border_title == "Network trace · MessagePack (binary)"
        rows = app.trace_panel.plain_rows
        handshake = len(encode_handshake_request("messagepack", 1))
        assert any(f"messagepack, {handshake} bytes: handshake request (messagepack v1)" in r for r in rows), rows
        size = len(MESSAGEPACK.encode(Invocation("broadcastMessage", ("alice", "hello in binary"), "1")))
        sent = [r for r in rows if f"messagepack, {size} bytes: Invocation broadcastMessage" in r]
        assert sent and f" {size} " in sent[0]  # the bytes column too


async def test_ctrl_o_switches_to_messagepack_and_back_reconnecting_each_time(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await joined(pilot, app)
        assert hub.created[0].protocol is JSON
        await wait_until(pilot, lambda: "WebSockets · JSON" in status(app), what="JSON in the status bar")

        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("down", "enter")  # JSON → MessagePack
        await wait_until(pilot, lambda: len(hub.created) == 2 and hub.created[1].state is ConnectionState.CONNECTED)
        assert hub.created[0].stopped
        assert hub.created[1].protocol is MESSAGEPACK and hub.created[1].transport is TransportChoice.WEBSOCKETS
        assert app.protocol is MESSAGEPACK
        assert app.focused is app.query_one("#message", Input)  # back to typing after the pick
        await wait_until(pilot, lambda: "WebSockets · MessagePack" in status(app), what="MessagePack in the status")
        await joined(pilot, app, times=2)
        assert app.trace_panel.border_title == "Network trace · MessagePack (binary)"

        await run_from_palette(pilot, app, "Protocol: JSON")
        await wait_until(pilot, lambda: len(hub.created) == 3 and hub.created[2].state is ConnectionState.CONNECTED)
        assert hub.created[2].protocol is JSON
        assert app.query_one("#protocol", ProtocolSelector).value == "json"
        await wait_until(pilot, lambda: "WebSockets · JSON" in status(app), what="JSON again")


async def test_with_messagepack_sse_is_listed_disabled_and_says_json_only(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(protocol=MESSAGEPACK, transport=TransportChoice.LONG_POLLING)
    async with app.run_test(size=(80, 30)) as pilot:
        await joined(pilot, app)
        selector = app.query_one("#transport", TransportSelector)
        assert selector.tooltip == WHY_NO_SSE
        await pilot.press("ctrl+t")
        overlay = selector.query_one(OptionList)
        await wait_until(pilot, lambda: overlay.display and overlay.region.height > 0, what="the open list")
        await pilot.pause()
        region = overlay.region
        rows = cells(app, region.x, region.y, region.width, region.height)
        assert [inner(row) for row in rows[1:-1]] == [
            "WebSockets",
            "SSE (JSON only)",
            "LongPolling",
            "SSE → LongPolling",
        ], rows
        assert [overlay.get_option_at_index(i).disabled for i in range(4)] == [False, True, False, False]
        # From LongPolling, "up" skips the disabled SSE entry and lands on WebSockets.
        await pilot.press("up", "enter")
        await wait_until(pilot, lambda: len(hub.created) == 2 and hub.created[1].state is ConnectionState.CONNECTED)
        assert hub.created[1].transport is TransportChoice.WEBSOCKETS
        assert app.transport is TransportChoice.WEBSOCKETS

        # Back to JSON: SSE is offered again under its full name.
        app.switch_protocol(JSON)
        await wait_until(pilot, lambda: len(hub.created) == 3 and hub.created[2].state is ConnectionState.CONNECTED)
        assert not overlay.get_option_at_index(1).disabled
        assert str(overlay.get_option_at_index(1).prompt) == "ServerSentEvents"
        assert selector.tooltip is None


async def test_picking_messagepack_on_sse_is_refused_with_the_reason(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(transport=TransportChoice.SERVER_SENT_EVENTS)
    async with app.run_test(size=SIZE) as pilot:
        await joined(pilot, app)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("down", "enter")  # JSON → MessagePack
        await wait_until(pilot, lambda: seen(app, f"Still JSON: {WHY_NO_SSE} first (ctrl+t)"), what="the refusal")
        await pilot.pause(0.2)
        assert len(hub.created) == 1 and hub.created[0].state is ConnectionState.CONNECTED  # nothing reconnected
        assert app.protocol is JSON
        assert app.query_one("#protocol", ProtocolSelector).value == "json"  # the selector went back
        assert "ServerSentEvents · JSON" in status(app)

        # The palette offers MessagePack too, with the same answer; it offers no transport MessagePack cannot use.
        await run_from_palette(pilot, app, "Protocol: MessagePack")
        await wait_until(
            pilot, lambda: log_text(app).count("Still JSON: MessagePack is binary") == 2, what="second refusal"
        )
        assert len(hub.created) == 1


async def test_palette_offers_no_sse_in_messagepack_mode(make_app: Callable[..., ChatApp], hub: FakeHub) -> None:
    app = make_app(protocol=MESSAGEPACK)
    async with app.run_test(size=SIZE) as pilot:
        await joined(pilot, app)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the command palette")
        await pilot.press(*"Transport: ")
        commands = app.screen.query_one(CommandList)

        def titles() -> list[str]:
            return [str(commands.get_option_at_index(i).prompt).splitlines()[0] for i in range(commands.option_count)]

        await wait_until(pilot, lambda: len(titles()) >= 3, what="transport commands")
        await pilot.pause(0.3)
        shown = [t for t in titles() if t.startswith("Transport: ")]
        assert sorted(shown) == [
            "Transport: LongPolling",
            "Transport: ServerSentEvents → LongPolling",
            "Transport: WebSockets",
        ]
        await pilot.press("escape")


async def test_refused_transport_pick_keeps_the_connection(make_app: Callable[..., ChatApp], hub: FakeHub) -> None:
    app = make_app(protocol=MESSAGEPACK)
    async with app.run_test(size=SIZE) as pilot:
        await joined(pilot, app)
        app.switch_transport(TransportChoice.SERVER_SENT_EVENTS)  # as a stale palette entry or a script would
        await wait_until(pilot, lambda: seen(app, f"Still WebSockets: {WHY_NO_SSE}, or JSON (ctrl+o)"))
        await pilot.pause(0.2)
        assert len(hub.created) == 1 and hub.created[0].state is ConnectionState.CONNECTED
        assert app.transport is TransportChoice.WEBSOCKETS
        assert app.query_one("#transport", TransportSelector).value is TransportChoice.WEBSOCKETS


async def test_messagepack_over_sse_then_longpolling_uses_longpolling(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(protocol=MESSAGEPACK, transport=TransportChoice.SSE_THEN_LONG_POLLING)
    async with app.run_test(size=SIZE) as pilot:
        await joined(pilot, app)
        await wait_until(pilot, lambda: "● Connected │ LongPolling · MessagePack │" in status(app), what="status")


async def test_started_with_messagepack_over_sse_it_says_why_and_does_not_connect(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(protocol=MESSAGEPACK, transport=TransportChoice.SERVER_SENT_EVENTS)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, f"Cannot connect: {WHY_NO_SSE}"), what="the reason")
        assert hub.created == []
        assert "Disconnected │ ServerSentEvents (wanted) · MessagePack" in status(app)


async def test_the_clients_own_refusal_is_shown_when_a_connection_is_made_anyway(hub: FakeHub) -> None:
    # A caller that builds the connection itself (here: the fake client, which refuses as the real one does) still
    # gets the client's error on the screen.
    from tests.chat.conftest import HUB_URL

    def messagepack_factory(url: str, **kwargs: Any) -> Any:
        kwargs["protocol"] = MESSAGEPACK
        return hub.factory(url, **kwargs)

    app = ChatApp(HUB_URL, TransportChoice.SERVER_SENT_EVENTS, name="alice", connection_factory=messagepack_factory)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "Could not connect:"), what="the failure line")
        text = log_text(app)
        assert "'ServerSentEvents' does not support Binary." in text
        assert "press ctrl+r to retry" in text


async def test_help_explains_the_protocols_and_why_sse_is_unavailable_with_messagepack(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await joined(pilot, app)
        keys = {b.binding.description for b in app.screen.active_bindings.values() if b.binding.show and b.enabled}
        assert "Protocol" in keys
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
        text = " ".join(str(app.screen.query_one("#help-text", Static).render()).split())
        assert "ctrl+o choose the hub protocol: JSON or MessagePack" in text
        assert "Not over ServerSentEvents: an SSE stream carries only text" in text
        await pilot.press("escape")


@pytest.mark.parametrize(("width", "buttons"), [(80, False), (120, True)])
async def test_both_selectors_fit_and_the_message_field_stays_usable(
    make_app: Callable[..., ChatApp], hub: FakeHub, width: int, buttons: bool
) -> None:
    app = make_app(protocol=MESSAGEPACK)
    async with app.run_test(size=(width, 30)) as pilot:
        await joined(pilot, app)
        await pilot.pause(0.1)
        protocol = app.query_one("#protocol", ProtocolSelector).region
        top, middle, bottom = cells(app, protocol.x, protocol.y, protocol.width, protocol.height)
        assert inner(middle) == "MessagePack ▼" and protocol.right == width
        assert not any(c.isalnum() for c in top + bottom), (top, middle, bottom)  # nothing spills onto the border
        # Under 100 columns Send and Echo give way (Enter and ctrl+e do the same); the field keeps 30 columns.
        assert app.query_one("#send").display is buttons and app.query_one("#echo").display is buttons
        assert app.query_one("#message", Input).region.width >= 30
        await pilot.press(*"still typing", "enter")
        await wait_until(pilot, lambda: seen(app, "alice (you): still typing"), what="the message sent with Enter")
