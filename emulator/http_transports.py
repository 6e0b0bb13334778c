"""The transports over plain HTTP requests on ``/client/``: Server-Sent Events (``docs/protocol.md`` §3.6) and
LongPolling (§3.7), with the ``POST`` that carries their clients' records (§3.8) and the ``DELETE`` that ends a
LongPolling connection (§3.9)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from signalr.negotiate import TransportType
from signalr.sse import SSE_PREAMBLE, encode_event

from .answers import Refused, plain_text
from .client_requests import check_transport, find_connection, service_of, start_transport
from .connection import ClientConnection
from .waker import Waker

__all__ = ["NO_CACHE", "SSE_HEADERS", "connect_delete", "connect_send", "long_poll", "server_sent_events"]

log = logging.getLogger("emulator")

NO_CACHE: Mapping[str, str] = {
    "Cache-Control": "no-cache, no-store",
    "Pragma": "no-cache",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}
# Built once: every poll answer and POST reply copies one of these instead of assembling its headers.
_POLL_HEADERS = CIMultiDictProxy(CIMultiDict({**NO_CACHE, "Content-Type": "application/octet-stream"}))
_NO_CACHE_HEADERS = CIMultiDictProxy(CIMultiDict(NO_CACHE))
SSE_HEADERS: Mapping[str, str] = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache,no-store",
    "Pragma": "no-cache",
    "Content-Encoding": "identity",
}


async def server_sent_events(request: web.Request) -> web.StreamResponse:
    """§3.6: ``:\\r\\n`` first, then one event per record written by its sender (:class:`_EventStreamSink`), or per
    flush of the outbound queue when records had to wait."""
    service = service_of(request)
    connection, identity = find_connection(request, allow_query_token=True)
    if connection.closed:
        raise Refused(plain_text(404, "No Connection with that ID"))
    check_transport(connection, TransportType.SERVER_SENT_EVENTS)
    start_transport(connection, TransportType.SERVER_SENT_EVENTS, request, identity)
    response = web.StreamResponse(headers=SSE_HEADERS)
    try:
        await response.prepare(request)
        await response.write(SSE_PREAMBLE)
        if service.flow.enabled:
            service.flow.connected(connection)
        sink = _EventStreamSink(connection, request, chunked=response.headers.get("Transfer-Encoding") == "chunked")
        while True:
            data = connection.take_outgoing()
            if data:
                await response.write(encode_event(data))
                continue
            if connection.closed:
                break
            await sink.sleep()
        await response.write_eof()
    except ConnectionError as exc:
        log.debug("event stream ended id=%s: %s", connection.connection_id, exc)
    finally:
        # The SSE client stops by dropping the TCP connection (§3.6): that is a normal close.
        if not connection.closed:
            connection.close(None, by_peer=True)
        service.forget(connection)
    return response


class _EventStreamSink(Waker):
    """How a client's records reach its event stream: written straight to the socket by the sender, one event each,
    while nothing waits before them and the socket's buffer is below the high-water mark (:meth:`push`: no task
    wake-up per record, and one event built per broadcast, not per recipient); else queued on the connection, and the
    stream's handler, asleep in :meth:`sleep`, is woken to write them with backpressure (:meth:`kick`)."""

    __slots__ = ("chunked", "transport")

    def __init__(self, connection: ClientConnection, request: web.Request, *, chunked: bool) -> None:
        Waker.__init__(self)
        self.transport = request.transport
        self.chunked = chunked  # HTTP/1.1: every write is one chunk of the chunked transfer coding
        connection.attach_sink(self.push, self._wake)

    def push(self, record: bytes) -> bool:
        """Write ``record`` as one event now if the socket is open and takes it (else the caller queues it)."""
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_write_buffer_size() > _DIRECT_WRITE_LIMIT:
            return False
        transport.write(_event_bytes(record, self.chunked))
        return True

    def sleep(self) -> asyncio.Future[None]:
        """What the handler awaits when the queue is empty and the connection open: resolved when records were
        queued or the connection closed (the connection calls the sink's wake-up then)."""
        return self._sleep()


