"""The chat's own hops (role ``client``), made from the trace events its connection already reports.

The client sees two hops of each of its messages: the frame or POST it sends (``send``), and the message coming back
to it (``deliver``). The send's flow id is computed as every role computes it (``flow.ids.flow_id``): the connection
id and the invocation id on SignalR (the trace says ``Invocation broadcastMessage #3``), the connection id and the
ackId on Web PubSub (``event broadcastMessage #3``). Negotiates and connects become connection hops (no flow id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flow.hops import TRANSPORTS, Hop, InvalidHop, Lifeline, Role
from flow.ids import flow_id
from signalr.client import TraceEvent

__all__ = ["ClientSide", "connection_hop", "deliver_hop", "invocation_of", "send_hop"]

_INVOCATION = re.compile(r"\b(?:Invocation|event) ([^\s#]{1,128}) #([0-9A-Za-z_-]{1,64})\b")


def invocation_of(event: TraceEvent) -> tuple[str, str] | None:
    """``(target, invocation id)`` of the message a ``send`` trace event carried, or ``None`` (pings, acks, …).

    SignalR's tracer names an invocation ``Invocation broadcastMessage #3``; Web PubSub's ``event broadcastMessage #3
    (json)`` (the ackId). A frame that carries several messages gives the first invocation.
    """
    if event.kind != "send":
        return None
    match = _INVOCATION.search(event.detail)
    return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True)
class ClientSide:
    """Where the chat's connection goes: what it reports in its hops."""

    connection_id: str | None
    transport: str | None
    """The transport in use as the client names it (``WebSockets``, ``LongPolling``, Web PubSub's own name)."""
    towards: Lifeline
    """The lifeline the client talks to: APIM (through the gateway), the service (straight), or the app server."""
    service: str = "signalr"
    mode: str | None = None

    @property
    def hop_transport(self) -> str | None:
        """The transport as hops name it: one of ``flow.hops.TRANSPORTS`` (Web PubSub's WebSocket is WebSockets)."""
        if self.transport in TRANSPORTS:
            return self.transport
        return "WebSockets" if self.service == "webpubsub" else None


def _make(side: ClientSide, source: Lifeline, target: Lifeline, kind: str, label: str, **fields: object) -> Hop | None:
    try:
        return Hop.make(
            Role.CLIENT,
            source,
            target,
            kind,
            label,
            connection_id=side.connection_id,
            transport=side.hop_transport,
            mode=side.mode if side.service == "signalr" else None,
            service=side.service,
            **fields,  # type: ignore[arg-type]
        )
    except InvalidHop:
        return None


def send_hop(event: TraceEvent, side: ClientSide, since: float | None = None) -> tuple[Hop, str, str] | None:
    """The hop of a ``send`` trace event that carried an invocation, with its flow id and target, else ``None``.

    ``since`` is when the chat handed the message to the connection (a ``time.time()`` value): the hop lasts from
    then until the frame left, so it is drawn before what the gateway and the service did with it. Needs the
    connection id (the flow id is made from it); without one there is no hop.
    """
    found = invocation_of(event)
    if found is None or not side.connection_id:
        return None
    target, invocation_id = found
    flow = flow_id(side.connection_id, invocation_id)
    how = event.method or "frame"
    size = f", {event.bytes} B" if event.bytes is not None else ""
    label = f"{target} #{invocation_id} ({how}{size})"
    duration = event.duration_ms
    if since is not None and event.at >= since:
        duration = (event.at - since) * 1000.0
    hop = _make(
        side,
        Lifeline.CLIENT,
        side.towards,
        "send",
        label,
        status=event.status,
        duration_ms=duration,
        flow_id=flow,
        bytes=event.bytes,
        at=event.at,
    )
    return (hop, flow, target) if hop is not None else None


def deliver_hop(flow: str, target: str, side: ClientSide, round_trip_ms: float | None, at: float) -> Hop | None:
    """The hop of the chat's own message arriving back; the label says the round trip since it was sent (not the hop's
    duration: the hop itself is the arrival)."""
    trip = f", {round_trip_ms:.1f} ms after it was sent" if round_trip_ms is not None else ""
    label = f"{target} arrived back{trip}"
    return _make(side, side.towards, Lifeline.CLIENT, "deliver", label, flow_id=flow, at=at)


_CONNECTION_KINDS = {"negotiate": "negotiate", "redirect": "redirect", "connect": "connect"}


def connection_hop(event: TraceEvent, side: ClientSide, towards: Lifeline) -> Hop | None:
    """A negotiate, redirect or connect of the chat's connection as a hop to ``towards`` (no flow id), else ``None``."""
    kind = _CONNECTION_KINDS.get(event.kind)
    if kind is None:
        return None
    if kind == "connect" and event.method == "WS" and event.status == 101:
        kind = "upgrade"
    what = f"{event.method} " if event.method else ""
    label = f"{what}{event.kind}: {event.detail}" if event.detail else f"{what}{event.kind}"
    status = event.status if event.status is not None and 100 <= event.status <= 4999 else None
    return _make(side, Lifeline.CLIENT, towards, kind, label, status=status, duration_ms=event.duration_ms, at=event.at)
