"""The JSON WebSocket subprotocols of Azure Web PubSub, sans-I/O, for both ends of a client connection.

``json.webpubsub.azure.v1``: https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-webpubsub-subprotocol
(its requests: https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/azure-web-pubsub/includes/reference-json-requests.md);
``json.reliable.webpubsub.azure.v1`` adds ``sequenceId`` on messages and the ``sequenceAck`` request:
https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-reliable-webpubsub-subprotocol.

Every WebSocket frame carries exactly one JSON object (a text frame, or a binary frame holding UTF-8). A client sends
*requests* (:func:`encode_request`; the service reads them with :func:`decode_request`); the service sends
*responses* (:func:`encode_response`; a client reads them with :func:`decode_response`, which answers ``None`` for
a kind a client must skip to stay forward compatible, as the official clients do).

Data travels with a ``dataType``: ``json`` (any JSON value, as is), ``text`` (a string) or ``binary`` (bytes, base64
on the wire; the codec does the base64 both ways, so Python code only ever sees ``bytes``).

Hostile input: every decoding error is an :class:`InvalidMessage` (a ``ValueError``) that names what is wrong; no
``KeyError``, ``TypeError``, JSON or recursion error escapes. The codec refuses nesting deeper than
:data:`MAX_DEPTH`, ``NaN``/``Infinity`` and ids outside uint64. It does not limit sizes: callers refuse oversized
frames before decoding (the WebSocket layer's maximum message size).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

__all__ = [
    "ERROR_BAD_REQUEST",
    "ERROR_DUPLICATE",
    "ERROR_FORBIDDEN",
    "ERROR_INTERNAL",
    "ERROR_INVOCATION_FAILED",
    "JSON_SUBPROTOCOL",
    "MAX_DEPTH",
    "MAX_ID",
    "RELIABLE_JSON_SUBPROTOCOL",
    "SUBPROTOCOLS",
    "Ack",
    "AckError",
    "Connected",
    "DataType",
    "Disconnected",
    "GroupMessage",
    "InvalidMessage",
    "JoinGroup",
    "LeaveGroup",
    "PingRequest",
    "Pong",
    "Request",
    "Response",
    "SendEvent",
    "SendToGroup",
    "SequenceAck",
    "ServerMessage",
    "decode_request",
    "decode_response",
    "describe",
    "encode_request",
    "encode_response",
]

JSON_SUBPROTOCOL = "json.webpubsub.azure.v1"
RELIABLE_JSON_SUBPROTOCOL = "json.reliable.webpubsub.azure.v1"
SUBPROTOCOLS = (JSON_SUBPROTOCOL, RELIABLE_JSON_SUBPROTOCOL)

# The deepest nesting of arrays and objects a frame may hold, the frame's own object included. 64 is the default
# MaxDepth of the .NET JSON reader (https://learn.microsoft.com/dotnet/api/system.text.json.jsonreaderoptions.maxdepth);
# the bound keeps a hostile frame from exhausting the interpreter's recursion limit anywhere downstream.
MAX_DEPTH = 64
# sequenceId is "an incremental uint64 number" (the reliable subprotocol reference). concept-ack calls ackId "a int32
# number", but the .NET client takes a ulong ackId (https://github.com/Azure/azure-sdk-for-net/pull/32406) and the
# others count up from 1: the codec takes any ackId from 0 to 2^64-1.
MAX_ID = 2**64 - 1

# Ack error names (https://learn.microsoft.com/azure/azure-web-pubsub/concept-ack): Forbidden (a role is missing),
# InternalServerError (retry), Duplicate (that ackId was already processed: a success for the sender) and
# InvocationFailed (no event handler for the event, or it answered an error status). BadRequest is not in the
# references; the emulator uses it for a request it cannot carry out.
ERROR_FORBIDDEN = "Forbidden"
ERROR_INTERNAL = "InternalServerError"
ERROR_DUPLICATE = "Duplicate"
ERROR_INVOCATION_FAILED = "InvocationFailed"
ERROR_BAD_REQUEST = "BadRequest"


class InvalidMessage(ValueError):
    """A frame that is not a valid message of the subprotocol; the text says what is wrong."""


class DataType(StrEnum):
    """How a message's ``data`` is carried: ``json`` (any JSON value), ``text`` (str), ``binary`` (bytes)."""

    JSON = "json"
    TEXT = "text"
    BINARY = "binary"


# ---------------------------------------------------------------------------------------------------------------------
# Requests: client → service.


@dataclass(frozen=True, slots=True)
class JoinGroup:
    """``joinGroup``: add this connection to ``group``; with ``ack_id`` the service answers with an :class:`Ack`."""

    group: str
    ack_id: int | None = None


