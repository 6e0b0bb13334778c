"""The Azure SignalR *service protocol*, sans-I/O: what an app server and the service say over a server connection.

In Default mode the app server opens WebSocket *server connections* to ``{endpoint}/server/?hub=…`` and every client
of the hub is carried over them (``docs/default-mode.md``). Each service message is one MessagePack array
``[type, …]`` behind a VarInt length prefix (the MessagePack hub protocol's framing, ``docs/protocol.md`` §4.1), and a
WebSocket message may hold several service messages or a part of one, so the socket is a byte stream: feed it to a
:class:`ServiceMessageReader` and send what :func:`encode` returns.

Layouts are those of the SDK's writer and reader (``src/Microsoft.Azure.SignalR.Protocols/ServiceProtocol.cs`` in
https://github.com/Azure/azure-signalr): readers accept the shortest layout any SDK or service wrote and ignore
trailing elements they do not know; unknown message types are skipped ("old clients can ignore them"); the writer
produces the newest layout. Integers are written in their smallest MessagePack form, except the two ``int32`` fields of
:class:`ConnectionFlowControl`, which the SDK always writes as ``d2 xx xx xx xx``.

Most messages end with an *extension-members* map with small integer keys (:class:`Ext`): tracing id, TTL, the hub
protocol of a client, an OData filter, the kind of data message and a partial flag.
"""

# Every message field is declared with `_kind(...)`, a `dataclasses.field` that records the field's wire kind.
# ruff: noqa: RUF009

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import IntEnum
from typing import Any, ClassVar

import msgpack

from .messagepack_protocol import LengthPrefixedReader, frame
from .messages import ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "AccessKeyRequest",
    "AccessKeyResponse",
    "Ack",
    "AckStatus",
    "BroadcastData",
    "CheckConnectionExistenceWithAck",
    "CheckGroupExistenceWithAck",
    "CheckUserExistenceWithAck",
    "CheckUserInGroupWithAck",
    "ClientCompletion",
    "ClientInvocation",
    "CloseConnection",
    "CloseConnectionWithAck",
    "CloseConnectionsWithAck",
    "CloseGroupConnectionsWithAck",
    "CloseUserConnectionsWithAck",
    "ConnectionData",
    "ConnectionFlowControl",
    "ConnectionReconnect",
    "DataMessageType",
    "ErrorCompletion",
    "Ext",
    "GroupBroadcastData",
    "GroupMemberQuery",
    "HandshakeRequest",
    "HandshakeResponse",
    "JoinGroup",
    "JoinGroupWithAck",
    "LeaveGroup",
    "LeaveGroupWithAck",
    "MessageType",
    "MultiConnectionData",
    "MultiGroupBroadcastData",
    "MultiUserData",
    "OpenConnection",
    "Ping",
    "ServiceError",
    "ServiceEvent",
    "ServiceMapping",
    "ServiceMessage",
    "ServiceMessageReader",
    "UserData",
    "UserJoinGroup",
    "UserJoinGroupWithAck",
    "UserLeaveGroup",
    "UserLeaveGroupWithAck",
    "decode",
    "encode",
    "encode_many",
    "frame",
]

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024


