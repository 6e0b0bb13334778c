"""The client-facing HTTP surface: negotiate, then WebSockets, Server-Sent Events and LongPolling on ``/client/``.

Thin aiohttp handlers over :class:`emulator.connection.ClientConnection`; status codes and error strings are those
of ASP.NET Core's connection dispatcher (``docs/protocol.md`` §3). Auth: ``Authorization: Bearer`` everywhere, the
``access_token`` query only on a WebSocket upgrade or an SSE GET, and only without the header (trap 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from signalr.hub_protocol import HubProtocol
from signalr.negotiate import NegotiateError, TransportType, requested_version, service_negotiate_response
from signalr.protocols import PROTOCOLS
from signalr.query import split_query
from signalr.redact import redact_text
from signalr.sse import SSE_PREAMBLE, encode_event

from .answers import Refused, hub_query, plain_text, request_line, unauthorized
from .auth import ClientIdentity, Unauthorized, authenticate_client
from .connection import ClientConnection
from .hub import SERVICE_KEY, SignalRService
from .server_connections import request_headers

__all__ = ["connect", "connect_delete", "connect_send", "negotiate", "preflight"]

log = logging.getLogger("emulator")

NO_CACHE: Mapping[str, str] = {
    "Cache-Control": "no-cache, no-store",
    "Pragma": "no-cache",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}
SSE_HEADERS: Mapping[str, str] = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache,no-store",
    "Pragma": "no-cache",
    "Content-Encoding": "identity",
}
# Query keys kept out of X-ASRS-Client-Query (and OpenConnection): the connection token and the access token are
# secrets, ``_`` is noise; these match exactly, as the service reads them. An APIM subscription key is a secret too and
# is dropped whatever its case.
_PRIVATE_QUERY_KEYS = frozenset({"id", "access_token", "_"})
_SUBSCRIPTION_KEY = "subscription-key"
_WS_CLOSE_TIMEOUT = 5.0  # §0.1: server WebSocket close timeout


def _service(request: web.Request) -> SignalRService:
    return request.app[SERVICE_KEY]


def _authenticate(request: web.Request, hub: str, *, allow_query: bool) -> ClientIdentity:
    try:
        return authenticate_client(request, hub, _service(request).settings.access_key, allow_query=allow_query)
    except Unauthorized as exc:
        log.info("401 %s: %s", request_line(request), exc)
        raise Refused(unauthorized(exc)) from None


def _client_query(request: web.Request) -> str:
    """``X-ASRS-Client-Query``: the connect query with ``?``, without the secrets and the cache buster."""
    kept = [
        part.raw
        for part in split_query(request.rel_url.raw_query_string)
        if part.raw and part.name not in _PRIVATE_QUERY_KEYS and part.name.lower() != _SUBSCRIPTION_KEY
    ]
    return "?" + "&".join(kept) if kept else ""


def _find_connection(request: web.Request, *, allow_query_token: bool) -> tuple[ClientConnection, ClientIdentity]:
    """The connection named by ``id=`` and the request's identity, after auth. Refuses 400 / 401 / 404 with
    ASP.NET's texts."""
    token = request.rel_url.query.get("id")
    if not token:
        raise Refused(plain_text(400, "Connection ID required"))
    service = _service(request)
    connection = service.lookup(token)
    hub = hub_query(request, default=connection.hub if connection else None)
    identity = _authenticate(request, hub, allow_query=allow_query_token)
    if connection is None or connection.hub != hub:
        raise Refused(plain_text(404, "No Connection with that ID"))
    if connection.owner != identity.owner:
        # As ASP.NET Core refuses a request whose NameIdentifier differs from the negotiating user's: the token in
        # ``id=`` alone must not let another identity send as, read from or stop this connection.
        log.info(
            "403 %s: the access token is not the one of the identity that negotiated id=%s",
            request_line(request),
            connection.connection_id,
        )
        raise Refused(plain_text(403, "Forbidden"))
    return connection, identity


