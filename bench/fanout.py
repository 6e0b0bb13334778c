"""Fan-out and idle connections against the peers: raw ``websockets``, a bare aiohttp fan-out, ``aiosignalr`` and
``signalr-emulator`` side by side, K WebSocket clients each.

Peers (each a fresh process per round, pinned to core 0 with ``taskset`` when there are two cores or more; this load
generator is pinned to core 1):

- ``websockets``: ``bench/peers/websockets_broadcast.py`` in ``bench/.venvs/websockets`` (``websockets==17.4``): no
  protocol, no auth; a sender WebSocket's messages are written as-is to every client (``websockets.broadcast``).
- ``aiosignalr``: ``bench/peers/aiosignalr_hub.py`` in ``bench/.venvs/aiosignalr`` (``aiosignalr==0.1.1``): a SignalR
  hub server; ``POST /send`` broadcasts through its lifetime manager (``send_all``, what a hub's ``Clients.All``
  does). It writes binary frames, JSON included.
- ``aiohttp``: ``bench.broadcast``'s baseline server in the product's venv: a bare aiohttp WebSocket fan-out (no
  protocol, no auth), the web stack the emulator and aiosignalr are built on; ``POST /send/{room}``.
- ``emulator``: ``signalr-emulator --port 0 --log-level warning`` (Serverless mode) and the REST API
  ``POST /api/hubs/{hub}/:send``: what an app server does to broadcast.
- ``webpubsub``: ``webpubsub-emulator --port 0 --log-level warning``, the local Azure Web PubSub: clients speak the
  ``json.webpubsub.azure.v1`` subprotocol, and the data-plane ``POST /api/hubs/{hub}/:send`` (what
  ``azure-messaging-webpubsubservice``'s ``send_to_all`` calls) broadcasts. The same chat on the other service, so its
  rows read beside the SignalR emulator's (the ``webpubsub/emulator`` column).

Every client receives the same record, ``{"type":1,"target":"broadcastMessage","arguments":["bench","N"]}`` + 0x1E
(SignalR JSON; the websockets and aiohttp peers are sent the record itself). The SignalR peers' clients do the JSON
handshake. Web PubSub clients receive the same broadcast body as the ``data`` of a server message,
``{"type":"message","from":"server","dataType":"json","data":{"target":"broadcastMessage","arguments":["bench","N"]}}``.
``make bench`` installs the venvs of websockets and aiosignalr; a peer whose venv is missing is left out and
named.

Per peer and round: 0 → N idle connections (RSS delta per connection from ``/proc``), idle CPU % of the server over a
few seconds; then N - K connections are closed and the K left get B broadcasts back to back (frames/s at the clients,
until every client has every frame; server CPU µs per frame) and P broadcasts paced at R/s (delivery latency per
frame, from the start of the send until a client has it: p50/p99). The peers' longest GC pause in the round comes
from ``gc.callbacks`` in their scripts; the emulator's is not measured (the product is not changed for it): its paced
p99 and max show stalls from outside.
Run ``python -m bench.fanout`` (``--clients`` K, ``--idle`` N, ``--json PATH``; ``--help`` for all).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from signalr.connection_string import ConnectionString, parse_connection_string
from signalr.negotiate import build_redirect
from tests.support.processes import REPO, Process, script
from webpubsub.connection_string import WebPubSubConnectionString
from webpubsub.connection_string import parse_connection_string as parse_webpubsub_connection_string
from webpubsub.subprotocol import JSON_SUBPROTOCOL
from webpubsub.tokens import mint_client_token, mint_rest_token

from ._harness import (
    REPLY_TIMEOUT,
    BenchError,
    RawWebSocketClient,
    RestBroadcaster,
    Services,
    Tally,
    arrival,
    broadcast_body,
    broadcast_record,
    cpu_seconds,
    median,
    negotiate,
    percentile,
    ready_line,
    run_benchmark,
)
from .broadcast import BASELINE_READY

PEERS = ("websockets", "aiohttp", "aiosignalr", "emulator", "webpubsub")
OURS = "emulator"
IN_PRODUCT_VENV = ("emulator", "aiohttp", "webpubsub")  # the others need their own venvs under bench/.venvs
VENVS = REPO / "bench" / ".venvs"
PEER_SCRIPTS = REPO / "bench" / "peers"
PEER_READY = "fanout peer listening on "
HUB = "fanout"
CONNECT_CONCURRENCY = 32
HTTP_SENDERS = 4  # concurrent POSTs in a burst (the websockets peer gets its frames on one socket, no reply)
SETTLE = 1.0  # seconds after the last connection before RSS is read
SERVER_CORE = 0
DEFAULT_JSON = REPO / "artifacts" / "bench" / "fanout.json"
LOAD_CORE = 1


@dataclass(frozen=True)
class Counts:
    """The sizes of one run; every phase is also bounded in time (``phase_timeout``)."""

    clients: int = 1000
    idle: int = 2000
    burst: int = 200
    paced: int = 100
    rate: float = 20.0
    idle_seconds: float = 3.0
    rounds: int = 3
    phase_timeout: float = 60.0


Results = dict[str, dict[str, list[float]]]  # peer → metric → value per round


# --- receiving -----------------------------------------------------------------------------------------------------


def record_seq(record: bytes) -> int | None:
    """The N of a broadcastMessage record (any JSON spacing), None for other records (pings)."""
    if b"broadcastMessage" not in record:
        return None
    return int(record.rsplit(b'"', 2)[1])


class Receiver:
    """What all clients of one peer received: a frame count, and per-frame latency for sequence numbers being timed."""

    def __init__(self) -> None:
        self.frames = Tally()
        self.sent_at: dict[int, float] = {}  # seq → when its send started (paced phase only)
        self.latencies: list[float] = []

    def on_record(self, record: bytes, arrived: float) -> None:
        seq = record_seq(record)
        if seq is None:
            return
        sent = self.sent_at.get(seq)
        if sent is not None:
            self.latencies.append(arrived - sent)
        self.frames.add(arrived)


# --- the peers -----------------------------------------------------------------------------------------------------


def pinned(argv: list[str]) -> list[str]:
    """``argv`` under ``taskset -c 0`` when taskset exists and this machine has two cores or more."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(SERVER_CORE), *argv]
    return argv


