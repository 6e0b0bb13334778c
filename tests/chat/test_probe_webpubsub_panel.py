"""The probe panel (:class:`chat.probe_panel.ProbeScreen`) with a Web PubSub run against the real stack:
``webpubsub-emulator``, ``chat-server --service webpubsub`` and ``apim-gateway`` with the ``webpubsub`` profile (works)
and the SignalR ``websocket`` profile (APIM's 404 and the export fix).

The panel is hosted by a small Textual app that runs :func:`chat.probe.run_probe` the way the chat does (steps shown as
they end, then the verdict), so the panel is checked on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from textual.app import App
from textual.geometry import Region
from textual.widgets import Static

from chat.probe import ProbeOptions, StepResult, run_probe
from chat.probe_panel import ProbeRun, ProbeScreen
from tests.support.processes import free_port
from tests.support.stack import Gateway, start_gateway
from tests.support.tui import wait_until
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator
from tests.support.wps_server import WebPubSubChatServer, start_webpubsub_chat_server

PROBE_TIMEOUT = 2.0


@dataclass
class World:
    emulator: WebPubSubEmulator
    main: WebPubSubChatServer
    cwd: Path
    started: list[Gateway | WebPubSubChatServer] = field(default_factory=list)

    def via(self, *gateway_args: str) -> WebPubSubChatServer:
        gateway = start_gateway(self.emulator.endpoint, *gateway_args)
        self.started.append(gateway)
        server = start_webpubsub_chat_server(self.emulator.connection_string_to(gateway.url.rstrip("/")), cwd=self.cwd)
        self.started.append(server)
        return server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    cwd = tmp_path_factory.mktemp("wps-probe-panel")
    port = free_port()
    emulator = start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{port}/eventhandler")
    try:
        main = start_webpubsub_chat_server(emulator.connection_string, port=port, cwd=cwd)
    except BaseException:
        emulator.stop()
        raise
    running = World(emulator, main, cwd)
    yield running
    for process in reversed(running.started):
        process.stop()
    main.stop()
    emulator.stop()


class Host(App[None]):
    """Runs one probe and shows it in the panel, as the chat's F2 does."""

    def __init__(self, options: ProbeOptions) -> None:
        super().__init__()
        self.probe_run = ProbeRun(1, options, datetime.now())
        self.screen_shown = ProbeScreen(self.probe_run, lambda text: text, lambda: None)

    def on_mount(self) -> None:
        self.push_screen(self.screen_shown)
        self.run_worker(self._probe())

    async def _probe(self) -> None:
        def on_step(step: StepResult) -> None:
            self.probe_run.steps.append(step)
            self.screen_shown.show_run(self.probe_run)

        report = await run_probe(self.probe_run.options, on_step=on_step)
        self.probe_run.finish(report, None)
        self.screen_shown.show_run(self.probe_run)


def panel_text(app: Host) -> tuple[list[str], str]:
    lines: list[str] = []
    for static in app.screen_shown.query(Static):
        if static.display:
            width, height = static.size
            lines += [strip.text.rstrip() for strip in static.render_lines(Region(0, 0, width, height))]
    return lines, " ".join(" ".join(lines).split())


async def show(url: str) -> tuple[list[str], str, Host]:
    app = Host(ProbeOptions(url=url, timeout=PROBE_TIMEOUT))
    async with app.run_test(size=(120, 60)) as pilot:
        await wait_until(pilot, lambda: app.probe_run.done, timeout=30, what="the probe's end")
        await pilot.pause(0.1)
        lines, text = panel_text(app)
    return lines, text, app


async def test_the_panel_shows_a_working_webpubsub_path(world: World) -> None:
    server = world.via("--profile", "webpubsub")
    lines, text, app = await show(server.url + "/chat")
    assert app.probe_run.report is not None and app.probe_run.report.working_profiles == ("webpubsub",)
    assert "Azure Web PubSub, hub chat, client access URL ws://127.0.0.1:" in text
    assert re.search(r"client URL 127\.0\.0\.1:\d+: local address; APIM gateway", text)
    assert "subscription key not in the client access URL's query" in text
    assert re.search(r"Done in \d+\.\d s, \d+ steps\. Works as APIM profile webpubsub\.", text)
    assert any(re.match(r"\s*WebSockets +yes +\d+(\.\d)? ms", line) for line in lines)
    for step in ("connect: GET /client/hubs/chat", "connected message:", "echo:", "close:"):
        assert any(line.startswith(f"WebSockets {step}") and line.endswith("[ok]") for line in lines), step
    assert "eyJ" not in text and world.emulator.access_key not in text and "access_token=***" in text


async def test_the_panel_names_apims_404_and_the_export_fix(world: World) -> None:
    server = world.via("--profile", "websocket")
    lines, text, _ = await show(server.url + "/chat")
    assert any(re.match(r"\s*WebSockets +no +- +failed +connect: GET /client/hubs/chat -> 404", ln) for ln in lines)
    assert "cause no WebSocket API on client/hubs/chat" in text
    assert (
        "$ apim-gateway export --profile webpubsub --format bicep --service-url https://<resource>.webpubsub.azure.com"
        in text
    )
    assert "Web PubSub's WebSocket does not work" in text
    assert "eyJ" not in text and world.emulator.access_key not in text
