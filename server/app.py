"""The app server as an aiohttp application: negotiate, the hub's link to the service, the web page and the health
probe. The link depends on the service: for Azure SignalR Service on its mode, server connections (Default) or
``/upstream`` plus REST (Serverless); for Azure Web PubSub the event handler plus the SDK (:mod:`server.webpubsub`)."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from flow.collector import FlowCollector
from flow.publisher import FlowPublisher
from signalr.redact import redact_url

from .carried_clients import ClientTable, ClientTimers
from .config import MSGPACK_PROTOCOL_JS, Service, ServiceMode, Settings
from .flow import COLLECTOR, FLOW, AppFlow, add_flow_routes
from .hub import ChatHub
from .negotiate import handle_negotiate, handle_preflight
from .rest_client import ServiceRestClient
from .server_connections import ServerConnections
from .state import CONNECTED, HUB, REST, SERVER_CONNECTIONS, SETTINGS, ConnectedSet
from .upstream import handle_upstream
from .webpubsub import WEBPUBSUB_CLIENT_JS, add_webpubsub_routes, handle_web_pubsub_client_js

__all__ = ["RedactingAccessLogger", "create_app"]

WEB_DIR = Path(__file__).resolve().parent / "web"
# The page loads only its own scripts and styles; it may connect anywhere (the ClientEndpoint is another origin),
# and never sends its URL (which may hold a subscription key) as a Referer.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' http: https: ws: wss:; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

log = logging.getLogger("server")


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request; secret query values (``subscription-key``, ``access_token``) are replaced by ``***``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s -> %d (%.0f ms)",
            request.remote,
            request.method,
            redact_url(request.path_qs),
            response.status,
            time * 1000,
        )


def _static(path: Path, content_type: str) -> web.Response:
    return web.Response(body=path.read_bytes(), content_type=content_type, charset="utf-8", headers=_PAGE_HEADERS)


async def _index(request: web.Request) -> web.Response:
    # The hub name is validated to letters, digits and `_` (config.py), so it is safe inside an HTML attribute.
    settings = request.app[SETTINGS]
    # With a ClientEndpoint, clients reach the service through a gateway (APIM or a proxy): the page then explains a
    # failed transport in terms of APIM's two profiles (docs/apim.md §2).
    via_gateway = settings.connection.client_endpoint != settings.connection.endpoint
    page = (
        (WEB_DIR / "index.html")
        .read_text("utf-8")
        .replace("__HUB__", settings.hub)
        .replace("__GATEWAY__", "true" if via_gateway else "false")
        # "on" when this server collects hop events (--flow-port): only then does the page ask for /flow/info.
        .replace("__FLOW__", "on" if COLLECTOR in request.app else "off")
    )
    return web.Response(text=page, content_type="text/html", headers=_PAGE_HEADERS)


async def _chat_js(request: web.Request) -> web.Response:
    return _static(WEB_DIR / "chat.js", "application/javascript")


async def _chat_css(request: web.Request) -> web.Response:
    return _static(WEB_DIR / "chat.css", "text/css")


async def _signalr_js(request: web.Request) -> web.Response:
    path = request.app[SETTINGS].signalr_js
    if not path.is_file():
        text = "// @microsoft/signalr is not installed: run `make node`, then reload\n"
        return web.Response(status=404, text=text, content_type="application/javascript")
    return _static(path, "application/javascript")


async def _msgpack_protocol_js(request: web.Request) -> web.Response:
    if not MSGPACK_PROTOCOL_JS.is_file():
        text = "// @microsoft/signalr-protocol-msgpack is not installed: run `make node`, then reload\n"
        return web.Response(status=404, text=text, content_type="application/javascript")
    return _static(MSGPACK_PROTOCOL_JS, "application/javascript")


async def _healthz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body: dict[str, object] = {"status": "ok", "hub": settings.hub}
    if settings.service is Service.SIGNALR:
        body["service_mode"] = settings.service_mode.value
    else:
        body["service"] = settings.service.value
    if SERVER_CONNECTIONS in request.app:
        body["server_connections"] = request.app[SERVER_CONNECTIONS].status()
    return web.json_response(body)


async def _close_publisher(publisher: FlowPublisher) -> None:
    publisher.close()


async def _start_rest(app: web.Application) -> None:
    await app[REST].start()


async def _close_rest(app: web.Application) -> None:
    await app[REST].close()


async def _start_server_connections(app: web.Application) -> None:
    await app[SERVER_CONNECTIONS].start()


async def _stop_server_connections(app: web.Application) -> None:
    await app[SERVER_CONNECTIONS].stop()


def _app_flow(settings: Settings, publisher: FlowPublisher | None) -> AppFlow | None:
    """The app server's hop reporter, or None while flow is off (``publisher`` None or disabled)."""
    if publisher is None or not publisher.enabled:
        return None
    if settings.service is Service.WEBPUBSUB:
        return AppFlow(publisher, settings.service.value, None)
    return AppFlow(publisher, settings.service.value, settings.service_mode.value)


