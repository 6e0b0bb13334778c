"""One client connection of the emulator, independent of its transport.

A :class:`ClientConnection` owns the sans-I/O :class:`signalr.connection.ServerProtocol`, a bounded outbound queue of
encoded records and the connection's timers. Transports (``emulator/transports.py``,
``emulator/http_transports.py``) feed it the bytes they receive (:meth:`ClientConnection.receive_data`), take what it
has to send (:meth:`ClientConnection.take_outgoing`) and wait for more (:meth:`ClientConnection.wait`), or, for
WebSockets, give it a sink that takes bytes as they come (:meth:`ClientConnection.attach_sink`). Hub events go to a
:class:`ConnectionListener` (the service: hub registry and upstream).

Lifecycle: negotiated → transport attached → handshake → open → closed. A closed connection stays reachable by its
token until its transport has delivered the final bytes (the Close message), so a LongPolling client can still
collect them (``docs/protocol.md`` §3.7); the service then forgets it and its id answers 404.

The client's handshake picks its hub protocol from :data:`signalr.protocols.PROTOCOLS` (``json`` or
``messagepack``), limited to what the transport carries (:data:`TRANSFER_FORMATS`: ServerSentEvents is text only).
From then on :attr:`ClientConnection.protocol` encodes everything the connection is sent; nothing here knows a
protocol's bytes.

In Default and Classic mode the emulator does not answer the hub handshake itself: the listener's :meth:`route` picks
an app server's server connection (a :class:`ClientRoute`) when the handshake record arrives. From then on the
client's bytes go to that route unread, and what the app server sends back comes in through
:meth:`ClientConnection.deliver`; its first record is the app server's handshake answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from signalr.connection import (
    ConnectionClosed,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    ServerProtocol,
    State,
)
from signalr.handshake import (
    HandshakeRequest,
    decode_handshake_request,
    decode_handshake_response,
    encode_handshake_response,
    split_handshake,
)
from signalr.hub_protocol import HubProtocol, TransferFormat
from signalr.messages import Close, Invocation, ProtocolError, StreamInvocation
from signalr.negotiate import TransportType
from signalr.protocols import PROTOCOLS
from signalr.redact import redact_text

from .waker import Waker

__all__ = [
    "TRANSFER_FORMATS",
    "ClientConnection",
    "ClientRoute",
    "ConnectionListener",
    "InboundMessage",
    "Timed",
    "TimerWheel",
]

log = logging.getLogger("emulator")

InboundMessage = Invocation | StreamInvocation
_FORGET_CLOSED_AFTER = 60.0

TRANSFER_FORMATS: Mapping[TransportType, frozenset[TransferFormat]] = {
    TransportType.WEBSOCKETS: frozenset(TransferFormat),
    TransportType.SERVER_SENT_EVENTS: frozenset({TransferFormat.TEXT}),
    TransportType.LONG_POLLING: frozenset(TransferFormat),
}
"""What each transport can carry, as negotiate announces it (``docs/protocol.md`` §3.3)."""


class ConnectionListener(Protocol):
    """Receives a connection's hub events, in order; the service implements it (hub registry + upstream)."""

    def connected(self, connection: ClientConnection) -> None:
        """The handshake completed: the connection can now be addressed by REST and groups."""

    async def message(self, connection: ClientConnection, message: InboundMessage) -> None:
        """A client invocation; may wait (backpressure: the transport stops reading meanwhile)."""

    def disconnected(self, connection: ClientConnection, error: str | None) -> None:
        """An open connection ended; ``error`` is the reason, ``None`` for a normal close."""

    def route(self, connection: ClientConnection) -> ClientRoute | str | None:
        """Where a routable connection goes once a handshake the emulator could accept arrived: a
        :class:`ClientRoute` (an app server carries it), ``None`` (the emulator serves it itself) or the error text to
        answer the handshake with."""


