"""The event handler's CloudEvents, sans-I/O: what Azure Web PubSub posts to an app server and what it answers.

The service delivers client events to the event handler as CloudEvents in HTTP *binary* mode: the attributes travel as
``ce-*`` headers, the event's data is the request body
(https://learn.microsoft.com/azure/azure-web-pubsub/reference-cloud-events). Both ends use this module:

- the service side (the emulator) builds a request with :func:`event_headers` and a body (:func:`connect_body`,
  :func:`disconnected_body`, :func:`encode_user_data`), posts it, and reads the answer with
  :func:`parse_connect_response` or :func:`parse_user_event_response`;
- the handler side (the app server) checks the request with :func:`parse_event_request` and
  :func:`signature_matches`, reads the body with :func:`parse_connect_body`, :func:`parse_disconnected_body` or
  :func:`decode_user_data`, and answers.

Abuse protection (https://github.com/cloudevents/spec/blob/v1.0/http-webhook.md#4-abuse-protection): before it
delivers events, the service sends ``OPTIONS`` with ``WebHook-Request-Origin: <host>``; the handler allows delivery by
answering with ``WebHook-Allowed-Origin: <host>`` or ``*`` (:func:`abuse_protection_headers` on the handler side,
:func:`abuse_protection_allows` on the service side).

Every parser raises :class:`InvalidEvent` (a :class:`ValueError`) only, with a message a person can act on; callers
enforce :data:`MAX_EVENT_BODY` (or their own limit) before they read a body whole.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "ABUSE_PROTECTION_METHOD",
    "AWPS_VERSION",
    "CONNECTED_EVENT_TYPE",
    "CONNECT_EVENT_TYPE",
    "CONTENT_TYPE",
    "CONTENT_TYPE_BINARY",
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_TEXT",
    "DISCONNECTED_EVENT_TYPE",
    "EVENT_TYPE_PREFIX",
    "HEADER_AWPS_VERSION",
    "HEADER_CONNECTION_ID",
    "HEADER_CONNECTION_STATE",
    "HEADER_EVENT_NAME",
    "HEADER_HUB",
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_SOURCE",
    "HEADER_SPECVERSION",
    "HEADER_SUBPROTOCOL",
    "HEADER_TIME",
    "HEADER_TYPE",
    "HEADER_USER_ID",
    "MAX_EVENT_BODY",
    "SPECVERSION",
    "USER_EVENT_TYPE_PREFIX",
    "WEBHOOK_ALLOWED_ORIGIN",
    "WEBHOOK_REQUEST_ORIGIN",
    "ConnectRequest",
    "ConnectResponse",
    "EventKind",
    "EventRequest",
    "InvalidEvent",
    "UserData",
    "UserDataType",
    "abuse_protection_allows",
    "abuse_protection_headers",
    "connect_body",
    "data_type_for_content_type",
    "decode_states",
    "decode_user_data",
    "disconnected_body",
    "encode_connect_response",
    "encode_states",
    "encode_user_data",
    "event_headers",
    "event_type",
    "parse_connect_body",
    "parse_connect_response",
    "parse_disconnected_body",
    "parse_event_request",
    "parse_user_event_response",
    "signature",
    "signature_matches",
]

# CloudEvents attributes in HTTP binary mode (header names as the service writes them; HTTP header names are
# case-insensitive, so every lookup here is too).
HEADER_SPECVERSION = "ce-specversion"
HEADER_TYPE = "ce-type"
HEADER_SOURCE = "ce-source"
HEADER_ID = "ce-id"
HEADER_TIME = "ce-time"
# The Web PubSub extension attributes (reference-cloud-events, "Web PubSub CloudEvents attribute extension").
HEADER_AWPS_VERSION = "ce-awpsversion"
HEADER_HUB = "ce-hub"
HEADER_EVENT_NAME = "ce-eventName"
HEADER_CONNECTION_ID = "ce-connectionId"
HEADER_USER_ID = "ce-userId"
HEADER_SIGNATURE = "ce-signature"
HEADER_SUBPROTOCOL = "ce-subprotocol"
HEADER_CONNECTION_STATE = "ce-connectionState"
CONTENT_TYPE = "Content-Type"
WEBHOOK_REQUEST_ORIGIN = "WebHook-Request-Origin"
WEBHOOK_ALLOWED_ORIGIN = "WebHook-Allowed-Origin"
ABUSE_PROTECTION_METHOD = "OPTIONS"

SPECVERSION = "1.0"
AWPS_VERSION = "1.0"

EVENT_TYPE_PREFIX = "azure.webpubsub."
CONNECT_EVENT_TYPE = "azure.webpubsub.sys.connect"
CONNECTED_EVENT_TYPE = "azure.webpubsub.sys.connected"
DISCONNECTED_EVENT_TYPE = "azure.webpubsub.sys.disconnected"
USER_EVENT_TYPE_PREFIX = "azure.webpubsub.user."

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_TEXT = "text/plain"
CONTENT_TYPE_BINARY = "application/octet-stream"

# A client message may carry up to 1 MB (the service's limit); an event body is that data, or the connect event's
# claims/query/headers. A caller reads no more than this before it hands a body here.
MAX_EVENT_BODY = 1024 * 1024
# Bounds for what an answer or a request may hold, so a hostile peer cannot make the other side keep huge lists.
_MAX_NAME = 1024
_MAX_LIST = 1000
_MAX_JSON_DEPTH = 64

UserDataType = Literal["json", "text", "binary"]
UserData = Any  # json: any JSON value; text: str; binary: bytes


class InvalidEvent(ValueError):
    """An event request, its body or an answer to it does not follow the Web PubSub CloudEvents format."""


class EventKind(StrEnum):
    """What an event is: one of the three system events or a user event (``azure.webpubsub.user.<event>``)."""

    CONNECT = "connect"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    USER = "user"


_SYSTEM_TYPES = {
    CONNECT_EVENT_TYPE: EventKind.CONNECT,
    CONNECTED_EVENT_TYPE: EventKind.CONNECTED,
    DISCONNECTED_EVENT_TYPE: EventKind.DISCONNECTED,
}


def event_type(kind: EventKind, event_name: str = "") -> str:
    """The ``ce-type`` of an event: ``azure.webpubsub.sys.<kind>`` or, for :attr:`EventKind.USER`,
    ``azure.webpubsub.user.<event_name>``."""
    if kind is EventKind.USER:
        if not event_name:
            raise InvalidEvent("A user event needs an event name.")
        return USER_EVENT_TYPE_PREFIX + event_name
    return "azure.webpubsub.sys." + kind.value


# -- signature ---------------------------------------------------------------------------------------------------------


def _hmac_hex(access_key: str, connection_id: str) -> str:
    return hmac.new(access_key.encode("utf-8"), connection_id.encode("utf-8"), hashlib.sha256).hexdigest()


def signature(connection_id: str, access_keys: Sequence[str]) -> str:
    """The ``ce-signature`` value: ``sha256=<hex>`` per access key (primary, then secondary), comma separated; each is
    ``Hex(HMAC_SHA256(accessKey, connectionId))``."""
    if not access_keys:
        raise ValueError("A signature needs at least one access key.")
    return ",".join("sha256=" + _hmac_hex(key, connection_id) for key in access_keys)


def signature_matches(header: str, connection_id: str, access_key: str) -> bool:
    """Whether one of the ``sha256=<hex>`` entries of a ``ce-signature`` header is the HMAC of ``connection_id`` with
    ``access_key``. Compares in constant time; an empty or malformed header does not match."""
    expected = ("sha256=" + _hmac_hex(access_key, connection_id)).encode("ascii")
    matched = False
    for entry in header.split(",")[:4]:
        candidate = entry.strip().encode("utf-8", "surrogatepass")
        # Check every entry, so the time taken does not say which one matched.
        matched = hmac.compare_digest(candidate, expected) or matched
    return matched


# -- connection state --------------------------------------------------------------------------------------------------


def encode_states(states: Mapping[str, Any]) -> str:
    """A ``ce-connectionState`` value: the states as base64 of their JSON (as the official handler SDKs write it)."""
    return base64.b64encode(json.dumps(dict(states), separators=(",", ":")).encode("utf-8")).decode("ascii")


def decode_states(value: str) -> dict[str, Any]:
    """The states of a ``ce-connectionState`` value written by :func:`encode_states`. Raises :class:`InvalidEvent`
    when it is not base64 of a JSON object."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidEvent(f"{HEADER_CONNECTION_STATE} is not base64.") from exc
    states = _loads_json(raw, HEADER_CONNECTION_STATE)
    if not isinstance(states, dict):
        raise InvalidEvent(f"{HEADER_CONNECTION_STATE} is not base64 of a JSON object.")
    return states


