"""`apim-gateway` under hostile or broken peers: WebSocket message size limit, teardown of both halves of a relay or
stream, secrets in logs and CLI errors, repeated subscription keys, the key not forwarded on request."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from tests.gateway.conftest import PRIMARY_KEY, SECONDARY_KEY, Backend, Gateway, start_gateway
from tests.support.processes import Process, script

QUERY = "hub=chat&asrs.op=%2Fchat&negotiateVersion=1"
INVALID_KEY = (
    b'{ "statusCode": 401, "message": "Access denied due to invalid subscription key. '
    b'Make sure to provide a valid key for an active subscription." }'
)
TCP_ESTABLISHED = 1


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture(scope="module")
def small_ws_gateway(backend: Backend) -> Iterator[Gateway]:
    """`websocket` with a 64 KiB message limit."""
    gateway = start_gateway(backend.url, "--profile", "websocket", "--max-ws-message", "65536")
    yield gateway
    gateway.stop()


def url(gateway: Gateway, path_and_query: str) -> URL:
    return URL(gateway.url + path_and_query, encoded=True)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def backend_stats(http: aiohttp.ClientSession, backend: Backend) -> dict[str, object]:
    async with http.get(backend.url + "/stats") as response:
        return dict(await response.json())


async def wait_for_close(http: aiohttp.ClientSession, backend: Backend, expected: list[object]) -> None:
    deadline = time.monotonic() + 5
    while True:
        last = (await backend_stats(http, backend))["last_client_close"]
        if last == expected:
            return
        assert time.monotonic() < deadline, last
        await asyncio.sleep(0.05)


# -- 1. WebSocket message size ---------------------------------------------------------------------------------------


async def test_oversized_client_message_closes_the_client_with_1009(
    small_ws_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(url(small_ws_gateway, f"/client/?{QUERY}"), max_msg_size=0) as ws:
        await asyncio.wait_for(ws.receive(), 5)  # the backend's handshake description
        await ws.send_bytes(b"a" * 65536)  # exactly the limit: relayed
        echo = await asyncio.wait_for(ws.receive(), 5)
        assert echo.type is aiohttp.WSMsgType.BINARY and len(echo.data) == 65536
        await ws.send_bytes(b"z" * 65537)
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1009), msg
    await wait_for_close(http, backend, [1001, "client message too big"])  # the backend never got it
    text = small_ws_gateway.wait_for_log("over the size limit")
    assert "client sent a message over the size limit: closed with 1009, the other side with 1001" in text


async def test_a_huge_message_is_never_buffered(
    small_ws_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    pid = small_ws_gateway.process.popen.pid
    before = rss_bytes(pid)
    async with http.ws_connect(url(small_ws_gateway, f"/client/?{QUERY}"), max_msg_size=0) as ws:
        await asyncio.wait_for(ws.receive(), 5)

        async def send() -> None:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.send_bytes(b"z" * (64 * 1024 * 1024))

        sending = asyncio.create_task(send())
        async with asyncio.timeout(10):
            while (msg := await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                assert msg.type is not aiohttp.WSMsgType.BINARY, "the 64 MiB message came back"
        await asyncio.wait_for(sending, 10)
    after = rss_bytes(pid)
    assert after - before < 16 * 1024 * 1024, (before, after)  # a 64 MiB message costs the gateway nothing like it
    await wait_for_close(http, backend, [1001, "client message too big"])


async def test_oversized_backend_message_closes_the_backend_with_1009(
    small_ws_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(url(small_ws_gateway, f"/client/?{QUERY}"), max_msg_size=0) as ws:
        await asyncio.wait_for(ws.receive(), 5)
        await ws.send_str("big:65537")
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (1011, "backend message too big")
    text = small_ws_gateway.wait_for_log("backend sent a message over the size limit")
    assert "closed with 1009, the other side with 1011" in text


async def test_default_limit_is_one_mebibyte(ws_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(url(ws_gateway, f"/client/?{QUERY}"), max_msg_size=0) as ws:
        await asyncio.wait_for(ws.receive(), 5)
        await ws.send_bytes(b"m" * (1024 * 1024))
        echo = await asyncio.wait_for(ws.receive(), 5)
        assert len(echo.data) == 1024 * 1024
        await ws.send_bytes(b"m" * (1024 * 1024 + 1))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1009)


def test_max_ws_message_flag_is_checked() -> None:
    process = Process([script("apim-gateway"), "--backend", "http://127.0.0.1:9", "--max-ws-message", "-1"])
    try:
        assert process.popen.wait(timeout=30) == 2
        assert "--max-ws-message" in process.stderr()
    finally:
        process.stop()


# -- 2. teardown of both halves --------------------------------------------------------------------------------------


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def connect_raw(gateway: Gateway, request: bytes, rcvbuf: int | None = None) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect((host, int(port)))
    sock.sendall(request)
    return sock


def raw_websocket(gateway: Gateway, rcvbuf: int | None = None) -> socket.socket:
    """A WebSocket client that reads nothing after the 101 and never answers a close frame."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /client/?{QUERY} HTTP/1.1\r\nHost: {gateway.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    sock = connect_raw(gateway, request, rcvbuf)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def send_text(sock: socket.socket, text: str) -> None:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)


