"""``POST /upstream[/…]``: the service's upstream webhook in serverless mode (``docs/protocol.md`` §6.2–§6.4).

Order of checks: the connection id must be present (400), ``X-ASRS-Signature`` must match it under the AccessKey
(401, trap 14), the other ``X-ASRS-*`` headers must be valid (400) and name our hub (404), the body must fit (413).
Only then is anything read or sent: a forged request never reaches the REST API. ``connections`` events are logged;
``messages`` go to the hub, whose sends go out through REST and whose Completion is the response body (trap 16).

A ``messages`` body is one message of the caller's hub protocol, named by the request's ``Content-Type`` as Azure
names it: ``application/json`` or ``application/x-msgpack`` (any other type: 415, as the Azure Functions extension
answers). The Completion goes back in that same protocol and content type, framed as the caller's transport carries
it, since the service copies it there unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web

from flow.hops import Lifeline
from signalr.hub_protocol import HubProtocol
from signalr.protocols import PROTOCOLS
from signalr.redact import redact_text
from signalr.upstream import MEDIA_TYPES, protocol_for_media_type, verify_signature

from .flow import FLOW, header_flow_id, message_flow_id
from .hub import Caller, InvalidMessage, perform
from .state import CONNECTED, HUB, REST, SETTINGS

__all__ = ["handle_upstream", "read_body"]

CONNECTION_ID = "X-ASRS-Connection-Id"
HUB_HEADER = "X-ASRS-Hub"
CATEGORY = "X-ASRS-Category"
EVENT = "X-ASRS-Event"
SIGNATURE = "X-ASRS-Signature"
USER_ID = "X-ASRS-User-Id"
_MAX_ID = 256
_CONNECTION_EVENTS = frozenset({"connected", "disconnected"})
# The content type of a `messages` body and of its Completion, by hub protocol name (Azure's upstream and the Azure
# Functions extension use these two).

log = logging.getLogger("server.upstream")


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": message}).encode(), content_type="application/json")


def _plain(value: str, limit: int = 64) -> str:
    """A header value made safe for a log line or an error message."""
    return repr(value[:limit])


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The request body, or ``None`` when it is larger than ``limit`` bytes (declared or actual)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


# Set on a request whose hop was reported on arrival (an invocation), so it is not reported again at its end.
_REPORTED = web.RequestKey("flow_reported", bool)
# When the request arrived (time.monotonic()), kept while flow is on.
_ARRIVED = web.RequestKey("flow_arrived", float)


async def handle_upstream(request: web.Request) -> web.Response:
    """One upstream request; see the module docstring for the checks and what each status means.

    Flow on (``server/flow.py``): an invocation is reported as it arrives (before the hub's sends), every other
    request once answered: a connection event as ``connect``, a refusal as ``upstream`` with its status."""
    flow = request.app.get(FLOW)
    if flow is None:
        return await _handle(request)
    started = request[_ARRIVED] = time.monotonic()
    response = await _handle(request)
    if not request.get(_REPORTED, False):
        headers = request.headers
        category = headers.get(CATEGORY, "?")
        what = f"{category[:32]}/{headers.get(EVENT, '?')[:48]}"
        # A connection's events set it up or end it: they never belong to a message's journey.
        kind = "connect" if category.lower() == "connections" and response.status == 200 else "upstream"
        flow.emit(
            Lifeline.SERVICE,
            Lifeline.APP,
            kind,
            f"POST /upstream {what} {response.status}",
            started=started,
            status=response.status,
            flow=header_flow_id(request),
            connection_id=headers.get(CONNECTION_ID) if response.status != 400 else None,
        )
    return response


async def _handle(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    headers = request.headers
    connection_id = headers.get(CONNECTION_ID, "")
    if not connection_id or len(connection_id) > _MAX_ID or not connection_id.isprintable():
        log.warning("upstream refused (400): missing or invalid %s", CONNECTION_ID)
        return _error(400, f"missing or invalid {CONNECTION_ID} header")
    if not verify_signature(headers.get(SIGNATURE), [settings.access_key], connection_id):
        log.warning("upstream refused (401): %s does not match connection %s", SIGNATURE, _plain(connection_id))
        return _error(401, f"missing or invalid {SIGNATURE} header")

    hub = headers.get(HUB_HEADER, "")
    category = headers.get(CATEGORY, "")
    event = headers.get(EVENT, "")
    for name, value in ((HUB_HEADER, hub), (CATEGORY, category), (EVENT, event)):
        if not value or len(value) > _MAX_ID or not value.isprintable():
            log.warning("upstream refused (400): missing or invalid %s", name)
            return _error(400, f"missing or invalid {name} header")
    if hub.lower() != settings.hub.lower():
        log.warning("upstream refused (404): hub %s is not served here", _plain(hub))
        return _error(404, f"hub {_plain(hub)} is not served here (this server runs hub '{settings.hub}')")

    body = await read_body(request, settings.max_upstream_body)
    if body is None:
        log.warning("upstream refused (413): body larger than %d bytes", settings.max_upstream_body)
        return _error(413, f"body larger than {settings.max_upstream_body} bytes")

    user_id = headers.get(USER_ID) or None
    category_l = category.lower()
    if category_l == "connections":
        response = _connection_event(connection_id, user_id, event, body)
        if response.status == 200 and settings.require_connected_event:
            if event.lower() == "connected":
                request.app[CONNECTED].add(connection_id)
            else:
                request.app[CONNECTED].discard(connection_id)
        return response
    if category_l == "messages":
        if settings.require_connected_event and connection_id not in request.app[CONNECTED]:
            # The signature proves only that the service once signed this connection id (Azure's design): without
            # its `connected` event, or after its `disconnected`, the request is stale or replayed.
            log.warning("upstream refused (403): no open connection %s", _plain(connection_id))
            return _error(403, f"connection {_plain(connection_id)} is not connected (no 'connected' event seen)")
        protocol = protocol_for_media_type(request.content_type)
        if protocol is None:
            log.warning("upstream refused (415): content type %s", _plain(request.content_type))
            expected = " or ".join(MEDIA_TYPES[name] for name in PROTOCOLS if name in MEDIA_TYPES)
            return _error(415, f"unsupported content type {_plain(request.content_type)}: expected {expected}")
        return await _invocation(request, Caller(connection_id, user_id), event, body, protocol)
    log.warning("upstream refused (400): unknown category %s", _plain(category))
    return _error(400, f"unknown {CATEGORY} {_plain(category)}: expected 'connections' or 'messages'")


def _connection_event(connection_id: str, user_id: str | None, event: str, body: bytes) -> web.Response:
    if event.lower() not in _CONNECTION_EVENTS:
        log.warning("upstream refused (400): unknown connections event %s", _plain(event))
        return _error(400, f"unknown connections event {_plain(event)}: expected 'connected' or 'disconnected'")
    details: dict[str, Any] = {}
    if body.strip():
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):  # bad UTF-8 or JSON, a number with too many digits, deep nesting
            parsed = None
        if not isinstance(parsed, dict):
            log.warning("upstream refused (400): %s body is not a JSON object", event.lower())
            return _error(400, "the body is not a JSON object")
        # The emulator writes {"Type":11,"Error":…} for disconnected but {"type":10} for connected (trap 15).
        details = {str(k).lower(): v for k, v in parsed.items()}
    who = f"connection {connection_id}" + (f" (user {user_id[:128]})" if user_id else "")
    error = details.get("error")
    if event.lower() == "disconnected" and error:
        log.info("disconnected: %s: %s", who, redact_text(str(error))[:300])
    else:
        log.info("%s: %s", event.lower(), who)
    return web.Response(status=200)


async def _invocation(
    request: web.Request, caller: Caller, event: str, body: bytes, protocol: HubProtocol
) -> web.Response:
    try:
        call = request.app[HUB].dispatch(caller, event, body, protocol)
    except InvalidMessage as exc:
        log.warning("upstream refused (400): invalid invocation from %s: %s", _plain(caller.connection_id), exc)
        return _error(400, f"invalid invocation: {exc}")
    log.debug("invoke %s from %s: %d send(s)", _plain(call.target), caller.connection_id, len(call.actions))
    flow = request.app.get(FLOW)
    flow_id: str | None = None
    if flow is not None:
        flow_id = message_flow_id(header_flow_id(request), caller.connection_id, call.invocation_id)
        sends = f"{len(call.actions)} send(s)" if call.error is None else "refused"
        flow.emit(
            Lifeline.SERVICE,
            Lifeline.APP,
            "upstream",
            f"POST /upstream messages/{call.target}: {sends}",
            started=request.get(_ARRIVED),
            flow=flow_id,
            connection_id=caller.connection_id,
            size=len(body),
        )
        request[_REPORTED] = True
    failure = await perform(call, request.app[REST], log, caller.connection_id, flow_id)
    response = call.response_body(protocol, failure)
    return web.Response(status=200, body=response, content_type=MEDIA_TYPES[protocol.name] if response else None)
