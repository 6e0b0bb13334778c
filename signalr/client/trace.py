"""Network trace: one :class:`TraceEvent` per network step, for a UI to show what crossed the wire and where.

Secrets never reach an event: URLs go through :func:`signalr.redact.redact_url` and details through
:func:`signalr.redact.redact_text`. An exception raised by the user's callback is logged and swallowed, so a faulty
trace view can never break the connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from signalr.handshake import decode_handshake_request, decode_handshake_response, split_handshake
from signalr.hub_protocol import HubProtocol
from signalr.json_protocol import JSON
from signalr.messages import (
    CancelInvocation,
    Close,
    Completion,
    Invocation,
    Ping,
    ProtocolError,
    StreamInvocation,
    StreamItem,
    UnknownMessageType,
)
from signalr.redact import redact_text, redact_url

from .errors import host_of

__all__ = ["TraceEvent", "Tracer", "describe_frame", "only_pings"]

log = logging.getLogger(__name__)

# A handshake larger than this is not summarised (the connection itself enforces the real limit).
_MAX_TRACED_HANDSHAKE = 64 * 1024
# The tracer only looks at frames that already arrived whole: any length a frame can hold is fine.
_NO_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class TraceEvent:
    """One network step, secrets already redacted.

    kind: ``negotiate`` | ``redirect`` | ``connect`` | ``handshake`` | ``send`` | ``receive`` | ``poll`` | ``ping`` |
        ``close`` | ``error`` | ``reconnect``.
    method: the HTTP method, ``WS`` or ``SSE``; ``""`` when the step is not an HTTP request.
    url: the redacted URL (no ``access_token`` / ``subscription-key`` values).
    host: ``host:port`` actually talked to: the gateway or the service.
    status: HTTP status or WebSocket close code, if any.
    duration_ms: how long the request took, if it was a request.
    bytes: payload size (response body for requests that return data, frame size for sends), if known.
    detail: short human text, e.g. ``redirected to http://127.0.0.1:8080/client/?hub=chat…`` or ``2 records``.
    at: ``time.time()`` of the event.
    """

    kind: str
    method: str
    url: str
    host: str
    status: int | None
    duration_ms: float | None
    bytes: int | None
    detail: str
    at: float


class Tracer:
    """Builds redacted :class:`TraceEvent` objects and hands them to the user's callback (if any).

    Frames are summarised with the hub protocol of the current attempt, set by :meth:`begin`: a transport passes the
    bytes it sent (``sent=``) or received (``received=``) and never parses them itself.
    """

    def __init__(self, callback: Callable[[TraceEvent], None] | None) -> None:
        self._callback = callback
        self._protocol: HubProtocol = JSON
        self._handshake_sent = False
        self._handshake_received = False
        self._handshake_buffer = bytearray()

    @property
    def protocol(self) -> HubProtocol:
        """The hub protocol frames are summarised with."""
        return self._protocol

    def begin(self, protocol: HubProtocol) -> None:
        """A connection attempt speaking ``protocol`` starts: the next frame each way opens with the JSON handshake.

        Call it before the attempt's first frame is sent.
        """
        self._protocol = protocol
        self._handshake_sent = False
        self._handshake_received = False
        self._handshake_buffer.clear()

    def emit(
        self,
        kind: str,
        *,
        url: str = "",
        method: str = "",
        status: int | None = None,
        started: float | None = None,
        size: int | None = None,
        detail: str = "",
        sent: bytes | None = None,
        received: bytes | None = None,
    ) -> None:
        """Report one step; ``started`` is a ``time.monotonic()`` value that gives ``duration_ms``.

        ``sent`` or ``received`` (a whole frame, event or body) becomes the detail, e.g. ``json, 60 bytes: 2
        messages: Ping, Invocation echo``, and the size when ``size`` is not given; a ``send`` of nothing but Pings
        is reported as ``ping``. Frames are summarised only when someone listens, since that decodes them again.
        """
        if self._callback is None:
            return
        if sent is not None:
            if size is None:
                size = len(sent)
            if kind == "send" and self._handshake_sent and only_pings(self._protocol, sent):
                kind = "ping"
            detail = self._describe_sent(sent)
        elif received is not None:
            if size is None:
                size = len(received)
            detail = self._describe_received(received)
        duration = (time.monotonic() - started) * 1000.0 if started is not None else None
        event = TraceEvent(
            kind=kind,
            method=method,
            url=redact_url(url),
            host=host_of(url) if url else "",
            status=status,
            duration_ms=duration,
            bytes=size,
            detail=redact_text(detail),
            at=time.time(),
        )
        try:
            self._callback(event)
        except Exception:
            log.exception("trace callback failed (ignored)")

    def _describe_sent(self, data: bytes) -> str:
        protocol = self._protocol
        if self._handshake_sent:
            return describe_frame(protocol, data)
        self._handshake_sent = True  # the first frame of an attempt is the handshake request
        parts = _split_handshake(data)
        if parts is None:
            return _headline(protocol, data, "malformed handshake request")
        record, rest = parts
        try:
            request = decode_handshake_request(record)
        except ProtocolError:
            text = "malformed handshake request"
        else:
            text = f"handshake request ({request.protocol} v{request.version})"
        return _headline(protocol, data, _join(text, _summary(protocol, rest) if rest else ""))

    def _describe_received(self, data: bytes) -> str:
        protocol = self._protocol
        if self._handshake_received:
            return describe_frame(protocol, data)
        self._handshake_buffer += data
        parts = _split_handshake(bytes(self._handshake_buffer))
        if parts is None:
            if len(self._handshake_buffer) > _MAX_TRACED_HANDSHAKE:
                self._handshake_received = True
                self._handshake_buffer.clear()
                return _headline(protocol, data, "malformed handshake response")
            return _headline(protocol, data, f"{len(self._handshake_buffer)} bytes of the handshake response")
        self._handshake_received = True
        self._handshake_buffer.clear()
        record, rest = parts
        try:
            error = decode_handshake_response(record)
        except ProtocolError:
            text = "malformed handshake response"
        else:
            text = "handshake response" if error is None else f"handshake error: {error}"
        # Messages may follow the handshake response in the same frame (trap 8).
        return _headline(protocol, data, _join(text, _summary(protocol, rest) if rest else ""))


def _split_handshake(data: bytes) -> tuple[bytes, bytes] | None:
    try:
        return split_handshake(data, _MAX_TRACED_HANDSHAKE)
    except ProtocolError:
        return None


def _join(first: str, second: str) -> str:
    return f"{first}, {second}" if second else first


def _headline(protocol: HubProtocol, data: bytes, summary: str) -> str:
    """``json, 60 bytes: …``: the protocol, the frame's size and what it holds."""
    return f"{protocol.name}, {len(data)} bytes: {summary}"