class MessageType(IntEnum):
    """The service protocol's message types (``ServiceProtocolConstants.cs``)."""

    HANDSHAKE_REQUEST = 1
    HANDSHAKE_RESPONSE = 2
    PING = 3
    OPEN_CONNECTION = 4
    CLOSE_CONNECTION = 5
    CONNECTION_DATA = 6
    MULTI_CONNECTION_DATA = 7
    USER_DATA = 8
    MULTI_USER_DATA = 9
    BROADCAST_DATA = 10
    JOIN_GROUP = 11
    LEAVE_GROUP = 12
    GROUP_BROADCAST_DATA = 13
    MULTI_GROUP_BROADCAST_DATA = 14
    SERVICE_ERROR = 15
    USER_JOIN_GROUP = 16
    USER_LEAVE_GROUP = 17
    JOIN_GROUP_WITH_ACK = 18
    LEAVE_GROUP_WITH_ACK = 19
    ACK = 20
    CHECK_USER_IN_GROUP_WITH_ACK = 21
    SERVICE_EVENT = 22
    CHECK_GROUP_EXISTENCE_WITH_ACK = 23
    CHECK_CONNECTION_EXISTENCE_WITH_ACK = 24
    CHECK_USER_EXISTENCE_WITH_ACK = 25
    USER_JOIN_GROUP_WITH_ACK = 26
    USER_LEAVE_GROUP_WITH_ACK = 27
    ACCESS_KEY_REQUEST = 28
    ACCESS_KEY_RESPONSE = 29
    CLOSE_CONNECTION_WITH_ACK = 30
    CLOSE_CONNECTIONS_WITH_ACK = 31
    CLOSE_USER_CONNECTIONS_WITH_ACK = 32
    CLOSE_GROUP_CONNECTIONS_WITH_ACK = 33
    CLIENT_INVOCATION = 34
    CLIENT_COMPLETION = 35
    ERROR_COMPLETION = 36
    SERVICE_MAPPING = 37
    CONNECTION_RECONNECT = 38
    CONNECTION_FLOW_CONTROL = 39
    GROUP_MEMBER_QUERY = 40


class Ext(IntEnum):
    """Keys of the extension-members map (``ServiceMessage.cs``)."""

    TRACING_ID = 1  # uint64
    TTL = 2  # int32, seconds (UserJoinGroup*)
    PROTOCOL = 3  # str: the client's hub protocol, "json" or "messagepack"
    FILTER = 4  # str: an OData filter
    DATA_MESSAGE_TYPE = 5  # int: DataMessageType
    IS_PARTIAL = 6  # bool


class DataMessageType(IntEnum):
    """What a ConnectionData carries (``enums.cs``)."""

    UNKNOWN = 0
    HANDSHAKE = 1
    INVOCATION = 2
    OTHER = 3


class AckStatus(IntEnum):
    """``Ack.status`` (``AckStatus.cs``): NotFound means "no such connection, user or group"."""

    OK = 1
    NOT_FOUND = 2
    TIMEOUT = 3
    INTERNAL_SERVER_ERROR = 4


# --- field kinds -----------------------------------------------------------------------------------------------------
# Each dataclass field of a message names its wire kind in its metadata; the generic reader and writer below apply it.
# Maps are read as lists of pairs (``object_pairs_hook``) so that a claims map may repeat a claim type, as the SDK
# writes one entry per Claim.


@dataclass(frozen=True)
class _Int32:
    value: int


@dataclass(frozen=True)
class _MapPairs:
    pairs: tuple[tuple[Any, Any], ...]


def _kind(kind: str, **kwargs: Any) -> Any:
    return field(metadata={"kind": kind}, **kwargs)


def _fail(what: str, expected: str) -> ProtocolError:
    return ProtocolError(f"{what} must be {expected}")


def _pairs(value: Any, what: str) -> list[tuple[Any, Any]]:
    if not isinstance(value, list) or not all(isinstance(p, tuple) and len(p) == 2 for p in value):
        raise _fail(what, "a map")
    return value


def _read_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(what, "a string")
    return value


def _read_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(what, "an integer")
    return value