@dataclass(frozen=True, slots=True)
class LeaveGroup:
    """``leaveGroup``: remove this connection from ``group``; with ``ack_id`` the service answers with an
    :class:`Ack`."""

    group: str
    ack_id: int | None = None


@dataclass(frozen=True, slots=True)
class SendToGroup:
    """``sendToGroup``: publish ``data`` to ``group``'s members; ``no_echo`` skips the sender itself."""

    group: str
    data_type: DataType
    data: Any
    ack_id: int | None = None
    no_echo: bool = False


@dataclass(frozen=True, slots=True)
class SendEvent:
    """``event``: deliver ``data`` to the event handler as user event ``event`` (``azure.webpubsub.user.<event>``)."""

    event: str
    data_type: DataType
    data: Any
    ack_id: int | None = None


@dataclass(frozen=True, slots=True)
class SequenceAck:
    """``sequenceAck`` (reliable subprotocol only): every message up to ``sequence_id`` has arrived."""

    sequence_id: int


@dataclass(frozen=True, slots=True)
class PingRequest:
    """``ping``: the service answers :class:`Pong` (a keep-alive the newer clients send)."""


Request: TypeAlias = JoinGroup | LeaveGroup | SendToGroup | SendEvent | SequenceAck | PingRequest


# ---------------------------------------------------------------------------------------------------------------------
# Responses: service → client.


