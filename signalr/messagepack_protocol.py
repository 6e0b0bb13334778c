"""The MessagePack hub protocol, sans-I/O (``docs/protocol.md`` §4.1).

Every message is one MessagePack array prefixed by its length as a VarInt (7 bits a byte, least significant group
first, high bit set on every byte but the last, at most 5 bytes, so under 2 GiB). A WebSocket binary frame or a
LongPolling body may carry several messages; :class:`LengthPrefixedReader` splits an incremental byte stream into
payloads and keeps the partial tail. :func:`encode` and :func:`decode` convert a hub message
(``signalr/messages.py``) to and from one payload; :data:`MESSAGEPACK` is the codec as a
:class:`~signalr.hub_protocol.HubProtocol`.

The arrays, as ASP.NET Core writes and reads them (``Headers`` is a map of string to string, written empty)::

    Invocation        [1, Headers, InvocationId|nil, Target, [Arguments], [StreamIds]]   StreamIds optional on read
    StreamItem        [2, Headers, InvocationId, Item]
    Completion        [3, Headers, InvocationId, ResultKind, Result?]   1 error (a string), 2 void, 3 result
    StreamInvocation  [4, Headers, InvocationId, Target, [Arguments], [StreamIds]]
    CancelInvocation  [5, Headers, InvocationId]
    Ping              [6]
    Close             [7, Error|nil, AllowReconnect?]

Values: ``bytes`` travel as MessagePack bin, an aware :class:`~datetime.datetime` as the timestamp extension (-1),
which decodes to an aware UTC datetime (to the microsecond). Any other extension type is refused. Extra elements
after the ones listed are ignored, as ASP.NET Core does, so a newer peer may append fields.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NoReturn

import msgpack

from .hub_protocol import TransferFormat
from .messages import (
    DEFAULT_MAX_MESSAGE_SIZE,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    MessageTooLarge,
    MessageType,
    Ping,
    ProtocolError,
    StreamInvocation,
    StreamItem,
    UnknownMessageType,
)

__all__ = [
    "MAX_PAYLOAD_SIZE",
    "MESSAGEPACK",
    "PING_MESSAGE",
    "LengthPrefixedReader",
    "MessagePackHubProtocol",
    "decode",
    "encode",
    "encode_many",
    "encode_payload",
    "frame",
    "split_messages",
]

MAX_PAYLOAD_SIZE = 2**31 - 1
"""The largest length a 5-byte VarInt prefix may declare (ASP.NET Core: messages over 2 GB are not supported)."""

_MAX_PREFIX_BYTES = 5

_ERROR_RESULT = 1
_VOID_RESULT = 2
_NON_VOID_RESULT = 3

_INVOCATION = MessageType.INVOCATION.value
_STREAM_ITEM = MessageType.STREAM_ITEM.value
_COMPLETION = MessageType.COMPLETION.value
_STREAM_INVOCATION = MessageType.STREAM_INVOCATION.value
_CANCEL_INVOCATION = MessageType.CANCEL_INVOCATION.value
_PING = MessageType.PING.value
_CLOSE = MessageType.CLOSE.value


# ----------------------------------------------------------------------------------------------------------- framing


def frame(payload: bytes) -> bytes:
    """``payload`` prefixed with its length as a VarInt; raises :class:`ValueError` at 2 GiB or more."""
    length = len(payload)
    if length < 0x80:
        return bytes((length,)) + payload
    if length > MAX_PAYLOAD_SIZE:
        raise ValueError(f"A MessagePack message cannot exceed {MAX_PAYLOAD_SIZE} bytes.")
    prefix = bytearray()
    while length > 0x7F:
        prefix.append(length & 0x7F | 0x80)
        length >>= 7
    prefix.append(length)
    return bytes(prefix) + payload


def _read_prefix(data: bytes | bytearray, offset: int) -> tuple[int, int] | None:
    """``(length, payload offset)`` of the VarInt at ``offset``; ``None`` when the buffer ends inside it.

    Raises :class:`ProtocolError` for a prefix longer than 5 bytes or declaring 2 GiB or more.
    """
    length = 0
    shift = 0
    end = len(data)
    for index in range(_MAX_PREFIX_BYTES):
        position = offset + index
        if position >= end:
            return None
        byte = data[position]
        if index == _MAX_PREFIX_BYTES - 1 and byte > 0x07:
            # The fifth byte carries bits 28..30 only; more (or a continuation bit) means 2 GiB or more.
            raise ProtocolError("Messages over 2GB in size are not supported.")
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length, position + 1
        shift += 7
    raise AssertionError("unreachable: the fifth byte has no continuation bit")


def split_messages(data: bytes) -> list[bytes]:
    """The payloads of a complete buffer (a frame or body). Raises :class:`ProtocolError` when it ends inside a
    length prefix or a message (JS: "Cannot read message size." / "Incomplete message.")."""
    payloads: list[bytes] = []
    offset = 0
    end = len(data)
    while offset < end:
        length = data[offset]
        if length < 0x80:
            start = offset + 1
        else:
            prefix = _read_prefix(data, offset)
            if prefix is None:
                raise ProtocolError("Cannot read message size.")
            length, start = prefix
        if start + length > end:
            raise ProtocolError("Incomplete message.")
        payloads.append(data[start : start + length])
        offset = start + length
    return payloads


class LengthPrefixedReader:
    """Splits a byte stream into VarInt-length-prefixed payloads, keeping an incomplete tail for the next call.

    Feed bytes as they arrive with :meth:`feed`; it returns the complete payloads (prefixes removed). A prefix that
    declares more than ``max_message_size`` bytes raises :class:`MessageTooLarge` as soon as the prefix is read,
    before any of the message is buffered; a prefix that cannot be read raises :class:`ProtocolError`. After either,
    the caller must close the connection (the reader drops what it held).
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._tail = bytearray()
        # Bytes the tail must reach before the next message is complete (0: unknown, the prefix is still partial).
        self._needed = 0

    @property
    def pending(self) -> int:
        """Bytes received after the last complete message."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        tail = self._tail
        tail += data
        if len(tail) < self._needed:
            return []  # a message arriving in pieces is copied once, when it completes
        buffer = bytes(data) if len(tail) == len(data) else bytes(tail)
        payloads: list[bytes] = []
        offset = 0
        self._needed = 0
        end = len(buffer)
        while offset < end:
            length = buffer[offset]
            if length < 0x80:  # most messages are shorter than 128 bytes: a one-byte prefix
                start = offset + 1
            else:
                try:
                    prefix = _read_prefix(buffer, offset)
                except ProtocolError:
                    tail.clear()
                    raise
                if prefix is None:
                    break
                length, start = prefix
            if length > self.max_message_size:
                tail.clear()
                raise MessageTooLarge(
                    f"The message exceeded the maximum message size of {self.max_message_size} bytes."
                )
            stop = start + length
            if stop > end:
                self._needed = stop - offset
                break
            payloads.append(buffer[start:stop])
            offset = stop
        if offset:
            del tail[:offset]
        return payloads


# ---------------------------------------------------------------------------------------------------------- encoding


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return dict(headers) if headers else {}


def _to_array(message: HubMessage) -> list[Any]:
    match message:
        case Invocation():
            return [
                _INVOCATION,
                _headers(message.headers),
                message.invocation_id or None,  # an empty id means a non-blocking invocation, as in ASP.NET Core
                message.target,
                list(message.arguments),
                list(message.stream_ids or ()),
            ]
        case StreamItem():
            return [_STREAM_ITEM, {}, message.invocation_id, message.item]
        case Completion():
            if message.error is not None:
                return [_COMPLETION, {}, message.invocation_id, _ERROR_RESULT, message.error]
            if message.has_result:
                return [_COMPLETION, {}, message.invocation_id, _NON_VOID_RESULT, message.result]
            return [_COMPLETION, {}, message.invocation_id, _VOID_RESULT]
        case StreamInvocation():
            return [
                _STREAM_INVOCATION,
                {},
                message.invocation_id,
                message.target,
                list(message.arguments),
                list(message.stream_ids or ()),
            ]
        case CancelInvocation():
            return [_CANCEL_INVOCATION, {}, message.invocation_id]
        case Ping():
            return [_PING]
        case Close():
            if message.allow_reconnect is None:
                return [_CLOSE, message.error]
            return [_CLOSE, message.error, message.allow_reconnect]


_PACKERS = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's packer: building one per call costs as much as packing a chat message. A packer resets its
    buffer after each ``pack``, also when packing fails."""
    packer: msgpack.Packer | None = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True, datetime=True)
    return packer


