"""``chat probe`` as a process against an app server on Azure Web PubSub: ``webpubsub-emulator``,
``chat-server --service webpubsub`` and ``apim-gateway`` in each configuration the probe must recognise.

One emulator whose event handler is the main app server serves most cases; each gateway configuration gets its own
gateway and an app server whose ``ClientEndpoint`` names it (the events of every connection still go to the main app
server, which answers the echo through the emulator). A second emulator without an event handler gives the
``InvocationFailed`` case. Every case runs the command twice at once, as a table and with ``--json``, and checks the
exit code, the row, the cause and the fix named, and that no secret (AccessKey, access token, subscription key)
appears on stdout or stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port, script
from tests.support.stack import Gateway, start_gateway
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator
from tests.support.wps_server import WebPubSubChatServer, start_webpubsub_chat_server

KEY = "wps-probe-subscription-key-8a2f"
WRONG_KEY = "not-the-key-3c9d"
WRONG_ACCESS_KEY = "d3JvbmctYWNjZXNzLWtleS1mb3ItdGhlLXByb2Jl"
PROBE_TIMEOUT = 2.0
EXPORT_FIX = (
    "apim-gateway export --profile webpubsub --format bicep --service-url https://<resource>.webpubsub.azure.com"
)


@dataclass
class World:
    """The shared emulator and main app server, plus the gateways and app servers started for cases."""

    emulator: WebPubSubEmulator
    main: WebPubSubChatServer
    cwd: Path
    started: list[Gateway | WebPubSubChatServer | WebPubSubEmulator] = field(default_factory=list)
    cases: dict[tuple[str, ...], tuple[Gateway, WebPubSubChatServer]] = field(default_factory=dict)

    def via(self, *gateway_args: str) -> tuple[Gateway, WebPubSubChatServer]:
        """A gateway with ``gateway_args`` in front of the emulator and an app server whose client access URLs point
        at it; started once per configuration."""
        if gateway_args not in self.cases:
            gateway = start_gateway(self.emulator.endpoint, *gateway_args)
            self.started.append(gateway)
            server = self.app_server(self.emulator.connection_string_to(gateway.url.rstrip("/")))
            self.cases[gateway_args] = (gateway, server)
        return self.cases[gateway_args]

    def app_server(self, connection_string: str) -> WebPubSubChatServer:
        server = start_webpubsub_chat_server(connection_string, cwd=self.cwd)
        self.started.append(server)
        return server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    cwd = tmp_path_factory.mktemp("wps-probe")
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


@dataclass
class Probe:
    """Both outputs of one case: the table run and the ``--json`` run."""

    code: int
    table: str
    report: dict[str, Any]
    outputs: str
    seconds: float

    @property
    def text(self) -> str:
        """The table with its line breaks and indentation folded into single spaces (for phrases across lines)."""
        return " ".join(self.table.split())

    @property
    def row(self) -> dict[str, Any]:
        rows = self.report["transports"]
        assert len(rows) == 1 and rows[0]["transport"] == "WebSockets"
        return dict(rows[0])

    @property
    def cause(self) -> str | None:
        problem = self.row["problem"]
        return None if problem is None else str(problem["code"])

    def steps(self) -> dict[str, str]:
        return {s["step"]: s["outcome"] for s in self.row["steps"]}


def run_probe_cli(world: World, url: str, *args: str, timeout: float = PROBE_TIMEOUT) -> Probe:
    """``chat probe --url URL --timeout T ARGS`` as a table and as ``--json``, both at once; bounded in time."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHAT_URL", "APIM_SUBSCRIPTION_KEY")}
    argv = [script("chat"), "probe", "--url", url, "--timeout", str(timeout), *args]
    started = time.monotonic()
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=world.cwd, env=env)
        for command in (argv, [*argv, "--json"])
    ]
    try:
        results = [run.communicate(timeout=timeout * 8 + 10) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    seconds = time.monotonic() - started
    (table, table_err), (as_json, json_err) = results
    codes = [run.returncode for run in runs]
    assert codes[0] == codes[1], (table, table_err, json_err)
    assert table_err == "" and json_err == "", (table_err, json_err)
    report = json.loads(as_json)
    assert report["exit_code"] == codes[0]
    assert report["service"] == "webpubsub" and report["negotiate"]["service"] == "webpubsub"
    return Probe(codes[0], table, report, table + table_err + as_json + json_err, seconds)


def assert_no_secrets(probe: Probe, world: World, *secrets: str) -> None:
    for secret in (world.emulator.access_key, KEY, WRONG_KEY, WRONG_ACCESS_KEY, *secrets):
        assert secret not in probe.outputs
    assert "eyJ" not in probe.outputs  # no access token, whole or cut short
    assert "access_token=***" in probe.outputs  # the URL is shown, its token redacted
    assert max(len(line) for line in probe.table.splitlines()) <= 100


# --- working paths ----------------------------------------------------------------------------------------------


def test_direct_to_the_service_works(world: World) -> None:
    probe = run_probe_cli(world, world.main.url + "/chat")
    assert probe.code == 0
    assert probe.report["working_profiles"] == ["webpubsub"]
    negotiate = probe.report["negotiate"]
    assert negotiate["hub"] == "chat"
    assert negotiate["target"] == "Web PubSub Service"
    assert negotiate["host_kind"] == "local address"
    assert negotiate["redirect_host"] == f"127.0.0.1:{world.emulator.port}"
    assert negotiate["token"]["audience"].endswith("/client/hubs/chat")
    assert 3500 < negotiate["token"]["lifetime_s"] <= 3600 and negotiate["token"]["problem"] is None
    assert probe.row["works"] == "yes" and probe.row["problem"] is None and probe.row["latency_ms"] > 0
    assert probe.steps() == {"connect": "ok", "connected message": "ok", "echo": "ok", "close": "ok"}
    connect = next(s for s in probe.row["steps"] if s["step"] == "connect")
    assert connect["status"] == 101 and "json.reliable.webpubsub.azure.v1" in connect["detail"]
    close = next(s for s in probe.row["steps"] if s["step"] == "close")
    assert close["detail"] == "WebSocket closed (1000)"
    assert "Azure Web PubSub, hub chat, client access URL ws://127.0.0.1:" in probe.text
    assert "No gateway in between: the client access URL goes straight to the service." in probe.text
    assert "Works as APIM profile webpubsub. Exit 0." in probe.text
    assert "SignalR" not in probe.table
    assert_no_secrets(probe, world)


def test_through_the_webpubsub_profile_works(world: World) -> None:
    gateway, server = world.via("--profile", "webpubsub")
    probe = run_probe_cli(world, server.url + "/chat")
    assert probe.code == 0
    negotiate = probe.report["negotiate"]
    assert negotiate["target"] == "APIM gateway"
    assert negotiate["redirect_host"] == f"127.0.0.1:{gateway.port}"
    assert "APIM's 404 envelope for GET /client/hubs/chat/negotiate" in negotiate["target_evidence"]
    assert probe.row["works"] == "yes"
    assert probe.steps() == {"connect": "ok", "connected message": "ok", "echo": "ok", "close": "ok"}
    assert "client URL   127.0.0.1:" in probe.table
    assert "Works as APIM profile webpubsub. Exit 0." in probe.text
    assert "No gateway in between" not in probe.text
    assert_no_secrets(probe, world)


def test_no_echo_skips_the_event(world: World) -> None:
    _, server = world.via("--profile", "webpubsub")
    probe = run_probe_cli(world, server.url + "/chat", "--no-echo")
    assert probe.code == 0
    assert probe.steps() == {"connect": "ok", "connected message": "ok", "echo": "skipped", "close": "ok"}
    assert probe.row["latency_ms"] > 0
    assert_no_secrets(probe, world)


# --- misconfigured gateways -------------------------------------------------------------------------------------


def test_gateway_with_the_signalr_websocket_profile_is_apims_404(world: World) -> None:
    _, server = world.via("--profile", "websocket")
    probe = run_probe_cli(world, server.url + "/chat")
    assert probe.code == 1
    assert probe.report["working_profiles"] == []
    assert probe.report["negotiate"]["target"] == "APIM gateway"
    assert probe.cause == "no-connect-operation"
    assert probe.row["failed_step"] == "connect"
    problem = probe.row["problem"]
    assert problem["fix"]["command"] == EXPORT_FIX
    assert "connect: GET /client/hubs/chat -> 404 (APIM: Resource not found)" in probe.text
    assert "no WebSocket API on client/hubs/chat" in probe.text
    assert "apim-gateway export --profile webpubsub --format bicep --service-url \\" in probe.table
    assert "Web PubSub's WebSocket does not work: connect: GET /client/hubs/chat -> 404" in probe.text
    assert "Exit 1." in probe.text
    assert_no_secrets(probe, world)


def test_subscription_required_and_no_key_is_apims_401(world: World) -> None:
    _, server = world.via("--profile", "webpubsub", "--subscription-key", KEY)
    probe = run_probe_cli(world, server.url + "/chat")
    assert probe.code == 1
    assert probe.cause == "subscription-key-missing"
    step = next(s for s in probe.row["steps"] if s["step"] == "connect")
    assert step["status"] == 401 and step["apim"] is not None
    assert "requires a subscription key and none was sent" in probe.text
    assert "chat probe --subscription-key KEY" in probe.text
    assert_no_secrets(probe, world)


def test_subscription_required_and_a_wrong_key(world: World) -> None:
    _, server = world.via("--profile", "webpubsub", "--subscription-key", KEY)
    probe = run_probe_cli(world, server.url + "/chat", "--subscription-key", WRONG_KEY)
    assert probe.code == 1
    assert probe.cause == "subscription-key-invalid"
    assert "the subscription key was refused" in probe.text
    assert_no_secrets(probe, world)


def test_subscription_required_and_the_key_given_works(world: World) -> None:
    _, server = world.via("--profile", "webpubsub", "--subscription-key", KEY)
    probe = run_probe_cli(world, server.url + "/chat", "--subscription-key", KEY)
    assert probe.code == 0
    assert probe.row["works"] == "yes"
    assert_no_secrets(probe, world)


def test_stopped_gateway(world: World) -> None:
    gateway = start_gateway(world.emulator.endpoint, "--profile", "webpubsub")
    server = world.app_server(world.emulator.connection_string_to(gateway.url.rstrip("/")))
    gateway.stop()
    probe = run_probe_cli(world, server.url + "/chat")
    assert probe.code == 1
    assert probe.report["negotiate"]["target"] == "unreachable"
    assert probe.cause == "redirect-unreachable"
    assert f"nothing answers at 127.0.0.1:{gateway.port}" in probe.text
    assert "Azure__WebPubSub__ConnectionString" in probe.text
    assert_no_secrets(probe, world)


# --- misconfigured service or app server ------------------------------------------------------------------------


def test_no_event_handler_on_the_service_is_invocation_failed(world: World) -> None:
    bare = start_webpubsub_emulator()
    world.started.append(bare)
    server = world.app_server(bare.connection_string)
    probe = run_probe_cli(world, server.url + "/chat")
    assert probe.code == 1
    assert probe.cause == "event-handler-failed"
    assert probe.row["failed_step"] == "echo"
    echo = next(s for s in probe.row["steps"] if s["step"] == "echo")
    assert echo["error_name"] == "InvocationFailed"
    assert probe.steps()["connected message"] == "ok"
    assert "InvocationFailed: no event handler is configured for hub 'chat'" in probe.text
    assert "add an event handler for hub 'chat'" in probe.text
    assert_no_secrets(probe, world, bare.access_key)
    # Without the echo, the rest of the path works.
    probe = run_probe_cli(world, server.url + "/chat", "--no-echo")
    assert probe.code == 0
    assert_no_secrets(probe, world, bare.access_key)


def test_a_wrong_access_key_is_the_services_401(world: World) -> None:
    wrong = world.emulator.connection_string.replace(world.emulator.access_key, WRONG_ACCESS_KEY)
    server = world.app_server(wrong)
    probe = run_probe_cli(world, server.url + "/chat")
    assert probe.code == 1
    assert probe.cause == "token-rejected"
    step = next(s for s in probe.row["steps"] if s["step"] == "connect")
    assert step["status"] == 401 and step["apim"] is None
    assert "the service refused the access token (401 without APIM's envelope)" in probe.text
    assert "AccessKey" in probe.text
    assert_no_secrets(probe, world)
