"""``chat probe`` as a process against the real local stack: ``signalr-emulator``, ``chat-server`` and
``apim-gateway`` in each configuration the probe must recognise, healthy and misconfigured.

One emulator (serverless, its upstream the main app server, ``--public-host 127.0.0.1`` so that a gateway forwarding
its own ``Host`` is refused) serves every case; each gateway configuration gets its own gateway and an app server
whose ``ClientEndpoint`` names it. Every case runs the command twice at once, as a table and with ``--json``, and
checks the exit code, the rows, the cause and the fix named, and that no secret (subscription key, AccessKey, access
token) appears on stdout or stderr.
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
from tests.support.stack import (
    ChatServer,
    EmulatorProcess,
    Gateway,
    start_chat_server,
    start_emulator,
    start_gateway,
    upstream_template,
)

KEY = "probe-subscription-key-5d1c"
WRONG_KEY = "not-the-key-0b7e"
PROBE_TIMEOUT = 2.0
GUIDE = "signalr-howto-work-with-apim"
SERVERLESS = ("--service-mode", "serverless")


@dataclass
class World:
    """The shared emulator and main app server, plus the gateways and app servers started for cases."""

    emulator: EmulatorProcess
    main: ChatServer
    cwd: Path
    started: list[Gateway | ChatServer] = field(default_factory=list)
    cases: dict[tuple[str, ...], tuple[Gateway, ChatServer]] = field(default_factory=dict)

    def via(self, *gateway_args: str, client_host: str = "127.0.0.1") -> tuple[Gateway, ChatServer]:
        """A gateway with ``gateway_args`` in front of the emulator, and an app server that redirects to it (through
        ``client_host``); started once per configuration."""
        key = (*gateway_args, client_host)
        if key not in self.cases:
            gateway = start_gateway(self.emulator.base, *gateway_args)
            self.started.append(gateway)
            endpoint = f"http://{client_host}:{gateway.port}"
            server = start_chat_server(self.emulator.connection_string_to(endpoint), *SERVERLESS, cwd=self.cwd)
            self.started.append(server)
            self.cases[key] = (gateway, server)
        return self.cases[key]

    def app_server(self, connection_string: str) -> ChatServer:
        server = start_chat_server(connection_string, *SERVERLESS, cwd=self.cwd)
        self.started.append(server)
        return server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    cwd = tmp_path_factory.mktemp("probe")
    port = free_port()
    emulator = start_emulator(
        "--service-mode", "serverless", "--upstream", upstream_template(port), "--public-host", "127.0.0.1"
    )
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


@dataclass
class Probe:
    """Both outputs of one case: the table run and the ``--json`` run."""

    code: int
    table: str
    report: dict[str, Any]
    outputs: str
    """stdout and stderr of both runs, for the secret checks."""
    seconds: float

    @property
    def text(self) -> str:
        """The table with its line breaks and indentation folded into single spaces (for phrases across lines)."""
        return " ".join(self.table.split())

    def row(self, transport: str) -> dict[str, Any]:
        return next(t for t in self.report["transports"] if t["transport"] == transport)

    def works(self) -> dict[str, str]:
        return {t["transport"]: t["works"] for t in self.report["transports"]}

    def cause(self, transport: str) -> str | None:
        problem = self.row(transport)["problem"]
        return None if problem is None else str(problem["code"])


def run_probe_cli(world: World, url: str, *args: str, timeout: float = PROBE_TIMEOUT) -> Probe:
    """``chat probe --url URL --timeout T ARGS`` as a table and as ``--json``, both at once; bounded in time."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHAT_URL", "APIM_SUBSCRIPTION_KEY")}
    argv = [script("chat"), "probe", "--url", url, "--timeout", str(timeout), *args]
    started = time.monotonic()
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=world.cwd, env=env)
        for command in (argv, [*argv, "--json"])
    ]
    results = [run.communicate(timeout=timeout * 8 + 10) for run in runs]
    seconds = time.monotonic() - started
    (table, table_err), (as_json, json_err) = results
    codes = [run.returncode for run in runs]
    assert codes[0] == codes[1], (table, table_err, json_err)
    assert table_err == "" and json_err == "", (table_err, json_err)
    report = json.loads(as_json)
    assert report["exit_code"] == codes[0]
    return Probe(codes[0], table, report, table + table_err + as_json + json_err, seconds)