def _describe_one(protocol: HubProtocol, payload: bytes) -> str:
    try:
        message = protocol.decode(payload)
    except UnknownMessageType as exc:
        return f"unknown message type {exc.kind!r}"
    except ProtocolError:
        return "malformed message"
    match message:
        case Invocation():
            suffix = f" #{message.invocation_id}" if message.invocation_id is not None else ""
            return f"Invocation {message.target}{suffix}"
        case Completion():
            outcome = "error" if message.error is not None else "result" if message.has_result else "void"
            return f"Completion #{message.invocation_id} ({outcome})"
        case StreamItem():
            return f"StreamItem #{message.invocation_id}"
        case StreamInvocation():
            return f"StreamInvocation {message.target}"
        case CancelInvocation():
            return f"CancelInvocation #{message.invocation_id}"
        case Ping():
            return "Ping"
        case Close():
            return "Close" + (f" ({message.error})" if message.error else "")
    return "message"  # pragma: no cover - the match is exhaustive


def _summary(protocol: HubProtocol, data: bytes, limit: int = 4) -> str:
    """What a buffer of ``protocol`` messages holds, e.g. ``2 messages: Invocation broadcastMessage, Ping``."""
    try:
        payloads = protocol.split(data)
        tail = 0
    except ProtocolError:
        # Cut short: the protocol's own reader tells the complete messages from the incomplete tail.
        reader = protocol.reader(_NO_LIMIT)
        try:
            payloads = reader.feed(data)
        except ProtocolError as exc:
            return f"malformed frame ({exc})"
        tail = reader.pending
    names = [_describe_one(protocol, p) for p in payloads[:limit]]
    if len(payloads) > limit:
        names.append(f"+{len(payloads) - limit} more")
    if tail:
        names.append(f"{tail} bytes of an incomplete message")
    text = ", ".join(names)
    if len(payloads) > 1:
        text = f"{len(payloads)} messages: {text}"
    return text or "empty"


def describe_frame(protocol: HubProtocol, data: bytes, *, limit: int = 4) -> str:
    """Short text for a frame/event/body after the handshake, e.g. ``messagepack, 23 bytes: 2 messages: Ping,
    Invocation echo`` (never arguments); at most ``limit`` messages are named."""
    return _headline(protocol, data, _summary(protocol, data, limit))


def only_pings(protocol: HubProtocol, data: bytes) -> bool:
    """True when ``data`` is nothing but ``protocol``'s Ping, once or more (traced as ``ping``, not ``send``)."""
    ping = protocol.ping
    count, rest = divmod(len(data), len(ping))
    return count > 0 and rest == 0 and data == ping * count
