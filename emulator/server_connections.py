"""Server connections (Default and Classic mode): app servers dial in and carry the clients of their hub.

A :class:`ServerConnection` is one WebSocket from an app server, speaking the service protocol
(:mod:`signalr.service_protocol`). It is sans-socket: the endpoint (``emulator/server_endpoint.py``) feeds it the
service messages it reads (:meth:`ServerConnection.handle`), sends what :meth:`ServerConnection.take_outgoing` returns
and closes the socket once :attr:`ServerConnection.ending` is set and the queue is empty. A :class:`ServerPool` holds
the server connections of every hub and picks the one a new client goes to.

Clients reach a server connection through :class:`~emulator.connection.ClientConnection` (it implements
:class:`~emulator.connection.ClientRoute`): OpenConnection, then every client byte as ConnectionData, then
CloseConnection when the client leaves. What the app server sends back is delivered to clients through the hub's
membership (users, groups, broadcast), with each payload shared by all its recipients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flow.ids import flow_id_from_tracing_id, tracing_id
from signalr.handshake import encode_handshake_response
from signalr.messages import Close
from signalr.service_protocol import (
    Ack,
    AckStatus,
    BroadcastData,
    CheckConnectionExistenceWithAck,
    CheckGroupExistenceWithAck,
    CheckUserExistenceWithAck,
    CheckUserInGroupWithAck,
    CloseConnection,
    CloseConnectionsWithAck,
    CloseConnectionWithAck,
    CloseGroupConnectionsWithAck,
    CloseUserConnectionsWithAck,
    ConnectionData,
    Ext,
    GroupBroadcastData,
    HandshakeRequest,
    HandshakeResponse,
    JoinGroup,
    JoinGroupWithAck,
    LeaveGroup,
    LeaveGroupWithAck,
    MultiConnectionData,
    MultiGroupBroadcastData,
    MultiUserData,
    OpenConnection,
    Ping,
    ServiceMessage,
    UserData,
    UserJoinGroup,
    UserJoinGroupWithAck,
    UserLeaveGroup,
    UserLeaveGroupWithAck,
    encode,
)

from .flow import EmulatorFlow

if TYPE_CHECKING:
    from .connection import ClientConnection
    from .hub import Hub

__all__ = [
    "NO_SERVER_ERROR",
    "SERVER_DROPPED_ERROR",
    "SERVICE_PROTOCOL_VERSION",
    "ServerConnection",
    "ServerPool",
    "open_connection_claims",
]

log = logging.getLogger("emulator")

SERVICE_PROTOCOL_VERSION = 1
WEAK_CONNECTION = 2
# The real service's handshake error for a client of a Default-mode hub no app server is connected to.
NO_SERVER_ERROR = (
    "SignalR Service is now in 'Default' service mode. Current mode works as a proxy that routes client traffic to "
    "the connected app servers. However app servers are not connected."
)
# Ours: the text the real service sends when an app server goes away is not public.
SERVER_DROPPED_ERROR = "Server connection dropped: the app server carrying this connection went away."
# Request headers never passed to the app server: the client's credentials.
_PRIVATE_HEADERS = frozenset({"authorization", "cookie", "ocp-apim-subscription-key"})
# Bytes queued for one server connection before the clients it carries stop being read.
_MAX_QUEUED = 4 * 1024 * 1024


def open_connection_claims(claims: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A client token's claims as OpenConnection's (type, value) pairs: one pair per item of a list-valued claim,
    numbers as decimal strings, booleans as ``true``/``false``, other JSON values as compact JSON."""
    pairs: list[tuple[str, str]] = []
    for name, value in claims.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((name, _claim_text(item)))
    return tuple(pairs)


def _claim_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"))


