"""The transport-independent core: hubs with their connections, groups and users, and the service that owns them.

Sends take one hub message and encode it once per hub protocol in use among its recipients (JSON, MessagePack), never
once per recipient: every recipient of one protocol gets the *same* bytes object in its outbound queue. A recipient
whose queue is full is dropped by its own :meth:`ClientConnection.send`; the others are unaffected.

Hub names are case-insensitive (``docs/protocol.md`` trap 1): they are stored lower-cased. Group names and user ids
are case-sensitive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from signalr.hub_protocol import HubProtocol
from signalr.messages import HubMessage
from signalr.redact import redact_text

from .collector import HeapFreezer
from .connection import ClientConnection, ClientRoute, InboundMessage, TimerWheel
from .flow import EmulatorFlow, ProtocolCounts
from .negotiated import Negotiated
from .server_connections import NO_SERVER_ERROR, ServerPool
from .settings import EmulatorSettings
from .upstream import UpstreamDispatcher

__all__ = ["HUB_NAME", "INVALID_HUB_NAME", "SERVICE_KEY", "Hub", "SignalRService"]

log = logging.getLogger("emulator")

# §6.1: the emulator's hub-name rule, applied to clients too so every connected hub is addressable by REST.
HUB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_`,.\[\]]{0,127}$")
INVALID_HUB_NAME = "Invalid hub name: it must start with a letter and contain only letters, digits or '_'."


class Hub:
    """Connections of one hub, its groups and its users. Only open (handshaken) connections are members."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connections: dict[str, ClientConnection] = {}
        self._groups: dict[str, set[str]] = {}
        self._group_users: dict[str, set[str]] = {}
        self._users: dict[str, set[str]] = {}

    # --- membership ----------------------------------------------------------------------------------------

    def add(self, connection: ClientConnection) -> None:
        self.connections[connection.connection_id] = connection
        if connection.user_id is not None:
            self._users.setdefault(connection.user_id, set()).add(connection.connection_id)

    def remove(self, connection: ClientConnection) -> None:
        cid = connection.connection_id
        if self.connections.pop(cid, None) is None:
            return
        self.remove_from_all_groups(cid)
        if connection.user_id is not None:
            ids = self._users.get(connection.user_id)
            if ids is not None:
                ids.discard(cid)
                if not ids:
                    del self._users[connection.user_id]

    def add_to_group(self, group: str, connection_id: str) -> bool:
        """Add a connection to ``group``; False when the connection does not exist."""
        if connection_id not in self.connections:
            return False
        self._groups.setdefault(group, set()).add(connection_id)
        return True

    def remove_from_group(self, group: str, connection_id: str) -> bool:
        """Remove a connection from ``group``; False when the connection does not exist."""
        if connection_id not in self.connections:
            return False
        self._discard(self._groups, group, connection_id)
        return True

    def remove_from_all_groups(self, connection_id: str) -> None:
        for group in [g for g, ids in self._groups.items() if connection_id in ids]:
            self._discard(self._groups, group, connection_id)

    def add_user_to_group(self, user: str, group: str) -> None:
        self._group_users.setdefault(group, set()).add(user)

    def remove_user_from_group(self, user: str, group: str) -> None:
        self._discard(self._group_users, group, user)

    def remove_user_from_all_groups(self, user: str) -> None:
        for group in [g for g, users in self._group_users.items() if user in users]:
            self._discard(self._group_users, group, user)

    @staticmethod
    def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
        members = index.get(key)
        if members is not None:
            members.discard(value)
            if not members:
                del index[key]

    # --- queries -------------------------------------------------------------------------------------------

    def group_connections(self, group: str) -> list[ClientConnection]:
        """Connections in ``group``: those added directly and those of users added to it."""
        ids = set(self._groups.get(group, ()))
        for user in self._group_users.get(group, ()):
            ids |= self._users.get(user, set())
        return [self.connections[cid] for cid in ids if cid in self.connections]

    def user_connections(self, user: str) -> list[ClientConnection]:
        return [self.connections[cid] for cid in self._users.get(user, ()) if cid in self.connections]

    def group_exists(self, group: str) -> bool:
        return bool(self.group_connections(group))

    def user_exists(self, user: str) -> bool:
        return bool(self._users.get(user))

    def user_in_group(self, user: str, group: str) -> bool:
        return user in self._group_users.get(group, ())

    # --- sending -------------------------------------------------------------------------------------------

    @staticmethod
    def _deliver(
        message: HubMessage,
        targets: Iterable[ClientConnection],
        excluded: Iterable[str] = (),
        counts: ProtocolCounts | None = None,
    ) -> int:
        """Queue ``message`` to ``targets`` but ``excluded`` ids; returns how many accepted it. ``counts`` (given
        only while flow is on) gets how many accepted it per hub protocol.

        Raises :class:`ValueError`, before anything is queued, when a recipient's protocol cannot carry it.
        """
        skip = set(excluded)
        # One list of connections, no object per recipient (a fan-out to thousands must not feed the collector).
        recipients = [c for c in targets if c.protocol is not None and not (skip and c.connection_id in skip)]
        encoded: dict[HubProtocol | None, bytes] = {}  # all before anything is queued: ValueError leaves all as it was
        for connection in recipients:
            protocol = connection.protocol
            if protocol not in encoded and protocol is not None:
                encoded[protocol] = protocol.encode(message)
        count = 0
        for connection in recipients:
            if connection.send(encoded[connection.protocol]):
                count += 1
        if counts is not None:
            for connection in recipients:
                protocol = connection.protocol
                if protocol is not None and not connection.closed:
                    counts[protocol.name] = counts.get(protocol.name, 0) + 1
        return count

    def broadcast(self, message: HubMessage, excluded: Iterable[str] = (), counts: ProtocolCounts | None = None) -> int:
        """Queue ``message`` to every connection but ``excluded``; returns how many accepted it. Raises
        :class:`ValueError` (nothing sent) when a recipient's protocol cannot carry it."""
        return self._deliver(message, self.connections.values(), excluded, counts)

    def send_to_user(self, user: str, message: HubMessage, counts: ProtocolCounts | None = None) -> int:
        return self._deliver(message, self.user_connections(user), (), counts)

    def send_to_connection(self, connection_id: str, message: HubMessage, counts: ProtocolCounts | None = None) -> int:
        connection = self.connections.get(connection_id)
        return self._deliver(message, [connection] if connection else [], (), counts)

    def send_to_group(
        self, group: str, message: HubMessage, excluded: Iterable[str] = (), counts: ProtocolCounts | None = None
    ) -> int:
        return self._deliver(message, self.group_connections(group), excluded, counts)

    def close_connections(
        self, targets: Iterable[ClientConnection], error: str | None, excluded: Iterable[str] = ()
    ) -> int:
        skip = set(excluded)
        closing = [c for c in targets if c.connection_id not in skip]
        for connection in closing:
            connection.close(error)
        return len(closing)


