"""``signalr-emulator``: a local Azure SignalR Service in Serverless mode, or in Default or Classic mode
(``--service-mode``), where app servers dial server connections to ``/server/`` and carry the clients.

When it listens it prints one line on stdout, flushed at once, the connection string
``Endpoint=http://127.0.0.1;Port=<port>;AccessKey=<key>;Version=1.0;``; logs go to stderr without secrets.
Bad flags and unusable addresses print one line on stderr and exit 2 or 1; SIGINT/SIGTERM shut down cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from urllib.parse import urlsplit

from flow.publisher import add_flow_argument
from signalr.event_loop import add_loop_argument, running_loop_name
from signalr.http_limits import add_limit_arguments, limits_from_args
from signalr.redact import redact_url
from signalr.upstream import UpstreamTemplate, UpstreamTemplateError

from .app import RunningEmulator, serve
from .process import Parser, port, run_until_signal, serve_until_signal, setup_logging
from .settings import MIB, SERVICE_MODES, EmulatorSettings, SettingsError, new_access_key

__all__ = ["main"]

PROG = "signalr-emulator"
log = logging.getLogger("emulator")


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: not a number of bytes") from None
    if value < 64:
        raise argparse.ArgumentTypeError(f"invalid size {value}: at least 64 bytes")
    return value


def _upstream(text: str) -> UpstreamTemplate:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"invalid upstream {redact_url(text)!r}: must be an http(s) URL template")
    try:
        return UpstreamTemplate(text)
    except UpstreamTemplateError as exc:
        raise argparse.ArgumentTypeError(f"invalid upstream {redact_url(text)!r}: {exc}") from None


def _parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Local Azure SignalR Service: client negotiate, WebSockets, Server-Sent Events and LongPolling "
        "on /client/, the data-plane REST API on /api/, upstream webhooks (Serverless mode) or app servers' server "
        "connections on /server/ (Default and Classic mode).",
    )
    parser.add_argument(
        "--service-mode",
        choices=SERVICE_MODES,
        default="serverless",
        help="serverless: clients are served here and through the upstream; default: every client is carried by an "
        "app server's server connection; classic: by a server connection when the hub has one, else as serverless "
        "(default serverless)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8888, help="port to listen on; 0 = any free port (default 8888)")
    parser.add_argument("--access-key", help="AccessKey to sign and check tokens with (default: random per start)")
    parser.add_argument(
        "--upstream",
        type=_upstream,
        action="append",
        default=[],
        metavar="URL_TEMPLATE",
        help="upstream URL template with {hub}, {category}, {event} (no other {...}); repeatable, the first one "
        "is used (e.g. http://127.0.0.1:5000/upstream/{hub}/{category}/{event})",
    )
    parser.add_argument(
        "--max-buffer",
        type=_size,
        default=MIB,
        metavar="BYTES",
        help="outbound bytes queued per connection before a client that stops reading is dropped (default 1 MiB)",
    )
    parser.add_argument(
        "--max-message-size",
        type=_size,
        default=MIB,
        metavar="BYTES",
        help="largest hub message a client may send; bigger ones close that connection (default 1 MiB)",
    )
    parser.add_argument(
        "--public-host",
        metavar="NAME",
        help="serve only requests whose Host is NAME (any port), as Azure's front end does; others get 404 saying "
        "the Host is not the service's, so a proxy that does not rewrite Host shows (e.g. apim-gateway --keep-host); "
        "the connection string then names NAME (default: every Host is served)",
    )
    add_flow_argument(parser)
    add_limit_arguments(parser)
    add_loop_argument(parser)
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return parser


def _log_ready(settings: EmulatorSettings, running: RunningEmulator) -> None:
    upstreams = ", ".join(redact_url(t.url_template) for t in settings.upstreams) or "none"
    log.info(
        "listening on %s (mode: %s, upstream: %s, event loop: %s)",
        running.url,
        settings.service_mode,
        upstreams,
        running_loop_name(),
    )
    if settings.public_host:
        log.info("serving only Host %s (--public-host); other Host names get 404", settings.public_host)
    if settings.flow_to is not None:
        log.info("flow: publishing hop events to udp://%s:%d", *settings.flow_to)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``signalr-emulator`` console script."""
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        settings = EmulatorSettings(
            host=args.host,
            port=args.port,
            access_key=args.access_key if args.access_key is not None else new_access_key(),
            upstreams=tuple(args.upstream),
            service_mode=args.service_mode,
            max_buffer_size=args.max_buffer,
            max_message_size=args.max_message_size,
            public_host=args.public_host,
            flow_to=args.flow_to,
        ).from_env()
    except SettingsError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        sys.exit(2)
    running = serve_until_signal(serve(settings, limits_from_args(args)), log, partial(_log_ready, settings))
    run_until_signal(PROG, settings.host, settings.port, running, args.loop)


if __name__ == "__main__":
    main()
