"""The hub connection: ``on``/``send``/``invoke``/``start``/``stop`` in the spirit of ``@microsoft/signalr``.

Records are parsed by the core's sans-I/O :class:`~signalr.connection.ClientProtocol` (handshake, several records per
frame and records right after the handshake reply, trap 8). Rules followed from the JS ``HubConnection``:

- Handshake ``{"protocol":"json","version":1}`` (or ``messagepack``: the connection's hub protocol, chosen at
  construction); no answer within ``handshake_timeout`` fails ``start()``. A binary protocol rules out
  ServerSentEvents (see :mod:`signalr.client.http_connection`).
- Handlers are matched case-insensitively (trap 9); sync handlers run inline, async ones as tasks; an exception in a
  handler is logged and never stops the receive loop; an unknown target is logged at debug.
- Keep-alive (not on LongPolling, whose polls keep the connection alive, trap 12): a Ping right after the handshake,
  then whenever ``keep_alive_interval`` passed without sending; the connection is closed when nothing arrived for
  ``server_timeout``.
- A Close message ends the connection with its error; only ``allowReconnect: true`` leads to a reconnect.
- An unexpected loss (not after ``stop()``) → RECONNECTING, retries after ``reconnect_delays`` (0, 2, 10, 30 s), each
  renegotiating from the ORIGINAL url (the app server), so a fresh redirect and token are fetched; then give up →
  DISCONNECTED and ``on_close(error)``.
- ``stop()`` sends a Close message, then closes the transport (WS close 1000, LongPolling DELETE, SSE disconnect) and
  fails pending invocations.

``last_rtt_ms`` is the round trip of the last ``invoke()`` (Invocation sent → Completion received) or, on SSE and
LongPolling, of the last send POST (request → 200); WebSocket sends have no response to time. ``None`` until one of
those happened.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from signalr.connection import (
    ClientProtocol,
    ConnectionClosed,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    State,
)
from signalr.connection_string import is_http_url
from signalr.hub_protocol import HubProtocol
from signalr.messages import Completion, HubMessage, Invocation, Ping, StreamItem
from signalr.protocols import protocol_named
from signalr.redact import redact_text, redact_url

from . import errors
from .connection_state import ConnectionState
from .errors import (
    ConnectionClosedError,
    HubError,
    InvocationTimeout,
    NotConnected,
    ServerTimeout,
    SignalRClientError,
    TransportFailed,
)
from .http_connection import HttpConnection
from .trace import TraceEvent, Tracer
from .transport_choice import TransportChoice

__all__ = ["HubConnection"]

log = logging.getLogger(__name__)

DEFAULT_RECONNECT_DELAYS: tuple[float, ...] = (0, 2, 10, 30)
CLOSE_SEND_TIMEOUT = 2.0


class HubConnection:
    """A client connection to a SignalR hub, through redirects and gateways.

    Create it, register handlers with :meth:`on`, then ``await start()``. Use :meth:`send` for fire-and-forget
    invocations (the Chatroom's ``broadcastMessage``/``echo``) and :meth:`invoke` when a Completion is expected.
    Always ``await stop()`` at the end (or use ``async with``). Every method must be called from the event loop
    that called :meth:`start`.
    """

    def __init__(
        self,
        url: str,
        *,
        transport: TransportChoice = TransportChoice.WEBSOCKETS,
        protocol: str | HubProtocol = "json",
        headers: Mapping[str, str] | None = None,
        access_token: str | None = None,
        reconnect_delays: Sequence[float] | None = DEFAULT_RECONNECT_DELAYS,
        keep_alive_interval: float = 15.0,
        server_timeout: float = 30.0,
        handshake_timeout: float = 15.0,
        trace: Callable[[TraceEvent], None] | None = None,
        sse_open_timeout: float = 10.0,
    ) -> None:
        """``url`` is the hub URL (the app server's ``…/chat``), negotiated at ``<url>/negotiate``.

        ``protocol`` is the hub protocol, by name (``json``, ``messagepack``) or as a
        :class:`~signalr.hub_protocol.HubProtocol`; the handshake names it and every message is in it.
        ``headers`` go on every request of every transport (e.g. ``{"Ocp-Apim-Subscription-Key": key}``).
        ``access_token`` is the bearer for the first negotiate (a redirect's token replaces it).
        ``reconnect_delays`` are the waits before each reconnect attempt; ``None`` disables reconnecting.
        ``sse_open_timeout`` bounds how long the SSE transport waits for the stream's headers and first bytes.
        Raises :class:`ValueError` for a URL that is not absolute http(s) with a host and a valid port, an unknown
        protocol name, negative delays or non-positive timeouts.
        """
        if not is_http_url(url):
            raise ValueError(
                f"the hub URL must be an absolute http:// or https:// URL with a host and a valid port, "
                f"not {redact_url(url)!r}"
            )
        hub_protocol = protocol_named(protocol) if isinstance(protocol, str) else protocol
        delays = tuple(reconnect_delays) if reconnect_delays is not None else None
        if delays is not None and any(d < 0 for d in delays):
            raise ValueError("reconnect_delays must not be negative")
        for name, value in (
            ("keep_alive_interval", keep_alive_interval),
            ("server_timeout", server_timeout),
            ("handshake_timeout", handshake_timeout),
            ("sse_open_timeout", sse_open_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive")
        self._url = url
        self._choice = transport
        self._hub_protocol = hub_protocol
        self._headers = dict(headers or {})
        self._access_token = access_token
        self._reconnect_delays = delays
        self._keep_alive_interval = keep_alive_interval
        self._server_timeout = server_timeout
        self._handshake_timeout = handshake_timeout
        self._sse_open_timeout = sse_open_timeout
        self._tracer = Tracer(trace)

        self._state = ConnectionState.DISCONNECTED
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._state_callbacks: list[Callable[[ConnectionState, ConnectionState], None]] = []
        self._close_callbacks: list[Callable[[Exception | None], Any]] = []

        self._generation = 0  # bumped per connection attempt: callbacks of older transports are ignored
        self._conn: HttpConnection | None = None
        self._protocol: ClientProtocol | None = None
        self._handshake: asyncio.Future[None] | None = None
        self._start_loss: Exception | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._next_invocation_id = 0
        self._last_send = 0.0
        self._keep_alive_task: asyncio.Task[None] | None = None
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._started = False  # start() succeeded since the last final close: on_close is owed
        self._background: set[asyncio.Task[Any]] = set()

        self.connection_id: str | None = None
        self.transport_name: str | None = None
        self.connected_url: str | None = None
        self.last_rtt_ms: float | None = None

    # ----------------------------------------------------------------------------------------------------- public

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def url(self) -> str:
        """The hub URL this connection negotiates with (redacted)."""
        return redact_url(self._url)

    @property
    def transport_choice(self) -> TransportChoice:
        return self._choice

    @property
    def protocol(self) -> HubProtocol:
        """The hub protocol this connection speaks."""
        return self._hub_protocol

    def on(self, target: str, handler: Callable[..., Any]) -> None:
        """Call ``handler(*arguments)`` for every Invocation of ``target`` (case-insensitive); sync or async."""
        handlers = self._handlers.setdefault(target.lower(), [])
        if handler not in handlers:
            handlers.append(handler)

    def off(self, target: str, handler: Callable[..., Any] | None = None) -> None:
        """Remove one handler of ``target``, or all of them."""
        key = target.lower()
        if handler is None:
            self._handlers.pop(key, None)
            return
        handlers = self._handlers.get(key, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self._handlers.pop(key, None)

    def on_state_change(self, callback: Callable[[ConnectionState, ConnectionState], None]) -> None:
        """``callback(old, new)`` on every state change, called synchronously."""
        self._state_callbacks.append(callback)

    def on_close(self, callback: Callable[[Exception | None], Any]) -> None:
        """``callback(error)`` once the connection is finally closed (``stop()``, or reconnecting gave up)."""
        self._close_callbacks.append(callback)

    async def start(self) -> None:
        """Negotiate (following redirects), connect the transport and complete the handshake.

        Raises a :class:`~signalr.client.errors.SignalRClientError` subclass whose message says what to fix.
        """
        if self._state is not ConnectionState.DISCONNECTED:
            raise SignalRClientError("Cannot start a HubConnection that is not in the 'Disconnected' state.")
        self._set_state(ConnectionState.CONNECTING)
        task = asyncio.create_task(self._start_internal())
        self._start_task = task
        try:
            await task
        except asyncio.CancelledError:
            if self._in_state(ConnectionState.CONNECTING):
                self._set_state(ConnectionState.DISCONNECTED)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise SignalRClientError("The connection was stopped during start().") from None
        except BaseException as exc:
            if self._in_state(ConnectionState.CONNECTING):
                self._set_state(ConnectionState.DISCONNECTED)
            if isinstance(exc, SignalRClientError):
                self._tracer.emit("error", url=self._url, detail=f"start failed: {exc}")
            raise
        finally:
            self._start_task = None
        self._started = True
        self._set_state(ConnectionState.CONNECTED)

    async def send(self, target: str, *arguments: Any) -> None:
        """Fire-and-forget invocation (no ``invocationId``: the server never answers it, trap 11)."""
        data = self._encode(Invocation(target, tuple(arguments)))
        started = time.monotonic()
        await self._send_raw(data)
        if self.transport_name != "WebSockets":
            self.last_rtt_ms = (time.monotonic() - started) * 1000.0

    async def invoke(self, target: str, *arguments: Any, timeout: float | None = 30) -> Any:
        """Invoke and wait for the Completion: returns its result, raises :class:`HubError` with its error text.

        Raises :class:`InvocationTimeout` after ``timeout`` seconds (``None`` waits for ever), and a
        :class:`SignalRClientError` when the connection closes first.
        """
        invocation_id = str(self._next_invocation_id)
        self._next_invocation_id += 1
        data = self._encode(Invocation(target, tuple(arguments), invocation_id=invocation_id))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[invocation_id] = future
        started = time.monotonic()
        try:
            await self._send_raw(data)
            result = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise InvocationTimeout(f"no completion for '{target}' within {timeout:g} s") from None
        finally:
            self._pending.pop(invocation_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # mark retrieved: the caller got it, or gave up waiting
        self.last_rtt_ms = (time.monotonic() - started) * 1000.0
        return result

    async def stop(self) -> None:
        """Close cleanly: Close message, then WS close 1000 / LongPolling DELETE / SSE disconnect. Idempotent."""
        if self._stop_task is None:
            if self._state is ConnectionState.DISCONNECTED:
                return
            self._begin_stop(None)
        assert self._stop_task is not None
        await asyncio.shield(self._stop_task)

    async def __aenter__(self) -> HubConnection:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---------------------------------------------------------------------------------------------- connecting

    async def _start_internal(self) -> None:
        """One attempt: negotiate + transport + handshake. On failure everything it opened is closed again."""
        self._generation += 1
        generation = self._generation
        protocol = ClientProtocol(self._hub_protocol)
        self._tracer.begin(self._hub_protocol)
        handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._protocol = protocol
        self._handshake = handshake
        self._start_loss = None
        conn = HttpConnection(
            self._url,
            choice=self._choice,
            protocol=self._hub_protocol,
            headers=self._headers,
            access_token=self._access_token,
            tracer=self._tracer,
            on_receive=lambda data: self._on_receive(generation, data),
            on_close=lambda error: self._on_transport_close(generation, error),
            sse_open_timeout=self._sse_open_timeout,
        )
        try:
            await conn.start()
            self._conn = conn
            assert conn.base_url is not None
            self.connection_id = conn.connection_id
            self.transport_name = conn.transport_name
            self.connected_url = redact_url(conn.base_url)
            self._last_send = time.monotonic()
            protocol.handshake()
            await conn.send(protocol.data_to_send())
            try:
                await asyncio.wait_for(asyncio.shield(handshake), self._handshake_timeout)
            except TimeoutError:
                raise errors.HandshakeFailed(
                    f"the server did not answer the handshake within {self._handshake_timeout:g} s"
                ) from None
            used = self._hub_protocol
            self._tracer.emit(
                "handshake", url=conn.base_url, detail=f"handshake complete ({used.name}, version {used.version})"
            )
            if not conn.inherent_keep_alive:
                self._reset_server_timeout(generation)
                self._keep_alive_task = asyncio.create_task(self._keep_alive(generation))
                await self._send_ping()  # JS: the first Ping right after the handshake
            if self._start_loss is not None:
                raise self._start_loss
        except BaseException:
            if handshake.done() and not handshake.cancelled():
                handshake.exception()  # retrieved: the error is re-raised below
            if self._generation == generation:
                self._detach()  # it is ``conn`` or None: ``conn`` is stopped below either way
                self.connection_id = self.transport_name = self.connected_url = None
            await conn.stop()
            raise

    def _encode(self, message: HubMessage) -> bytes:
        protocol = self._protocol
        if self._state is not ConnectionState.CONNECTED or protocol is None or protocol.state is not State.OPEN:
            raise NotConnected("Cannot send data if the connection is not in the 'Connected' State.")
        protocol.send(message)
        return protocol.data_to_send()

    async def _send_ping(self) -> None:
        protocol = self._protocol
        if protocol is None or protocol.state is not State.OPEN:
            raise NotConnected("Cannot send data if the connection is not in the 'Connected' State.")
        protocol.send_ping()
        await self._send_raw(protocol.data_to_send())

    async def _send_raw(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            raise NotConnected("Cannot send data if the connection is not in the 'Connected' State.")
        self._last_send = time.monotonic()
        await conn.send(data)

    # ------------------------------------------------------------------------------------------------ receiving

    def _on_receive(self, generation: int, data: bytes) -> None:
        protocol = self._protocol
        if generation != self._generation or protocol is None:
            return
        if self._timeout_handle is not None:
            self._reset_server_timeout(generation)
        for event in protocol.receive_data(data):
            if isinstance(event, HandshakeCompleted):
                self._resolve_handshake(None)
            elif isinstance(event, HandshakeFailed):
                text = event.error
                message = text if text.startswith("Handshake response") else f"Server returned handshake error: {text}"
                self._resolve_handshake(errors.HandshakeFailed(message))
            elif isinstance(event, MessageReceived):
                self._dispatch(event.message)
            elif isinstance(event, ConnectionClosed):
                self._on_protocol_closed(generation, event)
            if generation != self._generation:
                return

    def _resolve_handshake(self, error: Exception | None) -> None:
        handshake = self._handshake
        if handshake is None or handshake.done():
            return
        if error is None:
            handshake.set_result(None)
        else:
            handshake.set_exception(error)

    def _dispatch(self, message: HubMessage) -> None:
        if isinstance(message, Invocation):
            self._invoke_handlers(message)
        elif isinstance(message, Completion):
            future = self._pending.pop(message.invocation_id, None)
            if future is None or future.done():
                log.debug("Completion for unknown invocation %s ignored", message.invocation_id)
            elif message.error is not None:
                future.set_exception(HubError(message.error))
            else:
                future.set_result(message.result)
        elif isinstance(message, Ping):
            pass
        elif isinstance(message, StreamItem):
            log.debug("StreamItem for invocation %s ignored: streaming is not supported", message.invocation_id)
        else:
            log.warning("Unexpected %s from the server ignored", type(message).__name__)

    def _invoke_handlers(self, message: Invocation) -> None:
        name = message.target.lower()
        handlers = list(self._handlers.get(name, ()))
        if not handlers:
            log.debug("No client method with the name '%s' found.", name)
            if message.invocation_id is not None:
                self._spawn(self._send_completion(message.invocation_id, "Client didn't provide a result.", None))
            return
        results: list[Any] = []
        for handler in handlers:
            try:
                result = handler(*message.arguments)
            except Exception as exc:
                log.exception("A callback for the method '%s' threw error", name)
                result = exc
            results.append(result)
        awaitables = [r for r in results if inspect.isawaitable(r)]
        if awaitables or message.invocation_id is not None:
            self._spawn(self._finish_invocation(message, name, results))

    async def _finish_invocation(self, message: Invocation, name: str, results: list[Any]) -> None:
        """Await async handlers; answer a server invocation that has an ``invocationId`` (client results)."""
        values: list[Any] = []
        for result in results:
            if inspect.isawaitable(result):
                try:
                    result = await result
                except Exception as exc:
                    log.exception("A callback for the method '%s' threw error", name)
                    result = exc
            values.append(result)
        if message.invocation_id is None:
            return
        failures = [v for v in values if isinstance(v, Exception)]
        answers = [v for v in values if v is not None and not isinstance(v, Exception)]
        if failures:
            await self._send_completion(message.invocation_id, str(failures[-1]), None)
        elif len(answers) > 1:
            await self._send_completion(message.invocation_id, "Client provided multiple results.", None)
        elif answers:
            await self._send_completion(message.invocation_id, None, answers[0])
        else:
            await self._send_completion(message.invocation_id, "Client didn't provide a result.", None)

    async def _send_completion(self, invocation_id: str, error: str | None, result: Any) -> None:
        completion = (
            Completion.with_error(invocation_id, error) if error else Completion.with_result(invocation_id, result)
        )
        try:
            await self._send_raw(self._encode(completion))
        except SignalRClientError as exc:
            log.debug("Completion for %s not sent: %s", invocation_id, exc)

    def _on_protocol_closed(self, generation: int, event: ConnectionClosed) -> None:
        if event.by_peer:
            text = f"Server returned an error on close: {event.error}" if event.error else ""
            self._tracer.emit(
                "close",
                url=self._base_url(),
                detail=f"Close message from the server{f': {event.error}' if event.error else ''}",
            )
            closed = ConnectionClosedError(text) if text else None
            if self._starting():
                self._fail_start(closed or ConnectionClosedError("the server closed the connection during start"))
            elif event.allow_reconnect:
                self._connection_lost(generation, closed)
            elif self._state is ConnectionState.CONNECTED:
                self._begin_stop(closed)
            return
        # Bytes that break the protocol (malformed or oversized record): the JS client closes the transport with
        # the parse error, which then counts as a lost connection.
        error = TransportFailed(f"invalid data from the server: {event.error}")
        self._tracer.emit("error", url=self._base_url(), detail=str(error))
        if self._starting():
            self._fail_start(error)
        else:
            self._connection_lost(generation, error)

    def _on_transport_close(self, generation: int, error: Exception | None) -> None:
        if generation != self._generation:
            return
        if self._starting():
            self._fail_start(error or TransportFailed("the server closed the connection during start"))
            return
        self._connection_lost(generation, error)

    def _starting(self) -> bool:
        """An attempt (start or reconnect) is in progress: a loss now fails that attempt."""
        return self._in_state(ConnectionState.CONNECTING, ConnectionState.RECONNECTING)

    def _in_state(self, *states: ConnectionState) -> bool:
        # A method, not ``self._state is …`` inline: mypy keeps narrowing ``self._state`` across the awaits and
        # callbacks that change it, and would call such a check impossible.
        return self._state in states

    def _fail_start(self, error: Exception) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._resolve_handshake(error)
        elif self._start_loss is None:
            self._start_loss = error  # the handshake is done but start() has not returned yet

    # --------------------------------------------------------------------------------------- keep-alive, timeout

    def _reset_server_timeout(self, generation: int) -> None:
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        self._timeout_handle = asyncio.get_running_loop().call_later(
            self._server_timeout, self._on_server_timeout, generation
        )

    def _on_server_timeout(self, generation: int) -> None:
        self._timeout_handle = None
        self._connection_lost(
            generation,
            ServerTimeout(
                f"Server timeout elapsed without receiving a message from the server. Nothing arrived for "
                f"{self._server_timeout:g} s: the service, or a proxy in between, stopped answering."
            ),
        )

    async def _keep_alive(self, generation: int) -> None:
        """Ping when ``keep_alive_interval`` passed without sending anything; sleeps until then, never spins."""
        while generation == self._generation:
            delay = self._last_send + self._keep_alive_interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if self._state is not ConnectionState.CONNECTED:
                await asyncio.sleep(self._keep_alive_interval)
                continue
            try:
                await self._send_ping()
            except SignalRClientError as exc:
                log.debug("Ping not sent: %s", exc)  # JS ignores ping failures; the transport reports the loss

    def _detach(self) -> HttpConnection | None:
        """Cut the current connection loose: its late callbacks and timers are ignored from now on (a new
        generation), and it is handed to the caller, who must stop it."""
        self._generation += 1
        self._cancel_timers()
        conn, self._conn = self._conn, None
        return conn

    def _cancel_timers(self) -> None:
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
            self._timeout_handle = None
        task, self._keep_alive_task = self._keep_alive_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # -------------------------------------------------------------------------------------- loss and reconnect

    def _connection_lost(self, generation: int, error: Exception | None) -> None:
        """The server side ended the connection (or timed out): reconnect, or close for good."""
        if generation != self._generation or self._state is not ConnectionState.CONNECTED:
            return
        conn = self._detach()
        self._fail_pending(
            error or SignalRClientError("Invocation canceled due to the underlying connection being closed.")
        )
        detail = f"connection lost: {error}" if error else "connection closed by the server"
        self._tracer.emit("error" if error else "close", url=self._base_url(conn), detail=detail)
        self.connection_id = None
        if not self._reconnect_delays:
            self._set_state(ConnectionState.DISCONNECTED)
            self._spawn(self._finish_close(conn, error))
            return
        self._set_state(ConnectionState.RECONNECTING)
        self._reconnect_task = asyncio.create_task(self._reconnect(conn, error))

    async def _finish_close(self, conn: HttpConnection | None, error: Exception | None) -> None:
        if conn is not None:
            await conn.stop(graceful=False)
        self._fire_close(error)

    async def _reconnect(self, old: HttpConnection | None, error: Exception | None) -> None:
        if old is not None:
            await old.stop(graceful=False)
        assert self._reconnect_delays is not None
        last: Exception | None = error
        started = time.monotonic()
        for attempt, delay in enumerate(self._reconnect_delays, 1):
            self._tracer.emit("reconnect", url=self._url, detail=f"attempt {attempt} in {delay:g} s")
            await asyncio.sleep(delay)
            if self._state is not ConnectionState.RECONNECTING:
                return
            try:
                await self._start_internal()
            except SignalRClientError as exc:
                last = exc
                self._tracer.emit("error", url=self._url, detail=f"reconnect attempt {attempt} failed: {exc}")
                continue
            self._reconnect_task = None
            self._set_state(ConnectionState.CONNECTED)
            self._tracer.emit(
                "reconnect",
                url=self._url,
                detail=f"reconnected after {time.monotonic() - started:.1f} s "
                f"({self.transport_name}, connection {self.connection_id})",
            )
            return
        self._reconnect_task = None
        self._tracer.emit("reconnect", url=self._url, detail=f"gave up after {len(self._reconnect_delays)} attempts")
        self._set_state(ConnectionState.DISCONNECTED)
        self._fire_close(last)

    # ----------------------------------------------------------------------------------------------- stopping

    def _begin_stop(self, error: Exception | None) -> None:
        """Enter DISCONNECTING now (so nothing else starts) and finish the stop in a task."""
        previous = self._state
        self._set_state(ConnectionState.DISCONNECTING)
        self._stop_task = asyncio.create_task(self._stop_internal(previous, error))

    async def _stop_internal(self, previous: ConnectionState, error: Exception | None) -> None:
        try:
            for task in (self._start_task, self._reconnect_task):
                if task is not None and not task.done():
                    task.cancel()
                    try:
                        await task
                    except BaseException:
                        pass
            self._reconnect_task = None
            conn = self._detach()
            protocol = self._protocol
            if conn is not None:
                if protocol is not None and protocol.state is State.OPEN:
                    protocol.close()  # JS: a Close message, best effort, before the transport closes
                    try:
                        await asyncio.wait_for(conn.send(protocol.data_to_send()), CLOSE_SEND_TIMEOUT)
                    except Exception as exc:
                        log.debug("Close message not sent: %s", exc)
                await conn.stop()
            self._fail_pending(error or SignalRClientError("Invocation canceled: the connection was stopped."))
            self.connection_id = None
        finally:
            self._stop_task = None
            self._set_state(ConnectionState.DISCONNECTED)
        if previous is not ConnectionState.CONNECTING:
            self._fire_close(error)

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _fire_close(self, error: Exception | None) -> None:
        if not self._started:
            return
        self._started = False
        for callback in list(self._close_callbacks):
            try:
                result = callback(error)
                if inspect.isawaitable(result):
                    self._spawn(_logged(result, "on_close callback"))
            except Exception:
                log.exception("on_close callback failed")

    # ------------------------------------------------------------------------------------------------ helpers

    def _set_state(self, new: ConnectionState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        for callback in list(self._state_callbacks):
            try:
                callback(old, new)
            except Exception:
                log.exception("state change callback failed")

    def _base_url(self, conn: HttpConnection | None = None) -> str:
        conn = conn or self._conn
        return conn.base_url if conn is not None and conn.base_url else self._url

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _logged(awaitable: Awaitable[Any], what: str) -> None:
    try:
        await awaitable
    except Exception as exc:
        log.error("%s failed: %s", what, redact_text(str(exc)))
