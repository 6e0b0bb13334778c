"""Hub connection lifecycle as one explicit state machine per role, sans-I/O.

Rules (``docs/protocol.md`` §4): the client speaks first with a handshake request; the server answers ``{}`` or
``{"error":…}`` and, on error, closes. Records may follow the handshake reply in the same buffer (trap 8), so both
roles keep reading after it. After the handshake every record is a hub message. A malformed or oversized record ends
the connection: the server then queues a Close message carrying the reason.

States and transitions (anything else is a no-op):

=============  ==============================  ==============
state          event                           next state
=============  ==============================  ==============
HANDSHAKING    valid handshake record          OPEN
HANDSHAKING    invalid handshake record        CLOSED
OPEN           valid message record            OPEN
OPEN           Close message received          CLOSED
OPEN           invalid or oversized record     CLOSED
any            :meth:`close` called            CLOSED
=============  ==============================  ==============

Drive it with :meth:`receive_data` (bytes in → events out) and send what :meth:`data_to_send` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Close,
    HubMessage,
    ProtocolError,
    RecordReader,
    decode,
    decode_handshake_request,
    decode_handshake_response,
    encode,
    encode_handshake_request,
    encode_handshake_response,
)

__all__ = [
    "ClientProtocol",
    "ConnectionClosed",
    "Event",
    "HandshakeCompleted",
    "HandshakeFailed",
    "MessageReceived",
    "ServerProtocol",
    "State",
]

SUPPORTED_PROTOCOL = "json"
SUPPORTED_VERSION = 1


class State(Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class HandshakeCompleted:
    """The handshake succeeded; ``protocol`` and ``version`` are the client's request."""

    protocol: str = SUPPORTED_PROTOCOL
    version: int = SUPPORTED_VERSION


@dataclass(frozen=True)
class HandshakeFailed:
    """The handshake failed with ``error``; the connection is closed."""

    error: str


@dataclass(frozen=True)
class MessageReceived:
    """A hub message arrived."""

    message: HubMessage


@dataclass(frozen=True)
class ConnectionClosed:
    """The connection ended: the peer sent Close (``error`` is its reason) or sent bytes that break the protocol.

    ``allow_reconnect`` is the Close message's ``allowReconnect`` (``None`` when absent or not from a Close): a client
    reconnects only when it is ``True`` (JS ``HubConnection``; the service sends it when an instance shuts down).
    """

    error: str | None
    by_peer: bool
    allow_reconnect: bool | None = None


Event = HandshakeCompleted | HandshakeFailed | MessageReceived | ConnectionClosed


class _Protocol:
    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.state = State.HANDSHAKING
        self._reader = RecordReader(max_message_size)
        self._outbox = bytearray()

    def data_to_send(self) -> bytes:
        """Bytes queued for the transport since the last call (possibly empty)."""
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    def send(self, message: HubMessage) -> bytes:
        """Encode ``message`` for the transport; only valid while OPEN."""
        if self.state is not State.OPEN:
            raise RuntimeError(f"cannot send while {self.state.value}")
        return encode(message)

    def close(self, error: str | None = None) -> None:
        """Queue a Close message (while OPEN) and move to CLOSED."""
        if self.state is State.OPEN:
            self._outbox += encode(Close(error))
        self.state = State.CLOSED

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed transport bytes; returns the events they complete."""
        events: list[Event] = []
        if self.state is State.CLOSED:
            return events
        try:
            records = self._reader.feed(data)
        except ProtocolError as exc:
            return self._violation(str(exc))
        for record in records:
            if self.state is State.HANDSHAKING:
                events.append(self._handshake(record))
            elif self.state is State.OPEN:
                try:
                    message = decode(record)
                except ProtocolError as exc:
                    return events + self._violation(str(exc))
                if isinstance(message, Close):
                    self.state = State.CLOSED
                    events.append(
                        ConnectionClosed(message.error, by_peer=True, allow_reconnect=message.allow_reconnect)
                    )
                else:
                    events.append(MessageReceived(message))
            if self.state is State.CLOSED:
                break
        return events

    def _violation(self, reason: str) -> list[Event]:
        self.close(reason)
        return [ConnectionClosed(reason, by_peer=False)]

    def _handshake(self, record: bytes) -> Event:
        raise NotImplementedError


class ServerProtocol(_Protocol):
    """The service's side: reads the handshake request, answers it, then exchanges hub messages."""

    def _handshake(self, record: bytes) -> Event:
        try:
            request = decode_handshake_request(record)
        except ProtocolError as exc:
            return self._fail(str(exc))
        if request.protocol != SUPPORTED_PROTOCOL:
            return self._fail(f"The protocol '{request.protocol}' is not supported.")
        if request.version > SUPPORTED_VERSION:
            return self._fail(
                f"The server does not support version {request.version} of the '{request.protocol}' protocol."
            )
        self._outbox += encode_handshake_response()
        self.state = State.OPEN
        return HandshakeCompleted(request.protocol, request.version)

    def _fail(self, error: str) -> Event:
        self._outbox += encode_handshake_response(error)
        self.state = State.CLOSED
        return HandshakeFailed(error)


class ClientProtocol(_Protocol):
    """The client's side: :meth:`handshake` gives the request to send first, then the reply opens the connection."""

    def handshake(self) -> bytes:
        return encode_handshake_request(SUPPORTED_PROTOCOL, SUPPORTED_VERSION)

    def _handshake(self, record: bytes) -> Event:
        try:
            error = decode_handshake_response(record)
        except ProtocolError as exc:
            error = f"Handshake response is invalid: {exc}"
        if error is not None:
            self.state = State.CLOSED
            return HandshakeFailed(error)
        self.state = State.OPEN
        return HandshakeCompleted()
