"""One client connection of the emulator, independent of its transport.

A :class:`ClientConnection` owns the sans-I/O :class:`signalr.connection.ServerProtocol`, a bounded outbound queue of
encoded records and the connection's timers. Transports (``emulator/transports.py``) feed it the bytes they receive
(:meth:`ClientConnection.receive_data`), take what it has to send (:meth:`ClientConnection.take_outgoing`) and wait
for more (:meth:`ClientConnection.wait`). Hub events go to a :class:`ConnectionListener` (the service: hub registry
and upstream).

Lifecycle: negotiated → transport attached → handshake → open → closed. A closed connection stays reachable by its
token until its transport has delivered the final bytes (the Close message), so a LongPolling client can still
collect them (``docs/protocol.md`` §3.7); the service then forgets it and its id answers 404.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
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
from signalr.negotiate import TransportType
from signalr.protocol import PING_RECORD, Invocation, StreamInvocation

__all__ = ["ClientConnection", "ConnectionListener", "InboundMessage"]

log = logging.getLogger("emulator")

InboundMessage = Invocation | StreamInvocation
_FORGET_CLOSED_AFTER = 60.0


class ConnectionListener(Protocol):
    """Receives a connection's hub events, in order; the service implements it (hub registry + upstream)."""

    def connected(self, connection: ClientConnection) -> None:
        """The handshake completed: the connection can now be addressed by REST and groups."""

    async def message(self, connection: ClientConnection, message: InboundMessage) -> None:
        """A client invocation; may wait (backpressure: the transport stops reading meanwhile)."""

    def disconnected(self, connection: ClientConnection, error: str | None) -> None:
        """An open connection ended; ``error`` is the reason, ``None`` for a normal close."""


class ClientConnection:
    """A negotiated client connection: protocol state, outbound queue, timers.

    The caller (a transport) must :meth:`attach` before exchanging data, pass every received chunk to
    :meth:`receive_data`, send what :meth:`take_outgoing` returns, and stop when :attr:`closed` is true and
    :meth:`take_outgoing` returns nothing.
    """

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
    ) -> None:
        self.connection_id = connection_id
        self.connection_token = connection_token
        self.hub = hub
        self.user_id = user_id
        self.claims = claims
        self.client_query = client_query
        self.transport: TransportType | None = None
        self.handshake_timeout = handshake_timeout
        self.max_poll_interval = max_poll_interval
        self.max_buffer_size = max_buffer_size
        self.close_error: str | None = None
        # Set by the transport: tears the socket down at once (used when the peer stops reading).
        self.abort_transport: Callable[[], None] | None = None
        # SSE/LP sends are processed one POST at a time, in arrival order (§3.8: ASP.NET Core queues them).
        self.post_lock = asyncio.Lock()
        self._listener = listener
        self._protocol = ServerProtocol(max_message_size)
        self._outbox: list[bytes] = []
        self._buffered = 0
        self._ready = asyncio.Event()
        self._opened = False
        self._finished = False
        now = time.monotonic()
        self.created_at = now
        self.attached_at: float | None = None
        self.last_sent = now
        self.last_received = now
        self.closed_at: float | None = None
        self._poll_generation = 0
        self._active_poll: int | None = None
        self.last_poll_end = now

    # --- state -------------------------------------------------------------------------------------------------

    @property
    def opened(self) -> bool:
        """The handshake completed (the connection was announced as connected)."""
        return self._opened

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def finished(self) -> bool:
        """Closed and its final bytes handed to the transport (or undeliverable): the service may forget it."""
        return self._finished

    def finish(self) -> None:
        """The transport is done with this connection; it must already be closed (closes it otherwise)."""
        if not self.closed:
            self.close(None, by_peer=True)
        self._finished = True
        self._ready.set()

    def attach(self, transport: TransportType) -> None:
        """Bind the connection to its transport; the handshake clock starts now."""
        self.transport = transport
        self.attached_at = time.monotonic()
        self.last_received = self.attached_at

    # --- inbound -----------------------------------------------------------------------------------------------

    async def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client: answers the handshake, forwards invocations, closes on a violation."""
        if self.closed:
            return
        self.last_received = time.monotonic()
        events = self._protocol.receive_data(data)
        self._queue_protocol_output()
        for event in events:
            if isinstance(event, HandshakeCompleted):
                self._opened = True
                self._listener.connected(self)
            elif isinstance(event, HandshakeFailed):
                log.info("handshake failed hub=%s id=%s: %s", self.hub, self.connection_id, event.error)
                self.close(event.error)
            elif isinstance(event, MessageReceived):
                message = event.message
                if isinstance(message, Invocation | StreamInvocation):
                    # Clients such as signalrcore copy their request headers, Authorization included, into
                    # ``headers`` (protocol.md Appendix A): never pass them on.
                    if isinstance(message, Invocation) and message.headers:
                        message = replace(message, headers=None)
                    await self._listener.message(self, message)
                # Pings only refresh last_received; client Completions/StreamItems have no server-side caller.
            elif isinstance(event, ConnectionClosed):
                if event.by_peer:
                    self.close(event.error, by_peer=True)
                else:
                    log.info("protocol error hub=%s id=%s: %s", self.hub, self.connection_id, event.error)
                    self.close(event.error)
            if self.closed:
                break

    # --- outbound ----------------------------------------------------------------------------------------------

    def send(self, record: bytes) -> bool:
        """Queue one or more complete records (shared bytes are fine: nothing mutates them).

        Returns False when the connection is closed or was just dropped because its queue would exceed
        ``max_buffer_size`` (a client that stops reading must not grow the service's memory: at most the bound
        plus one message is held per connection).
        """
        if self.closed or not self._opened:
            return False
        # An empty queue always takes one message, so a single large message never drops a healthy client.
        if self._outbox and self._buffered + len(record) > self.max_buffer_size:
            self.drop(f"send buffer exceeded {self.max_buffer_size} bytes")
            return False
        self._outbox.append(record)
        self._buffered += len(record)
        self._ready.set()
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
        """Return when something was queued, the connection closed, a newer poll began, or ``timeout`` passed."""
        if self._outbox or self.closed:
            return
        self._ready.clear()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            pass

    # --- closing -----------------------------------------------------------------------------------------------

    def close(self, error: str | None = None, *, by_peer: bool = False) -> None:
        """Close the connection: queue a Close message with ``error`` (unless the peer closed), announce it once."""
        if self.closed:
            return
        if not by_peer and self._protocol.state is State.OPEN:
            self._protocol.close(error)
        self._queue_protocol_output()
        self.closed_at = time.monotonic()
        self.close_error = error
        self._ready.set()
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
        data = self._protocol.data_to_send()
        if data:
            self._outbox.append(data)
            self._buffered += len(data)
            self._ready.set()

    # --- LongPolling -------------------------------------------------------------------------------------------

    def begin_poll(self) -> int:
        """Start a poll; a poll still pending is superseded (it must answer 204). Returns this poll's number."""
        self._poll_generation += 1
        self._active_poll = self._poll_generation
        self._ready.set()
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
        elif now - self.last_sent >= keepalive and not self._outbox:
            # "A Ping is only sent if the interval has elapsed without a message being sent" (§4).
            self.send(PING_RECORD)

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
