"""``webpubsub-emulator``: a local Azure Web PubSub: the client WebSocket endpoint (``/client/hubs/{hub}``), the
data-plane REST API (``/api/hubs/{hub}/...``) and the event handler's CloudEvents.

When it listens it prints one line on stdout, flushed at once, the connection string
``Endpoint=http://127.0.0.1;Port=<port>;AccessKey=<key>;Version=1.0;``; logs go to stderr without secrets.
Bad flags print one line on stderr and exit 2, an unusable address exits 1; SIGINT/SIGTERM shut down cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

from flow.publisher import add_flow_argument
from signalr.event_loop import add_loop_argument, running_loop_name
from signalr.http_limits import add_limit_arguments, limits_from_args
from signalr.redact import redact_url

from ..process import Parser, port, run_until_signal, serve_until_signal, setup_logging
from .app import RunningEmulator, serve
from .settings import EventHandlerTemplate, SettingsError, WebPubSubSettings, new_access_key

__all__ = ["main"]

PROG = "webpubsub-emulator"
log = logging.getLogger("webpubsub.emulator")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"invalid duration {value}: must be more than 0 and at most 3600 seconds")
    return value


def _event_handler(text: str) -> EventHandlerTemplate:
    try:
        return EventHandlerTemplate.parse(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(f"{exc} ({redact_url(text)[:200]!r})") from None


def _parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Local Azure Web PubSub: client WebSockets on /client/hubs/{hub} (json.webpubsub.azure.v1, "
        "json.reliable.webpubsub.azure.v1 or none), the data-plane REST API on /api/hubs/{hub}, and CloudEvents "
        "to event handlers.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8889, help="port to listen on; 0 = any free port (default 8889)")
    parser.add_argument("--access-key", help="AccessKey to sign and check tokens with (default: random per start)")
    parser.add_argument(
        "--event-handler",
        type=_event_handler,
        action="append",
        default=[],
        metavar="[HUB=]URL_TEMPLATE",
        help="event handler URL template with {hub} and {event}; HUB= serves one hub, without it every hub that has "
        "none of its own; repeatable (e.g. http://127.0.0.1:5000/eventhandler/{event})",
    )
    parser.add_argument(
        "--event-handler-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long the connect and user events may take before the client gets an error (default 30)",
    )
    parser.add_argument(
        "--reconnect-window",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long a dropped reliable connection waits to be resumed (default 60)",
    )
    add_flow_argument(parser)
    add_limit_arguments(parser)
    add_loop_argument(parser)
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return parser


def _log_ready(settings: WebPubSubSettings, running: RunningEmulator) -> None:
    handlers = ", ".join((f"{h.hub}=" if h.hub else "") + redact_url(h.url_template) for h in settings.event_handlers)
    log.info(
        "listening on %s (event handlers: %s, event loop: %s)", running.url, handlers or "none", running_loop_name()
    )
    if settings.flow_to is not None:
        log.info("flow: publishing hop events to udp://%s:%d", *settings.flow_to)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``webpubsub-emulator`` console script."""
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    settings = WebPubSubSettings(
        host=args.host,
        port=args.port,
        access_key=args.access_key if args.access_key is not None else new_access_key(),
        event_handlers=tuple(args.event_handler),
        event_handler_timeout=args.event_handler_timeout,
        reconnect_window=args.reconnect_window,
        flow_to=args.flow_to,
    )
    if not settings.access_key or any(c in settings.access_key for c in ";= \t"):
        sys.stderr.write(f"{PROG}: error: invalid --access-key: it must be non-empty without ';', '=' or spaces\n")
        sys.exit(2)
    running = serve_until_signal(serve(settings, limits_from_args(args)), log, partial(_log_ready, settings))
    run_until_signal(PROG, settings.host, settings.port, running, args.loop)


if __name__ == "__main__":
    main()
