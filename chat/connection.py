"""What ``ChatApp`` uses of a connection: :class:`ChatConnection`, and :class:`ConnectionFactory` that builds one.

:class:`signalr.client.HubConnection` satisfies both (the class is the factory); so do the Web PubSub adapter
(``chat.webpubsub_connection``) and the connection that picks the service from the app server's negotiate answer
(``chat.service_connection``), and the tests' fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from signalr.client import ConnectionState, TraceEvent, TransportChoice
from signalr.hub_protocol import HubProtocol

__all__ = ["ChatConnection", "ConnectionFactory", "webpubsub_protocol_of"]


class ChatConnection(Protocol):
    """A chat connection: register callbacks, ``await start()``, ``invoke`` the hub's methods, ``await stop()``.

    Every method must be called from the event loop that called :meth:`start`.
    """

    @property
    def state(self) -> ConnectionState:
        """Where the connection is (connecting, connected, reconnecting, ...)."""
        ...

    @property
    def connection_id(self) -> str | None:
        """The service's id of the current connection, once connected."""
        ...

    @property
    def transport_name(self) -> str | None:
        """What carries the messages (``WebSockets``, ``LongPolling``, ...), once connected."""
        ...

    @property
    def connected_url(self) -> str | None:
        """The URL connected to (redacted), once connected."""
        ...

    @property
    def last_rtt_ms(self) -> float | None:
        """The client's latest round trip in milliseconds, when it measures one."""
        ...

    def on(self, target: str, handler: Callable[..., Any]) -> None:
        """Call ``handler(*arguments)`` for every message the hub sends to ``target`` (case-insensitive)."""
        ...

    def on_state_change(self, callback: Callable[[ConnectionState, ConnectionState], None]) -> None:
        """``callback(old, new)`` on every state change."""
        ...

    def on_close(self, callback: Callable[[Exception | None], Any]) -> None:
        """``callback(error)`` once the connection is finally closed after a successful start."""
        ...

    async def start(self) -> None:
        """Connect; raises an exception whose message says what to fix."""
        ...

    async def invoke(self, target: str, *arguments: Any, timeout: float | None = 30) -> Any:
        """Call the hub's ``target`` and wait until the hub took it; raises when it did not within ``timeout``."""
        ...

    async def stop(self) -> None:
        """Close cleanly; idempotent."""
        ...


class ConnectionFactory(Protocol):
    """Builds the chat's connection to the hub at ``url`` (the app server's ``…/chat``)."""

    def __call__(
        self,
        url: str,
        *,
        transport: TransportChoice,
        headers: Mapping[str, str] | None,
        trace: Callable[[TraceEvent], None] | None,
        protocol: HubProtocol,
    ) -> ChatConnection: ...


def webpubsub_protocol_of(connection: ChatConnection) -> str | None:
    """The Web PubSub subprotocol ``connection`` speaks (its ``webpubsub_protocol``); ``None`` on SignalR."""
    value = getattr(connection, "webpubsub_protocol", None)
    return value if isinstance(value, str) else None
