"""The client-facing WebSocket transport on ``/client/`` (``docs/protocol.md`` §3.5), and the dispatch of a connect
``GET`` to it, to Server-Sent Events or to LongPolling (``emulator/http_transports.py``).

Thin aiohttp handlers over :class:`emulator.connection.ClientConnection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import struct
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from signalr.hub_protocol import HubProtocol
from signalr.negotiate import TransportType
from signalr.protocols import PROTOCOLS
from signalr.redact import redact_text

from .answers import Refused, hub_query, plain_text
from .auth import ClientIdentity
from .client_requests import authenticate, check_transport, find_connection, service_of, start_transport
from .connection import ClientConnection
from .http_transports import long_poll, server_sent_events
from .hub import SignalRService

__all__ = ["connect"]

log = logging.getLogger("emulator")

_WS_CLOSE_TIMEOUT = 5.0  # §0.1: server WebSocket close timeout


# --- connect: GET ------------------------------------------------------------------------------------------------


async def connect(request: web.Request) -> web.StreamResponse:
    """``GET /client/?hub=…&id=…``: a WebSocket upgrade (served right here: a WebSocket keeps this call for its whole
    life, so it is one frame, not two), an SSE stream (``Accept: text/event-stream``) or a poll."""
    try:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if "text/event-stream" in request.headers.get("Accept", ""):
                return await server_sent_events(request)
            return await long_poll(request)
        service, connection, ws = _accept_websocket(request)
    except Refused as refused:
        return refused.response
    sink: _WebSocketSink | None = None
    try:
        await ws.prepare(request)
        if service.flow.enabled:
            service.flow.connected(connection)
        sink = _WebSocketSink(ws, connection, request)
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
        writer = sink.task if sink is not None else None
        if writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({writer}, timeout=_WS_CLOSE_TIMEOUT + 1)
            if not writer.done():
                writer.cancel()
        service.forget(connection)
    return ws


def _new_websocket_connection(request: web.Request) -> tuple[ClientConnection, ClientIdentity]:
    """A WebSocket without ``id=`` skips negotiate and gets a new connection, as in ASP.NET Core (§3.5)."""
    hub = hub_query(request)
    identity = authenticate(request, hub, allow_query=True)
    service = service_of(request)
    negotiated = service.new_connection(hub, negotiate_version=0, user_id=identity.user_id, claims=identity.claims)
    negotiated.owner = identity.owner
    connection = service.lookup(negotiated.connection_token)
    assert connection is not None  # made from the negotiation just now
    return connection, identity


def _accept_websocket(request: web.Request) -> tuple[SignalRService, ClientConnection, _ClientWebSocket]:
    """The connection a WebSocket upgrade starts, with its transport bound, and the socket to prepare; refuses
    (:class:`Refused`) what ASP.NET Core refuses before the upgrade."""
    service = service_of(request)
    if request.rel_url.query.get("id"):
        connection, identity = find_connection(request, allow_query_token=True)
    else:
        connection, identity = _new_websocket_connection(request)
    if connection.closed:
        raise Refused(plain_text(404, "No Connection with that ID"))
    check_transport(connection, TransportType.WEBSOCKETS)
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
    start_transport(connection, TransportType.WEBSOCKETS, request, identity)
    return service, connection, ws


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
        self._max_message_size = max_message_size

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed:
            connection = self._connection
            # The record reader's text, so a too-large message reads the same whichever check caught it.
            too_big = f"The message exceeded the maximum message size of {self._max_message_size} bytes."
            log.info("closing hub=%s id=%s: %s (1009)", connection.hub, connection.connection_id, too_big)
            # Once the handshake is done, closing queues the Close message (the emulator's own, or for a carried
            # client the one the service adds); it goes out right here, ahead of the close frame.
            connection.close(too_big)
            pending = connection.take_outgoing()
            if pending:
                with contextlib.suppress(Exception):
                    await self.send_frame(pending, _frame_type(connection))
            message = message or too_big.encode()
        return await super().close(code=code, message=message, drain=drain)


class _WebSocketSink:
    """How a client's records reach its WebSocket: written straight to the socket by the sender while nothing is
    waiting before them and the socket takes them (:meth:`push`, the common case: no task, no wake-up, and one frame
    built per broadcast, not per recipient), else queued on the connection and sent by a writer task that exists only
    while there is a queue to drain or a close to do (:meth:`kick`). An idle connection has no task."""

    __slots__ = ("_binary", "connection", "task", "transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, connection: ClientConnection, request: web.Request) -> None:
        self.ws = ws
        self.connection = connection
        self.transport = request.transport
        self.task: asyncio.Task[None] | None = None
        self._binary: bool | None = None  # the frame type, known once the handshake is answered
        connection.attach_sink(self.push, self.kick)

    def push(self, record: bytes) -> bool:
        """Write ``record`` as one frame now if the socket is open and its buffer below the high-water mark (else
        the caller queues it and :meth:`kick` s). Only called once the handshake is answered."""
        transport = self.transport
        if (
            transport is None
            or self.ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() > _DIRECT_WRITE_LIMIT
        ):
            return False
        binary = self._binary
        if binary is None:
            binary = self._binary = self.connection.binary
        transport.write(_frame(record, binary))
        return True

    def kick(self) -> None:
        """Something was queued (or the connection closed): start the writer unless it runs."""
        if self.task is None:
            self.task = asyncio.create_task(self._drain(), name=f"ws-writer-{self.connection.connection_id}")

    async def _drain(self) -> None:
        """Send what is queued as text or binary frames (:func:`_frame_type`) until nothing is; once the connection
        is closed, close the socket with 1000."""
        connection = self.connection
        ws = self.ws
        try:
            while data := connection.take_outgoing():
                await ws.send_frame(data, _frame_type(connection))
            transport = self.transport
            if connection.closed and not ws.closed and transport is not None and not transport.is_closing():
                # (Closing a socket that is already gone would only keep aiohttp's error, whose traceback refers back
                # to the socket: a cycle that only a full collection frees.)
                await ws.close(code=1000)
        except Exception as exc:  # the socket is gone (reset, aborted, closing): nothing left to send to
            log.debug("websocket writer ended id=%s: %r", connection.connection_id, exc)
            connection.discard_outgoing()
        finally:
            self.task = None


_DIRECT_WRITE_LIMIT = 64 * 1024  # asyncio's default high-water mark: past it, records queue on the connection
_last_frame: tuple[bytes, bool, bytes] = (b"", False, b"")


def _frame(record: bytes, binary: bool) -> bytes:
    """``record`` as one unmasked, final WebSocket frame (RFC 6455 §5.2), text or binary. A broadcast hands every
    recipient the same bytes object, so the last frame is kept and reused while the same record comes again."""
    global _last_frame
    last_record, last_binary, frame = _last_frame
    if record is last_record and binary is last_binary:
        return frame
    length = len(record)
    first = 0x82 if binary else 0x81
    if length < 126:
        header = bytes((first, length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    frame = header + record
    _last_frame = (record, binary, frame)
    return frame
