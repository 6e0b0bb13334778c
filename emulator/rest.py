"""The data-plane REST API (``docs/protocol.md`` §6.1): v1 (``/api/v1/hubs/{hub}…``) and 2022-06-01
(``/api/hubs/{hub}…?api-version=2022-06-01``).

Sends answer 202 ("queued", also when nobody matches); group membership answers 200, or 404 when the connection does
not exist; existence checks answer 200 or 404 without a body; closing many connections answers 204. Every error is a
JSON ``ErrorDetail`` body ``{"code":…,"message":…,"target":…}``. Auth is a Bearer JWT signed with the AccessKey whose
``aud`` names the request URL (with or without the query, port ignored, trap 17) and whose ``exp`` has not passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from flow.ids import FLOW_ID_HEADER, parse_flow_id
from signalr.json_protocol import load_json
from signalr.messages import Invocation, ProtocolError
from signalr.redact import redact_url

from .auth import Unauthorized, authenticate_rest
from .flow import ProtocolCounts
from .hub import HUB_NAME, INVALID_HUB_NAME, SERVICE_KEY, Hub, SignalRService

__all__ = ["add_rest_routes", "rest_error"]

log = logging.getLogger("emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
}


class RestError(Exception):
    """An error answer of the REST API."""

    def __init__(self, status: int, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.target = target


def rest_error(
    status: int, message: str, target: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON ``ErrorDetail`` answer (2022-06-01 shape; v1 gets the same)."""
    body = {"code": _CODES.get(status, "Error"), "message": message, "target": target}
    return web.json_response(body, status=status, headers=headers)


def _rest(handler: Handler) -> Handler:
    """``handler`` answering every error as a JSON body (aiohttp's 413 too), with one log line per call. The REST
    routes carry this themselves instead of a middleware, so no other request (a WebSocket keeps its request's call
    chain for its whole life) pays for it."""

    async def call(request: web.Request) -> web.StreamResponse:
        return await _rest_call(request, handler)

    return call


async def _no_operation(request: web.Request) -> web.Response:
    return rest_error(404, f"No REST operation matches {request.method} {request.path}.")


async def _method_not_allowed(request: web.Request) -> web.Response:
    return rest_error(405, f"Method {request.method} is not allowed on {request.path}.")


_ARRIVED = web.RequestKey("emulator.rest.arrived", float)  # the request's time.monotonic() on arrival, for its flow hop


