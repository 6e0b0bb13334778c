"""The Chat hub ("Chatroom" sample's ``ChatSampleHub``), as pure dispatch shared by both service modes.

:meth:`ChatHub.invoke` turns one client invocation into a :class:`HubCall`: the :data:`HubAction` sends to perform
(to all, to a connection, a user or a group) and the Completion to answer. The hub does no I/O and does not know which
mode carries it, nor which hub protocol the caller speaks: an :class:`ActionSink` delivers the actions. In Serverless
mode the invocation arrives as an upstream ``messages`` request (:meth:`ChatHub.dispatch` decodes its body, one message
of the caller's hub protocol without its framing, ``docs/protocol.md`` §6.3) and the sink is the REST client; in
Default mode it arrives over a server connection and the sink writes service messages (``docs/default-mode.md``).
Method names match case-insensitively (trap 9); errors are ASP.NET's texts (§4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from signalr.hub_protocol import HubProtocol
from signalr.messages import Completion, HubMessage, Invocation, ProtocolError, StreamInvocation

__all__ = [
    "ActionSink",
    "Caller",
    "ChatHub",
    "DeliveryFailed",
    "HubAction",
    "HubCall",
    "InvalidMessage",
    "SendToAll",
    "SendToConnection",
    "SendToGroup",
    "SendToUser",
    "perform",
    "unexpected_error",
]

ECHO_SUFFIX = " (echo from server)"


class InvalidMessage(ValueError):
    """An upstream ``messages`` body that is not one Invocation of its hub protocol; ``str()`` says why (answer 400)."""


@dataclass(frozen=True)
class Caller:
    """Who invoked: the public connection id (``X-ASRS-Connection-Id``) and the user id, if the token had one."""

    connection_id: str
    user_id: str | None = None


@dataclass(frozen=True)
class SendToAll:
    """Send to every connection of the hub (REST ``:send``; BroadcastData)."""

    target: str
    arguments: tuple[Any, ...]


@dataclass(frozen=True)
class SendToConnection:
    """Send to one connection (REST ``connections/{id}/:send``; MultiConnectionData)."""

    connection_id: str
    target: str
    arguments: tuple[Any, ...]


@dataclass(frozen=True)
class SendToUser:
    """Send to every connection of a user (REST ``users/{user}/:send``; UserData)."""

    user_id: str
    target: str
    arguments: tuple[Any, ...]


@dataclass(frozen=True)
class SendToGroup:
    """Send to a group (REST ``groups/{group}/:send``; GroupBroadcastData)."""

    group: str
    target: str
    arguments: tuple[Any, ...]


HubAction = SendToAll | SendToConnection | SendToUser | SendToGroup


class DeliveryFailed(Exception):
    """An action could not be handed to the service; ``str()`` is the cause for the server log (no secrets)."""


class ActionSink(Protocol):
    """Delivers the hub's actions through the service, in one mode's way."""

    async def send(self, action: HubAction, flow_id: str | None = None) -> None:
        """Deliver ``action``; raise :class:`DeliveryFailed` when it did not reach the service. ``flow_id`` (only while
        flow is on, ``server/flow.py``) is the message's correlation id, carried back to the service with the send."""


@dataclass(frozen=True)
class HubCall:
    """The outcome of one invocation: ``actions`` to send in order, or an ``error`` raised before any send.

    ``invocation_id`` is ``None`` for a fire-and-forget ``send``: then nothing is answered, not even an error (trap 11).
    """

    target: str
    invocation_id: str | None
    actions: tuple[HubAction, ...] = ()
    error: str | None = None

    def completion(self, failure: str | None = None) -> Completion | None:
        """The caller's Completion once the actions ran (void, or the error); ``failure`` is the error of a failed
        send, if any. ``None`` without an invocation id."""
        if self.invocation_id is None:
            return None
        error = self.error or failure
        return Completion.with_error(self.invocation_id, error) if error is not None else Completion(self.invocation_id)

    def response_body(self, protocol: HubProtocol, failure: str | None = None) -> bytes:
        """The upstream response body (Serverless mode): the Completion as one framed message of ``protocol``, the
        caller's, which the service copies to the caller's transport unchanged (``docs/protocol.md`` trap 16); empty
        without an invocation id."""
        completion = self.completion(failure)
        return protocol.encode(completion) if completion is not None else b""


