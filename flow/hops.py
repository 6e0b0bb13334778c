"""One hop of a message's journey: who reported it, from which lifeline to which, what happened, how long it took.

A :class:`Hop` is what every role publishes on the flow stream (one UDP datagram of compact JSON, :meth:`Hop.to_json`)
and what the collector rebuilds (:meth:`Hop.from_json`, which refuses anything malformed, oversized or unknown with
:class:`InvalidHop`). Build hops with :meth:`Hop.make`: it passes the label through ``signalr.redact.redact_text`` and
cuts it to :data:`MAX_LABEL` characters, so no access token, key, signature or reconnection token can ride a hop.
Hops carry no message text: the chat line a journey belongs to is registered by the client
(``flow.journey.JourneyBook.label_message``).
"""

from __future__ import annotations

import builtins
import json
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from signalr.redact import redact_text

from .ids import is_flow_id

__all__ = [
    "KINDS",
    "MAX_DATAGRAM",
    "MAX_LABEL",
    "MODES",
    "SERVICES",
    "TRANSPORTS",
    "Hop",
    "InvalidHop",
    "Lifeline",
    "Role",
    "clean_label",
    "might_hold_secret",
]


class Role(StrEnum):
    """Who reports a hop."""

    CLIENT = "client"
    APP = "app"
    APIM = "apim"
    SERVICE = "service"


class Lifeline(StrEnum):
    """The five lifelines of the diagram, in the order they are drawn."""

    CLIENT = "client"
    APP = "app"
    APIM = "apim"
    SERVICE = "service"
    OTHERS = "others"


# What a hop is (the contract of the flow stream):
#   negotiate          a negotiate request answered
#   redirect           the app server's negotiate answer sending the client to the service (through the gateway)
#   connect            a transport connection opened (SSE stream, LongPolling first poll)
#   upgrade            a WebSocket upgrade (101)
#   send               a client's frame or POST towards the gateway / service
#   relay              the gateway forwarding a request or a frame
#   invoke             the service received a client's invocation (SignalR) or event (Web PubSub)
#   upstream           the service's webhook / event-handler POST to the app server (status, duration)
#   server-connection  a message between the service and the app server over a Default-mode server connection
#   rest               the app server's REST call to the service (status, duration)
#   fan-out            the service sending to N clients (count)
#   deliver            a client received the message
#   poll               a LongPolling poll or an SSE stream write that carried the message
KINDS = frozenset(
    {
        "negotiate",
        "redirect",
        "connect",
        "upgrade",
        "send",
        "relay",
        "invoke",
        "upstream",
        "server-connection",
        "rest",
        "fan-out",
        "deliver",
        "poll",
    }
)
TRANSPORTS = frozenset({"WebSockets", "ServerSentEvents", "LongPolling"})
MODES = frozenset({"default", "serverless"})
SERVICES = frozenset({"signalr", "webpubsub"})

# The longest label, in characters, and the largest datagram, in bytes.
MAX_LABEL = 120
MAX_DATAGRAM = 4096
# The longest connection id a hop may carry (SignalR and Web PubSub ids are far shorter).
MAX_CONNECTION_ID = 128
# Bounds that keep a hostile hop from carrying absurd numbers into the diagram.
_MAX_DURATION_MS = 86_400_000.0
_MAX_COUNT = 1 << 32

_FIELDS = (
    "at",
    "role",
    "source",
    "target",
    "kind",
    "label",
    "status",
    "duration_ms",
    "flow_id",
    "connection_id",
    "transport",
    "mode",
    "service",
    "count",
    "bytes",
)
_REQUIRED = frozenset({"at", "role", "source", "target", "kind", "label", "service"})
_FIELD_SET = frozenset(_FIELDS)
_ROLES = {role.value: role for role in Role}
_LIFELINES = {lifeline.value: lifeline for lifeline in Lifeline}
_ELLIPSIS = "…"
# Control characters (newlines included) never reach a label: a label is one line.
_CONTROL = {c: " " for c in range(0x20)} | {0x7F: " ", 0x2028: " ", 0x2029: " "}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One encoder and one decoder for every hop: json.dumps/json.loads with options build a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


