"""`apim-gateway` as a process in front of a backend: HTTP routing, forwarding, buffering, keys, logs."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.gateway.conftest import PRIMARY_KEY, READY, SECONDARY_KEY, Backend, Gateway

QUERY = "hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id=AbC%3D"
NOT_FOUND = b'{ "statusCode": 404, "message": "Resource not found" }'
MISSING_KEY = (
    b'{ "statusCode": 401, "message": "Access denied due to missing subscription key. '
    b'Make sure to include subscription key when making requests to an API." }'
)
INVALID_KEY = (
    b'{ "statusCode": 401, "message": "Access denied due to invalid subscription key. '
    b'Make sure to provide a valid key for an active subscription." }'
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def url(gateway: Gateway, path_and_query: str) -> URL:
    """A URL whose query is sent exactly as written (never re-encoded)."""
    return URL(gateway.url + path_and_query, encoded=True)


async def request(
    session: aiohttp.ClientSession, method: str, target: URL, **kwargs: Any
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with session.request(method, target, **kwargs) as response:
        return response, await response.read()


def assert_not_found(response: aiohttp.ClientResponse, body: bytes) -> None:
    assert (response.status, response.reason) == (404, "Not Found")
    assert body == NOT_FOUND
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Length"] == "54"
    assert "Allow" not in response.headers


def test_ready_line(ws_gateway: Gateway, sse_gateway: Gateway, backend: Backend) -> None:
    for gateway, profile in ((ws_gateway, "websocket"), (sse_gateway, "sse-lp")):
        match = READY.match(gateway.ready_line)
        assert match is not None and match.group(3) == profile and match.group(4) == backend.url
        assert int(match.group(2)) > 0


# -- websocket profile: negotiate works, SSE/LP requests to /client/ get APIM's 404 --------------


async def test_websocket_profile_negotiate(ws_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession) -> None:
    response, body = await request(
        http,
        "POST",
        url(ws_gateway, f"/client/negotiate?{QUERY}"),
        headers={"Authorization": "Bearer t0k3n", "X-SignalR-User-Agent": "Microsoft SignalR/8.0 (test)"},
    )
    assert response.status == 200
    seen = json.loads(body)
    assert seen["path"] == "/client/negotiate/"  # service URL client/negotiate/ + remainder "/"
    assert seen["query"] == QUERY  # byte for byte: %2F and %3D untouched
    assert seen["host"] == backend.authority
    assert seen["headers"]["authorization"] == ["Bearer t0k3n"]
    assert seen["headers"]["x-signalr-user-agent"] == ["Microsoft SignalR/8.0 (test)"]
    assert response.headers["X-Backend"] == "test-backend"
    assert response.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


async def test_websocket_profile_preflight(ws_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    response, body = await request(
        http, "OPTIONS", url(ws_gateway, f"/client/negotiate?{QUERY}"), headers={"Origin": "http://page"}
    )
    assert response.status == 200 and json.loads(body)["preflight"]
    assert response.headers["Access-Control-Allow-Origin"] == "http://page"  # CORS comes from the backend


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", f"/client/?{QUERY}&id=t1", {"Accept": "text/event-stream"}),  # SSE stream
        ("GET", f"/client/?{QUERY}&id=t1&_=1700000000000", {}),  # LP poll
        ("POST", f"/client/?{QUERY}&id=t1", {}),  # SSE/LP send
        ("OPTIONS", f"/client/?{QUERY}&id=t1", {}),
        ("DELETE", f"/client/?{QUERY}&id=t1", {}),
        ("GET", "/client/negotiate", {}),
        ("GET", "/", {}),
        ("GET", "/other", {}),
        ("GET", "/clientx/", {}),
    ],
)
async def test_websocket_profile_404s(
    ws_gateway: Gateway, http: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str]
) -> None:
    response, body = await request(http, method, url(ws_gateway, path), headers=headers)
    assert_not_found(response, body)


# -- sse-lp profile: negotiate, SSE and LongPolling work; the upgrade is refused --------------------


async def test_sse_lp_negotiate_and_preflights(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    response, body = await request(http, "POST", url(sse_gateway, f"/client/negotiate?{QUERY}"))
    assert response.status == 200
    seen = json.loads(body)
    assert (seen["path"], seen["query"]) == ("/client/negotiate", QUERY)
    for path in ("/client/negotiate", "/client/"):
        response, body = await request(http, "OPTIONS", url(sse_gateway, f"{path}?{QUERY}"))
        assert response.status == 200 and json.loads(body)["preflight"]


async def test_sse_events_arrive_promptly(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    async with asyncio.timeout(1.0):
        async with http.get(
            url(sse_gateway, f"/client/?{QUERY}&id=t1&access_token=sse-token"),
            headers={"Accept": "text/event-stream"},
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["Content-Encoding"] == "identity"  # not decompressed, not recompressed
            first = await response.content.readuntil(b"\r\n")
            assert first == b":\r\n"
            event = await response.content.readuntil(b"\r\n\r\n")
            assert event == b"data: event 0\r\n\r\n"
    assert time.monotonic() - started < 1.0


async def test_sse_stalls_without_the_policy(buffered_gateway: Gateway) -> None:
    """APIM buffers 8 KB by default: a live SSE stream shows nothing, not even within 2 s."""
    received = bytearray()

    async def read(http: aiohttp.ClientSession) -> None:
        async with http.get(
            url(buffered_gateway, f"/client/?{QUERY}&id=t1"), headers={"Accept": "text/event-stream"}
        ) as response:
            async for chunk in response.content.iter_any():
                received.extend(chunk)

    async with aiohttp.ClientSession() as http:  # closing it drops the connection
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.0):
                await read(http)
    assert bytes(received) == b""
    text = buffered_gateway.wait_for_log("client went away")
    assert re.search(r"GET /client/\?\S+ -> signalr/connect-get 200 \(client went away after 0 bytes; buffered", text)


async def test_buffered_response_is_flushed_at_end_of_stream(
    buffered_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    async with http.get(
        url(buffered_gateway, f"/client/?{QUERY}&id=t1&events=3"), headers={"Accept": "text/event-stream"}
    ) as response:
        chunks = [chunk async for chunk in response.content.iter_any()]
    body = b"".join(chunks)
    assert body == b":\r\n" + b"".join(f"data: event {n}\r\n\r\n".encode() for n in range(3))
    assert time.monotonic() - started >= 0.5  # nothing came before the backend finished


async def test_client_going_away_ends_the_backend_stream(
    sse_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    async def open_streams() -> int:
        async with http.get(backend.url + "/stats") as response:
            return int((await response.json())["open_sse"])

    before = await open_streams()
    async with http.get(url(sse_gateway, f"/client/?{QUERY}&id=t1"), headers={"Accept": "text/event-stream"}) as r:
        await r.content.readuntil(b"data: event 0\r\n\r\n")
        assert await open_streams() == before + 1
        r.close()
    deadline = time.monotonic() + 5
    while await open_streams() != before:
        assert time.monotonic() < deadline, "the backend stream stayed open"
        await asyncio.sleep(0.05)


async def test_longpolling(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    # the connection token is not encoded by the JS client; odd bytes must survive untouched
    poll = f"/client/?{QUERY}&id=Ab+c/d%20e~f&_=1700000000000&empty=&flag"
    response, body = await request(http, "GET", url(sse_gateway, poll), headers={"Authorization": "Bearer lp"})
    assert response.status == 200
    seen = json.loads(body)
    assert seen["poll"] and seen["query"] == poll.split("?", 1)[1] and seen["path"] == "/client/"
    record = '{"type":1,"target":"broadcastMessage","arguments":["a","b"]}\x1e'
    response, body = await request(
        http,
        "POST",
        url(sse_gateway, f"/client/?{QUERY}&id=t1"),
        data=record.encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert response.status == 200
    seen = json.loads(body)
    assert seen["send"] and seen["body"] == record
    assert seen["headers"]["content-type"] == ["text/plain;charset=UTF-8"]


async def test_longpolling_delete_gap_and_opt_in(
    sse_gateway: Gateway, keyed_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    response, body = await request(http, "DELETE", url(sse_gateway, f"/client/?{QUERY}&id=t1"))
    assert_not_found(response, body)  # the seed doc's gap, reproduced
    response, body = await request(
        http,
        "DELETE",
        url(keyed_gateway, f"/client/?{QUERY}&id=t1"),
        headers={"Ocp-Apim-Subscription-Key": PRIMARY_KEY},
    )
    assert response.status == 202  # --with-delete


async def test_backend_statuses_pass_through(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    response, body = await request(http, "GET", url(sse_gateway, f"/client/?{QUERY}&id=gone&status=404"))
    assert (response.status, body) == (404, b"No Connection with that ID")
    assert response.headers["Content-Type"].startswith("text/plain")


async def test_upgrade_to_the_http_api_is_a_plain_get(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(url(sse_gateway, f"/client/?{QUERY}&id=t1"))
    assert info.value.status == 200  # the backend's LongPolling answer, never 101
    response, body = await request(
        http,
        "GET",
        url(sse_gateway, f"/client/?{QUERY}&id=t1"),
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    assert response.status == 200
    seen = json.loads(body)
    assert seen["poll"]
    for header in ("upgrade", "sec-websocket-key", "sec-websocket-version"):
        assert header not in seen["headers"]
    assert seen["headers"].get("connection", ["keep-alive"]) != ["Upgrade"]


async def test_hop_by_hop_headers_are_dropped(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    response, body = await request(
        http,
        "POST",
        url(sse_gateway, f"/client/?{QUERY}&id=t1"),
        data=b"x",
        headers={"Connection": "keep-alive, X-Hop", "X-Hop": "1", "TE": "trailers", "X-End-To-End": "kept"},
    )
    seen = json.loads(body)
    assert "x-hop" not in seen["headers"] and "te" not in seen["headers"]
    assert seen["headers"]["x-end-to-end"] == ["kept"]
    assert "Transfer-Encoding" not in response.headers or response.headers["Transfer-Encoding"] == "chunked"


async def test_forward_timeout_gives_apim_500(timeout_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    response, body = await request(http, "GET", url(timeout_gateway, f"/client/?{QUERY}&id=t1&hold=3"))
    assert response.status == 500
    assert re.fullmatch(
        rb'\{ "statusCode": 500, "message": "Internal server error", "activityId": "[0-9a-f-]{36}" \}', body
    )
    assert response.headers["Content-Type"] == "application/json"
    # the custom config's other operation is untouched
    response, _ = await request(http, "POST", url(timeout_gateway, f"/client/negotiate?{QUERY}"))
    assert response.status == 200
    text = timeout_gateway.wait_for_log("within 1 s")
    assert "profile sse-lp-short-timeout" in timeout_gateway.ready_line
    assert "Internal server error: no response headers from the backend within 1 s" in text


# -- subscription keys ---------------------------------------------------------------------------


async def test_subscription_key_missing(keyed_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    response, body = await request(http, "POST", url(keyed_gateway, f"/client/negotiate?{QUERY}"))
    assert (response.status, response.reason) == (401, "Access Denied")
    assert body == MISSING_KEY and response.headers["Content-Length"] == "152"
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["WWW-Authenticate"] == (
        f'AzureApiManagementKey realm="{keyed_gateway.url}/client",name="Ocp-Apim-Subscription-Key",type="header"'
    )


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"Ocp-Apim-Subscription-Key": "wrong-key-1"}, ""),
        ({}, "&subscription-key=wrong-key-2"),
        # a present header wins even when the query holds a valid key
        ({"Ocp-Apim-Subscription-Key": "wrong-key-3"}, f"&subscription-key={PRIMARY_KEY}"),
    ],
)
async def test_subscription_key_invalid(
    keyed_gateway: Gateway, http: aiohttp.ClientSession, headers: dict[str, str], query: str
) -> None:
    response, body = await request(
        http, "POST", url(keyed_gateway, f"/client/negotiate?{QUERY}{query}"), headers=headers
    )
    assert (response.status, response.reason) == (401, "Access Denied")
    assert body == INVALID_KEY and response.headers["Content-Length"] == "143"
    assert response.headers["WWW-Authenticate"].startswith('AzureApiManagementKey realm="http://127.0.0.1:')


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"Ocp-Apim-Subscription-Key": PRIMARY_KEY}, ""),
        ({"ocp-apim-subscription-key": SECONDARY_KEY}, ""),
        ({}, f"&subscription-key={PRIMARY_KEY}"),
        ({"Ocp-Apim-Subscription-Key": ""}, f"&subscription-key={SECONDARY_KEY}"),
    ],
)
async def test_subscription_key_valid_is_forwarded(
    keyed_gateway: Gateway, http: aiohttp.ClientSession, headers: dict[str, str], query: str
) -> None:
    target = f"/client/negotiate?{QUERY}{query}"
    response, body = await request(http, "POST", url(keyed_gateway, target), headers=headers)
    assert response.status == 200
    seen = json.loads(body)
    assert seen["query"] == target.split("?", 1)[1]  # the key is passed to the backend, as APIM does
    if headers.get("Ocp-Apim-Subscription-Key") or headers.get("ocp-apim-subscription-key"):
        assert seen["headers"]["ocp-apim-subscription-key"] == [next(iter(headers.values()))]


async def test_unknown_route_is_404_with_or_without_a_key(keyed_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for headers in ({}, {"Ocp-Apim-Subscription-Key": PRIMARY_KEY}):
        response, body = await request(http, "PUT", url(keyed_gateway, "/client/"), headers=headers)
        assert_not_found(response, body)


async def test_keys_are_ignored_when_no_subscription_is_required(
    sse_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    response, _ = await request(
        http,
        "POST",
        url(sse_gateway, f"/client/negotiate?{QUERY}&subscription-key=anything"),
        headers={"Ocp-Apim-Subscription-Key": "whatever"},
    )
    assert response.status == 200


# -- the access log ------------------------------------------------------------------------------


async def test_access_log_names_the_outcome_and_redacts_secrets(
    keyed_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    secrets = {
        "token": "eyJhbGciOiJIUzI1NiJ9.eyJzZWNyZXQiOiJ5ZXMifQ.c2VjcmV0LXNpZw",
        "query_token": "query-access-token-value-77",
        "header_key": "wrong-header-key-value-55",
        "query_key": "wrong-query-key-value-66",
    }
    await request(
        http,
        "POST",
        url(keyed_gateway, f"/client/negotiate?{QUERY}&access_token={secrets['query_token']}"),
        headers={"Authorization": f"Bearer {secrets['token']}", "Ocp-Apim-Subscription-Key": PRIMARY_KEY},
    )
    await request(
        http,
        "POST",
        url(keyed_gateway, f"/client/?{QUERY}&id=t1"),
        headers={"Ocp-Apim-Subscription-Key": secrets["header_key"]},
    )
    await request(http, "GET", url(keyed_gateway, f"/client/?{QUERY}&subscription-key={secrets['query_key']}&_=1"))
    await request(http, "GET", url(keyed_gateway, "/nowhere"))
    text = keyed_gateway.wait_for_log("GET /nowhere")
    for secret in (*secrets.values(), PRIMARY_KEY, SECONDARY_KEY):
        assert secret not in text
    lines = text.splitlines()

    def line_for(fragment: str) -> str:
        return [line for line in lines if fragment in line][-1]

    ok = line_for("access_token=")
    assert "access_token=***" in ok and "-> signalr/negotiate 200" in ok and " ms" in ok
    assert "asrs.op=%2Fchat" in ok  # the rest of the query is kept as received
    denied = line_for("POST /client/?")  # the last one is this test's
    assert (
        "-> signalr/connect 401 (Access Denied: invalid subscription key in header Ocp-Apim-Subscription-Key)" in denied
    )
    query_denied = line_for("&_=1 ->")
    assert (
        "subscription-key=***" in query_denied and "invalid subscription key in query subscription-key" in query_denied
    )
    missing = line_for("GET /nowhere")
    assert "-> no API 404 (Resource not found: no API suffix matches the path)" in missing


async def test_chunked_request_body_is_streamed_through(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async def body() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f'{{"type":6,"n":{n}}}\x1e'.encode()
            await asyncio.sleep(0.01)

    response, raw = await request(http, "POST", url(sse_gateway, f"/client/?{QUERY}&id=t1"), data=body())
    assert response.status == 200
    seen = json.loads(raw)
    assert seen["body"] == "".join(f'{{"type":6,"n":{n}}}\x1e' for n in range(3))
    assert seen["headers"]["transfer-encoding"] == ["chunked"]
