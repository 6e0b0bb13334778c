"""Default mode: the WebSocket *server connections* this app server dials to the service, as the ASP.NET SDK does.

Per hub, :class:`ServerConnections` keeps ``count`` connections (the SDK's ``InitialHubServerConnectionCount``, 5) to
``{ServerEndpoint or Endpoint}/server/?hub=<hub>&cid=<uuid>``, each authenticated with a fresh HS256 token (``aud`` on
the Endpoint's host, ``nameid`` = this server's id). Each connection: HandshakeRequest, a HandshakeResponse within
15 s, then service messages both ways; a keep-alive Ping when more than 5 s passed since the last one (checked on every
read), ``["status","1"]`` every 10 s, dropped after 30 s without hearing from the service; reconnects after 1, 2, 4,
8, 16, 32, then 60 s, plus up to 1 s of jitter. On stop: ``["shutdown","fin:0"]``, wait for ``finack``, close 1000.
Facts and sources: ``docs/default-mode.md``.

Failures are logged as one line a user can act on (401: the key; 403: the service is in Serverless mode; unreachable:
the address and the next delay), once per change, never with the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import random
import socket
import time
import uuid
from dataclasses import dataclass

import aiohttp

from signalr import service_protocol as sp
from signalr.connection_string import ConnectionString
from signalr.messages import ProtocolError
from signalr.redact import redact_text
from signalr.tokens import DEFAULT_LIFETIME, mint_token

from .carried_clients import ClientTable

__all__ = ["ServerConnectionTimers", "ServerConnections", "new_server_id", "retry_delay"]

log = logging.getLogger("server.connections")

PRODUCT = "signalr-apim-chat/0.1.0"
_RETRY_DELAYS = (1, 2, 4, 8, 16, 32)
_MAX_RETRY_DELAY = 60
_FINACK = ("shutdown", "finack")


def new_server_id() -> str:
    """``<machine>_<uuid>``, like the SDK's DefaultServerNameProvider."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex}"


def retry_delay(attempt: int) -> float:
    """Seconds before reconnect ``attempt`` (0-based): 1, 2, 4, 8, 16, 32, then 60, each plus 0-1 s of jitter."""
    base = _RETRY_DELAYS[attempt] if attempt < len(_RETRY_DELAYS) else _MAX_RETRY_DELAY
    return base + random.random()


def user_agent() -> str:
    return f"{PRODUCT} (Python {platform.python_version()}; {platform.system()}; {platform.machine()})"


@dataclass(frozen=True)
class ServerConnectionTimers:
    """The SDK's timers, in seconds (shortened only by tests)."""

    handshake_timeout: float = 15.0
    keepalive: float = 5.0
    status_interval: float = 10.0
    service_timeout: float = 30.0
    shutdown_timeout: float = 5.0


class _Refused(Exception):
    """A connection attempt that failed; ``str()`` is the line for the log."""


