""" "Probe this connection" in the chat, against the real local stack: ``signalr-emulator``, ``apim-gateway`` in the
configuration of each case and a ``chat-server`` whose ``ClientEndpoint`` names that gateway, with the real
``HubConnection`` inside the app. The tests read the probe panel as a user does: the screen's text (a screenshot's
character grid) and every line the panel's widgets draw, including those scrolled out of view.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widgets import Static

from chat.app import ChatApp
from chat.probe import Works
from chat.probe_panel import ProbeScreen
from signalr.client import ConnectionState, TransportChoice
from tests.support.processes import free_port
from tests.support.stack import (
    ChatServer,
    EmulatorProcess,
    Gateway,
    start_chat_server,
    start_emulator,
    start_gateway,
    upstream_template,
)
from tests.support.tui import seen, wait_until

from .test_snapshot import screen_text

KEY = "panel-subscription-key-7f3a"
PROBE_TIMEOUT = 2.0
SERVERLESS = ("--service-mode", "serverless")
HEIGHT = 40


@dataclass
class World:
    """One emulator whose upstream is the main app server, and per gateway configuration a gateway in front of it
    with an app server that redirects clients to that gateway."""

    emulator: EmulatorProcess
    main: ChatServer
    cwd: Path
    started: list[Gateway | ChatServer] = field(default_factory=list)
    cases: dict[tuple[str, ...], tuple[Gateway, ChatServer]] = field(default_factory=dict)

    def via(self, *gateway_args: str) -> tuple[Gateway, ChatServer]:
        if gateway_args not in self.cases:
            gateway = start_gateway(self.emulator.base, *gateway_args)
            self.started.append(gateway)
            server = start_chat_server(self.emulator.connection_string_to(gateway.url), *SERVERLESS, cwd=self.cwd)
            self.started.append(server)
            self.cases[gateway_args] = (gateway, server)
        return self.cases[gateway_args]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    cwd = tmp_path_factory.mktemp("probe-panel")
    port = free_port()
    emulator = start_emulator(*SERVERLESS, "--upstream", upstream_template(port))
    try:
        main = start_chat_server(emulator.connection_string, *SERVERLESS, port=port, cwd=cwd)
    except BaseException:
        emulator.stop()
        raise
    running = World(emulator, main, cwd)
    yield running
    for process in reversed(running.started):
        process.stop()
    main.stop()
    emulator.stop()


def probe_screen(app: ChatApp) -> ProbeScreen:
    screen = app.screen
    assert isinstance(screen, ProbeScreen), f"the probe panel is not shown ({type(screen).__name__})"
    return screen


def panel_lines(app: ChatApp) -> list[str]:
    """Every line the panel's texts draw at their current width (scrolled into view or not), top to bottom."""
    lines: list[str] = []
    for static in probe_screen(app).query(Static):
        if not static.display:
            continue
        width, height = static.size
        lines += [strip.text.rstrip() for strip in static.render_lines(Region(0, 0, width, height))]
    return lines


def folded(lines: list[str]) -> str:
    """The lines as one string, whitespace collapsed (phrases read across wrapped lines)."""
    return " ".join(" ".join(lines).split())


def screen(app: ChatApp) -> str:
    """What the terminal shows now, as one string with whitespace collapsed."""
    return folded(screen_text(app.export_screenshot()))


def row(lines: list[str], transport: str) -> str:
    """The first line of ``transport``'s row in the verdict table (the name, then what its works column says)."""
    pattern = re.compile(rf"\s*{transport} +(yes|no|server-side)\b")
    return next(line for line in lines if pattern.match(line))


def assert_readable(app: ChatApp, lines: list[str]) -> None:
    """Nothing cut short, and the dialog never needs scrolling sideways."""
    assert not any("…" in line for line in lines if "Probing…" not in line), lines
    body = probe_screen(app).query_one("#probe-body")
    assert body.max_scroll_x == 0