# -- the request -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRequest:
    """One event as the handler receives it: the ``ce-*`` attributes and the body, checked for shape but not for the
    signature (the handler calls :func:`signature_matches` with its AccessKey)."""

    hub: str
    """``ce-hub``."""
    kind: EventKind
    """Which event, from ``ce-type``."""
    event_type: str
    """``ce-type``, e.g. ``azure.webpubsub.user.echo``."""
    event_name: str
    """``ce-eventName``: ``connect``, ``connected``, ``disconnected`` or the user event's name."""
    connection_id: str
    """``ce-connectionId``."""
    user_id: str | None
    """``ce-userId``; None when the connection has no user (yet)."""
    signature: str
    """``ce-signature`` as received."""
    event_id: str
    """``ce-id``."""
    source: str
    """``ce-source``."""
    time: str | None = None
    """``ce-time``."""
    subprotocol: str | None = None
    """``ce-subprotocol``: the client's WebSocket subprotocol, if any."""
    states: str | None = None
    """``ce-connectionState`` as received (see :func:`decode_states`)."""
    origin: str | None = None
    """``WebHook-Request-Origin``: the service's host."""
    content_type: str = ""
    """The media type of the body, lower-cased and without parameters (``application/json``)."""
    body: bytes = field(default=b"", repr=False)
    """The event's data (not shown in ``repr``: it is the user's message)."""


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)
    return lowered


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        raise InvalidEvent(f"The event request has no {name} header.")
    value = value.strip()
    if len(value) > _MAX_NAME:
        raise InvalidEvent(f"The {name} header is longer than {_MAX_NAME} characters.")
    return value