def assert_no_secrets(probe: Probe, world: World, *secrets: str) -> None:
    for secret in (world.emulator.access_key, KEY, WRONG_KEY, *secrets):
        assert secret not in probe.outputs
    assert "eyJ" not in probe.outputs  # no access token, whole or cut short
    assert max(len(line) for line in probe.table.splitlines()) <= 100


# --- healthy profiles -----------------------------------------------------------------------------------------


def test_websocket_profile_works_and_names_the_other_profile(world: World) -> None:
    _, server = world.via("--profile", "websocket")
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 0
    assert probe.works() == {"WebSockets": "yes", "ServerSentEvents": "no", "LongPolling": "no"}
    assert probe.report["working_profiles"] == ["websocket"]
    assert probe.report["negotiate"]["target"] == "APIM gateway"
    assert probe.report["negotiate"]["token"]["audience"] == "http://127.0.0.1/client/?hub=chat"
    assert 3500 < probe.report["negotiate"]["token"]["lifetime_s"] <= 3600
    assert probe.row("WebSockets")["latency_ms"] > 0
    for transport in ("ServerSentEvents", "LongPolling"):
        assert probe.cause(transport) == "no-connect-operation"
        assert probe.row(transport)["failed_step"] == "connect"
        fix = probe.row(transport)["problem"]["fix"]
        assert "--profile sse-lp" in fix["command"]
    assert "ServerSentEvents  no" in probe.table
    assert "connect: GET /client/ -> 404 (APIM: Resource not found)" in probe.text
    assert "no HTTP operation `GET /` on client/ — the websocket profile is configured" in probe.text
    assert "Works as APIM profile websocket. Exit 0." in probe.text
    assert GUIDE in probe.text
    assert_no_secrets(probe, world)


def test_a_page_on_another_origin_is_preflighted_at_the_app_server_too(world: World) -> None:
    _, server = world.via("--profile", "websocket")
    probe = run_probe_cli(world, server.hub_url, "--origin", "https://chat.example.com/page", "--no-echo")
    assert probe.code == 0
    assert probe.report["origin"] == "https://chat.example.com"
    app_checks = {s["step"]: s for s in probe.report["negotiate"]["checks"]}
    assert app_checks["negotiate preflight"]["outcome"] == "ok"
    assert app_checks["negotiate preflight"]["cors"]["allow_origin"] == "https://chat.example.com"
    assert app_checks["route check"]["status"] == 404
    preflight = next(s for s in probe.row("WebSockets")["steps"] if s["step"] == "negotiate preflight")
    assert preflight["outcome"] == "ok" and preflight["cors"]["allow_origin"] == "https://chat.example.com"
    assert "origin https://chat.example.com" in probe.text
    assert_no_secrets(probe, world)


def test_sse_lp_profile_with_delete_works(world: World) -> None:
    _, server = world.via("--profile", "sse-lp", "--with-delete")
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 0
    assert probe.works() == {"WebSockets": "no", "ServerSentEvents": "yes", "LongPolling": "yes"}
    assert probe.report["working_profiles"] == ["sse-lp"]
    assert probe.cause("WebSockets") == "websocket-upgrade-refused"
    assert "--profile websocket" in probe.row("WebSockets")["problem"]["fix"]["command"]
    assert probe.row("LongPolling")["notes"] == []
    delete = [s for s in probe.row("LongPolling")["steps"] if s["step"] == "delete"]
    assert delete and delete[0]["outcome"] == "ok"
    sse_connect = next(s for s in probe.row("ServerSentEvents")["steps"] if s["step"] == "connect")
    assert sse_connect["first_byte_ms"] is not None and sse_connect["first_byte_ms"] < 1000
    assert "WebSocket upgrade refused: APIM answered 200, not 101" in probe.text
    assert "Works as APIM profile sse-lp. Exit 0." in probe.text
    assert_no_secrets(probe, world)


