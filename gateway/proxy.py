"""The gateway's I/O: an aiohttp server that routes like APIM and forwards to the backend.

The decisions (route, subscription, backend URL, response bodies) come from the pure modules;
this module only moves bytes (docs/apim.md §4):

- HTTP: the backend URL keeps the raw query byte for byte; ``Host`` becomes the backend
  authority (the client's is kept only to reproduce that misconfiguration, ``--keep-host``); hop-by-hop
  headers are dropped, all others pass both ways; nothing is decompressed; redirects are not followed;
  backend statuses pass through untouched. The forward timeout runs until the backend's response
  headers arrive (then 500 with an activityId, as APIM).
- Buffering (``forward-request buffer-response``): when true (APIM's default) the response body is
  accumulated and flushed in blocks of at least 8 KB or at end of stream, so a Server-Sent Events
  stream visibly stalls; when false every chunk is written as it arrives.
- WebSocket (onHandshake): the backend handshake completes first; only then is the client
  upgraded. A backend refusal is returned with its status and body, without upgrading. Text and
  binary messages are relayed both ways; pings stay per hop; close code and reason propagate.
  A message larger than ``max_ws_message`` bytes is refused while its frame header is read (it is
  never buffered): the side that sent it is closed with 1009, the other with 1001 (backend) or
  1011 (client).
- Reproduced misconfigurations (`gateway.misconfig`): the access line of every request whose outcome a switch
  caused names that switch.
- Teardown: when either side of a relay or a streamed response ends, the other is ended too. A
  closing handshake gets `CLOSE_GRACE_S` before the connection is cut, and a peer that resets its
  TCP connection is noticed even while the gateway is blocked writing to a stalled other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import aiohttp
from aiohttp import ClientRequest, ClientResponse, WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.flow import (
    MAX_KEEPALIVE_BODY,
    MAX_NEGOTIATE_BODY,
    GatewayFlow,
    HopPublisher,
    RelayFlow,
    is_close,
    is_keepalive,
)
from gateway.misconfig import Misconfigurations
from gateway.model import DEFAULT_TIMEOUT_S, Api, ApimModel
from gateway.redaction import DEFAULT_SECRET_QUERY_NAMES, SCRUBBED_WITH, RedactingFilter, redact_target
from gateway.responses import GatewayResponse, bad_request, internal_server_error, resource_not_found
from gateway.routing import NoRoute, Route, route
from gateway.subscription import check_subscription
from signalr.http_limits import HttpLimits, limit_connections
from signalr.query import split_query

__all__ = [
    "BUFFER_FLUSH_BYTES",
    "CLOSE_GRACE_S",
    "DEFAULT_MAX_WS_MESSAGE",
    "HOP_BY_HOP_HEADERS",
    "ApimGateway",
    "BackendRefusedUpgrade",
]

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

#: The largest WebSocket message relayed, in bytes, in either direction (``--max-ws-message``).
#: API Management documents no message or frame size limit for WebSocket APIs
#: (https://learn.microsoft.com/azure/api-management/websocket-api#limitations and
#: https://learn.microsoft.com/azure/azure-resource-manager/management/azure-subscription-service-limits#api-management-limits
#: list connection counts only). Azure SignalR Service refuses client messages over 1 MB on Server-Sent Events and
#: LongPolling, sets no service limit on WebSocket messages, and recommends server messages under 16 MB
#: (https://learn.microsoft.com/azure/azure-signalr/signalr-concept-messages-and-connections#message-size).
#: 1 MiB lets through every client message SignalR accepts on any transport and bounds what one message can cost.
DEFAULT_MAX_WS_MESSAGE = 1024 * 1024

# Routes remembered per gateway (`ApimGateway._route`): a client uses a handful of paths.
_ROUTES_CACHED = 256

#: How long a closing handshake (or a relay's other half) may take before the connection is cut.
CLOSE_GRACE_S = 1.0
# How often a running relay or stream checks whether either peer reset its TCP connection.
_WATCH_INTERVAL_S = 0.2

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
_WS_HANDSHAKE_AND_HOST = _WS_HANDSHAKE_HEADERS | {"host"}
_REFUSAL_DROP = _WS_HANDSHAKE_HEADERS | {"content-length"}
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


def _end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], drop: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    """Headers without hop-by-hop ones (including those named in ``Connection``) and ``drop`` (lower-case names)."""
    skip = HOP_BY_HOP_HEADERS | drop
    if "Connection" in headers:
        skip |= _connection_tokens(headers)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


def strip_query_parameter(raw_query: str, name: str) -> str:
    """The raw query without the parameters called ``name`` (compared after percent-decoding, like the key
    check); every other parameter is kept byte for byte, in order."""
    return "&".join(part.raw for part in split_query(raw_query) if part.name != name)


def _to_backend(request: web.Request, match: Route, *, keep_host: bool = False) -> tuple[URL, CIMultiDict[str]]:
    """The backend URL, with the raw query byte for byte, and the headers to send there (docs/apim.md §4): all but
    ``Host`` (the client sets the backend's), hop-by-hop and WebSocket handshake headers (each hop makes its own).
    With the API's ``strip_subscription_key``, the subscription key header and query parameter are removed too,
    like the ``set-header``/``set-query-parameter exists-action="delete"`` policy the exporters write.
    ``keep_host`` keeps the client's ``Host`` instead (the ``--keep-host`` misconfiguration)."""
    raw_query = request.rel_url.raw_query_string
    drop = _WS_HANDSHAKE_HEADERS if keep_host else _WS_HANDSHAKE_AND_HOST
    api: Api = match.api
    if api.strip_subscription_key:
        raw_query = strip_query_parameter(raw_query, api.subscription_key_names.query)
        drop |= {api.subscription_key_names.header.lower()}
    url = URL(match.backend_url(raw_query), encoded=True)
    return url, _end_to_end(request.headers, drop=drop)


class _Unforwardable(Exception):
    """The request cannot be sent to the backend as received (e.g. a header value aiohttp refuses)."""


_TCP_ESTABLISHED = 1  # tcp_states.h


class _SocketLike(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def _socket_of(transport: asyncio.BaseTransport | None) -> _SocketLike | None:
    if transport is None:
        return None
    sock: _SocketLike | None = transport.get_extra_info("socket")
    return sock


def _peer_gone(sock: _SocketLike | None) -> bool:
    """True when this connection's peer has ended it (FIN or reset), or it is already closed here. Asked of a
    socket that nothing may be reading right now. Linux only (TCP_INFO); elsewhere only a closed socket counts."""
    if sock is None:
        return False
    tcp_info = getattr(socket, "TCP_INFO", None)
    try:
        if tcp_info is None:
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 4)
            return False
        state = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)[0]
    except OSError:  # closed here after the connection was lost
        return True
    return bool(state != _TCP_ESTABLISHED)