async def _rest_call(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[_ARRIVED] = time.monotonic()
    try:
        response = await handler(request)
    except RestError as exc:
        response = rest_error(exc.status, exc.message, exc.target)
    except Unauthorized as exc:
        response = rest_error(401, str(exc), headers={"WWW-Authenticate": exc.www_authenticate})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"No REST operation matches {request.method} {request.path}."
        elif exc.status == 405:
            message = f"Method {request.method} is not allowed on {request.path}."
        else:
            message = exc.text or exc.reason
        response = rest_error(exc.status, message)
    log.info("REST %s %s -> %d", request.method, redact_url(request.path_qs), response.status)
    return response


# --- request parsing ---------------------------------------------------------------------------------------------


def _service(request: web.Request) -> SignalRService:
    return request.app[SERVICE_KEY]


def _hub(request: web.Request) -> Hub:
    """Authenticate, check ``api-version`` on 2022-06-01 paths, validate the hub name, return the hub."""
    service = _service(request)
    authenticate_rest(request, service.settings.access_key)
    if not request.path.startswith("/api/v1/") and not request.rel_url.query.get("api-version"):
        raise RestError(400, "The 'api-version' query parameter is required (2022-06-01).", "api-version")
    name = request.match_info["hub"]
    if not HUB_NAME.match(name):
        raise RestError(400, INVALID_HUB_NAME, "hub")
    application = request.rel_url.query.get("application")
    if application:
        if not HUB_NAME.match(application):
            raise RestError(400, "Invalid application name.", "application")
        name = f"{application}_{name}"
    return service.hub(name)


async def _payload(request: web.Request) -> Invocation:
    """The body ``{"target":…,"arguments":[…]}`` as the Invocation every recipient gets, each in its own hub protocol
    (the hub encodes it once per protocol in use, :meth:`Hub.broadcast`)."""
    raw = await request.read()
    if not raw.strip():
        raise RestError(400, "The request body is required.", "body")
    try:
        # Strict like the hub protocol: what clients cannot parse (NaN, Infinity, 1e999) is refused here.
        obj = load_json(raw)
    except ProtocolError:  # invalid UTF-8 or JSON, NaN/Infinity, huge numbers, deep nesting
        raise RestError(400, "The request body is not valid JSON.", "body") from None
    if not isinstance(obj, dict):
        raise RestError(400, "The request body must be a JSON object.", "body")
    # .NET binds JSON properties case-insensitively.
    fields = {str(k).lower(): v for k, v in obj.items()}
    target = fields.get("target")
    if not isinstance(target, str) or not target:
        raise RestError(400, "The 'target' property is required and must be a non-empty string.", "target")
    arguments = fields.get("arguments")
    if arguments is None:
        arguments = []
    if not isinstance(arguments, list):
        raise RestError(400, "The 'arguments' property must be an array.", "arguments")
    return Invocation(target, tuple(arguments))


def _send(request: web.Request, what: str, deliver: Callable[[ProtocolCounts | None], int]) -> web.Response:
    """Run a send; 202 once queued (also to nobody), 400 when a recipient's protocol cannot carry the arguments
    (e.g. an integer beyond 64 bits for MessagePack): then nobody got it.

    While flow is on, the send is reported (``rest``, with the ``X-Flow-Id`` the app server carried back) with its one
    ``fan-out`` hop (``what`` names the send); off, that costs the one ``enabled`` check."""
    flow = _service(request).flow
    counts: ProtocolCounts | None = {} if flow.enabled else None
    started = time.monotonic() if counts is not None else 0.0
    try:
        deliver(counts)
    except (ValueError, RecursionError):
        if counts is not None:
            _report(request, 400, None, started)
        raise RestError(400, "The 'arguments' cannot be sent as a hub message.", "arguments") from None
    if counts is not None:
        _report(request, 202, (what, counts), started)
    return _status(202)


def _report(request: web.Request, status: int, fan_out: tuple[str, ProtocolCounts] | None, started: float) -> None:
    """Flow on: the REST send received and, when it was queued, its fan-out (begun at ``started``)."""
    flow = _service(request).flow
    flow_id = parse_flow_id(request.headers.get(FLOW_ID_HEADER))
    flow.rest_received(
        request.method, request.path, status, flow_id, request.content_length or 0, request.get(_ARRIVED)
    )
    if fan_out is not None:
        what, counts = fan_out
        flow.fanned_out(what, counts, flow_id, "serverless", started)


def _excluded(request: web.Request) -> list[str]:
    return [value for value in request.rel_url.query.getall("excluded", []) if value]


def _reason(request: web.Request) -> str | None:
    return request.rel_url.query.get("reason") or None


def _status(code: int) -> web.Response:
    return web.Response(status=code)


# --- operations --------------------------------------------------------------------------------------------------


async def broadcast(request: web.Request) -> web.Response:
    hub = _hub(request)
    message = await _payload(request)
    return _send(request, "broadcast", lambda counts: hub.broadcast(message, _excluded(request), counts))


async def send_to_user(request: web.Request) -> web.Response:
    hub = _hub(request)
    message = await _payload(request)
    return _send(request, "to user", lambda counts: hub.send_to_user(request.match_info["user"], message, counts))


async def send_to_connection(request: web.Request) -> web.Response:
    hub = _hub(request)
    message = await _payload(request)
    connection_id = request.match_info["connection"]
    return _send(request, "to connection", lambda counts: hub.send_to_connection(connection_id, message, counts))


async def send_to_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    message = await _payload(request)
    group = request.match_info["group"]
    return _send(request, "to group", lambda counts: hub.send_to_group(group, message, _excluded(request), counts))


def _missing_connection(connection_id: str) -> RestError:
    return RestError(404, f"Connection '{connection_id}' does not exist.", "connectionId")


async def add_connection_to_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    connection_id = request.match_info["connection"]
    if not hub.add_to_group(request.match_info["group"], connection_id):
        raise _missing_connection(connection_id)
    return _status(200)


async def remove_connection_from_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    connection_id = request.match_info["connection"]
    if not hub.remove_from_group(request.match_info["group"], connection_id):
        raise _missing_connection(connection_id)
    return _status(200)


async def remove_connection_from_all_groups(request: web.Request) -> web.Response:
    hub = _hub(request)
    connection_id = request.match_info["connection"]
    if connection_id not in hub.connections:
        raise _missing_connection(connection_id)
    hub.remove_from_all_groups(connection_id)
    return _status(200)


async def add_user_to_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    hub.add_user_to_group(request.match_info["user"], request.match_info["group"])
    return _status(200)


async def remove_user_from_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    hub.remove_user_from_group(request.match_info["user"], request.match_info["group"])
    return _status(200)


async def remove_user_from_all_groups(request: web.Request) -> web.Response:
    hub = _hub(request)
    hub.remove_user_from_all_groups(request.match_info["user"])
    return _status(200)


async def close_connection(request: web.Request) -> web.Response:
    hub = _hub(request)
    connection = hub.connections.get(request.match_info["connection"])
    if connection is not None:
        connection.close(_reason(request))
    return _status(200)


async def close_connections(request: web.Request) -> web.Response:
    hub = _hub(request)
    if "group" in request.match_info:
        targets = hub.group_connections(request.match_info["group"])
    elif "user" in request.match_info:
        targets = hub.user_connections(request.match_info["user"])
    else:
        targets = list(hub.connections.values())
    hub.close_connections(targets, _reason(request), _excluded(request))
    return _status(204)


async def connection_exists(request: web.Request) -> web.Response:
    hub = _hub(request)
    return _status(200 if request.match_info["connection"] in hub.connections else 404)


async def group_exists(request: web.Request) -> web.Response:
    hub = _hub(request)
    return _status(200 if hub.group_exists(request.match_info["group"]) else 404)


async def user_exists(request: web.Request) -> web.Response:
    hub = _hub(request)
    return _status(200 if hub.user_exists(request.match_info["user"]) else 404)


async def user_in_group(request: web.Request) -> web.Response:
    hub = _hub(request)
    return _status(200 if hub.user_in_group(request.match_info["user"], request.match_info["group"]) else 404)


async def health(request: web.Request) -> web.Response:
    """Health needs no token; the emulator is healthy whenever it answers."""
    return _status(200)


def add_rest_routes(router: web.UrlDispatcher) -> None:
    """Register both API versions on ``router``; a known path asked with another method answers a JSON 405, any other
    path under ``/api/`` a JSON 404."""
    routes: dict[str, list[tuple[str, Handler]]] = {}

    def _v1(method: str, path: str, handler: Handler) -> None:
        routes.setdefault("/api/v1/hubs/{hub}" + path, []).append((method, handler))

    def _v2022(method: str, path: str, handler: Handler) -> None:
        routes.setdefault("/api/hubs/{hub}" + path, []).append((method, handler))

    _v1("POST", "", broadcast)
    _v1("POST", "/users/{user}", send_to_user)
    _v1("POST", "/connections/{connection}", send_to_connection)
    _v1("POST", "/groups/{group}", send_to_group)
    _v1("PUT", "/groups/{group}/connections/{connection}", add_connection_to_group)
    _v1("DELETE", "/groups/{group}/connections/{connection}", remove_connection_from_group)
    _v1("PUT", "/groups/{group}/users/{user}", add_user_to_group)
    _v1("DELETE", "/groups/{group}/users/{user}", remove_user_from_group)
    _v1("DELETE", "/connections/{connection}", close_connection)
    for method in ("GET", "HEAD"):
        _v1(method, "/connections/{connection}", connection_exists)
        _v1(method, "/groups/{group}", group_exists)
        _v1(method, "/users/{user}", user_exists)
        _v1(method, "/groups/{group}/users/{user}", user_in_group)
    for path in ("/api/v1/health", "/api/health"):
        routes[path] = [("GET", health), ("HEAD", health)]

    _v2022("POST", "/:send", broadcast)
    _v2022("POST", "/users/{user}/:send", send_to_user)
    _v2022("POST", "/connections/{connection}/:send", send_to_connection)
    _v2022("POST", "/groups/{group}/:send", send_to_group)
    _v2022("PUT", "/groups/{group}/connections/{connection}", add_connection_to_group)
    _v2022("DELETE", "/groups/{group}/connections/{connection}", remove_connection_from_group)
    _v2022("DELETE", "/connections/{connection}/groups", remove_connection_from_all_groups)
    _v2022("PUT", "/users/{user}/groups/{group}", add_user_to_group)
    _v2022("DELETE", "/users/{user}/groups/{group}", remove_user_from_group)
    _v2022("DELETE", "/users/{user}/groups", remove_user_from_all_groups)
    _v2022("DELETE", "/connections/{connection}", close_connection)
    _v2022("POST", "/:closeConnections", close_connections)
    _v2022("POST", "/groups/{group}/:closeConnections", close_connections)
    _v2022("POST", "/users/{user}/:closeConnections", close_connections)
    for method in ("GET", "HEAD"):
        _v2022(method, "/connections/{connection}", connection_exists)
        _v2022(method, "/groups/{group}", group_exists)
        _v2022(method, "/users/{user}", user_exists)
        _v2022(method, "/users/{user}/groups/{group}", user_in_group)

    # Each path's methods on one resource, then any other method on it; the catch-all after every path.
    for path, handlers in routes.items():
        for method, handler in handlers:
            router.add_route(method, path, _rest(handler))
        router.add_route("*", path, _rest(_method_not_allowed))
    router.add_route("*", "/api/{tail:.*}", _rest(_no_operation))
