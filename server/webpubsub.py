"""``chat-server --service webpubsub``: the Chatroom on Azure Web PubSub.

The app server does three things, all through ``azure-messaging-webpubsubservice`` (its ``aio``
``WebPubSubServiceClient``, https://github.com/Azure/azure-sdk-for-python/tree/main/sdk/webpubsub):

- ``GET|POST /{hub}/negotiate[?id=<user>]`` answers ``{"service": "webpubsub", "hub": …, "url": …}``: the client access
  URL the SDK mints (``get_client_access_token``). With ``ClientEndpoint=`` in the connection string (a gateway such as
  APIM), the URL's scheme and host are the gateway's (``http``→``ws``, ``https``→``wss``); the token's ``aud`` still
  names the service, which is what the service checks behind the gateway
  (https://learn.microsoft.com/azure/azure-web-pubsub/howto-integrate-app-gateway). A ``subscription-key`` in the
  negotiate's query is copied into the URL's, so a browser, which cannot put headers on a WebSocket handshake, can
  carry an APIM subscription key through to the gateway (as the SignalR negotiate copies the client's query).
- ``/eventhandler`` receives the service's CloudEvents (:mod:`server.event_handler`) and sends the chat's messages with
  ``send_to_all`` / ``send_to_connection``.
- ``GET /lib/web-pubsub-client.js`` serves the ``@azure/web-pubsub-client`` browser bundle for the web page.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from aiohttp import web
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError
from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient

from signalr.redact import redact_url

from .config import Settings
from .event_handler import EVENT_HANDLER_PATH, handle_event, handle_event_options
from .flow import FLOW, redirect_host
from .negotiate import (
    USER_ID_HEADER,
    USER_ID_QUERY,
    USER_ID_RULE,
    NegotiateRejected,
    cors_headers,
    handle_preflight,
)
from .state import SETTINGS, WEBPUBSUB_CLIENT

__all__ = [
    "WEBPUBSUB_CLIENT_JS",
    "add_webpubsub_routes",
    "client_access_url",
    "handle_negotiate",
    "handle_web_pubsub_client_js",
    "user_id_from",
]

# The @azure/web-pubsub-client browser bundle, built by `make node` (esbuild) at the repository root.
WEBPUBSUB_CLIENT_JS = Path(__file__).resolve().parents[1].joinpath("node_modules", ".bundles", "web-pubsub-client.js")
# The Web PubSub samples name the user `?id=` on negotiate; `userId` and X-User-Id work as on the SignalR negotiate.
ID_QUERY = "id"
# APIM's query name for a subscription key (docs/apim.md §3).
SUBSCRIPTION_KEY_QUERY = "subscription-key"
_USER_ID = re.compile(r"[A-Za-z0-9._@+\-]{1,128}")

log = logging.getLogger("server.webpubsub")


def user_id_from(query: str, headers: Mapping[str, str]) -> str | None:
    """The user from ``?id=``, ``?userId=`` or ``X-User-Id`` (None: anonymous). Raises :class:`NegotiateRejected`
    (400) for a repeated or invalid id, or two that differ."""
    names = {ID_QUERY, USER_ID_QUERY.lower()}
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in names]
    header = headers.get(USER_ID_HEADER)
    if header is not None:
        values.append(header)
    if not values:
        return None
    if len(set(values)) > 1:
        raise NegotiateRejected(
            400, f"Invalid user id: '{ID_QUERY}', '{USER_ID_QUERY}' and {USER_ID_HEADER} must name the same user."
        )
    user_id = values[0]
    if not _USER_ID.fullmatch(user_id):
        raise NegotiateRejected(400, f"Invalid user id: use {USER_ID_RULE}.")
    return user_id


def client_access_url(url: str, client_endpoint: str | None) -> str:
    """``url`` (the SDK's ``ws(s)://<service>/client/hubs/<hub>?access_token=…``) with its scheme and host replaced by
    ``client_endpoint``'s (``http``→``ws``, ``https``→``wss``); a path on ``client_endpoint`` goes before the URL's
    path. None leaves the URL as the SDK made it."""
    if client_endpoint is None:
        return url
    target = urlsplit(client_endpoint)
    scheme = {"http": "ws", "https": "wss"}[target.scheme.lower()]
    parts = urlsplit(url)
    return urlunsplit((scheme, target.netloc, target.path.rstrip("/") + parts.path, parts.query, ""))


def subscription_key_from(query: str) -> str | None:
    """The ``subscription-key`` of the negotiate request's ``query`` (None: none); raises :class:`NegotiateRejected`
    (400) when it is given more than once."""
    keys = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == SUBSCRIPTION_KEY_QUERY]
    if len(keys) > 1:
        raise NegotiateRejected(400, f"Invalid query: '{SUBSCRIPTION_KEY_QUERY}' given more than once.")
    return keys[0] if keys else None


def _error(status: int, message: str, headers: dict[str, str]) -> web.Response:
    body = json.dumps({"error": message}).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


async def handle_negotiate(request: web.Request) -> web.Response:
    """``GET|POST /{hub}/negotiate``: ``{"service": "webpubsub", "hub", "url"}``, or a 400/502 with a JSON ``error``."""
    settings = request.app[SETTINGS]
    flow = request.app.get(FLOW)
    started = time.monotonic() if flow is not None else 0.0
    headers = cors_headers(request)
    query = request.rel_url.raw_query_string
    try:
        user_id = user_id_from(query, request.headers)
        subscription_key = subscription_key_from(query)
    except NegotiateRejected as exc:
        log.warning("negotiate refused (%d): %s", exc.status, exc)
        if flow is not None:
            flow.negotiated(request.method, request.path, started, exc.status, None)
        return _error(exc.status, str(exc), headers)
    client = request.app[WEBPUBSUB_CLIENT]
    try:
        token = await client.get_client_access_token(
            user_id=user_id, minutes_to_expire=max(1, settings.token_lifetime // 60)
        )
    except (AzureError, ValueError) as exc:
        log.error("negotiate failed: the client access token could not be made: %s", type(exc).__name__)
        if flow is not None:
            flow.negotiated(request.method, request.path, started, 502, None)
        return _error(502, "The client access token could not be made; see the server log.", headers)
    connection = settings.connection
    gateway = connection.client_endpoint if connection.client_endpoint != connection.endpoint else None
    url = client_access_url(str(token["url"]), gateway)
    if subscription_key is not None:
        url += f"&{SUBSCRIPTION_KEY_QUERY}={quote(subscription_key, safe='')}"
    log.info("negotiate: client access URL %s (user %s)", redact_url(url), user_id or "anonymous")
    if flow is not None:
        flow.negotiated(request.method, request.path, started, 200, redirect_host(url))
    # The answer carries a bearer token: never cache it.
    headers["Cache-Control"] = "no-store"
    body = json.dumps({"service": "webpubsub", "hub": settings.hub, "url": url}).encode()
    return web.Response(body=body, content_type="application/json", headers=headers)


async def handle_web_pubsub_client_js(request: web.Request) -> web.Response:
    """``GET /lib/web-pubsub-client.js``: the browser bundle of ``@azure/web-pubsub-client`` (404 until built)."""
    if not WEBPUBSUB_CLIENT_JS.is_file():
        text = "// @azure/web-pubsub-client is not bundled: run `make node`, then reload\n"
        return web.Response(status=404, text=text, content_type="application/javascript")
    return web.Response(
        body=WEBPUBSUB_CLIENT_JS.read_bytes(),
        content_type="application/javascript",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def service_client(settings: Settings) -> WebPubSubServiceClient:
    """The SDK client for ``settings``' service and hub, signing with the AccessKey. No retries: a send retried after a
    lost answer would reach the clients twice; the caller's timeout bounds each call."""
    return WebPubSubServiceClient(
        endpoint=settings.connection.endpoint,
        hub=settings.hub,
        credential=AzureKeyCredential(settings.access_key),
        retry_total=0,
        connection_timeout=settings.rest_timeout,
        read_timeout=settings.rest_timeout,
    )


async def _close_client(app: web.Application) -> None:
    await app[WEBPUBSUB_CLIENT].close()


def add_webpubsub_routes(app: web.Application, settings: Settings) -> None:
    """Add negotiate and the event handler for ``settings`` (``service`` webpubsub) to ``app``, with the SDK client
    they use (closed on cleanup)."""
    app[WEBPUBSUB_CLIENT] = service_client(settings)
    app.on_cleanup.append(_close_client)
    # Each send logs its request and response headers at INFO: keep the chat's own lines readable.
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    # Case-insensitive as the SignalR negotiate (ASP.NET routing); the hub name is letters, digits and `_` only.
    negotiate = f"/{{hub:(?i:{settings.hub})}}/{{negotiate:(?i:negotiate)}}"
    for path in (negotiate, negotiate + "/"):
        app.router.add_post(path, handle_negotiate)
        app.router.add_get(path, handle_negotiate)
        app.router.add_route("OPTIONS", path, handle_preflight)
    for path in (EVENT_HANDLER_PATH, EVENT_HANDLER_PATH + "/{tail:.*}"):
        app.router.add_post(path, handle_event)
        app.router.add_route("OPTIONS", path, handle_event_options)
