"""The client endpoint: WebSocket upgrades on ``/client/hubs/{hub}`` and ``/client/?hub={hub}``
(https://learn.microsoft.com/azure/azure-web-pubsub/concept-client-protocols#service-endpoints).

Before the upgrade: the hub name, the access token (``access_token`` query or ``Authorization: Bearer``; 401 with a
plain-text reason otherwise) and, when the hub has an event handler, the blocking ``connect`` event, whose answer may
set the user, groups, roles and subprotocol, or refuse the client with its 4xx status. A reliable client resumes with
``awps_connection_id`` and ``awps_reconnection_token`` instead of a token
(https://learn.microsoft.com/azure/azure-web-pubsub/howto-develop-reliable-clients); an unknown session gets
``disconnected`` and close code 1008, which tells the client not to try again.

After the upgrade, frames are handled one at a time, in order (user events are blocking: the next frame waits for the
event handler's answer). A frame that is not a valid request ends the connection with ``disconnected`` and 1008
("Service declines the client if the message does not match the described format",
https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/azure-web-pubsub/includes/reference-json-requests.md);
a failed request with an ``ackId`` is answered with an ack error (``Forbidden``, ``Duplicate``, ``BadRequest``,
``InvocationFailed``), one without ends the connection the same way
(https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/azure-web-pubsub/concept-ack.md). A frame larger
than the service's 1 MB limit closes with 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from signalr.redact import redact_text
from webpubsub.events import (
    CONTENT_TYPE_BINARY,
    CONTENT_TYPE_TEXT,
    ConnectRequest,
    EventKind,
    InvalidEvent,
    connect_body,
    encode_user_data,
    parse_connect_response,
    parse_user_event_response,
)
from webpubsub.subprotocol import (
    SUBPROTOCOLS,
    AckError,
    DataType,
    Disconnected,
    InvalidMessage,
    JoinGroup,
    LeaveGroup,
    PingRequest,
    Pong,
    Request,
    SendEvent,
    SendToGroup,
    SequenceAck,
    decode_request,
    encode_response,
)
from webpubsub.tokens import TokenError, verify_client_token

from .connection import ClientConnection, Dialect, Outgoing, new_connection_id
from .event_handler import EventTarget, HandlerFailed
from .flow import dialect_counts
from .service import SERVICE_KEY, WebPubSubService
from .settings import HUB_NAME, INVALID_HUB_NAME

__all__ = ["INVOCATION_FAILED", "client_connect"]

log = logging.getLogger("webpubsub.emulator")

# "InvocationFailed: Event handler is not registered or response is not a success status code" (concept-ack.md).
INVOCATION_FAILED = "InvocationFailed"
MAX_GROUP_NAME = 1024  # "Target group name, which length should be greater than 0 and less than 1025" (REST API)
_CLOSE_TIMEOUT = 5.0
# A reliable client that closes with 1000, or with no status (1005, which aiohttp reports as 0 or 1005), has ended its
# session; any other end keeps the session for --reconnect-window. That includes 1001: a gateway that loses the client
# without a close frame (apim-gateway, and a relay such as APIM) ends the service side with 1001 "going away", and the
# client comes back through it with awps_connection_id and awps_reconnection_token.
_DELIBERATE_CLOSE_CODES = frozenset({0, 1000, 1005})
_SECRET_QUERY = frozenset({"access_token", "awps_reconnection_token"})
_SECRET_HEADERS = frozenset({"authorization", "cookie", "ocp-apim-subscription-key"})


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _service(request: web.Request) -> WebPubSubService:
    return request.app[SERVICE_KEY]


def _hub_name(request: web.Request) -> str:
    hub = request.match_info.get("hub") or request.rel_url.query.get("hub")
    if not hub:
        raise _Refused(_text(400, "Invalid value of 'hub': the hub is required (/client/hubs/{hub} or ?hub=)."))
    if not HUB_NAME.match(hub):
        raise _Refused(_text(400, f"Invalid value of 'hub'. {INVALID_HUB_NAME}"))
    return hub.lower()


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None
    values = request.rel_url.query.getall("access_token", [])
    return str(values[-1]) if values and values[-1] else None


def _offered_subprotocols(request: web.Request) -> list[str]:
    header = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    return [p.strip() for p in header.split(",") if p.strip()][:16]


def _string_claims(claims: dict[str, Any]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in claims.items():
        values = value if isinstance(value, list) else [value]
        result[str(name)] = [
            v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v) for v in values
        ]
    return result


def _claim_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _request_query(request: web.Request) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in request.rel_url.query.items():
        if key not in _SECRET_QUERY:
            query.setdefault(key, []).append(value)
    return query


def _request_headers(request: web.Request) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for key, value in request.headers.items():
        if key.lower() not in _SECRET_HEADERS:
            headers.setdefault(key, []).append(value)
    return headers


async def client_connect(request: web.Request) -> web.StreamResponse:
    """``GET /client/hubs/{hub}`` and ``GET /client/?hub=``: a WebSocket upgrade (anything else: 400)."""
    try:
        hub = _hub_name(request)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _text(400, "Not a WebSocket request: the client endpoint only accepts WebSocket upgrades.")
        resume_id = request.rel_url.query.get("awps_connection_id")
        if resume_id is not None:
            return await _resume(request, hub, resume_id)
        return await _connect(request, hub)
    except _Refused as refused:
        log.info("refused %s %s: %d", request.method, redact_text(request.path_qs[:256]), refused.response.status)
        return refused.response


async def _connect(request: web.Request, hub: str) -> web.StreamResponse:
    service = _service(request)
    token = _bearer(request)
    if token is None:
        raise _Refused(_text(401, "Unauthorized: no access token (access_token query or Authorization: Bearer)."))
    try:
        claims = verify_client_token(token, service.settings.access_key, hub)
    except TokenError as exc:
        raise _Refused(_text(401, f"Unauthorized: the access token is invalid ({exc}).")) from None
    offered = _offered_subprotocols(request)
    subprotocol = next((p for p in offered if p in SUBPROTOCOLS), None)
    connection_id = new_connection_id()
    user_id = claims.user_id
    roles = set(claims.roles)
    groups = list(claims.groups)
    states: str | None = None
    query = _request_query(request)
    headers = _request_headers(request)
    if service.events.handles(hub):
        body = connect_body(
            ConnectRequest(claims=_string_claims(claims.claims), query=query, headers=headers, subprotocols=offered)
        )
        target = EventTarget(hub, connection_id, user_id, subprotocol, None)
        try:
            answer = await service.events.post(target, EventKind.CONNECT, body)
            decided = parse_connect_response(answer.body, offered)
        except HandlerFailed as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                detail = exc.body[:4096].decode("utf-8", "replace") or "The event handler refused the connection."
                log.info("connect refused by the event handler hub=%s: %d", hub, exc.status)
                raise _Refused(_text(exc.status, detail)) from None
            log.warning("connect event hub=%s failed: %s", hub, exc)
            raise _Refused(_text(500, f"The connect event failed: {exc}")) from None
        except InvalidEvent as exc:
            log.warning("connect event hub=%s answered badly: %s", hub, exc)
            raise _Refused(_text(500, f"The event handler's answer to the connect event is invalid: {exc}")) from None
        user_id = decided.user_id or user_id
        roles.update(decided.roles)
        groups.extend(decided.groups)
        if decided.subprotocol is not None:
            subprotocol = decided.subprotocol
        states = answer.states
    connection = ClientConnection(
        hub=hub,
        connection_id=connection_id,
        user_id=user_id,
        roles=roles,
        subprotocol=subprotocol,
        claims=claims.claims,
        max_buffer_size=service.settings.max_buffer_size,
    )
    connection.states = states
    connection.query = query
    connection.request_headers = headers
    ws = _socket(service, subprotocol)
    if not ws.can_prepare(request).ok:
        return _text(400, "Not a valid WebSocket request.")
    await ws.prepare(request)
    if service.flow.enabled:
        service.flow.upgraded(connection, resumed=False)
    generation = connection.attach(resumed=False)
    service.register(connection, dict.fromkeys(g for g in groups if 0 < len(g) <= MAX_GROUP_NAME))
    await _serve(service, request, connection, ws, generation)
    return ws


async def _resume(request: web.Request, hub: str, connection_id: str) -> web.StreamResponse:
    service = _service(request)
    token = request.rel_url.query.get("awps_reconnection_token", "")
    connection = service.find(hub, connection_id)
    valid = (
        connection is not None
        and connection.reconnection_token is not None
        and not connection.closed
        and hmac.compare_digest(connection.reconnection_token.encode(), token.encode("utf-8", "surrogatepass"))
    )
    offered = _offered_subprotocols(request)
    subprotocol = next((p for p in offered if p in SUBPROTOCOLS), None)
    ws = _socket(service, subprotocol)
    if not ws.can_prepare(request).ok:
        return _text(400, "Not a valid WebSocket request.")
    await ws.prepare(request)
    if not valid or connection is None:
        log.info("resume refused hub=%s: no such session (or a wrong reconnection token)", hub)
        await ws.send_str(encode_response(Disconnected("The connection cannot be resumed: it no longer exists.")))
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"The connection no longer exists.")
        return ws
    log.info("resumed hub=%s id=%s (%d messages to resend)", hub, connection_id, len(connection.unacked))
    if service.flow.enabled:
        service.flow.upgraded(connection, resumed=True)
    generation = connection.attach(resumed=True)
    await _serve(service, request, connection, ws, generation)
    return ws


def _socket(service: WebPubSubService, subprotocol: str | None) -> web.WebSocketResponse:
    return _ClientWebSocket(
        service.settings.max_message_size,
        protocols=(subprotocol,) if subprotocol else (),
        autoping=True,
        timeout=_CLOSE_TIMEOUT,
        max_msg_size=service.settings.max_message_size + 1,
        compress=False,
    )


class _ClientWebSocket(web.WebSocketResponse):
    """A client's socket: a frame over the size limit gets ``disconnected`` with the reason before the 1009 close."""

    def __init__(self, max_message_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.too_big = f"The message exceeded the maximum message size of {max_message_size} bytes."
        self.connection: ClientConnection | None = None

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed:
            connection = self.connection
            if connection is not None and connection.dialect != Dialect.PLAIN:
                with contextlib.suppress(Exception):
                    await self.send_str(encode_response(Disconnected(self.too_big)))
            message = message or self.too_big.encode()
        return await super().close(code=code, message=message, drain=drain)


async def _serve(
    service: WebPubSubService,
    request: web.Request,
    connection: ClientConnection,
    ws: web.WebSocketResponse,
    generation: int,
) -> None:
    """Run the writer and read frames until the socket or the connection ends; then end or detach it."""
    if isinstance(ws, _ClientWebSocket):
        ws.connection = connection
    transport = request.transport
    connection.abort_socket = transport.abort if transport is not None else None
    writer_ready = transport is not None  # (uvloop's transports are no asyncio.Transport subclass)
    writer = asyncio.create_task(
        _writer(ws, request, connection, generation), name=f"wps-writer-{connection.connection_id}"
    )
    if writer_ready:
        # Frames queued before now (connected, resent ones) go first, through the writer; later ones directly.
        connection.use_transport(transport, request.protocol)
    try:
        async for message in ws:
            if connection.closed or connection.socket_generation != generation:
                break
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                try:
                    await _handle_frame(service, connection, message.data, message.type is WSMsgType.BINARY)
                except Exception:  # a bug must end this connection, never the emulator or other connections
                    log.exception("internal error hub=%s id=%s", connection.hub, connection.connection_id)
                    _decline(service, connection, "InternalServerError: the request could not be processed.")
            elif message.type is WSMsgType.ERROR:
                log.info("websocket error id=%s: %s", connection.connection_id, redact_text(str(ws.exception())))
                break
            if connection.closed:
                break
    finally:
        if connection.socket_generation == generation:
            if connection.closed:
                service.end(connection, connection.close_reason)
            elif connection.dialect == Dialect.RELIABLE and ws.close_code not in _DELIBERATE_CLOSE_CODES:
                log.info(
                    "socket dropped hub=%s id=%s (code %s): session kept",
                    connection.hub,
                    connection.connection_id,
                    ws.close_code,
                )
                connection.detach(generation, time.monotonic())
                service.detached(connection)
            else:
                code = ws.close_code
                service.end(connection, None if code in (None, 1000, 1001) else f"WebSocket closed with code {code}.")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({writer}, timeout=_CLOSE_TIMEOUT + 1)
        if not writer.done():
            writer.cancel()


async def _writer(
    ws: web.WebSocketResponse, request: web.Request, connection: ClientConnection, generation: int
) -> None:
    """Write queued frames (complete WebSocket frames, built once per broadcast) straight to the socket, waiting while
    it is congested; once the connection closes, write what is left and close the socket with its code."""
    transport = request.transport
    protocol = request.protocol
    try:
        while connection.socket_generation == generation:
            data = connection.take_outgoing()
            if data:
                if transport is None or transport.is_closing():
                    break
                transport.write(data)
                if protocol.writing_paused:
                    await protocol._drain_helper()  # as aiohttp's own writers wait for a congested socket
                continue
            if connection.closed or not connection.socket_attached:
                break
            waiter = connection.idle()
            if waiter is not None:
                await waiter
        if connection.closed and connection.socket_generation == generation:
            reason = (connection.close_reason or "").encode("utf-8")[:120]
            await ws.close(code=connection.close_code, message=reason)
        elif not ws.closed and connection.socket_generation != generation:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"Replaced by a newer connection.")
    except Exception as exc:  # the socket is gone (reset, aborted, closing): nothing left to send to
        log.debug("writer ended id=%s: %r", connection.connection_id, exc)


