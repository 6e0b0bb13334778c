"""Negotiate (``docs/protocol.md`` §3.2, §3.3) and the CORS preflight of every ``/client/`` request."""

from __future__ import annotations

import logging

from aiohttp import web

from signalr.negotiate import NegotiateError, requested_version, service_negotiate_response

from .answers import Refused, hub_query
from .client_requests import authenticate, service_of

__all__ = ["negotiate", "preflight"]

log = logging.getLogger("emulator")


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight for negotiate and connect (trap 18); the allow-origin headers are added on prepare."""
    headers = {
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Access-Control-Max-Age": "600",
    }
    requested = request.headers.get("Access-Control-Request-Headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    return web.Response(status=204, headers=headers)


# --- negotiate ---------------------------------------------------------------------------------------------------


async def negotiate(request: web.Request) -> web.Response:
    """``POST /client/negotiate?hub=…`` (§3.2, §3.3): a new connection id and token, v0 or v1."""
    try:
        hub = hub_query(request)
        identity = authenticate(request, hub, allow_query=False)
    except Refused as refused:
        return refused.response
    try:
        version = requested_version(request.rel_url.query_string)
    except NegotiateError as exc:
        return web.json_response({"error": str(exc)})
    if version < 0:
        error = f"The client requested version '{version}', but the server does not support this version."
        return web.json_response({"error": error})
    service = service_of(request)
    connection = service.new_connection(
        hub,
        negotiate_version=version,
        user_id=identity.user_id,
        claims=identity.claims,
    )
    connection.owner = identity.owner
    log.info("negotiate hub=%s id=%s version=%d", hub, connection.connection_id, version)
    if service.flow.enabled:
        service.flow.negotiated(connection, version)
    body = service_negotiate_response(connection.connection_id, connection.connection_token, version)
    return web.Response(body=body, content_type="application/json")
