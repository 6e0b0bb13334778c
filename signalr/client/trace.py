"""Network trace: one :class:`TraceEvent` per network step, for a UI to show what crossed the wire and where.

Secrets never reach an event: URLs go through :func:`signalr.redact.redact_url` and details through
:func:`signalr.redact.redact_text`. An exception raised by the user's callback is logged and swallowed, so a faulty
trace view can never break the connection.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from signalr.json_protocol import RECORD_SEPARATOR, decode
from signalr.messages import (
    CancelInvocation,
    Close,
    Completion,
    Invocation,
    Ping,
    ProtocolError,
    StreamInvocation,
    StreamItem,
)
from signalr.redact import redact_text, redact_url

from .errors import host_of

__all__ = ["TraceEvent", "Tracer", "describe_records", "is_only_pings"]

log = logging.getLogger(__name__)


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
    """Builds redacted :class:`TraceEvent` objects and hands them to the user's callback (if any)."""

    def __init__(self, callback: Callable[[TraceEvent], None] | None) -> None:
        self._callback = callback

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
        records: bytes | None = None,
    ) -> None:
        """Report one step; ``started`` is a ``time.monotonic()`` value that gives ``duration_ms``.

        ``records`` (a frame, event or body) becomes the detail, e.g. ``2 records: Ping, Invocation echo``: summarised
        only when someone listens, since that parses every record again.
        """
        if self._callback is None:
            return
        if records is not None:
            detail = describe_records(records)
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


def _describe_one(record: bytes) -> str:
    try:
        message = decode(record)
    except ProtocolError:
        try:
            obj = json.loads(record)
        except ValueError:
            return "malformed record"
        if isinstance(obj, dict) and "protocol" in obj:
            return f"handshake request ({obj.get('protocol')} v{obj.get('version')})"
        if isinstance(obj, dict) and "type" not in obj:
            return "handshake error" if obj.get("error") else "handshake response"
        return "malformed record"
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
    return "record"  # pragma: no cover - the match is exhaustive


def describe_records(data: bytes, *, limit: int = 4) -> str:
    """Short text for a frame/event/body, e.g. ``2 records: Invocation broadcastMessage, Ping`` (no arguments)."""
    *records, tail = data.split(RECORD_SEPARATOR)
    names = [_describe_one(r) for r in records[:limit]]
    if len(records) > limit:
        names.append(f"+{len(records) - limit} more")
    if tail:
        names.append(f"{len(tail)} bytes of an incomplete record")
    text = ", ".join(names)
    if len(records) > 1:
        text = f"{len(records)} records: {text}"
    return text or "empty"


def is_only_pings(data: bytes) -> bool:
    """True when the buffer holds nothing but Ping records (so it is traced as ``ping``, not ``send``)."""
    records = data.split(RECORD_SEPARATOR)
    return records[-1] == b"" and len(records) > 1 and all(r == b'{"type":6}' for r in records[:-1])