# --- requests ---------------------------------------------------------------------------------------------------------


async def _handle_frame(
    service: WebPubSubService, connection: ClientConnection, data: str | bytes, binary: bool
) -> None:
    if connection.dialect == Dialect.PLAIN:
        await _plain_message(service, connection, data, binary)
        return
    try:
        request = decode_request(data)
    except InvalidMessage as exc:
        _decline(service, connection, f"Invalid message: {exc}")
        return
    await _handle_request(service, connection, request)


def _decline(service: WebPubSubService, connection: ClientConnection, reason: str) -> None:
    log.info("closing hub=%s id=%s: %s", connection.hub, connection.connection_id, redact_text(reason))
    connection.close(reason)
    service.end(connection, reason)


def _fail(service: WebPubSubService, connection: ClientConnection, ack_id: int | None, name: str, message: str) -> None:
    """A request that failed: an ack error when it carried an ackId, else the connection ends with the reason."""
    if ack_id is not None:
        connection.ack(ack_id, AckError(name, message))
    else:
        _decline(service, connection, f"{name}: {message}")


def _group_ok(service: WebPubSubService, connection: ClientConnection, group: str, ack_id: int | None) -> bool:
    if len(group) > MAX_GROUP_NAME:
        _fail(service, connection, ack_id, "BadRequest", f"The group name is longer than {MAX_GROUP_NAME} characters.")
        return False
    return True