class SignalRService:
    """The emulated service: hubs, the id → connection table, timers, the bridge to the upstream and, in Default and
    Classic mode, the app servers' server connections (:attr:`servers`) that carry clients.

    Call :meth:`start` once inside the event loop before serving and :meth:`stop` on shutdown.
    """

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        # Hop events (--flow-to); off, hot paths check ``flow.enabled`` and nothing else.
        self.flow = EmulatorFlow(settings.flow_to)
        self.upstream = UpstreamDispatcher(settings, self.flow)
        self.servers = ServerPool()
        self._hubs: dict[str, Hub] = {}
        # Every id handed out and not yet forgotten: compact until a transport starts it (emulator/negotiated.py).
        self._by_token: dict[str, ClientConnection | Negotiated] = {}
        self._timers = TimerWheel(settings.tick, settings.keepalive_interval, settings.client_timeout)
        self._maintenance: asyncio.Task[None] | None = None
        self._heap = HeapFreezer(settings.gc_freeze_step)
        self._gone = 0  # connections forgotten in all

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.upstream.start()
        self._maintenance = asyncio.create_task(self._run_timers(), name="emulator-timers")

    async def stop(self, reason: str = "The service is shutting down.") -> None:
        """Close every connection (each gets a Close message), then every server connection (WebSocket close 1000),
        deliver pending upstream events briefly, stop."""
        for connection in list(self._by_token.values()):
            if isinstance(connection, ClientConnection):
                connection.close(reason)
        for server in self.servers.all():
            server.end(1000, reason)
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        await self.upstream.stop()
        self.flow.close()

    async def _run_timers(self) -> None:
        """Every tick, the timers of the connections with one due (:class:`TimerWheel`), not a sweep over all; then
        the collector's view of the heap (:class:`HeapFreezer`)."""
        while True:
            await asyncio.sleep(self._timers.tick)
            self._check_due(time.monotonic())
            self._heap.tick(len(self._by_token), self._gone)

    def _check_due(self, now: float) -> None:
        """Run the due connections' timers; forget the expired ones, file the others again. Holds none of them once
        it returns (the heap freezer may collect right after)."""
        timers = self._timers
        keepalive = timers.keepalive
        client_timeout = timers.client_timeout
        for connection in timers.due(now):
            if isinstance(connection, Negotiated):
                self._never_started(connection)
                continue
            assert isinstance(connection, ClientConnection)
            try:
                connection.check_timers(now, keepalive, client_timeout)
                if connection.expired(now):
                    token = connection.connection_token
                    if self._by_token.get(token) is connection:
                        del self._by_token[token]
                        self._gone += 1
                    continue
                timers.schedule(connection, connection.next_check(now, keepalive, client_timeout))
            except Exception:  # one broken connection must not stop the timers of all others
                log.exception("timer check failed for %r", connection)

    # --- hubs and connections ------------------------------------------------------------------------------

    def hub(self, name: str) -> Hub:
        """The hub named ``name`` (case-insensitive), created on first use."""
        key = name.lower()
        hub = self._hubs.get(key)
        if hub is None:
            hub = self._hubs[key] = Hub(key)
        return hub

    def find_hub(self, name: str) -> Hub | None:
        return self._hubs.get(name.lower())

    def new_connection(
        self,
        hub: str,
        *,
        negotiate_version: int,
        user_id: str | None,
        claims: dict[str, Any],
    ) -> Negotiated:
        """Hand out a connection id. ``connectionToken`` differs from ``connectionId`` under v1 (trap 6). The token's
        ``claims`` set the id's timers; the transport's request brings the claims the connection runs with."""
        connection_id = secrets.token_urlsafe(16)
        token = secrets.token_urlsafe(16) if negotiate_version >= 1 else connection_id
        settings = self.settings
        negotiated = Negotiated(
            connection_id=connection_id,
            connection_token=token,
            hub=hub.lower(),
            user_id=user_id,
            created_at=time.monotonic(),
            handshake_timeout=_claim_seconds(claims, "asrs.s.cht", 1, 30, settings.handshake_timeout),
            max_poll_interval=_claim_seconds(claims, "asrs.s.ttl", 1, 300, settings.max_poll_interval),
        )
        self._timers.schedule(negotiated, negotiated.created_at + negotiated.handshake_timeout)
        self._by_token[token] = negotiated
        self._heap.tick(len(self._by_token), self._gone)
        return negotiated

    def lookup(self, token: str) -> ClientConnection | None:
        """The connection whose ``id=`` is ``token`` (made from its negotiation on first use), or None once it is
        unknown or forgotten."""
        connection = self._by_token.get(token)
        if connection is None:
            return None
        if isinstance(connection, Negotiated):
            return self._start(connection)
        return None if connection.finished else connection

    def _start(self, negotiated: Negotiated) -> ClientConnection:
        settings = self.settings
        self._timers.cancel(negotiated)
        connection = ClientConnection(
            connection_id=negotiated.connection_id,
            connection_token=negotiated.connection_token,
            hub=negotiated.hub,
            user_id=negotiated.user_id,
            claims={},
            client_query="",
            listener=self,
            max_buffer_size=settings.max_buffer_size,
            max_message_size=settings.max_message_size,
            handshake_timeout=negotiated.handshake_timeout,
            max_poll_interval=negotiated.max_poll_interval,
            routable=settings.service_mode != "serverless",
            timers=self._timers,
            created_at=negotiated.created_at,
        )
        connection.owner = negotiated.owner
        self._by_token[negotiated.connection_token] = connection
        return connection

    def _never_started(self, negotiated: Negotiated) -> None:
        """A negotiated id whose handshake timeout passed before any transport used it: forget it."""
        token = negotiated.connection_token
        if self._by_token.get(token) is negotiated:
            log.info("negotiated connection never connected hub=%s id=%s", negotiated.hub, negotiated.connection_id)
            del self._by_token[token]
            self._gone += 1

    def forget(self, connection: ClientConnection) -> None:
        """The transport finished with ``connection``: later requests with its id get 404."""
        connection.finish()
        if self._by_token.get(connection.connection_token) is connection:
            del self._by_token[connection.connection_token]
            self._gone += 1

    # --- ConnectionListener --------------------------------------------------------------------------------

    def connected(self, connection: ClientConnection) -> None:
        self.hub(connection.hub).add(connection)
        log.info(
            "connected hub=%s id=%s transport=%s user=%s",
            connection.hub,
            connection.connection_id,
            connection.transport.value if connection.transport else "-",
            connection.user_id or "-",
        )
        if connection.route is None:  # an app server sees its own clients through OpenConnection instead
            self.upstream.connected(connection)

    async def message(self, connection: ClientConnection, message: InboundMessage) -> None:
        flow = self.flow.invoked(connection, message) if self.flow.enabled else None
        await self.upstream.message(connection, message, flow)

    def disconnected(self, connection: ClientConnection, error: str | None) -> None:
        self.hub(connection.hub).remove(connection)
        log.info(
            "disconnected hub=%s id=%s%s",
            connection.hub,
            connection.connection_id,
            f" error={redact_text(error)!r}" if error else "",
        )
        if connection.route is None:
            self.upstream.disconnected(connection, error)

    def route(self, connection: ClientConnection) -> ClientRoute | str | None:
        """Default mode: the hub's least busy usable server connection, else the Default-mode handshake error.
        Classic mode: that server connection when there is one, else ``None`` (served here, with the upstream)."""
        server = self.servers.pick(connection.hub)
        if server is not None:
            return server
        return NO_SERVER_ERROR if self.settings.service_mode == "default" else None


def _claim_seconds(claims: dict[str, Any], name: str, low: int, high: int, default: float) -> float:
    """A per-connection timer from a token claim (§2: ``asrs.s.cht``, ``asrs.s.ttl``) when valid, else the default."""
    value = claims.get(name)
    try:
        seconds = int(str(value))
    except (TypeError, ValueError):
        return default
    return float(seconds) if low <= seconds <= high else default


SERVICE_KEY = web.AppKey("signalr_service", SignalRService)
