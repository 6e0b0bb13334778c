"""The chat over Azure Web PubSub: :class:`WebPubSubConnection` gives ``ChatApp`` the surface it uses of
``HubConnection`` (:class:`chat.connection.ChatConnection`) over our client, :class:`webpubsub.client.WebPubSubClient`.

The Chatroom's hub methods become user events, as the app server's event handler expects them
(https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-reliable-webpubsub-subprotocol#send-custom-events):
``invoke("broadcastMessage", name, message)`` sends the event ``broadcastMessage`` with the JSON data
``{"name": name, "message": message}`` and waits for the service's ack; the app server answers through the service's
REST API with a server message ``{"name", "message", "target"}``, handed to the handlers of ``target`` as
``(name, message)`` — what a SignalR hub's invocation gives them.

:class:`ClientAccessUrls` gives the client its URL: first the one the app server's negotiate answer carried, then,
for every reconnect that needs a new connection, a fresh one from ``POST {hub url}/negotiate`` with the user's headers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from signalr.client import ConnectionState, SignalRClientError, TraceEvent
from signalr.negotiate import NegotiateError, WebPubSubAnswer, negotiate_url, parse_negotiate_response
from signalr.redact import redact_url
from webpubsub.subprotocol import (
    RELIABLE_JSON_SUBPROTOCOL,
    Connected,
    DataType,
    Disconnected,
    ServerMessage,
)

__all__ = [
    "MAX_NEGOTIATE_BODY",
    "NEGOTIATE_TIMEOUT",
    "TRANSPORT_NAME",
    "ClientAccessUrls",
    "WebPubSubClientFactory",
    "WebPubSubConnection",
    "WebPubSubLike",
]

TRANSPORT_NAME = "Web PubSub"
"""What the status bar shows as the transport: Web PubSub has one (WebSockets), with its own subprotocol."""
NEGOTIATE_TIMEOUT = 30.0
RECONNECT_POLL = 0.05
RECONNECT_ATTEMPTS = 30
"""New connections tried (a second apart) after one is lost for good, before the chat says it is closed (the SignalR
client likewise gives up after its reconnect delays)."""
MAX_NEGOTIATE_BODY = 64 * 1024
"""Largest negotiate answer read (a client access URL and a hub name)."""


class WebPubSubLike(Protocol):
    """What the adapter uses of :class:`webpubsub.client.WebPubSubClient` (tests pass a stand-in)."""

    on_connected: Callable[[Connected], Any] | None
    on_disconnected: Callable[[Disconnected | None], Any] | None
    on_server_message: Callable[[ServerMessage], Any] | None
    on_stopped: Callable[[BaseException | None], Any] | None

    @property
    def connection_id(self) -> str | None: ...

    @property
    def connected_url(self) -> str: ...

    @property
    def protocol(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_event(
        self,
        event: str,
        data: Any,
        data_type: DataType = DataType.JSON,
        *,
        ack: bool = True,
        timeout: float | None = None,
    ) -> int | None: ...


class WebPubSubClientFactory(Protocol):
    """Builds the Web PubSub client: :class:`webpubsub.client.WebPubSubClient`'s constructor."""

    def __call__(
        self,
        url: str | Callable[[], Awaitable[str]],
        *,
        protocol: str,
        headers: Mapping[str, str] | None,
        trace: Callable[[TraceEvent], None] | None,
    ) -> WebPubSubLike: ...


def _default_client_factory(
    url: str | Callable[[], Awaitable[str]],
    *,
    protocol: str,
    headers: Mapping[str, str] | None,
    trace: Callable[[TraceEvent], None] | None,
) -> WebPubSubLike:
    from webpubsub.client import WebPubSubClient

    client: WebPubSubLike = WebPubSubClient(
        url, protocol=protocol, headers=headers, trace=trace, max_reconnect_attempts=RECONNECT_ATTEMPTS
    )
    return client


