"""webpubsub-emulator on the flow stream (``flow/``): the service's hop events, and the flow id it mints.

:class:`WebPubSubFlow` is a :class:`~flow.publisher.FlowPublisher` with one method per hop the service reports (role
``service``, service ``webpubsub``, docs/architecture.md §3): a WebSocket upgraded (101), a client's event received
(``invoke``, with its flow id), each event-handler POST (``upstream``: connect, connected, user events, disconnected;
status and ms), a REST send received from the app server (``rest``, with the flow id it carried back) and one
``fan-out`` per send (recipients counted per subprotocol, never one hop per recipient).

Hot paths check ``flow.enabled`` (a plain attribute; ``WebPubSubFlow(None)`` is off) before calling a method: off,
that check is all a message costs. Hops are built from ids, event names, statuses and sizes only: never a message's
data, an access token, a reconnection token or a key.

The flow id (``flow.ids.flow_id``) of a client event is minted from the client's connection id and the event's
``ackId`` (https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-webpubsub-subprotocol: ``sendEvent``
carries an optional ``ackId``); an event without one has none. It rides on the event handler POST as ``X-Flow-Id``
and comes back as ``X-Flow-Id`` on the app server's REST send (the SDK's ``headers=`` keyword).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from flow.hops import Lifeline
from flow.ids import flow_id

from ..flow import ServiceFlow, fan_out_label

if TYPE_CHECKING:
    from .connection import ClientConnection

__all__ = ["WebPubSubFlow", "dialect_counts"]


def dialect_counts(recipients: Iterable[ClientConnection]) -> dict[str, int]:
    """How many of ``recipients`` speak each subprotocol (``none`` for a simple WebSocket client)."""
    counts: dict[str, int] = {}
    for connection in recipients:
        name = connection.subprotocol or "none"
        counts[name] = counts.get(name, 0) + 1
    return counts


class WebPubSubFlow(ServiceFlow):
    """The Web PubSub emulator's hop events, sent to ``address`` (None: off). Call a method only when
    :attr:`enabled`."""

    __slots__ = ()

    SERVICE = "webpubsub"

    def ws_hop(
        self,
        source: Lifeline,
        target: Lifeline,
        kind: str,
        label: str,
        *,
        status: int | None = None,
        started: float | None = None,
        flow: str | None = None,
        connection_id: str | None = None,
        count: int | None = None,
        size: int | None = None,
    ) -> None:
        """Publish one service hop on WebSockets (a status outside 100..4999 is left out); ``started``
        (``time.monotonic()``) gives its duration. Never raises."""
        self.hop(
            source,
            target,
            kind,
            label,
            status=status if status is None or 100 <= status <= 4999 else None,
            started=started,
            flow=flow,
            connection_id=connection_id,
            transport="WebSockets",
            count=count,
            size=size,
        )

    def upgraded(self, connection: ClientConnection, resumed: bool) -> None:
        """A client's WebSocket upgrade answered 101 (a new connection, or a reliable one resumed)."""
        what = "resumed" if resumed else (connection.subprotocol or "no subprotocol")
        self.ws_hop(
            Lifeline.CLIENT,
            Lifeline.SERVICE,
            "upgrade",
            f"GET /client/hubs/{connection.hub} 101 WebSocket ({what})",
            status=101,
            connection_id=connection.connection_id,
        )

    def invoked(self, connection: ClientConnection, what: str, ack_id: int | None, size: int | None) -> str | None:
        """A client's event (or group send) arrived: report it and return its flow id (None without an ackId)."""
        flow = flow_id(connection.connection_id, ack_id) if ack_id is not None else None
        ident = f" ackId {ack_id}" if ack_id is not None else " (no ackId)"
        self.ws_hop(
            Lifeline.CLIENT,
            Lifeline.SERVICE,
            "invoke",
            f"{what}{ident}",
            flow=flow,
            connection_id=connection.connection_id,
            size=size,
        )
        return flow

    def event_posted(
        self,
        connection_id: str,
        event: str,
        status: int | None,
        started: float,
        flow: str | None,
        failed: bool = False,
    ) -> None:
        """An event handler POST answered ``status`` (or failed without an answer)."""
        outcome = str(status) if status is not None else "failed"
        if failed and status is not None:
            outcome += " (refused)"
        self.ws_hop(
            Lifeline.SERVICE,
            Lifeline.APP,
            "upstream",
            f"POST event handler {event} {outcome}",
            status=status,
            started=started,
            flow=flow,
            connection_id=connection_id,
        )

    def rest_received(self, method: str, path: str, status: int, flow: str | None, size: int) -> None:
        """The app server's REST send answered."""
        label = f"{method} {path} {status}"
        self.ws_hop(Lifeline.APP, Lifeline.SERVICE, "rest", label, status=status, flow=flow, size=size)

    def fanned_out(self, what: str, counts: Mapping[str, int], flow: str | None, started: float | None = None) -> None:
        """One send queued to its recipients: one hop, ``count`` = how many got it. ``started``
        (``time.monotonic()``, taken before the first frame was written) makes the hop begin before the gateway
        relays what it wrote: frames may go straight to the sockets before this hop is published."""
        self.ws_hop(
            Lifeline.SERVICE,
            Lifeline.OTHERS,
            "fan-out",
            fan_out_label(what, counts),
            flow=flow,
            count=sum(counts.values()),
            started=started,
        )