def _duplicate(connection: ClientConnection, ack_id: int | None) -> bool:
    if ack_id is None or connection.first_use_of_ack_id(ack_id):
        return False
    connection.ack(ack_id, AckError("Duplicate", f"Message with ack-id: {ack_id} has been processed."))
    return True


async def _handle_request(service: WebPubSubService, connection: ClientConnection, request: Request) -> None:
    hub = service.hub(connection.hub)
    if isinstance(request, JoinGroup | LeaveGroup):
        verb = "join" if isinstance(request, JoinGroup) else "leave"
        if _duplicate(connection, request.ack_id) or not _group_ok(service, connection, request.group, request.ack_id):
            return
        if not connection.may_join(request.group):
            _fail(
                service,
                connection,
                request.ack_id,
                "Forbidden",
                f"The connection has no permission to {verb} group {request.group[:100]}.",
            )
            return
        if isinstance(request, JoinGroup):
            hub.join(connection, request.group)
        else:
            hub.leave(connection, request.group)
        connection.ack(request.ack_id)
    elif isinstance(request, SendToGroup):
        if _duplicate(connection, request.ack_id) or not _group_ok(service, connection, request.group, request.ack_id):
            return
        if not connection.may_send(request.group):
            _fail(
                service,
                connection,
                request.ack_id,
                "Forbidden",
                f"The connection has no permission to send to group {request.group[:100]}.",
            )
            return
        members = hub.group_connections(request.group)
        if request.no_echo:
            members = [m for m in members if m is not connection]
        message = Outgoing(request.data_type, request.data, group=request.group, from_user_id=connection.user_id)
        if service.flow.enabled:
            flow = service.flow.invoked(connection, f"sendToGroup {request.group[:40]}", request.ack_id, None)
            started = time.monotonic()
            service.deliver(members, message)
            service.flow.fanned_out(f"group {request.group[:40]}", dialect_counts(members), flow, started)
        else:
            service.deliver(members, message)
        connection.ack(request.ack_id)
    elif isinstance(request, SendEvent):
        if _duplicate(connection, request.ack_id):
            return
        await _user_event(service, connection, request)
    elif isinstance(request, SequenceAck):
        if connection.dialect == Dialect.RELIABLE:
            connection.acknowledge(request.sequence_id)
    elif isinstance(request, PingRequest):
        connection.respond(Pong())