def test_sse_lp_without_delete_is_a_harmless_note(world: World) -> None:
    _, server = world.via("--profile", "sse-lp")
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 0
    assert probe.row("LongPolling")["works"] == "yes"
    notes = probe.row("LongPolling")["notes"]
    assert [n["code"] for n in notes] == ["no-delete-operation"]
    assert notes[0]["harmless"] is True
    assert "--with-delete" in notes[0]["fix"]["command"]
    assert "no `DELETE /` operation: harmless, clients send a Close message first" in probe.text
    assert_no_secrets(probe, world)


def test_direct_to_the_service_works_for_every_transport(world: World) -> None:
    probe = run_probe_cli(world, world.main.hub_url, "--no-echo")
    assert probe.code == 0
    assert set(probe.works().values()) == {"yes"}
    assert probe.report["working_profiles"] == ["websocket", "sse-lp"]
    assert probe.report["negotiate"]["target"] == "SignalR Service"
    assert "No gateway in between" in probe.text
    for row in probe.report["transports"]:
        assert [s["outcome"] for s in row["steps"] if s["step"] == "echo"] == ["skipped"]
        assert row["latency_ms"] > 0
    assert_no_secrets(probe, world)


# --- misconfigured gateways -----------------------------------------------------------------------------------


def test_buffered_sse_hits_the_timeout_and_names_buffer_response(world: World) -> None:
    _, server = world.via("--profile", "sse-lp", "--buffer-sse")
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 1
    assert probe.works() == {"WebSockets": "no", "ServerSentEvents": "no", "LongPolling": "yes"}
    assert probe.cause("ServerSentEvents") == "sse-buffered"
    problem = probe.row("ServerSentEvents")["problem"]
    assert 'buffer-response="false"' in problem["cause"]
    assert 'buffer-response="false"' in problem["fix"]["doc"]
    assert "--profile sse-lp" in problem["fix"]["command"]
    assert "SSE buffered: `GET /` buffers the response" in probe.text
    assert "No APIM profile works" in probe.text and "Exit 1." in probe.text
    assert probe.seconds < PROBE_TIMEOUT * 4 + 5
    assert_no_secrets(probe, world)


def test_subscription_required_without_a_key(world: World) -> None:
    _, server = world.via("--profile", "sse-lp", "--subscription-key", KEY)
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 1
    assert {probe.cause(t) for t in probe.works()} == {"subscription-key-missing"}
    assert "missing subscription key" in probe.text
    assert "chat probe --subscription-key KEY" in probe.text
    assert_no_secrets(probe, world)


def test_subscription_key_header_works_for_server_side_clients_only(world: World) -> None:
    _, server = world.via("--profile", "sse-lp", "--subscription-key", KEY)
    probe = run_probe_cli(world, server.hub_url, "--subscription-key", KEY)
    assert probe.code == 1
    assert probe.works() == {
        "WebSockets": "no",
        "ServerSentEvents": "server-side only",
        "LongPolling": "server-side only",
    }
    assert probe.cause("ServerSentEvents") == "preflight-subscription-required"
    assert probe.row("ServerSentEvents")["problem"]["step"] == "negotiate preflight"
    assert "OPTIONS preflight answered 401 without CORS headers" in probe.text
    assert "browsers cannot send the key on a preflight" in probe.text
    assert "query parameter subscription-key" in probe.text
    assert "works for server-side clients only" in probe.text
    assert_no_secrets(probe, world)


def test_wrong_subscription_key(world: World) -> None:
    _, server = world.via("--profile", "sse-lp", "--subscription-key", KEY)
    probe = run_probe_cli(world, server.hub_url, "--subscription-key", WRONG_KEY)
    assert probe.code == 1
    assert {probe.cause(t) for t in probe.works()} == {"subscription-key-invalid"}
    assert "the subscription key was refused" in probe.text
    assert_no_secrets(probe, world)


def test_subscription_key_in_the_hub_url_passes_preflights(world: World) -> None:
    _, server = world.via("--profile", "sse-lp", "--subscription-key", KEY)
    probe = run_probe_cli(world, f"{server.hub_url}?subscription-key={KEY}")
    assert probe.code == 0
    assert probe.works() == {"WebSockets": "no", "ServerSentEvents": "yes", "LongPolling": "yes"}
    assert probe.report["negotiate"]["query_key"] is True
    assert "subscription-key=***" in probe.text
    assert_no_secrets(probe, world)


