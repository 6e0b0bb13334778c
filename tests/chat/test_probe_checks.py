"""``chat.probe.checks``: the pure helpers (CORS, token, host kind, the hub reader) with malformed and hostile input,
and :func:`run_probe` against hostile peers on 127.0.0.1 (bad negotiate answers, a service that never answers the
handshake, an event stream that stays silent, garbage polls): every failure is recorded, nothing raises, every wait
ends within its bound, and no token is ever in the report.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from chat.probe import Finding, ProbeOptions, ProbeReport, render_table, report_json, run_probe
from chat.probe.checks import _HubSession, check_cors, decode_token, host_kind
from chat.probe.model import Cause, HostKind, NetError, Outcome, Step, StepResult, Works
from signalr.handshake import encode_handshake_response
from signalr.json_protocol import JSON
from signalr.messages import Close, Completion, Invocation
from signalr.negotiate import NegotiateRedirect, service_negotiate_response
from signalr.tokens import mint_token

ORIGIN = "http://127.0.0.1:5000"
TOKEN = mint_token("k" * 44, "http://127.0.0.1/client/?hub=chat", lifetime=600)

# --- CORS -----------------------------------------------------------------------------------------------------


def test_cors_allowed_for_the_origin_with_credentials() -> None:
    headers = {
        "Access-Control-Allow-Origin": ORIGIN,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, X-Requested-With, X-SignalR-User-Agent",
    }
    cors = check_cors(headers, ORIGIN, method="DELETE", requested="authorization,x-requested-with,x-signalr-user-agent")
    assert cors.problem is None
    assert cors.allow_methods == ("GET", "POST", "DELETE", "OPTIONS")


@pytest.mark.parametrize(
    ("headers", "method", "problem"),
    [
        ({}, None, "no Access-Control-Allow-Origin header"),
        ({"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": "true"}, None, "is *"),
        ({"Access-Control-Allow-Origin": "https://other.example"}, None, "not http://127.0.0.1:5000"),
        ({"Access-Control-Allow-Origin": ORIGIN}, None, "Access-Control-Allow-Credentials"),
        (
            {"Access-Control-Allow-Origin": ORIGIN, "Access-Control-Allow-Credentials": "true"},
            "DELETE",
            "does not list DELETE",
        ),
        (
            {
                "Access-Control-Allow-Origin": ORIGIN,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Headers": "x-requested-with",
            },
            "POST",
            "does not list authorization",
        ),
    ],
)
def test_cors_refusals_say_why(headers: dict[str, str], method: str | None, problem: str) -> None:
    cors = check_cors(headers, ORIGIN, method=method, requested="authorization,x-requested-with")
    assert cors.problem is not None and problem in cors.problem


def test_hostile_cors_values_are_cut_and_redacted() -> None:
    value = "Bearer " + TOKEN + "x" * 10_000
    cors = check_cors({"Access-Control-Allow-Origin": value}, ORIGIN)
    assert cors.problem is not None and "eyJ" not in cors.problem and len(cors.problem) < 200
    assert cors.allow_origin is not None and "eyJ" not in cors.allow_origin


# --- the token --------------------------------------------------------------------------------------------------


def test_a_token_is_read_for_lifetime_and_audience_only() -> None:
    token = mint_token("k" * 44, "http://127.0.0.1/client/?hub=chat", lifetime=600)
    info = decode_token(token)
    assert info.lifetime_s == 600
    assert info.expires_in_s is not None and 590 <= info.expires_in_s <= 600
    assert info.audience == "http://127.0.0.1/client/?hub=chat"
    assert info.problem is None
    assert token not in repr(info) and "eyJ" not in repr(info)


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("", "no accessToken"),
        ("not-a-jwt", "not a readable JWT"),
        ("eyJ.eyJ.eyJ", "not a readable JWT"),
        ("eyJhbGciOiJub25lIn0." + "A" * 100_000 + ".", "not a readable JWT"),
        ("\u00e9\u0000\udcff", "not a readable JWT"),
        (mint_token("k" * 44, "aud", lifetime=-10), "expired"),
    ],
)
def test_unreadable_or_expired_tokens(token: str, problem: str) -> None:
    info = decode_token(token)
    assert info.problem is not None and problem in info.problem


def test_a_token_without_exp_or_audience() -> None:
    import jwt

    assert decode_token(jwt.encode({"aud": "x"}, "k" * 44, algorithm="HS256")).problem == "the token has no exp claim"
    no_aud = jwt.encode({"exp": time.time() + 60, "aud": ["", 3]}, "k" * 44, algorithm="HS256")
    assert decode_token(no_aud).problem == "the token has no aud claim"


# --- host kinds -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("contoso.azure-api.net", HostKind.APIM),
        ("CONTOSO.AZURE-API.NET.", HostKind.APIM),
        ("res.service.signalr.net", HostKind.SERVICE),
        ("localhost", HostKind.LOCAL),
        ("127.0.0.1", HostKind.LOCAL),
        ("10.1.2.3", HostKind.LOCAL),
        ("::1", HostKind.LOCAL),
        ("api.contoso.com", HostKind.CUSTOM),
        ("8.8.8.8", HostKind.CUSTOM),
        ("", HostKind.CUSTOM),
    ],
)
def test_host_kinds(host: str, kind: HostKind) -> None:
    assert host_kind(host) is kind


# --- the hub reader ---------------------------------------------------------------------------------------------


async def test_the_hub_reader_takes_a_handshake_in_pieces_and_messages_after_it() -> None:
    hub = _HubSession()
    reply = encode_handshake_response() + JSON.encode(Invocation("echo", ("probe", "probe abc (echo from server)")))
    for byte in reply:
        hub.feed(bytes([byte]))
    assert hub.handshake_done and hub.handshake_error is None
    assert hub.echo_answer("abc") == (True, "")
    assert hub.echo_answer("other") is None


async def test_the_hub_reader_reports_errors_without_raising() -> None:
    refused = _HubSession()
    refused.feed(encode_handshake_response("Requested protocol 'json' is not available."))
    assert refused.handshake_error == "Requested protocol 'json' is not available."

    for garbage in (b"\xff\xfe\x00\x1e", b"[1,2]\x1e", b"{" * 100_000 + b"\x1e", b"x" * (2 * 1024 * 1024)):
        hub = _HubSession()
        hub.feed(garbage)
        assert hub.protocol_error is not None

    after = _HubSession()
    after.feed(encode_handshake_response() + b'{"type":1,"target":\x1e')
    assert after.protocol_error is not None
    verdict = after.echo_answer("abc")
    assert verdict is not None and verdict[0] is False


async def test_the_hub_reader_sees_refusals_and_closes_and_skips_unknown_types() -> None:
    hub = _HubSession()
    hub.feed(encode_handshake_response() + b'{"type":99}\x1e' + JSON.encode(Completion.with_error("1", "no echo")))
    assert hub.protocol_error is None
    assert hub.echo_answer("abc") == (False, "the hub answered echo with an error: no echo")
    closed = _HubSession()
    closed.feed(encode_handshake_response() + JSON.encode(Close("bye")))
    assert closed.echo_answer("abc") == (False, "the server closed the connection: bye")


# --- hostile peers ----------------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[tuple[str, str], Handler]], Awaitable[str]]]:
    """Start an aiohttp server on 127.0.0.1 with the given routes; returns its base URL. Stopped at teardown."""
    runners: list[web.AppRunner] = []

    async def start(routes: dict[tuple[str, str], Handler]) -> str:
        app = web.Application()
        for (method, path), handler in routes.items():
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def answer(body: bytes, status: int = 200, content_type: str = "application/json") -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, status=status, content_type=content_type)

    return handler


async def probe(url: str, timeout: float = 0.5) -> tuple[ProbeReport, list[StepResult], float]:
    steps: list[StepResult] = []
    started = time.monotonic()
    report = await run_probe(ProbeOptions(url=url, timeout=timeout), on_step=steps.append)
    return report, steps, time.monotonic() - started


def code_of(finding: Finding | None) -> Cause | None:
    return None if finding is None else finding.code


def no_token_in(report: ProbeReport) -> None:
    text = render_table(report) + json.dumps(report_json(report)) + repr(report)
    assert "eyJ" not in text


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"url": "javascript:alert(1)", "accessToken": "x"}',
        b'{"url": "http://a b/", "accessToken": "x"}',
        b'{"error": "nope"}',
        b"{" * 200_000,
        b'{"x": "' + b"y" * (3 * 1024 * 1024) + b'"}',
    ],
)
async def test_a_hostile_app_server_negotiate_is_a_recorded_failure(
    serve: Callable[[dict[tuple[str, str], Handler]], Awaitable[str]], body: bytes
) -> None:
    base = await serve({("POST", "/chat/negotiate"): answer(body)})
    report, steps, seconds = await probe(base + "/chat")
    assert code_of(report.problem) is Cause.APP_NEGOTIATE_FAILED
    assert [s.step for s in steps] == [Step.APP_NEGOTIATE]
    assert seconds < 3
    no_token_in(report)


async def test_an_app_server_that_never_answers_is_bounded_by_the_timeout(
    serve: Callable[[dict[tuple[str, str], Handler]], Awaitable[str]],
) -> None:
    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    base = await serve({("POST", "/chat/negotiate"): hang})
    report, steps, seconds = await probe(base + "/chat", timeout=0.3)
    assert steps[0].error is NetError.TIMEOUT
    assert code_of(report.problem) is Cause.APP_UNREACHABLE
    assert seconds < 2


async def test_a_service_that_never_completes_anything_is_bounded_per_transport(
    serve: Callable[[dict[tuple[str, str], Handler]], Awaitable[str]],
) -> None:
    """The redirect leads to a 'service' that negotiates, then: the WebSocket never answers the handshake, the
    event stream sends headers and nothing else, the first poll returns garbage."""

    async def connect(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for _ in ws:
                pass  # reads the handshake, never answers
            return ws
        if request.headers.get("Accept") == "text/event-stream":
            stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await stream.prepare(request)
            await asyncio.sleep(30)
            return stream
        return web.Response(body=b"\xff\xfe garbage \x1e", content_type="application/octet-stream")

    async def negotiate(_: web.Request) -> web.Response:
        return web.Response(body=service_negotiate_response("cid", "ctoken", 1), content_type="application/json")

    service = await serve(
        {
            ("POST", "/client/negotiate"): negotiate,
            ("GET", "/client/"): connect,
            ("POST", "/client/"): answer(b"", content_type="text/plain"),
            ("OPTIONS", "/client/"): answer(b"", 204),
            ("OPTIONS", "/client/negotiate"): answer(b"", 204),
        }
    )
    redirect = NegotiateRedirect(f"{service}/client/?hub=chat", TOKEN).to_json()
    base = await serve({("POST", "/chat/negotiate"): answer(redirect)})
    report, steps, seconds = await probe(base + "/chat", timeout=0.5)
    rows = {t.transport.value: t for t in report.transports}
    assert {name: row.works for name, row in rows.items()} == dict.fromkeys(rows, Works.NO)
    assert code_of(rows["WebSockets"].problem) is Cause.HANDSHAKE_FAILED
    assert code_of(rows["ServerSentEvents"].problem) is Cause.SSE_BUFFERED
    lp = rows["LongPolling"].problem
    assert lp is not None and lp.code is Cause.HANDSHAKE_FAILED
    assert "unreadable handshake reply" in lp.cause
    assert report.negotiate.token is not None and report.negotiate.token.lifetime_s == 600
    failed = [s for s in steps if s.outcome is Outcome.FAILED]
    assert all(s.transport is not None for s in failed)
    assert seconds < 4
    no_token_in(report)