class _Stall:
    """When one direction of a relay started the write it is still blocked in (None when not writing)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def stuck(self) -> bool:
        """Blocked for `CLOSE_GRACE_S` or more: the receiving side is not reading."""
        return self.since is not None and time.monotonic() - self.since >= CLOSE_GRACE_S

    def writing(self) -> _Stall:
        """``with stall.writing(): await …write…``: the time of the write is known while it blocks."""
        self.since = time.monotonic()
        return self

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        self.since = None


async def _until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds, checked every `_WATCH_INTERVAL_S`."""
    while True:  # polled: nobody is told when a connection nobody reads ends
        if condition():
            return
        await asyncio.sleep(_WATCH_INTERVAL_S)


async def _done_or_until(task: asyncio.Future[None], condition: Callable[[], bool]) -> None:
    """Return once ``task`` is done, or earlier once ``condition()`` holds (checked every `_WATCH_INTERVAL_S`, as
    `_until` does, without a task of its own)."""
    while not condition():
        done, _ = await asyncio.wait((task,), timeout=_WATCH_INTERVAL_S)
        if done:
            return


class _BufferedResponse(web.StreamResponse):
    """A response written in blocks (``buffer-response="true"``): its head leaves with its first block, in one write,
    so a small answer (a negotiate) reaches the client as one segment. aiohttp's own ``Response`` does the same."""

    _send_headers_immediately = False