def _optional(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        return None
    if len(value) > 16 * _MAX_NAME:
        raise InvalidEvent(f"The {name} header is longer than {16 * _MAX_NAME} characters.")
    return value.strip()


def event_headers(
    *,
    hub: str,
    kind: EventKind,
    connection_id: str,
    access_keys: Sequence[str],
    event_id: str,
    time: str,
    origin: str,
    event_name: str = "",
    user_id: str | None = None,
    subprotocol: str | None = None,
    states: str | None = None,
    content_type: str = CONTENT_TYPE_JSON,
) -> dict[str, str]:
    """The headers of an event request as the service sends them, signed with ``access_keys``.

    ``event_name`` is the user event's name (system events name themselves); ``time`` is RFC 3339
    (``2021-01-01T00:00:00Z``); ``origin`` is the service's host (``WebHook-Request-Origin``); ``content_type`` is the
    body's (:func:`encode_user_data` says which for a user event; system events are JSON).
    """
    name = event_name if kind is EventKind.USER else kind.value
    headers = {
        WEBHOOK_REQUEST_ORIGIN: origin,
        CONTENT_TYPE: content_type,
        HEADER_SPECVERSION: SPECVERSION,
        HEADER_TYPE: event_type(kind, event_name),
        HEADER_SOURCE: f"/hubs/{hub}/client/{connection_id}",
        HEADER_ID: event_id,
        HEADER_TIME: time,
        HEADER_AWPS_VERSION: AWPS_VERSION,
        HEADER_SIGNATURE: signature(connection_id, access_keys),
        HEADER_CONNECTION_ID: connection_id,
        HEADER_HUB: hub,
        HEADER_EVENT_NAME: name,
    }
    if user_id is not None:
        headers[HEADER_USER_ID] = user_id
    if subprotocol:
        headers[HEADER_SUBPROTOCOL] = subprotocol
    if states:
        headers[HEADER_CONNECTION_STATE] = states
    return headers


def parse_event_request(headers: Mapping[str, str], body: bytes, *, max_body: int = MAX_EVENT_BODY) -> EventRequest:
    """Read an event request (headers in any case). Raises :class:`InvalidEvent` when a required attribute is
    missing, ``ce-specversion`` is not 1.0, ``ce-type`` is not a Web PubSub event, ``ce-eventName`` disagrees with it,
    or the body is larger than ``max_body``. The caller then checks :attr:`EventRequest.signature` with
    :func:`signature_matches` and reads the body with the parser for :attr:`EventRequest.kind`."""
    if len(body) > max_body:
        raise InvalidEvent(f"The event body has {len(body)} bytes; at most {max_body} are accepted.")
    lowered = _lower_headers(headers)
    specversion = _required(lowered, HEADER_SPECVERSION)
    if specversion != SPECVERSION:
        raise InvalidEvent(f"{HEADER_SPECVERSION} is {specversion[:40]!r}; only {SPECVERSION} is understood.")
    type_ = _required(lowered, HEADER_TYPE)
    event_name = _required(lowered, HEADER_EVENT_NAME)
    if type_.startswith(USER_EVENT_TYPE_PREFIX):
        kind = EventKind.USER
        if type_ != USER_EVENT_TYPE_PREFIX + event_name:
            raise InvalidEvent(f"{HEADER_TYPE} {type_[:80]!r} does not name the event {event_name[:80]!r}.")
    elif type_ in _SYSTEM_TYPES:
        kind = _SYSTEM_TYPES[type_]
        if event_name != kind.value:
            raise InvalidEvent(f"{HEADER_TYPE} {type_!r} does not go with {HEADER_EVENT_NAME} {event_name[:80]!r}.")
    else:
        raise InvalidEvent(
            f"{HEADER_TYPE} {type_[:80]!r} is not a Web PubSub event ({CONNECT_EVENT_TYPE}, {CONNECTED_EVENT_TYPE}, "
            f"{DISCONNECTED_EVENT_TYPE} or {USER_EVENT_TYPE_PREFIX}<event>)."
        )
    return EventRequest(
        hub=_required(lowered, HEADER_HUB),
        kind=kind,
        event_type=type_,
        event_name=event_name,
        connection_id=_required(lowered, HEADER_CONNECTION_ID),
        user_id=_optional(lowered, HEADER_USER_ID),
        signature=_required(lowered, HEADER_SIGNATURE),
        event_id=_required(lowered, HEADER_ID),
        source=_required(lowered, HEADER_SOURCE),
        time=_optional(lowered, HEADER_TIME),
        subprotocol=_optional(lowered, HEADER_SUBPROTOCOL),
        states=_optional(lowered, HEADER_CONNECTION_STATE),
        origin=_optional(lowered, WEBHOOK_REQUEST_ORIGIN.lower()),
        content_type=_media_type(lowered.get("content-type", "")),
        body=body,
    )


# -- JSON helpers ------------------------------------------------------------------------------------------------------


def _depth_ok(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _loads_json(raw: bytes, what: str) -> Any:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"The {what} is not UTF-8.") from exc
    except RecursionError as exc:
        raise InvalidEvent(f"The {what} nests deeper than {_MAX_JSON_DEPTH} levels.") from exc
    except ValueError as exc:
        raise InvalidEvent(f"The {what} is not JSON: {exc}.") from exc
    if not _depth_ok(value, _MAX_JSON_DEPTH):
        raise InvalidEvent(f"The {what} nests deeper than {_MAX_JSON_DEPTH} levels.")
    return value


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _string_lists(value: Any, what: str) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"The connect event's {what} is not a JSON object.")
    result: dict[str, list[str]] = {}
    for key, items in value.items():
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise InvalidEvent(f"The connect event's {what}[{key[:40]!r}] is not a list of strings.")
        result[key] = list(items)
    return result