def encode_payload(message: HubMessage) -> bytes:
    """One message as a MessagePack array, without its length prefix.

    Raises :class:`ValueError` for a value MessagePack cannot carry (a set, a naive datetime, an integer outside
    the 64-bit range, a string with a lone surrogate, nesting deeper than 512); nothing is returned then.
    """
    try:
        packed: bytes = _packer().pack(_to_array(message))
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"MessagePack cannot carry this value: {exc}") from None
    return packed


def encode(message: HubMessage) -> bytes:
    """One framed message (VarInt length, then the array); raises :class:`ValueError` like :func:`encode_payload`."""
    if isinstance(message, Ping):
        return PING_MESSAGE
    return frame(encode_payload(message))


def encode_many(messages: list[HubMessage]) -> bytes:
    """Several framed messages back to back, as one frame or body may carry them."""
    return b"".join(encode(m) for m in messages)


PING_MESSAGE = frame(msgpack.packb([_PING]))
"""The framed Ping, ``02 91 06``."""


# ---------------------------------------------------------------------------------------------------------- decoding


def _refuse_extension(code: int, data: bytes) -> NoReturn:
    raise ProtocolError(f"MessagePack extension type {code} is not supported.")


def _unpack(payload: bytes) -> Any:
    """One MessagePack value filling ``payload``; :class:`ProtocolError` for anything else.

    Every length is bounded by the payload's size (a declared count larger than the bytes present is refused before
    anything is allocated) and nesting by the unpacker's stack (1024 levels).
    """
    size = len(payload)
    try:
        return msgpack.unpackb(
            payload,
            raw=False,
            use_list=True,
            strict_map_key=False,
            timestamp=3,
            ext_hook=_refuse_extension,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size // 2,
            max_ext_len=size,
        )
    except ProtocolError:
        raise
    except msgpack.ExtraData:
        raise ProtocolError("Message has bytes after its MessagePack array.") from None
    except msgpack.StackError:
        raise ProtocolError("Message is not valid MessagePack: it is nested too deeply.") from None
    except UnicodeDecodeError:
        raise ProtocolError("Message is not valid MessagePack: a string is not valid UTF-8.") from None
    except OverflowError:
        raise ProtocolError("Message is not valid MessagePack: a timestamp is out of range.") from None
    except TypeError:  # a map key that Python cannot hash (an array or a map)
        raise ProtocolError("Message is not valid MessagePack: a map key is an array or a map.") from None
    except ValueError as exc:  # truncated input, reserved byte 0xc1, a length over the limits, a bad timestamp
        raise ProtocolError(f"Message is not valid MessagePack: {exc}.") from None


