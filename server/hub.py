"""The Chat hub ("Chatroom" sample's ``ChatSampleHub``) for serverless mode, as pure dispatch.

In serverless mode a client invocation reaches the app server as an upstream ``messages`` request whose body is the
client's record without its ``0x1E`` (``docs/protocol.md`` §6.3). :meth:`ChatHub.dispatch` turns that body into a
:class:`HubCall`: the REST sends to perform and what to answer. It does no I/O; the upstream handler performs the
sends and writes :meth:`HubCall.response_body` as the upstream response, which the service writes raw to the caller
(trap 16). Method names match case-insensitively (trap 9); errors are ASP.NET's texts (§4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from signalr.protocol import (
    RECORD_SEPARATOR,
    Completion,
    Invocation,
    ProtocolError,
    StreamInvocation,
    decode,
    encode,
)

__all__ = [
    "Caller",
    "ChatHub",
    "HubCall",
    "InvalidMessage",
    "RestAction",
    "SendToAll",
    "SendToConnection",
    "SendToGroup",
    "SendToUser",
    "unexpected_error",
]

ECHO_SUFFIX = " (echo from server)"


class InvalidMessage(ValueError):
    """An upstream ``messages`` body that is not one JSON Invocation record; ``str()`` says why (answer 400)."""


@dataclass(frozen=True)
class Caller:
    """Who invoked: the public connection id (``X-ASRS-Connection-Id``) and the user id, if the token had one."""

    connection_id: str
    user_id: str | None = None


@dataclass(frozen=True)
class SendToAll:
    """REST broadcast: ``POST /api/hubs/{hub}/:send``."""

    target: str
    arguments: tuple[Any, ...]


@dataclass(frozen=True)
class SendToConnection:
    """REST send to one connection: ``POST /api/hubs/{hub}/connections/{id}/:send``."""

    connection_id: str
    target: str
    arguments: tuple[Any, ...]


@dataclass(frozen=True)
class SendToUser:
    """REST send to every connection of a user: ``POST /api/hubs/{hub}/users/{user}/:send``."""

    user_id: str
    target: str
    arguments: tuple[Any, ...]


@dataclass(frozen=True)
class SendToGroup:
    """REST send to a group: ``POST /api/hubs/{hub}/groups/{group}/:send``."""

    group: str
    target: str
    arguments: tuple[Any, ...]


RestAction = SendToAll | SendToConnection | SendToUser | SendToGroup


@dataclass(frozen=True)
class HubCall:
    """The outcome of one invocation: ``actions`` to send in order, or an ``error`` raised before any send.

    ``invocation_id`` is ``None`` for a fire-and-forget ``send``: then nothing is answered, not even an error (trap 11).
    """

    target: str
    invocation_id: str | None
    actions: tuple[RestAction, ...] = ()
    error: str | None = None

    def response_body(self, failure: str | None = None) -> bytes:
        """The upstream response body once the actions ran; ``failure`` is the error of a failed send, if any.

        With an invocation id: one Completion record (void, or the error). Without: empty.
        """
        if self.invocation_id is None:
            return b""
        error = self.error or failure
        if error is not None:
            return encode(Completion.with_error(self.invocation_id, error))
        return encode(Completion(self.invocation_id))


def unexpected_error(target: str) -> str:
    """ASP.NET's text for a hub method that threw (details stay in the server log, as without DetailedErrors)."""
    return f"An unexpected error occurred invoking '{target}' on the server."


def _invalid_data(target: str, detail: str) -> str:
    return f"Failed to invoke '{target}' due to an error on the server. InvalidDataException: {detail}"


@dataclass(frozen=True)
class _Method:
    name: str
    parameters: int
    handler: Callable[[Caller, tuple[str | None, ...]], tuple[RestAction, ...]]


def _broadcast_message(caller: Caller, args: tuple[str | None, ...]) -> tuple[RestAction, ...]:
    name, message = args
    return (SendToAll("broadcastMessage", (name, message)),)


def _echo(caller: Caller, args: tuple[str | None, ...]) -> tuple[RestAction, ...]:
    name, message = args
    # C#'s `message + " (echo from server)"` turns a null message into "" first.
    return (SendToConnection(caller.connection_id, "echo", (name, (message or "") + ECHO_SUFFIX)),)


class ChatHub:
    """``BroadcastMessage(name, message)`` → all clients; ``Echo(name, message)`` → the caller only (§5)."""

    def __init__(self) -> None:
        self._methods = {
            m.name.lower(): m for m in (_Method("BroadcastMessage", 2, _broadcast_message), _Method("Echo", 2, _echo))
        }

    def dispatch(self, caller: Caller, event: str, body: bytes) -> HubCall:
        """What to do for the upstream ``messages`` request ``event`` with ``body``.

        Raises :class:`InvalidMessage` when ``body`` is not one Invocation (or StreamInvocation) record, or when its
        target is not ``event``; every hub-level failure (unknown method, bad arguments) is a :class:`HubCall` error.
        """
        message = _decode_one(body)
        if not isinstance(message, Invocation | StreamInvocation):
            raise InvalidMessage(f"expected an Invocation record, got message type {type(message).__name__}")
        if message.target.lower() != event.lower():
            raise InvalidMessage(
                f"X-ASRS-Event {event[:64]!r} does not match the invocation target {message.target[:64]!r}"
            )
        target, invocation_id = message.target, message.invocation_id
        method = self._methods.get(target.lower())
        if method is None:
            return HubCall(target, invocation_id, error=f"Unknown hub method '{target}'")
        if isinstance(message, StreamInvocation):
            error = f"The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."
            return HubCall(target, invocation_id, error=error)
        if message.stream_ids:
            error = f"Client sent {len(message.stream_ids)} stream(s), Hub method expects 0."
            return HubCall(target, invocation_id, error=error)
        if len(message.arguments) != method.parameters:
            detail = f"Invocation provides {len(message.arguments)} argument(s) but target expects {method.parameters}."
            return HubCall(target, invocation_id, error=_invalid_data(target, detail))
        # Both parameters are C# strings: JSON strings and null bind, anything else is a binding error.
        if not all(arg is None or isinstance(arg, str) for arg in message.arguments):
            detail = (
                "Error binding arguments. Make sure that the types of the provided values match the types of the hub "
                "method being invoked."
            )
            return HubCall(target, invocation_id, error=_invalid_data(target, detail))
        return HubCall(target, invocation_id, actions=method.handler(caller, message.arguments))


def _decode_one(body: bytes) -> Invocation | StreamInvocation | object:
    # The service sends the record without its separator (§6.3); tolerate one trailing separator, never two records.
    record = body[:-1] if body.endswith(RECORD_SEPARATOR) else body
    if RECORD_SEPARATOR in record:
        raise InvalidMessage("the body must carry exactly one hub message record")
    if not record.strip():
        raise InvalidMessage("the body is empty")
    try:
        return decode(record)
    except ProtocolError as exc:
        raise InvalidMessage(str(exc)) from None