def _string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidEvent(f"{what} is not a list of strings.")
    if len(value) > _MAX_LIST:
        raise InvalidEvent(f"{what} has {len(value)} entries; at most {_MAX_LIST} are accepted.")
    for item in value:
        if not item or len(item) > _MAX_NAME:
            raise InvalidEvent(f"{what} has an empty entry or one longer than {_MAX_NAME} characters.")
    return list(value)


# -- connect -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """The body of the ``connect`` event: what the client's WebSocket request carried."""

    claims: dict[str, list[str]] = field(default_factory=dict)
    """The access token's claims, each as a list of strings (``{"sub": ["alice"], "role": [...]}``)."""
    query: dict[str, list[str]] = field(default_factory=dict)
    """The query parameters of the client's request (the access token is not among them)."""
    headers: dict[str, list[str]] = field(default_factory=dict)
    """The headers of the client's request."""
    subprotocols: list[str] = field(default_factory=list)
    """The WebSocket subprotocols the client offered."""
    client_certificates: list[dict[str, str]] = field(default_factory=list)
    """``{"thumbprint", "content"}`` per client certificate."""


def connect_body(request: ConnectRequest) -> bytes:
    """The JSON body of a ``connect`` event request."""
    return _dumps(
        {
            "claims": request.claims,
            "query": request.query,
            "headers": request.headers,
            "subprotocols": request.subprotocols,
            "clientCertificates": request.client_certificates,
        }
    )


