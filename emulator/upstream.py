"""Upstream webhooks (serverless mode): the emulator POSTs client events to the app server (protocol.md §6.2–6.4).

Events of one connection are posted one after another, in order (connected, messages…, disconnected), by one worker
task per connection; a connection with many invocations waiting stops being read (backpressure) instead of growing a
queue. Signatures, templates and bodies come from :mod:`signalr.upstream`. A failing or unreachable upstream is
logged and, for an invocation with an ``invocationId``, answered with a Completion error; it never stops the service.

Invocations travel in the client's hub protocol, as Azure sends them: the message without its framing (no record
separator, no length prefix), ``application/json`` for JSON and ``application/x-msgpack`` for MessagePack. Microsoft's
emulator re-encodes the invocation and strips the framing
(https://github.com/Azure/azure-signalr/blob/dev/src/Microsoft.Azure.SignalR.Emulator/HubEmulator/HubProxyHandler.cs,
``TryGetPayload``) and picks the media type by the client's protocol
(https://github.com/Azure/azure-signalr/blob/dev/src/Microsoft.Azure.SignalR.Emulator/HubEmulator/HttpServerlessMessageHandler.cs).
The Functions extension reads that body without framing and answers with a Completion framed in the same protocol
(https://github.com/Azure/azure-functions-signalrservice-extension/blob/dev/src/SignalRServiceExtension/TriggerBindings/Executor/SignalRInvocationMethodExecutor.cs),
which the service writes to the caller as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from flow.ids import FLOW_ID_HEADER
from signalr.hub_protocol import HubProtocol
from signalr.messages import Completion, HubMessage, ProtocolError, StreamInvocation
from signalr.redact import redact_text, redact_url
from signalr.upstream import MEDIA_TYPES, UpstreamTemplate, protocol_for_media_type, signature_header

from .flow import EmulatorFlow
from .settings import EmulatorSettings

if TYPE_CHECKING:
    from .connection import ClientConnection, InboundMessage

__all__ = ["UpstreamDispatcher", "user_claims_header"]

log = logging.getLogger("emulator")

CONNECTED_BODY = b'{"type":10}'
JSON_MEDIA_TYPE = MEDIA_TYPES["json"]
# The media type of a client invocation's body, by the client's hub protocol (Azure's ContentTypes constants).
# JWT bookkeeping and the service's own asrs.s.* claims are not user claims.
_NOT_USER_CLAIMS = frozenset({"aud", "exp", "iat", "nbf", "iss", "kid"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRAIN_ON_STOP = 2.0


def user_claims_header(claims: Mapping[str, Any]) -> str:
    """``X-ASRS-User-Claims``: each user claim as ``type: value``, comma-separated (§6.3)."""
    parts: list[str] = []
    for name, value in claims.items():
        if name in _NOT_USER_CLAIMS or name.startswith("asrs.s."):
            continue
        for item in value if isinstance(value, list) else [value]:
            parts.append(f"{name}: {item}")
    return _CONTROL.sub(" ", ", ".join(parts))


def disconnected_body(error: str | None) -> bytes:
    """§6.3 and trap 15: ``{"Type":11}`` or ``{"Type":11,"Error":"…"}`` (capitalised keys)."""
    body: dict[str, Any] = {"Type": 11}
    if error:
        body["Error"] = error
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Event:
    category: str
    event: str
    body: bytes
    invocation_id: str | None = None
    content_type: str = JSON_MEDIA_TYPE
    flow_id: str | None = None  # only while flow is on (emulator/flow.py)

    @property
    def is_message(self) -> bool:
        """A client invocation (it holds one of the connection's upstream slots), not a connection event."""
        return self.category == "messages"


class _Worker:
    """A connection's events on their way upstream, in order. Made by the first event that has somewhere to go (or
    the first invocation); a task runs only while events wait, so an idle connection costs this object alone."""

    __slots__ = ("connection", "events", "slots", "task")

    def __init__(self, connection: ClientConnection, max_pending: int) -> None:
        self.connection = connection
        self.events: deque[_Event | None] = deque()
        self.slots = asyncio.Semaphore(max_pending)
        self.task: asyncio.Task[None] | None = None


class UpstreamDispatcher:
    """Posts a connection's events to the first matching upstream template; implements the invocation results.

    Call :meth:`start` inside the event loop before use and :meth:`stop` on shutdown.
    """

    def __init__(self, settings: EmulatorSettings, flow: EmulatorFlow | None = None) -> None:
        self._settings = settings
        self._flow = flow if flow is not None else EmulatorFlow(None)
        self._templates: tuple[UpstreamTemplate, ...] = settings.upstreams
        self._keys = [settings.access_key]
        self._session: aiohttp.ClientSession | None = None
        self._workers: dict[str, _Worker] = {}

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.upstream_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def stop(self) -> None:
        """Give queued events (the disconnected ones of a shutdown) a short time, then cancel and close."""
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_DRAIN_ON_STOP)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- events from connections ---------------------------------------------------------------------------

    def connected(self, connection: ClientConnection) -> None:
        # An event no template takes is dropped silently (§6.2): it needs no worker.
        if self._template(connection.hub, "connections", "connected") is not None:
            self._queue(self._worker(connection), _Event("connections", "connected", CONNECTED_BODY))

    async def message(self, connection: ClientConnection, message: InboundMessage, flow_id: str | None = None) -> None:
        """Queue an invocation for the upstream; waits while the connection already has too many in flight.
        ``flow_id`` (flow on) rides on the POST as ``X-Flow-Id``."""
        protocol = connection.protocol
        if protocol is None or connection.closed:
            return
        if isinstance(message, StreamInvocation):
            error = "Streaming hub methods are not supported in serverless mode."
            _answer(connection, Completion.with_error(message.invocation_id, error))
            return
        worker = self._worker(connection)
        await worker.slots.acquire()
        if connection.closed:
            # Closed while waiting (REST close, timeout): its disconnected event is already queued, stay behind it.
            worker.slots.release()
            return
        try:
            # The message without its framing: what the protocol's split() takes back off its own encoding.
            (body,) = protocol.split(protocol.encode(message))
        except (RecursionError, ValueError, TypeError):
            # It decoded, but re-encoding recurses once per nesting level on top of this call's own stack.
            worker.slots.release()
            raise ProtocolError("The message is nested too deeply to be passed on to the upstream.") from None
        content_type = MEDIA_TYPES.get(protocol.name, "application/octet-stream")
        self._queue(worker, _Event("messages", message.target, body, message.invocation_id, content_type, flow_id))

    def disconnected(self, connection: ClientConnection, error: str | None) -> None:
        worker = self._workers.get(connection.connection_id)
        if self._template(connection.hub, "connections", "disconnected") is not None:
            worker = worker or self._worker(connection)
            self._queue(worker, _Event("connections", "disconnected", disconnected_body(error)))
        if worker is not None:
            self._queue(worker, None)  # the worker is forgotten once everything before this is delivered

    def _worker(self, connection: ClientConnection) -> _Worker:
        worker = self._workers.get(connection.connection_id)
        if worker is None:
            worker = self._workers[connection.connection_id] = _Worker(connection, self._settings.max_pending_upstream)
        return worker

    def _queue(self, worker: _Worker, event: _Event | None) -> None:
        worker.events.append(event)
        if worker.task is None:
            worker.task = asyncio.create_task(self._run(worker), name=f"upstream-{worker.connection.connection_id}")

    # --- posting -------------------------------------------------------------------------------------------

    async def _run(self, worker: _Worker) -> None:
        """Deliver the worker's events in order until none is left (or its end marker came), then end."""
        events = worker.events
        try:
            while events:
                event = events.popleft()
                if event is None:
                    self._workers.pop(worker.connection.connection_id, None)
                    return
                try:
                    await self._deliver(worker.connection, event)
                except Exception:  # an upstream problem must never take the service down
                    log.exception("upstream delivery failed id=%s", worker.connection.connection_id)
                finally:
                    if event.is_message:
                        worker.slots.release()
        finally:
            worker.task = None

    def _template(self, hub: str, category: str, event: str) -> UpstreamTemplate | None:
        for template in self._templates:
            if template.matches(hub, category, event):
                return template
        return None

    async def _deliver(self, connection: ClientConnection, event: _Event) -> None:
        template = self._template(connection.hub, event.category, event.event)
        if template is None:
            self._no_upstream(connection, event)
            return
        url = template.url(connection.hub, event.category, event.event)
        started = time.monotonic()
        failure: str | None = None  # the completion error for an invocation with an id (§6.4)
        status = 0
        body = b""
        media_type = ""
        try:
            status, body, media_type = await self._post(url, connection, event)
        except _TooLarge:
            failure = "Invocation failed, response too large."
        except TimeoutError:
            timeout = self._settings.upstream_timeout
            failure = f"Invocation failed, error: the upstream did not answer within {timeout:g} s."
        except asyncio.CancelledError:
            if event.invocation_id is not None:
                cancelled = "Invocation failed, response cancelled."
                _answer(connection, Completion.with_error(event.invocation_id, cancelled))
            raise
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # Exception texts may name the URL, and a Functions URL carries ?code=<key>: redact.
            failure = f"Invocation failed, error: {redact_text(str(exc)) or type(exc).__name__}."
        if self._flow.enabled:
            self._flow.upstream(connection, event.category, event.event, status, started, event.flow_id, failure)
        where = f"{event.category}/{event.event} hub={connection.hub} id={connection.connection_id}"
        if failure is not None:
            reason = failure.removeprefix("Invocation failed, ")
            log.warning("upstream %s %s failed: %s", redact_url(url), where, reason)
        elif 200 <= status < 300:
            log.info("upstream %s -> %d", where, status)
        else:
            log.warning("upstream %s %s -> %d", redact_url(url), where, status)
        protocol = connection.protocol
        if event.invocation_id is not None and protocol is not None:
            connection.send(_result(protocol, event.invocation_id, status, body, media_type, failure))

    async def _post(self, url: str, connection: ClientConnection, event: _Event) -> tuple[int, bytes, str]:
        """POST one event; returns the status, the body (at most ``max_upstream_response`` bytes) and the media type
        of the response (``""`` without one)."""
        assert self._session is not None, "UpstreamDispatcher.start() was not awaited"
        headers = {
            "Content-Type": event.content_type,
            "X-ASRS-Connection-Id": connection.connection_id,
            "X-ASRS-Hub": connection.hub,
            "X-ASRS-Category": event.category,
            "X-ASRS-Event": _CONTROL.sub(" ", event.event),
            "X-ASRS-Signature": signature_header(self._keys, connection.connection_id),
            "X-ASRS-User-Claims": user_claims_header(connection.claims),
            "X-ASRS-Client-Query": connection.client_query,
        }
        if event.flow_id is not None:
            headers[FLOW_ID_HEADER] = event.flow_id
        if connection.user_id is not None:
            headers["X-ASRS-User-Id"] = _CONTROL.sub(" ", connection.user_id)
        limit = self._settings.max_upstream_response
        async with self._session.post(url, data=event.body, headers=headers) as response:
            if response.content_length is not None and response.content_length > limit:
                raise _TooLarge
            # Read at most one byte past the limit: enough to know the response is too large, never more.
            body = bytearray()
            while len(body) <= limit and (chunk := await response.content.read(limit + 1 - len(body))):
                body += chunk
            if len(body) > limit:
                raise _TooLarge
            media_type = response.content_type if "Content-Type" in response.headers else ""
            return response.status, bytes(body), media_type

    def _no_upstream(self, connection: ClientConnection, event: _Event) -> None:
        if not event.is_message:
            return  # §6.2: events without a matching template are dropped silently
        if not self._templates:
            reason = f"No upstream is configured for hub '{connection.hub}'."
        else:
            reason = f"Unknown hub method '{event.event}'"
        if event.invocation_id is None:
            log.info("dropped %s hub=%s id=%s: %s", event.event, connection.hub, connection.connection_id, reason)
            return
        _answer(connection, Completion.with_error(event.invocation_id, reason))


