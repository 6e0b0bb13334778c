"""Connection limits and quiet bad-request logging for the project's aiohttp servers.

aiohttp reads a request head for as long as a client cares to send it, keeps an idle keep-alive connection for an
hour (3630 s since 3.10; 75 s before) and logs every malformed request as ``Error handling request`` with a
traceback. This module gives ``signalr-emulator``, ``apim-gateway`` and ``chat-server`` the same three limits and
the same one-line, rate-limited log for bad requests:

* ``--header-timeout`` (default 10 s): from the first byte of a request head (or from accepting the connection)
  until the head is complete. A client that is too slow is answered ``408`` and disconnected. A request head is a
  few hundred bytes that every real client sends in one piece; 10 s still allows for a very slow or lossy link.
* ``--body-timeout`` (default 30 s): from the end of the head until the end of a request body (``Content-Length`` or
  chunked). Only requests that *send* a body are timed: an SSE stream, a WebSocket or a LongPolling poll is a
  long *response* to a request without a body, and is never cut. Bodies here are hub messages and REST calls of
  at most 1 MiB (the servers' size limits): 30 s is about 35 KB/s for the largest one.
* ``--idle-timeout`` (default 30 s): how long a keep-alive connection may wait for its next request (aiohttp's
  ``keepalive_timeout``). It is longer than the 15 s an aiohttp client keeps an idle pooled connection (the
  gateway's and the app server's own clients), so those clients retire a connection before the server closes it
  and never send a request on a connection that is being closed; browsers reconnect at no visible cost.

Use::

    add_limit_arguments(parser)                 # the three flags
    limits = limits_from_args(args)
    install_bad_request_log_filter()            # once per process, after logging is configured
    await runner.setup()
    limit_connections(runner, limits)           # before (or right after) the site starts listening

:func:`limit_connections` makes the runner's :class:`aiohttp.web.Server` create :class:`LimitedRequestHandler`
protocols, a small subclass of aiohttp's own that arms one timer per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "BadRequestLogFilter",
    "HttpLimits",
    "LimitedRequestHandler",
    "add_limit_arguments",
    "install_bad_request_log_filter",
    "limit_connections",
    "limits_from_args",
]

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 30.0
MAX_TIMEOUT = 3600.0

SERVER_LOGGER = "aiohttp.server"
_MARK = "http_limits_line"  # LogRecord attribute of the lines this module writes itself

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
# The placeholder request aiohttp answers a malformed one with (module constant since aiohttp 3.0).
_ERROR_MESSAGE: object = getattr(web_protocol, "ERROR", object())


@dataclass(frozen=True)
class HttpLimits:
    """Seconds a client may take for a request head, for a request body, and may stay idle between requests."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
                raise ValueError(f"{name} must be a number of seconds in (0, {MAX_TIMEOUT:g}], not {value!r}")


# --- command line -------------------------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: must be more than 0 and at most {MAX_TIMEOUT:g}")
    return value


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--header-timeout``, ``--body-timeout`` and ``--idle-timeout`` (seconds) to ``parser``."""
    parser.add_argument(
        "--header-timeout",
        type=_seconds,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help="a client that has not sent a complete request head this long after connecting (or after starting "
        f"the head) gets 408 and is disconnected (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    parser.add_argument(
        "--body-timeout",
        type=_seconds,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help="a request body (POST, PUT...) must arrive within this long after its head, else the connection is "
        f"closed; streams, WebSockets and polls are responses and are not cut (default {DEFAULT_BODY_TIMEOUT:g})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"an idle keep-alive connection is closed after this long (default {DEFAULT_IDLE_TIMEOUT:g})",
    )


def limits_from_args(args: argparse.Namespace) -> HttpLimits:
    """The limits the flags of :func:`add_limit_arguments` gave."""
    return HttpLimits(
        header_timeout=args.header_timeout, body_timeout=args.body_timeout, idle_timeout=args.idle_timeout
    )


# --- the connection limits ----------------------------------------------------------------------------------------


class LimitedRequestHandler(web_protocol.RequestHandler):
    """aiohttp's HTTP protocol with a deadline for each request head and each request body.

    One timer per connection at most: armed when the connection is accepted and when the first bytes of a later
    request head arrive, disarmed when the parser has the whole head; armed again when that request has a body still
    to come, disarmed when the body is complete. Once a connection is upgraded (WebSocket) nothing is timed.
    """

    __slots__ = ("_limit_body", "_limit_timer", "_limits")

    def __init__(self, manager: web.Server, *, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._limit_timer: asyncio.TimerHandle | None = None
        self._limit_body: Any = None  # the StreamReader of a body still arriving

    # -- protocol events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self._limits.header_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        if self._payload_parser is not None or getattr(self, "_upgraded", False):
            super().data_received(data)  # WebSocket frames, or bytes after an upgrade: not timed
            return
        body_before = self._limit_body
        parsed_before = self._request_count
        super().data_received(data)
        if self._request_count != parsed_before:
            # A complete head: its body (if any) is timed next, else nothing until the next head starts.
            self._disarm()
            self._limit_body = None
            payload = self._messages[-1][1] if self._messages else None
            if payload is not None and not payload.is_eof() and not getattr(self, "_upgraded", False):
                self._limit_body = payload
                self._arm(self._limits.body_timeout, self._body_too_slow)
            return
        if body_before is not None:
            if body_before.is_eof():
                self._limit_body = None
                self._disarm()
            return
        if data and self._limit_timer is None and not (self._close or self._force_close):
            self._arm(self._limits.header_timeout, self._head_too_slow)  # the first bytes of a new head

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._limit_body = None
        super().connection_lost(exc)

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse, time: float | None) -> None:
        # A malformed request is logged once, as a "bad request" line (BadRequestLogFilter), not twice.
        if getattr(request, "_message", None) is _ERROR_MESSAGE:
            return
        super().log_access(request, response, time)

    # -- timers

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._limit_timer = self._loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._limit_timer is not None:
            self._limit_timer.cancel()
            self._limit_timer = None

    def _head_too_slow(self) -> None:
        self._limit_timer = None
        transport = self.transport
        if transport is None or self._force_close:
            return
        idle = self._waiter is not None and not self._waiter.done() and not self._messages
        if idle:  # no response under way on this connection: it can still be told why
            transport.write(_REQUEST_TIMEOUT)
        _limit_line(self, "no complete request head within %g s", self._limits.header_timeout)
        self.force_close()

    def _body_too_slow(self) -> None:
        self._limit_timer = None
        body, self._limit_body = self._limit_body, None
        if self.transport is None or self._force_close or body is None or body.is_eof():
            return
        _limit_line(self, "request body not complete within %g s", self._limits.body_timeout)
        self.force_close()


def _limit_line(handler: LimitedRequestHandler, what: str, seconds: float) -> None:
    peer = handler.transport.get_extra_info("peername") if handler.transport is not None else None
    host = peer[0] if isinstance(peer, tuple) and peer else "unknown client"
    handler.logger.info("closed connection from %s: " + what, host, seconds, extra={_MARK: True})


class _LimitedServer(web.Server):
    """The runner's Server, creating :class:`LimitedRequestHandler` protocols."""

    _http_limits: HttpLimits

    def __call__(self) -> web_protocol.RequestHandler:
        kwargs: dict[str, Any] = dict(self._kwargs)
        kwargs["keepalive_timeout"] = self._http_limits.idle_timeout
        return LimitedRequestHandler(self, loop=self._loop, limits=self._http_limits, **kwargs)