@dataclass(frozen=True, slots=True)
class AckError:
    """Why a request failed: ``name`` is ``Forbidden``, ``InternalServerError``, ``Duplicate`` or ``InvocationFailed``
    (the ``ERROR_*`` constants)."""

    name: str
    message: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to a request that carried ``ack_id``; ``error`` is set when ``success`` is false."""

    ack_id: int
    success: bool
    error: AckError | None = None


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """``message`` from ``group``; ``sequence_id`` is set on the reliable subprotocol and must be acknowledged."""

    group: str
    data_type: DataType
    data: Any
    from_user_id: str | None = None
    sequence_id: int | None = None


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """``message`` from the server (REST API sends, event handler answers); ``sequence_id`` as for groups."""

    data_type: DataType
    data: Any
    sequence_id: int | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    """``system``/``connected``: the first message of a connection. ``reconnection_token`` comes on the reliable
    subprotocol only; it is a secret (with ``connection_id`` it resumes the connection), never log it."""

    user_id: str | None
    connection_id: str
    reconnection_token: str | None = None


@dataclass(frozen=True, slots=True)
class Disconnected:
    """``system``/``disconnected``: the service is about to close the connection, ``message`` says why."""

    message: str | None


@dataclass(frozen=True, slots=True)
class Pong:
    """``pong``: the answer to :class:`PingRequest`."""


Response: TypeAlias = Ack | GroupMessage | ServerMessage | Connected | Disconnected | Pong


# ---------------------------------------------------------------------------------------------------------------------
# JSON text.


def _reject_constant(name: str) -> Any:
    raise InvalidMessage(f"Message is not valid JSON: {name} is not a JSON value.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidMessage(f"Message is not valid JSON: the number {text[:32]} is out of range.")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
# Consecutive tokens: a string literal (brackets inside it do not count; an unterminated one runs to the end, so the
# scan never backtracks and stays linear), a run of other characters, or one bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[^"\[\]{}]+|[\[\]{}]', re.DOTALL)


def _check_depth(text: str) -> None:
    # Fast path: a frame with fewer opening brackets than the bound cannot be nested deeper than it.
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidMessage(f"Message is nested deeper than {MAX_DEPTH} levels.")
        elif token == "]" or token == "}":
            depth -= 1


def _load_object(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, bytes | bytearray | memoryview):
        try:
            text = bytes(frame).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessage("Message is not valid UTF-8.") from None
    elif isinstance(frame, str):
        text = frame
    else:
        raise InvalidMessage(f"Message must be text or bytes, not {type(frame).__name__}.")
    _check_depth(text)
    try:
        obj = _DECODER.decode(text)
    except InvalidMessage:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidMessage(f"Message is not valid JSON: {exc.msg} at position {exc.pos}.") from None
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise InvalidMessage("Message is not valid JSON: a number has too many digits.") from None
    except RecursionError:  # pragma: no cover - _check_depth refuses such frames first
        raise InvalidMessage("Message is nested too deeply.") from None
    if not isinstance(obj, dict):
        raise InvalidMessage("Message must be a JSON object.")
    return obj


def _dumps(obj: Mapping[str, Any]) -> str:
    # allow_nan=False: NaN and Infinity are not JSON, a peer's JSON.parse would refuse the whole frame.
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:  # bytes, a set, an object, NaN
        raise InvalidMessage(f"JSON cannot carry this data: {exc}") from None
    except RecursionError:
        raise InvalidMessage("JSON cannot carry this data: it is nested too deeply.") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON "\udcff" decodes to one) cannot travel as UTF-8; escaped, it stays valid JSON.
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Field readers: each names the message kind and the field in its error.


def _required(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise InvalidMessage(f"Invalid {what}: missing required property '{key}'.")
    return obj[key]


def _name(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = _required(obj, key, what)
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"Invalid {what}: '{key}' must be a non-empty string.")
    return value


def _optional_string(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidMessage(f"Invalid {what}: '{key}' must be a string.")
    return value


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _optional_id(obj: Mapping[str, Any], key: str, what: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not _is_id(value):
        raise InvalidMessage(f"Invalid {what}: '{key}' must be an integer from 0 to 2^64-1.")
    return int(value)


def _required_id(obj: Mapping[str, Any], key: str, what: str) -> int:
    _required(obj, key, what)
    value = _optional_id(obj, key, what)
    if value is None:
        raise InvalidMessage(f"Invalid {what}: '{key}' must be an integer from 0 to 2^64-1.")
    return value


def _bool(obj: Mapping[str, Any], key: str, what: str, default: bool) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidMessage(f"Invalid {what}: '{key}' must be true or false.")
    return value


def _data_type(value: Any, what: str) -> DataType | None:
    """The data type named by ``value`` (absent → json, as the references say); None for a name not known here."""
    if value is None:
        return DataType.JSON
    if not isinstance(value, str):
        raise InvalidMessage(f"Invalid {what}: 'dataType' must be a string.")
    try:
        return DataType(value)
    except ValueError:
        return None


def _data_from_wire(data_type: DataType, value: Any, what: str) -> Any:
    if data_type is DataType.JSON:
        return value
    if not isinstance(value, str):
        raise InvalidMessage(f"Invalid {what}: 'data' must be a string when 'dataType' is {data_type.value}.")
    if data_type is DataType.TEXT:
        return value
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidMessage(f"Invalid {what}: 'data' is not valid base64 for dataType binary.") from None


def _data_to_wire(data_type: DataType, data: Any) -> Any:
    if data_type is DataType.JSON:
        return data
    if data_type is DataType.TEXT:
        if not isinstance(data, str):
            raise InvalidMessage(f"Text data must be a str, not {type(data).__name__}.")
        return data
    if data_type is DataType.BINARY:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidMessage(f"Binary data must be bytes, not {type(data).__name__}.")
        return base64.b64encode(data).decode("ascii")
    raise InvalidMessage(f"Unknown data type {data_type!r}.")


def _checked_id(value: int | None, key: str) -> int | None:
    if value is not None and not _is_id(value):
        raise InvalidMessage(f"'{key}' must be an integer from 0 to 2^64-1, not {value!r}.")
    return value


def _checked_name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"'{key}' must be a non-empty string, not {value!r}.")
    return value


def _with_ack(obj: dict[str, Any], ack_id: int | None) -> dict[str, Any]:
    if _checked_id(ack_id, "ackId") is not None:
        obj["ackId"] = ack_id
    return obj


# ---------------------------------------------------------------------------------------------------------------------
# Requests.


def encode_request(request: Request) -> str:
    """One request as the text of one WebSocket frame; :class:`InvalidMessage` for data its data type cannot carry."""
    match request:
        case JoinGroup():
            return _dumps(
                _with_ack({"type": "joinGroup", "group": _checked_name(request.group, "group")}, request.ack_id)
            )
        case LeaveGroup():
            return _dumps(
                _with_ack({"type": "leaveGroup", "group": _checked_name(request.group, "group")}, request.ack_id)
            )
        case SendToGroup():
            obj: dict[str, Any] = {"type": "sendToGroup", "group": _checked_name(request.group, "group")}
            _with_ack(obj, request.ack_id)
            obj["noEcho"] = bool(request.no_echo)
            obj["dataType"] = DataType(request.data_type).value
            obj["data"] = _data_to_wire(DataType(request.data_type), request.data)
            return _dumps(obj)
        case SendEvent():
            obj = {"type": "event", "event": _checked_name(request.event, "event")}
            _with_ack(obj, request.ack_id)
            obj["dataType"] = DataType(request.data_type).value
            obj["data"] = _data_to_wire(DataType(request.data_type), request.data)
            return _dumps(obj)
        case SequenceAck():
            if not _is_id(request.sequence_id):
                raise InvalidMessage(f"'sequenceId' must be an integer from 0 to 2^64-1, not {request.sequence_id!r}.")
            return _dumps({"type": "sequenceAck", "sequenceId": request.sequence_id})
        case PingRequest():
            return '{"type":"ping"}'
    raise InvalidMessage(f"Not a request: {type(request).__name__}.")


def decode_request(frame: str | bytes) -> Request:
    """The request one frame holds (the service side reads client frames with it).

    Raises :class:`InvalidMessage` for anything else, including a ``type`` the subprotocol does not define and a
    ``dataType`` other than json/text/binary; the service answers such a frame as it sees fit (it may close).
    """
    obj = _load_object(frame)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise InvalidMessage("Invalid request: 'type' must be a string.")
    match kind:
        case "joinGroup" | "leaveGroup":
            what = f"{kind} request"
            group = _name(obj, "group", what)
            ack_id = _optional_id(obj, "ackId", what)
            return JoinGroup(group, ack_id) if kind == "joinGroup" else LeaveGroup(group, ack_id)
        case "sendToGroup":
            what = "sendToGroup request"
            group = _name(obj, "group", what)
            ack_id = _optional_id(obj, "ackId", what)
            no_echo = _bool(obj, "noEcho", what, False)
            data_type, data = _request_data(obj, what)
            return SendToGroup(group, data_type, data, ack_id, no_echo)
        case "event":
            what = "event request"
            event = _name(obj, "event", what)
            ack_id = _optional_id(obj, "ackId", what)
            data_type, data = _request_data(obj, what)
            return SendEvent(event, data_type, data, ack_id)
        case "sequenceAck":
            return SequenceAck(_required_id(obj, "sequenceId", "sequenceAck request"))
        case "ping":
            return PingRequest()
    raise InvalidMessage(f"Unknown request type {kind[:64]!r}.")


def _request_data(obj: Mapping[str, Any], what: str) -> tuple[DataType, Any]:
    data_type = _data_type(obj.get("dataType"), what)
    if data_type is None:
        raise InvalidMessage(f"Invalid {what}: 'dataType' must be json, text or binary.")
    return data_type, _data_from_wire(data_type, _required(obj, "data", what), what)


# ---------------------------------------------------------------------------------------------------------------------
# Responses.


def _with_sequence(obj: dict[str, Any], sequence_id: int | None) -> dict[str, Any]:
    if _checked_id(sequence_id, "sequenceId") is not None:
        obj["sequenceId"] = sequence_id
    return obj


def encode_response(response: Response) -> str:
    """One response as the text of one WebSocket frame (the service side writes client frames with it).

    Optional fields that are ``None`` are left out. :class:`InvalidMessage` for data its data type cannot carry.
    """
    match response:
        case Ack():
            if not _is_id(response.ack_id):
                raise InvalidMessage(f"'ackId' must be an integer from 0 to 2^64-1, not {response.ack_id!r}.")
            obj: dict[str, Any] = {"type": "ack", "ackId": response.ack_id, "success": bool(response.success)}
            if response.error is not None:
                obj["error"] = {"name": response.error.name, "message": response.error.message}
            return _dumps(obj)
        case GroupMessage():
            data_type = DataType(response.data_type)
            obj = {"type": "message", "from": "group", "group": _checked_name(response.group, "group")}
            obj["dataType"] = data_type.value
            obj["data"] = _data_to_wire(data_type, response.data)
            if response.from_user_id is not None:
                obj["fromUserId"] = response.from_user_id
            return _dumps(_with_sequence(obj, response.sequence_id))
        case ServerMessage():
            data_type = DataType(response.data_type)
            obj = {"type": "message", "from": "server", "dataType": data_type.value}
            obj["data"] = _data_to_wire(data_type, response.data)
            return _dumps(_with_sequence(obj, response.sequence_id))
        case Connected():
            obj = {"type": "system", "event": "connected"}
            if response.user_id is not None:
                obj["userId"] = response.user_id
            obj["connectionId"] = _checked_name(response.connection_id, "connectionId")
            if response.reconnection_token is not None:
                obj["reconnectionToken"] = response.reconnection_token
            return _dumps(obj)
        case Disconnected():
            obj = {"type": "system", "event": "disconnected"}
            if response.message is not None:
                obj["message"] = response.message
            return _dumps(obj)
        case Pong():
            return '{"type":"pong"}'
    raise InvalidMessage(f"Not a response: {type(response).__name__}.")


def decode_response(frame: str | bytes) -> Response | None:
    """The response one frame holds (a client reads service frames with it).

    ``None`` for what a client must skip to stay forward compatible, as the official clients do: an unknown
    ``type``, a ``system`` event other than connected/disconnected, a ``message`` from neither group nor server, or a
    ``dataType`` other than json/text/binary. :class:`InvalidMessage` for a frame that is not a JSON object or a known
    kind with a missing or mistyped field.
    """
    obj = _load_object(frame)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise InvalidMessage("Invalid response: 'type' must be a string.")
    match kind:
        case "ack":
            return _decode_ack(obj)
        case "message":
            return _decode_message(obj)
        case "system":
            return _decode_system(obj)
        case "pong":
            return Pong()
    return None


def _decode_ack(obj: Mapping[str, Any]) -> Ack:
    what = "ack response"
    ack_id = _required_id(obj, "ackId", what)
    success = _required(obj, "success", what)
    if not isinstance(success, bool):
        raise InvalidMessage(f"Invalid {what}: 'success' must be true or false.")
    raw = obj.get("error")
    if raw is None:
        return Ack(ack_id, success)
    if not isinstance(raw, dict):
        raise InvalidMessage(f"Invalid {what}: 'error' must be an object.")
    name = _optional_string(raw, "name", what + " error")
    message = _optional_string(raw, "message", what + " error")
    return Ack(ack_id, success, AckError(name or "", message or ""))


def _decode_message(obj: Mapping[str, Any]) -> GroupMessage | ServerMessage | None:
    source = obj.get("from")
    if source not in ("group", "server"):
        return None
    what = f"{source} message"
    data_type = _data_type(obj.get("dataType"), what)
    if data_type is None:
        return None
    data = _data_from_wire(data_type, _required(obj, "data", what), what)
    sequence_id = _optional_id(obj, "sequenceId", what)
    if source == "server":
        return ServerMessage(data_type, data, sequence_id)
    group = _name(obj, "group", what)
    return GroupMessage(group, data_type, data, _optional_string(obj, "fromUserId", what), sequence_id)


def _decode_system(obj: Mapping[str, Any]) -> Connected | Disconnected | None:
    event = obj.get("event")
    if event == "connected":
        what = "connected message"
        return Connected(
            _optional_string(obj, "userId", what),
            _name(obj, "connectionId", what),
            _optional_string(obj, "reconnectionToken", what),
        )
    if event == "disconnected":
        return Disconnected(_optional_string(obj, "message", "disconnected message"))
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Short descriptions for logs and network traces.


def _short(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(message: Request | Response) -> str:
    """A one-line summary of a message for logs and traces, e.g. ``sendToGroup chat #3 (text)``.

    Never the data and never the reconnection token (a :class:`Connected` says only whether it carried one).
    """
    match message:
        case JoinGroup() | LeaveGroup():
            kind = "joinGroup" if isinstance(message, JoinGroup) else "leaveGroup"
            return f"{kind} {_short(message.group)}{_ack_suffix(message.ack_id)}"
        case SendToGroup():
            echo = ", noEcho" if message.no_echo else ""
            return f"sendToGroup {_short(message.group)}{_ack_suffix(message.ack_id)} ({message.data_type}{echo})"
        case SendEvent():
            return f"event {_short(message.event)}{_ack_suffix(message.ack_id)} ({message.data_type})"
        case SequenceAck():
            return f"sequenceAck {message.sequence_id}"
        case PingRequest():
            return "ping"
        case Ack():
            if message.success:
                return f"ack #{message.ack_id} ok"
            error = message.error
            reason = f"{_short(error.name)}: {_short(error.message, 160)}" if error else "failed"
            return f"ack #{message.ack_id} {reason}"
        case GroupMessage():
            sender = f" by {_short(message.from_user_id)}" if message.from_user_id is not None else ""
            return (
                f"message from group {_short(message.group)}{sender} ({message.data_type}){_seq(message.sequence_id)}"
            )
        case ServerMessage():
            return f"message from server ({message.data_type}){_seq(message.sequence_id)}"
        case Connected():
            user = f", user {_short(message.user_id)}" if message.user_id is not None else ", anonymous"
            token = ", with a reconnection token" if message.reconnection_token else ""
            return f"connected: connection {_short(message.connection_id)}{user}{token}"
        case Disconnected():
            return "disconnected" + (f": {_short(message.message, 160)}" if message.message else "")
        case Pong():
            return "pong"
    return type(message).__name__  # pragma: no cover - the match is exhaustive


def _ack_suffix(ack_id: int | None) -> str:
    return f" #{ack_id}" if ack_id is not None else ""


def _seq(sequence_id: int | None) -> str:
    return f" seq {sequence_id}" if sequence_id is not None else ""
