"""WebSockets transport (``docs/protocol.md`` §3.5): one socket, hub messages in text or binary frames.

The frame type follows the transfer format given at connect: text frames for a text protocol (JSON), binary frames
for a binary one (MessagePack). Every frame is of that type, the JSON handshake included, as the .NET client's
``WebSocketsTransport`` picks its message type once in ``StartAsync``
(https://github.com/dotnet/aspnetcore/blob/main/src/SignalR/clients/csharp/Http.Connections.Client/src/Internal/WebSocketsTransport.cs);
the JS client sends its handshake string in a text frame, and servers read either type. Received frames of either
type are handed on as bytes.

The token travels as ``Authorization: Bearer`` on the upgrade request, as Node's ``@microsoft/signalr`` sends it (a
browser would put it in the query, trap 13); custom headers go on the upgrade too. A normal close is code 1000; any
other close code or an unclean end is reported as ``WebSocket closed with status code: {code} ({reason}).`` (JS).

The trace's ``close`` row names the side that closed and the code that side sent: the server's code when its close
frame came first, ``1000`` when the client closed (aiohttp's ``close_code`` is the *answer* to our frame, or 1006
when none came, so it is not used for that row).
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from signalr.hub_protocol import TransferFormat
from signalr.negotiate import TransportType

from ..errors import SignalRClientError, TransportFailed, host_of
from ..http_context import HttpContext, error_for_exception, error_for_status, to_url
from .base import OnClose, OnReceive, cancel_and_wait

__all__ = ["WebSocketTransport"]

log = logging.getLogger(__name__)

MAX_FRAME_SIZE = 16 * 1024 * 1024


def ws_url(url: str) -> str:
    """``http`` → ``ws``, ``https`` → ``wss`` (the JS client's ``url.replace(/^http/, "ws")``)."""
    return "ws" + url[4:] if url.startswith("http") else url


class WebSocketTransport:
    kind = TransportType.WEBSOCKETS
    transfer_formats = frozenset(TransferFormat)

    def __init__(self, context: HttpContext, on_receive: OnReceive, on_close: OnClose) -> None:
        self._context = context
        self._on_receive = on_receive
        self._on_close = on_close
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._url = ""
        self._binary = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # The server's close frame (code, reason), once received: it decides who closed first.
        self._server_close: tuple[int, str] | None = None
        self._close_traced = False

    @property
    def inherent_keep_alive(self) -> bool:
        return False

    async def connect(self, url: str, transfer_format: TransferFormat) -> None:
        self._url = ws_url(url)
        self._binary = transfer_format is TransferFormat.BINARY
        context = self._context
        started = time.monotonic()
        try:
            self._ws = await context.session.ws_connect(
                to_url(self._url),
                headers=context.request_headers(),
                autoping=True,
                max_msg_size=MAX_FRAME_SIZE,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            body, context.refused_upgrade_body = context.refused_upgrade_body, b""
            challenge = exc.headers.get("WWW-Authenticate", "") if exc.headers else ""
            error = self._refusal(exc.status, body, challenge)
            context.tracer.emit(
                "connect",
                url=self._url,
                method="WS",
                status=exc.status,
                started=started,
                size=len(body),
                detail=str(error),
            )
            raise error from None
        except Exception as exc:
            error = error_for_exception(exc, self._url, what="the WebSockets upgrade", transport=self.kind.value)
            context.tracer.emit("error", url=self._url, method="WS", started=started, detail=str(error))
            raise error from None
        context.tracer.emit("connect", url=self._url, method="WS", status=101, started=started, detail="upgraded")
        self._task = asyncio.create_task(self._receive_loop(self._ws))

    def _refusal(self, status: int, body: bytes, challenge: str) -> SignalRClientError:
        """Why the upgrade was refused, in terms a user can act on."""
        error = error_for_status(
            status, body, self._url, what="the WebSockets upgrade", transport=self.kind.value, challenge=challenge
        )
        if isinstance(error, TransportFailed) and status in (200, 204):
            # A GET that reached an HTTP API: APIM's sse-lp profile forwards the upgrade as a plain GET (a LongPolling
            # poll for the service) and never switches protocols (docs/apim.md §2 rule 5).
            return TransportFailed(
                f"WebSockets failed: {host_of(self._url)} answered the upgrade with HTTP {status} instead of 101 "
                f"Switching Protocols — something in between does not pass WebSockets (an APIM instance with the "
                f"sse-lp profile has only an HTTP API on client/); no fallback from WebSockets, choose sse, "
                f"longpolling or sse-lp for this gateway"
            )
        return error

    async def _receive_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        error: Exception | None = None
        reason = ""
        try:
            while True:
                message = await ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    data = message.data.encode("utf-8")
                elif message.type is aiohttp.WSMsgType.BINARY:
                    data = message.data
                elif message.type is aiohttp.WSMsgType.CLOSE:
                    reason = str(message.extra or "")
                    self._server_close = (int(message.data), reason)
                    break
                elif message.type is aiohttp.WSMsgType.ERROR:
                    error = TransportFailed(f"WebSockets failed: {ws.exception() or 'socket error'}")
                    break
                elif message.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
                else:
                    continue
                self._context.tracer.emit("receive", url=self._url, method="WS", received=data)
                self._on_receive(data)
        except Exception as exc:  # a receive callback must never escape into aiohttp
            log.exception("WebSocket receive loop failed")
            error = TransportFailed(f"WebSockets failed: {exc}")
        if self._stopping:
            return  # stop() traces the close
        if not ws.closed:
            await ws.close()
        # The server's code when its close frame came; otherwise the connection ended without one (1006).
        code = (
            self._server_close[0] if self._server_close else int(ws.close_code or aiohttp.WSCloseCode.ABNORMAL_CLOSURE)
        )
        if error is None and code != aiohttp.WSCloseCode.OK:
            # JS WebSocketTransport: an unclean close or a code other than 1000 is an error.
            error = TransportFailed(f"WebSocket closed with status code: {code} ({reason or 'no reason given'}).")
        self._trace_close(code, f"closed by the server ({code}){f': {error}' if error else ''}")
        self._on_close(error)

    def _trace_close(self, code: int, detail: str) -> None:
        """One ``close`` row per socket: ``code`` is what the side named in ``detail`` sent."""
        if self._close_traced:
            return
        self._close_traced = True
        self._context.tracer.emit("close", url=self._url, method="WS", status=code, detail=detail)

    async def send(self, data: bytes) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise TransportFailed("WebSockets: the socket is not open")
        try:
            if self._binary:
                await ws.send_bytes(data)
            else:
                await ws.send_str(data.decode("utf-8"))
        except Exception as exc:
            raise TransportFailed(f"WebSockets: sending failed: {exc}") from None
        self._context.tracer.emit("send", url=self._url, method="WS", sent=data)

    async def stop(self, *, graceful: bool = True) -> None:
        self._stopping = True
        ws = self._ws
        sent_close = ws is not None and not ws.closed
        if ws is not None and sent_close:
            try:
                await ws.close(code=aiohttp.WSCloseCode.OK)
            except Exception as exc:
                log.debug("WebSocket close failed: %s", exc)
        task = self._task
        if task is not None and not task.done():
            # close() has ended the receive in progress; cancel only if the loop is stuck in a callback.
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if not done:
                await cancel_and_wait(task)
        if ws is None:
            return
        if self._server_close is not None:
            # The server's close frame came before ours (the receive loop saw it): it closed, with its code.
            code, reason = self._server_close
            self._trace_close(code, f"closed by the server ({code}){f': {reason}' if reason else ''}")
            return
        if not sent_close:
            # The socket ended before stop() could close it, without a close frame (aiohttp's 1006).
            code = int(aiohttp.WSCloseCode.ABNORMAL_CLOSURE)
            self._trace_close(code, f"the connection ended without a close frame ({code})")
            return
        detail = "closed by the client (1000)"
        answer = ws.close_code
        if answer is None or answer == aiohttp.WSCloseCode.ABNORMAL_CLOSURE:
            detail += "; no close frame came back from the server"
        elif answer != aiohttp.WSCloseCode.OK:
            detail += f"; the server answered {int(answer)}"
        self._trace_close(int(aiohttp.WSCloseCode.OK), detail)
