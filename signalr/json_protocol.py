"""The JSON hub protocol, sans-I/O (``docs/protocol.md`` §4).

Every message is UTF-8 JSON terminated by the record separator ``0x1E``. A transport frame, SSE event, LongPolling
response or POST body may carry several records (trap 8), so :class:`RecordReader` splits an incremental byte stream
into complete records and keeps the partial tail. :func:`encode` and :func:`decode` convert a hub message
(``signalr/messages.py``) to and from one record; :data:`JSON` is the same codec as a
:class:`~signalr.hub_protocol.HubProtocol`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

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
    "JSON",
    "PING_RECORD",
    "RECORD_SEPARATOR",
    "JsonHubProtocol",
    "RecordReader",
    "decode",
    "dumps_record",
    "encode",
    "encode_many",
    "load_json",
    "split_records",
]

RECORD_SEPARATOR = b"\x1e"
PING_RECORD = b'{"type":6}\x1e'


def dumps_record(obj: Mapping[str, Any]) -> bytes:
    """``obj`` as compact UTF-8 JSON followed by ``0x1E`` (the handshake uses it too)."""
    # allow_nan=False: NaN and Infinity are not JSON; a peer's JSON.parse would reject the whole record (§4).
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:  # a value JSON has no form for (bytes, a set, an object)
        raise ValueError(f"JSON cannot carry this value: {exc}") from None
    except RecursionError:
        raise ValueError("JSON cannot carry this value: it is nested too deeply.") from None
    try:
        return text.encode("utf-8") + RECORD_SEPARATOR
    except UnicodeEncodeError:
        # A lone surrogate (a peer may send one as a legal "\ud800" escape) has no UTF-8 form: keep it escaped.
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii") + RECORD_SEPARATOR


def _to_json(message: HubMessage) -> dict[str, Any]:
    match message:
        case Invocation():
            out: dict[str, Any] = {"type": 1}
            if message.headers:
                out["headers"] = dict(message.headers)
            if message.invocation_id is not None:
                out["invocationId"] = message.invocation_id
            out["target"] = message.target
            out["arguments"] = list(message.arguments)
            if message.stream_ids:
                out["streamIds"] = list(message.stream_ids)
            return out
        case StreamItem():
            return {"type": 2, "invocationId": message.invocation_id, "item": message.item}
        case Completion():
            out = {"type": 3, "invocationId": message.invocation_id}
            if message.error is not None:
                out["error"] = message.error
            elif message.has_result:
                out["result"] = message.result
            return out
        case StreamInvocation():
            out = {"type": 4, "invocationId": message.invocation_id, "target": message.target}
            out["arguments"] = list(message.arguments)
            if message.stream_ids:
                out["streamIds"] = list(message.stream_ids)
            return out
        case CancelInvocation():
            return {"type": 5, "invocationId": message.invocation_id}
        case Ping():
            return {"type": 6}
        case Close():
            out = {"type": 7}
            if message.error is not None:
                out["error"] = message.error
            if message.allow_reconnect is not None:
                out["allowReconnect"] = message.allow_reconnect
            return out


def encode(message: HubMessage) -> bytes:
    """One complete record: compact UTF-8 JSON followed by ``0x1E``.

    Raises :class:`ValueError` for values JSON cannot carry (NaN, infinities, bytes, sets, other objects, nesting
    past the recursion limit); the caller must not send them.
    """
    if isinstance(message, Ping):
        return PING_RECORD
    return dumps_record(_to_json(message))


def encode_many(messages: list[HubMessage]) -> bytes:
    """Several records back to back, as one frame, event or body may carry them."""
    return b"".join(encode(m) for m in messages)


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"Message is not valid JSON: {name} is not a JSON value.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"Message is not valid JSON: the number {text[:32]} is out of range.")
    return value


# One decoder built once: json.loads(..., parse_float=…) would build a new JSONDecoder per call (~25 % of decode).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def load_json(data: bytes) -> Any:
    """Parse one UTF-8 JSON value strictly; raise :class:`ProtocolError` for anything a peer could not parse.

    Refused, each with a message naming why: invalid UTF-8, invalid JSON, ``NaN``/``Infinity``/``-Infinity``, a
    float outside the double range (``1e999``), an integer with more digits than the interpreter converts, and
    nesting deeper than the recursion limit. No other exception escapes, so a caller that catches ``ProtocolError``
    (or ``ValueError``) for one record or request body cannot be killed by hostile input. Use it for hub records
    (:func:`decode` does) and for any JSON body that is passed on to clients (the REST API's).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("Message is not valid UTF-8.") from None
    try:
        return _DECODER.decode(text)
    except ProtocolError:
        raise
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"Message is not valid JSON: {exc.msg} at position {exc.pos}.") from None
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise ProtocolError("Message is not valid JSON: a number has too many digits.") from None
    except RecursionError:
        raise ProtocolError("Message is not valid JSON: it is nested too deeply.") from None