def test_no_options_operations_fail_browser_preflights(world: World) -> None:
    _, server = world.via("--profile", "sse-lp", "--no-options")
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 1
    assert probe.works() == {
        "WebSockets": "no",
        "ServerSentEvents": "server-side only",
        "LongPolling": "server-side only",
    }
    assert probe.cause("LongPolling") == "preflight-no-options-operation"
    assert "OPTIONS preflight answered APIM's 404" in probe.text
    assert "add the OPTIONS operations" in probe.text
    assert_no_secrets(probe, world)


def test_host_not_rewritten(world: World) -> None:
    _, server = world.via("--profile", "websocket", "--keep-host", client_host="localhost")
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 1
    assert probe.report["negotiate"]["target"] == "APIM gateway"
    assert probe.cause("WebSockets") == "host-not-rewritten"
    assert "the service refused the request's Host header" in probe.text
    assert_no_secrets(probe, world)


def test_gateway_with_an_unreachable_backend(world: World) -> None:
    gateway = start_gateway(f"http://127.0.0.1:{free_port()}", "--profile", "websocket")
    world.started.append(gateway)
    server = world.app_server(world.emulator.connection_string_to(gateway.url))
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 1
    assert {probe.cause(t) for t in probe.works()} == {"wrong-backend"}
    assert "APIM could not reach its backend (its 500 envelope)" in probe.text
    assert "Web service URL" in probe.text
    assert_no_secrets(probe, world)


def test_gateway_in_front_of_something_that_is_not_signalr(world: World) -> None:
    gateway = start_gateway(world.main.url.rstrip("/"), "--profile", "websocket")
    world.started.append(gateway)
    server = world.app_server(world.emulator.connection_string_to(gateway.url))
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 1
    assert probe.cause("WebSockets") == "wrong-backend"
    assert "what answered is not SignalR Service" in probe.text
    assert_no_secrets(probe, world)


# --- things that are down or misnamed -------------------------------------------------------------------------


def test_stopped_gateway(world: World) -> None:
    gateway = start_gateway(world.emulator.base, "--profile", "websocket")
    server = world.app_server(world.emulator.connection_string_to(gateway.url))
    gateway.stop()
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 1
    assert probe.report["negotiate"]["target"] == "unreachable"
    assert {probe.cause(t) for t in probe.works()} == {"redirect-unreachable"}
    assert f"nothing answers at {gateway.host}" in probe.text
    assert "the gateway is down" in probe.text
    assert_no_secrets(probe, world)


def test_stopped_app_server(world: World) -> None:
    probe = run_probe_cli(world, f"http://127.0.0.1:{free_port()}/chat")
    assert probe.code == 1
    assert probe.report["problem"]["code"] == "app-server-unreachable"
    assert {probe.cause(t) for t in probe.works()} == {"app-server-unreachable"}
    assert "the app server cannot be reached (connection refused)" in probe.text
    assert "start the app server" in probe.text
    assert_no_secrets(probe, world)


def test_client_endpoint_pointing_at_something_else(world: World) -> None:
    # The ClientEndpoint names the main app server: an HTTP server, but neither a gateway nor the service.
    server = world.app_server(world.emulator.connection_string_to(world.main.url.rstrip("/")))
    probe = run_probe_cli(world, server.hub_url)
    assert probe.code == 1
    assert probe.report["negotiate"]["target"] == "neither APIM nor SignalR Service"
    assert {probe.cause(t) for t in probe.works()} == {"client-endpoint-wrong"}
    assert "the ClientEndpoint in its connection string is wrong" in probe.text
    assert_no_secrets(probe, world)


# --- the command line -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "0"],
        ["--timeout", "nan"],
        ["--url", "ftp://example.com/chat"],
        ["--origin", "not a url"],
        ["--subscription-key", " "],
        ["--bogus"],
    ],
)
def test_usage_errors_exit_2(world: World, args: list[str]) -> None:
    result = subprocess.run([script("chat"), "probe", *args], capture_output=True, text=True, timeout=30, cwd=world.cwd)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("chat probe: error: ")
    assert len(result.stderr.splitlines()) == 1