def seconds_until_closed(sock: socket.socket, limit: float = 6.0) -> float:
    """How long until the gateway ends this connection (FIN or reset), without reading from it."""
    start = time.monotonic()
    while tcp_state(sock) == TCP_ESTABLISHED:
        if time.monotonic() - start > limit:
            return float("inf")
        time.sleep(0.02)
    return time.monotonic() - start


async def wait_for_resets(http: aiohttp.ClientSession, backend: Backend, count: int) -> None:
    deadline = time.monotonic() + 10
    while (await backend_stats(http, backend))["resets"] != count:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_backend_close_ends_the_client_side_within_a_second_when_the_client_does_not_answer(
    ws_gateway: Gateway,
) -> None:
    sock = raw_websocket(ws_gateway)
    try:
        send_text(sock, "close:4001:bye")
        elapsed = await asyncio.to_thread(seconds_until_closed, sock)
    finally:
        sock.close()
    assert elapsed < 2.0, elapsed  # a closing handshake gets one second, not aiohttp's ten


async def test_backend_reset_ends_a_relay_blocked_on_a_stalled_client(
    ws_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    resets = int(str((await backend_stats(http, backend))["resets"]))
    sock = raw_websocket(ws_gateway, rcvbuf=4096)
    try:
        send_text(sock, "flood")
        await wait_for_resets(http, backend, resets + 1)
        elapsed = await asyncio.to_thread(seconds_until_closed, sock)
    finally:
        sock.close()
    assert elapsed < 2.0, elapsed
    text = ws_gateway.wait_for_log("backend connection ended while the other side was not reading")
    assert "closed with 1001" in text


async def test_backend_reset_ends_an_sse_stream_blocked_on_a_stalled_client(
    sse_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    resets = int(str((await backend_stats(http, backend))["resets"]))
    request = (
        f"GET /client/?{QUERY}&id=stall-1&flood=1 HTTP/1.1\r\nHost: {sse_gateway.host}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    sock = connect_raw(sse_gateway, request, rcvbuf=4096)
    try:
        await wait_for_resets(http, backend, resets + 1)
        elapsed = await asyncio.to_thread(seconds_until_closed, sock)
    finally:
        sock.close()
    assert elapsed < 2.0, elapsed
    assert "backend ended while the client was not reading" in sse_gateway.wait_for_log("not reading")


# -- 3. secrets ------------------------------------------------------------------------------------------------------

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwbGFudGVkLXVzZXIifQ.c2lnbmF0dXJlLXBsYW50ZWQ"
CONNECTION_TOKEN = "planted-connection-token-7f3a"


async def test_no_secret_reaches_any_log_line(backend: Backend, http: aiohttp.ClientSession) -> None:
    gateway = start_gateway(backend.url, "--profile", "sse-lp", "--subscription-key", PRIMARY_KEY)
    try:
        secrets_query = f"{QUERY}&id={CONNECTION_TOKEN}&access_token={JWT}"
        targets = [
            ("POST", f"/client/negotiate?{QUERY}&subscription-key={PRIMARY_KEY}", {}),
            ("GET", f"/client/?{secrets_query}", {"Ocp-Apim-Subscription-Key": PRIMARY_KEY}),
            ("POST", f"/client/?{secrets_query}", {"Ocp-Apim-Subscription-Key": PRIMARY_KEY}),
            ("DELETE", f"/client/?{secrets_query}", {"Ocp-Apim-Subscription-Key": PRIMARY_KEY}),  # 404
            ("GET", f"/client/{JWT[:20]}/x?{secrets_query}", {"Ocp-Apim-Subscription-Key": PRIMARY_KEY}),
            ("GET", f"/{JWT}?id={CONNECTION_TOKEN}", {}),  # no API
            ("GET", f"/client/?{secrets_query}", {"Ocp-Apim-Subscription-Key": "wrong-" + PRIMARY_KEY}),  # 401
            ("GET", f"/client/?{secrets_query}", {"Authorization": f"Bearer {JWT}"}),
        ]
        for method, target, headers in targets:
            async with http.request(method, url(gateway, target), headers=headers) as response:
                await response.read()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # access lines are written after the response
            if gateway.stderr().count("gateway.access") >= len(targets):
                break
            await asyncio.sleep(0.05)
    finally:
        gateway.stop()
    log = gateway.stderr()
    assert log.count("gateway.access") >= len(targets)
    for secret in (JWT, JWT[:12], "eyJhbGci", PRIMARY_KEY, CONNECTION_TOKEN):
        assert secret not in log, secret
    assert "id=~" in log  # connection tokens are shown as their hash tag


@pytest.mark.parametrize(
    "args",
    [
        ["--subscription-key", "cli-secret-key-0001", "--backend", "cli-secret-key-0001"],
        [f"--subscription-key={PRIMARY_KEY}", "--backend", f"http://127.0.0.1:9/?access_token={JWT}"],
        ["--backend", f"{JWT}", "--port", "1"],
        [
            "--backend",
            "http://127.0.0.1:9",
            "--subscription-key",
            "cli-secret-key-0002",
            "--port",
            "cli-secret-key-0002",
        ],
    ],
)
def test_cli_errors_never_echo_a_secret(args: list[str]) -> None:
    process = Process([script("apim-gateway"), *args])
    try:
        assert process.popen.wait(timeout=30) == 2
        err = process.stderr()
    finally:
        process.stop()
    assert err.startswith("apim-gateway: error: ")
    for secret in ("cli-secret-key-0001", "cli-secret-key-0002", PRIMARY_KEY, JWT, "eyJhbGci"):
        assert secret not in err, err


async def test_strip_subscription_key_is_not_forwarded(backend: Backend, http: aiohttp.ClientSession) -> None:
    gateway = start_gateway(
        backend.url, "--profile", "sse-lp", "--subscription-key", PRIMARY_KEY, "--strip-subscription-key"
    )
    try:
        target = url(gateway, f"/client/negotiate?{QUERY}&subscription-key={PRIMARY_KEY}&x=1")
        async with http.post(target) as response:
            assert response.status == 200
            seen = json.loads(await response.read())
        assert seen["query"] == f"{QUERY}&x=1"
        async with http.post(
            url(gateway, f"/client/negotiate?{QUERY}"), headers={"Ocp-Apim-Subscription-Key": PRIMARY_KEY}
        ) as response:
            seen = json.loads(await response.read())
        assert "ocp-apim-subscription-key" not in seen["headers"]
        assert seen["query"] == QUERY
    finally:
        gateway.stop()


async def test_strip_subscription_key_on_a_websocket_handshake(backend: Backend, http: aiohttp.ClientSession) -> None:
    gateway = start_gateway(
        backend.url, "--profile", "websocket", "--subscription-key", PRIMARY_KEY, "--strip-subscription-key"
    )
    try:
        async with http.ws_connect(
            url(gateway, f"/client/?{QUERY}&subscription-key={PRIMARY_KEY}"),
            headers={"Ocp-Apim-Subscription-Key": PRIMARY_KEY},
        ) as ws:
            seen = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["handshake"]
        assert seen["query"] == QUERY
        assert "ocp-apim-subscription-key" not in seen["headers"]
    finally:
        gateway.stop()


# -- 4. repeated subscription keys -----------------------------------------------------------------------------------


async def test_two_different_key_headers_are_refused(keyed_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for pair in ((PRIMARY_KEY, "wrong"), ("wrong", PRIMARY_KEY), (PRIMARY_KEY, SECONDARY_KEY)):
        headers = CIMultiDict([("Ocp-Apim-Subscription-Key", pair[0]), ("Ocp-Apim-Subscription-Key", pair[1])])
        async with http.post(url(keyed_gateway, f"/client/negotiate?{QUERY}"), headers=headers) as response:
            assert response.status == 401
            assert await response.read() == INVALID_KEY
    same = CIMultiDict([("Ocp-Apim-Subscription-Key", PRIMARY_KEY), ("Ocp-Apim-Subscription-Key", PRIMARY_KEY)])
    async with http.post(url(keyed_gateway, f"/client/negotiate?{QUERY}"), headers=same) as response:
        assert response.status == 200
    assert "conflicting subscription keys" in keyed_gateway.wait_for_log("conflicting subscription keys")


async def test_two_different_query_keys_are_refused(keyed_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for query in (
        f"subscription-key={PRIMARY_KEY}&subscription-key=x",
        f"subscription-key=x&subscription-key={PRIMARY_KEY}",
    ):
        async with http.post(url(keyed_gateway, f"/client/negotiate?{QUERY}&{query}")) as response:
            assert response.status == 401
            assert await response.read() == INVALID_KEY
    twice = f"subscription-key={PRIMARY_KEY}&subscription-key={PRIMARY_KEY}"
    async with http.post(url(keyed_gateway, f"/client/negotiate?{QUERY}&{twice}")) as response:
        assert response.status == 200


# -- 5. no 500 and no traceback, whatever the request ----------------------------------------------------------------

METHODS = st.sampled_from(["GET", "POST", "OPTIONS", "DELETE", "HEAD", "PUT", "PATCH", "TRACE", "FOO", "G\x01T", "get"])
PATH_PIECES = st.sampled_from(
    ["client", "client/", "negotiate", "%", "%2", "%zz", "%2F", "%00", "%ff", "%C3%28", "..", "\x01", "\x7f", "é", ""]
)
RAW_HEADER_VALUES = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.sampled_from([b"\xff\xfe", b"caf\xe9", b"\x00", b"a\x01b", b"x" * 9000, b"x" * 70000]),
)


def _exchange(gateway: Gateway, raw: bytes) -> bytes:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    return data


@pytest.fixture(scope="module")
def fuzz_gateway(backend: Backend) -> Iterator[Gateway]:
    gateway = start_gateway(backend.url, "--profile", "sse-lp", "--with-delete", "--subscription-key", PRIMARY_KEY)
    yield gateway
    gateway.stop()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=METHODS,
    pieces=st.lists(PATH_PIECES, max_size=4),
    query=st.lists(
        st.sampled_from(["id=%", "subscription-key=%ff", "a=%zz", "x=\x01", "id=a&id=b", "=", "&&"]), max_size=3
    ),
    headers=st.lists(
        st.tuples(st.sampled_from([b"X-A", b"Ocp-Apim-Subscription-Key", b"Upgrade", b"Host"]), RAW_HEADER_VALUES),
        max_size=3,
    ),
)
def test_fuzzed_requests_get_no_500_and_at_most_one_log_line(
    fuzz_gateway: Gateway, method: str, pieces: list[str], query: list[str], headers: list[tuple[bytes, bytes]]
) -> None:
    before = fuzz_gateway.stderr()
    target = "/" + "/".join(pieces) + ("?" + "&".join(query) if query else "")
    raw = f"{method} {target} HTTP/1.1\r\n".encode("utf-8", "surrogateescape") + b"Host: gw\r\n"
    raw += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    raw += b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    status_line = _exchange(fuzz_gateway, raw).split(b"\r\n", 1)[0]
    assert not status_line.startswith(b"HTTP/1.1 500"), (raw[:300], status_line)
    time.sleep(0.05)  # the access line is written after the response
    new = fuzz_gateway.stderr()[len(before) :]
    assert "Traceback" not in new and "Error handling request" not in new, new
    # A rate-limited server summary ("suppressed N similar lines") stands for lines not written: not counted.
    lines = [line for line in new.splitlines() if "similar lines" not in line]
    assert len(lines) <= 1, new


async def test_in_process_gateway_logs_no_secret_without_a_handler_filter(
    backend: Backend, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The Python API (chat-demo, tests) installs no redacting handler: the access lines must be clean already."""
    from gateway.model import resolve_backend
    from gateway.profiles import build_profile
    from gateway.proxy import ApimGateway

    model = resolve_backend(build_profile("sse-lp"), backend.url)
    caplog.set_level(logging.INFO, logger="gateway")
    async with ApimGateway(model, port=0) as gateway:
        for target in (
            f"/client/?{QUERY}&id={CONNECTION_TOKEN}&access_token={JWT}",
            f"/client/{JWT[:24]}?id={CONNECTION_TOKEN}",
            f"/{JWT}",
        ):
            async with http.post(URL(gateway.url + target, encoded=True)) as response:
                await response.read()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert text.count("gateway.access") == 0 and len(caplog.records) >= 3
    for secret in (JWT, JWT[:12], CONNECTION_TOKEN):
        assert secret not in text, text
    assert "id=~" in text
