"""Default mode: the clients the service carries to this app server, each run through the same Chat hub.

The service announces a client with ``OpenConnection`` and then forwards its raw bytes as ``ConnectionData``: first its
hub handshake, then its messages. Each client gets the server-side hub-protocol state machine the emulator uses
(:class:`signalr.connection.ServerProtocol`) with every hub protocol this app server registers, so the handshake picks
JSON or MessagePack and everything the app server writes to the client afterwards (handshake reply, completions,
pings, Close) is in that protocol. Its invocations go to :meth:`server.hub.ChatHub.invoke`, and the hub's actions become
service messages (:class:`ServiceMessageSink`) written on the server connection that carries the caller, so a reply
cannot overtake the caller's handshake or completion. Like the ASP.NET SDK, a service message for many clients carries
the invocation once per registered protocol (the service picks each client's), and one for a single client of this
app server only in that client's protocol. As in ASP.NET Core, the app server owns the hub keep-alive of its clients:
a Ping after 15 s without sending, a close after 30 s without receiving (``docs/default-mode.md``).

Nothing here touches a socket: a :class:`ServerLink` (a server connection) writes the messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flow.hops import Lifeline
from flow.ids import flow_id_from_tracing_id, tracing_id
from signalr import service_protocol as sp
from signalr.connection import (
    ConnectionClosed,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    ServerProtocol,
    State,
)
from signalr.hub_protocol import HubProtocol
from signalr.messages import Invocation, StreamInvocation
from signalr.protocols import PROTOCOLS
from signalr.redact import redact_text

from .flow import AppFlow, message_flow_id
from .hub import (
    Caller,
    ChatHub,
    DeliveryFailed,
    HubAction,
    SendToAll,
    SendToConnection,
    SendToGroup,
    SendToUser,
    perform,
)

__all__ = ["CarriedClient", "ClientTable", "ClientTimers", "ServerLink", "ServiceMessageSink", "payloads_for"]

log = logging.getLogger("server.clients")

# What each ConnectionData carries (ext 5), as newer SDKs mark it: the handshake reply, an invocation-type message, or
# anything else (pings, close).
_HANDSHAKE = sp.DataMessageType.HANDSHAKE
_INVOCATION = sp.DataMessageType.INVOCATION
_OTHER = sp.DataMessageType.OTHER


class ServerLink(Protocol):
    """The server connection a client arrived on, as the clients see it."""

    @property
    def is_open(self) -> bool:
        """Whether messages can still be written."""

    async def send(self, message: sp.ServiceMessage) -> None:
        """Write one service message; raises :class:`ConnectionError` when the connection is gone."""


@dataclass(frozen=True)
class ClientTimers:
    """ASP.NET Core's hub defaults: KeepAliveInterval 15 s, ClientTimeoutInterval 30 s, HandshakeTimeout 15 s."""

    keepalive: float = 15.0
    client_timeout: float = 30.0
    handshake_timeout: float = 15.0


def payloads_for(
    target: str, arguments: tuple[Any, ...], protocols: Mapping[str, HubProtocol] = PROTOCOLS
) -> dict[str, bytes]:
    """One Invocation as a framed message of each of ``protocols``, keyed by protocol name (``json``,
    ``messagepack``): a service message's payload map, as the SDK writes it. Raises :class:`ValueError` when a
    protocol cannot carry an argument."""
    message = Invocation(target, arguments)
    return {protocol.name: protocol.encode(message) for protocol in protocols.values()}


