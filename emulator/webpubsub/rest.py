"""The data-plane REST API under ``/api/hubs/{hub}``: everything ``azure-messaging-webpubsubservice`` 1.3 calls
(https://learn.microsoft.com/rest/api/webpubsub/dataplane/web-pub-sub).

Status codes as the SDK expects them: sends 202 (also when nobody matches), closes and removals 204, adding to a group
and granting a permission 200 (404 when the connection does not exist), existence and permission checks 200 or 404
without a body, ``:generateToken`` 200 ``{"token": ...}``, listing a group 200 ``{"value": [...], "nextLink": ...}``.
Errors are JSON ``{"code", "message"}``: 400 for a bad parameter, body or ``filter`` (the filter's parse error), 401
(with ``WWW-Authenticate``) for a missing, invalid or expired token, 404 for an unknown path, 413 for a body over 1 MB.
Auth: ``Authorization: Bearer`` with a JWT signed by the AccessKey whose ``aud`` is the request URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from flow.ids import FLOW_ID_HEADER, parse_flow_id
from signalr.json_protocol import load_json
from signalr.messages import ProtocolError
from signalr.redact import redact_url
from webpubsub.subprotocol import DataType, InvalidMessage
from webpubsub.tokens import TokenError, mint_client_token, verify_rest_token

from .client_endpoint import MAX_GROUP_NAME
from .connection import ClientConnection, Outgoing
from .flow import dialect_counts
from .odata_filter import FilterError, compile_filter
from .service import SERVICE_KEY, Hub, Predicate, WebPubSubService
from .settings import HUB_NAME, INVALID_HUB_NAME

__all__ = ["add_rest_routes", "rest_errors_middleware"]

log = logging.getLogger("webpubsub.emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CODES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
_PERMISSIONS = {"joinLeaveGroup": "webpubsub.joinLeaveGroup", "sendToGroup": "webpubsub.sendToGroup"}
_MAX_PAGE = 200
_MAX_TOKEN_MINUTES = 60 * 24 * 365


class RestError(Exception):
    """An error answer of the REST API."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": _CODES.get(status, "Error"), "message": message}, status=status, headers=headers)