def limit_connections(runner: web.BaseRunner, limits: HttpLimits) -> None:
    """Apply ``limits`` to every connection ``runner`` accepts from now on; call it after ``runner.setup()``.

    The runner's :class:`aiohttp.web.Server` keeps everything it was configured with (access log, handler
    cancellation, size limits); only the protocol it creates per connection changes.
    """
    server = runner.server
    if server is None:
        raise RuntimeError("limit_connections() needs a runner that is set up")
    # The Server object is already the listening socket's protocol factory (or about to be): its class is switched
    # in place instead of wrapping it, so the runner's shutdown and the site keep working with the same object.
    server.__class__ = _LimitedServer
    assert isinstance(server, _LimitedServer)
    server._http_limits = limits


# --- one rate-limited line per bad request ------------------------------------------------------------------------


def _reason(exc: HttpProcessingError) -> str:
    text = str(getattr(exc, "message", "") or "").strip().splitlines()
    first = text[0].strip().rstrip(":") if text else ""
    if not first:
        first = type(exc).__name__
    printable = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in first)
    return printable[:160]


class BadRequestLogFilter(logging.Filter):
    """On logger ``aiohttp.server``: a malformed request, or a client gone mid-request, is one line, rate-limited.

    ``Error handling request`` with a traceback becomes ``bad request from 127.0.0.1: Invalid header token``
    (WARNING) or ``request from 127.0.0.1 ended early: connection lost`` (INFO). These lines and the connection-limit
    lines share a budget of ``per_second`` lines a second; past it lines are dropped, and when the second is over one
    ``suppressed K similar lines`` line says how many. Every other record passes unchanged (a handler's own exception
    keeps its traceback).
    """

    def __init__(self, per_second: int = 10, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.per_second = per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = -math.inf
        self._in_window = 0
        self._suppressed = 0
        self._summary_scheduled = False

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _MARK, False) == "summary":
            return True
        if not self._rewrite(record):
            return True
        return self._admit()

    @staticmethod
    def _rewrite(record: logging.LogRecord) -> bool:
        if getattr(record, _MARK, False):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not str(record.msg).startswith("Error handling request"):
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        client = str(args[0]) if args and args[0] else "unknown client"
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "bad request from %s: %s", (client, _reason(exc))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif isinstance(exc, ConnectionError):
            record.msg, record.args = "request from %s ended early: connection lost", (client,)
            record.levelno, record.levelname = logging.INFO, "INFO"
        else:
            return False
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True

    def _admit(self) -> bool:
        with self._lock:
            now = self._clock()
            if now - self._window_start >= 1.0:
                self._window_start, self._in_window = now, 0
                if self._suppressed and not self._summary_scheduled:  # else the scheduled summary counts them
                    suppressed, self._suppressed = self._suppressed, 0
                    self._write_summary(suppressed)
            if self._in_window < self.per_second:
                self._in_window += 1
                return True
            self._suppressed += 1
            if not self._summary_scheduled:
                self._schedule_summary(self._window_start + 1.0 - now)
            return False

    def _schedule_summary(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop here: the count is written with the next line after this second
        self._summary_scheduled = True
        loop.call_later(max(delay, 0.0), self._scheduled_summary)

    def _scheduled_summary(self) -> None:
        with self._lock:
            self._summary_scheduled = False
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            self._write_summary(suppressed)

    @staticmethod
    def _write_summary(count: int) -> None:
        logging.getLogger(SERVER_LOGGER).warning(
            "suppressed %d similar lines (bad requests, early disconnects, connection limits)",
            count,
            extra={_MARK: "summary"},
        )


def install_bad_request_log_filter(per_second: int = 10) -> BadRequestLogFilter:
    """Put one :class:`BadRequestLogFilter` on logger ``aiohttp.server`` (again: the one already there)."""
    logger = logging.getLogger(SERVER_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, BadRequestLogFilter):
            return existing
    log_filter = BadRequestLogFilter(per_second)
    logger.addFilter(log_filter)
    return log_filter
