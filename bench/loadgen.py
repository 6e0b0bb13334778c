"""A lean WebSocket load generator: up to ~20,000 client connections in one process, a small Python object each and
about a microsecond of Python per frame received.

Design. Every client is a bare :class:`asyncio.Protocol` with ``__slots__`` (on uvloop when it is installed, asyncio's
own loop otherwise), not a client library: no task, no stream and no reader per connection. It writes the HTTP/1.1
upgrade request itself and checks the ``101`` answer and its ``Sec-WebSocket-Accept`` (RFC 6455 §4.1), optionally a
subprotocol, then optionally speaks SignalR's JSON handshake (``{"protocol":"json","version":1}`` + 0x1E, answered by
``{}`` + 0x1E). Server frames are parsed in place in each chunk the loop hands over (7-, 16- and 64-bit lengths; text,
binary and continuation frames; a ping is answered with a masked pong, a close with a close); only a frame cut at the
chunk's end is copied. Frames are not decoded: the clients of one run share a :class:`Deliveries`, which counts the
occurrences of a marker (``broadcastMessage``) with one ``bytes.count`` over each run of whole frames in a chunk (a
frame header, whose first byte is not ASCII, can never be part of the marker) and, while timing, reads the send time a
message carries after ``sent@`` (the sender's ``time.perf_counter_ns()``) with ``bytes.find``, so a latency costs no
JSON parse and no lookup; the arrival time is read once per chunk. Every wait (TCP connect, upgrade and handshake
answers, close) has a timeout; connections are opened a bounded number at a time (:func:`open_clients`), so a server's
accept queue does not overflow; :func:`ping_silent` keeps SignalR clients from looking dead; and the process's own CPU
time is measured per phase (:class:`PhaseCpu`), so a report can show that the load generator is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import resource
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from ._harness import REPLY_TIMEOUT, BenchError, Tally

__all__ = [
    "CONNECT_CONCURRENCY",
    "Deliveries",
    "PhaseCpu",
    "WebSocketClient",
    "accept_of",
    "check_upgrade",
    "client_frame",
    "close_clients",
    "connect",
    "cpu_time",
    "loop_name",
    "open_clients",
    "ping_silent",
    "run",
    "stamped",
    "uvloop_module",
]

T = TypeVar("T")

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
# Connections being opened at once: no more than asyncio's default listen backlog (100), so a server that accepts
# slowly never has its accept queue overflow (a dropped SYN is retried only after 1 s, then 3 s, 7 s).
CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT = 10.0  # one TCP connect, SYN retries included
OPEN_TIMEOUT = 15.0  # the upgrade and handshake answers: a server with 20,000 connections can pause for seconds in GC
MARKER = b"broadcastMessage"
STAMP = b"sent@"
HANDSHAKE_REQUEST = b'{"protocol":"json","version":1}\x1e'
SIGNALR_PING = b'{"type":6}\x1e'
MAX_HEADER = 16384  # bytes of an upgrade answer before it counts as broken

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
FIN = 0x80


# --- the loop and the process's CPU --------------------------------------------------------------------------------


def uvloop_module() -> Any:
    """The ``uvloop`` module when it is installed, else None."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def loop_name() -> str:
    """``uvloop`` when it is installed (then :func:`run` uses it), else ``asyncio``."""
    return "asyncio" if uvloop_module() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, else on asyncio's own loop."""
    uvloop = uvloop_module()
    factory = None if uvloop is None else uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def cpu_time() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PhaseCpu:
    """This process's CPU time as a percentage of one core, per named phase: ``with cpu.phase("burst"): ...``."""

    def __init__(self) -> None:
        self.percent: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        cpu, wall = cpu_time(), time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - wall
            if elapsed > 0:
                self.percent[name] = 100 * (cpu_time() - cpu) / elapsed


# --- what the clients received -------------------------------------------------------------------------------------


def stamped() -> bytes:
    """A message text that carries its send time, ``sent@<perf_counter_ns>``, for :attr:`Deliveries.timing`."""
    return b"sent@%d" % time.perf_counter_ns()


