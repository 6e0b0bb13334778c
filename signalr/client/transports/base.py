"""The transport contract, the POST sender the two HTTP transports share, and the task cancel all three stop with.

A transport moves bytes: :meth:`Transport.connect` opens it (raising a ``SignalRClientError`` when it cannot),
``on_receive`` gets every chunk of records the server sends (a WS frame, an SSE event, an LP response body; it may
hold several records, trap 8), ``on_close`` is called once when the server side ends it (``None`` for a clean close,
else the error), and :meth:`Transport.stop` closes it from the client side (then ``on_close`` is not
called). Hub protocol parsing is not the transport's business.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import aiohttp

from signalr.negotiate import TransportType

from ..errors import TransportFailed
from ..http_context import HTTP_TIMEOUT, MAX_ERROR_BODY, HttpContext, error_for_exception, error_for_status, to_url
from ..trace import is_only_pings

__all__ = ["HttpSender", "OnClose", "OnReceive", "Transport", "cancel_and_wait"]

OnReceive = Callable[[bytes], None]
OnClose = Callable[[Exception | None], None]


class Transport(Protocol):
    """What :class:`~signalr.client.http_connection.HttpConnection` needs from a transport."""

    kind: TransportType

    @property
    def inherent_keep_alive(self) -> bool:
        """True for LongPolling: the polls keep the connection alive, so no pings and no server timeout (trap 12)."""
        ...

    async def connect(self, url: str) -> None:
        """Open the transport on the connect URL (``…&id=<connectionToken>``); raises on failure."""
        ...

    async def send(self, data: bytes) -> None:
        """Send complete records; raises :class:`~signalr.client.errors.SignalRClientError` when they cannot go out."""
        ...

    async def stop(self, *, graceful: bool = True) -> None:
        """Close from the client side (WS close 1000 / LP DELETE / SSE disconnect); idempotent, never raises.

        ``graceful=False`` after the server already ended the connection: release resources, skip the LP DELETE
        (the JS client sends none then either).
        """
        ...


class HttpSender:
    """POSTs records to the connect URL for SSE and LongPolling (``docs/protocol.md`` §3.8).

    One POST at a time: the service may answer a concurrent POST with 409, so records queued while a POST is in flight
    go out together in the next one (like the JS client's ``TransportSendQueue``). ``send`` returns when the POST that
    carried its records has been answered with 200.
    """

    def __init__(self, context: HttpContext, transport: TransportType) -> None:
        self._context = context
        self._transport = transport
        self._url = ""
        self._buffer = bytearray()
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    def open(self, url: str) -> None:
        self._url = url

    async def send(self, data: bytes) -> None:
        if not self._url:
            raise RuntimeError("send before connect")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer += data
        self._waiters.append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await future

    async def close(self) -> None:
        """Abort the POST in flight; waiting senders get :class:`~signalr.client.errors.TransportFailed`."""
        await cancel_and_wait(self._task)
        _fail(self._waiters, self._stopped())
        self._waiters = []
        self._buffer.clear()

    def _stopped(self) -> TransportFailed:
        return TransportFailed(f"{self._transport.value}: the connection was stopped before the send")

    async def _drain(self) -> None:
        while self._buffer:
            data = bytes(self._buffer)
            waiters = self._waiters
            self._buffer.clear()
            self._waiters = []
            try:
                await self._post(data)
            except asyncio.CancelledError:
                _fail(waiters, self._stopped())
                raise
            except Exception as exc:
                _fail(waiters, exc)
            else:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _post(self, data: bytes) -> None:
        context = self._context
        headers = context.request_headers()
        headers["Content-Type"] = "text/plain;charset=UTF-8"
        kind = "ping" if is_only_pings(data) else "send"
        started = time.monotonic()
        name = self._transport.value
        try:
            async with context.session.post(
                to_url(self._url), data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
            ) as response:
                body = await response.content.read(MAX_ERROR_BODY)
                status = response.status
                challenge = response.headers.get("WWW-Authenticate", "")
        except Exception as exc:
            error = error_for_exception(exc, self._url, what="the send POST", transport=name)
            context.tracer.emit("error", url=self._url, method="POST", started=started, detail=str(error))
            raise error from None
        context.tracer.emit(
            kind,
            url=self._url,
            method="POST",
            status=status,
            started=started,
            size=len(data),
            records=data,
        )
        if status != 200:
            raise error_for_status(status, body, self._url, what="the send POST", transport=name, challenge=challenge)


async def cancel_and_wait(task: asyncio.Task[None] | None) -> bool:
    """Cancel ``task`` if it is still running and wait until it has ended; returns whether it was running."""
    if task is None or task.done():
        return False
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return True


def _fail(waiters: list[asyncio.Future[None]], error: Exception) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)
