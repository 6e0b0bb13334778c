"""What the process-level benchmarks share: the product's servers as child processes, raw SignalR client legs on
aiohttp, the REST broadcaster, a time budget, per-process CPU time, statistics and the results table.

The client legs speak the protocol with the core's codecs (a :class:`~signalr.hub_protocol.HubProtocol`, JSON unless a
leg is given MessagePack; ``signalr.sse``, ``signalr.negotiate``) and nothing else, so the benchmark process spends as
little as possible per message and both sides of a comparison get the same client. Child processes are started with
``tests/support/processes.py`` and stopped by pid; run the benchmarks from the repository root (``python -m bench``,
``make bench``), where ``tests`` is importable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp

from signalr.connection_string import ConnectionString, parse_connection_string
from signalr.handshake import decode_handshake_response, encode_handshake_request, split_handshake
from signalr.hub_protocol import HubProtocol, TransferFormat
from signalr.json_protocol import JSON
from signalr.messages import DEFAULT_MAX_MESSAGE_SIZE, Invocation
from signalr.negotiate import NegotiateRedirect, NegotiateResult, connect_url, negotiate_url, parse_negotiate_response
from signalr.sse import SseDecoder
from signalr.tokens import mint_token
from tests.support.processes import Process, script

__all__ = [
    "GATEWAY_READY",
    "REPLY_TIMEOUT",
    "BenchError",
    "Budget",
    "Metric",
    "RawSseClient",
    "RawWebSocketClient",
    "Reporting",
    "RestBroadcaster",
    "RoundResult",
    "Services",
    "Tally",
    "arrival",
    "broadcast_body",
    "broadcast_record",
    "broadcast_seq",
    "broadcast_seq_reader",
    "check_load",
    "cpu_of",
    "cpu_seconds",
    "measured_cpu",
    "median",
    "negotiate",
    "parse_rounds",
    "percentile",
    "ping_all",
    "print_capped",
    "print_table",
    "ready_line",
    "reporter",
    "round_parser",
    "run_benchmark",
    "run_measuring_load",
    "send_paced",
    "server_negotiate",
    "with_client_endpoint",
    "write_burst",
]

GATEWAY_READY = re.compile(r"^APIM gateway listening on (http://127\.0\.0\.1:\d+) \(profile ([\w-]+)\) -> ")
STARTUP_TIMEOUT = 20.0
REPLY_TIMEOUT = 5.0  # one awaited reply (handshake, completion, delivery); a slower one means something is broken

RecordHandler = Callable[[bytes, float], None]
T = TypeVar("T")


class BenchError(Exception):
    """A benchmark could not run (a process did not start, a reply never came); the message says which."""


def _failure(exc: BaseException) -> str:
    """One line for a benchmark that failed: a :class:`BenchError`'s message, else the exception's type and text."""
    if isinstance(exc, BenchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Budget:
    """The wall-clock allowance of one benchmark run; each measurement phase takes an equal share of what is left."""

    def __init__(self, seconds: float, reserve: float, phases: int) -> None:
        """``reserve`` seconds at the end are kept for stopping the processes; ``phases`` is how many times the run
        will call :meth:`next_phase`."""
        self.started = time.monotonic()
        self.deadline = self.started + seconds - reserve
        self._phases_left = phases

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def next_phase(self) -> float:
        """When the phase starting now must stop (it may stop earlier by reaching its count)."""
        deadline = time.monotonic() + self.left() / max(1, self._phases_left)
        self._phases_left -= 1
        return deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.started


# --- child processes ---------------------------------------------------------------------------------------------


class Services(contextlib.AbstractContextManager["Services"]):
    """Child processes started by one benchmark; all stopped (SIGTERM, by pid) when the ``with`` block ends."""

    def __init__(self) -> None:
        self.processes: list[Process] = []

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            process.stop()

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> Process:
        try:
            process = Process(argv, env=env)
        except OSError as exc:
            raise BenchError(f"cannot start {os.path.basename(argv[0])}: {exc.strerror or exc}") from None
        self.processes.append(process)
        return process

    def start_emulator(self, *extra: str) -> tuple[Process, ConnectionString]:
        """``signalr-emulator --port 0``; returns the process and its connection string (the ready line)."""
        process = self.spawn([_script("signalr-emulator"), "--port", "0", *extra])
        return process, parse_connection_string(ready_line(process))

    def start_gateway(self, backend: str, profile: str, *extra: str) -> tuple[Process, str]:
        """``apim-gateway --backend … --profile … --port 0``; returns the process and the gateway's base URL."""
        argv = [_script("apim-gateway"), "--backend", backend, "--profile", profile, "--port", "0", *extra]
        process = self.spawn(argv)
        line = ready_line(process)
        match = GATEWAY_READY.match(line)
        if match is None:
            raise BenchError(f"unexpected ready line from apim-gateway: {line[:200]!r}")
        return process, match.group(1)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like SIGINT inside the block, so ``with Services()`` still stops the children
    (they run in their own sessions and would outlive a killed benchmark)."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_benchmark(prog: str, measure: Callable[[Services], Callable[[], None]]) -> int:
    """Run one benchmark and return its exit status.

    ``measure(services)`` starts its processes with ``services`` and measures; the report it returns is printed once
    every child is stopped. A failure prints one line on stderr (status 1); SIGINT or SIGTERM stops the children and
    exits quietly (status 0).
    """
    try:
        with _interruptible(), Services() as services:
            report = measure(services)
        report()
    except (BenchError, aiohttp.ClientError, TimeoutError) as exc:
        print(f"{prog}: {_failure(exc)}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; its processes are stopped", file=sys.stderr, flush=True)
    return 0