def _abort(transport: asyncio.BaseTransport | None) -> None:
    """Cut a connection now with a reset: what a stalled peer did not read is dropped, and no FIN waits behind it."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if transport is None:
        return
    # uvloop's transports have abort() without deriving from asyncio.WriteTransport; close() would wait for the peer.
    abort: Callable[[], None] | None = getattr(transport, "abort", None)
    if abort is not None:
        abort()
    else:
        transport.close()


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
    notes: tuple[str, ...] = ()  # which reproduced misconfiguration caused the outcome (`gateway.misconfig`)
    # For the flow stream only (set while flow is on): the raw path and query, and what the backend answered.
    path: str = ""
    raw_query: str = ""
    forwarded: bool = False  # the backend answered (its status is `status`)
    size: int = 0  # bytes written to the client
    transport: str | None = None  # LongPolling or ServerSentEvents, from a GET's Accept header
    upgrade: bool = False  # a WebSocket handshake
    keepalive: bool = False  # the request body was only a Ping: not reported
    closing: bool = False  # the request body was SignalR's Close message
    answered: float | None = None  # when the backend's response headers came (time.monotonic())

    def explained(self) -> str:
        """The detail and the notes, as the access line shows them in parentheses ("" when there are none)."""
        return "; ".join(part for part in (self.detail, *self.notes) if part)


class ApimGateway:
    """A running (or ready-to-run) local APIM stand-in.

    model: the APIM model with concrete service URLs (see `gateway.model.resolve_backend`).
    subscription_keys: the keys of active subscriptions, for APIs that require one.
    max_ws_message: the largest WebSocket message relayed, in bytes (either direction); 0 = no limit.
    reproduce: misconfigurations reproduced on purpose beyond the model (``--keep-host``), and the switches that
        changed the model, so the access log can name them (`gateway.misconfig`); default: none.
    http_limits: request-head, body and idle limits for client connections (`signalr.http_limits`); None = aiohttp's.
    flow: where to publish hop events (`gateway.flow`); None or a disabled publisher: none, at no cost.
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
        max_ws_message: int = DEFAULT_MAX_WS_MESSAGE,
        http_limits: HttpLimits | None = None,
        reproduce: Misconfigurations | None = None,
        flow: HopPublisher | None = None,
    ) -> None:
        if max_ws_message < 0:
            raise ValueError("max_ws_message must be 0 (no limit) or a positive number of bytes")
        self.model = model
        self.reproduce = reproduce or Misconfigurations()
        self.subscription_keys = frozenset(k for k in subscription_keys if k)
        self.max_ws_message = max_ws_message
        self.http_limits = http_limits
        self.host = host
        self.port = port
        self._shutdown_timeout = shutdown_timeout
        self._secret_query_names = frozenset(
            {*DEFAULT_SECRET_QUERY_NAMES, *(api.subscription_key_names.query for api in model.apis)}
        )
        # Every line this gateway logs goes through it, also when no handler filter is installed (Python API).
        self._scrubber = RedactingFilter(self._secret_query_names)
        for key in self.subscription_keys:
            self._scrubber.add_secret(key)
        # None unless flow is on: the hot paths check only this.
        self._flow: GatewayFlow | None = None
        if flow is not None and flow.enabled:
            self._flow = GatewayFlow(
                flow, model.service.value, host_rewritten=not self.reproduce.keep_host, scrub=self._scrubber.scrub
            )
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._plain_request: dict[str, Any] = {}  # options of an HTTP forward's request
        self._sockets: set[web.WebSocketResponse] = set()
        self._forwards: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._base_url = ""
        self._routes_model = model
        self._routes: dict[tuple[str, str, bool], Route | NoRoute] = {}

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
        if self.http_limits is not None:
            limit_connections(runner, self.http_limits)  # before the socket opens: no connection goes unlimited
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
            # The middleware is for WebSocket handshakes: plain requests skip its layer (HTTP forwards never upgrade).
            self._plain_request = {"middlewares": ()}
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

    def _access(self, message: str) -> None:
        """One access line: secrets scrubbed, control characters escaped (one request, one line)."""
        if access_log.isEnabledFor(logging.INFO):
            line = _one_line(self._scrubber.scrub(message))
            access_log.info("%s", line, extra={SCRUBBED_WITH: self._scrubber.rules})

    def _log(self, exchange: _Exchange) -> None:
        ms = (time.monotonic() - exchange.started) * 1000
        explained = exchange.explained()
        detail = f" ({explained})" if explained else ""
        self._access(f"{exchange.method} {exchange.target} -> {exchange.where} {exchange.status}{detail} {ms:.1f} ms")
        if self._flow is not None:
            self._report(self._flow, exchange)

    def _report(self, flow: GatewayFlow, exchange: _Exchange) -> None:
        """The hop of one request, once its access line is written (flow on only)."""
        if exchange.keepalive or exchange.status == 0:
            return  # a Ping, or a request whose client left before any answer: nothing travelled
        if exchange.upgrade:
            if exchange.status != 101:
                note = f"refused by the backend ({exchange.status})" if exchange.forwarded else exchange.explained()
                flow.upgrade(exchange.path, exchange.raw_query, exchange.status, exchange.started, note)
        elif exchange.transport == "ServerSentEvents" and exchange.forwarded:
            pass  # reported when the stream opened and per block written
        elif exchange.forwarded:
            downward = exchange.method == "GET" and exchange.transport == "LongPolling"
            flow.forwarded(
                exchange.method,
                exchange.path,
                exchange.raw_query,
                exchange.status,
                exchange.started,
                size=exchange.size,
                transport=exchange.transport,
                downward=downward,
                answered=exchange.answered,
                closing=exchange.closing,
            )
        else:
            why = exchange.explained().partition(":")[0] or "answered by the gateway"
            flow.answered(exchange.method, exchange.path, exchange.raw_query, exchange.status, why, exchange.started)

    def _route(self, method: str, raw_path: str, upgrade: bool) -> Route | NoRoute:
        """`route`, remembered per method, raw path and upgrade for the paths that match (the model is immutable; a new
        one assigned to `model` starts afresh). At most `_ROUTES_CACHED` are kept."""
        if self._routes_model is not self.model:
            self._routes_model, self._routes = self.model, {}
        key = (method, raw_path, upgrade)
        match = self._routes.get(key)
        if match is None:
            match = route(self.model, method, raw_path, upgrade=upgrade)
            if isinstance(match, Route) and len(self._routes) < _ROUTES_CACHED:
                self._routes[key] = match
        return match

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange = _Exchange(method=request.method, target="?", started=time.monotonic())
        try:
            return await self._dispatch(request, exchange)
        except _Unforwardable as exc:
            return self._refuse(exchange, str(exc))
        except (asyncio.CancelledError, web.HTTPException):
            raise
        except Exception as exc:  # a bug: answer and log one line, never a traceback
            if exchange.status:  # already answered (or upgraded) and logged
                raise asyncio.CancelledError from exc
            return self._fail(exchange, f"gateway error ({type(exc).__name__})")

    def _refuse(self, exchange: _Exchange, why: str) -> web.Response:
        exchange.status = 400
        exchange.detail = f"Bad request: {why}"
        self._log(exchange)
        return self._respond(bad_request())

    async def _dispatch(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        raw_query = request.rel_url.raw_query_string
        exchange.target = redact_target(raw_path, raw_query, self._secret_query_names)
        upgrade = request.headers.get("Upgrade", "").strip().lower() == "websocket"
        if self._flow is not None:
            exchange.path, exchange.raw_query = raw_path, raw_query
        match = self._route(request.method, raw_path, upgrade)
        if isinstance(match, NoRoute):
            exchange.where = f"API {match.api.name}" if match.api else "no API"
            exchange.status = 404
            exchange.detail = f"Resource not found: {match.reason}"
            exchange.notes = tuple(
                self.reproduce.unmatched(
                    match, request.method, upgrade=upgrade, raw_path=raw_path, service=self.model.service
                )
            )
            self._log(exchange)
            return self._respond(resource_not_found())
        exchange.where = f"{match.api.name}/{match.operation_name}"
        check = check_subscription(match.api, request.headers, raw_query, self.subscription_keys)
        denial = check.denial(match.api, self._base_url or f"http://{request.host}")
        if denial is not None:
            exchange.status = denial.status
            exchange.detail = f"Access Denied: {check.describe(match.api)}"
            exchange.notes = tuple(self.reproduce.denied(request.method))
            self._log(exchange)
            return self._respond(denial)
        exchange.notes = tuple(self.reproduce.forwarded(match, request.headers.get("Host"), upgrade=upgrade))
        if match.is_websocket:
            return await self._relay_websocket(request, match, exchange)
        if upgrade:
            exchange.detail = "upgrade request to an HTTP API: forwarded as a plain request"
        return await self._forward_http(request, match, exchange)

    def _fail(self, exchange: _Exchange, why: str) -> web.Response:  # APIM's 500, for the backend's failures
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
        # An upgrade request to an HTTP API reaches the backend as a plain request (docs/apim.md §2, item 5).
        url, headers = _to_backend(request, match, keep_host=self.reproduce.keep_host)
        data: aiohttp.StreamReader | bytes | None = request.content if request.body_exists else None
        length = request.content_length
        if self._flow is not None and data is not None and length is not None and length <= MAX_KEEPALIVE_BODY:
            # Flow on: a body this small is read first, so that a client's Ping or Close is not reported as a message.
            data = await request.read()
            exchange.keepalive, exchange.closing = is_keepalive(data), is_close(data)
        try:
            async with asyncio.timeout(policy.timeout_s):
                backend = await self._session.request(
                    request.method, url, headers=headers, data=data, allow_redirects=False, **self._plain_request
                )
        except TimeoutError:
            return self._fail(exchange, f"no response headers from the backend within {policy.timeout_s} s")
        except aiohttp.InvalidURL as exc:
            raise _Unforwardable("the request target cannot be forwarded") from exc
        except aiohttp.ClientError as exc:
            return self._fail(exchange, _unreachable(url, exc))
        except (ValueError, UnicodeError) as exc:  # e.g. a control character or undecodable byte in a header
            raise _Unforwardable(f"a request header cannot be forwarded ({type(exc).__name__})") from exc

        response_type = _BufferedResponse if policy.buffer_response else web.StreamResponse
        response = response_type(status=backend.status, reason=backend.reason)
        for name, value in _end_to_end(backend.headers).items():
            response.headers.add(name, value)
        exchange.status = backend.status
        if backend.status >= 400:  # told apart from the gateway's own answers, which say why in their detail
            exchange.detail = _join(exchange.detail, f"answered by the backend at {url.raw_authority}")
        sent = 0
        stall = _Stall()
        flow = self._flow
        block: Callable[[bytes, float], None] | None = None
        negotiate: bytearray | None = None
        if flow is not None:
            block, negotiate = self._flow_response(flow, request, exchange, backend)

        async def write(data: bytes) -> None:
            nonlocal sent
            with stall.writing():
                if not response.prepared:
                    await response.prepare(request)
                started = time.monotonic()
                await response.write(data)
            sent += len(data)
            if block is not None:
                block(data, started)
            if negotiate is not None and len(negotiate) <= MAX_NEGOTIATE_BODY:
                negotiate.extend(data[: MAX_NEGOTIATE_BODY + 1 - len(negotiate)])

        async def copy() -> None:
            if policy.buffer_response:
                pending = bytearray()
                async for chunk in backend.content.iter_any():
                    pending += chunk
                    if len(pending) >= BUFFER_FLUSH_BYTES:
                        await write(bytes(pending))
                        pending.clear()
                if pending:
                    await write(bytes(pending))
            else:
                await response.prepare(request)
                async for chunk in backend.content.iter_any():
                    await write(chunk)
            with stall.writing():
                if not response.prepared:
                    await response.prepare(request)
                await response.write_eof()

        def backend_gone() -> bool:
            if backend.content.is_eof() or backend.content.exception() is not None:
                return True
            connection = backend.connection
            return connection is None or _peer_gone(_socket_of(connection.transport))

        finished = False
        client_transport = request.transport
        copying = asyncio.ensure_future(copy())
        try:
            # The copy can only notice the backend's end by reading, which it cannot do while it is blocked writing
            # to a client that does not read: that case is watched for here.
            await _done_or_until(copying, lambda: stall.stuck() and backend_gone())
            if not copying.done():
                # The backend has ended while the client has not been reading for CLOSE_GRACE_S: end the client's
                # side now instead of when it finally leaves.
                exchange.detail = _join(
                    exchange.detail, f"backend ended while the client was not reading; cut after {sent} bytes"
                )
                copying.cancel()
                _abort(client_transport)
            else:
                copying.result()
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
            if not copying.done():
                copying.cancel()
            if finished:
                backend.release()
            else:
                backend.close()
            if not policy.buffer_response:
                exchange.detail = _join(exchange.detail, "unbuffered")
            if flow is not None:
                exchange.size = sent
                if negotiate is not None and finished and len(negotiate) <= MAX_NEGOTIATE_BODY:
                    flow.learn_negotiate(bytes(negotiate))
            self._log(exchange)  # before the last await: a cancelled handler may not get past it
            await asyncio.gather(copying, return_exceptions=True)
        return response

    def _flow_response(
        self, flow: GatewayFlow, request: web.Request, exchange: _Exchange, backend: ClientResponse
    ) -> tuple[Callable[[bytes, float], None] | None, bytearray | None]:
        """Flow on: what a forwarded response reports. Returns the hop to make per block written (an event stream)
        and the buffer that collects a SignalR negotiate's answer (its connection id), each None when not needed."""
        exchange.forwarded = True
        exchange.answered = time.monotonic()
        if request.method == "GET" and "id=" in exchange.raw_query:
            event_stream = backend.headers.get("Content-Type", "").lower().startswith("text/event-stream")
            exchange.transport = "ServerSentEvents" if event_stream else "LongPolling"
            if event_stream:
                flow.stream_opened(request.method, exchange.path, exchange.raw_query, backend.status, exchange.started)
                connection_id, _, _ = flow.connection(exchange.raw_query)
                raw_query = exchange.raw_query
                return (lambda data, started: flow.stream_block(raw_query, connection_id, data, started)), None
        if request.method == "POST" and exchange.path.rstrip("/").endswith("/negotiate") and backend.status == 200:
            return None, bytearray()
        return None, None

    async def _relay_websocket(self, request: web.Request, match: Route, exchange: _Exchange) -> web.StreamResponse:
        assert self._session is not None
        exchange.upgrade = True
        url, headers = _to_backend(request, match, keep_host=self.reproduce.keep_host)
        # Every line counts: a client may spread its list over several (RFC 6455 §11.3.4).
        offered = request.headers.getall("Sec-WebSocket-Protocol", [])
        protocols = tuple(p.strip() for line in offered for p in line.split(",") if p.strip())
        # aiohttp refuses a message whose size reaches max_msg_size, as soon as its frame header says so.
        max_msg_size = self.max_ws_message + 1 if self.max_ws_message else 0
        try:
            async with asyncio.timeout(DEFAULT_TIMEOUT_S):  # a WebSocket API has no policy: the default applies
                backend = await self._session.ws_connect(
                    url,
                    headers=headers,
                    protocols=protocols,
                    autoclose=False,
                    autoping=True,
                    max_msg_size=max_msg_size,
                    compress=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_GRACE_S),
                )
        except BackendRefusedUpgrade as refusal:
            exchange.status = refusal.status
            exchange.forwarded = True
            exchange.detail = _join(exchange.detail, "backend refused the WebSocket handshake; client not upgraded")
            self._log(exchange)
            refused = CIMultiDict(refusal.headers)
            kept = _end_to_end(refused, drop=_REFUSAL_DROP)
            return web.Response(status=refusal.status, reason=refusal.reason or None, headers=kept, body=refusal.body)
        except aiohttp.WSServerHandshakeError as exc:
            exchange.status = exc.status
            exchange.forwarded = True
            exchange.detail = _join(
                exchange.detail, f"backend WebSocket handshake failed ({exc.message}); client not upgraded"
            )
            self._log(exchange)
            reason = _phrase(exc.status)
            return web.Response(status=exc.status, reason=reason, text=f"{exc.status} {reason}")
        except TimeoutError:
            return self._fail(exchange, f"no WebSocket handshake answer from the backend within {DEFAULT_TIMEOUT_S} s")
        except aiohttp.InvalidURL as exc:
            raise _Unforwardable("the request target cannot be forwarded") from exc
        except aiohttp.ClientError as exc:
            return self._fail(exchange, _unreachable(url, exc))
        except (ValueError, UnicodeError) as exc:
            raise _Unforwardable(f"a request header cannot be forwarded ({type(exc).__name__})") from exc

        client = web.WebSocketResponse(
            protocols=(backend.protocol,) if backend.protocol else (),
            autoclose=False,
            autoping=True,
            max_msg_size=max_msg_size,
            timeout=CLOSE_GRACE_S,  # how long a close frame waits for the client's answer
        )
        if backend.protocol:
            # The backend's choice goes back even when it came from a later line, which aiohttp's own choice
            # (first line only) would miss; aiohttp's client accepted it, so the client offered it.
            client.headers["Sec-WebSocket-Protocol"] = backend.protocol
        try:
            await client.prepare(request)
        except BaseException:
            await backend.close(code=1001, message=b"client handshake failed")
            raise
        exchange.status = 101
        exchange.forwarded = True
        exchange.detail = _join(exchange.detail, "WebSocket relayed")
        self._log(exchange)
        relay_flow: RelayFlow | None = None
        if self._flow is not None:
            connection_id = self._flow.upgrade(exchange.path, exchange.raw_query, 101, exchange.started)
            relay_flow = self._flow.relay(connection_id)
        self._sockets.add(client)
        client_transport = request.transport  # kept: aiohttp forgets it once it starts closing the connection
        relay = _Relay(
            client_gone=lambda: _peer_gone(_socket_of(client_transport)),
            backend_gone=lambda: _peer_gone(backend.get_extra_info("socket")),
            abort_client=lambda: _abort(client_transport),
            flow=relay_flow,
        )
        running = asyncio.ensure_future(relay.run(client, backend))
        try:
            try:
                await asyncio.shield(running)
            except asyncio.CancelledError:
                # The client's connection is gone (aiohttp cancels the handler): the relay notices it too; let it
                # end the backend's side with the right code (e.g. 1001 after the client's oversized message).
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(running), 3 * CLOSE_GRACE_S)
                raise
        finally:
            if not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            self._sockets.discard(client)
            if not backend.closed:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_GRACE_S):
                        await backend.close(code=1001, message=b"client connection lost")
            elapsed = time.monotonic() - exchange.started
            self._access(
                f"{exchange.method} {exchange.target} -> {exchange.where} websocket closed: "
                f"{relay.summary()} after {elapsed:.1f} s"
            )
        return client


