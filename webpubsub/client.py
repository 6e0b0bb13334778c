"""An asyncio Azure Web PubSub client for the JSON subprotocols, with APIM headers and a network trace.

Why not the official ``azure-messaging-webpubsubclient``: it sends no headers but its User-Agent (an APIM gateway
that requires ``Ocp-Apim-Subscription-Key`` refuses it) and shows nothing of the wire. This client behaves as the
official ones do (the Python client's ``aio/_client.py`` and the JS client's ``webPubSubClient.js``, both read for
this; https://github.com/Azure/azure-sdk-for-python/tree/main/sdk/webpubsub/azure-messaging-webpubsubclient,
https://github.com/Azure/azure-sdk-for-js/tree/main/sdk/web-pubsub/web-pubsub-client):

- ``start()`` gets a client access URL (the string, or ``await url()``), opens the WebSocket with the subprotocol
  and returns once the service's ``connected`` system message arrived (``connection_id``, ``user_id``).
- Requests carry an ``ackId`` (1, 2, 3, … for the client's lifetime) unless ``ack=False``; the call returns when the
  service acknowledges and raises :class:`SendError` (``name``/``message`` from the ack) when it refuses.
  ``Duplicate`` counts as success, as in both official clients.
- Reliable subprotocol: messages carry ``sequenceId``; the client drops any it has already seen and acknowledges the
  highest one with ``sequenceAck`` once a second, and at once when a sequenceId jumps more than 300 past the one
  before it (the JS client's quick ack).
  When the socket drops, it reconnects to the same URL plus ``awps_connection_id`` and ``awps_reconnection_token``
  (https://learn.microsoft.com/azure/azure-web-pubsub/howto-develop-reliable-clients#reconnection): at once, then
  every second, for at most 30 seconds, and not at all after close code 1008 (the service removed the connection).
  Requests not yet acknowledged are sent again with the same ``ackId`` after the recovery, so the service can
  de-duplicate them (the same page, "Publisher").
- A connection that cannot be recovered (plain ``json`` subprotocol, close code 1008, recovery over 30 s) is over:
  ``on_disconnected`` fires, requests in flight fail, and with ``reconnect=True`` the client opens a new connection
  from the URL provider (at once, then every ``reconnect_delay`` seconds, until ``stop()`` or
  ``max_reconnect_attempts``; with a fixed URL string, not after a 401: its token has expired), re-joins the
  groups it had joined and fires ``on_connected`` again.
- Keep-alive: a ``ping`` request every 20 s; a connection silent for 120 s is treated as dropped (the JS client's
  defaults).

Secrets: the access token and the reconnection token travel only in URLs and never reach a log line or a
:class:`~signalr.client.trace.TraceEvent` (URLs go through :func:`signalr.redact.redact_url`, details through
:func:`signalr.redact.redact_text`; frames are summarised by :func:`webpubsub.subprotocol.describe`, never shown).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp

from signalr.client.errors import SignalRClientError, SubscriptionKeyRejected, Unauthorized, apim_message, host_of
from signalr.client.http_context import error_for_exception, to_url
from signalr.client.trace import TraceEvent
from signalr.redact import redact_text, redact_url

from .subprotocol import (
    ERROR_DUPLICATE,
    RELIABLE_JSON_SUBPROTOCOL,
    SUBPROTOCOLS,
    Ack,
    Connected,
    DataType,
    Disconnected,
    GroupMessage,
    InvalidMessage,
    JoinGroup,
    LeaveGroup,
    PingRequest,
    Pong,
    Request,
    Response,
    SendEvent,
    SendToGroup,
    SequenceAck,
    ServerMessage,
    decode_response,
    describe,
    encode_request,
)

__all__ = [
    "AckTimeout",
    "ClientState",
    "ConnectFailed",
    "ConnectionLost",
    "NotConnected",
    "SendError",
    "TraceEvent",
    "WebPubSubClient",
    "WebPubSubClientError",
    "recovery_url",
]

log = logging.getLogger(__name__)

UrlProvider: TypeAlias = Callable[[], Awaitable[str]]
T = TypeVar("T")

ACK_TIMEOUT = 30.0  # both official clients
START_TIMEOUT = 30.0  # the Python client's start_timeout
RECOVERY_TIMEOUT = 30.0  # both official clients give up recovering after 30 s …
RECOVERY_INTERVAL = 1.0  # … trying once a second
RECONNECT_DELAY = 1.0  # the JS client's reconnectRetryOptions: Fixed, 1000 ms
SEQUENCE_ACK_INTERVAL = 1.0  # both official clients
QUICK_SEQUENCE_ACK_DIFF = 300  # the JS client's _quickSequenceAckDiff, compared with the previous sequenceId
KEEP_ALIVE_INTERVAL = 20.0  # the JS client's keepAliveIntervalInMs
KEEP_ALIVE_TIMEOUT = 120.0  # the JS client's keepAliveTimeoutInMs
# The service takes messages up to 1 MB (https://learn.microsoft.com/azure/azure-web-pubsub/resource-faq);
# a frame holds one message in its JSON envelope, binary data as base64 (4/3 larger).
MAX_MESSAGE_SIZE = 2 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
MAX_ERROR_BODY = 4096
CLOSE_POLICY_VIOLATION = 1008  # the service removed the connection: no recovery (howto-develop-reliable-clients)
MAX_EARLY_MESSAGES = 1000  # messages a service may send before its connected message (it sends that one first)


class WebPubSubClientError(SignalRClientError):
    """Base class of the errors this client raises (a :class:`SignalRClientError`, so a UI catches both clients'
    errors alike); messages never hold tokens."""


class ConnectFailed(WebPubSubClientError):
    """The WebSocket could not be opened, or the service closed it before its ``connected`` message.

    ``status`` is the HTTP status of a refused upgrade, ``close_code`` the WebSocket close code, when known.
    """

    def __init__(self, message: str, *, status: int | None = None, close_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.close_code = close_code


class ConnectionLost(WebPubSubClientError):
    """The connection dropped and could not be recovered or replaced; ``on_stopped`` receives it."""


class NotConnected(WebPubSubClientError):
    """A request was made while the client is stopped (or stopping)."""


class SendError(WebPubSubClientError):
    """The service refused a request (its ack had ``success: false``), or it was never acknowledged.

    ``name`` is the ack's error name (``Forbidden``, ``InternalServerError``, ``InvocationFailed``…; ``Failed`` when
    the ack named none) or this client's ``Timeout`` / ``ConnectionLost``; ``message`` its text; ``ack_id`` the
    request's ackId.
    """

    def __init__(self, name: str, message: str, *, ack_id: int | None = None) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name
        self.message = message
        self.ack_id = ack_id


class AckTimeout(SendError):
    """No ack arrived within the request's timeout (the connection may still be recovering)."""


