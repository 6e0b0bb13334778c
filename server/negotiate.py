"""``POST /{hub}/negotiate``: the ASP.NET SDK's redirect to the service (``docs/protocol.md`` §2).

The reply sends the client to ``<ClientEndpoint>/client/?hub=<hub>&asrs.op=%2F<hub>&<client query>&asrs_request_id=…``
with an access token whose ``aud`` names the service ``Endpoint`` (traps 1, 2, 4, 5). The client's own query is
copied as the SDK does, which is how a browser carries ``subscription-key=…`` through to APIM (``docs/apim.md`` §3).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from signalr.negotiate import NegotiateRedirect, build_redirect

from .config import Settings
from .flow import FLOW, redirect_host
from .state import SETTINGS

__all__ = [
    "RESERVED_QUERY_KEYS",
    "USER_ID_HEADER",
    "USER_ID_QUERY",
    "NegotiateRejected",
    "cors_headers",
    "handle_negotiate",
    "handle_preflight",
    "negotiate_reply",
    "user_id_from",
]

USER_ID_QUERY = "userId"
USER_ID_HEADER = "X-User-Id"
# User ids end up in REST paths (`/users/{user}/:send`) and in logs: keep them short and plain.
_USER_ID = re.compile(r"[A-Za-z0-9._@+\-]{1,128}")
USER_ID_RULE = "1 to 128 letters, digits or . _ @ + -"
# Keys the service reads from the redirect URL; a client that sends them could override the hub or the connection
# the SDK chose (the SDK copies them blindly; we refuse them).
RESERVED_QUERY_KEYS = frozenset(
    {"hub", "asrs.op", "asrs_request_id", "asrs_lang", "asrs_ui_lang", "id", "access_token"}
)
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_DEFAULT_ALLOWED_HEADERS = "authorization, content-type, x-requested-with, x-signalr-user-agent, x-user-id"

log = logging.getLogger("server.negotiate")


class NegotiateRejected(Exception):
    """A negotiate request to refuse with ``status``; ``str()`` is the reason shown to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def user_id_from(query: str, headers: Mapping[str, str]) -> str | None:
    """The user id from ``?userId=`` or the ``X-User-Id`` header; ``None`` for an anonymous user.

    Raises :class:`NegotiateRejected` (400) for an invalid id, a repeated ``userId``, or two different ids.
    """
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() == USER_ID_QUERY.lower()]
    if len(values) > 1:
        raise NegotiateRejected(400, f"Invalid user id: '{USER_ID_QUERY}' is given more than once.")
    header = headers.get(USER_ID_HEADER)
    candidates = {v for v in (*values, header) if v is not None}
    if not candidates:
        return None
    if len(candidates) > 1:
        raise NegotiateRejected(400, f"Invalid user id: '{USER_ID_QUERY}' and {USER_ID_HEADER} differ.")
    user_id = candidates.pop()
    if not _USER_ID.fullmatch(user_id):  # match() with "$" would take a trailing newline
        raise NegotiateRejected(400, f"Invalid user id: use {USER_ID_RULE}.")
    return user_id


def negotiate_reply(settings: Settings, *, path: str, query: str, user_id: str | None) -> NegotiateRedirect:
    """The redirect for ``POST {path}?{query}`` (``query`` raw, without ``?``), as the ASP.NET SDK builds it.

    Raises :class:`NegotiateRejected`: 400 for a reserved query key, 413 when the token exceeds the 4096-character
    limit (§2, errors).
    """
    for key, _ in parse_qsl(query, keep_blank_values=True):
        if key.lower() in RESERVED_QUERY_KEYS:
            raise NegotiateRejected(400, f"Query parameter '{key[:32]}' is reserved for the service.")
    # A user id is written as both the SDK's NameIdentifier (`nameid`) and the service's `asrs.s.uid` (§2, §6.1).
    claims: dict[str, Any] | None = {"nameid": user_id, "asrs.s.uid": user_id} if user_id else None
    redirect = build_redirect(
        settings.connection,
        settings.hub,
        request_path=path,
        request_query=query,
        lifetime=settings.token_lifetime,
        claims=claims,
    )
    if len(redirect.access_token) > settings.max_token_length:
        raise NegotiateRejected(413, "AccessToken must not be longer than 4K.")
    return redirect


def cors_headers(request: web.Request, *, preflight: bool = False) -> dict[str, str]:
    """CORS headers for a browser page on another origin (the JS client sends credentials by default, trap 18)."""
    origin = request.headers.get("Origin")
    if not origin:
        return {}
    headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    if preflight:
        requested = request.headers.get("Access-Control-Request-Headers", "")
        names = [h.strip() for h in requested.split(",") if h.strip()]
        allowed = ", ".join(h for h in names if _TOKEN_CHARS.match(h)) if names else _DEFAULT_ALLOWED_HEADERS
        headers.update(
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": allowed or _DEFAULT_ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600",
            }
        )
    return headers


async def handle_preflight(request: web.Request) -> web.Response:
    """``OPTIONS /{hub}/negotiate``: a CORS preflight answer."""
    return web.Response(status=204, headers=cors_headers(request, preflight=True))


async def handle_negotiate(request: web.Request) -> web.Response:
    """``POST /{hub}/negotiate``: the redirect JSON, or a 400/413 with a JSON ``error``."""
    settings = request.app[SETTINGS]
    flow = request.app.get(FLOW)
    started = time.monotonic() if flow is not None else 0.0
    query = request.rel_url.raw_query_string
    headers = cors_headers(request)
    try:
        user_id = user_id_from(query, request.headers)
        redirect = negotiate_reply(settings, path=request.path, query=query, user_id=user_id)
    except NegotiateRejected as exc:
        log.warning("negotiate refused (%d): %s", exc.status, exc)
        if flow is not None:
            flow.negotiated(request.method, request.path, started, exc.status, None)
        body = json.dumps({"error": str(exc)}).encode()
        return web.Response(status=exc.status, body=body, content_type="application/json", headers=headers)
    log.info("negotiate: redirect to %s (user %s)", urlsplit(redirect.url).netloc, user_id if user_id else "anonymous")
    if flow is not None:
        flow.negotiated(request.method, request.path, started, 200, redirect_host(redirect.url))
    # The reply carries a bearer token: never cache it.
    headers["Cache-Control"] = "no-store"
    return web.Response(body=redirect.to_json(), content_type="application/json", headers=headers)