def _host(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    return f"{host}:{port}" if port is not None else host


class ClientAccessUrls:
    """The client's URL source: ``first`` once, then a fresh client access URL from the app server for each call.

    Pass the instance as the client's ``url`` (it is an ``async`` callable). Each later call POSTs
    ``{hub_url}/negotiate`` with ``headers`` (the subscription key) and expects the app server's Web PubSub answer;
    anything else raises :class:`SignalRClientError` with what went wrong (the URL's token is never in it).
    """

    def __init__(
        self,
        hub_url: str,
        first: str | None,
        *,
        headers: Mapping[str, str] | None = None,
        trace: Callable[[TraceEvent], None] | None = None,
        timeout: float = NEGOTIATE_TIMEOUT,
    ) -> None:
        self.hub_url = hub_url
        self._first = first
        self._headers = dict(headers or {})
        self._trace = trace
        self._timeout = timeout
        self.hub: str | None = None
        """The Web PubSub hub of the latest answer."""

    async def __call__(self) -> str:
        if self._first is not None:
            url, self._first = self._first, None
            return url
        return await self.negotiate()

    async def negotiate(self) -> str:
        """``POST {hub_url}/negotiate``: the client access URL of the app server's Web PubSub answer."""
        target = negotiate_url(self.hub_url)
        started = time.monotonic()
        status: int | None = None
        body = b""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    target, headers=self._headers, timeout=aiohttp.ClientTimeout(total=self._timeout)
                ) as response,
            ):
                status = response.status
                body = await response.content.read(MAX_NEGOTIATE_BODY + 1)
            if len(body) > MAX_NEGOTIATE_BODY:
                raise SignalRClientError(f"the negotiate answer is larger than {MAX_NEGOTIATE_BODY} bytes")
            if status != 200:
                raise SignalRClientError(f"negotiate at {_host(target)} answered {status}")
            parse_negotiate_response(body)
            raise SignalRClientError("The app server no longer answers for Azure Web PubSub (a SignalR answer).")
        except WebPubSubAnswer as answer:
            self.hub = answer.hub
            self._emit(target, status, started, len(body), f"Web PubSub client access URL for hub {answer.hub}")
            return answer.url
        except NegotiateError as exc:
            self._emit(target, status, started, len(body), str(exc), kind="error")
            raise SignalRClientError(str(exc)) from None
        except SignalRClientError as exc:
            self._emit(target, status, started, len(body), str(exc), kind="error")
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            message = f"negotiate at {_host(target)} failed: {reason}"
            self._emit(target, status, started, None, message, kind="error")
            raise SignalRClientError(message) from None

    def _emit(
        self, url: str, status: int | None, started: float, size: int | None, detail: str, kind: str = "negotiate"
    ) -> None:
        if self._trace is not None:
            duration = (time.monotonic() - started) * 1000.0
            event = TraceEvent(kind, "POST", redact_url(url), _host(url), status, duration, size, detail, time.time())
            self._trace(event)


