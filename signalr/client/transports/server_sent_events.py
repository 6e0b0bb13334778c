"""ServerSentEvents transport (``docs/protocol.md`` §3.6, §3.8): a GET event stream down, POSTs up.

The GET carries ``Accept: text/event-stream``, the custom headers, ``Authorization: Bearer`` and also
``access_token`` in the query, where a browser's EventSource must put it (trap 13: the header wins server-side).
The stream counts as open once the response headers *and* its first bytes arrived: the service writes ``:\\r\\n`` and
flushes at once, so silence means a proxy is buffering the stream (APIM without ``buffer-response="false"``,
docs/apim.md §4) and is reported now, where the SSE → LongPolling fallback can still act, instead of as a handshake
timeout later. The client stops by dropping the TCP connection.

An event stream carries text only: a binary hub protocol (MessagePack) cannot use it, and :meth:`connect` refuses
BINARY before any request, as the JS client's ``ServerSentEventsTransport`` does
(https://github.com/dotnet/aspnetcore/blob/main/src/SignalR/clients/ts/signalr/src/ServerSentEventsTransport.ts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import quote

import aiohttp

from signalr.hub_protocol import TransferFormat
from signalr.negotiate import TransportType
from signalr.sse import SseDecoder

from ..errors import SignalRClientError, TransportFailed, host_of
from ..http_context import MAX_ERROR_BODY, HttpContext, error_for_exception, error_for_status, to_url
from .base import HttpSender, OnClose, OnReceive, cancel_and_wait

__all__ = ["ServerSentEventsTransport"]

log = logging.getLogger(__name__)

MAX_EVENT_SIZE = 16 * 1024 * 1024
BUFFERING_HINT = 'APIM needs <forward-request buffer-response="false" /> on the connect GET operation'


class ServerSentEventsTransport:
    kind = TransportType.SERVER_SENT_EVENTS
    transfer_formats = frozenset({TransferFormat.TEXT})

    def __init__(
        self, context: HttpContext, on_receive: OnReceive, on_close: OnClose, *, open_timeout: float = 10.0
    ) -> None:
        self._context = context
        self._on_receive = on_receive
        self._on_close = on_close
        self._open_timeout = open_timeout
        self._sender = HttpSender(context, self.kind)
        self._url = ""
        self._response: aiohttp.ClientResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def inherent_keep_alive(self) -> bool:
        return False

    async def connect(self, url: str, transfer_format: TransferFormat) -> None:
        if transfer_format not in self.transfer_formats:
            raise TransportFailed("The Server-Sent Events transport only supports the 'Text' transfer format")
        self._url = url
        context = self._context
        get_url = url
        if context.access_token:
            get_url += ("&" if "?" in url else "?") + "access_token=" + quote(context.access_token, safe="")
        headers = context.request_headers()
        headers["Accept"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(
                context.session.get(to_url(get_url), headers=headers, timeout=aiohttp.ClientTimeout(total=None)),
                self._open_timeout,
            )
        except TimeoutError:
            error: SignalRClientError = TransportFailed(
                f"ServerSentEvents failed: no response headers from {host_of(url)} within {self._open_timeout:g} s "
                f"— the server hangs, or a proxy is buffering the stream ({BUFFERING_HINT})"
            )
            context.tracer.emit("connect", url=get_url, method="SSE", started=started, detail=str(error))
            raise error from None
        except Exception as exc:
            error = error_for_exception(exc, get_url, what="the event stream GET", transport=self.kind.value)
            context.tracer.emit("error", url=get_url, method="SSE", started=started, detail=str(error))
            raise error from None
        try:
            first = await self._open(response, get_url)
        except SignalRClientError as exc:
            response.close()
            context.tracer.emit(
                "connect", url=get_url, method="SSE", status=response.status, started=started, detail=str(exc)
            )
            raise
        except BaseException:  # cancelled while waiting for the first bytes
            response.close()
            raise
        context.tracer.emit(
            "connect", url=get_url, method="SSE", status=response.status, started=started, detail="event stream open"
        )
        self._response = response
        self._sender.open(url, transfer_format)
        self._task = asyncio.create_task(self._receive_loop(response, first))

    async def _open(self, response: aiohttp.ClientResponse, get_url: str) -> bytes:
        """Check the response and wait for its first bytes; returns them (usually the ``:\\r\\n`` preamble).

        Raises a :class:`SignalRClientError` saying why the stream is unusable; the caller traces it.
        """
        status = response.status
        if status != 200:
            body = await response.content.read(MAX_ERROR_BODY)
            raise error_for_status(
                status,
                body,
                get_url,
                what="the event stream GET",
                transport=self.kind.value,
                challenge=response.headers.get("WWW-Authenticate", ""),
            )
        content_type = response.headers.get("Content-Type", "")
        if not content_type.lower().startswith("text/event-stream"):
            raise TransportFailed(
                f"ServerSentEvents failed: {host_of(get_url)} answered the event stream GET with Content-Type "
                f"'{content_type or 'none'}' instead of text/event-stream"
            )
        try:
            first = await asyncio.wait_for(response.content.readany(), self._open_timeout)
        except TimeoutError:
            raise TransportFailed(
                f"ServerSentEvents failed: {host_of(get_url)} sent the event stream headers but no data within "
                f"{self._open_timeout:g} s — a proxy is buffering the stream ({BUFFERING_HINT})"
            ) from None
        except aiohttp.ClientError as exc:
            raise error_for_exception(exc, get_url, what="the event stream GET", transport=self.kind.value) from None
        if not first:
            raise TransportFailed(f"ServerSentEvents failed: {host_of(get_url)} ended the event stream at once")
        return first

    async def _receive_loop(self, response: aiohttp.ClientResponse, first: bytes) -> None:
        decoder = SseDecoder(MAX_EVENT_SIZE)
        error: Exception | None = None
        try:
            chunk = first
            while chunk:
                for payload in decoder.feed(chunk):
                    self._context.tracer.emit("receive", url=self._url, method="SSE", received=payload)
                    self._on_receive(payload)
                chunk = await response.content.readany()
        except ValueError as exc:  # an event larger than MAX_EVENT_SIZE
            error = TransportFailed(f"ServerSentEvents failed: {exc}")
        except aiohttp.ClientError as exc:
            error = error_for_exception(exc, self._url, what="the event stream", transport=self.kind.value)
        except Exception as exc:
            log.exception("SSE receive loop failed")
            error = TransportFailed(f"ServerSentEvents failed: {exc}")
        finally:
            response.close()
        if self._stopping:
            return
        self._context.tracer.emit(
            "close",
            url=self._url,
            method="SSE",
            detail=f"event stream ended by the server{f': {error}' if error else ''}",
        )
        self._on_close(error)

    async def send(self, data: bytes) -> None:
        await self._sender.send(data)

    async def stop(self, *, graceful: bool = True) -> None:
        if self._stopping:
            return
        self._stopping = True
        await self._sender.close()
        if await cancel_and_wait(self._task):
            self._context.tracer.emit(
                "close", url=self._url, method="SSE", detail="event stream closed by the client (TCP disconnect)"
            )
        if self._response is not None:
            self._response.close()
