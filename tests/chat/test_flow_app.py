"""The Flow view in the running chat: its own hops, the app server's hop stream, following and replaying journeys.

The app talks to the in-memory fake hub; the hop stream is a real HTTP server on 127.0.0.1 speaking Server-Sent
Events as chat-server's ``GET /flow`` does (one hop's JSON per event), so the feed's parsing, its handling of hostile
events and its reconnects are exercised over a real socket.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from textual.widgets import Input

from chat.app import ChatApp
from chat.flow_view import OUTSIDE_THE_DEMO
from flow.hops import Hop
from flow.ids import flow_id
from signalr.client import TraceEvent
from signalr.messages import Invocation
from tests.support.tui import seen, wait_until

from .fake_client import FakeHub, FakeHubConnection

SIZE = (130, 44)


class NumberedConnection(FakeHubConnection):
    """The fake connection, numbering its invocations as the real client does (0, 1, 2, …)."""

    _numbers = itertools.count()

    async def send(self, target: str, *arguments: Any) -> None:
        number = str(next(self._numbers))
        frame = self.protocol.encode(Invocation(target, tuple(arguments), invocation_id=number))
        detail = f"{self.protocol.name}, {len(frame)} bytes: Invocation {target} #{number}"
        if self._trace is not None:
            self._trace(
                TraceEvent("send", "WS", self.connected_url or "", "", None, None, len(frame), detail, self.hub.clock())
            )
        asyncio.get_running_loop().call_soon(self.hub.deliver, self, target, arguments)
        self.sent_ids.append(number)

    @property
    def sent_ids(self) -> list[str]:
        return self.__dict__.setdefault("_sent_ids", [])


def numbered_factory(hub: FakeHub) -> Callable[..., NumberedConnection]:
    def build(url: str, **kwargs: Any) -> NumberedConnection:
        connection = NumberedConnection(url, hub=hub, **kwargs)
        hub.created.append(connection)
        return connection

    return build


@dataclass
class FlowStream:
    """A stand-in for chat-server's ``GET /flow``: events pushed by the test, one SSE event each."""

    url: str = ""
    queues: list[asyncio.Queue[bytes | None]] = field(default_factory=list)
    opened: int = 0

    def push(self, data: bytes) -> None:
        for queue in self.queues:
            queue.put_nowait(data)

    def push_hop(self, hop: Hop) -> None:
        self.push(hop.to_json())

    def drop(self) -> None:
        """End every open stream (the feed must open it again)."""
        for queue in self.queues:
            queue.put_nowait(None)