_DIRECT_WRITE_LIMIT = 64 * 1024  # asyncio's default high-water mark: past it, records queue on the connection
_last_event: tuple[bytes, bool, bytes] = (b"", False, b"")


def _event_bytes(record: bytes, chunked: bool) -> bytes:
    """``record`` as one SSE event, as one chunk when ``chunked``. A broadcast hands every recipient the same bytes
    object, so the last one built is kept and reused while the same record comes again."""
    global _last_event
    last_record, last_chunked, data = _last_event
    if record is last_record and chunked is last_chunked:
        return data
    event = encode_event(record)
    data = b"%x\r\n%b\r\n" % (len(event), event) if chunked else event
    _last_event = (record, chunked, data)
    return data


def _poll_response(data: bytes | None) -> web.Response:
    """A poll's answer (§3.7): 200 with the records (empty: poll again), or 204 for ``None`` (closed or superseded)."""
    if data is None:
        return web.Response(status=204, headers=_NO_CACHE_HEADERS)
    return web.Response(status=200, body=data, headers=_POLL_HEADERS)


async def long_poll(request: web.Request) -> web.StreamResponse:
    """§3.7: first poll 200 empty at once; later polls held until data, timeout (200 empty) or close (204)."""
    service = service_of(request)
    connection, identity = find_connection(request, allow_query_token=False, repeated=True)
    check_transport(connection, TransportType.LONG_POLLING)
    if connection.transport is None:
        start_transport(connection, TransportType.LONG_POLLING, request, identity)
        connection.end_poll(connection.begin_poll())
        if service.flow.enabled:
            service.flow.connected(connection)
        return _poll_response(b"")
    generation = connection.begin_poll()
    deadline = time.monotonic() + service.settings.poll_timeout
    try:
        while True:
            if connection.poll_superseded(generation):
                return _poll_response(None)
            data = connection.take_outgoing()
            if data:
                if service.flow.enabled:
                    service.flow.polled(connection, len(data))
                return _poll_response(data)
            if connection.closed:
                service.forget(connection)
                return _poll_response(None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _poll_response(b"")
            await connection.wait(remaining)
    finally:
        connection.end_poll(generation)


# --- connect: POST and DELETE ------------------------------------------------------------------------------------


async def connect_send(request: web.Request) -> web.Response:
    """§3.8: ``POST /client/?id=…`` carries one or more records from an SSE or LongPolling client."""
    try:
        connection, _ = find_connection(request, allow_query_token=False, repeated=True)
    except Refused as refused:
        return refused.response
    if connection.transport is TransportType.WEBSOCKETS:
        return plain_text(405, "POST requests are not allowed for WebSocket connections.")
    if connection.closed:
        return web.Response(status=404)
    async with connection.post_lock:
        # Fed chunk by chunk: the record reader bounds each record, so a huge body cannot grow memory.
        async for chunk in request.content.iter_any():
            await connection.receive_data(chunk)
            if connection.closed:
                break
    return web.Response(status=200, headers=_NO_CACHE_HEADERS)


async def connect_delete(request: web.Request) -> web.Response:
    """§3.9: ``DELETE /client/?id=…`` ends a LongPolling connection: 202, and the pending poll answers 204."""
    try:
        connection, _ = find_connection(request, allow_query_token=False, repeated=True)
    except Refused as refused:
        return refused.response
    if connection.transport is not TransportType.LONG_POLLING:
        return plain_text(400, "Cannot terminate this connection using the DELETE endpoint.")
    connection.close(None, by_peer=True)
    connection.discard_outgoing()
    if not connection.polling:
        service_of(request).forget(connection)
    return web.Response(status=202, content_type="text/plain", headers=NO_CACHE)