@pytest.mark.parametrize("width", [100, 120])
async def test_probe_of_a_healthy_websocket_connection(world: World, width: int) -> None:
    _, server = world.via("--profile", "websocket")
    app = ChatApp(server.hub_url, TransportChoice.WEBSOCKETS, name="alice", probe_timeout=PROBE_TIMEOUT)
    async with app.run_test(size=(width, HEIGHT)) as pilot:
        await wait_until(pilot, lambda: seen(app, "alice JOINED"), timeout=20, what="JOINED")
        assert app.connection is not None
        connection_id = app.connection.connection_id

        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Probe this connection")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ProbeScreen), what="the probe panel")
        await wait_until(pilot, lambda: app.probe_run is not None and app.probe_run.done, timeout=30, what="the end")
        await pilot.pause(0.1)

        report = app.probe_run.report if app.probe_run else None
        assert report is not None
        assert [t.works for t in report.transports] == [Works.YES, Works.NO, Works.NO]
        lines = panel_lines(app)
        text = folded(lines)
        assert_readable(app, lines)
        assert f"Probe of {server.hub_url}" in text
        assert re.search(r"Done in \d+\.\d s, \d+ steps\. Works as APIM profile websocket\.", text)
        assert re.match(r"WebSockets +yes +\d+(\.\d)? ms +-$", row(lines, "WebSockets").strip())
        assert re.match(
            r"ServerSentEvents +no +- +failed +connect: GET /client/ -> 404", row(lines, "ServerSentEvents").strip()
        )
        assert re.match(r"LongPolling +no +- +failed +connect: GET /client/ -> 404", row(lines, "LongPolling").strip())
        assert "cause no HTTP operation `GET /` on client/ — the websocket profile is configured" in text
        assert "$ apim-gateway export --profile sse-lp --format bicep" in text
        assert "cause and fix: as for ServerSentEvents" in text
        assert "transport works latency what failed · cause · fix" in text
        # The redirect, without the parameters only the service reads; the token's claims, never the token.
        assert "redirect to http://127.0.0.1:" in text and "asrs_request_id" not in text
        assert "audience http://127.0.0.1/client/?hub=chat" in text
        assert "eyJ" not in text and world.emulator.access_key not in text
        # Each step as it ended, under the verdict.
        for transport in ("WebSockets", "ServerSentEvents", "LongPolling"):
            assert any(line.startswith(f"{transport} connect: GET /client/") for line in lines), transport
        assert any(line.startswith("WebSockets echo:") and line.endswith("[ok]") for line in lines)
        # The top of the panel is on the screen itself.
        shown = screen(app)
        assert "Works as APIM profile websocket." in shown and "WebSockets yes" in shown

        # Escape closes it; the chat's own connection was never touched and still chats.
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, ProbeScreen), what="the panel closed")
        assert seen(app, "Probe done in") and seen(app, "Works as APIM profile websocket.")
        assert app.connection is not None and app.connection.connection_id == connection_id
        assert app.connection.state is ConnectionState.CONNECTED
        await pilot.press(*"after the probe", "enter")
        await wait_until(pilot, lambda: seen(app, "alice (you): after the probe"), timeout=10, what="own line")

        # F2 shows the same probe again; r in it probes again.
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, ProbeScreen), what="the panel again")
        assert app.probe_run is not None and app.probe_run.number == 1
        await pilot.press("r")
        await wait_until(pilot, lambda: app.probe_run is not None and app.probe_run.number == 2, what="second run")
        await wait_until(pilot, lambda: app.probe_run is not None and app.probe_run.done, timeout=30)
        await pilot.pause(0.1)
        assert "Works as APIM profile websocket." in folded(panel_lines(app))
        await pilot.press("f2")
        await wait_until(pilot, lambda: not isinstance(app.screen, ProbeScreen), what="F2 closes it")
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_probe_of_buffered_sse_shows_each_step_then_the_cause(world: World) -> None:
    _, server = world.via("--profile", "sse-lp", "--buffer-sse")
    app = ChatApp(server.hub_url, TransportChoice.LONG_POLLING, name="bob", probe_timeout=3.0)
    async with app.run_test(size=(120, HEIGHT)) as pilot:
        await wait_until(pilot, lambda: seen(app, "bob JOINED"), timeout=20, what="JOINED")
        assert app.connection is not None
        connection_id = app.connection.connection_id
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, ProbeScreen), what="the probe panel")

        # The buffered event stream holds the probe up for its timeout: meanwhile the steps so far are listed.
        run = app.probe_run
        assert run is not None
        await wait_until(pilot, lambda: len(run.steps) >= 6, timeout=10, what="steps while running")
        await pilot.pause(0.1)
        assert not run.done
        lines = panel_lines(app)
        text = folded(lines)
        assert re.search(r"Probing… \d+ steps so far", text)
        assert any(re.match(r"LongPolling negotiate: POST /client/negotiate -> 200 in .* \[ok\]$", x) for x in lines)
        assert "what failed" not in text  # no verdict before the end
        assert "Probing…" in screen(app)

        # The chat keeps working while the probe runs.
        app.send_broadcast("during the probe")
        await wait_until(pilot, lambda: seen(app, "bob (you): during the probe"), timeout=10, what="own line")
        assert not run.done

        await wait_until(pilot, lambda: run.done, timeout=30, what="the end of the probe")
        await pilot.pause(0.1)
        lines = panel_lines(app)
        text = folded(lines)
        assert_readable(app, lines)
        assert re.match(r"WebSockets +no +- +failed +connect: GET /client/ -> 200$", row(lines, "WebSockets").strip())
        assert re.match(
            r"ServerSentEvents +no +- +failed +connect: GET /client/ -> no answer in time$",
            row(lines, "ServerSentEvents").strip(),
        )
        assert re.match(
            r"LongPolling +yes +\d+(\.\d)? ms +note +delete: DELETE /client/", row(lines, "LongPolling").strip()
        )
        assert "cause SSE buffered: `GET /` buffers the response" in text
        assert 'add <forward-request buffer-response="false" />' in text
        assert "$ apim-gateway export --profile sse-lp --format bicep" in text
        assert "cause WebSocket upgrade refused: APIM answered 200, not 101" in text
        assert "No APIM profile works: for websocket, WebSockets fails" in text
        assert "Escape closes" in screen(app)

        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, ProbeScreen), what="the panel closed")
        assert seen(app, "Probe done in") and seen(app, "No APIM profile works")
        assert app.connection is not None and app.connection.connection_id == connection_id
        assert app.connection.state is ConnectionState.CONNECTED
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_probe_sends_the_chat_subscription_key_and_never_shows_it(world: World) -> None:
    _, server = world.via("--profile", "websocket", "--subscription-key", KEY)
    headers = {"Ocp-Apim-Subscription-Key": KEY}
    app = ChatApp(
        server.hub_url, TransportChoice.WEBSOCKETS, name="carol", headers=headers, probe_timeout=PROBE_TIMEOUT
    )
    async with app.run_test(size=(100, HEIGHT)) as pilot:
        await wait_until(pilot, lambda: seen(app, "carol JOINED"), timeout=20, what="JOINED")
        await pilot.press("f2")
        await wait_until(pilot, lambda: app.probe_run is not None and app.probe_run.done, timeout=30, what="the end")
        await pilot.pause(0.1)
        assert app.probe_run is not None and app.probe_run.report is not None
        ws = app.probe_run.report.transports[0]
        # With the key the server-side path works; a browser's preflight cannot carry it.
        assert ws.works is Works.SERVER_ONLY
        lines = panel_lines(app)
        text = folded(lines)
        assert re.match(
            r"WebSockets +server-side +\d+(\.\d)? ms +failed +negotiate preflight", row(lines, "WebSockets").strip()
        )
        assert "Profile websocket works for server-side clients only: browsers fail." in text
        for shown in (text, screen(app), " ".join(app.chat_log.plain_lines)):
            assert KEY not in shown
            assert "eyJ" not in shown
            assert world.emulator.access_key not in shown
        await pilot.press("escape")
        await pilot.press("ctrl+q")
        await pilot.pause()


async def test_probe_of_an_app_server_that_is_not_there(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/chat"
    app = ChatApp(url, TransportChoice.WEBSOCKETS, name="dave", probe_timeout=PROBE_TIMEOUT)
    async with app.run_test(size=(100, HEIGHT)) as pilot:
        await wait_until(pilot, lambda: seen(app, "Could not connect"), timeout=10, what="the chat's own failure")
        await pilot.press("f2")
        await wait_until(pilot, lambda: app.probe_run is not None and app.probe_run.done, timeout=30, what="the end")
        await pilot.pause(0.1)
        text = folded(panel_lines(app))
        assert "POST /chat/negotiate -> connection refused" in text
        assert "problem " in text and "cause " in text
        assert "No transport was tried" in text
        assert "what failed" not in text
        await pilot.press("escape")
        await pilot.pause()
        assert seen(app, "Probe done in")
        await pilot.press("ctrl+q")
        await pilot.pause()