@pytest.fixture
async def flow_stream() -> AsyncIterator[FlowStream]:
    stream = FlowStream()

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        stream.queues.append(queue)
        stream.opened += 1
        try:
            await response.write(b":\r\n")
            while (data := await queue.get()) is not None:
                await response.write(data)
        finally:
            stream.queues.remove(queue)
        return response

    app = web.Application()
    app.router.add_get("/flow", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stream.url = f"http://127.0.0.1:{port}/flow"
    try:
        yield stream
    finally:
        stream.drop()
        await runner.cleanup()


def event(data: bytes) -> bytes:
    return b"data: " + data + b"\r\n\r\n"


def server_hops(flow: str, connection: str, at: float) -> list[Hop]:
    """What the servers report for one broadcast in Serverless mode over WebSockets through APIM."""
    return [
        Hop.make("apim", "client", "service", "relay", "WS frame client → service (64 B)", at=at + 0.001,
                 connection_id=connection),
        Hop.make("service", "client", "service", "invoke", "Invocation broadcastMessage", at=at + 0.002,
                 flow_id=flow, connection_id=connection, transport="WebSockets", mode="serverless"),
        Hop.make("service", "service", "app", "upstream", "POST /upstream/chat/messages/broadcastMessage",
                 at=at + 0.010, status=200, duration_ms=7.0, flow_id=flow, mode="serverless"),
        Hop.make("app", "app", "service", "rest", "POST /api/v1/hubs/chat (send to all)", at=at + 0.009,
                 status=202, duration_ms=3.0, flow_id=flow),
        Hop.make("service", "service", "others", "fan-out", "broadcastMessage to 2 connections", at=at + 0.011,
                 count=2, flow_id=flow),
    ]  # fmt: skip


def flow_rows(app: ChatApp) -> str:
    return "\n".join(app.flow_panel.plain_rows)


def panel_text(app: ChatApp, selector: str) -> str:
    widget = app.flow_panel.query_one(selector)
    return str(widget.render())


async def test_outside_the_demo_the_view_shows_the_clients_own_hops_and_says_why_no_more(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(connection_factory=numbered_factory(hub))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        await pilot.press(*"hello", "enter")
        await wait_until(pilot, lambda: seen(app, "alice (you): hello"))
        await pilot.press("f11")
        assert app.flow_panel.display
        connection = hub.created[-1]
        assert isinstance(connection, NumberedConnection)
        expected = flow_id(connection.connection_id or "", connection.sent_ids[-1])
        await wait_until(pilot, lambda: "arrived back" in flow_rows(app), what="the deliver hop")
        journey = app.shown_journey()
        assert journey is not None and journey.flow_id == expected
        assert (journey.name, journey.text) == ("alice", "hello")
        assert [hop.kind for hop in journey.hops] == ["send", "deliver"]
        assert all(hop.role == "client" for hop in journey.hops)
        rows = app.flow_panel.plain_rows
        assert "broadcastMessage #1 (WS" in rows[0] and "▶" in rows[0]
        assert "arrived back" in rows[1] and "◀" in rows[1]
        assert OUTSIDE_THE_DEMO in panel_text(app, "#flow-note")
        assert '"hello" by alice' in panel_text(app, "#flow-caption")
        assert "Default mode" not in panel_text(app, "#flow-facts")  # the chat knows no mode here
        await pilot.press("f11")
        assert not app.flow_panel.display


async def test_the_stream_adds_the_server_hops_and_the_view_follows_each_new_message(
    make_app: Callable[..., ChatApp], hub: FakeHub, flow_stream: FlowStream
) -> None:
    app = make_app(connection_factory=numbered_factory(hub), flow_url=flow_stream.url, service_mode="serverless")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        await wait_until(pilot, lambda: flow_stream.opened == 1, what="the feed to open the stream")
        await pilot.press("f11")
        connection = hub.created[-1]
        assert isinstance(connection, NumberedConnection)
        for text in ("first", "second"):
            await pilot.press(*text, "enter")
            await wait_until(pilot, lambda t=text: seen(app, f"alice (you): {t}"))  # type: ignore[misc]
            flow = flow_id(connection.connection_id or "", connection.sent_ids[-1])
            own = app.journeys.get(flow)
            assert own is not None and own.hops
            for hop in server_hops(flow, connection.connection_id or "", own.hops[0].at):
                flow_stream.push(event(hop.to_json()))
            await wait_until(pilot, lambda: "to 2 connections" in flow_rows(app), what="the server hops")
            assert f'"{text}" by alice' in panel_text(app, "#flow-caption")
        rows = app.flow_panel.plain_rows
        kinds = [hop.kind for hop in app.shown_journey().hops]  # type: ignore[union-attr]
        assert kinds[:2] == ["send", "relay"] and "upstream" in kinds and "fan-out" in kinds
        assert kinds.index("upstream") < kinds.index("rest")  # the POST began before the REST call it caused
        upstream = next(row for row in rows if "/upstream/" in row)
        assert upstream.rstrip().endswith("200  7.0 ms")
        facts = panel_text(app, "#flow-facts")
        assert "Azure SignalR Service · Serverless mode · WebSockets through APIM" in facts
        assert "following the flow stream" in panel_text(app, "#flow-note")
        assert panel_text(app, "#flow-caption").startswith("Live ·")


async def test_a_clicked_line_replays_its_journey_and_alt_keys_step_through_them(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(connection_factory=numbered_factory(hub))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        for text in ("one", "two", "three"):
            await pilot.press(*text, "enter")
            await wait_until(pilot, lambda t=text: seen(app, f"alice (you): {t}"))  # type: ignore[misc]
        await wait_until(pilot, lambda: app.journeys.for_message("alice", "three") is not None)
        first = app.journeys.for_message("alice", "one")
        assert first is not None
        await wait_until(pilot, lambda: len(first.hops) == 2, what="the first message's deliver hop")

        row = next(i for i, line in enumerate(app.chat_log.plain_lines) if line.rstrip().endswith("alice (you): one"))
        assert app.chat_log.line_at(row) is not None and app.chat_log.line_at(row).text == "one"  # type: ignore[union-attr]
        await pilot.click("#chat-log", offset=(60, row + 1))  # + the border
        await wait_until(pilot, lambda: app.flow_pinned == first.flow_id, what="the click to select the line")
        assert app.flow_panel.display
        assert panel_text(app, "#flow-caption").startswith("Replaying ·")
        assert '"one" by alice' in panel_text(app, "#flow-caption")
        await wait_until(pilot, lambda: len(app.flow_panel.hops) == 2, what="the replay to draw every hop")

        await pilot.press("alt+down")
        assert '"two" by alice' in panel_text(app, "#flow-caption")
        await pilot.press("alt+up", "alt+up")
        # Above "one" is the JOINED notice the chat sent itself; above that nothing: it stays there.
        assert "alice JOINED" in panel_text(app, "#flow-caption")
        await pilot.press("alt+up")
        assert "alice JOINED" in panel_text(app, "#flow-caption")
        await pilot.press("alt+down", "alt+down", "alt+down", "alt+down")
        assert app.flow_pinned is None
        assert panel_text(app, "#flow-caption").startswith("Live ·")
        assert '"three" by alice' in panel_text(app, "#flow-caption")


async def test_a_line_of_another_client_has_no_journey_here_and_the_view_says_so(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(connection_factory=numbered_factory(hub))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        hub.push("broadcastMessage", "bob", "from bob")
        await wait_until(pilot, lambda: seen(app, "bob: from bob"))
        row = next(i for i, line in enumerate(app.chat_log.plain_lines) if "bob: from bob" in line)
        await pilot.click("#chat-log", offset=(10, row + 1))
        await wait_until(pilot, lambda: app.flow_panel.display, what="the view to open")
        assert app.flow_pinned is None
        await wait_until(
            pilot, lambda: any("No journey known" in str(n.message) for n in app._notifications), what="the notice"
        )


async def test_hostile_stream_events_are_dropped_and_the_feed_keeps_following(
    make_app: Callable[..., ChatApp], hub: FakeHub, flow_stream: FlowStream
) -> None:
    app = make_app(connection_factory=numbered_factory(hub), flow_url=flow_stream.url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: flow_stream.opened == 1, what="the feed to open the stream")
        await pilot.press("f11")
        feed = app.flow_feed
        assert feed is not None
        good = Hop.make("service", "service", "others", "fan-out", "fan-out to 1", flow_id="0123456789abcdef", count=1)
        for bad in (
            b"not json",
            b'{"at": 1}',
            b'{"at":1e400,"role":"service","source":"service","target":"others","kind":"fan-out","label":"x",'
            b'"service":"signalr"}',
            good.to_json().replace(b'"fan-out"', b'"teleport"'),
            good.to_json().replace(b'"service":"signalr"', b'"service":"signalr","token":"eyJhbGciOi"'),
            b"[" * 3000,
        ):
            flow_stream.push(event(bad))
        flow_stream.push(event(good.to_json()))
        await wait_until(pilot, lambda: feed.received == 1, what="the good hop")
        assert feed.invalid == 6
        assert app.journeys.get("0123456789abcdef") is not None

        # The same hop again (a stream opened again replays the last 200): not a second hop.
        flow_stream.push(event(good.to_json()))
        # An event larger than any hop ends the stream; the feed opens it again.
        flow_stream.push(b"data: " + b"x" * 20_000 + b"\r\n")
        await wait_until(pilot, lambda: flow_stream.opened == 2, timeout=10, what="the feed to open the stream again")
        assert feed.received == 1 and len(app.journeys.get("0123456789abcdef").hops) == 1  # type: ignore[union-attr]
        # A stream the server ends is opened again as well, and new hops keep coming.
        flow_stream.drop()
        await wait_until(pilot, lambda: flow_stream.opened == 3, timeout=10, what="the third stream")
        later = Hop.make("service", "service", "others", "fan-out", "later", flow_id="fedcba9876543210", count=1)
        flow_stream.push(event(later.to_json()))
        await wait_until(pilot, lambda: feed.received == 2, what="the hop after the reconnect")
        await wait_until(pilot, lambda: "later" in flow_rows(app), what="the view to follow it")


async def test_a_stream_that_is_not_there_is_said_in_the_view_and_the_chat_works_on(
    make_app: Callable[..., ChatApp], hub: FakeHub, unused_tcp_port: int
) -> None:
    app = make_app(connection_factory=numbered_factory(hub), flow_url=f"http://127.0.0.1:{unused_tcp_port}/flow")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        await pilot.press("f11")
        await wait_until(pilot, lambda: "the flow stream failed" in panel_text(app, "#flow-note"), what="the failure")
        await pilot.press(*"still chatting", "enter")
        await wait_until(pilot, lambda: seen(app, "alice (you): still chatting"))
        await wait_until(pilot, lambda: "arrived back" in flow_rows(app), what="the chat's own hops")


async def test_the_palette_toggles_the_flow_view(make_app: Callable[..., ChatApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        commands = [command.title for command in app.get_system_commands(app.screen)]
        assert "Toggle flow view" in commands
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        assert not app.flow_panel.display
        next(c for c in app.get_system_commands(app.screen) if c.title == "Toggle flow view").callback()
        await pilot.pause()
        assert app.flow_panel.display


async def test_the_help_explains_the_flow_view(make_app: Callable[..., ChatApp]) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await wait_until(pilot, lambda: bool(app.screen.query("#help-text")), what="the help")
        text = " ".join(str(app.screen.query_one("#help-text").render()).split())
        assert "F11 show or hide the Flow view" in text and "replays that message's journey" in text


async def test_on_an_80_by_24_terminal_the_diagram_keeps_its_rows_and_the_facts_their_line(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(connection_factory=numbered_factory(hub), service_mode="default")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        await pilot.press("f11")
        await pilot.pause(0.1)
        facts = panel_text(app, "#flow-facts")
        assert facts == "Azure SignalR Service · Default mode · WebSockets through APIM"  # no path sentence
        body = app.flow_panel.query_one("#flow-body")
        assert body.size.height >= 7
        await pilot.resize_terminal(130, 44)
        await wait_until(pilot, lambda: "server connection" in panel_text(app, "#flow-facts"), what="the sentence")


async def test_a_long_caption_stays_on_one_line_at_80_columns(make_app: Callable[..., ChatApp], hub: FakeHub) -> None:
    app = make_app(connection_factory=numbered_factory(hub))
    async with app.run_test(size=(80, 30)) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        await pilot.press("f11", *"a message long enough to push the flow id off the caption", "enter")
        await wait_until(pilot, lambda: "long enough" in panel_text(app, "#flow-caption"), what="the caption")
        await pilot.pause(0.1)
        assert app.flow_panel.query_one("#flow-caption").size.height == 1
        assert app.flow_panel.query_one("#flow-note").size.height == 1


async def test_a_click_on_any_row_of_a_wrapped_line_selects_that_line(
    make_app: Callable[..., ChatApp], hub: FakeHub
) -> None:
    app = make_app(connection_factory=numbered_factory(hub))
    long = "a long message " * 12
    async with app.run_test(size=(80, 40)) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"))
        app.query_one("#message", Input).value = long.strip()
        await pilot.press("enter", *"short", "enter")
        await wait_until(pilot, lambda: seen(app, "alice (you): short"))
        lines = app.chat_log.plain_lines
        rows = [i for i, line in enumerate(lines) if "a long message" in line]
        assert len(rows) >= 2  # it wraps
        for row in rows:
            selected = app.chat_log.line_at(row)
            assert selected is not None and selected.text == long.strip()
        short_row = next(i for i, line in enumerate(lines) if "alice (you): short" in line)
        assert app.chat_log.line_at(short_row).text == "short"  # type: ignore[union-attr]
        assert app.chat_log.line_at(len(lines)) is None
        await wait_until(pilot, lambda: app.journeys.for_message("alice", long.strip()) is not None)
        await pilot.click("#chat-log", offset=(40, rows[-1] + 1))
        journey = app.journeys.for_message("alice", long.strip())
        await wait_until(pilot, lambda: journey is not None and app.flow_pinned == journey.flow_id, what="the replay")