class _ServerConnection:
    """One server connection: dials, handshakes, reads until it ends, and dials again until stopped."""

    def __init__(self, pool: ServerConnections, index: int) -> None:
        self.pool = pool
        self.index = index
        self.connection_id = ""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._last_ping = 0.0
        self._finack = asyncio.Event()
        self._was_connected = False
        self.connected = asyncio.Event()

    @property
    def is_open(self) -> bool:
        ws = self._ws
        return ws is not None and not ws.closed and self.connected.is_set()

    async def send(self, message: sp.ServiceMessage) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionError("server connection is closed")
        try:
            await ws.send_bytes(sp.encode(message))
        except (aiohttp.ClientError, RuntimeError) as exc:
            raise ConnectionError(str(exc)) from None

    async def run(self) -> None:
        """Dial and serve until cancelled; every end of a connection is followed by a delayed retry."""
        attempt = 0
        while True:
            self._was_connected = False
            try:
                await self._session()
                reason = "closed"
            except _Refused as exc:
                reason = str(exc)
            except Exception:  # a defect must not end this connection for good: say so, then dial again
                log.exception("server connection %d failed unexpectedly", self.index)
                reason = "failed unexpectedly (see the error above)"
            if self._was_connected:
                attempt = 0  # it was up: the backoff starts again from 1 s
            delay = retry_delay(attempt)
            attempt += 1
            self.pool.report_failure(self, reason, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        pool = self.pool
        self.connection_id = str(uuid.uuid4())
        url = pool.connection.server_connection_url(pool.hub, self.connection_id)
        token = mint_token(
            pool.access_key,
            pool.connection.server_audience(pool.hub),
            lifetime=DEFAULT_LIFETIME,
            claims={"nameid": pool.server_id},
        )
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Requested-With": "XMLHttpRequest",
            "X-ASRS-Server-Id": pool.server_id,
            "Asrs-User-Agent": user_agent(),
        }
        try:
            ws = await pool.session.ws_connect(
                url, headers=headers, autoping=True, max_msg_size=pool.max_frame_size * 2, timeout=_ws_timeout(pool)
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise _Refused(_refusal(exc.status, pool.connection.server_endpoint)) from None
        except aiohttp.ClientConnectorError as exc:
            raise _Refused(
                f"cannot reach the service at {pool.connection.server_endpoint}: {exc.strerror or exc}"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Refused(f"cannot connect to {pool.connection.server_endpoint}: {type(exc).__name__}") from None
        self._ws = ws
        reader = sp.ServiceMessageReader(pool.max_frame_size)
        try:
            await self.send(sp.HandshakeRequest(version=1))
            await self._handshake(ws, reader)
            self.connected.set()
            self._was_connected = True
            pool.report_connected(self)
            await self._serve(ws, reader)
        except ProtocolError as exc:
            raise _Refused(f"the service sent bytes that are not the service protocol: {exc}") from None
        except ConnectionError as exc:
            raise _Refused(f"the connection broke: {exc}") from None
        finally:
            self.connected.clear()
            self._ws = None
            lost = pool.clients.link_lost(self)
            if lost:
                log.info("server connection %d closed: %d client(s) it carried are gone", self.index + 1, lost)
            await ws.close()

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse, reader: sp.ServiceMessageReader) -> None:
        deadline = time.monotonic() + self.pool.timers.handshake_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Refused("no handshake response from the service within 15 s")
            try:
                data = await _receive(ws, remaining)
            except TimeoutError:
                continue
            if data is None:
                raise _Refused(f"the service closed the connection during the handshake ({_close_text(ws)})")
            for message in reader.feed(data):
                if not isinstance(message, sp.HandshakeResponse):
                    raise _Refused(f"{type(message).__name__} received when waiting for the handshake response")
                if message.error:
                    raise _Refused(f"the service refused the handshake: {redact_text(message.error)[:300]}")
                if message.connection_id:
                    self.connection_id = message.connection_id
                return

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, reader: sp.ServiceMessageReader) -> None:
        pool = self.pool
        while True:
            try:
                data = await _receive(ws, pool.timers.service_timeout)
            except TimeoutError:
                raise _Refused(f"nothing heard from the service for {pool.timers.service_timeout:g} s") from None
            if data is None:
                raise _Refused(f"the service closed the connection ({_close_text(ws)})")
            for message in reader.feed(data):
                await self._dispatch(message)
            await self._keepalive()

    async def _dispatch(self, message: sp.ServiceMessage) -> None:
        if isinstance(message, sp.Ping):
            if message.get("echo") is not None:
                await self.send(message)
            elif message.messages[:2] == _FINACK:
                self._finack.set()
        elif isinstance(message, sp.OpenConnection | sp.ConnectionData | sp.CloseConnection):
            await self.pool.clients.handle(message, self)
        elif isinstance(message, sp.ServiceError):
            if message.error:
                raise _Refused(f"the service reported an error: {redact_text(message.error)[:300]}")
        elif isinstance(message, sp.ServiceEvent):
            log.info("service event on connection %d: %s", self.index + 1, redact_text(message.message)[:300])
        else:
            log.debug("ignored %s from the service", type(message).__name__)

    async def _keepalive(self) -> None:
        # The SDK pings when more than 5 s passed since its last ping, checked whenever something arrives; the
        # service pings every 5 s, so an idle connection still pings back.
        now = time.monotonic()
        if now - self._last_ping > self.pool.timers.keepalive:
            self._last_ping = now
            clients = self.pool.clients
            counts = ("#clientInHub", str(len(clients)), "#client", str(len(clients.on(self))))
            await self.send(sp.Ping(counts))

    async def offline(self) -> None:
        """Graceful stop: ``fin:0``, wait for ``finack`` (bounded), then close the socket with 1000."""
        ws = self._ws
        if ws is None or ws.closed:
            return
        with contextlib.suppress(ConnectionError):
            await self.send(sp.Ping(("shutdown", "fin:0")))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finack.wait(), self.pool.timers.shutdown_timeout)
        await ws.close(code=aiohttp.WSCloseCode.OK)


def _ws_timeout(pool: ServerConnections) -> aiohttp.ClientWSTimeout:
    return aiohttp.ClientWSTimeout(ws_receive=None, ws_close=pool.timers.shutdown_timeout)


