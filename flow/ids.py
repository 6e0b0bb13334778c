"""The flow id: the correlation id of one chat message across the client, the gateway, the service and the app server.

``flow_id(connection_id, invocation_id)`` is the first 16 hex digits of SHA-256 of
``"<connection_id>:<invocation_id>"``. On SignalR the parts are the client's connection *id* (the negotiate's
``connectionId``, never the connection token) and the invocation's ``invocationId``; on Web PubSub the client's
connection id and the event's ``ackId``. Every role that sees both parts can compute it on its own; the service passes
it along only while flow is on: as the header ``X-Flow-Id`` on HTTP requests, and as the service protocol's tracing id
(a uint64, ``Ext.TRACING_ID`` in ``signalr/service_protocol.py``) on a Default-mode server connection.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "FLOW_ID_HEADER",
    "flow_id",
    "flow_id_from_tracing_id",
    "is_flow_id",
    "parse_flow_id",
    "tracing_id",
]

# The HTTP header that carries a flow id (upstream and event-handler POSTs, REST sends, Web PubSub SDK sends).
FLOW_ID_HEADER = "X-Flow-Id"

_FLOW_ID = re.compile(r"[0-9a-f]{16}")


def flow_id(connection_id: str, invocation_id: str | int) -> str:
    """The flow id of the message ``invocation_id`` (SignalR invocationId or Web PubSub ackId) sent by
    ``connection_id``: 16 lowercase hex digits."""
    text = f"{connection_id}:{invocation_id}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def is_flow_id(value: object) -> bool:
    """True when ``value`` is a flow id as :func:`flow_id` makes them (16 lowercase hex digits)."""
    return isinstance(value, str) and _FLOW_ID.fullmatch(value) is not None


def parse_flow_id(value: str | None) -> str | None:
    """A flow id read from outside (an ``X-Flow-Id`` header): the id, lowercased, or None when absent or not one.
    Never raises: a peer's bad header simply carries no flow id."""
    if value is None or len(value) != 16:
        return None
    value = value.lower()
    return value if _FLOW_ID.fullmatch(value) else None


def tracing_id(flow: str) -> int:
    """The service protocol's tracing id (uint64) that carries ``flow`` on a server connection.
    Raises ValueError when ``flow`` is not a flow id."""
    if not is_flow_id(flow):
        raise ValueError(f"not a flow id: {flow[:40]!r}")
    return int(flow, 16)


def flow_id_from_tracing_id(value: int | None) -> str | None:
    """The flow id a service-protocol tracing id carries, or None when absent or outside uint64."""
    if value is None or isinstance(value, bool) or not 0 <= value < 1 << 64:
        return None
    return f"{value:016x}"
