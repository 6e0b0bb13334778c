"""Helpers (no tests) for the flow tests of ``chat-server`` and ``apim-gateway``: a hop catcher that keeps every raw
datagram, a free UDP port, a reader of ``GET /flow``, and a stand-in REST service that records request headers."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from flow.collector import FlowCollector
from flow.hops import Hop

WAIT = 10.0


class HopCatcher(FlowCollector):
    """A :class:`FlowCollector` that also keeps every raw datagram (to grep them for secrets)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.raw: list[bytes] = []

    def receive(self, data: bytes, sender: Any) -> None:
        self.raw.append(data)
        super().receive(data, sender)

    @property
    def flow_to(self) -> str:
        host, port = self.address
        return f"{host}:{port}"

    async def wait_for(self, match: Callable[[Hop], bool], what: str, timeout: float = WAIT) -> Hop:
        return await wait_for_hop(lambda: self.hops(), match, what, timeout)


async def wait_for_hop(hops: Callable[[], list[Hop]], match: Callable[[Hop], bool], what: str, timeout: float) -> Hop:
    """The first hop ``match`` accepts, waiting up to ``timeout`` seconds; the assertion lists what did come."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for hop in hops():
            if match(hop):
                return hop
        if asyncio.get_running_loop().time() > deadline:
            seen = "\n".join(f"  {h.role}:{h.kind} {h.source}->{h.target} {h.label!r} flow={h.flow_id}" for h in hops())
            raise AssertionError(f"no hop {what} within {timeout} s; hops:\n{seen}")
        await asyncio.sleep(0.05)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FlowReader:
    """Reads ``GET <server>/flow`` in the background: every ``data:`` line decoded with :meth:`Hop.from_json`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.hops: list[Hop] = []
        self.lines: list[bytes] = []
        self.status = 0
        self.content_type = ""
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()

    async def __aenter__(self) -> FlowReader:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._opened.wait(), WAIT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as http:
            async with http.get(self.url) as response:
                self.status = response.status
                self.content_type = response.headers.get("Content-Type", "")
                self._opened.set()
                async for line in response.content:
                    self.lines.append(line)
                    if line.startswith(b"data: "):
                        self.hops.append(Hop.from_json(line[6:].rstrip(b"\n")))

    async def wait_for(self, match: Callable[[Hop], bool], what: str, timeout: float = WAIT) -> Hop:
        return await wait_for_hop(lambda: list(self.hops), match, what, timeout)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HeaderRecorder:
    """A stand-in service REST API on 127.0.0.1 that answers 202 to every POST and records it, headers included."""

    requests: list[RecordedRequest] = field(default_factory=list)
    server: TestServer | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> HeaderRecorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    def connection_string(self, access_key: str) -> str:
        return f"Endpoint=http://127.0.0.1;Port={self.port};AccessKey={access_key};Version=1.0;"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.headers), body))
        self._arrived.set()
        return web.Response(status=202)

    async def wait(self, count: int = 1, timeout: float = WAIT) -> list[RecordedRequest]:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests


def sse_data(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
