"""Path tricks and request smuggling against the APIM gateway (a process), with a backend that records every
request it receives: nothing may reach the backend outside the service's ``/client/`` path, and no request may
smuggle a second one past the gateway. Both APIM profiles."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.stack import Gateway, start_gateway

PATH_TRICKS = [
    "/client/../api/hubs/chat/:send",
    "/client/%2e%2e/api/hubs/chat/:send",
    "/client/%2E%2E%2Fapi%2Fhubs%2Fchat%2F:send",
    "/client/..%2fserver/?hub=chat",
    "/client/%252e%252e/api/v1/health",
    "/client//../server/",
    "/client/./../api/health",
    "/client/negotiate/../../api/health",
    "/client/;/../api/health",
    "/client\\..\\api\\health",
    "/client/%5c..%5capi%5chealth",
    "//api/health",
    "/api/health",
    "/server/?hub=chat",
    "/CLIENT/../API/HEALTH",
    "/client/%00/../api/health",
    "/client/%c0%ae%c0%ae/api/health",
    "http://127.0.0.1/api/health",
    "/client/?hub=chat/../../api",
]

SMUGGLING = [
    # Content-Length and Transfer-Encoding together: a second request hidden in the body.
    b"POST /client/?hub=chat&id=x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /api/health HTTP/1.1\r\nHost: a\r\n\r\n",
    # Two different Content-Lengths.
    b"POST /client/?hub=chat&id=x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n"
    b"GET /api/health HTTP/1.1\r\nHost: a\r\n\r\n",
    # An obfuscated Transfer-Encoding.
    b"POST /client/?hub=chat&id=x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 44\r\n\r\n"
    b"GET /api/health HTTP/1.1\r\nHost: a\r\n\r\n",
    # A folded header line hiding a second Transfer-Encoding.
    b"POST /client/?hub=chat&id=x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n"
    b"Content-Length: 3\r\n\r\n0\r\n\r\n",
    # A bare LF line ending and a request line with spaces in the target.
    b"GET /client/ /../api/health HTTP/1.1\nHost: a\n\n",
]


class Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.raw_path)
        return web.Response(text="ok")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    recording = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recording.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield recording, f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture(params=["websocket", "sse-lp"])
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gateway(recorder: tuple[Recorder, str], profile: str) -> Iterator[Gateway]:
    running = start_gateway(recorder[1], "--profile", profile)
    yield running
    running.stop()


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the gateway closes or goes quiet (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.settimeout(2)
        received = b""
        try:
            while len(received) < 1 << 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
    return received


def _outside_client(path: str) -> bool:
    segments = path.split("?", 1)[0].split("/")
    return not path.startswith("/client") or ".." in segments or any("%2e" in s.lower() for s in segments)


async def test_path_tricks_never_reach_the_backend_outside_client(
    gateway: Gateway, recorder: tuple[Recorder, str]
) -> None:
    recording, _ = recorder
    for trick in PATH_TRICKS:
        request = f"GET {trick} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1")
        answer = await asyncio.to_thread(exchange, gateway.port, request)
        assert answer == b"" or not answer.startswith(b"HTTP/1.1 5"), (trick, answer[:80])
    leaked = [path for path in recording.paths if _outside_client(path)]
    assert leaked == []


async def test_smuggled_requests_never_reach_the_backend(gateway: Gateway, recorder: tuple[Recorder, str]) -> None:
    recording, _ = recorder
    for attempt in SMUGGLING:
        answer = await asyncio.to_thread(exchange, gateway.port, attempt)
        assert not answer.startswith(b"HTTP/1.1 5"), (attempt[:60], answer[:80])
    assert [path for path in recording.paths if path.startswith("/api")] == []
    # At most the one declared request of each attempt got through, never a hidden second one.
    assert len(recording.paths) <= len(SMUGGLING)