async def _user_event(service: WebPubSubService, connection: ClientConnection, request: SendEvent) -> None:
    """A blocking user event: post it, send the answer's data back as a server message, then the ack."""
    if not service.events.handles(connection.hub):
        _fail(
            service,
            connection,
            request.ack_id,
            INVOCATION_FAILED,
            f"No event handler is registered for hub {connection.hub}.",
        )
        return
    await service.wait_for_connected_event(connection)
    try:
        content_type, body = encode_user_data(request.data_type, request.data)
    except (ValueError, UnicodeError) as exc:  # e.g. text holding a lone surrogate ("\udcff"), not UTF-8
        _fail(service, connection, request.ack_id, "BadRequest", f"The event's data cannot be delivered: {exc}")
        return
    flow: str | None = None
    if service.flow.enabled:
        flow = service.flow.invoked(connection, f"event {request.event[:64]}", request.ack_id, len(body))
    try:
        answer = await service.events.post(
            service.target(connection),
            EventKind.USER,
            body,
            event_name=request.event,
            content_type=content_type,
            flow_id=flow,
        )
        reply = parse_user_event_response(answer.status, answer.content_type, answer.body)
    except (HandlerFailed, InvalidEvent) as exc:
        log.info(
            "user event %s hub=%s id=%s failed: %s", request.event[:64], connection.hub, connection.connection_id, exc
        )
        _fail(service, connection, request.ack_id, INVOCATION_FAILED, str(exc))
        return
    if answer.states is not None:
        connection.states = answer.states
    if reply is not None:
        data_type, data = reply
        service.deliver([connection], Outgoing(DataType(data_type), data))
    connection.ack(request.ack_id)