def parse_connect_body(body: bytes) -> ConnectRequest:
    """Read the body of a ``connect`` event. Raises :class:`InvalidEvent` when it is not the JSON object the service
    sends."""
    value = _loads_json(body, "connect event body")
    if not isinstance(value, dict):
        raise InvalidEvent("The connect event body is not a JSON object.")
    certificates = value.get("clientCertificates") or []
    if not isinstance(certificates, list) or not all(
        isinstance(c, dict) and all(isinstance(v, str) for v in c.values()) for c in certificates
    ):
        raise InvalidEvent("The connect event's clientCertificates is not a list of objects of strings.")
    return ConnectRequest(
        claims=_string_lists(value.get("claims"), "claims"),
        query=_string_lists(value.get("query"), "query"),
        headers=_string_lists(value.get("headers"), "headers"),
        subprotocols=_string_list(value.get("subprotocols"), "The connect event's subprotocols"),
        client_certificates=[dict(c) for c in certificates],
    )


@dataclass(frozen=True, slots=True)
class ConnectResponse:
    """A handler's 200 answer to ``connect``: each field None/empty leaves the service's choice (the token's user, no
    groups, the token's roles, no subprotocol)."""

    user_id: str | None = None
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    subprotocol: str | None = None


def encode_connect_response(response: ConnectResponse) -> bytes:
    """The JSON body of a 200 answer to ``connect`` (``{}`` accepts the connection as the token says)."""
    value: dict[str, Any] = {}
    if response.user_id is not None:
        value["userId"] = response.user_id
    if response.groups:
        value["groups"] = list(response.groups)
    if response.roles:
        value["roles"] = list(response.roles)
    if response.subprotocol is not None:
        value["subprotocol"] = response.subprotocol
    return _dumps(value)