class ClientRoute(Protocol):
    """The server connection that carries a client in Default or Classic mode."""

    def open(self, connection: ClientConnection, protocol: str, data: bytes) -> None:
        """Announce the client, speaking hub protocol ``protocol`` (its name), to the app server and pass on
        ``data``: its handshake and what followed it."""

    async def forward(self, connection: ClientConnection, data: bytes) -> None:
        """Pass on later client bytes as they are; may wait while the app server is not reading."""

    def client_closed(self, connection: ClientConnection, error: str | None) -> None:
        """The client is gone (any reason); tell the app server unless it closed the client itself."""


class ClientConnection(Waker):
    """A negotiated client connection: protocol state, outbound queue, timers.

    The caller (a transport) must :meth:`attach` before exchanging data, pass every received chunk to
    :meth:`receive_data`, send what :meth:`take_outgoing` returns, and stop when :attr:`closed` is true and
    :meth:`take_outgoing` returns nothing.
    """

    # Fixed slots keep a connection small (the service holds thousands); ``__dict__`` stays available for what a test
    # attaches to one connection (a spy on ``send``) and is only allocated when used; ``__weakref__`` lets a test see
    # the connection freed.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_active_poll",
        "_awaiting_route",
        "_buffered",
        "_finished",
        "_handshake_buffer",
        "_kick",
        "_listener",
        "_max_message_size",
        "_opened",
        "_outbox",
        "_poll_generation",
        "_post_lock",
        "_protocol",
        "_push",
        "_reply_buffer",
        "_routed_protocol",
        "_timer_slot",
        "_timers",
        "abort_transport",
        "attached_at",
        "claims",
        "client_query",
        "close_error",
        "closed_at",
        "connection_id",
        "connection_token",
        "created_at",
        "handshake_timeout",
        "hub",
        "last_poll_end",
        "last_received",
        "last_sent",
        "max_buffer_size",
        "max_poll_interval",
        "owner",
        "request_headers",
        "route",
        "transport",
        "user_id",
    )

    def __init__(
        self,
        *,
        connection_id: str,
        connection_token: str,
        hub: str,
        user_id: str | None,
        claims: dict[str, Any],
        client_query: str,
        listener: ConnectionListener,
        max_buffer_size: int,
        max_message_size: int,
        handshake_timeout: float,
        max_poll_interval: float,
        routable: bool = False,
        timers: TimerWheel | None = None,
        created_at: float | None = None,
    ) -> None:
        """``routable``: the service may hand the client to an app server (Default or Classic mode), so the handshake
        is held until :meth:`ClientConnection.receive_data` has it whole and the listener's ``route`` decided.
        ``timers``: the wheel that calls the service back when this connection's next timer is due; the connection
        schedules itself on it (without one, the caller must run :meth:`check_timers` itself). ``created_at``: when
        negotiate handed out the id (the handshake timeout of a connection never started runs from then); now by
        default."""
        self.connection_id = connection_id
        self.connection_token = connection_token
        self.hub = hub
        self.user_id = user_id
        self.claims = claims
        self.client_query = client_query
        # Who negotiated (ClientIdentity.owner): later requests with this connection's token must be the same owner.
        self.owner: str | None = None
        self.transport: TransportType | None = None
        self.handshake_timeout = handshake_timeout
        self.max_poll_interval = max_poll_interval
        self.max_buffer_size = max_buffer_size
        self.close_error: str | None = None
        # Set by the transport: tears the socket down at once (used when the peer stops reading).
        self.abort_transport: Callable[[], None] | None = None
        self._post_lock: asyncio.Lock | None = None  # made by the first POST (SSE and LongPolling only)
        self._listener = listener
        # attach() limits it to the transfer formats of the transport.
        self._protocol = ServerProtocol(max_message_size)
        self._outbox: list[bytes] = []
        self._buffered = 0
        # The transport's waiter (:meth:`wait`): created only when the transport must sleep, resolved by the next
        # queued bytes, close or poll.
        Waker.__init__(self)
        # Or the transport's sink (:meth:`attach_sink`): bytes written at once, a writer started when they queue.
        self._push: Callable[[bytes], bool] | None = None
        self._kick: Callable[[], None] | None = None
        self._opened = False
        self._finished = False
        now = time.monotonic()
        self.created_at = now if created_at is None else created_at
        self.attached_at: float | None = None
        self.last_sent = now
        self.last_received = now
        self.closed_at: float | None = None
        self._poll_generation = 0
        self._active_poll: int | None = None
        self.last_poll_end = now
        # Default/Classic mode: the request headers of the transport's first request (for OpenConnection), the
        # route once an app server carries the client, and the hub protocol its handshake asked for.
        self.request_headers: dict[str, tuple[str, ...]] = {}
        self.route: ClientRoute | None = None
        self._routed_protocol: HubProtocol | None = None
        self._awaiting_route = routable
        # Default and Classic mode only: the client's handshake until it is routed, the app server's answer until it
        # is whole (made when first needed).
        self._handshake_buffer: bytearray | None = None
        self._reply_buffer: bytearray | None = None
        self._max_message_size = max_message_size
        self._timers = timers
        self._timer_slot: int | None = None  # the wheel's slot this connection waits in; owned by TimerWheel
        self._reschedule()

    @property
    def post_lock(self) -> asyncio.Lock:
        """SSE/LP sends are processed one POST at a time, in arrival order (§3.8: ASP.NET Core queues them): hold
        this lock while feeding a POST's body. Made on first use, so a WebSocket connection carries none."""
        lock = self._post_lock
        if lock is None:
            lock = self._post_lock = asyncio.Lock()
        return lock

    # --- state -------------------------------------------------------------------------------------------------

    @property
    def opened(self) -> bool:
        """The handshake completed (the connection was announced as connected)."""
        return self._opened

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def protocol(self) -> HubProtocol | None:
        """The hub protocol the client's handshake chose (for a routed client: asked for); ``None`` before that or
        after a failed handshake. Encode everything this connection is sent with it."""
        if self._routed_protocol is not None:
            return self._routed_protocol
        return self._protocol.protocol

    @property
    def binary(self) -> bool:
        """Whether the transport must send binary frames: the handshake succeeded with a binary protocol
        (MessagePack). As in ASP.NET Core, the successful handshake answer already goes out in that format, while a
        refused handshake is text."""
        protocol = self.protocol
        return self._opened and protocol is not None and protocol.transfer_format is TransferFormat.BINARY

    @property
    def finished(self) -> bool:
        """Closed and its final bytes handed to the transport (or undeliverable): the service may forget it."""
        return self._finished

    def finish(self) -> None:
        """The transport is done with this connection; it must already be closed (closes it otherwise)."""
        if not self.closed:
            self.close(None, by_peer=True)
        self._finished = True
        Waker._wake(self)
        # Let go of the transport (the sink and the abort refer back to it), so what is left of a finished connection
        # is freed by reference counting, not only by a full collection; the timer wheel lets go at the next tick.
        self._push = self._kick = None
        self.abort_transport = None
        self._reschedule()

    def attach(self, transport: TransportType) -> None:
        """Bind the connection to its transport; the handshake clock starts now. A handshake that still comes is held
        to what the transport carries (one that a POST brought before the transport started stays as it was)."""
        self._protocol.transfer_formats = TRANSFER_FORMATS[transport]
        self.transport = transport
        self.attached_at = time.monotonic()
        self.last_received = self.attached_at
        self._reschedule()

    def attach_sink(self, push: Callable[[bytes], bool], kick: Callable[[], None]) -> None:
        """For a transport that can write without waiting (WebSockets), instead of a writer that :meth:`wait` s: once
        the handshake is done, bytes queued while nothing waits before them go to ``push`` (which returns False
        when it cannot take them now: then they are queued); ``kick`` is called instead of waking a waiter whenever
        bytes are queued or the connection closes, and must drain :meth:`take_outgoing` (and close the transport once
        :attr:`closed`)."""
        self._push = push
        self._kick = kick

    def _wake(self) -> None:
        if self._kick is not None:
            self._kick()
        else:
            Waker._wake(self)

    def _write_now(self, data: bytes) -> bool:
        """Hand ``data`` to the sink at once when that keeps the order (nothing queued, handshake answered)."""
        push = self._push
        if push is None or self._outbox or not self._opened or not push(data):
            return False
        self.last_sent = time.monotonic()
        return True

    # --- inbound -----------------------------------------------------------------------------------------------

    async def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client: answers the handshake, forwards invocations, closes on a violation."""
        if self.closed:
            return
        self.last_received = time.monotonic()
        if self.route is not None:
            await self.route.forward(self, data)
            return
        if self._awaiting_route:
            data = self._route_handshake(data)
            if not data:
                return
        events = self._protocol.receive_data(data)
        self._queue_protocol_output()
        for event in events:
            if isinstance(event, HandshakeCompleted):
                self._opened = True
                self._reschedule()
                self._listener.connected(self)
            elif isinstance(event, HandshakeFailed):
                log.info("handshake failed hub=%s id=%s: %s", self.hub, self.connection_id, redact_text(event.error))
                self.close(event.error)
            elif isinstance(event, MessageReceived):
                message = event.message
                if isinstance(message, Invocation | StreamInvocation):
                    # Clients such as signalrcore copy their request headers, Authorization included, into
                    # ``headers`` (protocol.md Appendix A): never pass them on.
                    if isinstance(message, Invocation) and message.headers:
                        message = replace(message, headers=None)
                    try:
                        await self._listener.message(self, message)
                    except (ProtocolError, RecursionError) as exc:
                        # A message that decoded but cannot be passed on (e.g. nested too deeply to re-encode):
                        # it ends this connection with a reason, like any other bad record.
                        error = str(exc) if isinstance(exc, ProtocolError) else "The message could not be processed."
                        log.info("protocol error hub=%s id=%s: %s", self.hub, self.connection_id, error)
                        self.close(error)
                # Pings only refresh last_received; client Completions/StreamItems have no server-side caller.
            elif isinstance(event, ConnectionClosed):
                if event.by_peer:
                    self.close(event.error, by_peer=True)
                else:
                    log.info(
                        "protocol error hub=%s id=%s: %s", self.hub, self.connection_id, redact_text(event.error or "")
                    )
                    self.close(event.error)
            if self.closed:
                break

    def _route_handshake(self, data: bytes) -> bytes:
        """Hold bytes until the handshake record is whole, then let the listener route the client.

        Returns the bytes the emulator must process itself (everything held so far when it serves the client: an
        invalid handshake, one it would refuse itself, or Classic mode without an app server), else ``b""``.
        """
        buffer = self._handshake_buffer
        if buffer is None:
            buffer = self._handshake_buffer = bytearray()
        buffer += data
        held = bytes(buffer)
        request: HandshakeRequest | None = None
        try:
            parts = split_handshake(held, self._max_message_size)
            if parts is None:
                return b""
            request = decode_handshake_request(parts[0])
        except ProtocolError:
            pass  # too large or invalid: the local protocol refuses it as it always did
        self._awaiting_route = False
        buffer.clear()
        if request is None:
            return held
        protocol = self._acceptable(request)
        if protocol is None:
            return held  # the local protocol answers with ASP.NET Core's error text
        decision = self._listener.route(self)
        if decision is None:
            return held
        if isinstance(decision, str):
            log.info("handshake refused hub=%s id=%s: %s", self.hub, self.connection_id, decision)
            self._queue_raw(encode_handshake_response(decision))
            self.close(decision, by_peer=True)
            return b""
        self.route = decision
        self._routed_protocol = protocol
        decision.open(self, protocol.name, held)
        return b""

    def _acceptable(self, request: HandshakeRequest) -> HubProtocol | None:
        """The protocol ``request`` names when the local protocol would accept it on this transport, else None."""
        protocol = PROTOCOLS.get(request.protocol)
        if protocol is None or request.version > protocol.version:
            return None
        if protocol.transfer_format not in self._protocol.transfer_formats:
            return None
        return protocol

    # --- outbound ----------------------------------------------------------------------------------------------

    def deliver(self, payload: bytes) -> bool:
        """Queue bytes an app server sent to this routed client, as they are.

        Until the client is open, the first complete record is the app server's handshake answer: ``{}`` makes the
        client a hub member (the listener's ``connected``), an error closes it once the answer is delivered.
        Returns whether the bytes were queued.
        """
        if self.closed:
            return False
        if self._opened:
            return self.send(payload)
        reply = self._reply_buffer
        if reply is None:
            reply = self._reply_buffer = bytearray()
        reply += payload
        try:
            parts = split_handshake(bytes(reply), self._max_message_size)
        except ProtocolError:
            self.close("The app server's handshake response is too large.")
            return False
        if parts is None:
            return False
        held = bytes(reply)
        reply.clear()
        try:
            error = decode_handshake_response(parts[0])
        except ProtocolError as exc:
            error = f"Handshake response is invalid: {exc}"
        self._queue_raw(held)
        if error is None:
            self._opened = True
            self._reschedule()
            self._listener.connected(self)
        else:
            log.info("app server refused the handshake hub=%s id=%s: %s", self.hub, self.connection_id, error)
            self.close(error, by_peer=True)
        return True

    def end_routed(self, record: bytes, error: str) -> None:
        """Close a routed client with ``record`` (a Close, or a handshake error before it opened) as its last bytes.

        The caller (its server connection) must already have forgotten the client: no CloseConnection goes back.
        """
        if self.closed:
            return
        self._queue_raw(record)
        self.close(error, by_peer=True)

    def send(self, record: bytes) -> bool:
        """Queue one or more complete records (shared bytes are fine: nothing mutates them).

        Returns False when the connection is closed or was just dropped because its queue would exceed
        ``max_buffer_size`` (a client that stops reading must not grow the service's memory: at most the bound
        plus one message is held per connection).
        """
        if self.closed_at is not None or not self._opened:
            return False
        if self._outbox:
            # An empty queue always takes one message, so a single large message never drops a healthy client.
            if self._buffered + len(record) > self.max_buffer_size:
                self.drop(f"send buffer exceeded {self.max_buffer_size} bytes")
                return False
        else:
            push = self._push  # the fan-out's path: written at once (_write_now, inlined)
            if push is not None and push(record):
                self.last_sent = time.monotonic()
                return True
        self._outbox.append(record)
        self._buffered += len(record)
        self._wake()
        return True

    def take_outgoing(self) -> bytes:
        """Everything queued since the last call, as one buffer (empty if nothing)."""
        if not self._outbox:
            return b""
        data = self._outbox[0] if len(self._outbox) == 1 else b"".join(self._outbox)
        self._outbox.clear()
        self._buffered = 0
        self.last_sent = time.monotonic()
        return data

    async def wait(self, timeout: float | None = None) -> None:
        """Return when something was queued, the connection closed, a newer poll began, or ``timeout`` passed.

        One caller at a time (the current poll; a new poll calls :meth:`begin_poll` first, which wakes the previous
        one). The caller must check the state again when it returns: a wake-up may have no cause left by then.
        """
        if self._outbox or self.closed_at is not None:
            return
        waiter = self._sleep()
        if timeout is None:
            await waiter
            return
        handle = waiter.get_loop().call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()

    # --- closing -----------------------------------------------------------------------------------------------

    def close(self, error: str | None = None, *, by_peer: bool = False) -> None:
        """Close the connection: queue a Close message with ``error`` (unless the peer closed), announce it once.

        ``by_peer`` also means "the Close is already queued": an app server that closes its client sends the hub
        Close message itself, as data.
        """
        if self.closed:
            return
        if not by_peer:
            if self.route is not None:
                if self._opened and self._routed_protocol is not None:
                    self._queue_raw(self._routed_protocol.encode(Close(error)))
            elif self._protocol.state is State.OPEN:
                self._protocol.close(error)
        self._queue_protocol_output()
        self.closed_at = time.monotonic()
        self.close_error = error
        self._wake()
        self._reschedule()
        if self.route is not None:
            self.route.client_closed(self, error)
        if self._opened:
            self._listener.disconnected(self, error)

    def discard_outgoing(self) -> None:
        """Forget queued bytes: the client left (LongPolling DELETE) and will not collect them."""
        self._outbox.clear()
        self._buffered = 0

    def drop(self, reason: str) -> None:
        """Close at once without delivering anything more: the peer is not reading (or is gone)."""
        log.warning("dropping hub=%s id=%s: %s", self.hub, self.connection_id, reason)
        self.close(reason)
        self.discard_outgoing()
        abort = self.abort_transport
        if abort is not None:
            abort()

    def _queue_protocol_output(self) -> None:
        # Handshake replies and Close records come from the state machine; they bypass the buffer bound because
        # they are tiny and must precede or end everything else.
        self._queue_raw(self._protocol.data_to_send())

    def _queue_raw(self, data: bytes) -> None:
        if data and not self._write_now(data):
            self._outbox.append(data)
            self._buffered += len(data)
            self._wake()

    # --- LongPolling -------------------------------------------------------------------------------------------

    def begin_poll(self) -> int:
        """Start a poll; a poll still pending is superseded (it must answer 204). Returns this poll's number."""
        self._poll_generation += 1
        self._active_poll = self._poll_generation
        self._wake()
        return self._poll_generation

    def poll_superseded(self, generation: int) -> bool:
        return generation != self._poll_generation

    def end_poll(self, generation: int) -> None:
        """The poll ``generation`` answered; the max-poll-interval clock starts again."""
        if self._active_poll == generation:
            self._active_poll = None
            self.last_poll_end = time.monotonic()

    @property
    def polling(self) -> bool:
        return self._active_poll is not None

    # --- timers ------------------------------------------------------------------------------------------------

    def check_timers(self, now: float, keepalive: float, client_timeout: float) -> None:
        """Apply the timers of ``docs/protocol.md`` §0.1 at time ``now`` (``time.monotonic()``)."""
        if self.closed:
            return
        if self.attached_at is None:
            if now - self.created_at >= self.handshake_timeout:
                log.info("negotiated connection never connected hub=%s id=%s", self.hub, self.connection_id)
                self.close("The connection was not started in time.")
                self.finish()
            return
        long_polling = self.transport is TransportType.LONG_POLLING
        if long_polling and not self.polling and now - self.last_poll_end >= self.max_poll_interval:
            self.close("No poll within the maximum poll interval.")
        elif not self._opened:
            if now - self.attached_at >= self.handshake_timeout:
                self.close("Handshake was not completed in time.")
        elif long_polling:
            # LP has inherent keep-alive: no pings, no client timeout (trap 12); only the gap between polls counts.
            return
        elif now - self.last_received >= client_timeout:
            self.close("Client timeout elapsed without receiving a message from the client.")
        elif now - self.last_sent >= keepalive and not self._outbox and self.route is None:
            # "A Ping is only sent if the interval has elapsed without a message being sent" (§4). A routed client
            # gets its pings from the app server, as data.
            self._protocol.send_ping()
            self._queue_protocol_output()

    def next_check(self, now: float, keepalive: float, client_timeout: float) -> float:
        """When :meth:`check_timers` (or :meth:`expired`) may next have something to do: never later than the
        earliest timer of the current state. Timers only move later as the connection lives (data refreshes them);
        the state changes that can bring one earlier (attach, open, close) reschedule the connection themselves."""
        closed_at = self.closed_at
        long_polling = self.transport is TransportType.LONG_POLLING
        if closed_at is not None:
            if self._finished or self.transport is None:
                return now
            if long_polling:
                # While a poll is held it ends within the poll timeout, and its end restarts the interval.
                return (
                    now + self.max_poll_interval
                    if self.polling
                    else max(self.last_poll_end, closed_at) + self.max_poll_interval
                )
            return closed_at + _FORGET_CLOSED_AFTER
        attached_at = self.attached_at
        if attached_at is None:
            return self.created_at + self.handshake_timeout
        if long_polling:
            due = now + self.max_poll_interval if self.polling else self.last_poll_end + self.max_poll_interval
            return due if self._opened else min(due, attached_at + self.handshake_timeout)
        if not self._opened:
            return attached_at + self.handshake_timeout
        due = self.last_received + client_timeout
        if self.route is None:
            # A ping waiting in the queue (or anything else) leaves last_sent old until the transport takes it: the
            # past deadline only means "look again at the next tick", as when a slow writer holds the queue.
            due = min(due, self.last_sent + keepalive)
        return due

    def _reschedule(self) -> None:
        timers = self._timers
        if timers is not None:
            now = time.monotonic()
            timers.schedule(self, self.next_check(now, timers.keepalive, timers.client_timeout))

    def expired(self, now: float) -> bool:
        """Whether the service should forget this closed connection now."""
        closed_at = self.closed_at
        if closed_at is None:
            return False
        if self._finished:
            return True
        # A closed LongPolling connection waits for one more poll to collect its Close message, not forever.
        if self.transport is TransportType.LONG_POLLING and not self.polling:
            return now - max(self.last_poll_end, closed_at) >= self.max_poll_interval
        # WebSocket and SSE handlers forget their connection when they end; this is only a safety net.
        return self.transport is None or now - closed_at >= _FORGET_CLOSED_AFTER

    def __repr__(self) -> str:
        return f"<ClientConnection hub={self.hub} id={self.connection_id} transport={self.transport}>"


class Timed(Protocol):
    """What the timer wheel files: a connection, or a negotiated id not started yet (``emulator/negotiated.py``)."""

    _timer_slot: int | None


class TimerWheel:
    """Connections filed by the tick their next timer falls in, so a tick looks only at the connections with
    something due (an idle service with many connections does almost nothing).

    The service calls :meth:`due` once per ``tick`` and, for each connection it returns, runs its timers and
    :meth:`schedule` s it again at :meth:`ClientConnection.next_check` unless it is forgotten. Deadlines are rounded
    up to the next tick, as the former sweep every tick did. A connection waits in one slot at a time: scheduling
    it earlier moves it (out of its old slot, so the wheel keeps nothing alive past its due tick), scheduling it later
    does nothing until its slot comes.
    """

    __slots__ = ("_done", "_slots", "client_timeout", "keepalive", "tick")

    def __init__(self, tick: float, keepalive: float, client_timeout: float) -> None:
        self.tick = tick
        self.keepalive = keepalive
        self.client_timeout = client_timeout
        # Each slot's connections as the keys of an insertion-ordered dict: filed in order, taken out in O(1).
        self._slots: dict[int, dict[Timed, None]] = {}
        self._done = math.floor(time.monotonic() / tick)  # every slot up to this one has been handed out

    def __len__(self) -> int:
        """Connections filed (for tests and diagnostics)."""
        return sum(len(bucket) for bucket in self._slots.values())

    def schedule(self, connection: Timed, deadline: float) -> None:
        """File ``connection`` for the first tick at or after ``deadline`` (at the earliest the next one), unless it
        already waits for an earlier or the same tick."""
        slot = max(math.ceil(deadline / self.tick), self._done + 1)
        current = connection._timer_slot
        if current is not None:
            if current <= slot:
                return
            self.cancel(connection)
        connection._timer_slot = slot
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = {connection: None}
        else:
            bucket[connection] = None

    def cancel(self, connection: Timed) -> None:
        """Take ``connection`` out of the wheel (nothing when it is not filed)."""
        current = connection._timer_slot
        if current is None:
            return
        connection._timer_slot = None
        bucket = self._slots.get(current)
        if bucket is not None:
            bucket.pop(connection, None)
            if not bucket:
                del self._slots[current]

    def due(self, now: float) -> list[Timed]:
        """The connections whose slot is at or before ``now``, each once; they are no longer filed."""
        now_slot = math.floor(now / self.tick)
        done = self._done
        if now_slot <= done:
            return []
        self._done = now_slot
        slots = self._slots
        # Usually one slot per tick; after a long stall, only the slots that hold something.
        keys = range(done + 1, now_slot + 1) if now_slot - done <= 64 else sorted(k for k in slots if k <= now_slot)
        found: list[Timed] = []
        for key in keys:
            bucket = slots.pop(key, None)
            if bucket is None:
                continue
            for connection in bucket:
                connection._timer_slot = None
                found.append(connection)
        return found


def _resolve(waiter: asyncio.Future[None]) -> None:
    """A waiter's timeout: wake it unless something else did."""
    if not waiter.done():
        waiter.set_result(None)
