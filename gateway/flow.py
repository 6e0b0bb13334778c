"""The gateway's hop events on the flow stream (``flow/``): what it forwarded, to whom, with which status, how long
it took and how many bytes, and never a secret or a payload's text.

:class:`GatewayFlow` exists only while a publisher is enabled (``apim-gateway --flow-to``): the proxy keeps ``None``
otherwise, so with flow off each hot path costs one ``is None`` check. The hops it reports (role ``apim``):

- every forwarded HTTP request (``relay``, APIM → service: method, path without its query, backend status, ms, the
  "Host rewritten" note), and the requests the gateway answers itself (404, 401, 500: APIM → client);
- a LongPolling poll that brought data back, and every block of a Server-Sent Events stream (``relay``,
  APIM → client, bytes); a connection's first poll that came back empty and an event stream's start are its
  ``connect``; later empty polls (the poll timed out) are not reported;
- a WebSocket upgrade relayed or refused (``upgrade``, APIM → service, 101 or the backend's status, ms);
- every relayed WebSocket message, one hop per message (``relay``: upward APIM → service, downward APIM → client,
  text or binary, bytes), except keep-alives (SignalR pings, Web PubSub pings, pongs and sequence acks), which would
  otherwise join the journey of whatever message was open in time.

Gateway hops carry no flow id (docs/architecture.md §3; the gateway does not read messages). They carry the
connection id when it is known: on SignalR, the negotiate the gateway relayed answered it together with the connection
token that later requests carry as ``id=`` (the map keeps only a hash of the token, bounded); on Web PubSub, the
service's ``connected`` system message, the first message it sends on a connection
(https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-webpubsub-subprotocol#connected).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flow.hops import Hop, Lifeline, Role
from signalr.query import split_query
from signalr.redact import connection_token_tag

__all__ = [
    "MAX_KEEPALIVE_BODY",
    "MAX_NEGOTIATE_BODY",
    "GatewayFlow",
    "HopPublisher",
    "RelayFlow",
    "is_close",
    "is_keepalive",
]

# A negotiate answer is a few hundred bytes; a larger body is not read for its connection id.
MAX_NEGOTIATE_BODY = 16 * 1024
# The Web PubSub "connected" message is short; a longer first message is not parsed.
_MAX_CONNECTED_MESSAGE = 4096
# Keep-alive messages, never reported: the SignalR hub protocols' Ping (JSON and MessagePack, docs/protocol.md), and
# Web PubSub's ping, pong and sequenceAck
# (https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-reliable-webpubsub-subprotocol).
_KEEPALIVE_TEXT = ('{"type":6}\x1e', '{"type":"ping"', '{"type":"pong"', '{"type":"sequenceAck"')
_KEEPALIVE_BINARY = b"\x02\x91\x06"
# SignalR's Close message (JSON), the end of a connection.
_CLOSE_TEXT = '{"type":7'
# The same over HTTP: a client's Ping POSTed on Server-Sent Events, and an event stream's Ping event or comment
# (signalr/sse.py frames events with CRLF; an event stream may also start with a comment).
_KEEPALIVE_BLOCKS = frozenset(
    {
        b'{"type":6}\x1e',
        _KEEPALIVE_BINARY,
        b'data: {"type":6}\x1e\r\n\r\n',
        b'data: {"type":6}\x1e\n\n',
        b":\r\n",
        b":\n",
    }
)
# A request body at most this long is read before it is forwarded (flow on only), to tell a Ping from a message.
MAX_KEEPALIVE_BODY = 64


def is_keepalive(data: bytes) -> bool:
    """Whether a request body or an event-stream block is only a keep-alive (never reported)."""
    return data in _KEEPALIVE_BLOCKS


def is_close(data: bytes) -> bool:
    """Whether a request body is SignalR's Close message (JSON): the end of a connection, not a chat message."""
    return data.startswith(b'{"type":7')


_MAX_CONNECTIONS = 4096
_MAX_ID = 128

WEBSOCKETS = "WebSockets"
SERVER_SENT_EVENTS = "ServerSentEvents"
LONG_POLLING = "LongPolling"


