"""The hub protocol as an object: what a connection, a transport or a tracer asks instead of knowing the wire format.

A connection is given one :class:`HubProtocol` (the client) or picks one by the handshake's ``protocol`` name from a
registry (the server; ``signalr/protocols.py``). The handshake itself is always JSON text (``signalr/handshake.py``),
whatever protocol it selects (``docs/protocol.md`` §4).

A protocol frames its messages: JSON ends each with ``0x1E``, MessagePack prefixes each with its length as a VarInt.
A *payload* is one message without its framing (what :meth:`HubProtocol.decode` reads); :meth:`HubProtocol.encode`
returns it framed, ready for a transport.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from .messages import HubMessage

__all__ = ["HubProtocol", "MessageReader", "TransferFormat"]


class TransferFormat(Enum):
    """How a transport must carry a protocol's bytes; the names are the negotiate response's ``transferFormats``."""

    TEXT = "Text"
    BINARY = "Binary"


class MessageReader(Protocol):
    """Splits an incremental byte stream into message payloads, keeping an incomplete tail for the next call."""

    @property
    def pending(self) -> int:
        """Bytes received after the last complete message."""

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads ``data`` completes; raises :class:`~signalr.messages.MessageTooLarge` past the limit and
        :class:`~signalr.messages.ProtocolError` for framing that cannot be read."""


class HubProtocol(Protocol):
    """One hub protocol: its handshake name and version, its transfer format, and its codec."""

    @property
    def name(self) -> str:
        """The handshake's ``protocol`` value: ``json`` or ``messagepack``."""

    @property
    def version(self) -> int:
        """The highest version this implementation speaks."""

    @property
    def transfer_format(self) -> TransferFormat:
        """TEXT for JSON; BINARY for MessagePack (WebSocket binary frames; no ServerSentEvents)."""

    @property
    def ping(self) -> bytes:
        """One framed Ping message, encoded once."""

    def encode(self, message: HubMessage) -> bytes:
        """One framed message; raises :class:`ValueError` for a value the protocol cannot carry."""

    def encode_many(self, messages: list[HubMessage]) -> bytes:
        """Several framed messages back to back, as one frame, event or body may carry them."""

    def decode(self, payload: bytes) -> HubMessage:
        """One payload (no framing) as a message; raises :class:`~signalr.messages.ProtocolError`, or its subclass
        :class:`~signalr.messages.UnknownMessageType` for a well-formed message of an unknown type."""

    def frame(self, payload: bytes) -> bytes:
        """``payload`` with this protocol's framing added."""

    def split(self, data: bytes) -> list[bytes]:
        """The payloads of a complete buffer (frame, event, body); raises ``ProtocolError`` when it is cut short."""

    def reader(self, max_message_size: int) -> MessageReader:
        """A fresh incremental reader for one connection."""