def _start_transport(
    connection: ClientConnection, transport: TransportType, request: web.Request, identity: ClientIdentity
) -> None:
    """Bind the transport. As in ASP.NET Core, the user is the one of the request that starts the transport."""
    connection.user_id = identity.user_id
    connection.claims = identity.claims
    connection.client_query = _client_query(request)
    connection.request_headers = request_headers(request.headers.items())
    connection.attach(transport)
    if transport is not TransportType.LONG_POLLING and request.transport is not None:
        # A WebSocket or an event stream owns its socket, so dropping the connection may cut it; polls come and go.
        connection.abort_transport = request.transport.abort


def _check_transport(connection: ClientConnection, wanted: TransportType) -> None:
    if connection.transport is None:
        return
    if connection.transport is not wanted:
        raise Refused(plain_text(400, "Cannot change transports mid-connection"))
    if wanted is not TransportType.LONG_POLLING:
        # A second WebSocket or event stream on one id (§3.5).
        raise Refused(plain_text(409, "Connection is already active."))


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight for negotiate and connect (trap 18); the allow-origin headers are added on prepare."""
    headers = {
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Access-Control-Max-Age": "600",
    }
    requested = request.headers.get("Access-Control-Request-Headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    return web.Response(status=204, headers=headers)


# --- negotiate ---------------------------------------------------------------------------------------------------


async def negotiate(request: web.Request) -> web.Response:
    """``POST /client/negotiate?hub=…`` (§3.2, §3.3): a new connection id and token, v0 or v1."""
    try:
        hub = hub_query(request)
        identity = _authenticate(request, hub, allow_query=False)
    except Refused as refused:
        return refused.response
    try:
        version = requested_version(request.rel_url.query_string)
    except NegotiateError as exc:
        return web.json_response({"error": str(exc)})
    if version < 0:
        error = f"The client requested version '{version}', but the server does not support this version."
        return web.json_response({"error": error})
    connection = _service(request).new_connection(
        hub,
        negotiate_version=version,
        user_id=identity.user_id,
        claims=identity.claims,
        client_query=_client_query(request),
    )
    connection.owner = identity.owner
    log.info("negotiate hub=%s id=%s version=%d", hub, connection.connection_id, version)
    flow = _service(request).flow
    if flow.enabled:
        flow.negotiated(connection, version)
    body = service_negotiate_response(connection.connection_id, connection.connection_token, version)
    return web.Response(body=body, content_type="application/json")


# --- connect: GET ------------------------------------------------------------------------------------------------


async def connect(request: web.Request) -> web.StreamResponse:
    """``GET /client/?hub=…&id=…``: a WebSocket upgrade, an SSE stream (``Accept: text/event-stream``) or a poll."""
    try:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _websocket(request)
        if "text/event-stream" in request.headers.get("Accept", ""):
            return await _server_sent_events(request)
        return await _long_poll(request)
    except Refused as refused:
        return refused.response


def _new_websocket_connection(request: web.Request) -> tuple[ClientConnection, ClientIdentity]:
    """A WebSocket without ``id=`` skips negotiate and gets a new connection, as in ASP.NET Core (§3.5)."""
    hub = hub_query(request)
    identity = _authenticate(request, hub, allow_query=True)
    connection = _service(request).new_connection(
        hub, negotiate_version=0, user_id=identity.user_id, claims=identity.claims, client_query=_client_query(request)
    )
    connection.owner = identity.owner
    return connection, identity


async def _websocket(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    if request.rel_url.query.get("id"):
        connection, identity = _find_connection(request, allow_query_token=True)
    else:
        connection, identity = _new_websocket_connection(request)
    if connection.closed:
        raise Refused(plain_text(404, "No Connection with that ID"))
    _check_transport(connection, TransportType.WEBSOCKETS)
    # One WebSocket message holds at most one hub message of max_message_size bytes plus its framing. Azure
    # SignalR Service documents a 1 MB limit for client messages over LongPolling and SSE and none for WebSockets
    # (https://learn.microsoft.com/azure/azure-signalr/signalr-concept-messages-and-connections#message-size); the
    # emulator applies its limit to every transport. aiohttp refuses a longer message from its length header, before
    # buffering it (it accepts payloads strictly below max_msg_size), and the close then says 1009.
    ws = _ClientWebSocket(
        connection,
        service.settings.max_message_size,
        autoping=True,
        timeout=_WS_CLOSE_TIMEOUT,
        max_msg_size=_largest_framed(service.settings.max_message_size) + 1,
        compress=False,
    )
    if not ws.can_prepare(request).ok:
        raise Refused(plain_text(400, "Not a valid WebSocket request."))
    _start_transport(connection, TransportType.WEBSOCKETS, request, identity)
    writer: asyncio.Task[None] | None = None
    try:
        await ws.prepare(request)
        if service.flow.enabled:
            service.flow.connected(connection)
        writer = asyncio.create_task(_websocket_writer(ws, connection), name=f"ws-writer-{connection.connection_id}")
        max_size = service.settings.max_message_size
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = message.data.encode("utf-8") if message.type is WSMsgType.TEXT else message.data
                protocol = connection.protocol
                if protocol is not None and len(data) > _framed_size(protocol, max_size):
                    # aiohttp's limit fits the longest framing of any protocol; once the protocol is known, a
                    # message longer than its own framing allows gets the same 1009 (a few bytes more were read).
                    await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG)
                    break
                await connection.receive_data(data)
            elif message.type is WSMsgType.ERROR:
                log.info("websocket error id=%s: %s", connection.connection_id, redact_text(str(ws.exception())))
                break
            if connection.closed:
                break
    finally:
        if not connection.closed:
            code = ws.close_code
            error = None if code in (None, 1000, 1001) else f"WebSocket closed with status code {code}."
            connection.close(error, by_peer=True)
        if writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({writer}, timeout=_WS_CLOSE_TIMEOUT + 1)
            if not writer.done():
                writer.cancel()
        service.forget(connection)
    return ws


def _largest_framed(max_message_size: int) -> int:
    """The longest one hub message of ``max_message_size`` bytes gets once framed, in any protocol (the handshake,
    JSON text with a separator, is no longer)."""
    return max(_framed_size(protocol, max_message_size) for protocol in PROTOCOLS.values())


def _framed_size(protocol: HubProtocol, max_message_size: int) -> int:
    """How long one message of ``max_message_size`` bytes is once ``protocol`` framed it."""
    return _framed_size_by_name(protocol.name, max_message_size)


@functools.cache
def _framed_size_by_name(name: str, max_message_size: int) -> int:
    # Framed once per protocol and size (a zero-filled buffer of the limit's size), then remembered.
    return len(PROTOCOLS[name].frame(bytes(max_message_size)))


def _frame_type(connection: ClientConnection) -> WSMsgType:
    """Binary frames for a binary hub protocol (MessagePack), text frames otherwise (JSON, handshake errors)."""
    return WSMsgType.BINARY if connection.binary else WSMsgType.TEXT


class _ClientWebSocket(web.WebSocketResponse):
    """A client's WebSocket: a message over the size limit ends the hub connection with a Close message (when it is
    open) and the socket with 1009 and a reason, instead of aiohttp's bare 1009."""

    def __init__(self, connection: ClientConnection, max_message_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._connection = connection
        # The record reader's text, so a too-large message reads the same whichever check caught it.
        self._too_big = f"The message exceeded the maximum message size of {max_message_size} bytes."

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed:
            connection = self._connection
            log.info("closing hub=%s id=%s: %s (1009)", connection.hub, connection.connection_id, self._too_big)
            # Once the handshake is done, closing queues the Close message (the emulator's own, or for a carried
            # client the one the service adds); it goes out right here, ahead of the close frame.
            connection.close(self._too_big)
            pending = connection.take_outgoing()
            if pending:
                with contextlib.suppress(Exception):
                    await self.send_frame(pending, _frame_type(connection))
            message = message or self._too_big.encode()
        return await super().close(code=code, message=message, drain=drain)


async def _websocket_writer(ws: web.WebSocketResponse, connection: ClientConnection) -> None:
    """Send queued records as text or binary frames (:func:`_frame_type`); after the connection closes, flush and close
    the socket with 1000."""
    try:
        while True:
            data = connection.take_outgoing()
            if data:
                await ws.send_frame(data, _frame_type(connection))
                continue
            if connection.closed:
                break
            waiter = connection.idle()
            if waiter is not None:
                await waiter
        await ws.close(code=1000)
    except Exception as exc:  # the socket is gone (reset, aborted, closing): nothing left to send to
        log.debug("websocket writer ended id=%s: %r", connection.connection_id, exc)


async def _server_sent_events(request: web.Request) -> web.StreamResponse:
    """§3.6: ``:\\r\\n`` first, then one event per flush of the outbound queue, each written at once."""
    service = _service(request)
    connection, identity = _find_connection(request, allow_query_token=True)
    if connection.closed:
        raise Refused(plain_text(404, "No Connection with that ID"))
    _check_transport(connection, TransportType.SERVER_SENT_EVENTS)
    _start_transport(connection, TransportType.SERVER_SENT_EVENTS, request, identity)
    response = web.StreamResponse(headers=SSE_HEADERS)
    try:
        await response.prepare(request)
        await response.write(SSE_PREAMBLE)
        if service.flow.enabled:
            service.flow.connected(connection)
        while True:
            data = connection.take_outgoing()
            if data:
                await response.write(encode_event(data))
                continue
            if connection.closed:
                break
            waiter = connection.idle()
            if waiter is not None:
                await waiter
        await response.write_eof()
    except ConnectionError as exc:
        log.debug("event stream ended id=%s: %s", connection.connection_id, exc)
    finally:
        # The SSE client stops by dropping the TCP connection (§3.6): that is a normal close.
        if not connection.closed:
            connection.close(None, by_peer=True)
        service.forget(connection)
    return response


def _poll_response(data: bytes | None) -> web.Response:
    """A poll's answer (§3.7): 200 with the records (empty: poll again), or 204 for ``None`` (closed or superseded)."""
    if data is None:
        return web.Response(status=204, headers=NO_CACHE)
    return web.Response(status=200, body=data, content_type="application/octet-stream", headers=NO_CACHE)


async def _long_poll(request: web.Request) -> web.StreamResponse:
    """§3.7: first poll 200 empty at once; later polls held until data, timeout (200 empty) or close (204)."""
    service = _service(request)
    connection, identity = _find_connection(request, allow_query_token=False)
    _check_transport(connection, TransportType.LONG_POLLING)
    if connection.transport is None:
        _start_transport(connection, TransportType.LONG_POLLING, request, identity)
        connection.end_poll(connection.begin_poll())
        if service.flow.enabled:
            service.flow.connected(connection)
        return _poll_response(b"")
    generation = connection.begin_poll()
    deadline = time.monotonic() + service.settings.poll_timeout
    try:
        while True:
            if connection.poll_superseded(generation):
                return _poll_response(None)
            data = connection.take_outgoing()
            if data:
                if service.flow.enabled:
                    service.flow.polled(connection, len(data))
                return _poll_response(data)
            if connection.closed:
                service.forget(connection)
                return _poll_response(None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _poll_response(b"")
            await connection.wait(remaining)
    finally:
        connection.end_poll(generation)


# --- connect: POST and DELETE ------------------------------------------------------------------------------------


async def connect_send(request: web.Request) -> web.Response:
    """§3.8: ``POST /client/?id=…`` carries one or more records from an SSE or LongPolling client."""
    try:
        connection, _ = _find_connection(request, allow_query_token=False)
    except Refused as refused:
        return refused.response
    if connection.transport is TransportType.WEBSOCKETS:
        return plain_text(405, "POST requests are not allowed for WebSocket connections.")
    if connection.closed:
        return web.Response(status=404)
    async with connection.post_lock:
        # Fed chunk by chunk: the record reader bounds each record, so a huge body cannot grow memory.
        async for chunk in request.content.iter_any():
            await connection.receive_data(chunk)
            if connection.closed:
                break
    return web.Response(status=200, headers=NO_CACHE)


async def connect_delete(request: web.Request) -> web.Response:
    """§3.9: ``DELETE /client/?id=…`` ends a LongPolling connection: 202, and the pending poll answers 204."""
    try:
        connection, _ = _find_connection(request, allow_query_token=False)
    except Refused as refused:
        return refused.response
    if connection.transport is not TransportType.LONG_POLLING:
        return plain_text(400, "Cannot terminate this connection using the DELETE endpoint.")
    connection.close(None, by_peer=True)
    connection.discard_outgoing()
    if not connection.polling:
        _service(request).forget(connection)
    return web.Response(status=202, content_type="text/plain", headers=NO_CACHE)