class _TooLarge(Exception):
    pass


def _answer(connection: ClientConnection, completion: Completion) -> None:
    """Queue ``completion`` to the caller in its hub protocol."""
    if connection.protocol is not None:
        connection.send(connection.protocol.encode(completion))


def _messages(protocol: HubProtocol, body: bytes) -> list[HubMessage] | None:
    """Every message of ``body`` when it is complete messages in ``protocol``, else None."""
    try:
        return [protocol.decode(payload) for payload in protocol.split(body)]
    except ProtocolError:
        return None


def _result(
    protocol: HubProtocol, invocation_id: str, status: int, body: bytes, media_type: str, error: str | None
) -> bytes:
    """The bytes for the caller (speaking ``protocol``) of an invocation with an id (§6.4, trap 16).

    A 200 body that is complete messages in the caller's protocol goes to it as it is (what the Functions extension
    answers). One that is not, but is complete messages in the protocol its ``media_type`` names (an app server that
    answers a MessagePack caller in JSON), is re-encoded in the caller's protocol. Anything else becomes a
    Completion error: Azure writes the body unchecked and the client fails on it.
    """
    if error is not None:
        return protocol.encode(Completion.with_error(invocation_id, error))
    if status == 204 or (status == 200 and not body):
        return protocol.encode(Completion(invocation_id))
    if status != 200:
        return protocol.encode(Completion.with_error(invocation_id, f"Invocation failed, status code {status}"))
    if _messages(protocol, body) is not None:
        return body
    named = protocol_for_media_type(media_type)
    messages = _messages(named, body) if named is not None and named is not protocol else None
    if messages is not None:
        try:
            return protocol.encode_many(messages)
        except (ValueError, RecursionError):
            pass  # a value the caller's protocol cannot carry: the error below
    not_complete = "Invocation failed, error: the upstream response is not a complete hub protocol message."
    return protocol.encode(Completion.with_error(invocation_id, not_complete))
