"""``chat-server``: run the Chatroom app server until SIGINT or SIGTERM.

Prints one line on stdout when it accepts connections: ``Chat server listening on http://<host>:<port>/ (hub <hub>)``.
With ``--flow-port PORT`` it also collects hop events (``flow/``) on ``udp://127.0.0.1:PORT`` and serves them on
``GET /flow``; with ``--flow-to 127.0.0.1:PORT`` it publishes its own hop events there instead. Both are off by
default. Startup problems are one ``error: …`` line on stderr, exit code 2 for configuration and 1 for runtime
(for example a port in use). Logs go to stderr, with access tokens, AccessKeys and subscription keys redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from aiohttp import web

from flow.collector import FlowCollector
from flow.publisher import FlowPublisher, add_flow_argument
from signalr.event_loop import EventLoop, add_loop_argument, running_loop_name, system_error
from signalr.http_limits import (
    HttpLimits,
    add_limit_arguments,
    install_bad_request_log_filter,
    limit_connections,
    limits_from_args,
)
from signalr.redact import redact_text
from signalr.tokens import DEFAULT_LIFETIME

from .app import RedactingAccessLogger, create_app
from .config import ConfigError, Service, ServiceMode, Settings, load_settings, read_connection_string
from .state import SERVER_CONNECTIONS

__all__ = ["build_parser", "main", "serve"]

EXIT_CONFIG = 2
EXIT_RUNTIME = 1

log = logging.getLogger("server")


class ListenError(Exception):
    """The server socket could not be opened; ``str()`` is the user's one-line message."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_CONFIG)


class _RedactingFilter(logging.Filter):
    """Last line of defence: whatever a log record says, secrets are replaced before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        return True


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="chat-server",
        description=(
            "The Chatroom app server for Azure SignalR Service: the negotiate redirect, the Chat hub and the web page. "
            "In Default mode it dials server connections to the service (like the ASP.NET SDK); in Serverless mode "
            "it serves /upstream and replies through the REST API. Reads Azure__SignalR__ConnectionString from the "
            "environment or .env. With --service webpubsub it is the Chatroom on Azure Web PubSub instead: negotiate "
            "answers a client access URL, /eventhandler takes the service's events, and it reads "
            "Azure__WebPubSub__ConnectionString."
        ),
    )
    parser.add_argument(
        "--service",
        choices=[service.value for service in Service],
        default=Service.SIGNALR.value,
        help="the Azure service: signalr (Azure SignalR Service) or webpubsub (Azure Web PubSub) (default: signalr)",
    )
    parser.add_argument(
        "--service-mode",
        choices=[mode.value for mode in ServiceMode],
        default=ServiceMode.DEFAULT.value,
        help="the service's mode: default (server connections, no public URL needed) or serverless (upstream + "
        "REST) (default: default)",
    )
    parser.add_argument(
        "--server-connections",
        type=int,
        default=5,
        metavar="N",
        help="Default mode: server connections per hub, like the SDK's InitialHubServerConnectionCount (default 5)",
    )
    parser.add_argument(
        "--require-connected-event",
        action="store_true",
        help="Serverless mode: refuse upstream invocations (403) from connections whose 'connected' event this "
        "server has not seen, or that already disconnected (needs the upstream to send connection events)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on; 0 = any free port (default 5000)")
    parser.add_argument("--hub", default="chat", help="hub name, mapped at /<hub> (default chat)")
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=DEFAULT_LIFETIME,
        metavar="SECONDS",
        help=f"lifetime of client access tokens (default {DEFAULT_LIFETIME})",
    )
    parser.add_argument(
        "--signalr-js",
        type=Path,
        default=None,
        metavar="PATH",
        help="the @microsoft/signalr browser bundle to serve (default: from node_modules)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level (default info)"
    )
    add_flow_argument(parser)
    parser.add_argument(
        "--flow-port",
        type=int,
        default=None,
        metavar="PORT",
        help="collect hop events from every role on udp://127.0.0.1:PORT (0 = any free port), with this server's "
        "own, and serve them on GET /flow to this machine; off by default",
    )
    add_limit_arguments(parser)
    add_loop_argument(parser)
    return parser


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    install_bad_request_log_filter()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _reason(exc: OSError) -> str:
    """Why a socket could not be bound, in a few words (``address in use`` for the common case)."""
    error = system_error(exc)
    return "address in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(
    settings: Settings,
    ready: asyncio.Event | None = None,
    limits: HttpLimits | None = None,
    *,
    flow_to: tuple[str, int] | None = None,
    flow_port: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or until the task is cancelled), then shut down cleanly.

    Prints the ready line once listening; raises :class:`ListenError` when a socket cannot be opened. ``flow_to``
    publishes this server's hop events there; ``flow_port`` collects every role's on that UDP port (0: any).
    """
    collector: FlowCollector | None = None
    if flow_port is not None:
        collector = FlowCollector(flow_port)
        try:
            await collector.start()
        except OSError as exc:
            raise ListenError(f"cannot listen on udp://127.0.0.1:{flow_port} for hop events: {_reason(exc)}") from None
        log.info("flow: collecting hop events on udp://%s:%d", *collector.address)
    publisher = FlowPublisher(flow_to) if flow_to is not None else None
    if flow_to is not None:
        log.info("flow: publishing hop events to udp://%s:%d", *flow_to)
    app = create_app(settings, dial_on_startup=False, flow=publisher, collector=collector)
    runner = web.AppRunner(app, access_log_class=RedactingAccessLogger, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    limit_connections(runner, limits or HttpLimits())
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()  # closes the collector and the publisher too
        raise ListenError(f"cannot listen on {settings.host}:{settings.port}: {_reason(exc)}") from None
    port = settings.port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            port = int(address[1])
            break
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if settings.service is Service.WEBPUBSUB:
        log.info("Web PubSub service %s (event handler /eventhandler)", settings.connection.redacted())
    else:
        log.info("service %s (%s mode)", settings.connection.redacted(), settings.service_mode.value)
    log.info("event loop: %s", running_loop_name())
    if SERVER_CONNECTIONS in app:
        # Dial only once listening, so a port in use is the only line a failed start prints.
        await app[SERVER_CONNECTIONS].start()
    print(f"Chat server listening on http://{_url_host(settings.host)}:{port}/ (hub {settings.hub})", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``chat-server`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.flow_port is not None and args.flow_to is not None:
        parser.error("use --flow-port (collect hop events here) or --flow-to (publish them elsewhere), not both")
    if args.flow_port is not None and not 0 <= args.flow_port <= 65535:
        parser.error(f"argument --flow-port: invalid port {args.flow_port}: use 0..65535 (0 = any free port)")
    _configure_logging(args.log_level)
    service = Service(args.service)
    try:
        settings = load_settings(
            connection_string=read_connection_string(os.environ, variable=service.connection_string_variable),
            hub=args.hub,
            host=args.host,
            port=args.port,
            token_lifetime=args.token_lifetime,
            signalr_js=args.signalr_js,
            service_mode=ServiceMode(args.service_mode),
            server_connections=args.server_connections,
            require_connected_event=args.require_connected_event,
            service=service,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    loop: EventLoop = args.loop
    try:
        loop.run(serve(settings, limits=limits_from_args(args), flow_to=args.flow_to, flow_port=args.flow_port))
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # a crash is still one line for the user; the secret-free cause is in the text
        print(f"error: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr, flush=True)
        return EXIT_RUNTIME
    return 0
