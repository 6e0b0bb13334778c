"""An in-memory stand-in for ``signalr.client.HubConnection``, for UI tests that need no network.

It implements the client contract's surface (``on``, ``on_state_change``, ``on_close``, ``start``, ``send``,
``invoke``, ``stop`` and the status properties) and routes the Chatroom hub's two methods between the connections of
one :class:`FakeHub`, the way the real app server does: ``broadcastMessage`` to everyone, ``echo`` to the caller with
`` (echo from server)`` appended. Deliveries are scheduled on the event loop, never inline, like a real network.
The end-to-end tests use the real client against real processes instead.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from signalr.client import ConnectionState, SignalRClientError, TraceEvent, TransferFormatNotSupported, TransportChoice
from signalr.handshake import encode_handshake_request
from signalr.hub_protocol import HubProtocol, TransferFormat
from signalr.messages import Invocation
from signalr.protocols import protocol_named

_LABELS = {
    TransportChoice.WEBSOCKETS: "WebSockets",
    TransportChoice.SERVER_SENT_EVENTS: "ServerSentEvents",
    TransportChoice.LONG_POLLING: "LongPolling",
    TransportChoice.SSE_THEN_LONG_POLLING: "ServerSentEvents",
}


class FakeHub:
    """The shared "service" of the fake connections; records what was sent and can be told to fail."""

    def __init__(self, gateway: str = "127.0.0.1:8080") -> None:
        self.gateway = gateway
        self.connections: list[FakeHubConnection] = []
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.created: list[FakeHubConnection] = []
        self.start_error: Exception | None = None
        self.start_delay = 0.0
        self.clock: Callable[[], float] = time.time
        self._ids = itertools.count(1)

    def factory(self, url: str, **kwargs: Any) -> FakeHubConnection:
        """Use as ``ChatApp(connection_factory=hub.factory)``."""
        connection = FakeHubConnection(url, hub=self, **kwargs)
        self.created.append(connection)
        return connection

    def next_id(self) -> str:
        return f"conn-{next(self._ids)}"

    def deliver(self, sender: FakeHubConnection, target: str, arguments: tuple[Any, ...]) -> None:
        self.sent.append((target, arguments))
        if target.lower() == "broadcastmessage":
            for connection in list(self.connections):
                connection.dispatch("broadcastMessage", list(arguments))
        elif target.lower() == "echo":
            name, message = arguments
            sender.dispatch("echo", [name, f"{message} (echo from server)"])

    def push(self, target: str, *arguments: Any) -> None:
        """The server sends ``target(*arguments)`` to every connection (a peer's message)."""
        for connection in list(self.connections):
            connection.dispatch(target, list(arguments))

    def drop_all(self, error: Exception | None) -> None:
        """The server closes every connection, reporting ``error`` to ``on_close``."""
        for connection in list(self.connections):
            connection.lose(error)


class FakeHubConnection:
    """Same constructor and surface as the real ``HubConnection``."""

    def __init__(
        self,
        url: str,
        *,
        hub: FakeHub,
        transport: TransportChoice = TransportChoice.WEBSOCKETS,
        protocol: str | HubProtocol = "json",
        headers: Mapping[str, str] | None = None,
        access_token: str | None = None,
        reconnect_delays: Sequence[float] | None = (0, 2, 10, 30),
        keep_alive_interval: float = 15.0,
        server_timeout: float = 30.0,
        handshake_timeout: float = 15.0,
        trace: Callable[[TraceEvent], None] | None = None,
    ) -> None:
        self.url = url
        self.hub = hub
        self.transport = transport
        self.protocol: HubProtocol = protocol_named(protocol) if isinstance(protocol, str) else protocol
        self.headers = dict(headers or {})
        self._trace = trace
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._state_callbacks: list[Callable[[ConnectionState, ConnectionState], None]] = []
        self._close_callbacks: list[Callable[[Exception | None], Any]] = []
        self._state = ConnectionState.DISCONNECTED
        self.connection_id: str | None = None
        self.transport_name: str | None = None
        self.connected_url: str | None = None
        self.last_rtt_ms: float | None = None
        self.stopped = False

    @property
    def state(self) -> ConnectionState:
        return self._state

    def _set_state(self, new: ConnectionState) -> None:
        old, self._state = self._state, new
        for callback in self._state_callbacks:
            callback(old, new)

    def _emit(self, kind: str, method: str, url: str, status: int | None, detail: str, size: int | None = None) -> None:
        if self._trace is not None:
            host = url.split("/")[2] if "://" in url else ""
            self._trace(TraceEvent(kind, method, url, host, status, 1.5, size, detail, self.hub.clock()))

    def on(self, target: str, handler: Callable[..., Any]) -> None:
        self._handlers.setdefault(target.lower(), []).append(handler)

    def on_state_change(self, callback: Callable[[ConnectionState, ConnectionState], None]) -> None:
        self._state_callbacks.append(callback)

    def on_close(self, callback: Callable[[Exception | None], Any]) -> None:
        self._close_callbacks.append(callback)

    async def start(self) -> None:
        binary = self.protocol.transfer_format is TransferFormat.BINARY
        if binary and self.transport is TransportChoice.SERVER_SENT_EVENTS:
            # The real client refuses before any request (an event stream carries only text).
            raise TransferFormatNotSupported(
                ["'ServerSentEvents' does not support Binary."], protocol=self.protocol.name, transfer_format="Binary"
            )
        self._set_state(ConnectionState.CONNECTING)
        gateway = f"http://{self.hub.gateway}/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1"
        self._emit("negotiate", "POST", self.url + "/negotiate?negotiateVersion=1", 200, f"redirected to {gateway}")
        if self.hub.start_delay:
            await asyncio.sleep(self.hub.start_delay)
        if self.hub.start_error is not None:
            self._emit("error", "POST", gateway, 404, str(self.hub.start_error))
            self._set_state(ConnectionState.DISCONNECTED)
            raise self.hub.start_error
        self._emit("negotiate", "POST", gateway.replace("/client/?", "/client/negotiate?"), 200, "v1, 3 transports")
        self.connection_id = self.hub.next_id()
        self.transport_name = "LongPolling" if binary and self.transport.family == "sse-lp" else _LABELS[self.transport]
        self.connected_url = gateway
        self._emit("connect", "WS" if self.transport is TransportChoice.WEBSOCKETS else "GET", gateway, 101, "open")
        request = encode_handshake_request(self.protocol.name, self.protocol.version)
        name = self.protocol.name
        self._emit("handshake", "", gateway, None, f"{name}, {len(request)} bytes: handshake request ({name} v1)")
        self.last_rtt_ms = None if self.transport is TransportChoice.WEBSOCKETS else 2.0  # like the real client
        self.hub.connections.append(self)
        self._set_state(ConnectionState.CONNECTED)

    async def send(self, target: str, *arguments: Any) -> None:
        if self._state is not ConnectionState.CONNECTED:
            raise SignalRClientError("Cannot send data if the connection is not in the 'Connected' State.")
        frame = self.protocol.encode(Invocation(target, tuple(arguments), invocation_id="1"))
        name = self.protocol.name
        detail = f"{name}, {len(frame)} bytes: Invocation {target} #1"
        self._emit("send", "WS", self.connected_url or "", None, detail, len(frame))
        asyncio.get_running_loop().call_soon(self.hub.deliver, self, target, arguments)

    async def invoke(self, target: str, *arguments: Any, timeout: float | None = 30) -> Any:
        await self.send(target, *arguments)
        return None

    def dispatch(self, target: str, arguments: list[Any]) -> None:
        def run() -> None:
            for handler in self._handlers.get(target.lower(), []):
                handler(*arguments)

        asyncio.get_running_loop().call_soon(run)

    def lose(self, error: Exception | None) -> None:
        if self in self.hub.connections:
            self.hub.connections.remove(self)
        self._set_state(ConnectionState.DISCONNECTED)
        for callback in self._close_callbacks:
            callback(error)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self in self.hub.connections:
            self.hub.connections.remove(self)
        if self._state is ConnectionState.CONNECTED:
            self._set_state(ConnectionState.DISCONNECTING)
            self._emit("close", "WS", self.connected_url or "", 1000, "closed by the client (1000)")
        self._set_state(ConnectionState.DISCONNECTED)
        for callback in self._close_callbacks:
            callback(None)