@dataclass
class _Connection:
    """What the gateway knows of one SignalR connection: its id, its transport once seen, and whether its first
    message each way (the hub handshake and its answer, docs/protocol.md) has passed."""

    connection_id: str
    transport: str | None = None
    handshake_up: bool = False
    handshake_down: bool = False

    def first(self, upward: bool) -> bool:
        """True for the connection's first message that way (then never again)."""
        if upward:
            first, self.handshake_up = not self.handshake_up, True
        else:
            first, self.handshake_down = not self.handshake_down, True
        return first


class HopPublisher(Protocol):
    """Where hops go (``flow.publisher.FlowPublisher``)."""

    enabled: bool

    def emit(self, hop: Hop) -> None:
        """Publish one hop; never raises."""


def _now_ms(started: float) -> float:
    return max(0.0, (time.monotonic() - started) * 1000)


def _connection_token(raw_query: str) -> str | None:
    """The ``id`` query value (SignalR's connection token on connect, poll, send and stop requests)."""
    for part in split_query(raw_query):
        if part.name == "id":
            return part.value
    return None


class GatewayFlow:
    """Builds and publishes the gateway's hops for one :class:`~gateway.proxy.ApimGateway`. Create it only for an
    enabled publisher; ``service`` is the model's service (``signalr`` or ``webpubsub``); ``host_rewritten`` is false
    only under ``--keep-host``; ``scrub`` removes the gateway's own secrets from a label."""

    def __init__(
        self,
        publisher: HopPublisher,
        service: str,
        *,
        host_rewritten: bool,
        scrub: Callable[[str], str] = lambda text: text,
    ) -> None:
        self._publisher = publisher
        self.service = service
        # The gateway's own scrubber (its subscription keys and custom key query names) runs before the hop's.
        self._scrub = scrub
        self._host_note = " (Host rewritten)" if host_rewritten else " (Host kept)"
        # connection token tag → the connection; oldest forgotten first.
        self._connections: OrderedDict[str, _Connection] = OrderedDict()

    # -- connection ids -----------------------------------------------------------------------------------------

    def learn_negotiate(self, body: bytes) -> None:
        """Remember the connection id a relayed SignalR negotiate answered, keyed by its connection token's tag
        (negotiateVersion 1), or by the id itself (version 0, where the client sends the id as ``id=``)."""
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            return
        if not isinstance(answer, dict):
            return
        connection_id = answer.get("connectionId")
        token = answer.get("connectionToken", connection_id)
        if not isinstance(connection_id, str) or not isinstance(token, str) or not _plain_id(connection_id):
            return
        self._connections[connection_token_tag(token)] = _Connection(connection_id)
        while len(self._connections) > _MAX_CONNECTIONS:
            self._connections.popitem(last=False)

    def connection(self, raw_query: str, transport: str | None = None) -> tuple[str | None, str | None, bool]:
        """The connection id and transport of a SignalR request whose query carries ``id=<token>``, as far as known,
        and whether this is the connection's first request with a ``transport`` (seen on a GET or an upgrade, and
        remembered for its later requests; true for an unknown connection)."""
        known = self._known(raw_query)
        if known is None:
            return None, transport, True
        first = transport is not None and known.transport is None
        if transport is not None:
            known.transport = transport
        return known.connection_id, known.transport, first

    def _known(self, raw_query: str) -> _Connection | None:
        token = _connection_token(raw_query)
        return None if token is None else self._connections.get(connection_token_tag(token))

    def handshake(self, raw_query: str, upward: bool) -> bool:
        """Whether a message that way on this SignalR connection (over HTTP) is its first: the hub handshake (up) or
        its answer (down), connection set-up rather than a message; False for an unknown connection."""
        known = self._known(raw_query)
        return known is not None and known.first(upward)

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def forwarded(
        self,
        method: str,
        path: str,
        raw_query: str,
        status: int,
        started: float,
        *,
        size: int,
        transport: str | None,
        downward: bool,
        answered: float | None = None,
        closing: bool = False,
    ) -> None:
        """A request forwarded to the backend and answered (``status``, ``size`` bytes back to the client).
        ``downward``: a poll (``transport`` LongPolling), which carries the service's data to the client: its hop
        begins when the backend answered (``answered``, ``time.monotonic()``), not when the poll was sent and held.
        ``closing``: the body was SignalR's Close message. A connection's set-up and end (its first poll, the hub
        handshake and its answer, the Close, LongPolling's DELETE) are ``connect`` hops."""
        connection_id, transport, first = self.connection(raw_query, transport)
        kind = "relay"
        if downward and size == 0:
            if not first:
                return  # a poll that timed out: nothing travelled
            kind, label = "connect", f"{method} {path} {status}: {transport} poll answered{self._host_note}"
            source, target = Lifeline.APIM, Lifeline.SERVICE
        elif downward:
            label = f"{method} {path} {status}: {size} bytes ↓"
            source, target = Lifeline.APIM, Lifeline.CLIENT
            started = answered if answered is not None else started
            if self.handshake(raw_query, upward=False):
                kind, label = "connect", f"{method} {path} {status}: handshake answer, {size} bytes ↓"
        else:
            label = f"{method} {path} {status}{self._host_note}"
            source, target = Lifeline.APIM, Lifeline.SERVICE
            if method == "POST" and transport is not None and self.handshake(raw_query, upward=True):
                kind, label = "connect", f"{method} {path} {status}: handshake{self._host_note}"
            elif method == "DELETE":  # LongPolling's stop
                kind, label = "connect", f"{method} {path} {status}: connection stopped{self._host_note}"
            elif closing:
                kind, label = "connect", f"{method} {path} {status}: close message{self._host_note}"
        self._emit(
            kind,
            source,
            target,
            label,
            status=status,
            duration_ms=_now_ms(started),
            connection_id=connection_id,
            transport=transport,
            size=size,
        )

    def answered(self, method: str, path: str, raw_query: str, status: int, why: str, started: float) -> None:
        """A request the gateway answered itself (no route, no subscription, backend unreachable, bad request). A
        ``DELETE`` (LongPolling's stop) ends a connection: a ``connect`` hop, never part of a message's journey."""
        connection_id, transport, _ = self.connection(raw_query)
        self._emit(
            "connect" if method == "DELETE" else "relay",
            Lifeline.APIM,
            Lifeline.CLIENT,
            f"{method} {path} {status}: {why}",
            status=status,
            duration_ms=_now_ms(started),
            connection_id=connection_id,
            transport=transport,
        )

    def stream_opened(self, method: str, path: str, raw_query: str, status: int, started: float) -> None:
        """A Server-Sent Events stream's response headers came back from the backend."""
        connection_id, transport, _ = self.connection(raw_query, SERVER_SENT_EVENTS)
        self._emit(
            "connect",
            Lifeline.APIM,
            Lifeline.SERVICE,
            f"{method} {path} {status}: event stream opened{self._host_note}",
            status=status,
            duration_ms=_now_ms(started),
            connection_id=connection_id,
            transport=transport,
        )

    def stream_block(self, raw_query: str, connection_id: str | None, data: bytes, started: float) -> None:
        """One block of an event stream written to the client (``started``: when the write began); keep-alives are
        not reported, the first block (the handshake answer) is the connection's set-up."""
        if is_keepalive(data):
            return
        size = len(data)
        first = self.handshake(raw_query, upward=False)
        self._emit(
            "connect" if first else "relay",
            Lifeline.APIM,
            Lifeline.CLIENT,
            f"event stream: {'handshake answer, ' if first else ''}{size} bytes ↓",
            duration_ms=_now_ms(started),
            connection_id=connection_id,
            transport=SERVER_SENT_EVENTS,
            size=size,
            generated=True,
        )

    # -- WebSockets ---------------------------------------------------------------------------------------------

    def upgrade(self, path: str, raw_query: str, status: int, started: float, note: str = "") -> str | None:
        """A WebSocket upgrade relayed (101) or refused by the backend; returns the connection id if known."""
        connection_id, _, _ = self.connection(raw_query, WEBSOCKETS)
        label = f"GET {path} {status}: " + (note or "WebSocket relayed") + self._host_note
        self._emit(
            "upgrade",
            Lifeline.APIM,
            Lifeline.SERVICE,
            label,
            status=status,
            duration_ms=_now_ms(started),
            connection_id=connection_id,
            transport=WEBSOCKETS,
        )
        return connection_id

    def relay(self, connection_id: str | None) -> RelayFlow:
        """The hops of one relayed WebSocket."""
        return RelayFlow(self, connection_id, handshake=self.service == "signalr")

    def _emit(
        self,
        kind: str,
        source: Lifeline,
        target: Lifeline,
        label: str,
        *,
        status: int | None = None,
        duration_ms: float | None = None,
        connection_id: str | None = None,
        transport: str | None = None,
        size: int | None = None,
        generated: bool = False,
    ) -> None:
        """Publish one hop. ``generated``: the label is only this module's words and numbers (a relayed message's),
        so the gateway's own scrubber is skipped (``Hop.make`` still redacts)."""
        try:
            hop = Hop.make(
                Role.APIM,
                source,
                target,
                kind,
                label if generated else self._scrub(label),
                status=status if status is None or 100 <= status <= 4999 else None,
                duration_ms=duration_ms,
                connection_id=connection_id,
                transport=transport,
                service=self.service,
                bytes=size,
            )
        except ValueError:  # a value outside the contract: the hop is lost, never the request
            return
        self._publisher.emit(hop)