class InvalidHop(ValueError):
    """A datagram or a value that is not a hop: malformed JSON, a wrong type, an unknown kind, too large."""


def might_hold_secret(text: str) -> bool:
    """False only when ``signalr.redact.redact_text`` cannot change ``text``: every secret it knows is introduced by
    ``=`` (query values, AccessKey, ``id=``), ``:`` (a subscription-key header), ``eyJ`` (a JWT) or ``bearer``."""
    return "=" in text or ":" in text or "eyJ" in text or "bearer" in text.lower()


def clean_label(label: str) -> str:
    """``label`` as a hop carries it: secrets redacted, control characters as spaces, at most :data:`MAX_LABEL`
    characters (cut with ``…``)."""
    text = (redact_text(label) if might_hold_secret(label) else label).translate(_CONTROL)
    if len(text) > MAX_LABEL:
        text = text[: MAX_LABEL - 1] + _ELLIPSIS
    return text


@dataclass(frozen=True, slots=True)
class Hop:
    """One hop. Build it with :meth:`make`, which cleans the label; the constructor trusts its arguments."""

    at: float
    role: Role
    source: Lifeline
    target: Lifeline
    kind: str
    label: str
    status: int | None = None
    duration_ms: float | None = None
    flow_id: str | None = None
    connection_id: str | None = None
    transport: str | None = None
    mode: str | None = None
    service: str = "signalr"
    count: int | None = None
    bytes: int | None = None

    @property
    def started(self) -> float:
        """When the hop began: ``at`` less its duration (``at`` when it has none). Journeys are ordered by it, so a
        request drawn before what its handler did (an upstream POST before the REST call made while answering it)."""
        return self.at - self.duration_ms / 1000 if self.duration_ms else self.at

    @classmethod
    def make(
        cls,
        role: Role | str,
        source: Lifeline | str,
        target: Lifeline | str,
        kind: str,
        label: str,
        *,
        status: int | None = None,
        duration_ms: float | None = None,
        flow_id: str | None = None,
        connection_id: str | None = None,
        transport: str | None = None,
        mode: str | None = None,
        service: str = "signalr",
        count: int | None = None,
        bytes: int | None = None,
        at: float | None = None,
    ) -> Hop:
        """A hop with a clean label (redacted, one line, ≤ 120 characters) ending now (or at ``at``).

        Raises :class:`InvalidHop` when a value is outside the contract (an unknown kind, role, lifeline, transport,
        mode or service; a flow id that is not 16 hex digits; a negative duration or count). Call it only when the
        publisher is enabled: redaction is the costly part of a hop.
        """
        fields: dict[str, Any] = {
            "at": time.time() if at is None else at,
            "role": str(role),
            "source": str(source),
            "target": str(target),
            "kind": kind,
            "label": label,
            "status": status,
            "duration_ms": None if duration_ms is None else round(float(duration_ms), 3),
            "flow_id": flow_id,
            "connection_id": connection_id,
            "transport": transport,
            "mode": mode,
            "service": service,
            "count": count,
            "bytes": bytes,
        }
        return _build(fields)

    def to_dict(self) -> dict[str, Any]:
        """The hop as a JSON-ready dict, without the fields that are None."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> builtins.bytes:
        """Compact UTF-8 JSON of at most :data:`MAX_DATAGRAM` bytes; a label too long for that is cut.
        Raises :class:`InvalidHop` only when the hop cannot fit even with an empty label (never with :meth:`make`)."""
        data = self.to_dict()
        raw = _ENCODER.encode(data).encode()
        if len(raw) <= MAX_DATAGRAM:
            return raw
        label = self.label
        while label:
            label = label[: len(label) // 2]
            data["label"] = label + _ELLIPSIS
            raw = _ENCODER.encode(data).encode()
            if len(raw) <= MAX_DATAGRAM:
                return raw
        raise InvalidHop(f"hop too large for one datagram ({len(raw)} bytes, limit {MAX_DATAGRAM})")

    @classmethod
    def from_json(cls, data: builtins.bytes) -> Hop:
        """The hop a datagram carries. Raises :class:`InvalidHop` for anything that is not exactly a hop: more than
        :data:`MAX_DATAGRAM` bytes, not UTF-8 JSON, not an object, an unknown field, a missing or wrongly typed
        field, a value outside the contract. The label is cleaned again (redacted, one line, ≤ 120 characters)."""
        if len(data) > MAX_DATAGRAM:
            raise InvalidHop(f"hop datagram too large ({len(data)} bytes, limit {MAX_DATAGRAM})")
        try:
            obj = _DECODER.decode(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidHop(f"hop is not UTF-8 JSON: {type(exc).__name__}") from None
        if not isinstance(obj, dict):
            raise InvalidHop(f"hop is not a JSON object but {type(obj).__name__}")
        unknown = obj.keys() - _FIELD_SET
        if unknown:
            raise InvalidHop(f"hop has unknown field {_short(min(unknown))}")
        missing = _REQUIRED - obj.keys()
        if missing:
            raise InvalidHop(f"hop lacks field {min(missing)!r}")
        return _build({name: obj.get(name) for name in _FIELDS})


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + _ELLIPSIS


def _build(f: dict[str, Any]) -> Hop:
    """Check every field against the contract and build the hop (labels cleaned)."""
    at = f["at"]
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at <= 0:
        raise InvalidHop(f"hop field 'at' must be a positive time, got {_short(at)}")
    role = _ROLES.get(f["role"]) if isinstance(f["role"], str) else None
    if role is None:
        raise InvalidHop(f"hop has unknown role {_short(f['role'])}")
    source = _LIFELINES.get(f["source"]) if isinstance(f["source"], str) else None
    target = _LIFELINES.get(f["target"]) if isinstance(f["target"], str) else None
    if source is None or target is None:
        raise InvalidHop(f"hop has unknown lifeline {_short(f['source'])} → {_short(f['target'])}")
    kind = f["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidHop(f"hop has unknown kind {_short(kind)}")
    label = f["label"]
    if not isinstance(label, str):
        raise InvalidHop(f"hop label must be a string, got {type(label).__name__}")
    status = f["status"]
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 4999):
        raise InvalidHop(f"hop status must be an HTTP status or a close code, got {_short(status)}")
    duration = f["duration_ms"]
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
            raise InvalidHop(f"hop duration_ms must be a number, got {_short(duration)}")
        if not 0 <= duration <= _MAX_DURATION_MS:
            raise InvalidHop(f"hop duration_ms out of range: {_short(duration)}")
        duration = float(duration)
    flow = f["flow_id"]
    if flow is not None and not is_flow_id(flow):
        raise InvalidHop(f"hop flow_id must be 16 lowercase hex digits, got {_short(flow)}")
    connection_id = f["connection_id"]
    if connection_id is not None and (
        not isinstance(connection_id, str)
        or not 0 < len(connection_id) <= MAX_CONNECTION_ID
        or not connection_id.isprintable()
    ):
        raise InvalidHop(f"hop connection_id must be a printable string of 1..{MAX_CONNECTION_ID} characters")
    transport = f["transport"]
    if transport is not None and (not isinstance(transport, str) or transport not in TRANSPORTS):
        raise InvalidHop(f"hop has unknown transport {_short(transport)}")
    mode = f["mode"]
    if mode is not None and (not isinstance(mode, str) or mode not in MODES):
        raise InvalidHop(f"hop has unknown mode {_short(mode)}")
    service = f["service"]
    if not isinstance(service, str) or service not in SERVICES:
        raise InvalidHop(f"hop has unknown service {_short(service)}")
    count = f["count"]
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < _MAX_COUNT):
        raise InvalidHop(f"hop count must be a non-negative integer, got {_short(count)}")
    size = f["bytes"]
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < _MAX_COUNT):
        raise InvalidHop(f"hop bytes must be a non-negative integer, got {_short(size)}")
    return Hop(
        at=float(at),
        role=role,
        source=source,
        target=target,
        kind=kind,
        label=clean_label(label),
        status=status,
        duration_ms=duration,
        flow_id=flow,
        connection_id=connection_id,
        transport=transport,
        mode=mode,
        service=service,
        count=count,
        bytes=size,
    )