def run_measuring_load(coroutine: Coroutine[Any, Any, T]) -> tuple[T, float]:
    """``asyncio.run(coroutine)``'s result, and this process's CPU time as a share of the wall time it took (a benchmark
    process near 100 % is itself the bottleneck)."""
    cpu_started = time.process_time()
    wall_started = time.monotonic()
    result = asyncio.run(coroutine)
    return result, (time.process_time() - cpu_started) / (time.monotonic() - wall_started)


def round_parser(prog: str, description: str, each: str) -> argparse.ArgumentParser:
    """A parser with ``--budget`` (seconds for the whole run) and ``--rounds``; check them with :func:`parse_rounds`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--budget", type=float, default=25.0, help="seconds for the whole run (default 25)")
    parser.add_argument("--rounds", type=int, default=3, help=f"rounds, each {each} once per round (default 3)")
    return parser


def parse_rounds(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; a budget outside 10–300 s or rounds outside 1–9 is a usage error (exit 2)."""
    args = parser.parse_args(argv)
    if not 10 <= args.budget <= 300:
        parser.error("--budget must be between 10 and 300 seconds")
    if not 1 <= args.rounds <= 9:
        parser.error("--rounds must be between 1 and 9")
    return args


def _script(name: str) -> str:
    try:
        return script(name)
    except FileNotFoundError as exc:
        raise BenchError(f"{exc} (run `make venv` first)") from None


def ready_line(process: Process) -> str:
    try:
        return process.readline(STARTUP_TIMEOUT)
    except (TimeoutError, EOFError) as exc:
        first = str(exc).splitlines()[0]
        raise BenchError(f"{os.path.basename(process.argv[0])} did not start: {first}") from None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 10 ms resolution); NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return float("nan")
    # Fields after the command name start at field 3 (state); utime and stime are fields 14 and 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(processes: Sequence[Process]) -> float:
    return sum(cpu_seconds(p.pid) for p in processes)


# --- client legs -------------------------------------------------------------------------------------------------


def with_client_endpoint(connection: ConnectionString, client_endpoint: str) -> ConnectionString:
    """The same service with clients sent to ``client_endpoint`` (the APIM form of the connection string, §1)."""
    return parse_connection_string(
        f"Endpoint={connection.endpoint};AccessKey={connection.access_key};ClientEndpoint={client_endpoint};Version=1.0;"
    )


async def negotiate(session: aiohttp.ClientSession, redirect: NegotiateRedirect) -> str:
    """The second negotiate of §3.1 (at the service or the gateway); returns the connect URL with ``id=``."""
    headers = {"Authorization": f"Bearer {redirect.access_token}"}
    async with asyncio.timeout(REPLY_TIMEOUT):
        async with session.post(negotiate_url(redirect.url), headers=headers) as response:
            body = await response.read()
    if response.status != 200:
        raise BenchError(f"negotiate answered {response.status}: {body[:200]!r}")
    result = parse_negotiate_response(body)
    if not isinstance(result, NegotiateResult):
        raise BenchError("negotiate answered with another redirect")
    return connect_url(redirect.url, result.id_for_connect)


