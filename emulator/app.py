"""The emulator as an aiohttp application: client routes, server-connection routes, REST routes, CORS, and a runner
for in-process use.

``create_app(settings)`` builds the Application (the service starts and stops with it); :func:`serve` runs it on a
socket and yields where it listens. Use :func:`serve` (or a runner with ``handler_cancellation=True``, as
``aiohttp.test_utils.TestServer`` does) so that a client dropping an SSE stream or a poll is noticed at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from signalr.http_limits import HttpLimits

from .http_transports import connect_delete, connect_send
from .hub import SERVICE_KEY, SignalRService
from .negotiate import negotiate, preflight
from .process import RunningApp, start_and_stop_with, start_runner
from .public_host import check_host_middleware, refused_for_host
from .rest import add_rest_routes
from .server_endpoint import server_connect
from .settings import EmulatorSettings
from .transports import connect

__all__ = ["RunningEmulator", "create_app", "serve"]


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Trap 18: browsers reach negotiate and connect cross-origin (through the gateway); allow any origin with
    credentials, as the official emulator does. Added on prepare so streamed responses (SSE) carry them too."""
    origin = request.headers.get("Origin")
    if origin and not refused_for_host(request) and request.path.startswith("/client"):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"


def create_app(settings: EmulatorSettings) -> web.Application:
    """The emulator's Application; ``app[SERVICE_KEY]`` is its :class:`SignalRService`."""
    settings.validate()
    host_check = [check_host_middleware(settings.public_host)] if settings.public_host else []
    app = web.Application(middlewares=host_check, client_max_size=settings.max_rest_body)
    service = SignalRService(settings)
    app[SERVICE_KEY] = service
    router = app.router
    for path in ("/client/negotiate", "/client/negotiate/"):  # trap 7: both spellings
        router.add_route("POST", path, negotiate)
        router.add_route("OPTIONS", path, preflight)
    for path in ("/client", "/client/"):
        router.add_route("GET", path, connect)
        router.add_route("POST", path, connect_send)
        router.add_route("DELETE", path, connect_delete)
        router.add_route("OPTIONS", path, preflight)
    for path in ("/server", "/server/"):
        router.add_route("GET", path, server_connect)
    add_rest_routes(router)
    app.on_response_prepare.append(_cors_headers)
    start_and_stop_with(app, service)
    return app


class RunningEmulator(RunningApp):
    """Where a served emulator listens, its connection string, and its service."""

    @property
    def service(self) -> SignalRService:
        return self.app[SERVICE_KEY]


@asynccontextmanager
async def serve(settings: EmulatorSettings, limits: HttpLimits | None = None) -> AsyncIterator[RunningEmulator]:
    """Run the emulator on ``settings.host``/``settings.port`` (0 = any free port) until the block exits; ``limits``
    are the connection timeouts (default: :class:`HttpLimits`'s defaults).

    Raises :class:`OSError` when the address cannot be bound.
    """
    app = create_app(settings)
    runner = await start_runner(app, limits)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = _bound_port(runner, settings.port)
        url = f"http://{settings.endpoint_host}:{port}"
        yield RunningEmulator(url, port, settings.connection_string(port), app)
    finally:
        await runner.cleanup()


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested
