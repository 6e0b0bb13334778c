"""``chat probe`` against an app server that answers for Azure Web PubSub, with a stand-in service on 127.0.0.1 that
misbehaves in each way the probe must explain: an HTTP API on the path, no subprotocol, no ``connected`` message,
hostile frames, acks that fail or never come, an echo that never comes, APIM's 500, an upgrade that hangs.

The real stack (emulator, app server, gateway) is in ``tests/e2e/test_probe_webpubsub.py``; these cases need a
service that does what no working one does.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from rich.console import Console

from chat.probe import ProbeOptions, ProbeReport, exit_code, render_table, report_json, run_probe
from chat.probe.checks import host_kind
from chat.probe.model import Cause, HostKind, Step, Target, Works
from chat.probe.webpubsub_checks import route_check_url
from chat.probe.webpubsub_verdict import export_command, service_url_for
from chat.probe_panel import render_verdict
from webpubsub.subprotocol import RELIABLE_JSON_SUBPROTOCOL
from webpubsub.tokens import mint_client_token

ACCESS_KEY = "a" * 44
AUDIENCE = "https://contoso.webpubsub.azure.com/client/hubs/chat"
TIMEOUT = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Handler]], Awaitable[str]]]:
    """Start an aiohttp server on 127.0.0.1 with the given GET/POST routes; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def negotiate_answer(url: str, hub: str = "chat") -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"service": "webpubsub", "hub": hub, "url": url})

    return handler


async def _socket(request: web.Request, *, protocol: bool = True) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=(RELIABLE_JSON_SUBPROTOCOL,) if protocol else ())
    await ws.prepare(request)
    return ws


def connected() -> str:
    return json.dumps({"type": "system", "event": "connected", "userId": None, "connectionId": "c1"})


def ack(success: bool, name: str = "", message: str = "") -> str:
    body: dict[str, Any] = {"type": "ack", "ackId": 1, "success": success}
    if not success:
        body["error"] = {"name": name, "message": message}
    return json.dumps(body)