class _Leg:
    """Messages in, with the time they arrived: ``on_record`` gets each one without its framing (a JSON record without
    its separator, a MessagePack array without its length). During a handshake the (JSON) reply comes first."""

    def __init__(self, on_record: RecordHandler, protocol: HubProtocol = JSON) -> None:
        self.on_record = on_record
        self.protocol = protocol
        self._reader = protocol.reader(DEFAULT_MAX_MESSAGE_SIZE)
        self._handshake: asyncio.Future[None] | None = None
        self._handshake_reply = b""
        self._task: asyncio.Task[None] | None = None

    def _feed(self, data: bytes, arrived: float) -> None:
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            parts = split_handshake(self._handshake_reply + data, DEFAULT_MAX_MESSAGE_SIZE)
            if parts is None:
                self._handshake_reply += data
                return
            reply, data = parts
            error = decode_handshake_response(reply)
            if error is None:
                handshake.set_result(None)
            else:
                handshake.set_exception(BenchError(f"handshake refused: {error}"))
        for record in self._reader.feed(data):
            self.on_record(record, arrived)

    async def _await_handshake(self) -> None:
        assert self._handshake is not None
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await self._handshake
        except TimeoutError:
            raise BenchError(f"no handshake reply within {REPLY_TIMEOUT:g} s") from None