async def _receive(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> bytes | None:
    """The next binary message, or ``None`` once the socket closed; raises TimeoutError after ``timeout``."""
    while True:
        message = await ws.receive(timeout=timeout)
        if message.type is aiohttp.WSMsgType.BINARY:
            data: bytes = message.data
            return data
        if message.type is aiohttp.WSMsgType.TEXT:
            raise ProtocolError("a text frame (the service protocol is binary)")
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return None
        if message.type is aiohttp.WSMsgType.ERROR:
            raise ConnectionError(str(ws.exception() or "WebSocket error"))


def _close_text(ws: aiohttp.ClientWebSocketResponse) -> str:
    code = ws.close_code
    return f"close code {code}" if code is not None else "no close code"


def _refusal(status: int, endpoint: str) -> str:
    """The log line for a refused WebSocket upgrade: what the status means for this user."""
    if status == 401:
        return (
            f"{endpoint} refused the server connection (401): the AccessKey in the connection string is not accepted; "
            "copy the connection string again from the portal's Keys page"
        )
    if status == 403:
        return (
            f"{endpoint} refused the server connection (403): the service is in Serverless mode (run chat-server "
            "--service-mode serverless, or set the service to Default) or its public network access is disabled"
        )
    if status == 404:
        return (
            f"{endpoint} has no /server/ endpoint (404): it is not an Azure SignalR Service in Default mode (a "
            "serverless-only emulator?); run chat-server --service-mode serverless"
        )
    return f"{endpoint} refused the server connection ({status})"


class ServerConnections:
    """The server connections of one hub, and the clients they carry.

    Call :meth:`start` inside the event loop, :meth:`stop` on shutdown. :meth:`wait_connected` waits for the first.
    """

    def __init__(
        self,
        connection: ConnectionString,
        hub: str,
        clients: ClientTable,
        *,
        count: int = 5,
        server_id: str | None = None,
        timers: ServerConnectionTimers | None = None,
        max_frame_size: int = 2 * 1024 * 1024,
    ) -> None:
        if connection.access_key is None:
            raise ValueError("server connections need an AccessKey connection string")
        self.connection = connection
        self.access_key = connection.access_key
        self.hub = hub
        self.clients = clients
        self.server_id = server_id or new_server_id()
        self.timers = timers or ServerConnectionTimers()
        self.max_frame_size = max_frame_size
        self._connections = [_ServerConnection(self, index) for index in range(count)]
        self._dialers: list[asyncio.Task[None]] = []
        self._ticker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._last_failure = ""
        self._last_failure_at = 0.0
        self._connected_count = 0
        self.stopping = False

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "start() first"
        return self._session

    @property
    def connected(self) -> int:
        """How many server connections are open now."""
        return sum(1 for c in self._connections if c.is_open)

    @property
    def count(self) -> int:
        return len(self._connections)

    def status(self) -> dict[str, int | str]:
        """For ``/healthz``: the mode's view of the service link."""
        return {"connected": self.connected, "wanted": self.count, "server_id": self.server_id}

    async def start(self) -> None:
        """Open the HTTP session and start dialling every connection (returns at once)."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, connect=15))
        self._dialers = [
            asyncio.create_task(c.run(), name=f"server-connection-{c.index + 1}") for c in self._connections
        ]
        self._ticker = asyncio.create_task(self._timers(), name="server-connection-timers")
        log.info(
            "Default mode: opening %d server connection(s) to %s (hub %s, server id %s)",
            self.count,
            self.connection.server_connection_url(self.hub, "").removesuffix("&cid="),
            self.hub.lower(),
            self.server_id,
        )

    async def wait_connected(self, timeout: float) -> bool:
        """Whether at least one connection is open within ``timeout`` seconds."""
        waits = [asyncio.ensure_future(c.connected.wait()) for c in self._connections]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return bool(done)

    async def stop(self) -> None:
        """Graceful shutdown: tell the service (fin/finack) on every open connection, close them, stop dialling."""
        self.stopping = True
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
        await asyncio.gather(*(c.offline() for c in self._connections if c.is_open), return_exceptions=True)
        tasks, self._dialers = self._dialers, []
        if ticker is not None:
            tasks.append(ticker)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _timers(self) -> None:
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(1.0 if self.timers.keepalive >= 1 else 0.1)
            now = time.monotonic()
            await self.clients.tick(now)
            if now - last_status >= self.timers.status_interval:
                last_status = now
                for connection in self._connections:
                    if connection.is_open:
                        with contextlib.suppress(ConnectionError):
                            await connection.send(sp.Ping(("status", "1")))

    # --- reporting: one line per change, never a token ---------------------------------------------------------

    def report_connected(self, connection: _ServerConnection) -> None:
        self._last_failure = ""
        connected = self.connected
        log.debug("server connection %d connected (id %s)", connection.index + 1, connection.connection_id)
        if connected != self._connected_count and (connected == 1 or connected == self.count):
            log.info("connected to the service: %d/%d server connection(s) open", connected, self.count)
        self._connected_count = connected

    def report_failure(self, connection: _ServerConnection, reason: str, delay: float) -> None:
        self._connected_count = self.connected
        if self.stopping:
            return
        now = time.monotonic()
        line = redact_text(reason)
        if line != self._last_failure or now - self._last_failure_at > 60:
            log.warning("server connection %d: %s; retrying in %.1f s", connection.index + 1, line, delay)
            self._last_failure, self._last_failure_at = line, now
        else:
            log.debug("server connection %d: %s; retrying in %.1f s", connection.index + 1, line, delay)
