"""The transport contract, the POST sender the two HTTP transports share, and the task cancel all three stop with.

A transport moves bytes: :meth:`Transport.connect` opens it for one transfer format (raising a ``SignalRClientError``
when it cannot), ``on_receive`` gets every chunk of messages the server sends (a WS frame, an SSE event, an LP
response body; it may hold several messages, trap 8), ``on_close`` is called once when the server side ends it
(``None`` for a clean close, else the error), and :meth:`Transport.stop` closes it from the client side (then
``on_close`` is not called). Hub protocol parsing is not the transport's business: the transfer format says how to
carry the bytes (TEXT: WebSocket text frames, ``text/plain`` POSTs; BINARY: binary frames,
``application/octet-stream`` POSTs), and the tracer, given the bytes, says what they were.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import aiohttp

from signalr.hub_protocol import TransferFormat
from signalr.negotiate import TransportType

from ..errors import TransportFailed
from ..http_context import HTTP_TIMEOUT, MAX_ERROR_BODY, HttpContext, error_for_exception, error_for_status, to_url

__all__ = ["HttpSender", "OnClose", "OnReceive", "Transport", "cancel_and_wait"]

_CONTENT_TYPES = {
    TransferFormat.TEXT: "text/plain;charset=UTF-8",
    TransferFormat.BINARY: "application/octet-stream",
}

OnReceive = Callable[[bytes], None]
OnClose = Callable[[Exception | None], None]


class Transport(Protocol):
    """What :class:`~signalr.client.http_connection.HttpConnection` needs from a transport."""

    kind: TransportType
    transfer_formats: frozenset[TransferFormat]
    """What the transport can carry, whatever the service offers: ServerSentEvents carries TEXT only."""

    @property
    def inherent_keep_alive(self) -> bool:
        """True for LongPolling: the polls keep the connection alive, so no pings and no server timeout (trap 12)."""
        ...

    async def connect(self, url: str, transfer_format: TransferFormat) -> None:
        """Open the transport on the connect URL (``…&id=<connectionToken>``) for the hub protocol's
        ``transfer_format``; raises on failure (ServerSentEvents: for BINARY, before any request)."""
        ...

    async def send(self, data: bytes) -> None:
        """Send complete messages; raises :class:`~signalr.client.errors.SignalRClientError` when they cannot go out."""
        ...

    async def stop(self, *, graceful: bool = True) -> None:
        """Close from the client side (WS close 1000 / LP DELETE / SSE disconnect); idempotent, never raises.

        ``graceful=False`` after the server already ended the connection: release resources, skip the LP DELETE
        (the JS client sends none then either).
        """
        ...


class HttpSender:
    """POSTs messages to the connect URL for SSE and LongPolling (``docs/protocol.md`` §3.8).

    One POST at a time: the service may answer a concurrent POST with 409, so messages queued while a POST is in
    flight go out together in the next one (like the JS client's ``TransportSendQueue``). ``send`` returns when the
    POST that carried its messages has been answered with 200.

    The body's ``Content-Type`` follows the transfer format as the JS client's HTTP clients set it:
    ``text/plain;charset=UTF-8`` for text, ``application/octet-stream`` for binary content
    (https://github.com/dotnet/aspnetcore/blob/main/src/SignalR/clients/ts/signalr/src/FetchHttpClient.ts).
    """

    def __init__(self, context: HttpContext, transport: TransportType) -> None:
        self._context = context
        self._transport = transport
        self._url = ""
        self._content_type = _CONTENT_TYPES[TransferFormat.TEXT]
        self._buffer = bytearray()
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    def open(self, url: str, transfer_format: TransferFormat) -> None:
        """Send to ``url`` from now on, bodies labelled for ``transfer_format``."""
        self._url = url
        self._content_type = _CONTENT_TYPES[transfer_format]

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
        headers["Content-Type"] = self._content_type
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
        context.tracer.emit("send", url=self._url, method="POST", status=status, started=started, sent=data)
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
