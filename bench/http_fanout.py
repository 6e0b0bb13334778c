"""Fan-out over the HTTP transports: K clients on the emulator over Server-Sent Events and over LongPolling, against
K clients on raw ``websockets`` as the baseline.

Servers (a fresh process per leg and round, pinned to core 0 with ``taskset`` when there are two cores or more; this
load generator is pinned to core 1 and runs on uvloop when it is installed):

- ``websockets``: ``bench/peers/websockets_broadcast.py`` in ``bench/.venvs/websockets``, as ``bench.fanout`` starts
  it: no protocol, no auth; each record sent on its sender socket is written as-is to every client.
- ``sse`` and ``longpolling``: ``signalr-emulator --port 0 --log-level warning`` (Serverless mode). Each client
  negotiates with a token minted as an app server does (``signalr.negotiate.build_redirect``), opens its transport
  with that token (``docs/protocol.md`` §3.6, §3.7), POSTs the JSON handshake (§3.8) and waits for the reply. The
  REST API ``POST /api/hubs/{hub}/:send`` broadcasts, as an app server does.

The clients are lean, on ``asyncio`` protocols (no task and no stream per client): an SSE client reads its stream and
counts the records in it by their 0x1E separator; a LongPolling client parses each poll's answer (status line,
``Content-Length``) and polls again at once with the same pre-built request (its ``_`` cache buster fixed per client).
The WebSocket clients are ``aiohttp`` ones that count messages. Every client receives
``{"type":1,"target":"broadcastMessage","arguments":["bench","N"]}`` + 0x1E.

Per leg and round: B broadcasts back to back (frames/s at the clients until every client has every record, and the
server's CPU µs per record from ``/proc``), then P broadcasts paced at R/s (latency of every record from the start of
its send until a client has it: p50 and p99, and the server's CPU per record again: a LongPolling client makes one
poll per record here). Rounds alternate the order of the legs; the table shows the median of
the rounds with min–max and each HTTP leg's ratio to raw WebSockets. Every phase is bounded in count and in time.
Run ``python -m bench.http_fanout`` (``--clients`` K, ``--burst`` B, ``--rounds``; ``--help`` for all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp

from signalr.connection_string import ConnectionString, parse_connection_string
from signalr.handshake import encode_handshake_request
from signalr.negotiate import build_redirect
from tests.support.processes import REPO, script

from ._harness import (
    REPLY_TIMEOUT,
    BenchError,
    RestBroadcaster,
    Services,
    Tally,
    arrival,
    broadcast_body,
    broadcast_record,
    cpu_seconds,
    negotiate,
    percentile,
    ready_line,
    run_benchmark,
)
from .fanout import (
    HTTP_SENDERS,
    HUB,
    PEER_READY,
    PEER_SCRIPTS,
    available_peers,
    order_of,
    peer_python,
    pin_load_generator,
    pinned,
    ratio,
    spread,
)
from .loadgen import uvloop_module

LEGS = ("websockets", "sse", "longpolling")
BASELINE = "websockets"
DEFAULT_JSON = REPO / "artifacts" / "bench" / "http_fanout.json"
SEPARATOR = b"\x1e"
MARKER = b'"broadcastMessage"'
CONNECT_CONCURRENCY = 32
PACED_BASE = 1_000_000  # paced broadcasts are numbered from here, burst ones from 1


@dataclass(frozen=True)
class Counts:
    """The sizes of one run; every phase is also bounded in time (``phase_timeout``)."""

    clients: int = 200
    burst: int = 200
    paced: int = 100
    rate: float = 20.0
    rounds: int = 3
    phase_timeout: float = 60.0


Results = dict[str, dict[str, list[float]]]  # leg → metric → value per round


# --- receiving -----------------------------------------------------------------------------------------------------


class Receiver:
    """What all clients of one leg received: a record count, and while ``timing`` the latency of every record."""

    def __init__(self) -> None:
        self.records = Tally()
        self.timing = False
        self.sent_at: dict[int, float] = {}  # seq → when its send started (paced phase)
        self.latencies: list[float] = []

    def feed(self, records: bytes, arrived: float) -> None:
        """``records``: whole records, each ending in 0x1E (other records than broadcasts are skipped)."""
        count = records.count(MARKER)
        if not count:
            return
        if self.timing:
            for record in records.split(SEPARATOR):
                if MARKER in record:
                    sent = self.sent_at.get(int(record.rsplit(b'"', 2)[1]))
                    if sent is not None:
                        self.latencies.append(arrived - sent)
        tally = self.records
        tally.count += count - 1
        tally.add(arrived)


class _Records:
    """Cuts a byte stream into whole records for a :class:`Receiver` (the tail after the last 0x1E waits)."""

    __slots__ = ("_receiver", "_tail", "ready")

    def __init__(self, receiver: Receiver, ready: asyncio.Future[None]) -> None:
        self._receiver = receiver
        self._tail = b""
        self.ready = ready  # resolved by the first record (the handshake reply)

    def feed(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        end = data.rfind(SEPARATOR) + 1
        self._tail = data[end:]
        if end:
            if not self.ready.done():
                self.ready.set_result(None)
            self._receiver.feed(data[:end], time.perf_counter())


class _HttpClient(asyncio.Protocol):
    """A lean HTTP/1.1 client connection: ``request`` is written once connected; ``answered`` resolves with the first
    answer's head (200), ``failed`` with a reason when something else comes or the connection ends."""

    def __init__(self, request: bytes, records: _Records) -> None:
        self._request = request
        self._records = records
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.answered: asyncio.Future[None] = loop.create_future()
        self.failed: asyncio.Future[str] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("the connection closed")

    def _fail(self, reason: str) -> None:
        if not self.failed.done():
            self.failed.set_result(reason)

    def _answered(self) -> None:
        if not self.answered.done():
            self.answered.set_result(None)