def parse_connect_response(body: bytes, requested_subprotocols: Sequence[str] = ()) -> ConnectResponse:
    """Read a 2xx answer to ``connect`` (service side; an empty body, as a 204 has, is an answer without changes).
    Raises :class:`InvalidEvent` for anything but a JSON object with ``userId`` (string), ``groups`` and ``roles``
    (lists of strings) and ``subprotocol`` (one of ``requested_subprotocols``: a WebSocket server must not choose a
    subprotocol the client did not offer). The caller refuses the connection then."""
    if len(body) > MAX_EVENT_BODY:
        raise InvalidEvent(f"The connect answer has {len(body)} bytes; at most {MAX_EVENT_BODY} are accepted.")
    if not body.strip():
        return ConnectResponse()
    value = _loads_json(body, "connect answer")
    if not isinstance(value, dict):
        raise InvalidEvent("The connect answer is not a JSON object.")
    user_id = value.get("userId")
    if user_id is not None and (not isinstance(user_id, str) or len(user_id) > _MAX_NAME):
        raise InvalidEvent(f"The connect answer's userId is not a string of at most {_MAX_NAME} characters.")
    subprotocol = value.get("subprotocol")
    if subprotocol is not None:
        if not isinstance(subprotocol, str):
            raise InvalidEvent("The connect answer's subprotocol is not a string.")
        if subprotocol == "":
            # The docs' own example answers "subprotocol": "" for "none".
            subprotocol = None
        elif subprotocol not in requested_subprotocols:
            raise InvalidEvent(
                f"The connect answer chose the subprotocol {subprotocol[:80]!r}, which the client did not offer."
            )
    return ConnectResponse(
        user_id=user_id or None,
        groups=tuple(_string_list(value.get("groups"), "The connect answer's groups")),
        roles=tuple(_string_list(value.get("roles"), "The connect answer's roles")),
        subprotocol=subprotocol,
    )


# -- disconnected ------------------------------------------------------------------------------------------------------


def disconnected_body(reason: str | None) -> bytes:
    """The JSON body of a ``disconnected`` event: ``{"reason": ...}`` (``{}`` without a reason)."""
    return _dumps({} if reason is None else {"reason": reason})


def parse_disconnected_body(body: bytes) -> str | None:
    """The ``reason`` of a ``disconnected`` event (None when absent; an empty body counts as ``{}``). Raises
    :class:`InvalidEvent` when the body is not a JSON object or the reason not a string."""
    if not body.strip():
        return None
    value = _loads_json(body, "disconnected event body")
    if not isinstance(value, dict):
        raise InvalidEvent("The disconnected event body is not a JSON object.")
    reason = value.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidEvent("The disconnected event's reason is not a string.")
    return reason


# -- user events -------------------------------------------------------------------------------------------------------

_CONTENT_TYPES: dict[str, UserDataType] = {
    CONTENT_TYPE_JSON: "json",
    CONTENT_TYPE_TEXT: "text",
    CONTENT_TYPE_BINARY: "binary",
}
_SEND_CONTENT_TYPES: dict[str, str] = {
    "json": CONTENT_TYPE_JSON + "; charset=utf-8",
    "text": CONTENT_TYPE_TEXT + "; charset=utf-8",
    "binary": CONTENT_TYPE_BINARY,
}


def data_type_for_content_type(content_type: str) -> UserDataType:
    """The data type a Content-Type stands for (``application/json`` → json, ``text/plain`` → text,
    ``application/octet-stream`` → binary; parameters ignored). Raises :class:`InvalidEvent` for any other."""
    media_type = _media_type(content_type)
    data_type = _CONTENT_TYPES.get(media_type)
    if data_type is None:
        raise InvalidEvent(
            f"Content-Type {media_type[:80]!r} is not one of {CONTENT_TYPE_JSON}, {CONTENT_TYPE_TEXT}, "
            f"{CONTENT_TYPE_BINARY}."
        )
    return data_type