def _string(array: list[Any], index: int, field: str) -> str:
    """``array[index]`` when it is a string; otherwise the field is missing or of another type."""
    if index < len(array):
        value = array[index]
        if type(value) is str:
            return value
    raise ProtocolError(f"Reading '{field}' as String failed.")


def _optional_string(array: list[Any], index: int, field: str) -> str | None:
    """``array[index]`` when it is a string or nil."""
    if index < len(array):
        value = array[index]
        if value is None or type(value) is str:
            return value
    raise ProtocolError(f"Reading '{field}' as String failed.")


def _int(array: list[Any], index: int, field: str) -> int:
    """``array[index]`` when it is an integer (``true`` is not)."""
    if index < len(array):
        value = array[index]
        if type(value) is int:
            return value
    raise ProtocolError(f"Reading '{field}' as Int32 failed.")


def _read_headers(array: list[Any]) -> dict[str, str] | None:
    headers = array[1] if len(array) > 1 else None
    if type(headers) is not dict:
        raise ProtocolError("Reading map length for 'headers' failed.")
    if not headers:
        return None
    for i, (key, value) in enumerate(headers.items()):
        if type(key) is not str:
            raise ProtocolError(f"Reading 'headers[{i}].Key' as String failed.")
        if type(value) is not str:
            raise ProtocolError(f"Reading 'headers[{i}].Value' as String failed.")
    return headers