@web.middleware
async def rest_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under ``/api/``: every error as a JSON body (aiohttp's own 404/405/413 too), one log line per call."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        response = await handler(request)
    except RestError as exc:
        response = _error(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"No REST operation matches {request.method} {request.path[:200]}."
        elif exc.status == 405:
            message = f"Method {request.method} is not allowed on {request.path[:200]}."
        elif exc.status == 413:
            message = "The request body is larger than the service's 1 MB limit."
        else:
            message = exc.text or exc.reason
        response = _error(exc.status, message)
    log.info("REST %s %s -> %d", request.method, redact_url(request.path_qs[:512]), response.status)
    return response


# --- request parsing ---------------------------------------------------------------------------------------------


def _service(request: web.Request) -> WebPubSubService:
    return request.app[SERVICE_KEY]


def _hub(request: web.Request) -> Hub:
    """Authenticate, check ``api-version`` and the hub name, return the hub."""
    service = _service(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    challenge = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not token.strip():
        raise RestError(401, "Unauthorized: no Bearer token in the Authorization header.", challenge)
    try:
        verify_rest_token(token.strip(), service.settings.access_key, str(request.url))
    except TokenError as exc:
        raise RestError(401, f"Unauthorized: the access token is invalid ({exc}).", challenge) from None
    if not request.rel_url.query.get("api-version"):
        raise RestError(400, "The 'api-version' query parameter is required.")
    name = request.match_info["hub"]
    if not HUB_NAME.match(name):
        raise RestError(400, INVALID_HUB_NAME)
    return service.hub(name)


def _group(request: web.Request) -> str:
    group = request.match_info["group"]
    if not 0 < len(group) <= MAX_GROUP_NAME:
        raise RestError(400, f"Invalid group name: its length must be 1 to {MAX_GROUP_NAME} characters.")
    return group


def _excluded(request: web.Request) -> list[str]:
    return [str(v) for v in request.rel_url.query.getall("excluded", [])]


def _predicate(request: web.Request) -> Predicate | None:
    text = request.rel_url.query.get("filter")
    if text is None:
        return None
    try:
        return compile_filter(text)
    except FilterError as exc:
        raise RestError(400, f"Invalid filter: {exc}") from None


def _reason(request: web.Request) -> str | None:
    reason = request.rel_url.query.get("reason")
    return reason[:1024] if reason else None


async def _message(request: web.Request) -> Outgoing:
    """The body as a message: JSON, text or binary by its Content-Type (the three the API takes)."""
    media_type = request.content_type.lower()
    raw = await request.read()
    if media_type == "application/json":
        try:
            value: Any = load_json(raw)
        except ProtocolError as exc:
            raise RestError(400, f"The request body is not valid JSON: {exc}") from None
        message = Outgoing(DataType.JSON, value)
    elif media_type == "text/plain":
        try:
            message = Outgoing(DataType.TEXT, raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise RestError(400, "The text/plain request body is not UTF-8.") from None
    elif media_type == "application/octet-stream":
        message = Outgoing(DataType.BINARY, raw)
    else:
        raise RestError(
            400,
            f"Content-Type {media_type[:80]!r} is not supported: use application/json, text/plain or "
            "application/octet-stream.",
        )
    try:
        _ = message.json_wire, message.plain_wire  # encoded once here; a body JSON cannot carry is refused now
    except (InvalidMessage, ValueError, RecursionError) as exc:
        raise RestError(400, f"The request body cannot be sent: {exc}") from None
    return message


def _connection(hub: Hub, request: web.Request) -> ClientConnection | None:
    return hub.connections.get(request.match_info["connection_id"])


def _accepted() -> web.Response:
    return web.Response(status=202)


def _send(request: web.Request, what: str, recipients: list[ClientConnection], message: Outgoing) -> web.Response:
    """Deliver a REST send and answer 202. While flow is on, the send is reported (``rest``, with the ``X-Flow-Id``
    the app server carried back) with its one ``fan-out`` hop; off, that costs the one ``enabled`` check."""
    service = _service(request)
    flow = service.flow
    if not flow.enabled:
        service.deliver(recipients, message)
        return _accepted()
    # The send is reported received, then its fan-out begins before the first frame is written: frames may go
    # straight to the sockets, and the gateway may relay them before this process publishes another hop.
    flow_id = parse_flow_id(request.headers.get(FLOW_ID_HEADER))
    flow.rest_received(request.method, request.path, 202, flow_id, request.content_length or 0)
    started = time.monotonic()
    service.deliver(recipients, message)
    flow.fanned_out(what, dialect_counts(recipients), flow_id, started)
    return _accepted()


def _no_content() -> web.Response:
    return web.Response(status=204)


def _exists(found: bool) -> web.Response:
    return web.Response(status=200 if found else 404)


# --- hub ---------------------------------------------------------------------------------------------------------


async def send_to_all(request: web.Request) -> web.Response:
    hub = _hub(request)
    recipients = WebPubSubService.select(hub.connections.values(), _excluded(request), _predicate(request))
    return _send(request, "to all", recipients, await _message(request))


async def close_all(request: web.Request) -> web.Response:
    hub = _hub(request)
    service = _service(request)
    service.close_all(WebPubSubService.select(hub.connections.values(), _excluded(request)), _reason(request))
    return _no_content()


async def generate_token(request: web.Request) -> web.Response:
    hub = _hub(request)
    query = request.rel_url.query
    minutes_text = query.get("minutesToExpire", "60")
    try:
        minutes = int(minutes_text)
    except ValueError:
        raise RestError(400, "minutesToExpire must be an integer.") from None
    if not 0 < minutes <= _MAX_TOKEN_MINUTES:
        raise RestError(400, f"minutesToExpire must be between 1 and {_MAX_TOKEN_MINUTES}.")
    if query.get("clientType", "Default").lower() != "default":
        raise RestError(400, "Only clientType Default is served here (no MQTT or Socket.IO clients).")
    audience = f"{request.scheme}://{request.host}/client/hubs/{hub.name}"
    token = mint_client_token(
        _service(request).settings.access_key,
        audience,
        user_id=query.get("userId") or None,
        roles=[str(r) for r in query.getall("role", [])],
        groups=[str(g) for g in query.getall("group", [])],
        lifetime=minutes * 60,
    )
    return web.json_response({"token": token})


# --- connections ---------------------------------------------------------------------------------------------------


async def connection_exists(request: web.Request) -> web.Response:
    return _exists(_connection(_hub(request), request) is not None)


async def close_connection(request: web.Request) -> web.Response:
    connection = _connection(_hub(request), request)
    if connection is not None:
        _service(request).end(connection, _reason(request))
    return _no_content()


async def send_to_connection(request: web.Request) -> web.Response:
    connection = _connection(_hub(request), request)
    message = await _message(request)
    return _send(request, "to connection", [connection] if connection is not None else [], message)


async def remove_connection_from_all_groups(request: web.Request) -> web.Response:
    hub = _hub(request)
    connection = _connection(hub, request)
    if connection is not None:
        hub.leave_all(connection)
    return _no_content()


# --- groups --------------------------------------------------------------------------------------------------------


async def group_exists(request: web.Request) -> web.Response:
    hub = _hub(request)
    return _exists(bool(hub.groups.get(_group(request))))


async def close_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    members = WebPubSubService.select(hub.group_connections(_group(request)), _excluded(request))
    _service(request).close_all(members, _reason(request))
    return _no_content()


async def send_to_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    group = _group(request)
    members = WebPubSubService.select(hub.group_connections(group), _excluded(request), _predicate(request))
    return _send(request, "to group", members, await _message(request))


async def list_connections(request: web.Request) -> web.Response:
    hub = _hub(request)
    group = _group(request)
    query = request.rel_url.query
    try:
        page_size = min(int(query.get("maxpagesize", _MAX_PAGE)), _MAX_PAGE)
        top = int(query["top"]) if "top" in query else None
        start = int(query.get("continuationToken", "0"))
    except ValueError:
        raise RestError(400, "maxpagesize, top and continuationToken must be integers.") from None
    if page_size < 1 or (top is not None and top < 1) or start < 0:
        raise RestError(400, "maxpagesize and top must be at least 1.")
    members = hub.group_connections(group)
    end = len(members) if top is None else min(len(members), top)
    page = members[start : min(end, start + page_size)]
    body: dict[str, Any] = {"value": [{"connectionId": c.connection_id, "userId": c.user_id} for c in page]}
    if start + len(page) < end:
        next_query = dict(query)
        next_query["continuationToken"] = str(start + len(page))
        body["nextLink"] = str(request.rel_url.with_query(next_query))
    return web.json_response(body)


async def add_connection_to_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    group = _group(request)
    connection = _connection(hub, request)
    if connection is None:
        raise RestError(404, "The connection does not exist.")
    hub.join(connection, group)
    return web.Response(status=200)


async def remove_connection_from_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    group = _group(request)
    connection = _connection(hub, request)
    if connection is not None:
        hub.leave(connection, group)
    return _no_content()


# --- permissions ---------------------------------------------------------------------------------------------------


def _role(request: web.Request) -> tuple[str, str | None]:
    permission = request.match_info["permission"]
    role = _PERMISSIONS.get(permission)
    if role is None:
        raise RestError(400, f"Unknown permission {permission[:40]!r}: joinLeaveGroup or sendToGroup.")
    target = request.rel_url.query.get("targetName") or None
    return role, target


async def grant_permission(request: web.Request) -> web.Response:
    hub = _hub(request)
    role, target = _role(request)
    connection = _connection(hub, request)
    if connection is None:
        raise RestError(404, "The connection does not exist.")
    connection.roles.add(role if target is None else f"{role}.{target}")
    return web.Response(status=200)


async def revoke_permission(request: web.Request) -> web.Response:
    hub = _hub(request)
    role, target = _role(request)
    connection = _connection(hub, request)
    if connection is not None:
        if target is None:
            prefix = role + "."
            connection.roles = {r for r in connection.roles if r != role and not r.startswith(prefix)}
        else:
            connection.roles.discard(f"{role}.{target}")
    return _no_content()


async def has_permission(request: web.Request) -> web.Response:
    hub = _hub(request)
    role, target = _role(request)
    connection = _connection(hub, request)
    if connection is None:
        return _exists(False)
    if target is None:
        return _exists(role in connection.roles)
    return _exists(role in connection.roles or f"{role}.{target}" in connection.roles)


# --- users ---------------------------------------------------------------------------------------------------------


async def user_exists(request: web.Request) -> web.Response:
    hub = _hub(request)
    return _exists(bool(hub.users.get(request.match_info["user_id"])))


async def close_user(request: web.Request) -> web.Response:
    hub = _hub(request)
    members = WebPubSubService.select(hub.user_connections(request.match_info["user_id"]), _excluded(request))
    _service(request).close_all(members, _reason(request))
    return _no_content()


async def send_to_user(request: web.Request) -> web.Response:
    hub = _hub(request)
    members = WebPubSubService.select(hub.user_connections(request.match_info["user_id"]), (), _predicate(request))
    return _send(request, "to user", members, await _message(request))


async def remove_user_from_all_groups(request: web.Request) -> web.Response:
    hub = _hub(request)
    user = request.match_info["user_id"]
    hub.user_groups.pop(user, None)
    for connection in hub.user_connections(user):
        hub.leave_all(connection)
    return _no_content()


async def add_user_to_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    user = request.match_info["user_id"]
    group = _group(request)
    hub.user_groups.setdefault(user, set()).add(group)
    for connection in hub.user_connections(user):
        hub.join(connection, group)
    return web.Response(status=200)


async def remove_user_from_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    user = request.match_info["user_id"]
    group = _group(request)
    groups = hub.user_groups.get(user)
    if groups is not None:
        groups.discard(group)
        if not groups:
            del hub.user_groups[user]
    for connection in hub.user_connections(user):
        hub.leave(connection, group)
    return _no_content()


def add_rest_routes(router: web.UrlDispatcher) -> None:
    base = "/api/hubs/{hub}"
    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/:send", send_to_all),
        ("POST", "/:closeConnections", close_all),
        ("POST", "/:generateToken", generate_token),
        ("HEAD", "/connections/{connection_id}", connection_exists),
        ("DELETE", "/connections/{connection_id}", close_connection),
        ("POST", "/connections/{connection_id}/:send", send_to_connection),
        ("DELETE", "/connections/{connection_id}/groups", remove_connection_from_all_groups),
        ("HEAD", "/groups/{group}", group_exists),
        ("POST", "/groups/{group}/:closeConnections", close_group),
        ("POST", "/groups/{group}/:send", send_to_group),
        ("GET", "/groups/{group}/connections", list_connections),
        ("PUT", "/groups/{group}/connections/{connection_id}", add_connection_to_group),
        ("DELETE", "/groups/{group}/connections/{connection_id}", remove_connection_from_group),
        ("PUT", "/permissions/{permission}/connections/{connection_id}", grant_permission),
        ("DELETE", "/permissions/{permission}/connections/{connection_id}", revoke_permission),
        ("HEAD", "/permissions/{permission}/connections/{connection_id}", has_permission),
        ("HEAD", "/users/{user_id}", user_exists),
        ("POST", "/users/{user_id}/:closeConnections", close_user),
        ("POST", "/users/{user_id}/:send", send_to_user),
        ("DELETE", "/users/{user_id}/groups", remove_user_from_all_groups),
        ("PUT", "/users/{user_id}/groups/{group}", add_user_to_group),
        ("DELETE", "/users/{user_id}/groups/{group}", remove_user_from_group),
    ]
    for method, path, handler in routes:
        router.add_route(method, base + path, handler)