class Deliveries:
    """What all clients of one run received: the marker's occurrences (one per broadcast record), and while
    :attr:`timing` the latency of every stamped record (arrival minus the ``sent@`` time it carries)."""

    def __init__(self, marker: bytes = MARKER) -> None:
        self.marker = marker
        self.tally = Tally()
        self.timing = False
        self.latencies: list[float] = []
        self.lost = 0  # connections the server closed or dropped, not this process

    def add(self, data: bytes, start: int, stop: int, arrived: float) -> int:
        """Count one message, ``data[start:stop]``, and read its stamps while timing; returns the count."""
        count = data.count(self.marker, start, stop)
        if self.timing and count:
            at = data.find(STAMP, start, stop)
            while at >= 0:
                digits = at + len(STAMP)
                end = digits
                while end < stop and 48 <= data[end] <= 57:
                    end += 1
                if end > digits:
                    self.latencies.append(arrived - int(data[digits:end]) * 1e-9)
                at = data.find(STAMP, end, stop)
        return count


# --- one client ----------------------------------------------------------------------------------------------------


def _mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (RFC 6455 §5.3)."""
    n = len(payload)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (RFC 6455 §5.2) with a fresh masking key."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes((FIN | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((FIN | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((FIN | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + key + _mask(payload, key)


def accept_of(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


class WebSocketClient(asyncio.Protocol):
    """One client connection. Made by :func:`connect`; what it receives goes to its :class:`Deliveries`."""

    __slots__ = (
        "_closing",
        "_fragments",
        "_handshake",
        "_key",
        "_opened",
        "_rest",
        "_subprotocol",
        "_transport",
        "_upgrade",
        "closed",
        "deliveries",
        "last_sent",
    )

    def __init__(self, deliveries: Deliveries) -> None:
        self.deliveries = deliveries
        self._transport: asyncio.Transport | None = None
        self._opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._upgrade: bytes | None = b""  # the answer so far while upgrading; None once open
        self._key = b""
        self._subprotocol: str | None = None
        self._handshake = False  # awaiting SignalR's handshake answer
        self._rest = b""  # a frame cut at the end of the last chunk
        self._fragments: bytearray | None = None  # a fragmented message so far
        self._closing = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_sent = 0.0  # time.monotonic() of the last frame written

    # - asyncio.Protocol -

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closing:
            self.deliveries.lost += 1
        self._fail(BenchError(f"connection closed by the server before it was open ({exc or 'EOF'})"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._upgrade is not None:
            data = self._upgraded(data)
            if not data:
                return
        if self._rest:
            data = self._rest + data
            self._rest = b""
        arrived = time.perf_counter()
        deliveries = self.deliveries
        counted = 0
        end = len(data)
        i = 0
        run = 0  # where the current run of whole, final text and binary frames starts: counted in one scan
        plain = not self._handshake and self._fragments is None
        while end - i >= 2:
            b0 = data[i]
            n = data[i + 1]
            if n < 126:
                start = i + 2
            elif n == 126:
                if end - i < 4:
                    break
                n = int.from_bytes(data[i + 2 : i + 4], "big")
                start = i + 4
            elif n == 127:
                if end - i < 10:
                    break
                n = int.from_bytes(data[i + 2 : i + 10], "big")
                start = i + 10
            else:
                self._protocol_error("a masked frame from the server")
                return
            stop = start + n
            if stop > end:
                break
            if not (plain and (b0 == 0x81 or b0 == 0x82)):
                # A frame header is never part of the marker (its first byte is not ASCII), so a run of frames is
                # scanned as one range; anything else ends the run and takes the slow path.
                if run < i:
                    counted += deliveries.add(data, run, i, arrived)
                counted += self._frame(b0, data, start, stop, arrived)
                if self._closing:
                    i = run = end
                    break
                plain = not self._handshake and self._fragments is None
                run = stop
            i = stop
        if run < i:
            counted += deliveries.add(data, run, i, arrived)
        if i < end:
            self._rest = data[i:]
        if counted:
            deliveries.tally.add(arrived, counted)

    # - the slow paths -

    def _frame(self, b0: int, data: bytes, start: int, stop: int, arrived: float) -> int:
        """A control frame, a fragment, or a message during SignalR's handshake; returns the records counted."""
        opcode = b0 & 0x0F
        if opcode == OP_PING:
            self.write(client_frame(OP_PONG, data[start:stop]))
            return 0
        if opcode == OP_PONG:
            return 0
        if opcode == OP_CLOSE:
            if not self._closing:
                self.deliveries.lost += 1  # the server closed it
            self.close(data[start : start + 2] if stop - start >= 2 else b"")
            return 0
        if opcode in (OP_TEXT, OP_BINARY):
            if self._fragments is not None:
                self._protocol_error("a new message inside a fragmented one")
                return 0
            if not b0 & FIN:
                self._fragments = bytearray(data[start:stop])
                return 0
            return self._message(data, start, stop, arrived)
        if opcode == OP_CONTINUATION:
            if self._fragments is None:
                self._protocol_error("a continuation frame outside a fragmented message")
                return 0
            self._fragments += data[start:stop]
            if not b0 & FIN:
                return 0
            message = bytes(self._fragments)
            self._fragments = None
            return self._message(message, 0, len(message), arrived)
        self._protocol_error(f"unknown opcode {opcode:#x}")
        return 0

    def _message(self, data: bytes, start: int, stop: int, arrived: float) -> int:
        if self._handshake:
            separator = data.find(b"\x1e", start, stop)
            if separator < 0:
                self._protocol_error("a SignalR handshake answer without its 0x1E terminator")
                return 0
            self._handshake = False
            answer = data[start:separator]
            if answer.strip() != b"{}":
                self._fail(BenchError(f"SignalR handshake refused: {answer[:200]!r}"))
                return 0
            if not self._opened.done():
                self._opened.set_result(None)
            start = separator + 1
        return self.deliveries.add(data, start, stop, arrived)

    def _upgraded(self, data: bytes) -> bytes:
        """Collect the upgrade answer; check it once complete and return the bytes after it (frames)."""
        assert self._upgrade is not None
        answer = self._upgrade + data
        head, found, rest = answer.partition(b"\r\n\r\n")
        if not found:
            if len(answer) > MAX_HEADER:
                self._fail(BenchError("the upgrade answer has no end of headers"))
            self._upgrade = answer
            return b""
        self._upgrade = None
        error = check_upgrade(head, self._key, self._subprotocol)
        if error is not None:
            self._fail(BenchError(error))
            return b""
        if self._handshake:
            self.send_text(HANDSHAKE_REQUEST)
        elif not self._opened.done():
            self._opened.set_result(None)
        return rest

    def _protocol_error(self, what: str) -> None:
        self._fail(BenchError(f"WebSocket protocol error: {what}"))
        self.close(b"\x03\xea")  # 1002

    def _fail(self, error: BenchError) -> None:
        if not self._opened.done():
            self._opened.set_exception(error)
            self._opened.exception()  # retrieved here: an open that already gave up never awaits it
            self.abort()

    # - what the load generator does with it -

    async def open(
        self, transport: asyncio.Transport, host: str, target: str, headers: dict[str, str], *, signalr: bool
    ) -> None:
        """Write the upgrade request on ``transport`` (this client's: uvloop may call :meth:`connection_made` only
        later), then SignalR's handshake once upgraded, and wait until the connection is open."""
        self._transport = transport
        key = base64.b64encode(os.urandom(16))
        self._key = key
        self._subprotocol = headers.get("Sec-WebSocket-Protocol")
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._handshake = signalr  # its request is written once the upgrade is answered
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.last_sent = time.monotonic()
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await self._opened
        except TimeoutError:
            self.abort()
            what = "SignalR handshake answer" if self._handshake else "upgrade answer"
            raise BenchError(f"no {what} within {OPEN_TIMEOUT:g} s") from None

    def write(self, frame: bytes) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(frame)
            self.last_sent = time.monotonic()

    def send_text(self, payload: bytes) -> None:
        """One masked text frame."""
        self.write(client_frame(OP_TEXT, payload))

    def close(self, code: bytes = b"\x03\xe8") -> None:
        """A close frame (1000 unless ``code``), then the TCP connection closed after it (the server's answer is not
        awaited; :attr:`closed` resolves when the connection is gone)."""
        if self._closing or self._transport is None:
            return
        self._transport.write(client_frame(OP_CLOSE, code))
        self._closing = True
        self._transport.close()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()