def _arguments(array: list[Any], index: int) -> tuple[Any, ...]:
    if index < len(array):
        value = array[index]
        if type(value) is list:
            return tuple(value)
    raise ProtocolError("Reading array length for 'arguments' failed.")


def _stream_ids(array: list[Any], index: int) -> tuple[str, ...] | None:
    if index >= len(array):
        return None  # clients before stream uploads send five elements
    value = array[index]
    if type(value) is not list:
        raise ProtocolError("Reading array length for 'streamIds' failed.")
    if not value:
        return None
    for i, stream_id in enumerate(value):
        if type(stream_id) is not str:
            raise ProtocolError(f"Reading 'streamIds[{i}]' as String failed.")
    return tuple(value)


def decode(payload: bytes) -> HubMessage:
    """Parse one payload (without its length prefix) into a hub message.

    Raises :class:`ProtocolError` naming the field that is missing or of the wrong type, and
    :class:`UnknownMessageType` for a well-formed array of another type (8 Ack and 9 Sequence included: stateful
    reconnect is not negotiated by this library). No other exception escapes, whatever the bytes.
    """
    array = _unpack(payload)
    if type(array) is not list:
        raise ProtocolError("Message is not a MessagePack array.")
    kind = _int(array, 0, "messageType")
    if kind == _INVOCATION:
        headers = _read_headers(array)
        invocation_id = _optional_string(array, 2, "invocationId")
        return Invocation(
            _string(array, 3, "target"),
            _arguments(array, 4),
            invocation_id or None,
            _stream_ids(array, 5),
            headers,
        )
    if kind == _STREAM_ITEM:
        _read_headers(array)
        invocation_id = _string(array, 2, "invocationId")
        if len(array) < 4:
            raise ProtocolError("Missing 'item' in StreamItem message.")
        return StreamItem(invocation_id, array[3])
    if kind == _COMPLETION:
        _read_headers(array)
        invocation_id = _string(array, 2, "invocationId")
        result_kind = _int(array, 3, "resultKind")
        if result_kind == _ERROR_RESULT:
            return Completion(invocation_id, error=_string(array, 4, "error"))
        if result_kind == _VOID_RESULT:
            return Completion(invocation_id)
        if result_kind == _NON_VOID_RESULT:
            if len(array) < 5:
                raise ProtocolError("Missing 'result' in Completion message.")
            return Completion(invocation_id, result=array[4], has_result=True)
        raise ProtocolError("Invalid invocation result kind.")
    if kind == _STREAM_INVOCATION:
        _read_headers(array)
        invocation_id = _string(array, 2, "invocationId")
        target = _string(array, 3, "target")
        return StreamInvocation(invocation_id, target, _arguments(array, 4), _stream_ids(array, 5))
    if kind == _CANCEL_INVOCATION:
        _read_headers(array)
        return CancelInvocation(_string(array, 2, "invocationId"))
    if kind == _PING:
        return Ping()
    if kind == _CLOSE:
        error = _optional_string(array, 1, "error")
        allow_reconnect = array[2] if len(array) > 2 else None
        if allow_reconnect is not None and type(allow_reconnect) is not bool:
            raise ProtocolError("Reading 'allowReconnect' as Boolean failed.")
        return Close(error, allow_reconnect)
    raise UnknownMessageType(kind)


# ---------------------------------------------------------------------------------------------------------- protocol


class MessagePackHubProtocol:
    """The ``messagepack`` hub protocol, version 1, as a :class:`~signalr.hub_protocol.HubProtocol`.

    Its bytes are binary: a transport must carry them in WebSocket binary frames or LongPolling bodies, never in
    ServerSentEvents (text only).
    """

    name = "messagepack"
    version = 1
    transfer_format = TransferFormat.BINARY
    ping = PING_MESSAGE

    def encode(self, message: HubMessage) -> bytes:
        return encode(message)

    def encode_many(self, messages: list[HubMessage]) -> bytes:
        return encode_many(messages)

    def decode(self, payload: bytes) -> HubMessage:
        return decode(payload)

    def frame(self, payload: bytes) -> bytes:
        return frame(payload)

    def split(self, data: bytes) -> list[bytes]:
        return split_messages(data)

    def reader(self, max_message_size: int) -> LengthPrefixedReader:
        return LengthPrefixedReader(max_message_size)


MESSAGEPACK = MessagePackHubProtocol()
