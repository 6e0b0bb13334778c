"""Fixtures for the emulator's tests: an emulator served on 127.0.0.1 (in-process or as the console script), an
upstream receiver that checks signatures, and raw-protocol helpers. Everything runs over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from emulator.app import RunningEmulator, serve
from emulator.settings import EmulatorSettings, new_access_key
from signalr.json_protocol import RECORD_SEPARATOR
from signalr.tokens import mint_token
from signalr.upstream import UpstreamTemplate, verify_signature
from tests.support.fixtures import js_peer  # noqa: F401  (pytest finds fixtures by name)
from tests.support.stack import EmulatorProcess
from tests.support.stack import start_emulator as start_emulator_process

HANDSHAKE = b'{"protocol":"json","version":1}\x1e'


def records(data: bytes | str) -> list[dict[str, Any]]:
    """The JSON records of a frame, event or body (each must end with 0x1E)."""
    raw = data.encode() if isinstance(data, str) else data
    assert raw.endswith(RECORD_SEPARATOR), f"incomplete record: {raw[:200]!r}"
    return [json.loads(part) for part in raw.split(RECORD_SEPARATOR)[:-1]]


def client_token(access_key: str, hub: str = "chat", **claims: Any) -> str:
    """A client token as the app server mints it: ``aud`` on the Endpoint host without port (trap 2)."""
    return mint_token(access_key, f"http://127.0.0.1/client/?hub={hub}", claims=claims or None)


@dataclass
class Emulator:
    """A served emulator plus helpers that speak its HTTP surface with an aiohttp client session."""

    base: str
    access_key: str
    session: aiohttp.ClientSession
    running: RunningEmulator | None = None
    # The default client token of each hub, minted once: a connection without a user is bound to the token that
    # negotiated it, so every request of one test client must carry the same token (as real clients do).
    _default_tokens: dict[str, str] = field(default_factory=dict)

    # --- tokens ----------------------------------------------------------------------------------------------

    def client_token(
        self,
        hub: str = "chat",
        *,
        key: str | None = None,
        aud: str | None = None,
        lifetime: int = 3600,
        claims: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> str:
        """A client token as the app server mints it: ``aud`` on the Endpoint host without port (trap 2). Without
        arguments other than ``hub`` it is the same token on every call."""
        default = key is None and aud is None and lifetime == 3600 and claims is None and now is None
        if default and hub in self._default_tokens:
            return self._default_tokens[hub]
        audience = aud if aud is not None else f"http://127.0.0.1/client/?hub={hub}"
        token = mint_token(key or self.access_key, audience, lifetime=lifetime, claims=claims, now=now)
        if default:
            self._default_tokens[hub] = token
        return token

    def rest_token(self, path: str, *, key: str | None = None, lifetime: int = 3600, now: float | None = None) -> str:
        """A REST token with ``aud`` = Endpoint (no port) + ``path`` (query allowed, trap 17)."""
        return mint_token(key or self.access_key, f"http://127.0.0.1{path}", lifetime=lifetime, now=now)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # --- REST ------------------------------------------------------------------------------------------------

    async def rest(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, bytes, Any]:
        """Call the REST API with a token for ``path`` (minus query); returns (status, body, headers)."""
        headers = self.auth(token if token is not None else self.rest_token(path.split("?")[0]))
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, data=data, headers=headers) as response:
            return response.status, await response.read(), response.headers

    async def broadcast(self, target: str, *arguments: Any, hub: str = "chat") -> None:
        path = f"/api/hubs/{hub}/:send?api-version=2022-06-01"
        status, body, _ = await self.rest("POST", path, {"target": target, "arguments": list(arguments)})
        assert status == 202, body

    # --- client side -----------------------------------------------------------------------------------------

    async def negotiate(self, hub: str = "chat", version: int | None = 1, token: str | None = None) -> dict[str, Any]:
        query = f"hub={hub}" + (f"&negotiateVersion={version}" if version is not None else "")
        headers = self.auth(token or self.client_token(hub))
        async with self.session.post(f"{self.base}/client/negotiate?{query}", headers=headers) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    def connect_url(self, connection_token: str | None, hub: str = "chat", extra: str = "") -> str:
        url = f"{self.base}/client/?hub={hub}"
        if connection_token is not None:
            url += f"&id={connection_token}"
        return url + extra

    async def connect_ws(
        self, hub: str = "chat", token: str | None = None
    ) -> tuple[aiohttp.ClientWebSocketResponse, str]:
        """A raw WebSocket on a newly negotiated connection, before the hub handshake, and its connectionId."""
        token = token or self.client_token(hub)
        negotiated = await self.negotiate(hub, token=token)
        ws = await self.session.ws_connect(
            self.connect_url(negotiated["connectionToken"], hub).replace("http", "ws", 1), headers=self.auth(token)
        )
        return ws, negotiated["connectionId"]

    async def open_ws(self, hub: str = "chat", token: str | None = None) -> tuple[aiohttp.ClientWebSocketResponse, str]:
        """A handshaken raw WebSocket connection and its connectionId."""
        ws, connection_id = await self.connect_ws(hub, token)
        await ws.send_str(HANDSHAKE.decode())
        assert records(await ws.receive_str(timeout=5)) == [{}]
        return ws, connection_id

    async def open_lp(self, hub: str = "chat") -> tuple[str, str]:
        """A handshaken LongPolling connection: (connect URL, connectionId). The handshake reply is collected."""
        negotiated = await self.negotiate(hub)
        url = self.connect_url(negotiated["connectionToken"], hub)
        headers = self.auth(self.client_token(hub))
        async with self.session.get(url, headers=headers) as response:
            assert response.status == 200
        async with self.session.post(url, data=HANDSHAKE, headers=headers) as response:
            assert response.status == 200
        async with self.session.get(url, headers=headers) as response:
            assert response.status == 200
            assert records(await response.read()) == [{}]
        return url, negotiated["connectionId"]

    async def poll_held(self, connection_id: str, hub: str = "chat", timeout: float = 5) -> None:
        """Return once this in-process emulator holds a poll of the connection: a poll sent from a task has then
        arrived, so what the test sends next is ordered after it instead of racing it."""
        assert self.running is not None, "only for an in-process emulator"
        found = self.running.service.find_hub(hub)
        connection = found.connections.get(connection_id) if found else None
        assert connection is not None, f"no open connection {connection_id} in hub {hub}"
        deadline = time.monotonic() + timeout
        while not connection.polling:
            assert time.monotonic() < deadline, f"no poll of {connection_id} arrived within {timeout} s"
            await asyncio.sleep(0.01)


async def exists(emulator: Emulator, connection_id: str) -> int:
    """The status of the REST existence check for a connection of hub ``chat``: 200 or 404."""
    status, _, _ = await emulator.rest("HEAD", f"/api/hubs/chat/connections/{connection_id}?api-version=2022-06-01")
    return status


async def ws_records(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> list[dict[str, Any]]:
    """The records of the next text frame (pings included)."""
    message = await ws.receive(timeout=timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {message.type}: {message.data!r}"
    return records(message.data)


async def assert_silent(ws: aiohttp.ClientWebSocketResponse, seconds: float = 0.3) -> None:
    """Nothing arrives on ``ws`` for ``seconds``."""
    try:
        message = await ws.receive(timeout=seconds)
    except TimeoutError:
        return
    raise AssertionError(f"expected nothing, got {message.type}: {message.data!r}")


async def ws_next_non_ping(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = [r for r in await ws_records(ws, max(0.05, deadline - loop.time())) if r.get("type") != 6]
        if got:
            return got


EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def start_emulator(session: aiohttp.ClientSession) -> AsyncIterator[EmulatorFactory]:
    """A factory: ``await start_emulator(**settings_overrides)`` serves an emulator in-process on a free port."""
    stack = contextlib.AsyncExitStack()

    async def start(**overrides: Any) -> Emulator:
        # The heap of an in-process emulator is the test process's: it is not frozen unless a test asks for it.
        base = EmulatorSettings(host="127.0.0.1", port=0, access_key=new_access_key(), gc_freeze_step=0)
        settings = replace(base, **overrides)
        running = await stack.enter_async_context(serve(settings))
        return Emulator(running.url, settings.access_key, session, running)

    async with stack:
        yield start


@pytest.fixture
async def emulator(start_emulator: EmulatorFactory) -> Emulator:
    return await start_emulator()


# --- upstream receiver ---------------------------------------------------------------------------------------


@dataclass
class UpstreamCall:
    """One request the emulator posted to the upstream."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[UpstreamCall], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class UpstreamReceiver:
    """An app-server stand-in: records every webhook and verifies ``X-ASRS-Signature`` with the AccessKey."""

    access_key: str
    calls: list[UpstreamCall] = field(default_factory=list)
    responder: Responder | None = None
    url: str = ""
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def template(self) -> str:
        return self.url + "/upstream/{hub}/{category}/{event}"

    @property
    def emulator_settings(self) -> dict[str, Any]:
        """Settings for an emulator that posts here, signing with the key this receiver checks."""
        return {"access_key": self.access_key, "upstreams": (UpstreamTemplate(self.template),)}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await request.read()
        connection_id = headers.get("x-asrs-connection-id", "")
        ok = verify_signature(headers.get("x-asrs-signature"), [self.access_key], connection_id)
        call = UpstreamCall(request.path_qs, headers, body, ok)
        async with self._arrived:
            self.calls.append(call)
            self._arrived.notify_all()
        if self.responder is not None:
            result = self.responder(call)
            return await result if asyncio.iscoroutine(result) else result  # type: ignore[return-value]
        return web.Response(status=200)

    async def wait_for(
        self, predicate: Callable[[UpstreamCall], bool], timeout: float = 5, description: str = "call"
    ) -> UpstreamCall:
        try:
            async with asyncio.timeout(timeout), self._arrived:
                while True:
                    for call in self.calls:
                        if predicate(call):
                            return call
                    await self._arrived.wait()
        except TimeoutError:
            seen = [(c.path, c.body[:80]) for c in self.calls]
            raise AssertionError(f"no upstream {description} within {timeout}s; seen: {seen}") from None

    async def event(self, event: str, connection_id: str | None = None, timeout: float = 5) -> UpstreamCall:
        def matches(call: UpstreamCall) -> bool:
            return call.headers.get("x-asrs-event") == event and (
                connection_id is None or call.headers.get("x-asrs-connection-id") == connection_id
            )

        return await self.wait_for(matches, timeout, f"event {event!r}")


@pytest.fixture
async def upstream_receiver() -> AsyncIterator[UpstreamReceiver]:
    receiver = UpstreamReceiver(new_access_key())
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}"
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def emulator_with_upstream(upstream_receiver: UpstreamReceiver, start_emulator: EmulatorFactory) -> Emulator:
    """An emulator posting to ``upstream_receiver`` (set up first, so it outlives the emulator's last events)."""
    return await start_emulator(**upstream_receiver.emulator_settings)


# --- the console script --------------------------------------------------------------------------------------


@pytest.fixture
def run_emulator() -> Iterator[Callable[..., EmulatorProcess]]:
    """A factory starting ``signalr-emulator --port 0 …`` as a process; all are stopped (by pid) at teardown."""
    started: list[EmulatorProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> EmulatorProcess:
        started.append(start_emulator_process(*args, env=env))
        return started[-1]

    yield start
    for emulator in started:
        emulator.stop()
