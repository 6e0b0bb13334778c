"""The emulator's state: hubs with their connections, groups and users, and what happens when they change.

Hub names are case-insensitive (stored lower-cased); group names, user ids and connection ids are case-sensitive.
Sends encode a message once per dialect (:class:`Outgoing`), whatever the number of recipients. The ``connected``
and ``disconnected`` events go to the event handler in the background, in order per connection; a reliable
connection whose WebSocket dropped stays a member (and keeps collecting messages) until it reconnects or its
reconnect window passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from aiohttp import web

from webpubsub.events import EventKind, disconnected_body

from .connection import ClientConnection, Outgoing
from .event_handler import EventHandlerClient, EventTarget, HandlerFailed
from .flow import WebPubSubFlow
from .odata_filter import Subject
from .settings import WebPubSubSettings

__all__ = ["SERVICE_KEY", "Hub", "WebPubSubService"]

log = logging.getLogger("webpubsub.emulator")

Predicate = Callable[[Subject], bool]
_SWEEP_INTERVAL = 0.5


class Hub:
    """The connections of one hub, its groups and its users."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connections: dict[str, ClientConnection] = {}
        self.groups: dict[str, dict[str, ClientConnection]] = {}
        self.users: dict[str, dict[str, ClientConnection]] = {}
        # Groups a user was added to through the REST API: the user's later connections join them too.
        self.user_groups: dict[str, set[str]] = {}

    def add(self, connection: ClientConnection) -> None:
        self.connections[connection.connection_id] = connection
        if connection.user_id is not None:
            self.users.setdefault(connection.user_id, {})[connection.connection_id] = connection
            for group in self.user_groups.get(connection.user_id, ()):
                self.join(connection, group)

    def remove(self, connection: ClientConnection) -> None:
        cid = connection.connection_id
        if self.connections.get(cid) is not connection:
            return
        del self.connections[cid]
        self.leave_all(connection)
        if connection.user_id is not None:
            members = self.users.get(connection.user_id)
            if members is not None:
                members.pop(cid, None)
                if not members:
                    del self.users[connection.user_id]

    def join(self, connection: ClientConnection, group: str) -> None:
        self.groups.setdefault(group, {})[connection.connection_id] = connection
        connection.groups.add(group)

    def leave(self, connection: ClientConnection, group: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.pop(connection.connection_id, None)
            if not members:
                del self.groups[group]
        connection.groups.discard(group)

    def leave_all(self, connection: ClientConnection) -> None:
        for group in list(connection.groups):
            self.leave(connection, group)

    def user_connections(self, user_id: str) -> list[ClientConnection]:
        return list(self.users.get(user_id, {}).values())

    def group_connections(self, group: str) -> list[ClientConnection]:
        return list(self.groups.get(group, {}).values())


class WebPubSubService:
    """Every hub of the emulator and the event handler client; started and stopped with the application."""

    def __init__(self, settings: WebPubSubSettings, origin: str) -> None:
        self.settings = settings
        self.origin = origin
        self.hubs: dict[str, Hub] = {}
        # Hop events (--flow-to); off, hot paths check ``flow.enabled`` and nothing else.
        self.flow = WebPubSubFlow(settings.flow_to)
        self.events = EventHandlerClient(settings, origin, self.flow)
        self._sweeper: asyncio.Task[None] | None = None
        # Reliable sessions between WebSockets: only these are looked at by the sweeper (an idle service does nothing).
        self._detached: set[ClientConnection] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="webpubsub-sessions")

    async def stop(self) -> None:
        """Close every connection (``disconnected``, code 1001) and wait briefly for events still being posted; no
        event is posted once stopping began."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for hub in list(self.hubs.values()):
            for connection in list(hub.connections.values()):
                connection.close("The service is shutting down.", code=1001)
        if self._background:
            await asyncio.wait(self._background, timeout=2)
        await self.events.close()
        self.flow.close()

    def hub(self, name: str) -> Hub:
        """The hub ``name`` (case-insensitive), created on first use."""
        key = name.lower()
        hub = self.hubs.get(key)
        if hub is None:
            hub = self.hubs[key] = Hub(key)
        return hub

    def find(self, hub: str, connection_id: str) -> ClientConnection | None:
        existing = self.hubs.get(hub.lower())
        return None if existing is None else existing.connections.get(connection_id)

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def register(self, connection: ClientConnection, groups: Iterable[str]) -> None:
        """A connection the connect event accepted: make it addressable, join ``groups``, post ``connected``."""
        hub = self.hub(connection.hub)
        hub.add(connection)
        for group in groups:
            hub.join(connection, group)
        log.info(
            "connected hub=%s id=%s user=%s protocol=%s",
            connection.hub,
            connection.connection_id,
            connection.user_id,
            connection.subprotocol or "none",
        )
        if self.events.handles(connection.hub):
            connection.system_events = self._spawn(self._post_system(connection, EventKind.CONNECTED, b"{}"))

    def end(self, connection: ClientConnection, reason: str | None) -> None:
        """Forget ``connection`` (closing it if still open) and post ``disconnected`` once."""
        hub = self.hubs.get(connection.hub)
        if hub is None or hub.connections.get(connection.connection_id) is not connection:
            return
        if not connection.closed:
            connection.close(reason)
        hub.remove(connection)
        log.info("disconnected hub=%s id=%s: %s", connection.hub, connection.connection_id, reason or "normal close")
        if self.events.handles(connection.hub) and not self._stopping:
            body = disconnected_body(reason)
            self._spawn(self._post_system(connection, EventKind.DISCONNECTED, body, after=connection.system_events))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _post_system(
        self,
        connection: ClientConnection,
        kind: EventKind,
        body: bytes,
        after: asyncio.Task[None] | None = None,
    ) -> None:
        if after is not None and not after.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({after})
        try:
            await self.events.post(self.target(connection), kind, body)
        except HandlerFailed as exc:
            log.warning("%s event hub=%s id=%s failed: %s", kind.value, connection.hub, connection.connection_id, exc)

    def target(self, connection: ClientConnection) -> EventTarget:
        return EventTarget(
            connection.hub, connection.connection_id, connection.user_id, connection.subprotocol, connection.states
        )

    async def wait_for_connected_event(self, connection: ClientConnection) -> None:
        """Blocking events of a connection go after its ``connected`` event."""
        task = connection.system_events
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})

    def detached(self, connection: ClientConnection) -> None:
        """A reliable session lost its WebSocket: end it unless it is resumed within the reconnect window."""
        self._detached.add(connection)

    async def _sweep(self) -> None:
        """End reliable sessions whose reconnect window passed."""
        window = self.settings.reconnect_window
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL)
            if not self._detached:
                continue
            now = time.monotonic()
            for connection in list(self._detached):
                detached_at = connection.detached_at
                if connection.closed or connection.socket_attached or detached_at is None:
                    self._detached.discard(connection)
                elif now - detached_at >= window:
                    self._detached.discard(connection)
                    self.end(connection, "The connection was not resumed in time.")

    # --- sends ----------------------------------------------------------------------------------------------------

    def deliver(self, recipients: Iterable[ClientConnection], message: Outgoing) -> int:
        """Queue ``message`` for each recipient; a reliable session over its limit of unacknowledged messages is
        ended. Returns the number of recipients."""
        limit = self.settings.max_unacked_messages
        limit_bytes = self.settings.max_unacked_bytes
        count = 0
        ended: list[ClientConnection] = []
        for connection in recipients:
            connection.deliver(message)
            count += 1
            if connection.closed or len(connection.unacked) > limit or connection.unacked_bytes > limit_bytes:
                ended.append(connection)
        for connection in ended:
            reason = connection.close_reason or (
                f"More than {limit} messages or {limit_bytes} bytes were not acknowledged (sequenceAck)."
            )
            self.end(connection, reason)
        return count

    @staticmethod
    def select(
        connections: Iterable[ClientConnection], excluded: Iterable[str] = (), predicate: Predicate | None = None
    ) -> list[ClientConnection]:
        """The connections not in ``excluded`` and matching ``predicate``."""
        skip = set(excluded)
        return [c for c in connections if c.connection_id not in skip and (predicate is None or predicate(c))]

    def close_all(self, connections: Iterable[ClientConnection], reason: str | None) -> None:
        for connection in list(connections):
            self.end(connection, reason)


SERVICE_KEY = web.AppKey("webpubsub_service", WebPubSubService)
