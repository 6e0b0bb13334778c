"""``GET /server/?hub=…``: the WebSocket endpoint app servers dial in Default and Classic mode.

Checks, in order: ``hub`` query (400), the server token (401 with ``WWW-Authenticate``, as on the client routes), the
service mode (403 in Serverless mode), the upgrade itself (400). Then binary frames carry service messages both ways
(:mod:`emulator.server_connections` acts on them). A text frame or bytes that are not service messages close only
that server connection (WebSocket code 1002); so do a missing handshake, a wrong protocol version and silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSCloseCode, WSMsgType, web

from signalr.messages import MessageTooLarge, ProtocolError
from signalr.redact import redact_text
from signalr.service_protocol import ServiceMessageReader

from .answers import Refused, hub_query, plain_text, request_line, unauthorized
from .auth import Unauthorized, authenticate_server
from .hub import SERVICE_KEY, SignalRService
from .server_connections import ServerConnection

__all__ = ["SERVERLESS_REFUSAL", "server_connect"]

log = logging.getLogger("emulator")

# Ours: the real service answers the upgrade with 403 too, but its text is not public.
SERVERLESS_REFUSAL = (
    "Azure SignalR Service is in Serverless mode: server connections are not allowed. Set the service mode to "
    "Default, or run the app server in Serverless mode."
)
_WS_CLOSE_TIMEOUT = 5.0
SERVICE_MESSAGE_TOO_BIG = "The service message exceeded the maximum message size."


async def server_connect(request: web.Request) -> web.StreamResponse:
    """One server connection, from the upgrade to its end; every client it carried is closed when it ends."""
    service: SignalRService = request.app[SERVICE_KEY]
    settings = service.settings
    try:
        hub_name = hub_query(request)
    except Refused as refused:
        return refused.response
    try:
        claims = authenticate_server(request, hub_name, settings.access_key)
    except Unauthorized as exc:
        log.info("401 %s: %s", request_line(request), exc)
        return unauthorized(exc)
    if settings.service_mode == "serverless":
        log.info("refused server connection hub=%s: the service is in Serverless mode", hub_name.lower())
        return plain_text(403, SERVERLESS_REFUSAL)
    # A frame holds at most one service message of max_service_message_size bytes and its VarInt length (up to 5
    # bytes); aiohttp refuses a longer frame from its header, before buffering it, and closes with 1009.
    ws = _ServerWebSocket(
        autoping=True,
        timeout=_WS_CLOSE_TIMEOUT,
        max_msg_size=settings.max_service_message_size + 6,
        compress=False,
    )
    if not ws.can_prepare(request).ok:
        return plain_text(400, "Not a valid WebSocket request.")
    server_id = str(claims.get("nameid") or request.headers.get("X-ASRS-Server-Id") or "-")
    server = ServerConnection(
        service.hub(hub_name), server_id, settings.server_ping_interval, settings.server_timeout, service.flow
    )
    log.info(
        "server connection %s opened hub=%s server=%s (X-ASRS-Server-Id: %s) cid=%s",
        server.connection_id,
        server.hub.name,
        server_id,
        request.headers.get("X-ASRS-Server-Id", "-"),
        request.rel_url.query.get("cid", "-"),
    )
    await ws.prepare(request)
    service.servers.add(server)
    reader = ServiceMessageReader(settings.max_service_message_size)
    writer = asyncio.create_task(_writer(ws, server), name=f"server-writer-{server.connection_id}")
    timers = asyncio.create_task(_timers(server, service), name=f"server-timers-{server.connection_id}")
    try:
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                try:
                    for service_message in reader.feed(message.data):
                        server.handle(service_message)
                        if server.ending is not None:
                            break
                except MessageTooLarge as exc:
                    log.info("closing server connection %s hub=%s: %s", server.connection_id, server.hub.name, exc)
                    server.end(WSCloseCode.MESSAGE_TOO_BIG, str(exc)[:120])
                except ProtocolError as exc:
                    _violation(server, f"invalid service message: {exc}")
            elif message.type is WSMsgType.TEXT:
                _violation(server, "text frames are not part of the service protocol")
            elif message.type is WSMsgType.ERROR:
                log.info("server connection %s error: %s", server.connection_id, redact_text(str(ws.exception())))
                break
            if server.ending is not None:
                break
    finally:
        service.servers.remove(server)
        server.end(1000, "closed")
        timers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timers
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({writer}, timeout=_WS_CLOSE_TIMEOUT + 1)
        if not writer.done():
            writer.cancel()
        server.dropped()
        log.info("server connection %s closed hub=%s (code %s)", server.connection_id, server.hub.name, ws.close_code)
    return ws


class _ServerWebSocket(web.WebSocketResponse):
    """A server connection's WebSocket: a frame over the size limit closes with 1009 and a reason (aiohttp's own
    close carries none)."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not message:
            message = SERVICE_MESSAGE_TOO_BIG.encode()
        return await super().close(code=code, message=message, drain=drain)


def _violation(server: ServerConnection, reason: str) -> None:
    log.info("closing server connection %s hub=%s: %s", server.connection_id, server.hub.name, reason)
    server.end(1002, reason[:120])


async def _writer(ws: web.WebSocketResponse, server: ServerConnection) -> None:
    """Send queued service messages as binary frames; once the connection is ending, flush and close the socket."""
    try:
        while True:
            data = server.take_outgoing()
            if data:
                await ws.send_bytes(data)
                continue
            if server.ending is not None:
                break
            await server.wait()
        code, reason = server.ending
        await ws.close(code=code, message=reason.encode("utf-8")[:120])
    except Exception as exc:  # the socket is gone (reset, closing): nothing left to send to
        log.debug("server writer ended %s: %r", server.connection_id, exc)


async def _timers(server: ServerConnection, service: SignalRService) -> None:
    settings = service.settings
    while server.ending is None:
        await asyncio.sleep(settings.server_tick)
        server.check_timers(time.monotonic(), settings.server_handshake_timeout)