def check_upgrade(head: bytes, key: bytes, subprotocol: str | None) -> str | None:
    """What is wrong with an upgrade answer's status line and headers (RFC 6455 §4.1), None when nothing is."""
    status, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status.split(" ", 2)
    if len(parts) < 2 or parts[1] != "101":
        return f"the upgrade was answered {status[:200]!r}"
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        return f"the upgrade answer's Upgrade header is {headers.get('upgrade')!r}, not websocket"
    if "upgrade" not in headers.get("connection", "").lower():
        return f"the upgrade answer's Connection header is {headers.get('connection')!r}"
    expected = accept_of(key).decode()
    if headers.get("sec-websocket-accept") != expected:
        return f"Sec-WebSocket-Accept is {headers.get('sec-websocket-accept')!r}, expected {expected!r}"
    if subprotocol is not None and headers.get("sec-websocket-protocol") != subprotocol:
        return f"the server chose subprotocol {headers.get('sec-websocket-protocol')!r}, not {subprotocol!r}"
    return None


async def connect(
    url: str,
    deliveries: Deliveries,
    *,
    headers: dict[str, str] | None = None,
    signalr: bool = False,
) -> WebSocketClient:
    """An open client at ``url`` (``ws://`` or ``http://``; loopback benchmarks only, no TLS). ``headers`` are added
    to the upgrade request (a ``Sec-WebSocket-Protocol`` one is checked in the answer); ``signalr`` speaks SignalR's
    JSON handshake first. :class:`BenchError` when it is not open in time (``CONNECT_TIMEOUT`` for the TCP connect,
    then ``OPEN_TIMEOUT``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "http") or not parts.hostname:
        raise BenchError(f"cannot connect to {url!r}: only ws:// or http:// URLs")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    client = WebSocketClient(deliveries)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            transport, _ = await loop.create_connection(lambda: client, parts.hostname, port)
    except (OSError, TimeoutError) as exc:
        raise BenchError(f"WebSocket connect to {parts.hostname}:{port} failed: {type(exc).__name__} {exc}") from None
    await client.open(transport, parts.netloc, target, headers or {}, signalr=signalr)
    return client


# --- many clients --------------------------------------------------------------------------------------------------


async def open_clients(
    count: int,
    open_one: Callable[[], Awaitable[WebSocketClient]],
    deadline: float,
    concurrency: int = CONNECT_CONCURRENCY,
    clients: list[WebSocketClient] | None = None,
) -> list[WebSocketClient]:
    """``count`` clients from ``open_one``, at most ``concurrency`` being opened at once, appended to ``clients`` (a
    new list unless given: a keep-alive can then see them as they come); :class:`BenchError` (the ones open closed
    again) when one fails or ``deadline`` (monotonic) passes first."""
    clients = [] if clients is None else clients
    left = iter(range(count))

    async def worker() -> None:
        for _ in left:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(clients)} of {count} connections opened within the time bound")
            clients.append(await open_one())

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    except BaseException:
        await close_clients(clients)
        raise
    return clients


async def close_clients(clients: Sequence[WebSocketClient], timeout: float = REPLY_TIMEOUT) -> None:
    """Close every client and wait (at most ``timeout`` s) until their connections are gone."""
    for client in clients:
        client.close()
    pending = [client.closed for client in clients if not client.closed.done()]
    if pending:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*pending)
        for client in clients:
            if not client.closed.done():
                client.abort()


def ping_silent(clients: Sequence[WebSocketClient], silent_for: float) -> int:
    """A SignalR hub Ping from every client that has written nothing for ``silent_for`` seconds (a SignalR service
    drops a client silent for 30 s); returns how many were sent. They share one frame, hence one masking key: the
    load generator's own pings, to servers that never check keys for predictability."""
    cutoff = time.monotonic() - silent_for
    frame = client_frame(OP_TEXT, SIGNALR_PING)
    sent = 0
    for client in clients:
        if client.last_sent <= cutoff:
            client.write(frame)
            sent += 1
    return sent