class ServiceMessageSink:
    """The Default-mode :class:`~server.hub.ActionSink`: each action as one service message on ``link``.

    Payloads are written for every one of ``protocols``, except for a send to one connection whose protocol
    ``protocol_of`` knows (a client this app server carries): only that one, as the SDK does. With ``flow`` (flow on)
    each message is reported as a ``server-connection`` hop and carries its flow id as the tracing id.
    """

    def __init__(
        self,
        link: ServerLink,
        protocols: Mapping[str, HubProtocol] = PROTOCOLS,
        protocol_of: Callable[[str], HubProtocol | None] = lambda connection_id: None,
        flow: AppFlow | None = None,
    ) -> None:
        self._link = link
        self._protocols = protocols
        self._protocol_of = protocol_of
        self._flow = flow

    async def send(self, action: HubAction, flow_id: str | None = None) -> None:
        protocols = self._protocols
        if isinstance(action, SendToConnection):
            own = self._protocol_of(action.connection_id)
            if own is not None:
                protocols = {own.name: own}
        try:
            payloads = payloads_for(action.target, action.arguments, protocols)
        except ValueError as exc:
            raise DeliveryFailed(f"the arguments cannot be encoded: {exc}") from None
        # The flow id rides back as the tracing id (only while flow is on; docs/architecture.md §3).
        ext: dict[int, Any] = {int(sp.Ext.TRACING_ID): tracing_id(flow_id)} if flow_id is not None else {}
        message: sp.ServiceMessage
        match action:
            case SendToAll():
                message = sp.BroadcastData((), payloads, ext)
            case SendToConnection():
                # A single-connection send goes as MultiConnectionData, as the SDK does, so the service treats it as
                # a hub message and not as the raw output of that connection.
                message = sp.MultiConnectionData((action.connection_id,), payloads, ext)
            case SendToUser():
                message = sp.UserData(action.user_id, payloads, ext)
            case SendToGroup():
                message = sp.GroupBroadcastData(action.group, (), payloads, ext)
        flow = self._flow
        started = time.monotonic() if flow is not None else 0.0
        try:
            await self._link.send(message)
        except ConnectionError as exc:
            raise DeliveryFailed(f"the server connection closed before the send: {exc}") from None
        if flow is not None:
            label = f"{type(message).__name__} ({', '.join(payloads)}): {action.target}"
            size = sum(len(payload) for payload in payloads.values())
            flow.emit(
                Lifeline.APP, Lifeline.SERVICE, "server-connection", label, started=started, flow=flow_id, size=size
            )


