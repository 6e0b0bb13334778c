"""The gateway's I/O: an aiohttp server that routes like APIM and forwards to the backend.

The decisions (route, subscription, backend URL, response bodies) come from the pure modules;
this module only moves bytes (docs/apim.md §4):

- HTTP: the backend URL keeps the raw query byte for byte; ``Host`` becomes the backend
  authority; hop-by-hop headers are dropped, all others pass both ways; nothing is decompressed;
  redirects are not followed; backend statuses pass through untouched. The forward timeout runs
  until the backend's response headers arrive (then 500 with an activityId, as APIM).
- Buffering (``forward-request buffer-response``): when true (APIM's default) the response body is
  accumulated and flushed in blocks of at least 8 KB or at end of stream, so a Server-Sent Events
  stream visibly stalls; when false every chunk is written as it arrives.
- WebSocket (onHandshake): the backend handshake completes first; only then is the client
  upgraded. A backend refusal is returned with its status and body, without upgrading. Text and
  binary messages are relayed both ways; pings stay per hop; close code and reason propagate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from http import HTTPStatus

import aiohttp
from aiohttp import ClientRequest, ClientResponse, WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.model import DEFAULT_TIMEOUT_S, ApimModel
from gateway.redaction import DEFAULT_SECRET_QUERY_NAMES, redact_target
from gateway.responses import GatewayResponse, internal_server_error, resource_not_found
from gateway.routing import NoRoute, Route, route
from gateway.subscription import check_subscription

__all__ = ["BUFFER_FLUSH_BYTES", "HOP_BY_HOP_HEADERS", "ApimGateway", "BackendRefusedUpgrade"]

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

#: forward-request buffer-response="true": "chunks are buffered (8 KB, unless end of stream is detected)".
BUFFER_FLUSH_BYTES = 8192

#: RFC 9110 §7.6.1 plus the legacy ones; never forwarded in either direction.
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Generated per hop by the WebSocket handshake on each side.
_WS_HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
    }
)
# Close codes that must not appear in a close frame (RFC 6455 §7.4.1): forwarded as 1000.
_UNSENDABLE_CLOSE_CODES = frozenset({0, 1004, 1005, 1006, 1015})


class BackendRefusedUpgrade(Exception):
    """The backend answered a WebSocket handshake with something other than 101."""

    def __init__(self, status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        super().__init__(f"backend refused the WebSocket handshake: {status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)
        self.body = body


async def _capture_refused_upgrade(
    request: ClientRequest, handler: Callable[[ClientRequest], Awaitable[ClientResponse]]
) -> ClientResponse:
    """Client middleware: keep the status and body of a refused WebSocket handshake, which
    aiohttp's ws_connect would otherwise discard."""
    response = await handler(request)
    if response.status != 101 and request.headers.get("Upgrade", "").lower() == "websocket":
        try:
            async with asyncio.timeout(5):
                body = await response.read()
        except (TimeoutError, aiohttp.ClientError):
            body = b""
        finally:
            response.release()
        raise BackendRefusedUpgrade(response.status, response.reason or "", response.headers.items(), body)
    return response


def _connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    tokens: set[str] = set()
    for value in headers.getall("Connection", []):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _end_to_end(headers: CIMultiDictProxy[str] | CIMultiDict[str], drop: Collection[str] = ()) -> CIMultiDict[str]:
    """Headers without hop-by-hop ones (including those named in ``Connection``) and `drop`."""
    skip = HOP_BY_HOP_HEADERS | _connection_tokens(headers) | {d.lower() for d in drop}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


def _to_backend(request: web.Request, match: Route) -> tuple[URL, CIMultiDict[str]]:
    """The backend URL, with the raw query byte for byte, and the headers to send there (docs/apim.md §4): all but
    ``Host`` (the client sets the backend's), hop-by-hop and WebSocket handshake headers (each hop makes its own)."""
    url = URL(match.backend_url(request.rel_url.raw_query_string), encoded=True)
    return url, _end_to_end(request.headers, drop=("Host", *_WS_HANDSHAKE_HEADERS))


def _sendable_close_code(code: int | None) -> int:
    if code is None or code in _UNSENDABLE_CLOSE_CODES or not (1000 <= code <= 4999):
        return 1000
    return code


@dataclass
class _Exchange:
    """What the access log line says about one request."""

    method: str
    target: str
    started: float
    where: str = "no API"
    status: int = 0
    detail: str = ""