class RawWebSocketClient(_Leg):
    """A WebSocket connection that calls ``on_record(record, arrival_time)`` for every hub message received, in the
    hub ``protocol`` it names at the handshake (JSON by default).

    ``await open(...)``, then :meth:`send` framed messages, then ``await close()``.
    """

    def __init__(self, on_record: RecordHandler, protocol: HubProtocol = JSON) -> None:
        super().__init__(on_record, protocol)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        binary = protocol.transfer_format is TransferFormat.BINARY
        self._frame_type = aiohttp.WSMsgType.BINARY if binary else aiohttp.WSMsgType.TEXT

    async def open(self, session: aiohttp.ClientSession, url: str, token: str | None, *, handshake: bool) -> None:
        """Connect to ``url`` (http or ws scheme); with ``handshake`` speak SignalR's handshake for the leg's protocol
        first."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        ws_url = "ws" + url[4:] if url.startswith("http") else url
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                self._ws = await session.ws_connect(ws_url, headers=headers, autoping=True, compress=0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchError(f"WebSocket connect failed: {type(exc).__name__} {exc}") from None
        self._task = asyncio.create_task(self._read(self._ws))
        if handshake:
            self._handshake = asyncio.get_running_loop().create_future()
            request = encode_handshake_request(self.protocol.name, self.protocol.version)
            await self._ws.send_frame(request, self._frame_type)
            await self._await_handshake()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            arrived = time.perf_counter()
            if message.type is aiohttp.WSMsgType.TEXT:
                self._feed(message.data.encode(), arrived)
            elif message.type is aiohttp.WSMsgType.BINARY:
                self._feed(message.data, arrived)

    async def send(self, data: bytes) -> None:
        assert self._ws is not None
        await self._ws.send_frame(data, self._frame_type)

    async def ping(self) -> None:
        """A hub Ping, so the service's 30 s client timeout (§0.1) never fires during a long run."""
        await self.send(self.protocol.ping)

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class RawSseClient(_Leg):
    """A Server-Sent Events connection (§3.6): GET the stream, POST the handshake, records come as events."""

    def __init__(self, on_record: RecordHandler) -> None:
        super().__init__(on_record)
        self._response: aiohttp.ClientResponse | None = None
        self._decoder = SseDecoder()

    async def open(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                self._response = await session.get(url, headers={**auth, "Accept": "text/event-stream"})
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchError(f"event stream failed: {type(exc).__name__} {exc}") from None
        if self._response.status != 200:
            raise BenchError(f"event stream answered {self._response.status}")
        self._task = asyncio.create_task(self._read(self._response))
        self._handshake = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(REPLY_TIMEOUT):
            async with session.post(url, headers=auth, data=encode_handshake_request()) as sent:
                if sent.status != 200:
                    raise BenchError(f"handshake POST answered {sent.status}")
        await self._await_handshake()

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        async for chunk in response.content.iter_any():
            arrived = time.perf_counter()
            for payload in self._decoder.feed(chunk):
                self._feed(payload, arrived)

    async def close(self) -> None:
        """The SSE client stops by dropping the TCP connection (§3.6)."""
        if self._response is not None:
            self._response.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class Tally:
    """A running count of arrivals; :meth:`reaches` tells when it gets to a total."""

    def __init__(self) -> None:
        self.count = 0
        self.last_arrival = 0.0
        self._target = 0
        self._waiter: asyncio.Future[float] | None = None

    def add(self, arrived: float, count: int = 1) -> None:
        self.count += count
        self.last_arrival = arrived
        waiter = self._waiter
        if waiter is not None and self.count >= self._target and not waiter.done():
            waiter.set_result(arrived)

    async def drained(self, total: int, timeout: float) -> float:
        """The arrival time of the arrival that makes the count ``total``, or, when it has not come within
        ``timeout`` seconds, the time of the last arrival so far (the rest count as lost)."""
        try:
            return await arrival(self.reaches(total), "", timeout=timeout)
        except BenchError:
            return self.last_arrival

    def reaches(self, total: int) -> asyncio.Future[float]:
        """Resolves with the arrival time of the arrival that makes the count ``total`` (one waiter at a time)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self.count >= total:
            future.set_result(self.last_arrival)
        else:
            self._target = total
            self._waiter = future
        return future


class RestBroadcaster:
    """``POST /api/hubs/{hub}/:send?api-version=2022-06-01`` with a REST token (§6.1), minted once per hub."""

    def __init__(self, session: aiohttp.ClientSession, connection: ConnectionString) -> None:
        assert connection.access_key is not None
        self._session = session
        self._base = connection.server_endpoint
        self._key = connection.access_key
        self._targets: dict[str, tuple[str, dict[str, str]]] = {}

    def _target(self, hub: str) -> tuple[str, dict[str, str]]:
        target = self._targets.get(hub)
        if target is None:
            url = f"{self._base}/api/hubs/{hub}/:send?api-version=2022-06-01"
            # The Management SDK's aud: the request URL with its query (trap 17).
            token = mint_token(self._key, url)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            target = self._targets[hub] = (url, headers)
        return target

    async def send(self, hub: str, body: bytes) -> None:
        """One broadcast; ``body`` is ``{"target":…,"arguments":[…]}``. Raises :class:`BenchError` unless 202."""
        url, headers = self._target(hub)
        async with self._session.post(url, data=body, headers=headers) as response:
            if response.status != 202:
                raise BenchError(f"REST broadcast answered {response.status}: {(await response.read())[:200]!r}")


def broadcast_body(seq: int) -> bytes:
    """The REST body of broadcast number ``seq``: the Chatroom's broadcastMessage, the number as the message."""
    return b'{"target":"broadcastMessage","arguments":["bench","%d"]}' % seq


def broadcast_record(seq: int) -> bytes:
    """The hub record the service makes of :func:`broadcast_body` (what every recipient receives)."""
    return b'{"type":1,"target":"broadcastMessage","arguments":["bench","%d"]}\x1e' % seq


def broadcast_seq_reader(protocol: HubProtocol) -> Callable[[bytes], int | None]:
    """What reads the number of a :func:`broadcast_body` message in ``protocol``: :func:`broadcast_seq` for JSON (a
    string split), else a full decode of the message."""
    if protocol is JSON:
        return broadcast_seq

    def seq_of(payload: bytes) -> int | None:
        message = protocol.decode(payload)
        if not isinstance(message, Invocation) or message.target != "broadcastMessage":
            return None
        return int(message.arguments[1])

    return seq_of


def broadcast_seq(record: bytes) -> int | None:
    """The number in a broadcastMessage record made by :func:`broadcast_body`, None for other records (pings).

    A string split, not ``json.loads``: this benchmark wrote the record itself and the receiving side must stay cheap.
    """
    if not record.startswith(b'{"type":1,'):
        return None
    return int(record.rsplit(b'"', 2)[1])


# --- statistics and output ---------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """Median of the finite values (NaN, e.g. CPU time without ``/proc``, is left out); NaN when none."""
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Metric:
    """One row of the results table: a value per round for the baseline and for ours."""

    name: str
    unit: str
    higher_is_better: bool = False
    baseline: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)

    def add(self, *, baseline: float | None = None, ours: float | None = None) -> None:
        if baseline is not None:
            self.baseline.append(baseline)
        if ours is not None:
            self.ours.append(ours)

    @property
    def ratio(self) -> float:
        base = median(self.baseline)
        return median(self.ours) / base if base else float("nan")

    def round_ratios(self) -> list[float]:
        return [o / b for o, b in zip(self.ours, self.baseline, strict=False) if b]

    def row(self) -> tuple[str, ...]:
        rounds = self.round_ratios()
        spread = f"{min(rounds):.2f}–{max(rounds):.2f}" if len(rounds) > 1 else ""
        better = "↑" if self.higher_is_better else "↓"
        return (
            f"{self.name} ({self.unit}, {better} better)",
            _number(median(self.baseline)),
            _number(median(self.ours)),
            f"{self.ratio:.2f}x",
            spread,
        )


