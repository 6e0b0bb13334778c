"""LongPolling transport (``docs/protocol.md`` §3.7–§3.9): GET polls down, POSTs up, DELETE to stop.

Every request carries ``Authorization: Bearer`` and the custom headers (never ``access_token`` in the query: the
service ignores it on polls, trap 13). Polls add ``_=<epoch ms>`` against caches. The first poll must answer 200 at
once (it initialises the connection); then ``200`` + messages → dispatch and poll again, empty ``200`` → the poll timed
out, poll again, ``204`` → closed by the server, anything else → error. ``stop()`` aborts the pending poll and sends
DELETE; a 404 there is not an error (APIM's ``sse-lp`` profile has no DELETE operation, docs/apim.md §6: the service
then drops the connection after its poll interval).

Bodies are bytes both ways: a binary hub protocol's POSTs go as ``application/octet-stream`` (:class:`HttpSender`),
and poll bodies are handed on as they arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from signalr.hub_protocol import TransferFormat
from signalr.negotiate import TransportType

from ..errors import TransportFailed, apim_message
from ..http_context import MAX_ERROR_BODY, HttpContext, error_for_exception, error_for_status, read_limited, to_url
from .base import HttpSender, OnClose, OnReceive, cancel_and_wait

__all__ = ["LongPollingTransport"]

log = logging.getLogger(__name__)

POLL_TIMEOUT = 100.0  # JS LongPollingTransport: 100 s per poll; the service holds a poll up to 90 s
DELETE_TIMEOUT = 10.0
MAX_POLL_BODY = 16 * 1024 * 1024
# An empty 200 normally means the service held the poll until its timeout (90 s). A peer that answers empty at once,
# again and again, would make the loop spin: below this gap the next poll waits a little.
FAST_EMPTY_POLL = 0.05
EMPTY_POLL_PAUSE = 0.5


def poll_url(url: str) -> str:
    return f"{url}&_={int(time.time() * 1000)}"


class LongPollingTransport:
    kind = TransportType.LONG_POLLING
    transfer_formats = frozenset(TransferFormat)

    def __init__(self, context: HttpContext, on_receive: OnReceive, on_close: OnClose) -> None:
        self._context = context
        self._on_receive = on_receive
        self._on_close = on_close
        self._sender = HttpSender(context, self.kind)
        self._url = ""
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def inherent_keep_alive(self) -> bool:
        return True

    async def connect(self, url: str, transfer_format: TransferFormat) -> None:
        self._url = url
        first = poll_url(url)
        started = time.monotonic()
        try:
            status, body, challenge = await self._get(first)
        except Exception as exc:
            error = error_for_exception(exc, first, what="the first LongPolling poll", transport=self.kind.value)
            self._context.tracer.emit("error", url=first, method="GET", started=started, detail=str(error))
            raise error from None
        if status != 200:
            error = error_for_status(
                status, body, first, what="the first LongPolling poll", transport=self.kind.value, challenge=challenge
            )
            self._context.tracer.emit(
                "connect", url=first, method="GET", status=status, started=started, detail=str(error)
            )
            raise error
        self._context.tracer.emit(
            "connect", url=first, method="GET", status=status, started=started, size=len(body), detail="first poll"
        )
        self._sender.open(url, transfer_format)
        self._task = asyncio.create_task(self._poll_loop(body))

    async def _get(self, url: str) -> tuple[int, bytes, str]:
        """One poll: status, body and the ``WWW-Authenticate`` challenge (for a 401)."""
        async with self._context.session.get(
            to_url(url), headers=self._context.request_headers(), timeout=aiohttp.ClientTimeout(total=POLL_TIMEOUT)
        ) as response:
            body = await read_limited(response, MAX_POLL_BODY)
            return response.status, body, response.headers.get("WWW-Authenticate", "")

    async def _poll_loop(self, first_body: bytes) -> None:
        tracer = self._context.tracer
        error: Exception | None = None
        if first_body:  # messages may already ride on the first poll
            self._on_receive(first_body)
        try:
            while not self._stopping:
                url = poll_url(self._url)
                started = time.monotonic()
                try:
                    status, body, challenge = await self._get(url)
                except TimeoutError:
                    tracer.emit("poll", url=url, method="GET", started=started, detail="poll timed out, polling again")
                    continue
                except ValueError as exc:
                    error = TransportFailed(f"LongPolling failed: {exc}")
                    break
                except aiohttp.ClientError as exc:
                    error = error_for_exception(exc, url, what="a LongPolling poll", transport=self.kind.value)
                    break
                if status == 204:
                    tracer.emit(
                        "poll", url=url, method="GET", status=204, started=started, detail="closed by the server"
                    )
                    break
                if status != 200:
                    error = error_for_status(
                        status, body, url, what="a LongPolling poll", transport=self.kind.value, challenge=challenge
                    )
                    tracer.emit("poll", url=url, method="GET", status=status, started=started, detail=str(error))
                    break
                if body:
                    tracer.emit("poll", url=url, method="GET", status=200, started=started, received=body)
                    self._on_receive(body)
                else:
                    tracer.emit("poll", url=url, method="GET", status=200, started=started, detail="empty: poll again")
                    if time.monotonic() - started < FAST_EMPTY_POLL:
                        await asyncio.sleep(EMPTY_POLL_PAUSE)
        except Exception as exc:
            log.exception("LongPolling loop failed")
            error = TransportFailed(f"LongPolling failed: {exc}")
        if self._stopping:
            return
        self._on_close(error)

    async def send(self, data: bytes) -> None:
        await self._sender.send(data)

    async def stop(self, *, graceful: bool = True) -> None:
        if self._stopping:
            return
        self._stopping = True
        await self._sender.close()
        await cancel_and_wait(self._task)
        # Like the JS client, a client-side stop always sends DELETE, even when the last poll already saw 204 (the
        # Close message sent just before can end the connection first; the service then answers 404).
        if self._url and graceful:
            await self._delete()

    async def _delete(self) -> None:
        tracer = self._context.tracer
        started = time.monotonic()
        try:
            async with self._context.session.delete(
                to_url(self._url),
                headers=self._context.request_headers(),
                timeout=aiohttp.ClientTimeout(total=DELETE_TIMEOUT),
            ) as response:
                status = response.status
                body = await response.content.read(MAX_ERROR_BODY)
        except Exception as exc:
            error = error_for_exception(exc, self._url, what="the DELETE", transport=self.kind.value)
            tracer.emit("error", url=self._url, method="DELETE", started=started, detail=f"{error} (ignored)")
            return
        if status == 404 and apim_message(status, body) is not None:
            detail = "404 on DELETE ignored: the gateway has no DELETE operation (APIM sse-lp profile, apim.md §6)"
        elif status == 404:
            detail = "404 on DELETE ignored: the service had already closed the connection"
        elif status in (200, 202, 204):
            detail = "closed by the client"
        else:
            detail = f"DELETE answered {status} (ignored)"
        tracer.emit("close", url=self._url, method="DELETE", status=status, started=started, detail=detail)
