"""The Web PubSub emulator as an aiohttp application: the client endpoint, the REST API, and a runner.

``create_app(settings)`` builds the Application (the service starts and stops with it); :func:`serve` runs it on a
socket and yields where it listens.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from signalr.http_limits import HttpLimits

from ..process import RunningApp, start_and_stop_with, start_runner
from .client_endpoint import client_connect
from .rest import add_rest_routes, rest_errors_middleware
from .service import SERVICE_KEY, WebPubSubService
from .settings import WebPubSubSettings

__all__ = ["RunningEmulator", "create_app", "serve"]


def create_app(settings: WebPubSubSettings, origin: str | None = None) -> web.Application:
    """The emulator's Application; ``app[SERVICE_KEY]`` is its :class:`WebPubSubService`. ``origin`` is the
    ``WebHook-Request-Origin`` of its events (default: its host and port)."""
    app = web.Application(middlewares=[rest_errors_middleware], client_max_size=settings.max_message_size)
    service = WebPubSubService(settings, origin or f"{settings.endpoint_host}:{settings.port}")
    app[SERVICE_KEY] = service
    router = app.router
    router.add_route("GET", "/client/hubs/{hub}", client_connect)
    router.add_route("GET", "/client", client_connect)
    router.add_route("GET", "/client/", client_connect)
    add_rest_routes(router)
    start_and_stop_with(app, service)
    return app


class RunningEmulator(RunningApp):
    """Where a served emulator listens, its connection string, and its service."""

    @property
    def service(self) -> WebPubSubService:
        return self.app[SERVICE_KEY]


@asynccontextmanager
async def serve(settings: WebPubSubSettings, limits: HttpLimits | None = None) -> AsyncIterator[RunningEmulator]:
    """Run the emulator on ``settings.host``/``settings.port`` (0 = any free port) until the block exits.

    Raises :class:`OSError` when the address cannot be bound.
    """
    runner: web.AppRunner | None = None
    app: web.Application | None = None
    try:
        if settings.port == 0:
            # The events' origin names the port, which is known only once bound: bind first, then build the app.
            sock: socket.socket | None = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
            assert sock is not None
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((settings.host, 0))
            port = int(sock.getsockname()[1])
        else:
            sock = None
            port = settings.port
        app = create_app(settings, f"{settings.endpoint_host}:{port}")
        runner = await start_runner(app, limits)
        site: web.BaseSite = (
            web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, settings.host, settings.port)
        )
        await site.start()
        url = f"http://{settings.endpoint_host}:{port}"
        yield RunningEmulator(url, port, settings.connection_string(port), app)
    finally:
        if runner is not None:
            await runner.cleanup()