def encode_user_data(data_type: str, data: UserData) -> tuple[str, bytes]:
    """The Content-Type and body for user data (a user event's request or the handler's 200 answer to it):
    json → any JSON value, text → ``str``, binary → ``bytes``. ``data_type`` may be the subprotocol's ``DataType``.
    Raises :class:`ValueError` when the data does not fit its type."""
    kind = str(getattr(data_type, "value", data_type))
    if kind == "json":
        try:
            return _SEND_CONTENT_TYPES[kind], _dumps(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"json data is not a JSON value: {exc}") from exc
    if kind == "text":
        if not isinstance(data, str):
            raise ValueError("text data must be a str.")
        return _SEND_CONTENT_TYPES[kind], data.encode("utf-8")
    if kind == "binary":
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError("binary data must be bytes.")
        return _SEND_CONTENT_TYPES[kind], bytes(data)
    raise ValueError(f"Unknown data type {kind!r}: json, text or binary.")


def decode_user_data(content_type: str, body: bytes) -> tuple[UserDataType, UserData]:
    """The data type and data of a user event's body (or of an answer's): json → the JSON value, text → ``str``,
    binary → ``bytes``. Raises :class:`InvalidEvent` for another Content-Type, bad JSON or text that is not UTF-8."""
    data_type = data_type_for_content_type(content_type)
    if data_type == "json":
        return data_type, _loads_json(body, "event's JSON data")
    if data_type == "text":
        try:
            return data_type, body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent("The event's text data is not UTF-8.") from exc
    return data_type, body


def parse_user_event_response(status: int, content_type: str, body: bytes) -> tuple[UserDataType, UserData] | None:
    """What a handler's 2xx answer to a user event sends back to the caller (service side): None for a 204 or an
    empty body, else the data type and data that go to the caller as a server message, typed by the answer's
    Content-Type (a missing one is binary). Raises :class:`InvalidEvent` for a non-2xx status (the caller's request
    failed), an oversized body or data that does not parse."""
    if not 200 <= status < 300:
        raise InvalidEvent(f"The event handler answered {status}.")
    if status == 204 or not body:
        return None
    if len(body) > MAX_EVENT_BODY:
        raise InvalidEvent(f"The event handler's answer has {len(body)} bytes; at most {MAX_EVENT_BODY} are accepted.")
    return decode_user_data(content_type or CONTENT_TYPE_BINARY, body)


# -- abuse protection --------------------------------------------------------------------------------------------------


def abuse_protection_headers(
    request_headers: Mapping[str, str], allowed_origins: Sequence[str] | None = None
) -> dict[str, str] | None:
    """Handler side: the headers of a 200 answer to the abuse-protection ``OPTIONS``, or None when the request has no
    ``WebHook-Request-Origin`` (answer 400) or an origin not in ``allowed_origins`` (answer 400 too; None allows
    every origin and answers ``*``)."""
    origin = _lower_headers(request_headers).get(WEBHOOK_REQUEST_ORIGIN.lower(), "").strip()
    if not origin:
        return None
    if allowed_origins is None:
        return {WEBHOOK_ALLOWED_ORIGIN: "*"}
    if origin.lower() in (o.lower() for o in allowed_origins):
        return {WEBHOOK_ALLOWED_ORIGIN: origin}
    return None


def abuse_protection_allows(status: int, response_headers: Mapping[str, str], origin: str) -> bool:
    """Service side: whether the handler's answer to ``OPTIONS`` with ``WebHook-Request-Origin: origin`` allows
    delivery: a 2xx answer whose ``WebHook-Allowed-Origin`` is ``*`` or lists ``origin``."""
    if not 200 <= status < 300:
        return False
    allowed = _lower_headers(response_headers).get(WEBHOOK_ALLOWED_ORIGIN.lower(), "")
    entries = {entry.strip().lower() for entry in allowed.split(",")}
    return "*" in entries or origin.lower() in entries
