"""Hub messages, independent of the protocol that carries them (``docs/protocol.md`` §4).

The seven message types of the ASP.NET Core hub protocol as frozen dataclasses, and the errors every protocol raises
for bytes it cannot read. A :class:`signalr.hub_protocol.HubProtocol` turns them into bytes and back: JSON
(``signalr/json_protocol.py``) or MessagePack (``signalr/messagepack_protocol.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "CancelInvocation",
    "Close",
    "Completion",
    "HubMessage",
    "Invocation",
    "MessageTooLarge",
    "MessageType",
    "Ping",
    "ProtocolError",
    "StreamInvocation",
    "StreamItem",
    "UnknownMessageType",
]

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024


class ProtocolError(ValueError):
    """Bytes that are not a valid hub protocol record; the message says what is wrong."""


class MessageTooLarge(ProtocolError):
    """A message (or a partial one still waiting for the rest of its bytes) exceeds the configured maximum size."""


class UnknownMessageType(ProtocolError):
    """A well-formed message of a type this library does not know (a newer peer's). Clients skip it, as the JS
    client does; a server closes the connection, as ASP.NET Core does."""

    def __init__(self, kind: object) -> None:
        super().__init__(f"Unknown message type '{kind}'.")
        self.kind = kind


class MessageType(IntEnum):
    INVOCATION = 1
    STREAM_ITEM = 2
    COMPLETION = 3
    STREAM_INVOCATION = 4
    CANCEL_INVOCATION = 5
    PING = 6
    CLOSE = 7


@dataclass(frozen=True)
class Invocation:
    """Type 1: call ``target`` with ``arguments``. Without ``invocation_id`` no Completion is ever sent (trap 11)."""

    target: str
    arguments: tuple[Any, ...] = ()
    invocation_id: str | None = None
    stream_ids: tuple[str, ...] | None = None
    headers: Mapping[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StreamItem:
    """Type 2: one item of the stream started by ``invocation_id``."""

    invocation_id: str
    item: Any


@dataclass(frozen=True)
class Completion:
    """Type 3: the end of invocation ``invocation_id``: a ``result`` (when ``has_result``), an ``error``, or void."""

    invocation_id: str
    result: Any = None
    error: str | None = None
    has_result: bool = False

    @classmethod
    def with_result(cls, invocation_id: str, result: Any) -> Completion:
        return cls(invocation_id, result=result, has_result=True)

    @classmethod
    def with_error(cls, invocation_id: str, error: str) -> Completion:
        return cls(invocation_id, error=error)


@dataclass(frozen=True)
class StreamInvocation:
    """Type 4: start a server-to-client stream."""

    invocation_id: str
    target: str
    arguments: tuple[Any, ...] = ()
    stream_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CancelInvocation:
    """Type 5: cancel the stream ``invocation_id``."""

    invocation_id: str


@dataclass(frozen=True)
class Ping:
    """Type 6: keep-alive; sent when nothing else was sent for the keep-alive interval."""


@dataclass(frozen=True)
class Close:
    """Type 7: the sender closes the connection, with an optional ``error`` reason."""

    error: str | None = None
    allow_reconnect: bool | None = None


HubMessage = Invocation | StreamItem | Completion | StreamInvocation | CancelInvocation | Ping | Close