def _one_line(text: str) -> str:
    """Control characters (CR, LF and the rest) escaped, so one record is one line."""
    if text.isprintable():  # the usual line: nothing to escape
        return text
    return "".join(c if c.isprintable() or c == " " else f"\\x{ord(c):02x}" for c in text)


def _unreachable(url: URL, exc: Exception) -> str:
    """The access log's reason for a backend that cannot be reached: which one, so a wrong ``--backend`` shows."""
    return f"backend unreachable ({type(exc).__name__}) at {url.raw_authority}: check --backend"


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
_MESSAGE_TOO_BIG = 1009


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
    too_big: bool = False


class _Relay:
    """One client WebSocket relayed to one backend WebSocket, and what happened to it.

    client_gone / backend_gone: whether that side's connection has ended, asked while a pump is blocked writing
        to the other side (which is then not reading) and so cannot receive that side's end.
    abort_client: cuts the client's connection without flushing (for a client that does not read).
    """

    def __init__(
        self,
        *,
        client_gone: Callable[[], bool] = lambda: False,
        backend_gone: Callable[[], bool] = lambda: False,
        abort_client: Callable[[], None] = lambda: None,
        flow: RelayFlow | None = None,
    ) -> None:
        self.up = 0  # messages client → backend
        self.down = 0  # messages backend → client
        self.outcome = "client connection lost"
        self._client_gone = client_gone
        self._backend_gone = backend_gone
        self._abort_client = abort_client
        self._stalls = {True: _Stall(), False: _Stall()}  # by direction: upward or not
        self._flow = flow  # None unless flow is on: one hop per relayed message

    def summary(self) -> str:
        return f"{self.outcome}; {self.up} messages up, {self.down} down"

    async def _pump(self, source: _Socket, sink: _Socket, upward: bool) -> _PumpEnd:
        flow = self._flow
        received = 0.0
        while True:
            msg = await source.receive()
            if flow is not None:
                received = time.monotonic()  # the hop begins when the gateway has the message
            try:
                if msg.type is WSMsgType.TEXT:
                    with self._stalls[upward].writing():
                        await sink.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    with self._stalls[upward].writing():
                        await sink.send_bytes(msg.data)
                elif msg.type is WSMsgType.CLOSE:
                    return _PumpEnd(True, msg.data, msg.extra or "")
                elif msg.type is WSMsgType.ERROR and getattr(msg.data, "code", None) == _MESSAGE_TOO_BIG:
                    # aiohttp has already closed the source with 1009; nothing of the message was buffered.
                    return _PumpEnd(False, _MESSAGE_TOO_BIG, str(msg.data), too_big=True)
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
            if flow is not None:
                flow.message(upward, msg.data, received)

    async def _close(self, ws: _Socket, code: int, reason: bytes) -> None:
        """Send a close frame and wait at most `CLOSE_GRACE_S` for the answer; then cut the connection."""
        answered = False
        with contextlib.suppress(Exception):  # a peer that does not answer, or is gone, is cut below
            async with asyncio.timeout(CLOSE_GRACE_S):
                await ws.close(code=code, message=reason)
            answered = ws.close_code != 1006  # aiohttp's own wait for the answer ran out
        if isinstance(ws, web.WebSocketResponse) and not answered:
            self._abort_client()

    def _ended_while_stuck(self) -> bool:
        return (self._stalls[True].stuck() and self._client_gone()) or (
            self._stalls[False].stuck() and self._backend_gone()
        )

    async def run(self, client: web.WebSocketResponse, backend: aiohttp.ClientWebSocketResponse) -> None:
        """Relay messages both ways until one side closes, is lost or resets; then end the other side at once
        with the same code and reason (1001 if the connection was lost without a close frame; 1009 to the sender
        of a message that is too big, and 1001 to the backend / 1011 to the client on the other side)."""
        up = asyncio.create_task(self._pump(client, backend, upward=True))
        down = asyncio.create_task(self._pump(backend, client, upward=False))
        watch = asyncio.create_task(_until(self._ended_while_stuck))
        try:
            await asyncio.wait((up, down, watch), return_when=asyncio.FIRST_COMPLETED)
            if not up.done() and not down.done():
                # One side ended while the pump reading it was blocked writing to the other, which does not read.
                client_ended = self._stalls[True].stuck() and self._client_gone()
                who, other = ("client", backend) if client_ended else ("backend", client)
                self.outcome = f"{who} connection ended while the other side was not reading; closed with 1001"
                if client_ended:
                    self._abort_client()
                await self._close(other, 1001, f"{who} connection lost".encode())
                return
            first_up = up.done()
            end = _result(up if first_up else down)
            if end is None or end.sink_failed:
                # The side we could not write to ended; its own pump knows how.
                await asyncio.wait((up, down), timeout=CLOSE_GRACE_S)
                first_up = not first_up
                end = _result(up if first_up else down) or _PumpEnd(False)
            origin, other = (client, backend) if first_up else (backend, client)
            who = "client" if first_up else "backend"
            if end.too_big:
                code = 1001 if first_up else 1011
                self.outcome = f"{who} sent a message over the size limit: closed with 1009, the other side with {code}"
                await self._close(other, code, f"{who} message too big".encode())
                await self._close(origin, _MESSAGE_TOO_BIG, b"message too big")
            elif end.closed_by_peer:
                code = _sendable_close_code(end.code)
                reason = end.reason.encode()[:123]
                self.outcome = f"{who} closed with {end.code} {end.reason!r}, forwarded as {code}"
                await self._close(other, code, reason)
                await self._close(origin, code, reason)
            else:
                self.outcome = f"{who} connection lost, other side closed with 1001"
                await self._close(other, 1001, f"{who} connection lost".encode())
            await asyncio.wait((up, down), timeout=CLOSE_GRACE_S)
        finally:
            for task in (up, down, watch):
                if not task.done():
                    task.cancel()
            await asyncio.gather(up, down, watch, return_exceptions=True)


def _result(task: asyncio.Task[_PumpEnd]) -> _PumpEnd | None:
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()
