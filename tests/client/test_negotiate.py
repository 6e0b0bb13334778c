"""Negotiate and headers, observed where they arrive: redirects, tokens, custom headers on every request of every
transport (a recording proxy in front of the real emulator), and hostile or broken negotiate answers."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from signalr.client import (
    GatewayRouteNotFound,
    HubConnection,
    NegotiateFailed,
    ServerUnreachable,
    SubscriptionKeyRejected,
    TransportChoice,
    TransportFailed,
    Unauthorized,
)
from signalr.connection_string import parse_connection_string
from signalr.negotiate import MAX_REDIRECTS, build_redirect
from tests.client.conftest import ACCESS_KEY, AppServerFactory, ProxyFactory, Stack
from tests.client.inbox import connect
from tests.client.servers import Recorded, serve
from tests.support.processes import free_port

CUSTOM = {"X-Custom-Header": "custom-value", "Ocp-Apim-Subscription-Key": "key-1234567890"}


def _bearer(request: Recorded) -> str | None:
    value = request.headers.get("Authorization")
    return value.removeprefix("Bearer ") if value else None


@pytest.mark.parametrize("choice", list(TransportChoice), ids=lambda c: c.value)
async def test_custom_headers_and_token_reach_every_request_of_every_transport(
    stack: Stack, app_server: AppServerFactory, recording_proxy: ProxyFactory, choice: TransportChoice
) -> None:
    proxy, proxy_url = await recording_proxy(stack.emulator_url)
    server, hub = await app_server(proxy_url)
    connection, inbox = connect(f"{hub}?tenant=blue", transport=choice, headers=CUSTOM, access_token="user-token")
    await connection.start()
    try:
        await connection.send("echo", "h", "headers")
        assert await inbox.next() == ("echo", ("h", "headers (echo from server)"))
    finally:
        await connection.stop()

    # 1. The app server: the user's token and the custom headers; the original query kept, negotiateVersion added.
    [first] = server.requests
    assert (first.method, first.path, first.query) == ("POST", "/chat/negotiate", "tenant=blue&negotiateVersion=1")
    assert _bearer(first) == "user-token"
    assert all(first.headers.get(k) == v for k, v in CUSTOM.items())

    # 2. Everything after the redirect went to the client endpoint (the proxy), with the redirect's token.
    service_token = _bearer(proxy.requests[0])
    assert service_token and service_token != "user-token" and service_token.startswith("eyJ")
    negotiate, *rest = proxy.requests
    assert (negotiate.method, negotiate.path) == ("POST", "/client/negotiate")
    # The redirect URL's query, byte for byte, with one negotiateVersion (trap 5, trap 7).
    assert negotiate.query.startswith("hub=chat&asrs.op=%2Fchat&tenant=blue&negotiateVersion=1&asrs_request_id=")
    assert negotiate.query.count("negotiateVersion") == 1
    assert rest, "no transport request reached the service"
    for request in proxy.requests:
        assert all(request.headers.get(k) == v for k, v in CUSTOM.items()), (request.method, request.query)
        assert _bearer(request) == service_token, (request.method, request.query)
        assert request.headers.get("X-SignalR-User-Agent", "").startswith("signalr-apim-chat/")
    for request in rest:
        assert request.path == "/client/" and "&id=" in f"&{request.query}"
        is_sse_get = request.method == "GET" and request.headers.get("Accept") == "text/event-stream"
        # access_token in the query only where a browser's EventSource must put it (trap 13).
        assert ("access_token" in request.query_keys) is is_sse_get, (request.method, request.query)
        is_poll = request.method == "GET" and not is_sse_get and "Upgrade" not in request.headers
        assert ("_" in request.query_keys) is is_poll, (request.method, request.query)
    methods = {(r.method, r.headers.get("Upgrade")) for r in rest}
    expected = {
        TransportChoice.WEBSOCKETS: {("GET", "websocket")},
        TransportChoice.SERVER_SENT_EVENTS: {("GET", None), ("POST", None)},
        TransportChoice.SSE_THEN_LONG_POLLING: {("GET", None), ("POST", None)},
        TransportChoice.LONG_POLLING: {("GET", None), ("POST", None), ("DELETE", None)},
    }[choice]
    assert methods == expected


async def test_redirect_chain_carries_each_hops_token_and_the_custom_headers(stack: Stack) -> None:
    """app server → second app server (needs the first token) → the real emulator."""
    seen: list[Recorded] = []
    service = parse_connection_string(stack.connection_string)

    async def second(request: web.Request) -> web.Response:
        seen.append(Recorded.of(request))
        if request.headers.get("Authorization") != "Bearer hop-1-token":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        redirect = build_redirect(service, "chat", request_path="/chat/negotiate")
        return web.Response(body=redirect.to_json(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/hop2/negotiate", second)
    async with serve(app) as hop2:

        async def first(request: web.Request) -> web.Response:
            seen.append(Recorded.of(request))
            return web.json_response({"url": f"{hop2}/hop2?from=hop1", "accessToken": "hop-1-token"})

        app1 = web.Application()
        app1.router.add_post("/chat/negotiate", first)
        async with serve(app1) as hop1:
            connection, inbox = connect(f"{hop1}/chat", headers=CUSTOM)
            await connection.start()
            try:
                await connection.send("echo", "r", "redirected twice")
                assert await inbox.next() == ("echo", ("r", "redirected twice (echo from server)"))
            finally:
                await connection.stop()
    assert [(r.path, r.query) for r in seen] == [
        ("/chat/negotiate", "negotiateVersion=1"),
        ("/hop2/negotiate", "from=hop1&negotiateVersion=1"),
    ]
    assert "Authorization" not in seen[0].headers
    assert seen[1].headers["Authorization"] == "Bearer hop-1-token"
    assert all(r.headers.get(k) == v for r in seen for k, v in CUSTOM.items())
    redirects = [e for e in inbox.trace if e.kind == "redirect"]
    assert [e.url.split("?")[0] for e in redirects] == [f"{hop2}/hop2", f"{stack.emulator_url}/client/"]


async def test_endless_redirects_stop_at_the_limit() -> None:
    count = 0

    async def loop(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        return web.json_response({"url": f"http://{request.host}/chat", "accessToken": f"t{count}"})

    app = web.Application()
    app.router.add_post("/chat/negotiate", loop)
    async with serve(app) as url:
        connection, _ = connect(f"{url}/chat")
        with pytest.raises(NegotiateFailed, match=r"^Negotiate redirection limit exceeded\.$"):
            await connection.start()
    assert count == MAX_REDIRECTS


def _answer(status: int, body: bytes, content_type: str = "application/json", **headers: str) -> web.Application:
    async def negotiate(_: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type, headers=headers)

    app = web.Application()
    app.router.add_post("/chat/negotiate", negotiate)
    return app


HOSTILE: list[tuple[str, web.Application, type[Exception], str]] = [
    ("500", _answer(500, b"Unable to get the negotiate endpoint", "text/plain"), NegotiateFailed,
     "Unexpected status code returned from negotiate '500'"),
    ("not-json", _answer(200, b"<html>hello</html>", "text/html"), NegotiateFailed,
     "Negotiate response is not valid JSON."),
    ("not-object", _answer(200, b"[1,2,3]"), NegotiateFailed, "Negotiate response is not a JSON object."),
    ("error-field", _answer(200, b'{"error":"The hub is full."}'), NegotiateFailed, "The hub is full."),
    ("aspnet-signalr", _answer(200, b'{"ProtocolVersion":"1.5"}'), NegotiateFailed,
     "Detected a connection attempt to an ASP.NET SignalR Server."),
    ("no-connection-id", _answer(200, b'{"negotiateVersion":1}'), NegotiateFailed,
     "Negotiate response has no connectionId."),
    ("oversized", _answer(200, b'{"pad":"' + b"x" * (2 * 1024 * 1024) + b'"}'), NegotiateFailed,
     "response body larger than 1048576 bytes"),
    ("deeply-nested", _answer(200, b"[" * 100_000 + b"]" * 100_000), NegotiateFailed,
     "Negotiate response is not valid JSON."),
    ("apim-404", _answer(404, b'{ "statusCode": 404, "message": "Resource not found" }'), GatewayRouteNotFound,
     "has no API for POST /chat/negotiate (APIM answered 404 Resource not found)"),
    ("apim-401", _answer(401, b'{ "statusCode": 401, "message": "Access denied due to invalid subscription key. '
     b'Make sure to provide a valid key for an active subscription." }'), SubscriptionKeyRejected,
     "missing or invalid subscription key"),
    ("service-401", _answer(401, b"", "text/plain", **{"WWW-Authenticate": 'Bearer error="invalid_token", '
     'error_description="The token is expired"'}), Unauthorized, "(The token is expired)"),
    ("redirect-not-http", _answer(200, b'{"url":"javascript:alert(1)","accessToken":"t"}'), NegotiateFailed,
     "is not an http(s) URL: 'javascript:alert(1)'"),
    ("redirect-bad-port", _answer(200, b'{"url":"http://127.0.0.1:99999/client/","accessToken":"t"}'),
     NegotiateFailed, "is not an http(s) URL"),
    ("only-longpolling", _answer(200, json.dumps({"negotiateVersion": 1, "connectionId": "c", "connectionToken": "t",
     "availableTransports": [{"transport": "LongPolling", "transferFormats": ["Text"]}]}).encode()), TransportFailed,
     "does not offer WebSockets (it offers LongPolling)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "app", "error", "text"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_broken_or_hostile_negotiate_answers_fail_start_with_a_clear_error(
    name: str, app: web.Application, error: type[Exception], text: str
) -> None:
    async with serve(app) as url:
        connection, inbox = connect(f"{url}/chat")
        with pytest.raises(error) as caught:
            await connection.start()
    assert text in str(caught.value)
    assert connection.state.value == "Disconnected"
    assert inbox.trace and inbox.trace[-1].kind == "error"


async def test_refused_connection_names_the_host_and_port() -> None:
    port = free_port()
    connection, _ = connect(f"http://127.0.0.1:{port}/chat")
    with pytest.raises(ServerUnreachable) as caught:
        await connection.start()
    assert str(caught.value) == (
        f"cannot reach 127.0.0.1:{port} (connection refused) — is the server running and is the URL right?"
    )


async def test_refused_connection_after_the_redirect_names_the_service(app_server: AppServerFactory) -> None:
    port = free_port()
    _, hub = await app_server(f"http://127.0.0.1:{port}")  # ClientEndpoint where nothing listens
    connection, _ = connect(hub)
    with pytest.raises(ServerUnreachable, match=f"cannot reach 127.0.0.1:{port} "):
        await connection.start()


@pytest.mark.parametrize(
    ("key", "lifetime", "reason"),
    [
        ("not-the-service-key-0123456789abcdef", 3600, "The signature is invalid"),
        (ACCESS_KEY, -60, "The token is expired"),
    ],
    ids=["wrong-key", "expired"],
)
async def test_tokens_the_service_refuses_are_unauthorized(stack: Stack, key: str, lifetime: int, reason: str) -> None:
    """An app server with a stale AccessKey, or one issuing expired tokens: the service's 401 explains it."""
    issuer = parse_connection_string(stack.connection_string.replace(ACCESS_KEY, key))

    async def negotiate(_: web.Request) -> web.Response:
        redirect = build_redirect(issuer, "chat", request_path="/chat/negotiate", lifetime=lifetime)
        return web.Response(body=redirect.to_json(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/chat/negotiate", negotiate)
    async with serve(app) as url:
        connection, inbox = connect(f"{url}/chat")
        with pytest.raises(Unauthorized) as caught:
            await connection.start()
    host = stack.emulator_url.removeprefix("http://")
    assert str(caught.value).startswith(f"Negotiate was rejected with 401 Unauthorized by {host} ({reason})")
    assert "eyJ" not in str(caught.value) and "eyJ" not in repr(inbox.trace)


@pytest.mark.parametrize(
    ("url", "options"),
    [("localhost:5000/chat", {}), ("ws://127.0.0.1/chat", {}), ("http://127.0.0.1:99999/chat", {}),
     ("http://:5000/chat", {}), ("http://127.0.0.1/chat", {"reconnect_delays": (0, -1)}),
     ("http://127.0.0.1/chat", {"server_timeout": 0}), ("http://127.0.0.1/chat", {"handshake_timeout": -1})],
    ids=["no-scheme", "ws-scheme", "bad-port", "no-host", "negative-delay", "zero-timeout", "negative-handshake"],
)  # fmt: skip
def test_unusable_arguments_are_refused_at_construction(url: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"hub URL must be|must not be negative|must be positive"):
        HubConnection(url, **options)  # type: ignore[arg-type]