class RelayFlow:
    """The hops of one relayed WebSocket: one per message, each way (keep-alives left out). The first message down
    (SignalR's handshake answer, Web PubSub's ``connected``) and, with ``handshake`` (SignalR), the first up (the hub
    handshake) set the connection up: they are ``connect`` hops, never part of a message's journey."""

    def __init__(self, flow: GatewayFlow, connection_id: str | None, *, handshake: bool = False) -> None:
        self._flow = flow
        self.connection_id = connection_id
        self._first_down = True
        self._first_up = handshake

    def message(self, upward: bool, data: str | bytes, received: float | None = None) -> None:
        """One message relayed, once written to the other side; ``received`` (``time.monotonic()``) is when the
        gateway read it, so the hop begins before the next role reports the message."""
        if isinstance(data, str):
            if data.startswith(_KEEPALIVE_TEXT):
                return
            size, kind = len(data.encode()), "text"
        else:
            if data == _KEEPALIVE_BINARY:
                return
            size, kind = len(data), "binary"
        first = False
        if upward and self._first_up:
            self._first_up, first = False, True
        elif not upward and self._first_down:
            self._first_down, first = False, True
            if self.connection_id is None and isinstance(data, str):
                self.connection_id = _webpubsub_connected(data)
        arrow, target = ("↑", Lifeline.SERVICE) if upward else ("↓", Lifeline.CLIENT)
        what = f"{kind} message"
        if self._flow.service == "signalr" and isinstance(data, str) and data.startswith(_CLOSE_TEXT):
            first, what = True, "close message"  # the connection's end, never part of a message's journey
        elif first:
            what = "handshake" if upward else "handshake answer" if self._flow.service == "signalr" else "connected"
        self._flow._emit(
            "connect" if first else "relay",
            Lifeline.APIM,
            target,
            f"WebSocket {what}: {size} bytes {arrow}",
            duration_ms=None if received is None else _now_ms(received),
            connection_id=self.connection_id,
            transport=WEBSOCKETS,
            size=size,
            generated=True,
        )


def _plain_id(value: str) -> bool:
    return 0 < len(value) <= _MAX_ID and value.isprintable()


def _webpubsub_connected(text: str) -> str | None:
    """The ``connectionId`` of a Web PubSub ``connected`` system message, or None for any other message."""
    if len(text) > _MAX_CONNECTED_MESSAGE or not text.startswith("{"):
        return None
    try:
        message: Any = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("type") != "system" or message.get("event") != "connected":
        return None
    connection_id = message.get("connectionId")
    return connection_id if isinstance(connection_id, str) and _plain_id(connection_id) else None