def request_headers(headers: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """OpenConnection's headers: every request header but Authorization, Cookie and an APIM subscription key, values
    grouped by name."""
    grouped: dict[str, tuple[str, ...]] = {}
    names: dict[str, str] = {}
    for name, value in headers:
        if name.lower() in _PRIVATE_HEADERS:
            continue
        key = names.setdefault(name.lower(), name)
        grouped[key] = (*grouped.get(key, ()), value)
    return grouped


def _payload(payloads: Mapping[str, bytes], client: ClientConnection) -> bytes | None:
    """The payload for the client's hub protocol (``json``, ``messagepack``); the SDK's keys are lower-case, but
    nothing says they must be. None when the app server sent none for it (or the client has no protocol yet)."""
    if client.protocol is None:
        return None
    protocol = client.protocol.name
    found = payloads.get(protocol)
    if found is not None:
        return found
    wanted = protocol.lower()
    return next((data for name, data in payloads.items() if name.lower() == wanted), None)


class ServerConnection:
    """One server connection of an app server to ``hub``.

    The endpoint must feed every received service message to :meth:`handle`, send :meth:`take_outgoing` (waiting
    with :meth:`wait`), call :meth:`check_timers` regularly, and when :attr:`ending` is set flush, close the socket
    with its code and call :meth:`dropped`.
    """

    def __init__(
        self, hub: Hub, server_id: str, ping_interval: float, timeout: float, flow: EmulatorFlow | None = None
    ) -> None:
        """``flow``: the service's hop events (off when None or disabled)."""
        self.hub = hub
        self.flow = flow if flow is not None else EmulatorFlow(None)
        self.server_id = server_id
        self.connection_id = str(uuid.uuid4())
        self.handshaken = False
        self.weak = False
        self.fin = False  # the app server is shutting down: no new clients
        self.clients: dict[str, ClientConnection] = {}
        self.ending: tuple[int, str] | None = None
        self._ping_interval = ping_interval
        self._timeout = timeout
        self._outbox: list[bytes] = []
        self._buffered = 0
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._ignored: set[str] = set()
        now = time.monotonic()
        self.created_at = now
        self.last_received = now
        self.last_ping = now

    @property
    def usable(self) -> bool:
        """Whether new clients may be routed here."""
        return self.handshaken and not self.weak and not self.fin and self.ending is None

    # --- outbound ----------------------------------------------------------------------------------------------

    def send(self, message: ServiceMessage) -> None:
        """Queue one service message for the app server (dropped once the connection is ending)."""
        if self.ending is not None:
            return
        data = encode(message)
        self._outbox.append(data)
        self._buffered += len(data)
        if self._buffered > _MAX_QUEUED:
            self._drained.clear()
        self._ready.set()

    def take_outgoing(self) -> bytes:
        """Everything queued since the last call, as one buffer (one WebSocket message may hold many messages)."""
        if not self._outbox:
            return b""
        data = b"".join(self._outbox)
        self._outbox.clear()
        self._buffered = 0
        self._drained.set()
        return data

    async def wait(self, timeout: float | None = None) -> None:
        """Return when something was queued, the connection is ending, or ``timeout`` passed."""
        if self._outbox or self.ending is not None:
            return
        self._ready.clear()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            pass

    def end(self, code: int, reason: str) -> None:
        """Close this server connection: what is queued is still sent, then the socket closes with ``code``."""
        if self.ending is None:
            self.ending = (code, reason)
            self._ready.set()
            self._drained.set()

    # --- ClientRoute -------------------------------------------------------------------------------------------

    def open(self, connection: ClientConnection, protocol: str, data: bytes) -> None:
        self.clients[connection.connection_id] = connection
        self.send(
            OpenConnection(
                connection.connection_id,
                claims=open_connection_claims(connection.claims),
                headers=connection.request_headers,
                query_string=connection.client_query,
                ext={Ext.PROTOCOL: protocol},
            )
        )
        self.send(ConnectionData(connection.connection_id, data))
        log.info(
            "routed hub=%s id=%s to server connection %s (server %s)",
            self.hub.name,
            connection.connection_id,
            self.connection_id,
            self.server_id,
        )

    async def forward(self, connection: ClientConnection, data: bytes) -> None:
        flow = self.flow
        if flow.enabled:
            self._forward_traced(connection, data)
        else:
            self.send(ConnectionData(connection.connection_id, data))
        # Backpressure: while the app server is not reading, stop reading its clients.
        await self._drained.wait()

    def _forward_traced(self, connection: ClientConnection, data: bytes) -> None:
        """Flow on: the client's invocation gets its flow id as the tracing id of its ConnectionData, and both the
        invocation and the forwarding are reported."""
        minted = self.flow.routed_invocation(connection, data)
        ext: dict[int, Any] = {int(Ext.TRACING_ID): tracing_id(minted)} if minted is not None else {}
        self.send(ConnectionData(connection.connection_id, data, ext))
        if minted is not None:
            self.flow.forwarded(connection, minted, len(data))

    def client_closed(self, connection: ClientConnection, error: str | None) -> None:
        if self.clients.pop(connection.connection_id, None) is not None:
            self.send(CloseConnection(connection.connection_id, error or ""))

    # --- timers ------------------------------------------------------------------------------------------------

    def check_timers(self, now: float, handshake_timeout: float) -> None:
        """Handshake deadline, silence timeout and the periodic Ping at time ``now`` (``time.monotonic()``)."""
        if self.ending is not None:
            return
        if not self.handshaken:
            if now - self.created_at >= handshake_timeout:
                self._end_logged(1008, "Handshake was not completed in time.")
        elif now - self.last_received >= self._timeout:
            self._end_logged(1000, f"No message from the app server within {self._timeout:g} s.")
        elif now - self.last_ping >= self._ping_interval:
            self.last_ping = now
            self.send(Ping())

    def _end_logged(self, code: int, reason: str) -> None:
        log.info("closing server connection %s hub=%s: %s", self.connection_id, self.hub.name, reason)
        self.end(code, reason)

    # --- inbound -----------------------------------------------------------------------------------------------

    def handle(self, message: ServiceMessage) -> None:
        """Act on one service message from the app server; sets :attr:`ending` when the connection must close."""
        if self.ending is not None:
            return
        self.last_received = time.monotonic()
        if not self.handshaken:
            self._handshake(message)
            return
        match message:
            case Ping():
                self._ping(message)
            case ConnectionData(connection_id=cid, payload=payload):
                client = self.clients.get(cid) or self.hub.connections.get(cid)
                if client is not None:
                    client.deliver(payload)
                if self.flow.enabled and message.tracing_id is not None:
                    self.flow.service_message(
                        "ConnectionData", flow_id_from_tracing_id(message.tracing_id), len(payload)
                    )
            case CloseConnection(connection_id=cid, error=error):
                client = self.clients.pop(cid, None)
                if client is not None:
                    # The app server already sent the hub Close message as data: deliver it, then end the transport.
                    client.close(error or None, by_peer=True)
            case MultiConnectionData(connection_ids=ids, payloads=payloads):
                connections = self.hub.connections
                self._fan_out(message, payloads, [connections[cid] for cid in ids if cid in connections])
            case _:
                self._handle_hub_operation(message)

    def _handshake(self, message: ServiceMessage) -> None:
        if not isinstance(message, HandshakeRequest):
            self._end_logged(1002, f"The first message must be a HandshakeRequest, not {type(message).__name__}.")
            return
        if message.version != SERVICE_PROTOCOL_VERSION:
            error = f"Version {message.version} of the service protocol is not supported; use version 1."
            self.send(HandshakeResponse(error=error))
            self._end_logged(1002, error)
            return
        self.handshaken = True
        self.weak = message.connection_type == WEAK_CONNECTION
        self.last_ping = time.monotonic()
        self.send(HandshakeResponse(error="", connection_id=self.connection_id))
        log.info(
            "server connection %s handshake hub=%s server=%s type=%d",
            self.connection_id,
            self.hub.name,
            self.server_id,
            message.connection_type,
        )

    def _ping(self, ping: Ping) -> None:
        if ping.get("echo") is not None:
            self.send(ping)
        shutdown = ping.get("shutdown")
        if shutdown is not None and shutdown.startswith("fin:"):
            self.fin = True
            self.send(Ping(("shutdown", "finack")))
            log.info("server connection %s hub=%s takes no new clients (fin)", self.connection_id, self.hub.name)
        # Every other ping (status, #clientInHub, …) only refreshed last_received.

    def _handle_hub_operation(self, message: ServiceMessage) -> None:
        hub = self.hub
        match message:
            case UserData(user_id=user, payloads=payloads):
                self._fan_out(message, payloads, hub.user_connections(user))
            case MultiUserData(user_ids=users, payloads=payloads):
                self._fan_out(message, payloads, [c for user in set(users) for c in hub.user_connections(user)])
            case BroadcastData(excluded=excluded, payloads=payloads):
                skip = set(excluded)
                self._fan_out(message, payloads, [c for c in hub.connections.values() if c.connection_id not in skip])
            case GroupBroadcastData(group=group, excluded=excluded, payloads=payloads, excluded_users=users):
                skip, skip_users = set(excluded), set(users)
                targets = [
                    c
                    for c in hub.group_connections(group)
                    if c.connection_id not in skip and c.user_id not in skip_users
                ]
                self._fan_out(message, payloads, targets)
            case MultiGroupBroadcastData(groups=groups, payloads=payloads):
                unique = {c.connection_id: c for group in groups for c in hub.group_connections(group)}
                self._fan_out(message, payloads, unique.values())
            case JoinGroup(connection_id=cid, group=group):
                hub.add_to_group(group, cid)
            case LeaveGroup(connection_id=cid, group=group):
                hub.remove_from_group(group, cid)
            case UserJoinGroup(user_id=user, group=group):
                hub.add_user_to_group(user, group)  # a TTL (ext 2) is not applied: membership lasts
            case UserLeaveGroup(user_id=user, group=group):
                hub.remove_user_from_group(user, group)
            case JoinGroupWithAck(connection_id=cid, group=group, ack_id=ack):
                self._ack(ack, hub.add_to_group(group, cid))
            case LeaveGroupWithAck(connection_id=cid, group=group, ack_id=ack):
                self._ack(ack, hub.remove_from_group(group, cid))
            case UserJoinGroupWithAck(user_id=user, group=group, ack_id=ack):
                hub.add_user_to_group(user, group)
                self._ack(ack, True)
            case UserLeaveGroupWithAck(user_id=user, group=group, ack_id=ack):
                hub.remove_user_from_group(user, group)
                self._ack(ack, True)
            case CheckUserInGroupWithAck(user_id=user, group=group, ack_id=ack):
                self._ack(ack, hub.user_in_group(user, group))
            case CheckGroupExistenceWithAck(group=group, ack_id=ack):
                self._ack(ack, hub.group_exists(group))
            case CheckConnectionExistenceWithAck(connection_id=cid, ack_id=ack):
                self._ack(ack, cid in hub.connections)
            case CheckUserExistenceWithAck(user_id=user, ack_id=ack):
                self._ack(ack, hub.user_exists(user))
            case CloseConnectionWithAck(connection_id=cid, reason=reason, ack_id=ack):
                target = hub.connections.get(cid) or self.clients.get(cid)
                if target is not None:
                    target.close(reason or None)
                self._ack(ack, target is not None)
            case CloseConnectionsWithAck(reason=reason, ack_id=ack, excluded=excluded):
                hub.close_connections(list(hub.connections.values()), reason or None, excluded)
                self._ack(ack, True)
            case CloseUserConnectionsWithAck(user_id=user, reason=reason, ack_id=ack, excluded=excluded):
                hub.close_connections(hub.user_connections(user), reason or None, excluded)
                self._ack(ack, True)
            case CloseGroupConnectionsWithAck(group=group, reason=reason, ack_id=ack, excluded=excluded):
                hub.close_connections(hub.group_connections(group), reason or None, excluded)
                self._ack(ack, True)
            case _:
                name = type(message).__name__
                if name not in self._ignored:
                    self._ignored.add(name)
                    log.debug("server connection %s: %s is not served, ignored", self.connection_id, name)

    def _fan_out(
        self, message: ServiceMessage, payloads: Mapping[str, bytes], targets: Iterable[ClientConnection]
    ) -> None:
        # Every recipient of one protocol gets the same bytes object: nothing is copied per client.
        started = time.monotonic() if self.flow.enabled else 0.0
        recipients = list(targets)
        for connection in recipients:
            record = _payload(payloads, connection)
            if record is not None:
                connection.send(record)
        if self.flow.enabled:
            self._report_fan_out(message, payloads, recipients, started)

    def _report_fan_out(
        self,
        message: ServiceMessage,
        payloads: Mapping[str, bytes],
        recipients: list[ClientConnection],
        started: float,
    ) -> None:
        """Flow on: the service message received and its one fan-out hop (recipients counted per protocol)."""
        tracing = getattr(message, "tracing_id", None)  # every send message carries the extension map
        flow = flow_id_from_tracing_id(tracing if isinstance(tracing, int) else None)
        name = type(message).__name__
        self.flow.service_message(name, flow, sum(len(p) for p in payloads.values()), self.last_received)
        counts: dict[str, int] = {}
        for connection in recipients:
            protocol = connection.protocol
            if protocol is not None and not connection.closed and _payload(payloads, connection) is not None:
                counts[protocol.name] = counts.get(protocol.name, 0) + 1
        self.flow.fanned_out(name, counts, flow, "default", started)

    def _ack(self, ack_id: int, found: bool) -> None:
        self.send(Ack(ack_id, int(AckStatus.OK if found else AckStatus.NOT_FOUND)))

    # --- the end -----------------------------------------------------------------------------------------------

    def dropped(self) -> None:
        """The socket is gone: every client carried here ends with a Close message that allows reconnecting (a
        client still waiting for its handshake answer gets a handshake error instead)."""
        self.end(1000, "closed")
        clients = list(self.clients.values())
        self.clients.clear()
        for client in clients:
            if client.opened and client.protocol is not None:
                record = client.protocol.encode(Close(SERVER_DROPPED_ERROR, allow_reconnect=True))
            else:
                record = encode_handshake_response(SERVER_DROPPED_ERROR)
            client.end_routed(record, SERVER_DROPPED_ERROR)
        if clients:
            log.info(
                "server connection %s hub=%s ended, closed %d clients", self.connection_id, self.hub.name, len(clients)
            )

    def __repr__(self) -> str:
        return f"<ServerConnection hub={self.hub.name} id={self.connection_id} server={self.server_id}>"


class ServerPool:
    """The server connections of every hub (hub names lower-case), and the choice of one for a new client."""

    def __init__(self) -> None:
        self._by_hub: dict[str, list[ServerConnection]] = {}

    def add(self, server: ServerConnection) -> None:
        self._by_hub.setdefault(server.hub.name, []).append(server)

    def remove(self, server: ServerConnection) -> None:
        servers = self._by_hub.get(server.hub.name, [])
        if server in servers:
            servers.remove(server)
        if not servers:
            self._by_hub.pop(server.hub.name, None)

    def pick(self, hub: str) -> ServerConnection | None:
        """The usable server connection of ``hub`` carrying the fewest clients (the first one on a tie)."""
        usable = [s for s in self._by_hub.get(hub.lower(), []) if s.usable]
        return min(usable, key=lambda s: len(s.clients), default=None)

    def of_hub(self, hub: str) -> list[ServerConnection]:
        return list(self._by_hub.get(hub.lower(), []))

    def all(self) -> list[ServerConnection]:
        return [server for servers in self._by_hub.values() for server in servers]
