"""What the two emulator commands (``signalr-emulator``, ``webpubsub-emulator``) share as processes: one-line usage
errors, the ``--port`` type, logging to stderr, the runner, and running until SIGINT/SIGTERM with the connection
string as the ready line, on the event loop ``--loop`` chose (:mod:`signalr.event_loop`).

A command builds its parser with :class:`Parser`, calls :func:`setup_logging` once it has its flags, and hands
:func:`run_until_signal` a coroutine from :func:`serve_until_signal`; exit codes: 2 for bad flags, 1 for an address
it cannot listen on, 0 after SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

from aiohttp import web

from signalr.event_loop import EventLoop
from signalr.http_limits import HttpLimits, install_bad_request_log_filter, limit_connections

__all__ = [
    "SHUTDOWN_TIMEOUT",
    "ListenError",
    "Parser",
    "RunningApp",
    "port",
    "run_until_signal",
    "serve_until_signal",
    "setup_logging",
    "start_and_stop_with",
    "start_runner",
]

SHUTDOWN_TIMEOUT = 5.0

R = TypeVar("R", bound="RunningApp")


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (``<prog>: error: <message> (see --help)``),
    exit 2."""

    def error(self, message: str) -> NoReturn:
        # One line a user can act on, no usage dump.
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def port(text: str) -> int:
    """The ``--port`` type: 0..65535, 0 = any free port."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not a number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value}: must be 0..65535 (0 = any free port)")
    return value


def setup_logging(level: str) -> None:
    """Logs to stderr at ``level`` (debug, info, warning, error), without aiohttp's bad-request noise."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_bad_request_log_filter()


class _Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def start_and_stop_with(app: web.Application, service: _Service) -> None:
    """Start ``service`` when ``app`` starts up and stop it when ``app`` shuts down."""

    async def start(_: web.Application) -> None:
        await service.start()

    async def stop(_: web.Application) -> None:
        await service.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


async def start_runner(app: web.Application, limits: HttpLimits | None) -> web.AppRunner:
    """A set-up runner for ``app`` (handlers cancelled when their client goes, no access log) with the connection
    ``limits`` (default: :class:`HttpLimits`'s defaults); the caller starts a site on it and cleans it up."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    limit_connections(runner, limits or HttpLimits())
    return runner


@dataclass(frozen=True)
class RunningApp:
    """Where a served emulator listens, and its connection string."""

    url: str
    port: int
    connection_string: str
    app: web.Application


class ListenError(Exception):
    """The address could not be bound (the message is the system's reason)."""


async def serve_until_signal(
    served: AbstractAsyncContextManager[R], log: logging.Logger, on_ready: Callable[[R], None]
) -> None:
    """Enter ``served``, print its connection string on stdout (the ready line), call ``on_ready`` (the command's own
    log lines) and wait for SIGINT or SIGTERM; then log "shutting down" and leave. An :class:`OSError` while entering
    becomes :class:`ListenError`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        try:
            running = await stack.enter_async_context(served)
        except OSError as exc:
            raise ListenError(exc.strerror or str(exc)) from None
        print(running.connection_string, flush=True)
        on_ready(running)
        await stop.wait()
        log.info("shutting down")


def run_until_signal(prog: str, host: str, port: int, main: Coroutine[Any, Any, None], loop: EventLoop) -> NoReturn:
    """Run ``main`` (from :func:`serve_until_signal`) on ``loop`` and exit: 1 with one line on stderr when
    ``host:port`` cannot be bound, else 0."""
    try:
        loop.run(main)
    except ListenError as exc:
        sys.stderr.write(f"{prog}: error: cannot listen on {host}:{port}: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    sys.exit(0)