def _number(value: float) -> str:
    if value != value:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def print_table(metrics: Sequence[Metric], baseline: str, ours: str) -> None:
    """Medians over the rounds, the ratio of the medians ``ours/baseline`` and the range of per-round ratios."""
    header = ("metric (median of rounds)", baseline, ours, f"{ours}/{baseline}", "per-round ratio")
    rows = [header, *(m.row() for m in metrics)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        print("  ".join(cells).rstrip(), flush=True)


async def arrival(future: asyncio.Future[T], what: str, timeout: float = REPLY_TIMEOUT) -> T:
    """The future's result, or :class:`BenchError` naming ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await future
    except TimeoutError:
        raise BenchError(f"{what} did not arrive within {timeout:.1f} s") from None


def print_capped(capped: Sequence[str]) -> None:
    """Say which phases the time budget stopped before their count (their numbers rest on fewer samples)."""
    if not capped:
        return
    shown = "; ".join(capped[:4]) + (f"; and {len(capped) - 4} more" if len(capped) > 4 else "")
    print(f"{len(capped)} phases stopped by the time budget before their count: {shown}", flush=True)


@contextlib.contextmanager
def measured_cpu(processes: Sequence[Process]) -> Iterator[list[float]]:
    """``with measured_cpu(ps) as used:`` → ``used[0]`` = CPU seconds those processes spent inside the block."""
    used = [0.0]
    before = cpu_of(processes)
    try:
        yield used
    finally:
        used[0] = cpu_of(processes) - before


# --- what the app-server benchmarks (modes, flow_overhead) share ---------------------------------------------------


async def server_negotiate(session: aiohttp.ClientSession, server_url: str, who: str) -> NegotiateRedirect:
    """The app server's negotiate (§3.1): ``{"url", "accessToken"}`` pointing at the service; ``who`` names the
    stack in errors."""
    url = f"{server_url}chat/negotiate?negotiateVersion=1"
    async with asyncio.timeout(REPLY_TIMEOUT):
        async with session.post(url) as response:
            body = await response.read()
    if response.status != 200:
        raise BenchError(f"{who}: the app server's negotiate answered {response.status}: {body[:200]!r}")
    redirect = parse_negotiate_response(body)
    if not isinstance(redirect, NegotiateRedirect):
        raise BenchError(f"{who}: the app server's negotiate did not redirect to the service")
    return redirect


async def ping_all(groups: Iterable[Sequence[RawWebSocketClient]]) -> None:
    """A hub Ping from every client of every group: a client silent for 30 s is closed, and the idle groups' clients
    wait through the others' phases."""
    for clients in groups:
        for client in clients:
            await client.ping()


async def send_paced(count: int, rate: float, deadline: float, send_one: Callable[[], Awaitable[None]]) -> int:
    """Call ``send_one`` up to ``count`` times at ``rate`` per second, stopping at ``deadline`` (monotonic); returns
    how many were sent."""
    interval = 1.0 / rate
    started = time.monotonic()
    sent = 0
    for i in range(count):
        wait = started + i * interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if time.monotonic() > deadline:
            break
        await send_one()
        sent += 1
    return sent


async def write_burst(
    senders: Sequence[RawWebSocketClient],
    seqs: Sequence[int],
    deadline: float,
    record: Callable[[int], bytes],
    who: str,
) -> int:
    """The records of ``seqs`` written back to back, shared out over ``senders``, until all are written or
    ``deadline`` (monotonic) passes; returns how many were written. Writes still blocked ``REPLY_TIMEOUT`` after the
    deadline are a :class:`BenchError` naming ``who``."""
    issued = 0

    async def sender(client: RawWebSocketClient) -> None:
        nonlocal issued
        while issued < len(seqs) and time.monotonic() < deadline:
            seq = seqs[issued]
            issued += 1
            await client.send(record(seq))
            if issued % 50 == 0:
                await asyncio.sleep(0)  # let the readers run, so the senders never starve them

    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + REPLY_TIMEOUT):
            await asyncio.gather(*(sender(c) for c in senders))
    except TimeoutError:
        raise BenchError(f"{who}: the burst's writes did not finish in time") from None
    return issued