def create_app(
    settings: Settings,
    *,
    dial_on_startup: bool = True,
    flow: FlowPublisher | None = None,
    collector: FlowCollector | None = None,
) -> web.Application:
    """The application for ``settings``. Web PubSub: negotiate and ``/eventhandler`` (:mod:`server.webpubsub`).
    SignalR Serverless: the REST client opens on startup and ``/upstream`` is served. SignalR Default: the server
    connections start dialling on startup (unless ``dial_on_startup`` is false: then the caller starts
    ``app[SERVER_CONNECTIONS]`` once it listens) and say goodbye to the service on shutdown.

    Flow (:mod:`server.flow`): ``flow`` publishes the app server's hops (``--flow-to``); a ``collector`` (started by
    the caller, ``--flow-port``) is served on ``/flow`` and gets the app server's hops directly when ``flow`` is None.
    The app closes both on cleanup. Without either, the server serves exactly as it does without flow."""
    app = web.Application()
    app[SETTINGS] = settings
    app[HUB] = ChatHub()
    if collector is not None and flow is None:
        flow = FlowPublisher.local(collector.add)
    app_flow = _app_flow(settings, flow)
    if flow is not None:
        app.on_cleanup.append(lambda _app: _close_publisher(flow))
    if app_flow is not None:
        app[FLOW] = app_flow
    add_flow_routes(app, collector)
    if settings.service is Service.WEBPUBSUB:
        add_webpubsub_routes(app, settings)
    elif settings.service_mode is ServiceMode.SERVERLESS:
        app[REST] = ServiceRestClient(settings.connection, settings.hub, timeout=settings.rest_timeout, flow=app_flow)
        app[CONNECTED] = ConnectedSet()  # filled only with --require-connected-event
        app.on_startup.append(_start_rest)
        app.on_cleanup.append(_close_rest)
        app.router.add_post("/upstream", handle_upstream)
        app.router.add_post("/upstream/{tail:.*}", handle_upstream)
    else:
        clients = ClientTable(app[HUB], ClientTimers(), flow=app_flow)
        app[SERVER_CONNECTIONS] = ServerConnections(
            settings.connection, settings.hub, clients, count=settings.server_connections
        )
        if dial_on_startup:
            app.on_startup.append(_start_server_connections)
        app.on_shutdown.append(_stop_server_connections)

    # ASP.NET routing ignores case in the whole path (`/CHAT/NEGOTIATE` reaches the hub's negotiate handler); the hub
    # name is letters, digits and `_` only (config.py), so it is a safe pattern. asrs.op is derived from the path as
    # sent, with the SDK's case-sensitive "/negotiate" suffix rule (signalr.negotiate.build_redirect, protocol.md §2).
    if settings.service is Service.SIGNALR:
        negotiate = f"/{{hub:(?i:{settings.hub})}}/{{negotiate:(?i:negotiate)}}"
        for path in (negotiate, negotiate + "/"):
            app.router.add_post(path, handle_negotiate)
            app.router.add_route("OPTIONS", path, handle_preflight)
    app.router.add_get("/", _index)
    app.router.add_get("/static/chat.js", _chat_js)
    app.router.add_get("/static/chat.css", _chat_css)
    app.router.add_get("/lib/signalr.min.js", _signalr_js)
    app.router.add_get("/lib/signalr-protocol-msgpack.min.js", _msgpack_protocol_js)
    app.router.add_get("/lib/web-pubsub-client.js", handle_web_pubsub_client_js)
    app.router.add_get("/healthz", _healthz)
    if settings.service is Service.WEBPUBSUB and not WEBPUBSUB_CLIENT_JS.is_file():
        log.warning(
            "the @azure/web-pubsub-client browser bundle is missing (%s): run `make node`; the web page cannot connect "
            "until then",
            WEBPUBSUB_CLIENT_JS,
        )
    if settings.service is Service.SIGNALR and not settings.signalr_js.is_file():
        log.warning(
            "the @microsoft/signalr browser bundle is missing (%s): run `make node`; the web page cannot connect until "
            "then",
            settings.signalr_js,
        )
    return app