class SseClient(_HttpClient):
    """One Server-Sent Events connection (§3.6): the GET, then every chunk of the stream counted as it comes (the
    chunked encoding's size lines sit between events, never inside a record)."""

    def __init__(self, request: bytes, records: _Records) -> None:
        super().__init__(request, records)
        self._head = b""
        self._streaming = False

    def data_received(self, data: bytes) -> None:
        if self._streaming:
            self._records.feed(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return
        status = self._head[9:12]
        if status != b"200":
            self._fail(f"the event stream answered {status.decode(errors='replace')}")
            return
        self._streaming = True
        rest, self._head = self._head[end + 4 :], b""
        self._answered()
        if rest:
            self._records.feed(rest)


class LongPollingClient(_HttpClient):
    """One LongPolling client (§3.7) on one keep-alive connection: a poll, its answer's records, the next poll at
    once; a 204 ends it."""

    def __init__(self, request: bytes, records: _Records) -> None:
        super().__init__(request, records)
        self._buffer = b""
        self._body_left = -1  # bytes of the current answer's body still to come; -1 while reading its head

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        while buffer:
            if self._body_left < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buffer[:end]
                status = head[9:12]
                if status == b"204":
                    self._buffer = b""
                    return
                if status != b"200":
                    self._fail(f"a poll answered {status.decode(errors='replace')}")
                    return
                at = head.lower().find(b"\r\ncontent-length:")
                if at < 0:
                    self._fail("a poll answer without Content-Length")
                    return
                line_end = head.find(b"\r\n", at + 2)
                self._body_left = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
                buffer = buffer[end + 4 :]
                self._answered()
            take = min(self._body_left, len(buffer))
            if take:
                self._records.feed(buffer[:take])
                buffer = buffer[take:]
                self._body_left -= take
            if self._body_left == 0:
                self._body_left = -1
                assert self.transport is not None
                self.transport.write(self._request)
            else:
                break
        self._buffer = buffer


class WebSocketClient:
    """One raw WebSocket client of the ``websockets`` peer: every text message is one record."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                self._ws = await session.ws_connect(url, autoping=True, compress=0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchError(f"WebSocket connect failed: {type(exc).__name__} {exc}") from None
        self._task = asyncio.create_task(self._read(self._ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        feed = self._receiver.feed
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                feed(message.data.encode(), time.perf_counter())

    async def close(self) -> None:
        if self._ws is not None:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()


# --- the legs ------------------------------------------------------------------------------------------------------


class HttpLeg:
    """K emulator clients on one HTTP transport: negotiate, open the transport, handshake; closed by their socket."""

    def __init__(
        self, transport: str, connection: ConnectionString, session: aiohttp.ClientSession, receiver: Receiver
    ) -> None:
        self.transport = transport
        self.connection = connection
        self.session = session
        self.receiver = receiver
        self.clients: list[SseClient | LongPollingClient] = []

    async def connect_one(self) -> None:
        redirect = build_redirect(self.connection, HUB, request_path="/chat/negotiate")
        url = await negotiate(self.session, redirect)
        token = redirect.access_token
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        records = _Records(self.receiver, ready)
        head = f"Host: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        client: SseClient | LongPollingClient
        if self.transport == "sse":
            request = f"GET {parts.path}?{parts.query} HTTP/1.1\r\n{head}Accept: text/event-stream\r\n\r\n"
            client = SseClient(request.encode(), records)
        else:
            cache_buster = int(time.time() * 1000)
            request = f"GET {parts.path}?{parts.query}&_={cache_buster} HTTP/1.1\r\n{head}\r\n"
            client = LongPollingClient(request.encode(), records)
        await loop.create_connection(lambda: client, parts.hostname or "127.0.0.1", parts.port or 80)
        self.clients.append(client)
        # The handshake goes once the transport is bound: the stream's head came, or the first poll's answer (§3.7).
        await arrival(_first(client.answered, client.failed), f"{self.transport}: the transport's first answer")
        await self._post(url, token, encode_handshake_request())
        await arrival(_first(ready, client.failed), f"{self.transport}: the handshake reply")

    async def _post(self, url: str, token: str, body: bytes) -> None:
        async with asyncio.timeout(REPLY_TIMEOUT):
            async with self.session.post(url, data=body, headers={"Authorization": f"Bearer {token}"}) as sent:
                if sent.status != 200:
                    raise BenchError(f"{self.transport}: POST answered {sent.status}")

    def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()


def _first(ready: asyncio.Future[None], failed: asyncio.Future[str]) -> asyncio.Future[None]:
    """Resolves with ``ready``; a ``failed`` reason first makes it a BenchError."""

    async def wait() -> None:
        await asyncio.wait((ready, failed), return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            raise BenchError(failed.result())

    return asyncio.ensure_future(wait())


async def connect_all(count: int, deadline: float, connect_one: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``count`` connections, ``CONNECT_CONCURRENCY`` at a time; BenchError past ``deadline`` (monotonic)."""
    left = iter(range(count))

    async def worker() -> None:
        for _ in left:
            if time.monotonic() > deadline:
                raise BenchError(f"not all {count} clients connected within the time bound")
            await connect_one()

    await asyncio.gather(*(worker() for _ in range(min(CONNECT_CONCURRENCY, count))))


# --- one round of one leg ------------------------------------------------------------------------------------------


class Server:
    """The leg's server process and how one broadcast reaches all its clients."""

    def __init__(self, services: Services, session: aiohttp.ClientSession, leg: str) -> None:
        self.leg = leg
        self._session = session
        self.connection: ConnectionString | None = None
        self._sender: aiohttp.ClientWebSocketResponse | None = None
        if leg == BASELINE:
            argv = [str(peer_python(BASELINE)), str(PEER_SCRIPTS / "websockets_broadcast.py")]
            self.process = services.spawn(pinned(argv))
            line = ready_line(self.process)
            if not line.startswith(PEER_READY):
                raise BenchError(f"unexpected ready line from the websockets peer: {line[:200]!r}")
            self.ws_url = "ws" + line[len(PEER_READY) :].strip()[4:]
        else:
            argv = [script("signalr-emulator"), "--port", "0", "--log-level", "warning"]
            self.process = services.spawn(pinned(argv))
            self.connection = parse_connection_string(ready_line(self.process))
            self._rest = RestBroadcaster(session, self.connection)

    async def send(self, seq: int) -> None:
        """Broadcast number ``seq``: a text frame on the websockets peer's sender socket, else a REST send."""
        if self.connection is not None:
            await self._rest.send(HUB, broadcast_body(seq))
            return
        if self._sender is None:
            async with asyncio.timeout(REPLY_TIMEOUT):
                self._sender = await self._session.ws_connect(f"{self.ws_url}/send", compress=0)
        await self._sender.send_bytes(broadcast_record(seq))

    async def send_many(self, seqs: Sequence[int]) -> None:
        """Back to back: ``HTTP_SENDERS`` concurrent REST sends, or one after another on the sender socket."""
        queue = list(reversed(seqs))

        async def sender() -> None:
            while queue:
                await self.send(queue.pop())

        await asyncio.gather(*(sender() for _ in range(HTTP_SENDERS if self.connection is not None else 1)))

    async def stop(self, services: Services) -> None:
        if self._sender is not None:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await self._sender.close()
        self.process.stop()
        services.processes.remove(self.process)


async def measure_leg(leg: str, services: Services, session: aiohttp.ClientSession, counts: Counts) -> dict[str, float]:
    """Start the leg's server, connect K clients, burst, then paced; returns the round's figures."""
    server = Server(services, session, leg)
    receiver = Receiver()
    ws_clients: list[WebSocketClient] = []
    http_leg: HttpLeg | None = None
    deadline = time.monotonic() + counts.phase_timeout
    try:
        if server.connection is None:
            url = f"{server.ws_url}/ws"

            async def connect_ws() -> None:
                client = WebSocketClient(receiver)
                ws_clients.append(client)
                await client.open(session, url)

            await connect_all(counts.clients, deadline, connect_ws)
        else:
            http_leg = HttpLeg(leg, server.connection, session, receiver)
            await connect_all(counts.clients, deadline, http_leg.connect_one)
        return await _fan_out(server, receiver, counts)
    finally:
        if http_leg is not None:
            http_leg.close()
        for client in ws_clients:
            await client.close()
        await server.stop(services)


async def _fan_out(server: Server, receiver: Receiver, counts: Counts) -> dict[str, float]:
    values: dict[str, float] = {}
    pid = server.process.pid
    k = counts.clients
    await asyncio.sleep(0.3)

    # Burst: B broadcasts back to back, until every client has every record.
    done = receiver.records.reaches(receiver.records.count + k * counts.burst)
    cpu_before, load_before = cpu_seconds(pid), time.process_time()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(counts.phase_timeout):
            await server.send_many(range(1, counts.burst + 1))
    except TimeoutError:
        raise BenchError(f"{server.leg}: the burst's sends took over {counts.phase_timeout:g} s") from None
    last = await arrival(done, f"{k * counts.burst} burst records", counts.phase_timeout)
    elapsed = last - started
    values["burst_frames_per_s"] = k * counts.burst / elapsed
    values["burst_server_us_per_frame"] = 1e6 * (cpu_seconds(pid) - cpu_before) / (k * counts.burst)
    values["burst_load_cpu_percent"] = 100 * (time.process_time() - load_before) / elapsed

    # Paced: P broadcasts at R/s; latency of every record from the start of its send.
    await asyncio.sleep(0.3)
    done = receiver.records.reaches(receiver.records.count + k * counts.paced)
    receiver.timing = True
    interval = 1.0 / counts.rate
    cpu_before = cpu_seconds(pid)
    paced_start = time.perf_counter()
    phase_end = time.monotonic() + counts.phase_timeout
    for i in range(counts.paced):
        wait = paced_start + i * interval - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        if time.monotonic() > phase_end:
            raise BenchError(f"{server.leg}: the paced sends took over {counts.phase_timeout:g} s")
        seq = PACED_BASE + i
        receiver.sent_at[seq] = time.perf_counter()
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await server.send(seq)
        except TimeoutError:
            raise BenchError(f"{server.leg}: a paced send took over {REPLY_TIMEOUT:g} s") from None
    await arrival(done, f"{k * counts.paced} paced records", counts.phase_timeout)
    latencies = receiver.latencies
    values["paced_server_us_per_frame"] = 1e6 * (cpu_seconds(pid) - cpu_before) / (k * counts.paced)
    values["paced_p50_ms"] = 1000 * percentile(latencies, 50)
    values["paced_p99_ms"] = 1000 * percentile(latencies, 99)
    values["paced_max_ms"] = 1000 * max(latencies)
    return values


# --- the run -------------------------------------------------------------------------------------------------------


METRICS = (
    ("burst_frames_per_s", "fan-out to {K}, {B} broadcasts back to back: frames/s ↑"),
    ("burst_server_us_per_frame", "server CPU per record in the burst, µs ↓"),
    ("paced_p50_ms", "paced at {R}/s: delivery p50 ms ↓"),
    ("paced_p99_ms", "paced: delivery p99 ms ↓"),
    ("paced_max_ms", "paced: delivery max ms ↓"),
    ("paced_server_us_per_frame", "paced: server CPU per record, µs ↓"),
    ("burst_load_cpu_percent", "load generator CPU % in the burst ↓"),
)


def markdown_table(results: Results, legs: Sequence[str], counts: Counts) -> str:
    """Medians of the rounds with min–max, and each HTTP leg's ratio to raw WebSockets."""
    http = [leg for leg in legs if leg != BASELINE]
    header = ["metric (median, min–max)", *legs, *(f"{leg}/websockets" for leg in http)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label in METRICS:
        text = label.format(K=counts.clients, B=counts.burst, R=f"{counts.rate:g}")
        cells = [spread(results.get(leg, {}).get(key, [])) for leg in legs]
        ratios = [ratio(results, key, BASELINE, ours_name=leg) for leg in http]
        lines.append("| " + " | ".join([text, *cells, *ratios]) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[Counts, list[str], str]:
    parser = argparse.ArgumentParser(prog="bench.http_fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=Counts.clients, help="K clients per leg (default 200)")
    parser.add_argument("--burst", type=int, default=Counts.burst, help="B broadcasts back to back (default 200)")
    parser.add_argument("--paced", type=int, default=Counts.paced, help="P paced broadcasts (default 100)")
    parser.add_argument("--rate", type=float, default=Counts.rate, help="R paced broadcasts per s (default 20)")
    parser.add_argument("--rounds", type=int, default=Counts.rounds, help="rounds, order alternating (default 3)")
    parser.add_argument("--legs", default=",".join(LEGS), help=f"comma-separated subset of {','.join(LEGS)}")
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=str(DEFAULT_JSON),
        help="per-round values as JSON (default artifacts/bench/http_fanout.json)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 5000:
        parser.error("--clients must be 1..5000")
    if not 1 <= args.burst <= 10_000 or not 1 <= args.paced <= 10_000 or not 0.1 <= args.rate <= 1000:
        parser.error("--burst and --paced must be 1..10000, --rate 0.1..1000")
    if not 1 <= args.rounds <= 9:
        parser.error("--rounds must be 1..9")
    legs = [name.strip() for name in args.legs.split(",") if name.strip()]
    unknown = [name for name in legs if name not in LEGS]
    if unknown or not legs:
        parser.error(f"--legs: unknown {', '.join(unknown) or '(none given)'}")
    counts = Counts(clients=args.clients, burst=args.burst, paced=args.paced, rate=args.rate, rounds=args.rounds)
    return counts, legs, args.json


async def run(services: Services, counts: Counts, legs: Sequence[str]) -> Results:
    """Every round of every leg; returns ``{leg: {metric: [value per round]}}``."""
    results: Results = {leg: {} for leg in legs}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for round_index in range(counts.rounds):
            for leg in order_of(legs, round_index):
                values = await measure_leg(leg, services, session, counts)
                for key, value in values.items():
                    results[leg].setdefault(key, []).append(value)
                print(
                    f"  round {round_index + 1} {leg}: {values['burst_frames_per_s']:,.0f} frames/s, "
                    f"{values['burst_server_us_per_frame']:.1f} µs/record, p99 {values['paced_p99_ms']:.1f} ms, "
                    f"load generator {values['burst_load_cpu_percent']:.0f} % CPU in the burst",
                    flush=True,
                )
    return results


def main(argv: list[str] | None = None) -> int:
    counts, wanted, json_path = parse_args(argv)
    missing = available_peers([BASELINE])[1] if BASELINE in wanted else []
    legs = [leg for leg in wanted if leg not in missing]

    def measure(services: Services) -> Callable[[], None]:
        pinning = pin_load_generator()
        if missing:
            print("left out (no venv under bench/.venvs; `make bench-peers`): websockets", flush=True)
        uvloop = uvloop_module()
        loop = "asyncio" if uvloop is None else "uvloop"
        print(
            f"K={counts.clients} B={counts.burst} P={counts.paced}@{counts.rate:g}/s, {counts.rounds} rounds; "
            f"{pinning}; load generator on {loop}",
            flush=True,
        )
        runner: Callable[[Coroutine[Any, Any, Results]], Results] = asyncio.run if uvloop is None else uvloop.run
        results = runner(run(services, counts, legs))

        setup = {"legs": legs, "left_out": missing, "pinning": pinning, "load_loop": loop, "senders": HTTP_SENDERS}

        def report() -> None:
            print(markdown_table(results, legs, counts), flush=True)
            out = Path(json_path)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"counts": counts.__dict__, **setup, "rounds": results}, indent=2) + "\n")
            print(f"per-round values: {json_path}", flush=True)

        return report

    return run_benchmark("bench.http_fanout", measure)


if __name__ == "__main__":
    sys.exit(main())