def _load_object(record: bytes, what: str) -> dict[str, Any]:
    """The record's JSON object; ``what`` names the record in the error when it is another JSON value."""
    obj = load_json(record)
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object.")
    return obj


def _optional_string(obj: Mapping[str, Any], key: str) -> str | None:
    """The string at ``key``; ``None`` when absent or null (both count as absent)."""
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"Expected '{key}' to be of type String.")
    return value


def _required_string(obj: Mapping[str, Any], key: str) -> str:
    value = _optional_string(obj, key)
    if value is None:
        raise ProtocolError(f"Missing required property '{key}'.")
    return value


def _arguments(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    if "arguments" not in obj:
        raise ProtocolError("Missing required property 'arguments'.")
    value = obj["arguments"]
    if not isinstance(value, list):
        raise ProtocolError("Expected 'arguments' to be of type Array.")
    return tuple(value)


def _stream_ids(obj: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = obj.get("streamIds")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError("Expected 'streamIds' to be an Array of String.")
    return tuple(value)


def decode(record: bytes) -> HubMessage:
    """Parse one record (without its separator) into a hub message; raises :class:`ProtocolError`."""
    obj = _load_object(record, "Message")
    kind = obj.get("type")
    if kind is None:
        raise ProtocolError("Missing required property 'type'.")
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise ProtocolError("Expected 'type' to be of type Integer.")
    if kind == MessageType.INVOCATION:
        target = _required_string(obj, "target")
        headers = obj.get("headers")
        return Invocation(
            target=target,
            arguments=_arguments(obj),
            invocation_id=_optional_string(obj, "invocationId"),
            stream_ids=_stream_ids(obj),
            headers=headers if isinstance(headers, dict) else None,
        )
    if kind == MessageType.STREAM_ITEM:
        return StreamItem(_required_string(obj, "invocationId"), obj.get("item"))
    if kind == MessageType.COMPLETION:
        invocation_id = _required_string(obj, "invocationId")
        if "error" in obj and "result" in obj:
            raise ProtocolError("The 'error' and 'result' properties are mutually exclusive.")
        if "error" in obj:
            return Completion.with_error(invocation_id, _required_string(obj, "error"))
        if "result" in obj:
            return Completion.with_result(invocation_id, obj["result"])
        return Completion(invocation_id)
    if kind == MessageType.STREAM_INVOCATION:
        invocation_id = _required_string(obj, "invocationId")
        target = _required_string(obj, "target")
        return StreamInvocation(invocation_id, target, _arguments(obj), _stream_ids(obj))
    if kind == MessageType.CANCEL_INVOCATION:
        return CancelInvocation(_required_string(obj, "invocationId"))
    if kind == MessageType.PING:
        return Ping()
    if kind == MessageType.CLOSE:
        allow = obj.get("allowReconnect")
        return Close(_optional_string(obj, "error"), allow if isinstance(allow, bool) else None)
    raise UnknownMessageType(kind)


class RecordReader:
    """Splits a byte stream into ``0x1E``-terminated records, keeping an incomplete tail for the next call.

    Feed bytes as they arrive with :meth:`feed`; it returns the complete records (separators removed). A record, or a
    tail that is still waiting for its separator, larger than ``max_message_size`` raises :class:`MessageTooLarge`:
    the caller must then close the connection.
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._tail = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received after the last complete record."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        self._tail += data
        if RECORD_SEPARATOR not in data:
            self._check(len(self._tail))
            return []
        *records, rest = bytes(self._tail).split(RECORD_SEPARATOR)
        self._tail = bytearray(rest)
        for record in records:
            self._check(len(record))
        self._check(len(rest))
        return records

    def _check(self, size: int) -> None:
        if size > self.max_message_size:
            self._tail.clear()
            raise MessageTooLarge(f"The message exceeded the maximum message size of {self.max_message_size} bytes.")


def split_records(data: bytes) -> list[bytes]:
    """Records of a complete buffer (frame, event, body). Its last byte must be ``0x1E`` (JS: incomplete message)."""
    if not data.endswith(RECORD_SEPARATOR):
        raise ProtocolError("Message is incomplete.")
    return data.split(RECORD_SEPARATOR)[:-1]


class JsonHubProtocol:
    """The ``json`` hub protocol, version 1, as a :class:`~signalr.hub_protocol.HubProtocol`."""

    name = "json"
    version = 1
    transfer_format = TransferFormat.TEXT
    ping = PING_RECORD

    def encode(self, message: HubMessage) -> bytes:
        return encode(message)

    def encode_many(self, messages: list[HubMessage]) -> bytes:
        return encode_many(messages)

    def decode(self, payload: bytes) -> HubMessage:
        return decode(payload)

    def frame(self, payload: bytes) -> bytes:
        return payload + RECORD_SEPARATOR

    def split(self, data: bytes) -> list[bytes]:
        return split_records(data)

    def reader(self, max_message_size: int) -> RecordReader:
        return RecordReader(max_message_size)


JSON = JsonHubProtocol()