@dataclass
class RoundResult:
    """The raw numbers, per round, of one stack's paced and burst phases."""

    paced_sent: list[int] = field(default_factory=list)
    paced_complete: list[int] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    burst_sent: list[int] = field(default_factory=list)
    burst_expected: list[int] = field(default_factory=list)
    burst_delivered: list[int] = field(default_factory=list)
    deliveries_per_s: list[float] = field(default_factory=list)
    completion_errors: int = 0

    def paced_summary(self) -> dict[str, Any]:
        return {
            "sent": self.paced_sent,
            "complete": self.paced_complete,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "completion_errors": self.completion_errors,
        }

    def add_paced(self, sent: int, latencies: Sequence[float]) -> tuple[float, float] | None:
        """Record one paced phase: ``sent`` writes, ``latencies`` (s) of those that reached every client. Returns
        their p50 and p99 in ms, None when none did."""
        self.paced_sent.append(sent)
        self.paced_complete.append(len(latencies))
        if not latencies:
            return None
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        self.p50_ms.append(p50)
        self.p99_ms.append(p99)
        return p50, p99

    def add_burst(self, issued: int, expected: int, delivered: int, elapsed: float) -> float | None:
        """Record one burst: ``issued`` writes, ``expected`` and ``delivered`` deliveries in ``elapsed`` seconds.
        Returns the deliveries per second, None when nothing was issued or no time passed."""
        self.burst_sent.append(issued)
        self.burst_expected.append(expected)
        self.burst_delivered.append(delivered)
        if not (issued and elapsed > 0):
            return None
        rate = delivered / elapsed
        self.deliveries_per_s.append(rate)
        return rate

    def burst_summary(self) -> dict[str, Any]:
        """The burst numbers every stack has; a benchmark adds its own CPU keys after them."""
        return {
            "sent": self.burst_sent,
            "expected_deliveries": self.burst_expected,
            "delivered": self.burst_delivered,
            "deliveries_per_s": self.deliveries_per_s,
        }


def check_load(parser: argparse.ArgumentParser, args: argparse.Namespace, max_clients: int) -> None:
    """Usage errors (exit 2) for ``--clients``, ``--paced``, ``--burst``, ``--rate`` and ``--senders`` out of range."""
    if not 2 <= args.clients <= max_clients:
        parser.error(f"--clients must be between 2 and {max_clients}")
    if not (1 <= args.paced <= 10000 and 1 <= args.burst <= 100000 and 0 < args.rate <= 1000):
        parser.error("--paced must be 1–10000, --burst 1–100000, --rate above 0 and at most 1000")
    if args.senders < 1:
        parser.error("--senders must be at least 1")


class Reporting(Protocol):
    """A finished benchmark: its printed report and its JSON summary."""

    def report(self) -> None: ...

    def summary(self, load: float) -> dict[str, Any]: ...


def reporter(bench: Reporting, load: float, budget: Budget, json_path: str | None) -> Callable[[], None]:
    """The report :func:`run_benchmark` prints once the children are stopped: the benchmark's own, this process's
    load, the time measured, and the JSON summary written to ``json_path`` when given."""

    def report() -> None:
        bench.report()
        print(f"benchmark process CPU {load:.0%} of wall time; measured in {budget.elapsed():.1f} s", flush=True)
        if json_path:
            with open(json_path, "w", encoding="utf-8") as out:
                json.dump(bench.summary(load), out, indent=2)

    return report