def service(
    *replies: Callable[[dict[str, Any]], list[str]], protocol: bool = True, first: str | None = None
) -> Handler:
    """A stand-in client endpoint: upgrade (with the subprotocol unless ``protocol`` is false), send ``first`` (the
    connected message by default), then answer each client frame with ``replies[i](frame)``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = await _socket(request, protocol=protocol)
        await ws.send_str(connected() if first is None else first)
        index = 0
        async for message in ws:
            if index < len(replies):
                for text in replies[index](json.loads(message.data)):
                    await ws.send_str(text)
            index += 1
        return ws

    return handler


def echo_back(frame: dict[str, Any]) -> list[str]:
    data = {
        "name": frame["data"]["name"],
        "message": frame["data"]["message"] + " (echo from server)",
        "target": "echo",
    }
    return [json.dumps({"type": "message", "from": "server", "dataType": "json", "data": data}), ack(True)]


async def probe(
    serve: Callable[[dict[str, Handler]], Awaitable[str]],
    handler: Handler,
    *,
    audience: str = AUDIENCE,
    echo: bool = True,
    hub: str = "chat",
) -> ProbeReport:
    """The app server and the service on two servers; the client access URL carries a token for ``audience``."""
    service_base = await serve({"/client/hubs/chat": handler})
    token = mint_client_token(ACCESS_KEY, audience)
    url = service_base.replace("http://", "ws://") + f"/client/hubs/chat?access_token={token}"
    app = await serve({"/chat/negotiate": negotiate_answer(url, hub)})
    report = await run_probe(ProbeOptions(url=app + "/chat", echo=echo, timeout=TIMEOUT))
    assert_no_secrets(report, token)
    return report


def assert_no_secrets(report: ProbeReport, token: str) -> None:
    text = render_table(report) + json.dumps(report_json(report)) + panel_text(report)
    assert token not in text and "eyJ" not in text and ACCESS_KEY not in text
    assert max(len(line) for line in render_table(report).splitlines()) <= 100


def panel_text(report: ProbeReport) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(render_verdict(report, lambda s: s))
    return console.export_text()


def problem(report: ProbeReport) -> tuple[Cause | None, Step | None]:
    assert report.service == "webpubsub" and len(report.transports) == 1
    found = report.transports[0].problem
    return (found.code, found.step) if found is not None else (None, None)


# --- pure helpers -------------------------------------------------------------------------------------------------


def test_hosts_addresses_and_commands() -> None:
    assert host_kind("contoso.webpubsub.azure.com") is HostKind.WEBPUBSUB
    assert host_kind("contoso.azure-api.net") is HostKind.APIM
    assert route_check_url("wss://gw.example/client/hubs/chat?access_token=x") == (
        "https://gw.example/client/hubs/chat/negotiate"
    )
    assert route_check_url("ws://127.0.0.1:1/client/hubs/chat/") == "http://127.0.0.1:1/client/hubs/chat/negotiate"
    assert service_url_for(AUDIENCE) == "https://contoso.webpubsub.azure.com"
    assert service_url_for("http://127.0.0.1/client/hubs/chat") == "https://<resource>.webpubsub.azure.com"
    assert service_url_for("https://evil.example/client/hubs/chat") == "https://<resource>.webpubsub.azure.com"
    assert export_command() == (
        "apim-gateway export --profile webpubsub --format bicep --service-url https://<resource>.webpubsub.azure.com"
    )
    assert "--hub lobby --format" in export_command(hub="lobby")
    assert "--hub <hub> --format" in export_command(hub="chat; rm -rf ~")


# --- the stand-in service -----------------------------------------------------------------------------------------


async def test_a_working_service(serve: Any) -> None:
    report = await probe(serve, service(echo_back))
    assert exit_code(report) == 0
    assert report.working_profiles == ("webpubsub",)
    assert report.negotiate.hub == "chat"
    assert report.negotiate.target is Target.NOT_WEBPUBSUB  # neither APIM's envelope nor the token's host
    row = report.transports[0]
    assert row.works is Works.YES and row.latency_ms is not None
    assert [s.step for s in row.steps] == [Step.CONNECT, Step.CONNECTED, Step.ECHO, Step.SOCKET_CLOSE]
    assert "Works as APIM profile webpubsub. Exit 0." in render_table(report)
    text = panel_text(report)
    assert "client URL" in text and "Azure Web PubSub, hub chat" in text and "access_token=***" in text


async def test_an_http_api_answers_the_upgrade_with_200(serve: Any) -> None:
    async def http_api(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    report = await probe(serve, http_api)
    assert problem(report) == (Cause.UPGRADE_REFUSED, Step.CONNECT)
    assert exit_code(report) == 1
    found = report.transports[0].problem
    assert found is not None and found.fix is not None
    assert "is an HTTP API in APIM" in found.cause
    assert found.fix.command == export_command("https://contoso.webpubsub.azure.com")


async def test_no_subprotocol_in_the_answer(serve: Any) -> None:
    report = await probe(serve, service(echo_back, protocol=False))
    assert problem(report) == (Cause.SUBPROTOCOL_MISSING, Step.CONNECT)
    assert "dropped Sec-WebSocket-Protocol" in render_table(report).replace("\n", " ").replace("  ", " ")


async def test_apims_500_is_the_backend(serve: Any) -> None:
    async def apim_500(_: web.Request) -> web.Response:
        return web.json_response({"statusCode": 500, "message": "Internal server error"}, status=500)

    report = await probe(serve, apim_500)
    assert problem(report) == (Cause.WRONG_BACKEND, Step.CONNECT)


async def test_an_upgrade_that_hangs_times_out(serve: Any) -> None:
    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(TIMEOUT * 10)
        return web.Response()

    report = await probe(serve, hang)
    assert problem(report) == (Cause.TIMED_OUT, Step.CONNECT)
    assert report.elapsed_ms < TIMEOUT * 1000 * 4


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ("", "not json.reliable.webpubsub.azure.v1"),
        ("not json", "not json.reliable.webpubsub.azure.v1"),
        ('{"type": "system", "event": "disconnected", "message": "go away"}', "disconnected: go away"),
        (
            '{"type": "message", "from": "server", "dataType": "json", "data": ' + "[" * 10_000 + "]" * 10_000 + "}",
            "nested deeper than",
        ),
        ("x" * (2 * 1024 * 1024), "closed the WebSocket"),
    ],
)
async def test_no_connected_message(serve: Any, first: str, why: str) -> None:
    report = await probe(serve, service(first=first))
    assert problem(report) == (Cause.CONNECTED_MISSING, Step.CONNECTED)
    step = report.transports[0].steps[1]
    assert why in step.detail and len(step.detail) < 400


async def test_a_silent_service_after_the_upgrade(serve: Any) -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        ws = await _socket(request)
        async for _ in ws:
            pass
        return ws

    report = await probe(serve, silent)
    assert problem(report) == (Cause.CONNECTED_MISSING, Step.CONNECTED)
    assert "no connected message within 0.5 s" in report.transports[0].steps[1].detail


async def test_a_binary_frame_is_not_the_subprotocol(serve: Any) -> None:
    async def binary(request: web.Request) -> web.StreamResponse:
        ws = await _socket(request)
        await ws.send_bytes(b"\x00\x01")
        async for _ in ws:
            pass
        return ws

    report = await probe(serve, binary)
    assert problem(report) == (Cause.CONNECTED_MISSING, Step.CONNECTED)


async def test_no_ack_for_the_event_times_out(serve: Any) -> None:
    report = await probe(serve, service(lambda _: []))
    assert problem(report) == (Cause.TIMED_OUT, Step.ECHO)
    assert "no ack for the event within 0.5 s" in report.transports[0].steps[-1].detail


async def test_an_ack_without_the_echo(serve: Any) -> None:
    report = await probe(serve, service(lambda _: [ack(True)]))
    assert problem(report) == (Cause.ECHO_FAILED, Step.ECHO)
    assert "acknowledged, but no echo came back" in report.transports[0].steps[-1].detail


async def test_the_event_handler_failing_is_invocation_failed(serve: Any) -> None:
    report = await probe(serve, service(lambda _: [ack(False, "InvocationFailed", "Event handler answered 500.")]))
    assert problem(report) == (Cause.EVENT_HANDLER_FAILED, Step.ECHO)
    found = report.transports[0].problem
    assert found is not None and "did not answer with a success status" in found.cause
    assert report.transports[0].steps[-1].error_name == "InvocationFailed"


async def test_a_forbidden_event_is_an_echo_failure(serve: Any) -> None:
    report = await probe(serve, service(lambda _: [ack(False, "Forbidden", "x" * 10_000)]))
    assert problem(report) == (Cause.ECHO_FAILED, Step.ECHO)
    assert len(report.transports[0].steps[-1].detail) < 400


async def test_no_echo_skips_the_event(serve: Any) -> None:
    report = await probe(serve, service(), echo=False)
    assert exit_code(report) == 0
    assert [s.outcome.value for s in report.transports[0].steps] == ["ok", "ok", "skipped", "ok"]


async def test_a_token_for_another_hub_is_named(serve: Any) -> None:
    report = await probe(serve, service(echo_back), audience="https://contoso.webpubsub.azure.com/client/hubs/lobby")
    assert report.negotiate.token is not None
    assert report.negotiate.token.problem == "the token is for hub 'lobby', the app server named hub 'chat'"


async def test_a_client_access_url_without_a_token(serve: Any) -> None:
    service_base = await serve({"/client/hubs/chat": service(echo_back)})
    app = await serve({"/chat/negotiate": negotiate_answer(service_base.replace("http", "ws") + "/client/hubs/chat")})
    report = await run_probe(ProbeOptions(url=app + "/chat", timeout=TIMEOUT))
    assert report.negotiate.token is not None
    assert report.negotiate.token.problem == "the client access URL carries no access_token"


async def test_a_broken_webpubsub_answer_names_the_webpubsub_setting(serve: Any) -> None:
    app = await serve({"/chat/negotiate": negotiate_answer("http://127.0.0.1:1/client/hubs/chat")})
    report = await run_probe(ProbeOptions(url=app + "/chat", timeout=TIMEOUT))
    assert exit_code(report) == 1
    assert report.service == "webpubsub"
    assert report.problem is not None and report.problem.fix is not None
    assert "Azure__WebPubSub__ConnectionString" in report.problem.fix.doc
    assert "Azure SignalR" not in render_table(report)


async def test_a_client_access_url_pointing_at_something_else(serve: Any) -> None:
    async def not_found(_: web.Request) -> web.Response:
        return web.Response(status=404, text="no such page")

    report = await probe(serve, not_found)
    assert report.negotiate.target is Target.NOT_WEBPUBSUB
    assert problem(report) == (Cause.CLIENT_ENDPOINT_WRONG, Step.CONNECT)
    found = report.transports[0].problem
    assert found is not None and found.fix is not None and "ClientEndpoint" in found.fix.doc