class ApimGateway:
    """A running (or ready-to-run) local APIM stand-in.

    model: the APIM model with concrete service URLs (see `gateway.model.resolve_backend`).
    subscription_keys: the keys of active subscriptions, for APIs that require one.
    Use ``async with ApimGateway(...) as gw:`` or `start` / `stop`; `url` is the base URL.
    """

    def __init__(
        self,
        model: ApimModel,
        *,
        subscription_keys: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.model = model
        self.subscription_keys = frozenset(k for k in subscription_keys if k)
        self.host = host
        self.port = port
        self._shutdown_timeout = shutdown_timeout
        self._secret_query_names = frozenset(
            {*DEFAULT_SECRET_QUERY_NAMES, *(api.subscription_key_names.query for api in model.apis)}
        )
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._forwards: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._base_url = ""

    @property
    def url(self) -> str:
        """The gateway's base URL, e.g. ``http://127.0.0.1:8080`` (known after `start`)."""
        return self._base_url

    @property
    def secret_query_names(self) -> frozenset[str]:
        return self._secret_query_names

    def make_app(self) -> web.Application:
        """The aiohttp application (one catch-all route: APIM's routing is done here, not by aiohttp)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_startup.append(self._open_session)
        app.on_shutdown.append(self._close_connections)
        app.on_cleanup.append(self._close_session)
        return app

    async def start(self) -> str:
        """Listen and return the base URL. Raises OSError if the address is not available."""
        runner = web.AppRunner(
            self.make_app(),
            access_log=None,
            handler_cancellation=True,  # a client that goes away ends its backend request too
            shutdown_timeout=self._shutdown_timeout,
        )
        self._stopping = False
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        self._base_url = f"http://{host}:{self.port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop listening, cut open streams and held polls, close relayed WebSockets with 1001."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> ApimGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- lifecycle hooks ------------------------------------------------------------------

    async def _open_session(self, _app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, family=socket.AF_UNSPEC)
        options: dict[str, object] = {
            "connector": connector,
            "auto_decompress": False,  # neither decompress nor compress: SSE keeps its encoding
            "cookie_jar": aiohttp.DummyCookieJar(),
            "skip_auto_headers": ("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            "timeout": aiohttp.ClientTimeout(total=None, sock_connect=30),
        }
        try:
            self._session = aiohttp.ClientSession(**options, middlewares=(_capture_refused_upgrade,))  # type: ignore[arg-type]
        except TypeError:  # aiohttp < 3.12 has no client middlewares: refusals get a plain body
            self._session = aiohttp.ClientSession(**options)  # type: ignore[arg-type]

    async def _close_connections(self, _app: web.Application) -> None:
        """On shutdown, cut streams and held polls at once and close relayed WebSockets with 1001."""
        self._stopping = True
        for task in list(self._forwards):
            task.cancel()
        sockets = list(self._sockets)
        if sockets:
            await asyncio.gather(
                *(ws.close(code=1001, message=b"gateway shutting down") for ws in sockets),
                return_exceptions=True,
            )

    async def _close_session(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- request handling -----------------------------------------------------------------

    def _respond(self, response: GatewayResponse) -> web.Response:
        headers = CIMultiDict(response.headers)
        return web.Response(status=response.status, reason=response.reason, headers=headers, body=response.body)

    def _log(self, exchange: _Exchange) -> None:
        ms = (time.monotonic() - exchange.started) * 1000
        detail = f" ({exchange.detail})" if exchange.detail else ""
        access_log.info(
            "%s %s -> %s %s%s %.1f ms",
            exchange.method,
            exchange.target,
            exchange.where,
            exchange.status,
            detail,
            ms,
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        raw_query = request.rel_url.raw_query_string
        exchange = _Exchange(
            method=request.method,
            target=redact_target(raw_path, raw_query, self._secret_query_names),
            started=time.monotonic(),
        )
        upgrade = request.headers.get("Upgrade", "").strip().lower() == "websocket"
        match = route(self.model, request.method, raw_path, upgrade=upgrade)
        if isinstance(match, NoRoute):
            exchange.where = f"API {match.api.name}" if match.api else "no API"
            exchange.status = 404
            exchange.detail = f"Resource not found: {match.reason}"
            self._log(exchange)
            return self._respond(resource_not_found())
        exchange.where = f"{match.api.name}/{match.operation_name}"
        check = check_subscription(match.api, request.headers, raw_query, self.subscription_keys)
        denial = check.denial(match.api, self._base_url or f"http://{request.host}")
        if denial is not None:
            exchange.status = denial.status
            exchange.detail = f"Access Denied: {check.describe(match.api)}"
            self._log(exchange)
            return self._respond(denial)
        if match.is_websocket:
            return await self._relay_websocket(request, match, exchange)
        if upgrade:
            exchange.detail = "upgrade request to an HTTP API: forwarded as a plain request"
        return await self._forward_http(request, match, exchange)

    def _fail(self, exchange: _Exchange, why: str) -> web.Response:
        response = internal_server_error()
        exchange.status = 500
        exchange.detail = f"Internal server error: {why}"
        self._log(exchange)
        return self._respond(response)

    def _gone(self, sent: int) -> str:
        return "gateway shutting down" if self._stopping else f"client went away after {sent} bytes"

    async def _forward_http(self, request: web.Request, match: Route, exchange: _Exchange) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._forwards.add(task)
        try:
            return await self._forward(request, match, exchange)
        except asyncio.CancelledError:
            if exchange.status == 0:  # cancelled while waiting for the backend's response headers
                exchange.detail = _join(exchange.detail, self._gone(0))
                self._log(exchange)
            raise
        finally:
            if task is not None:
                self._forwards.discard(task)

    async def _forward(self, request: web.Request, match: Route, exchange: _Exchange) -> web.StreamResponse:
        assert self._session is not None and match.operation is not None
        policy = match.operation.forward_request
        # An upgrade request to an HTTP API reaches the backend as a plain request (docs/apim.md §2.5).
        url, headers = _to_backend(request, match)
        data = request.content if request.body_exists else None
        try:
            async with asyncio.timeout(policy.timeout_s):
                backend = await self._session.request(
                    request.method, url, headers=headers, data=data, allow_redirects=False
                )
        except TimeoutError:
            return self._fail(exchange, f"no response headers from the backend within {policy.timeout_s} s")
        except aiohttp.ClientError as exc:
            return self._fail(exchange, f"backend unreachable ({type(exc).__name__})")

        response = web.StreamResponse(status=backend.status, reason=backend.reason)
        for name, value in _end_to_end(backend.headers).items():
            response.headers.add(name, value)
        exchange.status = backend.status
        sent = 0
        finished = False
        try:
            if policy.buffer_response:
                pending = bytearray()
                async for chunk in backend.content.iter_any():
                    pending += chunk
                    if len(pending) >= BUFFER_FLUSH_BYTES:
                        if not response.prepared:
                            await response.prepare(request)
                        await response.write(bytes(pending))
                        sent += len(pending)
                        pending.clear()
                if not response.prepared:
                    await response.prepare(request)
                if pending:
                    await response.write(bytes(pending))
                    sent += len(pending)
            else:
                await response.prepare(request)
                async for chunk in backend.content.iter_any():
                    await response.write(chunk)
                    sent += len(chunk)
            await response.write_eof()
            finished = True
        except asyncio.CancelledError:
            exchange.detail = _join(exchange.detail, self._gone(sent))
            raise
        except ConnectionResetError:
            exchange.detail = _join(exchange.detail, self._gone(sent))
        except aiohttp.ClientError as exc:
            if not response.prepared:
                return self._fail(exchange, f"backend stream broke before the response started ({type(exc).__name__})")
            # Cut the client's connection too, so it sees a truncated response, not a complete one.
            exchange.detail = _join(exchange.detail, f"backend stream broke after {sent} bytes ({type(exc).__name__})")
            if request.transport is not None:
                request.transport.close()
        finally:
            if finished:
                backend.release()
            else:
                backend.close()
            if not policy.buffer_response:
                exchange.detail = _join(exchange.detail, "unbuffered")
            self._log(exchange)
        return response

    async def _relay_websocket(self, request: web.Request, match: Route, exchange: _Exchange) -> web.StreamResponse:
        assert self._session is not None
        url, headers = _to_backend(request, match)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = tuple(p.strip() for p in offered.split(",") if p.strip())
        try:
            async with asyncio.timeout(DEFAULT_TIMEOUT_S):  # a WebSocket API has no policy: the default applies
                backend = await self._session.ws_connect(
                    url,
                    headers=headers,
                    protocols=protocols,
                    autoclose=False,
                    autoping=True,
                    max_msg_size=0,
                    compress=0,
                )
        except BackendRefusedUpgrade as refusal:
            exchange.status = refusal.status
            exchange.detail = "backend refused the WebSocket handshake; client not upgraded"
            self._log(exchange)
            refused = CIMultiDict(refusal.headers)
            kept = _end_to_end(refused, drop=("Content-Length", *_WS_HANDSHAKE_HEADERS))
            return web.Response(status=refusal.status, reason=refusal.reason or None, headers=kept, body=refusal.body)
        except aiohttp.WSServerHandshakeError as exc:
            exchange.status = exc.status
            exchange.detail = f"backend WebSocket handshake failed ({exc.message}); client not upgraded"
            self._log(exchange)
            reason = _phrase(exc.status)
            return web.Response(status=exc.status, reason=reason, text=f"{exc.status} {reason}")
        except TimeoutError:
            return self._fail(exchange, f"no WebSocket handshake answer from the backend within {DEFAULT_TIMEOUT_S} s")
        except aiohttp.ClientError as exc:
            return self._fail(exchange, f"backend unreachable ({type(exc).__name__})")

        client = web.WebSocketResponse(
            protocols=(backend.protocol,) if backend.protocol else (),
            autoclose=False,
            autoping=True,
            max_msg_size=0,
        )
        try:
            await client.prepare(request)
        except BaseException:
            await backend.close(code=1001, message=b"client handshake failed")
            raise
        exchange.status = 101
        exchange.detail = "WebSocket relayed"
        self._log(exchange)
        self._sockets.add(client)
        relay = _Relay()
        try:
            await relay.run(client, backend)
        finally:
            self._sockets.discard(client)
            if not backend.closed:
                with contextlib.suppress(Exception):
                    await backend.close(code=1001, message=b"client connection lost")
            access_log.info(
                "%s %s -> %s websocket closed: %s after %.1f s",
                exchange.method,
                exchange.target,
                exchange.where,
                relay.summary(),
                time.monotonic() - exchange.started,
            )
        return client


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


@dataclass
class _PumpEnd:
    """How one direction of a relay ended.

    closed_by_peer: the source sent a close frame (code, reason).
    sink_failed: sending to the other side failed (that side's own pump tells why).
    Otherwise the source's connection was lost without a close frame.
    """

    closed_by_peer: bool
    code: int | None = None
    reason: str = ""
    sink_failed: bool = False


class _Relay:
    """One client WebSocket relayed to one backend WebSocket, and what happened to it."""

    def __init__(self) -> None:
        self.up = 0  # messages client → backend
        self.down = 0  # messages backend → client
        self.outcome = "client connection lost"

    def summary(self) -> str:
        return f"{self.outcome}; {self.up} messages up, {self.down} down"

    async def _pump(self, source: _Socket, sink: _Socket, upward: bool) -> _PumpEnd:
        while True:
            msg = await source.receive()
            try:
                if msg.type is WSMsgType.TEXT:
                    await sink.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await sink.send_bytes(msg.data)
                elif msg.type is WSMsgType.CLOSE:
                    return _PumpEnd(True, msg.data, msg.extra or "")
                elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    return _PumpEnd(False)
                else:  # pings and pongs are answered per hop (autoping)
                    continue
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                return _PumpEnd(False, sink_failed=True)
            if upward:
                self.up += 1
            else:
                self.down += 1

    async def run(self, client: web.WebSocketResponse, backend: aiohttp.ClientWebSocketResponse) -> None:
        """Relay messages both ways until one side closes or is lost; then close the other side
        with the same code and reason (1001 if the connection was lost without a close frame)."""
        up = asyncio.create_task(self._pump(client, backend, upward=True))
        down = asyncio.create_task(self._pump(backend, client, upward=False))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
            first_up = up.done()
            end = _result(up if first_up else down)
            if end is None or end.sink_failed:
                # The side we could not write to ended; its own pump knows how.
                await asyncio.wait((up, down), timeout=5)
                first_up = not first_up
                end = _result(up if first_up else down) or _PumpEnd(False)
            origin, other = (client, backend) if first_up else (backend, client)
            who = "client" if first_up else "backend"
            if end.closed_by_peer:
                code = _sendable_close_code(end.code)
                reason = end.reason.encode()[:123]
                self.outcome = f"{who} closed with {end.code} {end.reason!r}, forwarded as {code}"
                with contextlib.suppress(Exception):
                    await other.close(code=code, message=reason)
                with contextlib.suppress(Exception):
                    await origin.close(code=code, message=reason)
            else:
                self.outcome = f"{who} connection lost, other side closed with 1001"
                with contextlib.suppress(Exception):
                    await other.close(code=1001, message=f"{who} connection lost".encode())
            await asyncio.wait((up, down), timeout=5)
        finally:
            for task in (up, down):
                if not task.done():
                    task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)


def _result(task: asyncio.Task[_PumpEnd]) -> _PumpEnd | None:
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()
