"""Small in-process aiohttp servers the client tests talk to (all on 127.0.0.1, all stopped at teardown).

- :class:`AppServer`: an app server's ``POST /chat/negotiate`` built on ``signalr.negotiate.build_redirect``, so a
  test can send clients to any ClientEndpoint (the emulator, a gateway, a recording proxy) and see what arrived.
- :class:`RecordingProxy`: a transparent reverse proxy (HTTP streaming + WebSocket relay) in front of a real service
  or gateway that records every request (method, path, query, headers) and the close code each client WebSocket sent.
- :func:`serve`: run any ``web.Application`` on a free loopback port (for scripted misbehaving servers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from signalr.connection_string import parse_connection_string
from signalr.negotiate import build_redirect

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]

    @classmethod
    def of(cls, request: web.Request) -> Recorded:
        """The request's method, raw path, raw query and headers, as they arrived."""
        return cls(request.method, request.rel_url.raw_path, request.rel_url.raw_query_string, request.headers.copy())

    @property
    def query_keys(self) -> list[str]:
        return [k for k, _ in yarl.URL("/?" + self.query, encoded=True).query.items()]


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 (any free port); yields its base URL ``http://127.0.0.1:<port>``."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class AppServer:
    """``POST /chat/negotiate`` → the ASP.NET SDK's redirect to ``connection_string``'s ClientEndpoint."""

    def __init__(self, connection_string: str, hub: str = "chat") -> None:
        self.connection = parse_connection_string(connection_string)
        self.hub = hub
        self.requests: list[Recorded] = []
        self.app = web.Application()
        self.app.router.add_post("/chat/negotiate", self._negotiate)

    async def _negotiate(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded.of(request))
        redirect = build_redirect(
            self.connection, self.hub, request_path=request.path, request_query=request.rel_url.raw_query_string
        )
        return web.Response(body=redirect.to_json(), content_type="application/json")


class RecordingProxy:
    """Forwards every request to ``backend`` unchanged (streaming, WebSockets relayed) and records it."""

    def __init__(self, backend: str) -> None:
        self.backend = backend.rstrip("/")
        self.requests: list[Recorded] = []
        self.client_close_codes: list[int | None] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.app.on_startup.append(self._open)
        self.app.on_cleanup.append(self._close)
        self._session: aiohttp.ClientSession | None = None

    async def _open(self, _app: web.Application) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def _target(self, request: web.Request) -> yarl.URL:
        return yarl.URL(self.backend + request.rel_url.raw_path_qs, encoded=True)

    def _forward_headers(self, request: web.Request) -> CIMultiDict[str]:
        return CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Recorded.of(request))
        assert self._session is not None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._relay(request)
        body = await request.read()
        async with self._session.request(
            request.method,
            self._target(request),
            headers=self._forward_headers(request),
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            headers = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = self._forward_headers(request)
        for name in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions"):
            headers.popall(name, None)
        target = self._target(request).with_scheme("ws")
        try:
            backend = await self._session.ws_connect(target, headers=headers, autoping=False)
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=exc.message)
        client = web.WebSocketResponse(autoping=False)
        await client.prepare(request)

        async def pump(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, sink: object) -> None:
            async for message in source:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)  # type: ignore[attr-defined]
                elif message.type is aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)  # type: ignore[attr-defined]
                elif message.type is aiohttp.WSMsgType.PING:
                    await source.pong(message.data)
                elif message.type is aiohttp.WSMsgType.CLOSE:
                    break

        up = asyncio.create_task(pump(client, backend))
        down = asyncio.create_task(pump(backend, client))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        if up.done() and not up.cancelled():
            self.client_close_codes.append(client.close_code)
        with contextlib.suppress(Exception):
            await backend.close(code=client.close_code or 1000)
        with contextlib.suppress(Exception):
            await client.close(code=backend.close_code or 1000)
        return client