class ClientState(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECOVERING = "recovering"
    DISCONNECTED = "disconnected"  # the connection is over; a new one is being opened (reconnect=True)
    STOPPING = "stopping"


def recovery_url(url: str, connection_id: str, reconnection_token: str) -> str:
    """``url`` with ``awps_connection_id`` and ``awps_reconnection_token`` (replacing any already there).

    The rest of the query (the access token) stays byte for byte, as both official clients append to the URL the
    connection was opened with.
    """
    base, _, fragment = url.partition("#")
    path, _, query = base.partition("?")
    kept = [p for p in query.split("&") if p and not p.startswith(("awps_connection_id=", "awps_reconnection_token="))]
    kept.append(urlencode({"awps_connection_id": connection_id, "awps_reconnection_token": reconnection_token}))
    return f"{path}?{'&'.join(kept)}" + (f"#{fragment}" if fragment else "")


@dataclass
class _Pending:
    """A request waiting for its ack: sent again after a recovery, failed when the connection is over."""

    ack_id: int
    frame: str
    summary: str
    future: asyncio.Future[None]
    sent_on: _Socket | None = None


@dataclass(eq=False)
class _Socket:
    """One WebSocket and what arrived before its reader ran."""

    ws: aiohttp.ClientWebSocketResponse
    url: str
    connected: Connected
    early: list[Response] = field(default_factory=list)
    stale: bool = False  # the keep-alive closed it: treat as a drop
    closed_by_client: bool = False


class WebPubSubClient:
    """A Web PubSub client connection. Create it inside the running loop; ``await start()``, then ``await stop()``.

    ``url``: the client access URL (``ws(s)://host/client/hubs/<hub>?access_token=…``) or an async callable that
    returns a fresh one (called for every new connection; recovery reuses the last). ``headers`` go on every
    WebSocket upgrade (e.g. ``Ocp-Apim-Subscription-Key``). ``trace`` receives redacted :class:`TraceEvent` objects
    (kinds ``connect``, ``send``, ``receive``, ``ping``, ``close``, ``reconnect``, ``error``).

    Callbacks, each plain or async (an async one is awaited before the next frame is read, so messages stay in order;
    exceptions are logged and ignored): ``on_connected(Connected)`` for every new connection, not for a recovery;
    ``on_disconnected(Disconnected | None)`` when a connection is over (with the service's ``disconnected`` message
    if one came); ``on_group_message(GroupMessage)``; ``on_server_message(ServerMessage)``;
    ``on_stopped(error | None)`` once the client has stopped (``None`` after :meth:`stop`).
    """

    def __init__(
        self,
        url: str | UrlProvider,
        *,
        protocol: str = RELIABLE_JSON_SUBPROTOCOL,
        headers: Mapping[str, str] | None = None,
        trace: Callable[[TraceEvent], None] | None = None,
        reconnect: bool = True,
        auto_rejoin_groups: bool = True,
        ack_timeout: float = ACK_TIMEOUT,
        start_timeout: float = START_TIMEOUT,
        recovery_timeout: float = RECOVERY_TIMEOUT,
        recovery_interval: float = RECOVERY_INTERVAL,
        reconnect_delay: float = RECONNECT_DELAY,
        max_reconnect_attempts: int | None = None,
        keep_alive_interval: float = KEEP_ALIVE_INTERVAL,
        keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT,
        max_message_size: int = MAX_MESSAGE_SIZE,
        on_connected: Callable[[Connected], Any] | None = None,
        on_disconnected: Callable[[Disconnected | None], Any] | None = None,
        on_group_message: Callable[[GroupMessage], Any] | None = None,
        on_server_message: Callable[[ServerMessage], Any] | None = None,
        on_stopped: Callable[[BaseException | None], Any] | None = None,
    ) -> None:
        if protocol not in SUBPROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(SUBPROTOCOLS)}, not {protocol!r}")
        self._fixed_url = isinstance(url, str)
        if isinstance(url, str):
            fixed = url

            async def provider() -> str:
                return fixed

            self._url_provider: UrlProvider = provider
        else:
            self._url_provider = url
        self._protocol = protocol
        self._reliable = protocol == RELIABLE_JSON_SUBPROTOCOL
        self._headers = dict(headers or {})
        self._trace_callback = trace
        self._reconnect = reconnect
        self._auto_rejoin_groups = auto_rejoin_groups
        self._ack_timeout = ack_timeout
        self._start_timeout = start_timeout
        self._recovery_timeout = recovery_timeout
        self._recovery_interval = recovery_interval
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_attempts = max_reconnect_attempts
        self._keep_alive_interval = keep_alive_interval
        self._keep_alive_timeout = keep_alive_timeout
        self._max_message_size = max_message_size
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.on_group_message = on_group_message
        self.on_server_message = on_server_message
        self.on_stopped = on_stopped

        self._state = ClientState.STOPPED
        self._session: aiohttp.ClientSession | None = None
        self._refused_upgrade_body = b""
        self._socket: _Socket | None = None
        self._ready = asyncio.Event()  # set while a socket is open and past its connected message
        self._supervisor: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._rejoin: asyncio.Task[None] | None = None
        self._url = ""  # the client access URL of the current connection (recovery appends to it)
        self._connection_id: str | None = None
        self._user_id: str | None = None
        self._reconnection_token: str | None = None
        self._last_disconnected: Disconnected | None = None
        self._next_ack_id = 1
        self._pending: dict[int, _Pending] = {}
        self._groups: set[str] = set()
        self._sequence_id: int | None = None  # the highest sequenceId received on this connection
        self._sequence_dirty = False
        self._last_received = 0.0
        self._last_ping = 0.0
        self._finished = False

    # -----------------------------------------------------------------------------------------------------------------
    # Properties.

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def protocol(self) -> str:
        return self._protocol

    @property
    def connection_id(self) -> str | None:
        """The service's id for this connection (kept across recoveries, new after a reconnect)."""
        return self._connection_id

    @property
    def user_id(self) -> str | None:
        return self._user_id

    @property
    def connected_url(self) -> str:
        """The URL of the open socket, redacted (no access token, no reconnection token); ``""`` when none."""
        return redact_url(self._socket.url) if self._socket is not None else ""

    @property
    def is_connected(self) -> bool:
        socket = self._socket
        return self._state is ClientState.CONNECTED and socket is not None and not socket.ws.closed

    # -----------------------------------------------------------------------------------------------------------------
    # Start and stop.

    async def start(self) -> None:
        """Connect; returns once the service's ``connected`` message arrived.

        Raises :class:`ConnectFailed` (or the shared client errors: :class:`~signalr.client.errors.Unauthorized`,
        :class:`~signalr.client.errors.SubscriptionKeyRejected`, :class:`~signalr.client.errors.ServerUnreachable`,
        :class:`~signalr.client.errors.TransportFailed`) and leaves the client stopped; call :meth:`start` again to
        retry. Call :meth:`stop` when done.
        """
        if self._state is not ClientState.STOPPED:
            raise WebPubSubClientError(f"start() needs a stopped client; this one is {self._state.value}")
        self._state = ClientState.CONNECTING
        self._finished = False
        session = self._session = self._new_session()
        try:
            socket = await self._open_new()
            if self._state is not ClientState.CONNECTING:  # stop() was called meanwhile
                await socket.ws.close()
                raise NotConnected("the client was stopped while it was connecting")
        except BaseException:
            if self._state is ClientState.CONNECTING:
                self._state = ClientState.STOPPED
            await session.close()
            if self._session is session:
                self._session = None
            raise
        await self._opened(socket, new_connection=True)
        self._supervisor = asyncio.create_task(self._supervise(socket), name="webpubsub-client")

    async def stop(self) -> None:
        """Close the connection (code 1000) and stop; pending requests fail with :class:`NotConnected`.

        Safe to call in any state, more than once. ``on_stopped(None)`` fires.
        """
        if self._state in (ClientState.STOPPED, ClientState.STOPPING):
            return
        self._state = ClientState.STOPPING
        self._ready.clear()
        socket = self._socket
        if socket is not None and not socket.ws.closed:
            socket.closed_by_client = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(socket.ws.close(code=aiohttp.WSCloseCode.OK), 5.0)
            self._trace("close", url=socket.url, status=1000, detail="closed by the client (1000)")
        supervisor = self._supervisor
        # stop() may be called from a callback, which runs in the supervisor: it then ends by itself.
        if supervisor is not None and not supervisor.done() and supervisor is not asyncio.current_task():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervisor
        await self._finish(None)

    async def __aenter__(self) -> WebPubSubClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -----------------------------------------------------------------------------------------------------------------
    # Requests.

    async def join_group(self, group: str, *, ack: bool = True, timeout: float | None = None) -> int | None:
        """Join ``group``; returns the ackId (``None`` with ``ack=False``). :class:`SendError` when refused
        (``Forbidden`` without the ``webpubsub.joinLeaveGroup`` role). The group is re-joined on a new connection."""
        ack_id = await self._request(lambda ack_id: JoinGroup(group, ack_id), ack, timeout)
        self._groups.add(group)
        return ack_id

    async def leave_group(self, group: str, *, ack: bool = True, timeout: float | None = None) -> int | None:
        """Leave ``group``; as :meth:`join_group`."""
        ack_id = await self._request(lambda ack_id: LeaveGroup(group, ack_id), ack, timeout)
        self._groups.discard(group)
        return ack_id

    async def send_to_group(
        self,
        group: str,
        data: Any,
        data_type: DataType = DataType.JSON,
        *,
        no_echo: bool = False,
        ack: bool = True,
        timeout: float | None = None,
    ) -> int | None:
        """Publish ``data`` to ``group`` (json: any JSON value, text: ``str``, binary: ``bytes``); returns the ackId.

        :class:`SendError` when refused (``Forbidden`` without the ``webpubsub.sendToGroup`` role),
        :class:`~webpubsub.subprotocol.InvalidMessage` at once for data the data type cannot carry.
        """
        return await self._request(lambda ack_id: SendToGroup(group, data_type, data, ack_id, no_echo), ack, timeout)

    async def send_event(
        self,
        event: str,
        data: Any,
        data_type: DataType = DataType.JSON,
        *,
        ack: bool = True,
        timeout: float | None = None,
    ) -> int | None:
        """Send user event ``event`` to the event handler; returns the ackId. :class:`SendError` ``InvocationFailed``
        when no handler takes the event or it answered an error status."""
        return await self._request(lambda ack_id: SendEvent(event, data_type, data, ack_id), ack, timeout)

    async def _request(self, build: Callable[[int | None], Request], ack: bool, timeout: float | None) -> int | None:
        if self._state in (ClientState.STOPPED, ClientState.STOPPING):
            raise NotConnected("the Web PubSub client is not started — call start() first")
        limit = self._ack_timeout if timeout is None else timeout
        if not ack:
            request = build(None)
            frame = encode_request(request)  # InvalidMessage now, not later
            try:
                async with asyncio.timeout(limit):
                    await self._ready.wait()
            except TimeoutError:
                raise NotConnected(f"not connected within {limit:g} s; {describe(request)} was not sent") from None
            socket = self._socket
            if socket is None or not await self._send_frame(socket, frame, describe(request)):
                raise NotConnected(f"the connection dropped; {describe(request)} was not sent")
            return None
        ack_id = self._next_ack_id
        self._next_ack_id += 1
        request = build(ack_id)
        pending = _Pending(
            ack_id, encode_request(request), describe(request), asyncio.get_running_loop().create_future()
        )
        self._pending[ack_id] = pending
        try:
            async with asyncio.timeout(limit):
                socket = self._socket
                if socket is not None and self._ready.is_set():
                    await self._send_pending(socket, pending)
                # Otherwise the connection is being recovered or replaced: _opened sends it.
                await pending.future
        except TimeoutError:
            raise AckTimeout("Timeout", f"no ack for {pending.summary} within {limit:g} s", ack_id=ack_id) from None
        finally:
            self._pending.pop(ack_id, None)
        return ack_id

    async def _send_pending(self, socket: _Socket, pending: _Pending) -> None:
        if await self._send_frame(socket, pending.frame, pending.summary):
            pending.sent_on = socket

    async def _send_frame(self, socket: _Socket, frame: str, summary: str, kind: str = "send") -> bool:
        """Send one frame; False when the socket is gone (its reader notices the drop and recovery follows)."""
        if socket.ws.closed:
            return False
        try:
            await socket.ws.send_str(frame)
        except Exception as exc:
            log.debug("Web PubSub send failed: %s", exc)
            return False
        self._trace(kind, url=socket.url, size=len(frame.encode("utf-8")), detail=summary)
        return True

    # -----------------------------------------------------------------------------------------------------------------
    # Connections.

    def _new_session(self) -> aiohttp.ClientSession:
        hooks = aiohttp.TraceConfig()
        hooks.on_request_end.append(self._keep_refused_upgrade_body)
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT), trace_configs=[hooks]
        )

    async def _keep_refused_upgrade_body(
        self, session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        # aiohttp's ws_connect drops the body of a refused upgrade; it says why (APIM's 401/404 envelopes, the
        # service's text), so a request hook keeps it.
        response = params.response
        if response.status == 101:
            return
        try:
            self._refused_upgrade_body = await asyncio.wait_for(response.content.read(MAX_ERROR_BODY), 2.0)
        except Exception:
            self._refused_upgrade_body = b""

    async def _open_new(self) -> _Socket:
        """A new connection: a fresh URL from the provider, new connection id, sequence ids from scratch."""
        try:
            async with asyncio.timeout(self._start_timeout):
                url = await self._url_provider()
        except TimeoutError:
            raise ConnectFailed(
                f"the client access URL provider gave no URL within {self._start_timeout:g} s"
            ) from None
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ConnectFailed("the client access URL provider must return a ws://, wss://, http:// or https:// URL")
        if url.startswith("http"):
            url = "ws" + url[4:]
        socket = await self._open_socket(url)
        self._url = url
        self._sequence_id = None
        self._sequence_dirty = False
        self._last_disconnected = None
        return socket

    async def _open_socket(self, url: str) -> _Socket:
        """Open one WebSocket and read up to the ``connected`` message; messages before it are kept for the reader."""
        session = self._session
        assert session is not None
        started = time.monotonic()
        self._refused_upgrade_body = b""
        try:
            async with asyncio.timeout(self._start_timeout):
                ws = await session.ws_connect(
                    to_url(url),
                    protocols=(self._protocol,),
                    headers=self._headers,
                    autoping=True,
                    max_msg_size=self._max_message_size,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                )
        except aiohttp.WSServerHandshakeError as exc:
            error = self._refusal(exc.status, self._refused_upgrade_body, url)
            self._trace("connect", url=url, status=exc.status, started=started, detail=str(error))
            raise error from None
        except TimeoutError:
            error = ConnectFailed(f"the WebSocket upgrade to {host_of(url)} got no answer in {self._start_timeout:g} s")
            self._trace("error", url=url, started=started, detail=str(error))
            raise error from None
        except Exception as exc:
            error = error_for_exception(exc, url, what="the Web PubSub WebSocket upgrade", transport="WebSockets")
            self._trace("error", url=url, started=started, detail=str(error))
            raise error from None
        if ws.protocol != self._protocol:
            await ws.close()
            chosen = ws.protocol or "none"
            error = ConnectFailed(
                f"{host_of(url)} accepted the WebSocket but not the subprotocol {self._protocol} (it chose {chosen}) "
                f"— is this an Azure Web PubSub client endpoint (/client/hubs/<hub>)?"
            )
            self._trace("connect", url=url, status=101, started=started, detail=str(error))
            raise error
        self._trace("connect", url=url, status=101, started=started, detail=f"upgraded, subprotocol {self._protocol}")
        early: list[Response] = []
        disconnected: Disconnected | None = None
        try:
            async with asyncio.timeout(self._start_timeout):
                while True:
                    message = await ws.receive()
                    if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        response = self._decode(message.data, url)
                        if isinstance(response, Connected):
                            connected = response
                            break
                        if isinstance(response, Disconnected):
                            disconnected = response
                        elif response is not None:
                            early.append(response)
                            if len(early) > MAX_EARLY_MESSAGES:
                                raise ConnectFailed(
                                    f"{host_of(url)} sent {len(early)} messages and no connected message — "
                                    f"not an Azure Web PubSub client endpoint?"
                                )
                        continue
                    code = ws.close_code if message.type is not aiohttp.WSMsgType.CLOSE else int(message.data)
                    why = f": {disconnected.message}" if disconnected is not None and disconnected.message else ""
                    error = ConnectFailed(
                        f"{host_of(url)} closed the connection before its connected message (code {code}){why}",
                        close_code=code,
                    )
                    self._trace("close", url=url, status=code, detail=str(error))
                    raise error
        except TimeoutError:
            await ws.close()
            error = ConnectFailed(f"{host_of(url)} sent no connected message within {self._start_timeout:g} s")
            self._trace("error", url=url, detail=str(error))
            raise error from None
        except BaseException:
            if not ws.closed:
                await ws.close()
            raise
        return _Socket(ws, url, connected, early)

    def _refusal(self, status: int, body: bytes, url: str) -> SignalRClientError:
        host = host_of(url)
        gateway_message = apim_message(status, body)
        if gateway_message is not None and status == 401:
            return SubscriptionKeyRejected(host=host, apim_message=gateway_message)
        if gateway_message is not None and status == 404:
            return ConnectFailed(
                f"the gateway at {host} has no API for {urlsplit(url).path} (APIM answered 404 Resource not found) — "
                f"check that the gateway runs the webpubsub profile for this hub",
                status=status,
            )
        text = redact_text(body[:200].decode("utf-8", "replace").strip())
        if status == 401:
            return Unauthorized(host=host, what="The Web PubSub WebSocket upgrade", reason=text)
        return ConnectFailed(
            f"the Web PubSub WebSocket upgrade to {host} was refused with HTTP {status}{f': {text}' if text else ''}",
            status=status,
        )

    async def _opened(self, socket: _Socket, *, new_connection: bool) -> None:
        """A socket is past its connected message: it becomes the current one; pending requests go out on it."""
        connected = socket.connected
        self._socket = socket
        self._connection_id = connected.connection_id
        self._user_id = connected.user_id
        if connected.reconnection_token is not None:
            self._reconnection_token = connected.reconnection_token
        elif new_connection:
            self._reconnection_token = None
        self._state = ClientState.CONNECTED
        now = time.monotonic()
        self._last_received = now
        self._last_ping = now
        self._ready.set()
        self._timer = asyncio.create_task(self._tick(socket), name="webpubsub-client-timer")
        for pending in sorted(self._pending.values(), key=lambda p: p.ack_id):
            if not pending.future.done():
                await self._send_pending(socket, pending)
        if new_connection:
            if self._auto_rejoin_groups and self._groups:
                self._rejoin = asyncio.create_task(self._rejoin_groups(sorted(self._groups)))
            await self._call(self.on_connected, connected)

    async def _rejoin_groups(self, groups: list[str]) -> None:
        for group in groups:
            try:
                await self.join_group(group)
            except Exception as exc:
                log.warning("Re-joining Web PubSub group %r failed: %s", group, exc)
                self._trace("error", detail=f"re-joining group {group} failed: {exc}")

    async def _supervise(self, socket: _Socket) -> None:
        """Reads the current socket; when it drops, recovers or replaces it, until stop() or giving up."""
        error: BaseException | None = None
        current: _Socket | None = socket
        try:
            while current is not None:
                code = await self._read(current)
                await self._closed(current)
                if self._state in (ClientState.STOPPING, ClientState.STOPPED):
                    return
                current = None
                if self._can_recover(code):
                    recovering = self._connection_id
                    current = await self._recover()
                    if current is not None:
                        same = current.connected.connection_id == recovering
                        if not same:  # the service gave a new connection instead: nothing to resume
                            self._fail_in_flight("the service started a new connection instead of recovering")
                            self._sequence_id = None
                            self._sequence_dirty = False
                        await self._opened(current, new_connection=not same)
                        continue
                # The connection is over.
                self._fail_in_flight(f"the connection was lost before the service acknowledged it (code {code})")
                self._state = ClientState.DISCONNECTED
                await self._call(self.on_disconnected, self._last_disconnected)
                if not self._reconnect or self._state is not ClientState.DISCONNECTED:
                    error = ConnectionLost(f"the Web PubSub connection was lost (close code {code})")
                    return
                current, error = await self._reconnect_loop()
                if current is not None:
                    await self._opened(current, new_connection=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must still stop the client cleanly
            log.exception("Web PubSub client failed")
            error = exc
        finally:
            if self._state not in (ClientState.STOPPING, ClientState.STOPPED):  # gave up or failed: stop by itself
                self._state = ClientState.STOPPING
                await self._finish(error)

    async def _finish(self, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._ready.clear()
        for task in (self._timer, self._rejoin):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        socket = self._socket
        if socket is not None and not socket.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(socket.ws.close(), 5.0)
        self._socket = None
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(
                    NotConnected(f"the client stopped; {pending.summary} was not acknowledged")
                )
                pending.future.exception()  # retrieved: the caller may already have timed out
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._state = ClientState.STOPPED
        await self._call(self.on_stopped, error)

    async def _read(self, socket: _Socket) -> int:
        """Handle the socket's messages until it ends; returns its close code (1006 when it just dropped)."""
        for early in socket.early:
            await self._dispatch(early, socket)
        ws = socket.ws
        code: int | None = None
        reason = ""
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                response = self._decode(message.data, socket.url)
                if response is not None:
                    await self._dispatch(response, socket)
                continue
            if message.type is aiohttp.WSMsgType.CLOSE:
                code, reason = int(message.data), str(message.extra or "")
            elif message.type is aiohttp.WSMsgType.ERROR:
                reason = str(ws.exception() or "socket error")
            break
        if code is None:
            code = int(ws.close_code or aiohttp.WSCloseCode.ABNORMAL_CLOSURE)
        if not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5.0)
        if not socket.closed_by_client:
            if socket.stale:
                detail = f"closed by the client: nothing received for {self._keep_alive_timeout:g} s"
            elif message.type is aiohttp.WSMsgType.CLOSE:
                detail = f"closed by the server ({code})" + (f": {reason}" if reason else "")
            else:
                detail = f"the connection ended without a close frame ({code})" + (f": {reason}" if reason else "")
            self._trace("close", url=socket.url, status=code, detail=detail)
        if socket.stale:
            code = int(aiohttp.WSCloseCode.ABNORMAL_CLOSURE)
        return code

    async def _closed(self, socket: _Socket) -> None:
        self._ready.clear()
        if self._socket is socket:
            self._socket = None
        timer = self._timer
        if timer is not None and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await timer

    def _can_recover(self, code: int) -> bool:
        if not self._reliable or code == CLOSE_POLICY_VIOLATION:
            return False
        return self._connection_id is not None and self._reconnection_token is not None and bool(self._url)

    async def _recover(self) -> _Socket | None:
        """Reopen the same connection with its reconnection token: at once, then every second, up to 30 s."""
        assert self._connection_id is not None and self._reconnection_token is not None
        self._state = ClientState.RECOVERING
        url = recovery_url(self._url, self._connection_id, self._reconnection_token)
        deadline = time.monotonic() + self._recovery_timeout
        attempt = 0
        while self._state is ClientState.RECOVERING:
            attempt += 1
            self._trace("reconnect", url=url, detail=f"recovering connection {self._connection_id} (attempt {attempt})")
            try:
                return await self._open_socket(url)
            except ConnectFailed as exc:
                if exc.close_code == CLOSE_POLICY_VIOLATION:
                    log.info("Web PubSub recovery refused (1008): the service removed the connection")
                    return None
                log.info("Web PubSub recovery attempt %d failed: %s", attempt, exc)
            except Exception as exc:
                log.info("Web PubSub recovery attempt %d failed: %s", attempt, exc)
            if time.monotonic() + self._recovery_interval >= deadline:
                log.warning("Web PubSub recovery gave up after %g s", self._recovery_timeout)
                return None
            await asyncio.sleep(self._recovery_interval)
        return None

    async def _reconnect_loop(self) -> tuple[_Socket | None, BaseException | None]:
        """A new connection from the URL provider: at once, then every ``reconnect_delay`` seconds."""
        attempt = 0
        error: BaseException | None = None
        while self._state is ClientState.DISCONNECTED:
            attempt += 1
            self._trace("reconnect", detail=f"new connection from the URL provider (attempt {attempt})")
            try:
                return await self._open_new(), None
            except Exception as exc:
                error = exc
                log.info("Web PubSub reconnect attempt %d failed: %s", attempt, exc)
                if self._fixed_url and isinstance(exc, Unauthorized):
                    # The same URL carries the same token: refused once (expired), refused forever.
                    return None, ConnectionLost(
                        f"the Web PubSub connection was lost and its client access URL is no longer accepted "
                        f"({exc}) — pass a URL provider that fetches a fresh URL (negotiate) to reconnect"
                    )
            if self._max_reconnect_attempts is not None and attempt >= self._max_reconnect_attempts:
                return None, ConnectionLost(
                    f"the Web PubSub connection was lost; {attempt} reconnect attempts failed: {error}"
                )
            await asyncio.sleep(self._reconnect_delay)
        return None, error

    def _fail_in_flight(self, why: str) -> None:
        """Requests sent on a connection that is over can never be acknowledged: they fail (as the JS client)."""
        for pending in list(self._pending.values()):
            if pending.sent_on is not None and not pending.future.done():
                pending.future.set_exception(SendError("ConnectionLost", why, ack_id=pending.ack_id))
                pending.future.exception()

    # -----------------------------------------------------------------------------------------------------------------
    # Incoming messages.

    def _decode(self, data: str | bytes, url: str) -> Response | None:
        self._last_received = time.monotonic()
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
        try:
            response = decode_response(data)
        except InvalidMessage as exc:
            # The official clients log a frame they cannot parse and go on; so does this one.
            log.warning("Ignoring an invalid Web PubSub frame: %s", exc)
            self._trace("receive", url=url, size=size, detail=f"invalid frame, ignored: {exc}")
            return None
        if response is None:
            self._trace("receive", url=url, size=size, detail="a message kind this client does not know, ignored")
            return None
        self._trace("receive", url=url, size=size, detail=describe(response))
        return response

    async def _dispatch(self, response: Response, socket: _Socket) -> None:
        match response:
            case Ack():
                pending = self._pending.get(response.ack_id)
                if pending is None or pending.future.done():
                    return
                error = response.error
                if response.success or (error is not None and error.name == ERROR_DUPLICATE):
                    pending.future.set_result(None)
                else:
                    name, text = (error.name, error.message) if error is not None else ("Failed", "")
                    pending.future.set_exception(SendError(name or "Failed", text, ack_id=response.ack_id))
            case GroupMessage():
                if await self._is_new(response.sequence_id, socket):
                    await self._call(self.on_group_message, response)
            case ServerMessage():
                if await self._is_new(response.sequence_id, socket):
                    await self._call(self.on_server_message, response)
            case Connected():
                self._connection_id = response.connection_id
                if response.reconnection_token is not None:
                    self._reconnection_token = response.reconnection_token
            case Disconnected():
                self._last_disconnected = response
            case Pong():
                pass

    async def _is_new(self, sequence_id: int | None, socket: _Socket) -> bool:
        """False for a message already seen (a resend after recovery); acknowledges at once after a big jump."""
        if sequence_id is None:
            return True
        self._sequence_dirty = True  # even a duplicate is acknowledged again, as both official clients do
        last = self._sequence_id
        if last is not None and sequence_id <= last:
            return False
        self._sequence_id = sequence_id
        if sequence_id - (last or 0) > QUICK_SEQUENCE_ACK_DIFF:
            await self._send_sequence_ack(socket)
        return True

    async def _send_sequence_ack(self, socket: _Socket) -> None:
        if not self._reliable or not self._sequence_dirty or self._sequence_id is None:
            return
        self._sequence_dirty = False
        request = SequenceAck(self._sequence_id)
        if not await self._send_frame(socket, encode_request(request), describe(request)):
            self._sequence_dirty = True

    async def _tick(self, socket: _Socket) -> None:
        """Once a second: the sequence ack, the keep-alive ping and the silence check."""
        while not socket.ws.closed:
            await asyncio.sleep(SEQUENCE_ACK_INTERVAL)
            await self._send_sequence_ack(socket)
            now = time.monotonic()
            if self._keep_alive_interval > 0 and now - self._last_ping >= self._keep_alive_interval:
                self._last_ping = now
                await self._send_frame(socket, encode_request(PingRequest()), "ping", kind="ping")
            if self._keep_alive_timeout > 0 and now - self._last_received > self._keep_alive_timeout:
                log.warning(
                    "Nothing received from Web PubSub for %g s: dropping the connection", self._keep_alive_timeout
                )
                socket.stale = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(socket.ws.close(), 5.0)
                return

    # -----------------------------------------------------------------------------------------------------------------
    # Callbacks and trace.

    async def _call(self, callback: Callable[[T], Any] | None, argument: T) -> None:
        if callback is None:
            return
        try:
            result = callback(argument)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("Web PubSub client callback failed (ignored)")

    def _trace(
        self,
        kind: str,
        *,
        url: str = "",
        status: int | None = None,
        started: float | None = None,
        size: int | None = None,
        detail: str = "",
    ) -> None:
        callback = self._trace_callback
        if callback is None:
            return
        if not url and self._socket is not None:
            url = self._socket.url
        event = TraceEvent(
            kind=kind,
            method="WS",
            url=redact_url(url),
            host=host_of(url) if url else "",
            status=status,
            duration_ms=(time.monotonic() - started) * 1000.0 if started is not None else None,
            bytes=size,
            detail=redact_text(detail),
            at=time.time(),
        )
        try:
            callback(event)
        except Exception:
            log.exception("trace callback failed (ignored)")
