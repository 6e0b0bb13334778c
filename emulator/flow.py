"""signalr-emulator on the flow stream (``flow/``): the service's hop events, and the flow id it mints.

:class:`EmulatorFlow` is a :class:`~flow.publisher.FlowPublisher` with one method per hop the service reports (role
``service``, docs/architecture.md §3): a negotiate answered, a transport connected (WebSocket upgrade, SSE stream,
first LongPolling poll), a client invocation received (``invoke``, with its flow id), the upstream POST (status and
ms) or the ``server-connection`` message that carries the invocation to the app server, the app server's REST send
or service message received, one ``fan-out`` per send (recipients counted per hub protocol, never one hop per
recipient), and LongPolling polls that carry data (``poll``).

Hot paths check ``flow.enabled`` (a plain attribute; ``EmulatorFlow(None)`` is off) before calling any method here:
off, that check is all a message costs. The methods build hops only from ids, names, statuses and sizes (never a
message's arguments, a token or a key), and a value the hop contract refuses loses the hop, never the request.

The flow id (``flow.ids.flow_id``) of an invocation is minted from the client's connection id and its
``invocationId``; an invocation without an id (a ``send``) has none. It travels to the app server as ``X-Flow-Id`` on
the upstream POST and as the tracing id (``Ext.TRACING_ID``) of the ``ConnectionData`` on a server connection, and
comes back the same way on the app server's REST call or service message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from flow.hops import Hop, Lifeline, Role
from flow.ids import flow_id
from flow.publisher import FlowPublisher
from signalr.messages import Invocation, ProtocolError, StreamInvocation

if TYPE_CHECKING:
    from .connection import ClientConnection, InboundMessage
    from .negotiated import Negotiated

__all__ = ["EmulatorFlow", "ProtocolCounts", "ServiceFlow", "fan_out_label", "protocol_note"]

# Recipients of one send, by hub protocol name (filled by Hub sends only while flow is on).
ProtocolCounts = dict[str, int]


def protocol_note(counts: Mapping[str, int]) -> str:
    """``"json 2, messagepack 1"``: the recipients of a send per hub protocol, or ``"nobody"``."""
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "nobody"


def _mode(connection: ClientConnection) -> str:
    """The hop's mode: ``default`` for a client an app server carries, else ``serverless`` (Classic mode serves a
    client in one way or the other)."""
    return "default" if connection.route is not None else "serverless"


def _transport(connection: ClientConnection) -> str | None:
    return connection.transport.value if connection.transport is not None else None


class ServiceFlow(FlowPublisher):
    """A service's hop events (role ``service``, service :attr:`SERVICE`), sent to ``address`` (None: off). Call a
    method only when :attr:`enabled`."""

    __slots__ = ()

    SERVICE: ClassVar[str]

    def hop(
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
        transport: str | None = None,
        mode: str | None = None,
        count: int | None = None,
        size: int | None = None,
    ) -> None:
        """Publish one service hop; ``started`` (``time.monotonic()``) gives its duration. Never raises."""
        duration = None if started is None else max(0.0, (time.monotonic() - started) * 1000)
        try:
            hop = Hop.make(
                Role.SERVICE,
                source,
                target,
                kind,
                label,
                status=status,
                duration_ms=duration,
                flow_id=flow,
                connection_id=connection_id if connection_id and len(connection_id) <= 128 else None,
                transport=transport,
                mode=mode,
                service=self.SERVICE,
                count=count,
                bytes=size,
            )
        except ValueError:
            self.errors += 1
            return
        self.emit(hop)


def fan_out_label(what: str, counts: Mapping[str, int]) -> str:
    """The label of a ``fan-out`` hop: ``what``, how many connections got it and :func:`protocol_note`."""
    total = sum(counts.values())
    return f"{what} → {total} connection{'s' if total != 1 else ''} ({protocol_note(counts)}), one encoding each"


class EmulatorFlow(ServiceFlow):
    """The emulator's hop events, sent to ``address`` (None: off). Call a method only when :attr:`enabled`."""

    __slots__ = ()

    SERVICE = "signalr"

    # --- the client's side -----------------------------------------------------------------------------------

    def negotiated(self, connection: Negotiated, version: int) -> None:
        """``POST /client/negotiate`` answered with a new connection id."""
        self.hop(
            Lifeline.CLIENT,
            Lifeline.SERVICE,
            "negotiate",
            f"POST /client/negotiate?hub={connection.hub} 200 → connection id (v{version})",
            status=200,
            connection_id=connection.connection_id,
        )

    def connected(self, connection: ClientConnection) -> None:
        """The transport started: a WebSocket upgraded (101), an SSE stream opened, a first poll answered."""
        transport = _transport(connection)
        if transport == "WebSockets":
            kind, label, status = "upgrade", f"GET /client/?hub={connection.hub} 101 WebSocket", 101
        elif transport == "ServerSentEvents":
            kind, label, status = "connect", f"GET /client/?hub={connection.hub} 200 event stream", 200
        else:
            kind, label, status = "connect", f"GET /client/?hub={connection.hub} 200 first poll", 200
        self.hop(
            Lifeline.CLIENT,
            Lifeline.SERVICE,
            kind,
            label,
            status=status,
            connection_id=connection.connection_id,
            transport=transport,
        )

    def invoked(self, connection: ClientConnection, message: InboundMessage) -> str | None:
        """A client invocation arrived: report it and return its flow id (None without an ``invocationId``)."""
        invocation_id = message.invocation_id
        flow = flow_id(connection.connection_id, invocation_id) if invocation_id is not None else None
        protocol = connection.protocol.name if connection.protocol is not None else "?"
        what = "stream invocation" if isinstance(message, StreamInvocation) else "invocation"
        ident = f" id {invocation_id[:40]}" if invocation_id is not None else " (no id: fire and forget)"
        self.hop(
            Lifeline.CLIENT,
            Lifeline.SERVICE,
            "invoke",
            f"{what} {message.target[:64]}{ident} ({protocol})",
            flow=flow,
            connection_id=connection.connection_id,
            transport=_transport(connection),
            mode=_mode(connection),
        )
        return flow

    def routed_invocation(self, connection: ClientConnection, data: bytes) -> str | None:
        """Default mode: the first invocation among a carried client's bytes, reported as received (``invoke``);
        returns its flow id (None when the bytes hold no invocation with an id, or not whole records)."""
        protocol = connection.protocol
        if protocol is None:
            return None
        try:
            payloads = protocol.split(data)
        except (ProtocolError, ValueError):
            return None
        for payload in payloads:
            try:
                message = protocol.decode(payload)
            except (ProtocolError, ValueError, RecursionError):
                return None
            if isinstance(message, Invocation | StreamInvocation) and message.invocation_id is not None:
                return self.invoked(connection, message)
        return None

    def polled(self, connection: ClientConnection, size: int) -> None:
        """A LongPolling poll answered with ``size`` bytes (what a send queued for this recipient)."""
        self.hop(
            Lifeline.SERVICE,
            Lifeline.OTHERS,
            "poll",
            f"poll 200 ({size} bytes)",
            status=200,
            connection_id=connection.connection_id,
            transport="LongPolling",
            mode=_mode(connection),
            size=size,
        )

    # --- the app server's side -------------------------------------------------------------------------------

    def upstream(
        self,
        connection: ClientConnection,
        category: str,
        event: str,
        status: int | None,
        started: float,
        flow: str | None,
        failure: str | None,
    ) -> None:
        """The upstream POST of one event answered (``status``) or failed (``failure``, no status)."""
        outcome = str(status) if failure is None else "failed"
        self.hop(
            Lifeline.SERVICE,
            Lifeline.APP,
            "upstream",
            f"POST upstream {category}/{event} {outcome}",
            status=status if failure is None else None,
            started=started,
            flow=flow,
            connection_id=connection.connection_id,
            mode="serverless",
        )

    def forwarded(self, connection: ClientConnection, flow: str, size: int) -> None:
        """Default mode: a carried client's invocation passed to its app server (ConnectionData, tracing id)."""
        self.hop(
            Lifeline.SERVICE,
            Lifeline.APP,
            "server-connection",
            "ConnectionData → app server (invocation, tracing id)",
            flow=flow,
            connection_id=connection.connection_id,
            transport=_transport(connection),
            mode="default",
            size=size,
        )

    def rest_received(
        self, method: str, path: str, status: int, flow: str | None, size: int, started: float | None = None
    ) -> None:
        """The app server's REST send answered; ``started`` (``time.monotonic()``) when the request arrived."""
        self.hop(
            Lifeline.APP,
            Lifeline.SERVICE,
            "rest",
            f"{method} {path} {status}",
            status=status,
            flow=flow,
            mode="serverless",
            size=size,
            started=started,
        )

    def service_message(
        self, name: str, flow: str | None, size: int | None = None, started: float | None = None
    ) -> None:
        """Default mode: a send arrived over a server connection (BroadcastData, GroupBroadcastData, …); ``started``
        (``time.monotonic()``) when it arrived."""
        self.hop(
            Lifeline.APP,
            Lifeline.SERVICE,
            "server-connection",
            f"{name} from the app server",
            flow=flow,
            mode="default",
            size=size,
            started=started,
        )

    def fanned_out(
        self, what: str, counts: Mapping[str, int], flow: str | None, mode: str, started: float | None = None
    ) -> None:
        """One send queued to its recipients: one hop, ``count`` = how many accepted it. ``started``
        (``time.monotonic()`` before the first recipient got it) makes the hop begin before any delivery: a record is
        written to a WebSocket as it is queued, so a client may have it before the fan-out ends."""
        self.hop(
            Lifeline.SERVICE,
            Lifeline.OTHERS,
            "fan-out",
            fan_out_label(what, counts),
            flow=flow,
            mode=mode,
            count=sum(counts.values()),
            started=started,
        )