def peer_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def available_peers(wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    """(peers that can run, peers left out because their venv is missing)."""
    present = [name for name in wanted if name in IN_PRODUCT_VENV or peer_python(name).exists()]
    return present, [name for name in wanted if name not in present]


class Peer:
    """One server under test: its process, how a client connects, how one broadcast is sent."""

    name: str
    process: Process

    async def connect(self, session: aiohttp.ClientSession, receiver: Receiver) -> RawWebSocketClient:
        raise NotImplementedError

    async def send(self, seq: int) -> None:
        raise NotImplementedError

    async def send_many(self, seqs: Sequence[int]) -> None:
        """Send these broadcasts back to back (``HTTP_SENDERS`` concurrent requests unless a peer says otherwise)."""
        queue = list(reversed(seqs))

        async def sender() -> None:
            while queue:
                await self.send(queue.pop())

        await asyncio.gather(*(sender() for _ in range(HTTP_SENDERS)))

    async def gc_stats(self, session: aiohttp.ClientSession) -> dict[str, float] | None:
        return None

    async def close(self) -> None:
        return None


class WebsocketsPeer(Peer):
    name = "websockets"

    def __init__(self, process: Process, url: str, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.url = url
        self.ws_url = "ws" + url[4:]
        self._session = session
        self._sender: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, session: aiohttp.ClientSession, receiver: Receiver) -> RawWebSocketClient:
        client = RawWebSocketClient(receiver.on_record)
        await client.open(session, f"{self.ws_url}/ws", None, handshake=False)
        return client

    async def _control(self) -> aiohttp.ClientWebSocketResponse:
        if self._sender is None:
            async with asyncio.timeout(REPLY_TIMEOUT):
                self._sender = await self._session.ws_connect(f"{self.ws_url}/send", compress=0)
        return self._sender

    async def send(self, seq: int) -> None:
        await (await self._control()).send_bytes(broadcast_record(seq))

    async def send_many(self, seqs: Sequence[int]) -> None:
        sender = await self._control()
        for seq in seqs:
            await sender.send_bytes(broadcast_record(seq))

    async def gc_stats(self, session: aiohttp.ClientSession) -> dict[str, float] | None:
        return await _peer_stats(session, f"{self.url}/stats")

    async def close(self) -> None:
        if self._sender is not None:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await self._sender.close()


class AiosignalrPeer(Peer):
    name = "aiosignalr"

    def __init__(self, process: Process, url: str, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.url = url
        self._session = session

    async def connect(self, session: aiohttp.ClientSession, receiver: Receiver) -> RawWebSocketClient:
        client = RawWebSocketClient(receiver.on_record)
        await client.open(session, f"{self.url}/hub", None, handshake=True)
        return client

    async def send(self, seq: int) -> None:
        async with self._session.post(f"{self.url}/send", data=b"%d" % seq) as response:
            if response.status != 202:
                raise BenchError(f"aiosignalr peer answered {response.status}")

    async def gc_stats(self, session: aiohttp.ClientSession) -> dict[str, float] | None:
        return await _peer_stats(session, f"{self.url}/stats")


class AiohttpPeer(Peer):
    """``bench.broadcast``'s baseline: a bare aiohttp WebSocket fan-out in the product's venv (no protocol, no auth,
    each POST body awaited onto every socket in turn). The same web stack as the emulator and aiosignalr, so it shows
    what aiohttp itself costs per connection and per frame."""

    name = "aiohttp"

    def __init__(self, process: Process, url: str, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.url = url
        self._session = session

    async def connect(self, session: aiohttp.ClientSession, receiver: Receiver) -> RawWebSocketClient:
        client = RawWebSocketClient(receiver.on_record)
        await client.open(session, f"{self.url}/ws/{HUB}", None, handshake=False)
        return client

    async def send(self, seq: int) -> None:
        async with self._session.post(f"{self.url}/send/{HUB}", data=broadcast_record(seq)) as response:
            if response.status != 202:
                raise BenchError(f"aiohttp peer answered {response.status}")


class EmulatorPeer(Peer):
    name = "emulator"

    def __init__(self, process: Process, connection: ConnectionString, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.connection = connection
        self.rest = RestBroadcaster(session, connection)

    async def connect(self, session: aiohttp.ClientSession, receiver: Receiver) -> RawWebSocketClient:
        redirect = build_redirect(self.connection, HUB, request_path="/chat/negotiate")
        client = RawWebSocketClient(receiver.on_record)
        await client.open(session, await negotiate(session, redirect), redirect.access_token, handshake=True)
        return client

    async def send(self, seq: int) -> None:
        await self.rest.send(HUB, broadcast_body(seq))


class WebPubSubClientLeg(RawWebSocketClient):
    """A Web PubSub client on ``json.webpubsub.azure.v1``: every text frame is one message, no record separator."""

    async def open_webpubsub(self, session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                self._ws = await session.ws_connect(url, protocols=(JSON_SUBPROTOCOL,), autoping=True, compress=0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchError(f"Web PubSub connect failed: {type(exc).__name__} {exc}") from None
        if self._ws.protocol != JSON_SUBPROTOCOL:
            raise BenchError(f"the Web PubSub emulator chose subprotocol {self._ws.protocol!r}")
        self._task = asyncio.create_task(self._read(self._ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.on_record(message.data.encode(), time.perf_counter())


class WebPubSubPeer(Peer):
    name = "webpubsub"

    def __init__(self, process: Process, connection: WebPubSubConnectionString, session: aiohttp.ClientSession) -> None:
        self.process = process
        self._session = session
        token = mint_client_token(connection.access_key, connection.client_audience(HUB))
        self._client_url = f"{connection.client_base_url(HUB)}?access_token={token}"
        self._send_url = f"{connection.endpoint}/api/hubs/{HUB}/:send?api-version=2024-01-01"
        rest_token = mint_rest_token(connection.access_key, self._send_url, lifetime=3600)
        self._headers = {"Authorization": f"Bearer {rest_token}", "Content-Type": "application/json"}

    async def connect(self, session: aiohttp.ClientSession, receiver: Receiver) -> RawWebSocketClient:
        client = WebPubSubClientLeg(receiver.on_record)
        await client.open_webpubsub(session, self._client_url)
        return client

    async def send(self, seq: int) -> None:
        async with self._session.post(self._send_url, data=broadcast_body(seq), headers=self._headers) as response:
            if response.status != 202:
                body = (await response.read())[:200]
                raise BenchError(f"Web PubSub send_to_all answered {response.status}: {body!r}")


async def _peer_stats(session: aiohttp.ClientSession, url: str) -> dict[str, float] | None:
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            async with session.get(url) as response:
                stats: dict[str, float] = json.loads(await response.read())
                return stats
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


def start_peer(services: Services, name: str, session: aiohttp.ClientSession) -> Peer:
    """Start peer ``name`` pinned to the server core and wait for its ready line."""
    if name == OURS:
        process = services.spawn(pinned([script("signalr-emulator"), "--port", "0", "--log-level", "warning"]))
        return EmulatorPeer(process, parse_connection_string(ready_line(process)), session)
    if name == "webpubsub":
        process = services.spawn(pinned([script("webpubsub-emulator"), "--port", "0", "--log-level", "warning"]))
        return WebPubSubPeer(process, parse_webpubsub_connection_string(ready_line(process)), session)
    if name == "aiohttp":
        process = services.spawn(pinned([sys.executable, "-m", "bench.broadcast", "--serve-baseline"]))
        line = ready_line(process)
        if not line.startswith(BASELINE_READY):
            raise BenchError(f"unexpected ready line from the aiohttp peer: {line[:200]!r}")
        return AiohttpPeer(process, line.removeprefix(BASELINE_READY).strip(), session)
    script_name = {"websockets": "websockets_broadcast.py", "aiosignalr": "aiosignalr_hub.py"}[name]
    process = services.spawn(pinned([str(peer_python(name)), str(PEER_SCRIPTS / script_name)]))
    line = ready_line(process)
    if not line.startswith(PEER_READY):
        raise BenchError(f"unexpected ready line from the {name} peer: {line[:200]!r}")
    url = line[len(PEER_READY) :].strip()
    return WebsocketsPeer(process, url, session) if name == "websockets" else AiosignalrPeer(process, url, session)


# --- one round of one peer -----------------------------------------------------------------------------------------


def rss_kib(pid: int) -> float:
    """Resident set size of ``pid`` in KiB (``/proc/<pid>/status`` VmRSS); NaN without it."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


@dataclass
class RoundResult:
    """The figures of one peer in one round (see :data:`METRICS` for names and units)."""

    values: dict[str, float] = field(default_factory=dict)


async def connect_all(
    peer: Peer, session: aiohttp.ClientSession, receiver: Receiver, count: int, deadline: float
) -> list[RawWebSocketClient]:
    """``count`` connections, ``CONNECT_CONCURRENCY`` at a time; BenchError past ``deadline`` (monotonic)."""
    clients: list[RawWebSocketClient] = []
    left = iter(range(count))

    async def worker() -> None:
        for _ in left:
            if time.monotonic() > deadline:
                raise BenchError(f"{peer.name}: {len(clients)} of {count} connections within the time bound")
            clients.append(await peer.connect(session, receiver))

    try:
        await asyncio.gather(*(worker() for _ in range(CONNECT_CONCURRENCY)))
    except BaseException:
        await close_all(clients)
        raise
    return clients


async def close_all(clients: Sequence[RawWebSocketClient]) -> None:
    """Close these clients, ``CONNECT_CONCURRENCY`` at a time (each close is bounded by the harness)."""
    pending = iter(clients)

    async def worker() -> None:
        for client in pending:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(CONNECT_CONCURRENCY)))


async def measure_peer(peer: Peer, session: aiohttp.ClientSession, counts: Counts) -> RoundResult:
    """Idle connections, then burst and paced fan-out to K of them; see the module docstring."""
    result = RoundResult()
    values = result.values
    pid = peer.process.pid
    receiver = Receiver()
    await asyncio.sleep(0.5)
    rss_before = rss_kib(pid)
    clients = await connect_all(peer, session, receiver, counts.idle, time.monotonic() + counts.phase_timeout)
    try:
        await asyncio.sleep(SETTLE)
        values["kib_per_connection"] = (rss_kib(pid) - rss_before) / counts.idle
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(counts.idle_seconds)
        values["idle_cpu_percent"] = 100 * (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
        extra, clients = clients[counts.clients :], clients[: counts.clients]
        await close_all(extra)
        if peer.name not in ("websockets", "webpubsub"):  # SignalR drops a client silent for 30 s: one hub Ping each
            await asyncio.gather(*(client.ping() for client in clients))
        await asyncio.sleep(0.3)

        # Burst: B broadcasts back to back, until every client has every frame.
        k = len(clients)
        start_count = receiver.frames.count
        target = start_count + k * counts.burst
        done = receiver.frames.reaches(target)
        cpu_before, load_before = cpu_seconds(pid), time.process_time()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(counts.phase_timeout):
                await peer.send_many(range(1, counts.burst + 1))
        except TimeoutError:
            raise BenchError(f"{peer.name}: the burst's sends took over {counts.phase_timeout:g} s") from None
        last = await arrival(done, f"{peer.name}: {k * counts.burst} burst frames", counts.phase_timeout)
        elapsed = last - started
        values["burst_frames_per_s"] = k * counts.burst / elapsed
        values["burst_server_us_per_frame"] = 1e6 * (cpu_seconds(pid) - cpu_before) / (k * counts.burst)
        values["burst_load_cpu_percent"] = 100 * (time.process_time() - load_before) / elapsed

        # Paced: P broadcasts at R/s; latency of every frame from the start of its send.
        await asyncio.sleep(0.3)
        target = receiver.frames.count + k * counts.paced
        done = receiver.frames.reaches(target)
        interval = 1.0 / counts.rate
        paced_start = time.perf_counter()
        for i in range(counts.paced):
            seq = 1_000_000 + i
            now = time.perf_counter()
            wait = paced_start + i * interval - now
            if wait > 0:
                await asyncio.sleep(wait)
            receiver.sent_at[seq] = time.perf_counter()
            try:
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await peer.send(seq)
            except TimeoutError:
                raise BenchError(f"{peer.name}: a paced send took over {REPLY_TIMEOUT:g} s") from None
        await arrival(done, f"{peer.name}: {k * counts.paced} paced frames", counts.phase_timeout)
        latencies = receiver.latencies
        values["paced_p50_ms"] = 1000 * percentile(latencies, 50)
        values["paced_p99_ms"] = 1000 * percentile(latencies, 99)
        values["paced_max_ms"] = 1000 * max(latencies)
        stats = await peer.gc_stats(session)
        values["gc_max_pause_ms"] = float(stats["max_ms"]) if stats else float("nan")
        values["gc_tracked_objects"] = float(stats["tracked"]) if stats else float("nan")
    finally:
        await peer.close()
        await close_all(clients)
    return result


# --- the run -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str
    higher_is_better: bool


METRICS = (
    MetricInfo("burst_frames_per_s", "fan-out to {K} WS, {B} broadcasts back to back: frames/s", True),
    MetricInfo("paced_p50_ms", "same, paced at {R}/s: delivery p50 ms", False),
    MetricInfo("paced_p99_ms", "same, paced: delivery p99 ms", False),
    MetricInfo("paced_max_ms", "same, paced: delivery max ms", False),
    MetricInfo("burst_server_us_per_frame", "server CPU per frame in the burst, µs", False),
    MetricInfo("kib_per_connection", "KiB per idle WS connection (RSS, 0 → {N})", False),
    MetricInfo("idle_cpu_percent", "idle server CPU % with {N} connections", False),
    MetricInfo("gc_max_pause_ms", "longest GC pause in the round, ms (gc.callbacks)", False),
    MetricInfo("gc_tracked_objects", "GC-tracked objects after the round", False),
    MetricInfo("burst_load_cpu_percent", "load generator CPU % during the burst", False),
)


def spread(values: Sequence[float]) -> str:
    """``median (min–max)`` of the finite values, or ``n/a``."""
    finite = [v for v in values if v == v]
    if not finite:
        return "n/a"
    med = median(finite)
    if len(finite) == 1:
        return _fmt(med)
    return f"{_fmt(med)} ({_fmt(min(finite))}–{_fmt(max(finite))})"


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def ratio(results: Results, key: str, against: str, ours_name: str = OURS) -> str:
    ours, theirs = results.get(ours_name, {}).get(key), results.get(against, {}).get(key)
    if not ours or not theirs:
        return "n/a"
    base = median(theirs)
    value = median(ours) / base if base == base and base else float("nan")
    return "n/a" if value != value else f"{value:.2f}x"


def markdown_table(results: Results, peers: Sequence[str], counts: Counts) -> str:
    """Medians of the rounds with min–max, and the ratios ours/raw, ours/aiosignalr and Web PubSub/SignalR."""
    header = ["metric (median, min–max)", *peers, "emulator/websockets", "emulator/aiosignalr", "webpubsub/emulator"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric in METRICS:
        label = metric.label.format(K=f"{counts.clients:,}", B=counts.burst, R=f"{counts.rate:g}", N=f"{counts.idle:,}")
        cells = [spread(results.get(peer, {}).get(metric.key, [])) for peer in peers]
        arrow = "↑" if metric.higher_is_better else "↓"
        row = [
            f"{label} {arrow}",
            *cells,
            ratio(results, metric.key, "websockets"),
            ratio(results, metric.key, "aiosignalr"),
            ratio(results, metric.key, OURS, ours_name="webpubsub"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def raise_fd_limit(needed: int) -> None:
    """Raise this process's open-file limit towards ``needed`` (children inherit it); BenchError when it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise BenchError(f"open-file limit {hard} is below the {needed} this run needs (lower --idle)")


def pin_load_generator() -> str:
    """Pin this process to the load core when the server has its own; returns what was done, for the report."""
    if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return "not pinned (taskset or a second core missing)"
    os.sched_setaffinity(0, {LOAD_CORE})
    return f"server on core {SERVER_CORE}, load generator on core {LOAD_CORE}"


def parse_args(argv: list[str] | None) -> tuple[Counts, list[str], str]:
    parser = argparse.ArgumentParser(prog="bench.fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=Counts.clients, help="K fan-out clients (default 1000)")
    parser.add_argument("--idle", type=int, default=Counts.idle, help="N idle connections, >= K (default 2000)")
    parser.add_argument("--burst", type=int, default=Counts.burst, help="B broadcasts back to back (default 200)")
    parser.add_argument("--paced", type=int, default=Counts.paced, help="P paced broadcasts (default 100)")
    parser.add_argument("--rate", type=float, default=Counts.rate, help="R paced broadcasts per s (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=Counts.idle_seconds, help="idle CPU window (default 3)")
    parser.add_argument("--rounds", type=int, default=Counts.rounds, help="rounds, order alternating (default 3)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=str(DEFAULT_JSON),
        help="per-round values as JSON (default artifacts/bench/fanout.json)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 20_000 or not args.clients <= args.idle <= 20_000:
        parser.error("need 1 <= --clients <= --idle <= 20000")
    if not 1 <= args.burst <= 10_000 or not 1 <= args.paced <= 10_000 or not 0.1 <= args.rate <= 1000:
        parser.error("--burst and --paced must be 1..10000, --rate 0.1..1000")
    if not 0.5 <= args.idle_seconds <= 60 or not 1 <= args.rounds <= 9:
        parser.error("--idle-seconds must be 0.5..60 and --rounds 1..9")
    peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in peers if name not in PEERS]
    if unknown or not peers:
        parser.error(f"--peers: unknown {', '.join(unknown) or '(none given)'}")
    counts = Counts(
        clients=args.clients,
        idle=args.idle,
        burst=args.burst,
        paced=args.paced,
        rate=args.rate,
        idle_seconds=args.idle_seconds,
        rounds=args.rounds,
    )
    return counts, peers, args.json


def order_of(peers: Sequence[str], round_index: int) -> list[str]:
    """Even rounds in the given order, odd rounds reversed."""
    return list(peers) if round_index % 2 == 0 else list(reversed(peers))


async def run(services: Services, counts: Counts, peers: Sequence[str]) -> Results:
    """Every round of every peer; returns ``{peer: {metric: [value per round]}}``."""
    results: Results = {peer: {} for peer in peers}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for round_index in range(counts.rounds):
            for name in order_of(peers, round_index):
                peer = start_peer(services, name, session)
                try:
                    round_result = await measure_peer(peer, session, counts)
                finally:
                    peer.process.stop()
                    services.processes.remove(peer.process)
                for key, value in round_result.values.items():
                    results[name].setdefault(key, []).append(value)
                print(f"  round {round_index + 1} {name}: " + _summary(round_result.values), flush=True)
    return results


def _summary(values: dict[str, float]) -> str:
    return (
        f"{values['burst_frames_per_s']:,.0f} frames/s, p99 {values['paced_p99_ms']:.1f} ms, "
        f"{values['kib_per_connection']:.1f} KiB/conn, idle CPU {values['idle_cpu_percent']:.1f} %, "
        f"load generator {values['burst_load_cpu_percent']:.0f} % CPU in the burst"
    )


def main(argv: list[str] | None = None) -> int:
    counts, wanted, json_path = parse_args(argv)
    peers, missing = available_peers(wanted)

    def measure(services: Services) -> Callable[[], None]:
        raise_fd_limit(counts.idle + 256)  # per process: the clients here, the connections in the server
        pinning = pin_load_generator()
        if missing:
            print(f"left out (no venv under bench/.venvs; `make bench-peers`): {', '.join(missing)}", flush=True)
        uvloop = _uvloop()
        loop = "asyncio" if uvloop is None else "uvloop"
        print(
            f"K={counts.clients} N={counts.idle} B={counts.burst} P={counts.paced}@{counts.rate:g}/s, "
            f"{counts.rounds} rounds; {pinning}; load generator on {loop}",
            flush=True,
        )
        runner: Callable[[Coroutine[Any, Any, Results]], Results] = asyncio.run if uvloop is None else uvloop.run
        results = runner(run(services, counts, peers))

        def report() -> None:
            print(markdown_table(results, peers, counts), flush=True)
            document = {
                "counts": counts.__dict__,
                "peers": list(peers),
                "left_out": missing,
                "pinning": pinning,
                "load_loop": loop,
                "rounds": results,
            }
            path = Path(json_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            print(f"per-round values: {json_path}", flush=True)

        return report

    return run_benchmark("bench.fanout", measure)


def _uvloop() -> Any:
    """The ``uvloop`` module when it is installed (then the load generator runs on it), else None."""
    try:
        return importlib.import_module("uvloop")
    except ImportError:
        return None


if __name__ == "__main__":
    sys.exit(main())