def unexpected_error(target: str) -> str:
    """ASP.NET's text for a hub method that threw (details stay in the server log, as without DetailedErrors)."""
    return f"An unexpected error occurred invoking '{target}' on the server."


def _invalid_data(target: str, detail: str) -> str:
    return f"Failed to invoke '{target}' due to an error on the server. InvalidDataException: {detail}"


@dataclass(frozen=True)
class _Method:
    name: str
    parameters: int
    handler: Callable[[Caller, tuple[str | None, ...]], tuple[HubAction, ...]]


def _broadcast_message(caller: Caller, args: tuple[str | None, ...]) -> tuple[HubAction, ...]:
    name, message = args
    return (SendToAll("broadcastMessage", (name, message)),)


def _echo(caller: Caller, args: tuple[str | None, ...]) -> tuple[HubAction, ...]:
    name, message = args
    # C#'s `message + " (echo from server)"` turns a null message into "" first.
    return (SendToConnection(caller.connection_id, "echo", (name, (message or "") + ECHO_SUFFIX)),)


class ChatHub:
    """``BroadcastMessage(name, message)`` → all clients; ``Echo(name, message)`` → the caller only (§5)."""

    def __init__(self) -> None:
        self._methods = {
            m.name.lower(): m for m in (_Method("BroadcastMessage", 2, _broadcast_message), _Method("Echo", 2, _echo))
        }

    def dispatch(self, caller: Caller, event: str, body: bytes, protocol: HubProtocol) -> HubCall:
        """What to do for the upstream ``messages`` request ``event`` whose ``body`` is in ``protocol`` (the caller
        must pick it from the request's content type, never by looking at the bytes).

        Raises :class:`InvalidMessage` when ``body`` is not one Invocation (or StreamInvocation) of ``protocol``, or
        when its target is not ``event``; every hub-level failure (unknown method, bad arguments) is a
        :class:`HubCall` error.
        """
        message = _decode_one(body, protocol)
        if not isinstance(message, Invocation | StreamInvocation):
            raise InvalidMessage(f"expected an Invocation record, got message type {type(message).__name__}")
        if message.target.lower() != event.lower():
            raise InvalidMessage(
                f"X-ASRS-Event {event[:64]!r} does not match the invocation target {message.target[:64]!r}"
            )
        return self.invoke(caller, message)

    def invoke(self, caller: Caller, message: Invocation | StreamInvocation) -> HubCall:
        """What to do for one decoded client invocation; every hub-level failure is a :class:`HubCall` error."""
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


async def perform(
    call: HubCall, sink: ActionSink, log: logging.Logger, caller: str, flow_id: str | None = None
) -> str | None:
    """Send ``call``'s actions in order through ``sink``; returns the caller's error text when one failed.
    ``flow_id`` goes with every send (None while flow is off).

    Like ASP.NET without DetailedErrors: the caller gets the generic text, the log gets the cause, and the actions
    after a failed one are not sent.
    """
    if call.error is not None:
        log.warning("invoke %r from %s failed: %s", call.target[:64], caller, call.error)
        return None
    for action in call.actions:
        try:
            await sink.send(action, flow_id)
        except DeliveryFailed as exc:
            log.error("invoke %r from %s: %s", call.target[:64], caller, exc)
            return unexpected_error(call.target)
    return None


def _decode_one(body: bytes, protocol: HubProtocol) -> HubMessage:
    """The one message ``body`` carries. The service sends it without framing (§6.3); a body framed as a transport
    carries it (one message only) is accepted too."""
    if not body:
        raise InvalidMessage("the body is empty")
    try:
        return protocol.decode(body)
    except ProtocolError as unframed:
        try:
            payloads = protocol.split(body)
        except ProtocolError:
            raise InvalidMessage(str(unframed)) from None
    if len(payloads) != 1:
        raise InvalidMessage(f"the body must carry exactly one hub message, not {len(payloads)}")
    try:
        return protocol.decode(payloads[0])
    except ProtocolError as exc:
        raise InvalidMessage(str(exc)) from None
