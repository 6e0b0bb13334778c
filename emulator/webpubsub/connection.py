"""One Web PubSub client connection: who it is, what it may do, and the frames waiting for its WebSocket.

A connection speaks one of three dialects, fixed at connect: ``json.webpubsub.azure.v1``, the reliable
``json.reliable.webpubsub.azure.v1`` (every message carries a ``sequenceId``; the connection outlives a dropped
WebSocket for a while and resends what was not acknowledged), or none ("simple" WebSocket clients, which get message
data as raw text or binary frames: https://learn.microsoft.com/azure/azure-web-pubsub/concept-client-protocols).

The WebSocket handler attaches a socket (:meth:`ClientConnection.attach`), runs a writer that takes queued frames
(:meth:`ClientConnection.take_outgoing`) and waits for more (:meth:`ClientConnection.idle`), and detaches when the
socket ends. Senders call :meth:`ClientConnection.deliver` with an :class:`Outgoing` message, which holds the frame
bytes encoded once per dialect, shared by every recipient (a reliable recipient only prefixes its sequence id).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from webpubsub.subprotocol import (
    JSON_SUBPROTOCOL,
    RELIABLE_JSON_SUBPROTOCOL,
    Ack,
    AckError,
    Connected,
    DataType,
    Disconnected,
    GroupMessage,
    Response,
    ServerMessage,
    encode_response,
)

from ..waker import Waker

__all__ = ["ClientConnection", "Dialect", "Outgoing", "new_connection_id", "ws_frame"]

log = logging.getLogger("webpubsub.emulator")

_TEXT = 0x81  # FIN + text opcode
_BINARY = 0x82  # FIN + binary opcode


def ws_frame(payload: bytes, binary: bool = False) -> bytes:
    """``payload`` as one complete, unmasked WebSocket frame (RFC 6455 §5.2), as a server sends it. The bytes are the
    same for every recipient, so a broadcast builds them once and writes them to each socket as they are."""
    first = _BINARY if binary else _TEXT
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 65536:
        header = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + size.to_bytes(8, "big")
    return header + payload


def _header(size: int) -> bytes:
    if size < 126:
        return bytes((_TEXT, size))
    if size < 65536:
        return bytes((_TEXT, 126)) + size.to_bytes(2, "big")
    return bytes((_TEXT, 127)) + size.to_bytes(8, "big")


_ROLE_JOIN = "webpubsub.joinLeaveGroup"
_ROLE_SEND = "webpubsub.sendToGroup"
_MAX_ACK_IDS = 65_536


class Dialect:
    """The three ways a connection is spoken to (:attr:`ClientConnection.dialect`)."""

    JSON = "json"
    RELIABLE = "reliable"
    PLAIN = "plain"


def dialect_of(subprotocol: str | None) -> str:
    if subprotocol == RELIABLE_JSON_SUBPROTOCOL:
        return Dialect.RELIABLE
    if subprotocol == JSON_SUBPROTOCOL:
        return Dialect.JSON
    return Dialect.PLAIN


def new_connection_id() -> str:
    """A random connection id (22 URL-safe characters, like the service's)."""
    return secrets.token_urlsafe(16)


class Outgoing:
    """One message for many recipients (a group, a user, the hub, or one connection), encoded lazily once per dialect:
    every recipient of a dialect gets the same bytes object."""

    __slots__ = ("_json", "_json_wire", "_plain", "data", "data_type", "from_user_id", "group")

    def __init__(self, data_type: DataType, data: Any, *, group: str | None = None, from_user_id: str | None = None):
        self.data_type = data_type
        self.data = data
        self.group = group
        self.from_user_id = from_user_id
        self._json: bytes | None = None
        self._json_wire: bytes | None = None
        self._plain: bytes | None = None

    @property
    def json_frame(self) -> bytes:
        """The ``message`` response without ``sequenceId``, as UTF-8."""
        frame = self._json
        if frame is None:
            response: Response
            if self.group is not None:
                response = GroupMessage(self.group, self.data_type, self.data, self.from_user_id)
            else:
                response = ServerMessage(self.data_type, self.data)
            frame = self._json = encode_response(response).encode("utf-8")
        return frame

    @property
    def json_wire(self) -> bytes:
        """:attr:`json_frame` as a complete WebSocket text frame."""
        wire = self._json_wire
        if wire is None:
            wire = self._json_wire = ws_frame(self.json_frame)
        return wire

    def reliable_wire(self, sequence_id: int) -> bytes:
        """The ``message`` response with ``sequenceId`` first, as a WebSocket text frame: the shared encoding with a
        per-recipient prefix."""
        prefix = b'{"sequenceId":%d,' % sequence_id
        tail = memoryview(self.json_frame)[1:]
        return b"".join((_header(len(prefix) + len(tail)), prefix, tail))

    @property
    def plain_wire(self) -> bytes:
        """What a simple WebSocket client gets, as a frame: text as text, JSON as its text, binary as binary."""
        wire = self._plain
        if wire is None:
            if self.data_type is DataType.BINARY:
                wire = ws_frame(bytes(self.data), binary=True)
            elif self.data_type is DataType.TEXT:
                # A text frame must be UTF-8: a lone surrogate (JSON "\udcff" decodes to one) becomes "?".
                wire = ws_frame(str(self.data).encode("utf-8", "replace"))
            else:
                text = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
                try:
                    payload = text.encode("utf-8")
                except UnicodeEncodeError:
                    payload = json.dumps(self.data, separators=(",", ":"), allow_nan=False).encode("ascii")
                wire = ws_frame(payload)
            self._plain = wire
        return wire


class ClientConnection(Waker):
    """A connected client (for a reliable one: its session, which may be between WebSockets).

    The hub registers it once the connect event accepted it, and forgets it when :meth:`close` is called or a
    reliable session's reconnect window passes.
    """

    __slots__ = (
        "_buffered",
        "_outbox",
        "_protocol",
        "_transport",
        "abort_socket",
        "ack_ids",
        "claims",
        "close_code",
        "close_reason",
        "closed",
        "connection_id",
        "detached_at",
        "dialect",
        "groups",
        "hub",
        "max_buffer_size",
        "next_sequence_id",
        "query",
        "reconnection_token",
        "request_headers",
        "roles",
        "socket_attached",
        "socket_generation",
        "states",
        "subprotocol",
        "system_events",
        "unacked",
        "unacked_bytes",
        "user_id",
    )

    def __init__(
        self,
        *,
        hub: str,
        connection_id: str,
        user_id: str | None,
        roles: set[str],
        subprotocol: str | None,
        claims: dict[str, Any],
        max_buffer_size: int,
    ) -> None:
        self.hub = hub
        self.connection_id = connection_id
        self.user_id = user_id
        self.roles = roles
        self.subprotocol = subprotocol
        self.dialect = dialect_of(subprotocol)
        self.claims = claims
        self.query: dict[str, list[str]] = {}
        self.request_headers: dict[str, list[str]] = {}
        self.groups: set[str] = set()
        self.states: str | None = None  # ce-connectionState as the event handler last set it
        self.max_buffer_size = max_buffer_size
        self.ack_ids: set[int] = set()
        # Reliable sessions: the secret that resumes this connection, and the frames not acknowledged yet.
        self.reconnection_token = secrets.token_urlsafe(32) if self.dialect == Dialect.RELIABLE else None
        self.next_sequence_id = 1
        self.unacked: collections.deque[tuple[int, bytes]] = collections.deque()
        self.unacked_bytes = 0
        self.socket_attached = False
        self.socket_generation = 0
        self.detached_at: float | None = None
        self.closed = False
        self.close_code = 1000
        self.close_reason: str | None = None
        # The connected event's task: later events of this connection wait for it (they go out in order).
        self.system_events: asyncio.Task[None] | None = None
        self.abort_socket: Callable[[], None] | None = None
        self._outbox: list[bytes] = []
        # The socket's transport and aiohttp protocol while one is attached (:meth:`use_transport`): a frame goes
        # straight to the socket when nothing is queued before it and the socket is not congested.
        self._transport: asyncio.Transport | None = None
        self._protocol: Any = None
        self._buffered = 0
        Waker.__init__(self)

    # --- permissions ----------------------------------------------------------------------------------------------

    def may_join(self, group: str) -> bool:
        """``webpubsub.joinLeaveGroup`` or ``webpubsub.joinLeaveGroup.<group>``."""
        return _ROLE_JOIN in self.roles or f"{_ROLE_JOIN}.{group}" in self.roles

    def may_send(self, group: str) -> bool:
        """``webpubsub.sendToGroup`` or ``webpubsub.sendToGroup.<group>``."""
        return _ROLE_SEND in self.roles or f"{_ROLE_SEND}.{group}" in self.roles

    def first_use_of_ack_id(self, ack_id: int) -> bool:
        """False when ``ack_id`` was seen on this connection before (the service answers ``Duplicate``)."""
        if ack_id in self.ack_ids:
            return False
        if len(self.ack_ids) >= _MAX_ACK_IDS:
            self.ack_ids.clear()  # bounded memory; a client this far along does not resend its first ids
        self.ack_ids.add(ack_id)
        return True

    # --- sending --------------------------------------------------------------------------------------------------

    def deliver(self, message: Outgoing) -> None:
        """Queue ``message`` in this connection's dialect (a reliable session keeps it until acknowledged)."""
        if self.closed:
            return
        dialect = self.dialect
        if dialect == Dialect.JSON:
            self._queue(message.json_wire)
        elif dialect == Dialect.RELIABLE:
            sequence_id = self.next_sequence_id
            self.next_sequence_id = sequence_id + 1
            wire = message.reliable_wire(sequence_id)
            self.unacked.append((sequence_id, wire))
            self.unacked_bytes += len(wire)
            if self.socket_attached:
                self._queue(wire)
        else:
            self._queue(message.plain_wire)

    def respond(self, response: Response) -> None:
        """Queue a response that is not a data message (ack, connected, disconnected, pong); dropped for simple
        clients, which have no protocol to carry it."""
        if self.dialect != Dialect.PLAIN and self.socket_attached:
            self._queue(ws_frame(encode_response(response).encode("utf-8")), bounded=False)

    def ack(self, ack_id: int | None, error: AckError | None = None) -> None:
        """Answer a request that carried ``ack_id`` (nothing when it carried none)."""
        if ack_id is not None:
            self.respond(Ack(ack_id, error is None, error))

    def acknowledge(self, sequence_id: int) -> None:
        """A ``sequenceAck``: forget every kept frame up to ``sequence_id``."""
        unacked = self.unacked
        while unacked and unacked[0][0] <= sequence_id:
            self.unacked_bytes -= len(unacked.popleft()[1])

    def use_transport(self, transport: asyncio.Transport | None, protocol: Any) -> None:
        """Write frames straight to ``transport`` (None: only through the writer) while ``protocol`` (aiohttp's,
        with ``writing_paused``) does not say the socket is congested."""
        self._transport = transport
        self._protocol = protocol

    def _queue(self, wire: bytes, *, bounded: bool = True) -> None:
        transport = self._transport
        if (
            transport is not None
            and not self._outbox
            and self.socket_attached
            and not self.closed
            and not self._protocol.writing_paused
            and not transport.is_closing()
        ):
            # The common case under load: no task switch, no queue, one write per frame.
            transport.write(wire)
            return
        if bounded and self._outbox and self._buffered + len(wire) > self.max_buffer_size:
            self.drop(f"send buffer exceeded {self.max_buffer_size} bytes")
            return
        self._outbox.append(wire)
        self._buffered += len(wire)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def take_outgoing(self) -> bytes:
        """Every frame queued since the last call, in order, as the bytes to write to the socket (empty if none)."""
        outbox = self._outbox
        if not outbox:
            return b""
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        self._outbox = []
        self._buffered = 0
        return data

    def idle(self) -> asyncio.Future[None] | None:
        """None when the writer has work (frames queued, or the connection closed or its socket detached); else the
        future to await before looking again. One writer at a time."""
        if self._outbox or self.closed or not self.socket_attached:
            return None
        return self._sleep()

    # --- the socket -----------------------------------------------------------------------------------------------

    def attach(self, resumed: bool) -> int:
        """A WebSocket now carries this connection: queue ``connected`` and, when ``resumed``, every frame not yet
        acknowledged, in order. Returns the socket's generation, for :meth:`detach`."""
        abort = self.abort_socket
        if abort is not None:  # a socket still thought open (a half-open TCP connection): the new one replaces it
            abort()
        self._transport = None
        self.socket_generation += 1
        self._outbox = []
        self._buffered = 0
        self.socket_attached = True
        self.detached_at = None
        self.respond(Connected(self.user_id, self.connection_id, self.reconnection_token))
        if resumed:
            for _, wire in self.unacked:
                self._queue(wire, bounded=False)
        return self.socket_generation

    def detach(self, generation: int, now: float) -> None:
        """The WebSocket of ``generation`` ended; a reliable session waits for a reconnect from ``now`` on (nothing
        happens when a newer socket already took over)."""
        if generation != self.socket_generation:
            return
        self.socket_attached = False
        self.detached_at = now
        self.abort_socket = None
        self._transport = None
        self._outbox = []
        self._buffered = 0
        self._wake()

    def close(self, reason: str | None, code: int = 1008) -> None:
        """End the connection: queue ``disconnected`` with ``reason`` and let the writer close the socket with
        ``code`` (1008 tells a reliable client not to try to resume). The hub forgets it (the caller's job)."""
        if self.closed:
            return
        if reason is not None:
            self.respond(Disconnected(reason))
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        self._wake()

    def drop(self, reason: str) -> None:
        """Close at once without delivering what is queued: the client stopped reading."""
        log.warning("dropping hub=%s id=%s: %s", self.hub, self.connection_id, reason)
        self._outbox = []
        self._buffered = 0
        self.close(reason, code=1008)
        abort = self.abort_socket
        if abort is not None:
            abort()

    def __repr__(self) -> str:
        return f"<ClientConnection hub={self.hub} id={self.connection_id} dialect={self.dialect}>"