async def _plain_message(
    service: WebPubSubService, connection: ClientConnection, data: str | bytes, binary: bool
) -> None:
    """A simple client's frame is the user event ``message``; the answer goes back as a text or binary frame. Without
    a handler, or when the handler fails, the connection is dropped (concept-service-internals, synchronous events)."""
    if not service.events.handles(connection.hub):
        _decline(service, connection, "No event handler handles the message event.")
        return
    await service.wait_for_connected_event(connection)
    if binary:
        content_type, body = CONTENT_TYPE_BINARY, bytes(data) if isinstance(data, bytes) else data.encode()
    else:
        content_type, body = CONTENT_TYPE_TEXT + "; charset=utf-8", data.encode() if isinstance(data, str) else data
    if service.flow.enabled:
        service.flow.invoked(connection, "message (simple WebSocket)", None, len(body))
    try:
        answer = await service.events.post(
            service.target(connection), EventKind.USER, body, event_name="message", content_type=content_type
        )
        reply = parse_user_event_response(answer.status, answer.content_type, answer.body)
    except (HandlerFailed, InvalidEvent) as exc:
        _decline(service, connection, f"The message event failed: {exc}")
        return
    if answer.states is not None:
        connection.states = answer.states
    if reply is not None:
        data_type, value = reply
        service.deliver([connection], Outgoing(DataType(data_type), value))