class CarriedClient:
    """One client connection of the service, served by this app server's hub.

    Feed it what the service forwards (:meth:`receive`); it answers through ``link``. Call :meth:`tick` about once a
    second for the keep-alive and timeouts; :meth:`closed_by_service` when the service says the client left.
    """

    def __init__(
        self,
        open_message: sp.OpenConnection,
        link: ServerLink,
        hub: ChatHub,
        timers: ClientTimers,
        max_message_size: int,
        protocols: Mapping[str, HubProtocol] = PROTOCOLS,
        protocol_of: Callable[[str], HubProtocol | None] = lambda connection_id: None,
        flow: AppFlow | None = None,
    ) -> None:
        self.connection_id = open_message.connection_id
        self.link = link
        claims = dict(open_message.claims)
        # The user id the service routes UserData by: `asrs.s.uid`, which our negotiate sets (docs/protocol.md §2).
        self.user_id = claims.get("asrs.s.uid") or claims.get("nameid") or None
        # The protocol the service says the client asked for; the handshake it forwards decides.
        self.announced_protocol = open_message.protocol
        self._hub = hub
        self._timers = timers
        self._protocols = protocols
        self._protocol_of = protocol_of
        self._flow = flow
        self._protocol = ServerProtocol(max_message_size, protocols=protocols)
        now = time.monotonic()
        self.opened_at = now
        self.last_received = now
        self.last_sent = now
        self.closed = False

    @property
    def caller(self) -> Caller:
        return Caller(self.connection_id, self.user_id)

    @property
    def hub_protocol(self) -> HubProtocol | None:
        """The hub protocol the client's handshake chose; ``None`` before the handshake or after the client ended."""
        if self.closed or self._protocol.state is not State.OPEN:
            return None
        return self._protocol.protocol

    async def receive(self, payload: bytes, tracing: int | None = None) -> None:
        """Bytes of this client forwarded by the service (ConnectionData, with its tracing id if it had one)."""
        if self.closed:
            return
        received = time.monotonic() if self._flow is not None else 0.0
        self.last_received = time.monotonic()
        events = self._protocol.receive_data(payload)
        for event in events:
            if isinstance(event, HandshakeCompleted):
                await self._flush(_HANDSHAKE)
                user = f" (user {self.user_id})" if self.user_id else ""
                log.info("connected: %s%s, protocol %s", self.connection_id, user, event.protocol)
                if self.announced_protocol is not None and self.announced_protocol.lower() != event.protocol.lower():
                    log.warning(
                        "%s: the service announced protocol %r, the handshake asked for %r",
                        self.connection_id,
                        self.announced_protocol[:64],
                        event.protocol[:64],
                    )
            elif isinstance(event, HandshakeFailed):
                await self._flush(_HANDSHAKE)
                await self._end(event.error)
            elif isinstance(event, MessageReceived):
                message = event.message
                if isinstance(message, Invocation | StreamInvocation):
                    await self._invoke(message, tracing, received)
                    # The service traces one message per ConnectionData: later ones of a batch get their own id.
                    tracing = None
            elif isinstance(event, ConnectionClosed):
                if event.by_peer:
                    # The client sent Close: the connection ends normally.
                    await self._end(None)
                else:
                    # A malformed or oversized record: the protocol queued a Close message with the reason.
                    log.info("protocol error from %s: %s", self.connection_id, event.error)
                    await self._flush(_OTHER)
                    await self._end(event.error)
            if self.closed:
                break

    async def _invoke(self, message: Invocation | StreamInvocation, tracing: int | None, received: float) -> None:
        call = self._hub.invoke(self.caller, message)
        log.debug("invoke %r from %s: %d send(s)", call.target[:64], self.connection_id, len(call.actions))
        flow = self._flow
        flow_id: str | None = None
        if flow is not None:
            flow_id = message_flow_id(flow_id_from_tracing_id(tracing), self.connection_id, call.invocation_id)
            sends = f"{len(call.actions)} send(s)" if call.error is None else "refused"
            flow.emit(
                Lifeline.SERVICE,
                Lifeline.APP,
                "server-connection",
                f"ConnectionData: invocation {call.target}: {sends}",
                started=received,
                flow=flow_id,
                connection_id=self.connection_id,
            )
        sink = ServiceMessageSink(self.link, self._protocols, self._protocol_of, flow)
        failure = await perform(call, sink, log, self.connection_id, flow_id)
        completion = call.completion(failure)
        if completion is not None and self.hub_protocol is not None:
            self._protocol.send(completion)
            await self._flush(_INVOCATION, flow_id)

    async def tick(self, now: float) -> None:
        """Keep-alive and timeouts at time ``now`` (``time.monotonic()``)."""
        if self.closed:
            return
        state = self._protocol.state
        if state is State.HANDSHAKING:
            if now - self.opened_at >= self._timers.handshake_timeout:
                log.info("handshake timeout: %s", self.connection_id)
                await self._end("Handshake was not completed in time.")
        elif now - self.last_received >= self._timers.client_timeout:
            await self.close("Server timeout elapsed without receiving a message from the client.")
        elif now - self.last_sent >= self._timers.keepalive and state is State.OPEN:
            self._protocol.send_ping()
            await self._flush(_OTHER)

    async def close(self, error: str | None) -> None:
        """End this client from the app side: a Close message, then CloseConnection to the service."""
        if self.closed:
            return
        if self._protocol.state is State.OPEN:
            self._protocol.close(error)
            await self._flush(_OTHER)
        await self._end(error)

    def closed_by_service(self, error: str) -> None:
        """The service says the client left (CloseConnection): forget it without answering."""
        if not self.closed:
            self.closed = True
            self._protocol.close()
            self._protocol.data_to_send()
            if error:
                log.info("disconnected: %s: %s", self.connection_id, redact_text(error)[:300])
            else:
                log.info("disconnected: %s", self.connection_id)

    async def _flush(self, kind: sp.DataMessageType, flow_id: str | None = None) -> None:
        data = self._protocol.data_to_send()
        if data:
            await self._write(data, kind, flow_id)

    async def _write(self, data: bytes, kind: sp.DataMessageType, flow_id: str | None = None) -> None:
        """Write the client's bytes; ``flow_id`` (flow on, a completion) rides as the tracing id and is reported."""
        self.last_sent = time.monotonic()
        ext: dict[int, Any] = {int(sp.Ext.DATA_MESSAGE_TYPE): int(kind)}
        if flow_id is not None:
            ext[int(sp.Ext.TRACING_ID)] = tracing_id(flow_id)
        try:
            await self.link.send(sp.ConnectionData(self.connection_id, data, ext))
        except ConnectionError:
            self.closed = True  # the server connection is gone; the service closes the client on its side
            return
        if flow_id is not None and self._flow is not None:
            self._flow.emit(
                Lifeline.APP,
                Lifeline.SERVICE,
                "server-connection",
                "ConnectionData: completion to the caller",
                started=self.last_sent,
                flow=flow_id,
                connection_id=self.connection_id,
                size=len(data),
            )

    async def _end(self, error: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        log.info("closing: %s%s", self.connection_id, f": {redact_text(error)[:300]}" if error else "")
        try:
            await self.link.send(sp.CloseConnection(self.connection_id, error or ""))
        except ConnectionError:
            pass


class ClientTable:
    """Every client carried by this app server's server connections, by connection id."""

    def __init__(
        self,
        hub: ChatHub,
        timers: ClientTimers,
        max_message_size: int = 1024 * 1024,
        protocols: Mapping[str, HubProtocol] = PROTOCOLS,
        flow: AppFlow | None = None,
    ) -> None:
        self._hub = hub
        self._flow = flow
        self._timers = timers
        self._max_message_size = max_message_size
        self._protocols = protocols
        self._clients: dict[str, CarriedClient] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def protocol_of(self, connection_id: str) -> HubProtocol | None:
        """The hub protocol of a client this app server carries, once its handshake chose one."""
        client = self._clients.get(connection_id)
        return client.hub_protocol if client is not None else None

    def on(self, link: ServerLink) -> list[CarriedClient]:
        """The clients carried by ``link``."""
        return [client for client in self._clients.values() if client.link is link]

    async def handle(self, message: sp.ServiceMessage, link: ServerLink) -> None:
        """A client-related message from the service, read on ``link``."""
        if isinstance(message, sp.OpenConnection):
            previous = self._clients.get(message.connection_id)
            if previous is not None:
                previous.closed_by_service("")
            self._clients[message.connection_id] = CarriedClient(
                message,
                link,
                self._hub,
                self._timers,
                self._max_message_size,
                self._protocols,
                self.protocol_of,
                self._flow,
            )
            if self._flow is not None:
                label = f"OpenConnection ({message.protocol or 'protocol not announced'})"
                self._flow.emit(Lifeline.SERVICE, Lifeline.APP, "connect", label, connection_id=message.connection_id)
        elif isinstance(message, sp.ConnectionData):
            client = self._clients.get(message.connection_id)
            if client is not None:
                await client.receive(message.payload, message.tracing_id)
                if client.closed:
                    self._clients.pop(client.connection_id, None)
        elif isinstance(message, sp.CloseConnection):
            client = self._clients.pop(message.connection_id, None)
            if client is not None:
                client.closed_by_service(message.error)
                if self._flow is not None:
                    label = "CloseConnection" + (f": {message.error}" if message.error else "")
                    self._flow.emit(
                        Lifeline.SERVICE, Lifeline.APP, "connect", label, connection_id=client.connection_id
                    )

    def link_lost(self, link: ServerLink) -> int:
        """``link`` ended: the service ends the clients it carried, so forget them. Returns how many."""
        lost = self.on(link)
        for client in lost:
            self._clients.pop(client.connection_id, None)
            client.closed_by_service("the server connection carrying it closed")
        return len(lost)

    async def tick(self, now: float) -> None:
        """Run every client's keep-alive and timeouts once."""
        for client in list(self._clients.values()):
            await client.tick(now)
            if client.closed:
                self._clients.pop(client.connection_id, None)
