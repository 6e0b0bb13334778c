"""Hub connection lifecycle as one explicit state machine per role, sans-I/O.

Rules (``docs/protocol.md`` §4): the client speaks first with a JSON handshake request naming its hub protocol; the
server answers ``{}`` or ``{"error":…}`` and, on error, closes. Messages may follow the handshake reply in the same
buffer (trap 8), so both roles keep reading after it. After the handshake every byte is the chosen
:class:`~signalr.hub_protocol.HubProtocol`'s. A malformed or oversized message ends the connection: the side that
saw it then queues a Close message carrying the reason. A message of an unknown type is skipped by the client (as
the JS client does) and ends the connection at the server (as ASP.NET Core does).

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

Drive it with :meth:`receive_data` (bytes in → events out). Everything a side emits — handshake, messages, pings,
Close — is queued and leaves through one path: send what :meth:`data_to_send` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from .handshake import (
    decode_handshake_request,
    decode_handshake_response,
    encode_handshake_request,
    encode_handshake_response,
    split_handshake,
)
from .hub_protocol import HubProtocol, MessageReader, TransferFormat
from .json_protocol import JSON
from .messages import DEFAULT_MAX_MESSAGE_SIZE, Close, HubMessage, ProtocolError, UnknownMessageType
from .protocols import PROTOCOLS

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


def _lowered(protocols: Mapping[str, HubProtocol]) -> dict[str, HubProtocol]:
    return {name.lower(): protocol for name, protocol in protocols.items()}


_LOWERED_PROTOCOLS = _lowered(PROTOCOLS)


class State(Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class HandshakeCompleted:
    """The handshake succeeded; ``protocol`` and ``version`` are the client's request."""

    protocol: str = JSON.name
    version: int = JSON.version


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
    def __init__(self, protocol: HubProtocol | None, max_message_size: int) -> None:
        self.state = State.HANDSHAKING
        # The server learns its protocol from the handshake; until then it only reads the JSON handshake record.
        self.protocol = protocol
        self.max_message_size = max_message_size
        self._handshake = bytearray()
        self._reader: MessageReader | None = None
        self._outbox = bytearray()

    skips_unknown_types = False

    def data_to_send(self) -> bytes:
        """Every byte this side emits (handshake, messages, pings, close), queued since the last call."""
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    def send(self, message: HubMessage) -> None:
        """Queue ``message``; only valid while OPEN. Raises :class:`ValueError` for a value the protocol cannot
        carry (nothing is queued then)."""
        self._outbox += self._open_protocol("send").encode(message)

    def send_ping(self) -> None:
        """Queue a Ping; only valid while OPEN."""
        self._outbox += self._open_protocol("ping").ping

    def close(self, error: str | None = None) -> None:
        """Queue a Close message (while OPEN) and move to CLOSED."""
        if self.state is State.OPEN and self.protocol is not None:
            self._outbox += self.protocol.encode(Close(error))
        self.state = State.CLOSED

    def _open_protocol(self, action: str) -> HubProtocol:
        if self.state is not State.OPEN or self.protocol is None:
            raise RuntimeError(f"cannot {action} while {self.state.value}")
        return self.protocol

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed transport bytes; returns the events they complete."""
        events: list[Event] = []
        if self.state is State.HANDSHAKING:
            self._handshake += data
            try:
                parts = split_handshake(bytes(self._handshake), self.max_message_size)
            except ProtocolError as exc:
                return self._violation(str(exc))
            if parts is None:
                return events
            record, data = parts
            self._handshake.clear()
            events.append(self._on_handshake(record))
        if self._reader is None or self.protocol is None or self.state is State.CLOSED or not data:
            return events
        try:
            payloads = self._reader.feed(data)
        except ProtocolError as exc:
            return events + self._violation(str(exc))
        for payload in payloads:
            try:
                message = self.protocol.decode(payload)
            except ProtocolError as exc:
                if isinstance(exc, UnknownMessageType) and self.skips_unknown_types:
                    continue
                return events + self._violation(str(exc))
            if isinstance(message, Close):
                self.state = State.CLOSED
                events.append(ConnectionClosed(message.error, by_peer=True, allow_reconnect=message.allow_reconnect))
                break
            events.append(MessageReceived(message))
        return events

    def _open(self, protocol: HubProtocol) -> None:
        self.protocol = protocol
        self._reader = protocol.reader(self.max_message_size)
        self.state = State.OPEN

    def _violation(self, reason: str) -> list[Event]:
        self.close(reason)
        return [ConnectionClosed(reason, by_peer=False)]

    def _on_handshake(self, record: bytes) -> Event:
        raise NotImplementedError


class ServerProtocol(_Protocol):
    """The service's side: reads the handshake request, picks the protocol it names, answers, then exchanges hub
    messages.

    ``protocols`` are the ones this server speaks, by name; ``transfer_formats`` what the transport can carry
    (ServerSentEvents: TEXT only), so a binary protocol on a text transport fails the handshake as in ASP.NET Core.
    """

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        protocols: Mapping[str, HubProtocol] = PROTOCOLS,
        transfer_formats: frozenset[TransferFormat] = frozenset(TransferFormat),
    ) -> None:
        super().__init__(None, max_message_size)
        # Names match regardless of case, as ASP.NET Core's DefaultHubProtocolResolver (OrdinalIgnoreCase); the
        # default table is shared by every connection.
        self._protocols = _LOWERED_PROTOCOLS if protocols is PROTOCOLS else _lowered(protocols)
        self.transfer_formats = transfer_formats

    def _on_handshake(self, record: bytes) -> Event:
        try:
            request = decode_handshake_request(record)
        except ProtocolError as exc:
            return self._fail(str(exc))
        protocol = self._protocols.get(request.protocol.lower())
        if protocol is None:
            return self._fail(f"The protocol '{request.protocol}' is not supported.")
        if request.version > protocol.version:
            return self._fail(
                f"The server does not support version {request.version} of the '{request.protocol}' protocol."
            )
        if protocol.transfer_format not in self.transfer_formats:
            return self._fail(
                f"Cannot use the '{protocol.name}' protocol on the current transport. The transport does not support "
                f"'{protocol.transfer_format.value}' transfer format."
            )
        self._outbox += encode_handshake_response()
        self._open(protocol)
        return HandshakeCompleted(protocol.name, request.version)

    def _fail(self, error: str) -> Event:
        self._outbox += encode_handshake_response(error)
        self.state = State.CLOSED
        return HandshakeFailed(error)


class ClientProtocol(_Protocol):
    """The client's side: :meth:`handshake` queues the request, then the reply opens the connection.

    Messages of an unknown type are skipped, as the JS client does, so a newer server does not break it.
    """

    skips_unknown_types = True

    def __init__(self, protocol: HubProtocol = JSON, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        super().__init__(protocol, max_message_size)

    def handshake(self) -> None:
        """Queue the handshake request naming this connection's protocol; send :meth:`data_to_send` first."""
        assert self.protocol is not None
        self._outbox += encode_handshake_request(self.protocol.name, self.protocol.version)

    def _on_handshake(self, record: bytes) -> Event:
        try:
            error = decode_handshake_response(record)
        except ProtocolError as exc:
            error = f"Handshake response is invalid: {exc}"
        if error is not None:
            self.state = State.CLOSED
            return HandshakeFailed(error)
        assert self.protocol is not None
        self._open(self.protocol)
        return HandshakeCompleted(self.protocol.name, self.protocol.version)