class WebPubSubConnection:
    """The chat's connection over Web PubSub; the same surface as ``HubConnection`` (``ChatConnection``).

    ``url`` is a client access URL or an ``async`` callable giving one (:class:`ClientAccessUrls`); ``protocol`` the
    subprotocol (reliable JSON by default: a dropped connection resumes without losing messages); ``headers`` go on
    the WebSocket handshake; ``trace`` gets the client's steps. Register handlers, ``await start()``, ``invoke`` the
    hub's methods, ``await stop()`` at the end.
    """

    def __init__(
        self,
        url: str | Callable[[], Awaitable[str]],
        *,
        protocol: str = RELIABLE_JSON_SUBPROTOCOL,
        headers: Mapping[str, str] | None = None,
        trace: Callable[[TraceEvent], None] | None = None,
        client_factory: WebPubSubClientFactory = _default_client_factory,
    ) -> None:
        self._trace = trace
        self._client = client_factory(url, protocol=protocol, headers=headers, trace=self._traced)
        self._client.on_connected = self._connected
        self._client.on_disconnected = self._disconnected
        self._client.on_server_message = self._server_message
        self._client.on_stopped = self._stopped
        self._watcher: asyncio.Task[None] | None = None
        self._state = ConnectionState.DISCONNECTED
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._state_callbacks: list[Callable[[ConnectionState, ConnectionState], None]] = []
        self._close_callbacks: list[Callable[[Exception | None], Any]] = []
        self._close_owed = False
        self.last_rtt_ms: float | None = None
        """The latest event's round trip to the service's ack, in milliseconds."""

    # -------------------------------------------------------------------------------------------------- surface

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connection_id(self) -> str | None:
        return self._client.connection_id if self._state is not ConnectionState.DISCONNECTED else None

    @property
    def transport_name(self) -> str | None:
        return TRANSPORT_NAME if self._state is not ConnectionState.DISCONNECTED else None

    @property
    def connected_url(self) -> str | None:
        url = self._client.connected_url if self._state is not ConnectionState.DISCONNECTED else ""
        return redact_url(url) if url else None

    @property
    def webpubsub_protocol(self) -> str:
        """The Web PubSub subprotocol spoken (``json.reliable.webpubsub.azure.v1`` by default)."""
        return self._client.protocol

    def on(self, target: str, handler: Callable[..., Any]) -> None:
        """Call ``handler(name, message)`` (a plain function) for every server message whose ``target`` is ``target``
        (any case)."""
        handlers = self._handlers.setdefault(target.lower(), [])
        if handler not in handlers:
            handlers.append(handler)

    def on_state_change(self, callback: Callable[[ConnectionState, ConnectionState], None]) -> None:
        self._state_callbacks.append(callback)

    def on_close(self, callback: Callable[[Exception | None], Any]) -> None:
        self._close_callbacks.append(callback)

    async def start(self) -> None:
        """Connect (the client's WebSocket and its ``connected`` message); raises the client's error otherwise."""
        if self._state is not ConnectionState.DISCONNECTED:
            raise SignalRClientError("Cannot start a connection that is not in the 'Disconnected' state.")
        self._set_state(ConnectionState.CONNECTING)
        try:
            await self._client.start()
        except BaseException:
            if self._in(ConnectionState.CONNECTING):
                self._set_state(ConnectionState.DISCONNECTED)
            raise
        if self._in(ConnectionState.CONNECTING):
            self._close_owed = True
            self._set_state(ConnectionState.CONNECTED)

    async def invoke(self, target: str, *arguments: Any, timeout: float | None = 30) -> Any:
        """Send the user event ``target`` with ``{"name": arguments[0], "message": arguments[1]}`` and wait for the
        service's ack (it raises the client's ``SendError`` for a failed ack, a timeout after ``timeout`` s)."""
        if len(arguments) != 2:
            raise ValueError(f"{target} takes (name, message), not {len(arguments)} arguments")
        if self._state is not ConnectionState.CONNECTED:
            raise SignalRClientError("Cannot send data if the connection is not in the 'Connected' State.")
        name, message = arguments
        started = time.monotonic()
        await self._client.send_event(target, {"name": name, "message": message}, DataType.JSON, timeout=timeout)
        self.last_rtt_ms = (time.monotonic() - started) * 1000.0
        return None

    async def stop(self) -> None:
        """Close the client cleanly; idempotent. ``on_close`` gets ``None``."""
        if self._state is ConnectionState.DISCONNECTED:
            return
        self._set_state(ConnectionState.DISCONNECTING)
        try:
            await self._client.stop()
        finally:
            self._finish(None)

    # -------------------------------------------------------------------------------------------------- client

    def _connected(self, message: Connected) -> None:
        if self._state is ConnectionState.RECONNECTING:
            self._set_state(ConnectionState.CONNECTED)

    def _disconnected(self, message: Disconnected | None) -> None:
        # The client reconnects by itself (a new connection from a fresh URL); on_stopped says when it gave up.
        self._reconnecting()

    def _traced(self, event: TraceEvent) -> None:
        # A recovery (the same connection resumed with its reconnection token) has no callback of its own: the
        # client's "reconnect" step says it began, and the client's is_connected says when it is over.
        if event.kind == "reconnect":
            self._reconnecting()
        if self._trace is not None:
            self._trace(event)

    def _reconnecting(self) -> None:
        if self._state is not ConnectionState.CONNECTED:
            return
        self._set_state(ConnectionState.RECONNECTING)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_reconnect())

    async def _watch_reconnect(self) -> None:
        """While reconnecting: back to connected as soon as the client is (checked every 50 ms)."""
        while self._in(ConnectionState.RECONNECTING):
            if self._client.is_connected:
                self._set_state(ConnectionState.CONNECTED)
                return
            await asyncio.sleep(RECONNECT_POLL)

    def _stopped(self, error: BaseException | None) -> None:
        if self._state is not ConnectionState.DISCONNECTING:
            self._finish(error if isinstance(error, Exception) or error is None else SignalRClientError(str(error)))

    def _server_message(self, message: ServerMessage) -> None:
        """A chat message is JSON ``{"name", "message", "target"}`` with three strings (as the web page reads it);
        anything else is not for the chat."""
        data = message.data
        if message.data_type is not DataType.JSON or not isinstance(data, dict):
            return
        target, name, text = data.get("target"), data.get("name"), data.get("message")
        if not (isinstance(target, str) and isinstance(name, str) and isinstance(text, str)):
            return
        for handler in list(self._handlers.get(target.lower(), [])):
            handler(name, text)

    def _finish(self, error: Exception | None) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self._state is not ConnectionState.DISCONNECTED:
            self._set_state(ConnectionState.DISCONNECTED)
        if self._close_owed:
            self._close_owed = False
            for callback in list(self._close_callbacks):
                callback(error)

    def _in(self, state: ConnectionState) -> bool:
        return self._state is state

    def _set_state(self, new: ConnectionState) -> None:
        old, self._state = self._state, new
        if old is not new:
            for callback in list(self._state_callbacks):
                callback(old, new)