def _read_strs(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(what, "an array of strings")
    return tuple(value)


def _read_ext(value: Any, what: str) -> dict[int, Any]:
    ext: dict[int, Any] = {}
    for key, item in _pairs(value, what):
        if not isinstance(key, int) or isinstance(key, bool):
            raise _fail(f"{what} key", "an integer")
        if key == Ext.TRACING_ID and (_read_int(item, f"{what} tracing id") < 0):
            raise _fail(f"{what} tracing id", "an unsigned integer")
        elif key in (Ext.TTL, Ext.DATA_MESSAGE_TYPE):
            _read_int(item, f"{what} key {key}")
        elif key in (Ext.PROTOCOL, Ext.FILTER):
            _read_str(item, f"{what} key {key}")
        elif key == Ext.IS_PARTIAL and not isinstance(item, bool):
            raise _fail(f"{what} partial flag", "a boolean")
        ext[key] = item  # unknown keys are kept as read and ignored (the SDK skips them)
    return ext


def _read(kind: str, value: Any, what: str) -> Any:
    """Convert the wire ``value`` of one field to its Python form; raises :class:`ProtocolError`."""
    match kind:
        case "str":
            return _read_str(value, what)
        case "text":  # a string the SDK may write as nil for ""
            return "" if value is None else _read_str(value, what)
        case "opt_str":
            return None if value is None else _read_str(value, what)
        case "int" | "int32":
            number = _read_int(value, what)
            if kind == "int32" and not -(2**31) <= number < 2**31:
                raise _fail(what, "a 32-bit integer")
            return number
        case "bool":
            if not isinstance(value, bool):
                raise _fail(what, "a boolean")
            return value
        case "bin":
            if not isinstance(value, bytes):
                raise _fail(what, "binary")
            return value
        case "opt_bin":
            if value is not None and not isinstance(value, bytes):
                raise _fail(what, "binary or nil")
            return value
        case "strs":
            return _read_strs(value, what)
        case "payloads":
            payloads: dict[str, bytes] = {}
            for key, item in _pairs(value, what) if value is not None else []:
                if not isinstance(key, str) or not isinstance(item, bytes):
                    raise _fail(what, "a map of protocol name to binary")
                payloads[key] = item
            return payloads
        case "claims":
            claims: list[tuple[str, str]] = []
            for key, item in _pairs(value, what) if value is not None else []:
                if not isinstance(key, str) or not isinstance(item, str):
                    raise _fail(what, "a map of string to string")
                claims.append((key, item))
            return tuple(claims)
        case "headers":
            headers: dict[str, tuple[str, ...]] = {}
            for key, item in _pairs(value, what) if value is not None else []:
                if not isinstance(key, str):
                    raise _fail(what, "a map of string to string array")
                headers[key] = headers.get(key, ()) + _read_strs(item, what)
            return headers
        case "ext":
            return _read_ext(value, what) if value is not None else {}
    raise AssertionError(kind)  # pragma: no cover - a typo in a field declaration


def _write(kind: str, value: Any) -> Any:
    """The wire form of one field (plain objects for msgpack, or a marker the writer packs specially)."""
    match kind:
        case "int32":
            return _Int32(value)
        case "claims":
            return _MapPairs(tuple(value))
        case "headers":
            return {key: list(items) for key, items in value.items()}
        case "strs":
            return list(value)
        case "payloads" | "ext":
            return dict(value)
    return value


# --- messages --------------------------------------------------------------------------------------------------------


class ServiceMessage:
    """Base of every service message: a frozen dataclass whose fields are its array items after the type, in order."""

    TYPE: ClassVar[MessageType]
    # How many items after the type a reader needs; None: one per field without a default.
    MIN_ITEMS: ClassVar[int | None] = None

    def wire_items(self) -> list[Any]:
        """The items after the type, as written."""
        return [_write(f.metadata["kind"], getattr(self, f.name)) for f in fields(self)]  # type: ignore[arg-type]

    @classmethod
    def from_wire(cls, items: list[Any]) -> ServiceMessage:
        """Build the message from the array items after the type; missing optional items take their defaults."""
        declared = fields(cls)  # type: ignore[arg-type]
        required = cls.MIN_ITEMS
        if required is None:
            required = sum(1 for f in declared if f.default is MISSING and f.default_factory is MISSING)
        if len(items) < required:
            raise ProtocolError(f"{cls.__name__} needs at least {required + 1} items, got {len(items) + 1}")
        values = {
            f.name: _read(f.metadata["kind"], item, f"{cls.__name__}.{f.name}")
            for f, item in zip(declared, items, strict=False)
        }
        return cls(**values)


class _Extensible:
    """Accessors for the extension-members map ``ext`` of the messages that carry one."""

    ext: dict[int, Any]

    @property
    def tracing_id(self) -> int | None:
        value = self.ext.get(Ext.TRACING_ID)
        return value if isinstance(value, int) else None

    @property
    def protocol(self) -> str | None:
        value = self.ext.get(Ext.PROTOCOL)
        return value if isinstance(value, str) else None

    @property
    def data_message_type(self) -> DataMessageType:
        value = self.ext.get(Ext.DATA_MESSAGE_TYPE)
        try:
            return DataMessageType(value) if isinstance(value, int) else DataMessageType.UNKNOWN
        except ValueError:
            return DataMessageType.UNKNOWN

    @property
    def is_partial(self) -> bool:
        return self.ext.get(Ext.IS_PARTIAL) is True


def _ext() -> Any:
    return _kind("ext", default_factory=dict)


@dataclass(frozen=True)
class HandshakeRequest(ServiceMessage, _Extensible):
    """Type 1, server → service, first on a new server connection. ``connection_type`` 0 Default, 1 OnDemand, 2 Weak;
    ``migration_level`` 1 when clients may migrate on shutdown."""

    TYPE = MessageType.HANDSHAKE_REQUEST
    version: int = _kind("int", default=1)
    connection_type: int = _kind("int", default=0)
    target: str = _kind("text", default="")
    migration_level: int = _kind("int", default=0)
    ext: dict[int, Any] = _ext()
    allow_stateful_reconnects: bool = _kind("bool", default=False)

    MIN_ITEMS = 1

    @classmethod
    def from_wire(cls, items: list[Any]) -> ServiceMessage:
        # Connection type and target come as a pair: a 3-item array carries only the version.
        return super().from_wire(items if len(items) >= 3 else items[:1])


@dataclass(frozen=True)
class HandshakeResponse(ServiceMessage, _Extensible):
    """Type 2, service → server: ``error`` empty on success; ``connection_id`` names the server connection."""

    TYPE = MessageType.HANDSHAKE_RESPONSE
    error: str = _kind("text", default="")
    ext: dict[int, Any] = _ext()
    connection_id: str | None = _kind("opt_str", default=None)

    MIN_ITEMS = 1


@dataclass(frozen=True)
class Ping(ServiceMessage):
    """Type 3, both ways: ``[3]`` keeps the connection alive; ``[3, key, value, …]`` carries named signals."""

    TYPE = MessageType.PING
    messages: tuple[str, ...] = ()

    def wire_items(self) -> list[Any]:
        return list(self.messages)

    @classmethod
    def from_wire(cls, items: list[Any]) -> ServiceMessage:
        return cls(_read_strs(items, "Ping.messages"))

    def get(self, key: str) -> str | None:
        """The value after ``key`` in the key/value pairs, or None."""
        values = dict(zip(self.messages[0::2], self.messages[1::2], strict=False))
        return values.get(key)


@dataclass(frozen=True)
class OpenConnection(ServiceMessage, _Extensible):
    """Type 4, service → server: a client connected. ``claims`` as (type, value) pairs from its token, ``headers`` of
    its request, ``query_string`` with its leading ``?``; ext 3 names its hub protocol."""

    TYPE = MessageType.OPEN_CONNECTION
    connection_id: str = _kind("str")
    claims: tuple[tuple[str, str], ...] = _kind("claims", default=())
    headers: dict[str, tuple[str, ...]] = _kind("headers", default_factory=dict)
    query_string: str = _kind("text", default="")
    ext: dict[int, Any] = _ext()

    MIN_ITEMS = 2

    @classmethod
    def from_wire(cls, items: list[Any]) -> ServiceMessage:
        # Headers and query string come as a pair (newer than the first layout): a 4-item array has neither.
        return super().from_wire(items if len(items) >= 4 else items[:2])


@dataclass(frozen=True)
class CloseConnection(ServiceMessage, _Extensible):
    """Type 5, both ways: the client left (service → server) or must be closed (server → service)."""

    TYPE = MessageType.CLOSE_CONNECTION
    connection_id: str = _kind("str")
    error: str = _kind("text", default="")
    headers: dict[str, tuple[str, ...]] = _kind("headers", default_factory=dict)
    ext: dict[int, Any] = _ext()

    MIN_ITEMS = 2


@dataclass(frozen=True)
class ConnectionData(ServiceMessage, _Extensible):
    """Type 6, both ways: raw transport bytes of one client (its hub handshake and records, or what it receives)."""

    TYPE = MessageType.CONNECTION_DATA
    connection_id: str = _kind("str")
    payload: bytes = _kind("bin")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class MultiConnectionData(ServiceMessage, _Extensible):
    """Type 7, server → service: one message, serialised per hub protocol, to these connections."""

    TYPE = MessageType.MULTI_CONNECTION_DATA
    connection_ids: tuple[str, ...] = _kind("strs")
    payloads: dict[str, bytes] = _kind("payloads")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class UserData(ServiceMessage, _Extensible):
    """Type 8, server → service: to every connection of one user."""

    TYPE = MessageType.USER_DATA
    user_id: str = _kind("str")
    payloads: dict[str, bytes] = _kind("payloads")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class MultiUserData(ServiceMessage, _Extensible):
    """Type 9, server → service: to every connection of these users."""

    TYPE = MessageType.MULTI_USER_DATA
    user_ids: tuple[str, ...] = _kind("strs")
    payloads: dict[str, bytes] = _kind("payloads")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class BroadcastData(ServiceMessage, _Extensible):
    """Type 10, server → service: to every connection of the hub except ``excluded``."""

    TYPE = MessageType.BROADCAST_DATA
    excluded: tuple[str, ...] = _kind("strs")
    payloads: dict[str, bytes] = _kind("payloads")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class JoinGroup(ServiceMessage, _Extensible):
    """Type 11, server → service (no answer)."""

    TYPE = MessageType.JOIN_GROUP
    connection_id: str = _kind("str")
    group: str = _kind("str")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class LeaveGroup(ServiceMessage, _Extensible):
    """Type 12, server → service (no answer)."""

    TYPE = MessageType.LEAVE_GROUP
    connection_id: str = _kind("str")
    group: str = _kind("str")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class GroupBroadcastData(ServiceMessage, _Extensible):
    """Type 13, server → service: to a group, except ``excluded`` connections and ``excluded_users``."""

    TYPE = MessageType.GROUP_BROADCAST_DATA
    group: str = _kind("str")
    excluded: tuple[str, ...] = _kind("strs")
    payloads: dict[str, bytes] = _kind("payloads")
    ext: dict[int, Any] = _ext()
    excluded_users: tuple[str, ...] = _kind("strs", default=())
    caller_user_id: str | None = _kind("opt_str", default=None)


@dataclass(frozen=True)
class MultiGroupBroadcastData(ServiceMessage, _Extensible):
    """Type 14, server → service: to several groups."""

    TYPE = MessageType.MULTI_GROUP_BROADCAST_DATA
    groups: tuple[str, ...] = _kind("strs")
    payloads: dict[str, bytes] = _kind("payloads")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class ServiceError(ServiceMessage):
    """Type 15, service → server: a non-empty ``error`` means the connection is unusable (the SDK stops writing)."""

    TYPE = MessageType.SERVICE_ERROR
    error: str = _kind("text")


@dataclass(frozen=True)
class UserJoinGroup(ServiceMessage, _Extensible):
    """Type 16, server → service: add a user (all its connections, now and later) to a group; ext 2 = TTL seconds."""

    TYPE = MessageType.USER_JOIN_GROUP
    user_id: str = _kind("str")
    group: str = _kind("str")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class UserLeaveGroup(ServiceMessage, _Extensible):
    """Type 17, server → service."""

    TYPE = MessageType.USER_LEAVE_GROUP
    user_id: str = _kind("str")
    group: str = _kind("str")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class JoinGroupWithAck(ServiceMessage, _Extensible):
    """Type 18, server → service, answered by an :class:`Ack` with the same ``ack_id``."""

    TYPE = MessageType.JOIN_GROUP_WITH_ACK
    connection_id: str = _kind("str")
    group: str = _kind("str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class LeaveGroupWithAck(ServiceMessage, _Extensible):
    """Type 19, server → service, answered by an :class:`Ack`."""

    TYPE = MessageType.LEAVE_GROUP_WITH_ACK
    connection_id: str = _kind("str")
    group: str = _kind("str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class Ack(ServiceMessage, _Extensible):
    """Type 20, service → server: the outcome of a ``*WithAck`` request (:class:`AckStatus`)."""

    TYPE = MessageType.ACK
    ack_id: int = _kind("int")
    status: int = _kind("int")
    message: str = _kind("text", default="")
    ext: dict[int, Any] = _ext()
    payload: bytes | None = _kind("opt_bin", default=None)

    MIN_ITEMS = 3

    def wire_items(self) -> list[Any]:
        # The payload item is newer than the rest: written only when there is one, so an Ack without a payload keeps
        # the 5-item layout every SDK version reads.
        items = super().wire_items()
        return items if self.payload is not None else items[:-1]


@dataclass(frozen=True)
class CheckUserInGroupWithAck(ServiceMessage, _Extensible):
    """Type 21, server → service."""

    TYPE = MessageType.CHECK_USER_IN_GROUP_WITH_ACK
    user_id: str = _kind("str")
    group: str = _kind("str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class ServiceEvent(ServiceMessage, _Extensible):
    """Type 22, service → server: a warning about an object (0 instance, 1 connection, 2 user, 3 group, 4 server
    connection) of some kind (0 reloading, 1 invalid, 2 not existed, 3 buffer full)."""

    TYPE = MessageType.SERVICE_EVENT
    object_type: int = _kind("int")
    id: str = _kind("text")
    kind: int = _kind("int")
    message: str = _kind("text")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class CheckGroupExistenceWithAck(ServiceMessage, _Extensible):
    """Type 23, server → service."""

    TYPE = MessageType.CHECK_GROUP_EXISTENCE_WITH_ACK
    group: str = _kind("str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class CheckConnectionExistenceWithAck(ServiceMessage, _Extensible):
    """Type 24, server → service."""

    TYPE = MessageType.CHECK_CONNECTION_EXISTENCE_WITH_ACK
    connection_id: str = _kind("str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class CheckUserExistenceWithAck(ServiceMessage, _Extensible):
    """Type 25, server → service."""

    TYPE = MessageType.CHECK_USER_EXISTENCE_WITH_ACK
    user_id: str = _kind("str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class UserJoinGroupWithAck(ServiceMessage, _Extensible):
    """Type 26, server → service."""

    TYPE = MessageType.USER_JOIN_GROUP_WITH_ACK
    user_id: str = _kind("str")
    group: str = _kind("str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class UserLeaveGroupWithAck(ServiceMessage, _Extensible):
    """Type 27, server → service."""

    TYPE = MessageType.USER_LEAVE_GROUP_WITH_ACK
    user_id: str = _kind("str")
    group: str = _kind("str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class AccessKeyRequest(ServiceMessage, _Extensible):
    """Type 28, server → service (Entra ID auth only): trade an Entra ID token for a signing key."""

    TYPE = MessageType.ACCESS_KEY_REQUEST
    token: str = _kind("text")
    kid: str | None = _kind("opt_str", default=None)
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class AccessKeyResponse(ServiceMessage, _Extensible):
    """Type 29, service → server."""

    TYPE = MessageType.ACCESS_KEY_RESPONSE
    kid: str | None = _kind("opt_str", default=None)
    access_key: str | None = _kind("opt_str", default=None, repr=False)
    error_type: str | None = _kind("opt_str", default=None)
    error_message: str | None = _kind("opt_str", default=None)
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class CloseConnectionWithAck(ServiceMessage, _Extensible):
    """Type 30 (obsolete in the SDK), server → service."""

    TYPE = MessageType.CLOSE_CONNECTION_WITH_ACK
    connection_id: str = _kind("str")
    reason: str | None = _kind("opt_str")
    ack_id: int = _kind("int")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class CloseConnectionsWithAck(ServiceMessage, _Extensible):
    """Type 31 (obsolete in the SDK), server → service: close every connection of the hub but ``excluded``."""

    TYPE = MessageType.CLOSE_CONNECTIONS_WITH_ACK
    reason: str | None = _kind("opt_str")
    ack_id: int = _kind("int")
    excluded: tuple[str, ...] = _kind("strs", default=())
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class CloseUserConnectionsWithAck(ServiceMessage, _Extensible):
    """Type 32, server → service."""

    TYPE = MessageType.CLOSE_USER_CONNECTIONS_WITH_ACK
    user_id: str = _kind("str")
    reason: str | None = _kind("opt_str")
    ack_id: int = _kind("int")
    excluded: tuple[str, ...] = _kind("strs", default=())
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class CloseGroupConnectionsWithAck(ServiceMessage, _Extensible):
    """Type 33, server → service."""

    TYPE = MessageType.CLOSE_GROUP_CONNECTIONS_WITH_ACK
    group: str = _kind("str")
    reason: str | None = _kind("opt_str")
    ack_id: int = _kind("int")
    excluded: tuple[str, ...] = _kind("strs", default=())
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class ClientInvocation(ServiceMessage, _Extensible):
    """Type 34, server → service: a server-to-client invocation that expects a result (client results)."""

    TYPE = MessageType.CLIENT_INVOCATION
    invocation_id: str = _kind("str")
    connection_id: str = _kind("str")
    caller_server_id: str = _kind("str")
    payloads: dict[str, bytes] = _kind("payloads")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class ClientCompletion(ServiceMessage, _Extensible):
    """Type 35, both ways: a client's result, in its ``protocol``."""

    TYPE = MessageType.CLIENT_COMPLETION
    invocation_id: str = _kind("str")
    connection_id: str = _kind("str")
    caller_server_id: str = _kind("str")
    protocol_name: str = _kind("str")
    payload: bytes = _kind("bin")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class ErrorCompletion(ServiceMessage, _Extensible):
    """Type 36, both ways: a client invocation failed."""

    TYPE = MessageType.ERROR_COMPLETION
    invocation_id: str = _kind("str")
    connection_id: str = _kind("str")
    caller_server_id: str = _kind("str")
    error: str = _kind("text")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class ServiceMapping(ServiceMessage, _Extensible):
    """Type 37, service → server: which service instance carries a client invocation."""

    TYPE = MessageType.SERVICE_MAPPING
    invocation_id: str = _kind("str")
    connection_id: str = _kind("str")
    instance_id: str = _kind("str")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class ConnectionReconnect(ServiceMessage, _Extensible):
    """Type 38, service → server: a client resumed with stateful reconnect."""

    TYPE = MessageType.CONNECTION_RECONNECT
    connection_id: str = _kind("str")
    ext: dict[int, Any] = _ext()


@dataclass(frozen=True)
class ConnectionFlowControl(ServiceMessage, _Extensible):
    """Type 39, both ways: pause/resume a connection. ``connection_type`` 1 client, 2 server; ``operation`` 1 Pause,
    2 PauseAck, 3 Resume, 4 Offline. Both are written as MessagePack int32 whatever their value."""

    TYPE = MessageType.CONNECTION_FLOW_CONTROL
    connection_id: str = _kind("str")
    connection_type: int = _kind("int32")
    operation: int = _kind("int32")
    ext: dict[int, Any] = _ext()

    @classmethod
    def from_wire(cls, items: list[Any]) -> ServiceMessage:
        message = super().from_wire(items)
        assert isinstance(message, ConnectionFlowControl)
        if message.connection_type not in (1, 2):
            raise ProtocolError(f"ConnectionFlowControl.connection_type {message.connection_type} is not 1 or 2")
        if message.operation not in (1, 2, 3, 4):
            raise ProtocolError(f"ConnectionFlowControl.operation {message.operation} is not 1..4")
        return message


@dataclass(frozen=True)
class GroupMemberQuery(ServiceMessage, _Extensible):
    """Type 40, server → service: list a group's members, a page at a time (note: ``ext`` comes first)."""

    TYPE = MessageType.GROUP_MEMBER_QUERY
    ext: dict[int, Any] = _ext()
    group: str = _kind("str", default="")
    ack_id: int = _kind("int", default=0)
    max: int = _kind("int", default=0)
    continuation_token: str | None = _kind("opt_str", default=None)


_CLASSES: dict[int, type[ServiceMessage]] = {
    cls.TYPE: cls
    for cls in (
        HandshakeRequest,
        HandshakeResponse,
        Ping,
        OpenConnection,
        CloseConnection,
        ConnectionData,
        MultiConnectionData,
        UserData,
        MultiUserData,
        BroadcastData,
        JoinGroup,
        LeaveGroup,
        GroupBroadcastData,
        MultiGroupBroadcastData,
        ServiceError,
        UserJoinGroup,
        UserLeaveGroup,
        JoinGroupWithAck,
        LeaveGroupWithAck,
        Ack,
        CheckUserInGroupWithAck,
        ServiceEvent,
        CheckGroupExistenceWithAck,
        CheckConnectionExistenceWithAck,
        CheckUserExistenceWithAck,
        UserJoinGroupWithAck,
        UserLeaveGroupWithAck,
        AccessKeyRequest,
        AccessKeyResponse,
        CloseConnectionWithAck,
        CloseConnectionsWithAck,
        CloseUserConnectionsWithAck,
        CloseGroupConnectionsWithAck,
        ClientInvocation,
        ClientCompletion,
        ErrorCompletion,
        ServiceMapping,
        ConnectionReconnect,
        ConnectionFlowControl,
        GroupMemberQuery,
    )
}


# --- encoding --------------------------------------------------------------------------------------------------------

_packer = msgpack.Packer(use_bin_type=True, autoreset=True)


def _pack(item: Any) -> bytes:
    if isinstance(item, _Int32):
        return b"\xd2" + struct.pack(">i", item.value)
    if isinstance(item, _MapPairs):
        packed: bytes = _packer.pack_map_pairs(list(item.pairs))
    else:
        packed = _packer.pack(item)
    return packed


def payload_bytes(message: ServiceMessage) -> bytes:
    """The MessagePack array of ``message``, without its length prefix."""
    items = message.wire_items()
    parts = [_packer.pack_array_header(len(items) + 1), _packer.pack(int(message.TYPE))]
    parts.extend(_pack(item) for item in items)
    return b"".join(parts)


def encode(message: ServiceMessage) -> bytes:
    """One framed service message, ready for the socket."""
    return frame(payload_bytes(message))


def encode_many(messages: list[ServiceMessage]) -> bytes:
    """Several framed messages in one buffer (one WebSocket message may carry them all)."""
    return b"".join(encode(message) for message in messages)


# --- decoding --------------------------------------------------------------------------------------------------------


def decode(payload: bytes) -> ServiceMessage | None:
    """The message in one unframed ``payload``; ``None`` for a message type this module does not know.

    Raises :class:`~signalr.messages.ProtocolError` for anything that is not a valid service message.
    """
    try:
        items = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=False, object_pairs_hook=list)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"not a MessagePack value: {type(exc).__name__}") from None
    if not isinstance(items, list) or not items:
        raise ProtocolError("a service message must be a non-empty MessagePack array")
    message_type = items[0]
    if not isinstance(message_type, int) or isinstance(message_type, bool):
        raise ProtocolError("a service message must start with its integer type")
    cls = _CLASSES.get(message_type)
    if cls is None:
        return None  # "Future protocol changes can add message types, old clients can ignore them."
    return cls.from_wire(items[1:])


class ServiceMessageReader:
    """Splits a server connection's byte stream into service messages.

    Feed every received chunk to :meth:`feed`; it returns the complete messages (unknown types left out) and keeps a
    partial one for the next call. A length prefix over ``max_frame_size`` raises
    :class:`~signalr.messages.MessageTooLarge` at once, before any of that frame is buffered.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._frames = LengthPrefixedReader(max_frame_size)

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete message."""
        return self._frames.pending

    def feed(self, data: bytes) -> list[ServiceMessage]:
        return [message for payload in self._frames.feed(data) if (message := decode(payload)) is not None]


def ext_of(message: ServiceMessage) -> Mapping[int, Any]:
    """The extension members of ``message`` (empty for the types that have none)."""
    return message.ext if isinstance(message, _Extensible) else {}
