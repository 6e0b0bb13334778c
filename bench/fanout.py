"""Fan-out and idle connections against the peers: raw ``websockets``, a bare aiohttp fan-out, ``aiosignalr`` and
``signalr-emulator`` side by side, K WebSocket clients each.

Peers (each a fresh process per round, pinned to core 0 with ``taskset`` when there are two cores or more; this load
generator is pinned to core 1). Every server is started with ``--loop`` (``auto``: uvloop where it is installed) and
the table names the loop each one ran on:

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

The three in the product's venv run inside ``bench/peers/emulator_gc.py``, which reports their GC pauses from
``gc.callbacks`` without changing them; ``--loop`` goes to an emulator that has the option (read from its
``--help``), and the aiohttp baseline gets uvloop as asyncio's default loop. The peers' scripts report the same GC
figures themselves (``bench/peers/peer_runtime.py``).

The clients are ``bench.loadgen``'s raw WebSocket clients (one process holds up to 19,900; a few µs of CPU per frame
received), so the load generator is not what caps frames/s; its own CPU per phase is in the table. Every client
receives the same record, ``{"type":1,"target":"broadcastMessage","arguments":["bench","M"]}`` + 0x1E (SignalR JSON;
the websockets and aiohttp peers are sent the record itself), where M is a number, or while paced ``sent@`` and the
send time. The SignalR peers' clients do the JSON handshake and a hub Ping before 30 s of silence. Web PubSub clients
receive the same broadcast body as the ``data`` of a server message. ``make bench`` installs the venvs of websockets
and aiosignalr; a peer whose venv is missing is left out and named.

Per peer and round: 0 → N idle connections (RSS delta per connection from ``/proc``, GC-tracked objects per
connection), idle CPU % of the server over a few seconds, the longest GC pause so far; one broadcast to all N (until
the last client has it); then N - K connections are closed and the K left get B broadcasts back to back (frames/s at
the clients, until every client has every frame; server CPU µs per frame) and P broadcasts paced at R/s (delivery
latency per frame, from the start of the send until a client has it: p50/p99), and the GC figures of the round.
Run ``python -m bench.fanout`` (``--clients`` K, ``--idle`` N up to 19,900, ``--loop``, ``--json PATH``; ``--help``
for all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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
    RestBroadcaster,
    Services,
    cpu_seconds,
    median,
    negotiate,
    percentile,
    ready_line,
    run_benchmark,
    send_paced,
)
from .broadcast import BASELINE_READY
from .loadgen import (
    Deliveries,
    PhaseCpu,
    WebSocketClient,
    close_clients,
    connect,
    loop_name,
    open_clients,
    ping_silent,
    stamped,
)
from .loadgen import run as run_load

PEERS = ("websockets", "aiohttp", "aiosignalr", "emulator", "webpubsub")
OURS = "emulator"
IN_PRODUCT_VENV = ("emulator", "aiohttp", "webpubsub")  # the others need their own venvs under bench/.venvs
VENVS = REPO / "bench" / ".venvs"
PEER_SCRIPTS = REPO / "bench" / "peers"
PEER_READY = "fanout peer listening on "
HUB = "fanout"
HTTP_CONNECTIONS = 32  # the aiohttp session's pool: negotiates and REST sends
HTTP_SENDERS = 4  # concurrent POSTs in a burst (the websockets peer gets its frames on one socket, no reply)
SETTLE = 1.0  # seconds after the last connection before RSS is read
KEEPALIVE_AFTER = 20.0  # a SignalR client silent this long sends a hub Ping (the service drops one silent for 30 s)
CONNECTIONS_PER_PHASE = 5000  # connections opened within one phase_timeout (a larger N gets a longer bound)
MAX_IDLE = 19_900  # connections: the load generator and the server each hold one fd per connection, limit 20,000
LOOPS = ("auto", "asyncio", "uvloop")
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
    loop: str = "auto"


Results = dict[str, dict[str, list[float]]]  # peer → metric → value per round (a failed round has none)
Loops = dict[str, list[str]]  # peer → the event loop its server ran on, per round


Message = int | bytes  # the text of a broadcast: a number, or bytes such as bench.loadgen.stamped()'s


def _text(message: Message) -> bytes:
    return b"%d" % message if isinstance(message, int) else message


def record_of(message: Message) -> bytes:
    """The hub record of ``broadcastMessage("bench", message)``, what every recipient receives."""
    return b'{"type":1,"target":"broadcastMessage","arguments":["bench","%b"]}\x1e' % _text(message)


def body_of(message: Message) -> bytes:
    """The REST body of ``broadcastMessage("bench", message)``."""
    return b'{"target":"broadcastMessage","arguments":["bench","%b"]}' % _text(message)


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


def takes_loop_option(command: str) -> bool:
    """Whether the product's ``command`` has ``--loop`` (read from its ``--help``)."""
    try:
        result = subprocess.run([script(command), "--help"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--loop" in result.stdout


class Peer:
    """One server under test: its process, how a client connects, how one broadcast is sent, its GC figures."""

    name: str
    signalr = False  # its clients speak SignalR: a hub Ping keeps one that is otherwise silent connected

    def __init__(self, process: Process, stats_path: Path, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.stats_path = stats_path
        self._session = session
        self._snapshots = 0

    async def connect(self, deliveries: Deliveries) -> WebSocketClient:
        raise NotImplementedError

    async def send(self, message: Message) -> None:
        """Broadcast ``broadcastMessage("bench", message)`` to every client."""
        raise NotImplementedError

    async def ready_to_send(self) -> None:
        """Open what :meth:`send` needs, so no timed send pays for it."""
        return None

    async def send_many(self, messages: Sequence[Message]) -> None:
        """Send these broadcasts back to back (``HTTP_SENDERS`` concurrent requests unless a peer says otherwise)."""
        queue = list(reversed(messages))

        async def sender() -> None:
            while queue:
                await self.send(queue.pop())

        await asyncio.gather(*(sender() for _ in range(HTTP_SENDERS)))

    async def _post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        async with self._session.post(url, data=body, headers=headers) as response:
            if response.status != 202:
                raise BenchError(
                    f"{self.name}: a broadcast answered {response.status}: {(await response.read())[:200]!r}"
                )

    async def gc_snapshot(self) -> dict[str, Any] | None:
        """The server's GC figures now (SIGUSR1, then its stats file), None when it does not answer in time."""
        self._snapshots += 1
        try:
            os.kill(self.process.pid, signal.SIGUSR1)
        except OSError:
            return None
        deadline = time.monotonic() + REPLY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                stats: dict[str, Any] = json.loads(self.stats_path.read_bytes())
            except (OSError, ValueError):
                stats = {}
            if stats.get("seq", 0) >= self._snapshots:
                self._snapshots = stats["seq"]
                return stats
            await asyncio.sleep(0.02)
        return None

    async def close(self) -> None:
        return None


class WebsocketsPeer(Peer):
    """``bench/peers/websockets_broadcast.py``: a sender WebSocket's messages go as-is to every ``/ws`` client."""

    name = "websockets"

    def __init__(self, process: Process, stats_path: Path, session: aiohttp.ClientSession, url: str) -> None:
        super().__init__(process, stats_path, session)
        self.ws_url = "ws" + url[4:]
        self._sender: WebSocketClient | None = None

    async def connect(self, deliveries: Deliveries) -> WebSocketClient:
        return await connect(f"{self.ws_url}/ws", deliveries)

    async def ready_to_send(self) -> None:
        await self._control()

    async def _control(self) -> WebSocketClient:
        if self._sender is None:
            self._sender = await connect(f"{self.ws_url}/send", Deliveries())
        return self._sender

    async def send(self, message: Message) -> None:
        (await self._control()).send_text(record_of(message))

    async def send_many(self, messages: Sequence[Message]) -> None:
        sender = await self._control()
        for message in messages:
            sender.send_text(record_of(message))

    async def close(self) -> None:
        if self._sender is not None:
            await close_clients([self._sender])


class AiosignalrPeer(Peer):
    """``bench/peers/aiosignalr_hub.py``: ``POST /send`` broadcasts through aiosignalr's lifetime manager."""

    name = "aiosignalr"
    signalr = True

    def __init__(self, process: Process, stats_path: Path, session: aiohttp.ClientSession, url: str) -> None:
        super().__init__(process, stats_path, session)
        self.url = url

    async def connect(self, deliveries: Deliveries) -> WebSocketClient:
        return await connect(f"{self.url}/hub", deliveries, signalr=True)

    async def send(self, message: Message) -> None:
        await self._post(f"{self.url}/send", _text(message))


class AiohttpPeer(Peer):
    """``bench.broadcast``'s baseline: a bare aiohttp WebSocket fan-out in the product's venv (no protocol, no auth,
    each POST body awaited onto every socket in turn). The same web stack as the emulator and aiosignalr, so it shows
    what aiohttp itself costs per connection and per frame."""

    name = "aiohttp"

    def __init__(self, process: Process, stats_path: Path, session: aiohttp.ClientSession, url: str) -> None:
        super().__init__(process, stats_path, session)
        self.url = url

    async def connect(self, deliveries: Deliveries) -> WebSocketClient:
        return await connect(f"{self.url}/ws/{HUB}", deliveries)

    async def send(self, message: Message) -> None:
        await self._post(f"{self.url}/send/{HUB}", record_of(message))


class EmulatorPeer(Peer):
    """``signalr-emulator`` in Serverless mode: negotiate, then the client WebSocket; the REST API broadcasts."""

    name = "emulator"
    signalr = True

    def __init__(
        self, process: Process, stats_path: Path, session: aiohttp.ClientSession, connection: ConnectionString
    ) -> None:
        super().__init__(process, stats_path, session)
        self.connection = connection
        self.rest = RestBroadcaster(session, connection)

    async def connect(self, deliveries: Deliveries) -> WebSocketClient:
        redirect = build_redirect(self.connection, HUB, request_path="/chat/negotiate")
        url = await negotiate(self._session, redirect)
        headers = {"Authorization": f"Bearer {redirect.access_token}"}
        return await connect(url, deliveries, headers=headers, signalr=True)

    async def send(self, message: Message) -> None:
        await self.rest.send(HUB, body_of(message))


class WebPubSubPeer(Peer):
    """``webpubsub-emulator``: clients on ``json.webpubsub.azure.v1``; the data-plane ``:send`` broadcasts."""

    name = "webpubsub"

    def __init__(
        self,
        process: Process,
        stats_path: Path,
        session: aiohttp.ClientSession,
        connection: WebPubSubConnectionString,
    ) -> None:
        super().__init__(process, stats_path, session)
        token = mint_client_token(connection.access_key, connection.client_audience(HUB))
        self._client_url = f"{connection.client_base_url(HUB)}?access_token={token}"
        self._send_url = f"{connection.endpoint}/api/hubs/{HUB}/:send?api-version=2024-01-01"
        rest_token = mint_rest_token(connection.access_key, self._send_url, lifetime=3600)
        self._headers = {"Authorization": f"Bearer {rest_token}", "Content-Type": "application/json"}

    async def connect(self, deliveries: Deliveries) -> WebSocketClient:
        return await connect(self._client_url, deliveries, headers={"Sec-WebSocket-Protocol": JSON_SUBPROTOCOL})

    async def send(self, message: Message) -> None:
        await self._post(self._send_url, body_of(message), self._headers)


class Launcher:
    """Starts each peer pinned to the server core with ``--loop`` and a GC stats file in ``stats_dir``; waits for its
    ready line."""

    def __init__(self, services: Services, session: aiohttp.ClientSession, loop: str, stats_dir: Path) -> None:
        self.services = services
        self.session = session
        self.loop = loop
        self.stats_dir = stats_dir
        self._loop_option: dict[str, bool] = {}

    def _in_process(self, stats: Path, module: str, *args: str, set_loop: bool = False) -> list[str]:
        """The product's python running ``module`` inside ``bench/peers/emulator_gc.py``."""
        argv = [sys.executable, str(PEER_SCRIPTS / "emulator_gc.py"), "--stats", str(stats)]
        return [*argv, *(["--set-loop", self.loop] if set_loop else []), module, *args]

    def _product(self, stats: Path, command: str, module: str) -> Process:
        if command not in self._loop_option:
            self._loop_option[command] = takes_loop_option(command)
        loop = ["--loop", self.loop] if self._loop_option[command] else []
        argv = self._in_process(stats, module, "--port", "0", "--log-level", "warning", *loop)
        return self.services.spawn(pinned(argv))

    def start(self, name: str) -> Peer:
        stats = self.stats_dir / f"{name}.json"
        stats.unlink(missing_ok=True)
        if name == OURS:
            process = self._product(stats, "signalr-emulator", "emulator.cli")
            return EmulatorPeer(process, stats, self.session, parse_connection_string(ready_line(process)))
        if name == "webpubsub":
            process = self._product(stats, "webpubsub-emulator", "emulator.webpubsub.cli")
            connection = parse_webpubsub_connection_string(ready_line(process))
            return WebPubSubPeer(process, stats, self.session, connection)
        if name == "aiohttp":
            argv = self._in_process(stats, "bench.broadcast", "--serve-baseline", set_loop=True)
            process = self.services.spawn(pinned(argv), env={"PYTHONPATH": str(REPO)})
            line = ready_line(process)
            if not line.startswith(BASELINE_READY):
                raise BenchError(f"unexpected ready line from the aiohttp peer: {line[:200]!r}")
            return AiohttpPeer(process, stats, self.session, line.removeprefix(BASELINE_READY).strip())
        script_name = {"websockets": "websockets_broadcast.py", "aiosignalr": "aiosignalr_hub.py"}[name]
        argv = [str(peer_python(name)), str(PEER_SCRIPTS / script_name), "--loop", self.loop, "--stats", str(stats)]
        process = self.services.spawn(pinned(argv))
        line = ready_line(process)
        if not line.startswith(PEER_READY):
            raise BenchError(f"unexpected ready line from the {name} peer: {line[:200]!r}")
        url = line[len(PEER_READY) :].strip()
        peer_class = WebsocketsPeer if name == "websockets" else AiosignalrPeer
        return peer_class(process, stats, self.session, url)


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
    """The figures of one peer in one round (see :data:`METRICS` for names and units) and its server's loop."""

    values: dict[str, float] = field(default_factory=dict)
    loop: str = "?"


async def keep_alive(clients: Sequence[WebSocketClient]) -> None:
    """A hub Ping from each SignalR client silent for ``KEEPALIVE_AFTER`` s, checked every 2 s until cancelled."""
    while True:
        await asyncio.sleep(2.0)
        ping_silent(clients, KEEPALIVE_AFTER)


async def delivered(deliveries: Deliveries, total: int, what: str, timeout: float) -> float:
    """When the count of ``deliveries`` reaches ``total``; BenchError naming ``what`` and any lost connections."""
    try:
        async with asyncio.timeout(timeout):
            return await deliveries.tally.reaches(total)
    except TimeoutError:
        lost = f" ({deliveries.lost} connections lost)" if deliveries.lost else ""
        raise BenchError(f"{what} did not arrive within {timeout:.1f} s{lost}") from None


def gc_values(
    values: dict[str, float], start: dict[str, Any] | None, stats: dict[str, Any] | None, prefix: str
) -> None:
    """``{prefix}_max_pause_ms`` (since the previous snapshot), ``{prefix}_gen2_collections`` (since ``start``) and
    ``{prefix}_tracked`` and ``{prefix}_frozen`` (collected, and out of reach after ``gc.freeze()``) from a GC
    snapshot; NaN for what is missing."""
    nan = float("nan")
    values[f"{prefix}_max_pause_ms"] = float(stats["max_ms"]) if stats else nan
    full = (stats["collections_by_generation"][2] - start["collections_by_generation"][2]) if stats and start else nan
    values[f"{prefix}_gen2_collections"] = float(full)
    values[f"{prefix}_tracked"] = float(stats["tracked"]) if stats else nan
    values[f"{prefix}_frozen"] = float(stats.get("frozen", 0)) if stats else nan


async def measure_peer(peer: Peer, counts: Counts) -> RoundResult:
    """Idle connections, one broadcast to all of them, then burst and paced fan-out to K of them; see the module
    docstring."""
    result = RoundResult()
    values = result.values
    pid = peer.process.pid
    deliveries = Deliveries()
    load = PhaseCpu()
    await asyncio.sleep(0.5)
    before = await peer.gc_snapshot()
    rss_before = rss_kib(pid)
    deadline = time.monotonic() + counts.phase_timeout * max(1.0, counts.idle / CONNECTIONS_PER_PHASE)
    clients: list[WebSocketClient] = []
    keeper = asyncio.create_task(keep_alive(clients)) if peer.signalr else None
    try:
        with load.phase("connect"):
            await open_clients(counts.idle, lambda: peer.connect(deliveries), deadline, clients=clients)
        if peer.signalr:
            ping_silent(clients, 0.0)
        await asyncio.sleep(SETTLE)
        values["kib_per_connection"] = (rss_kib(pid) - rss_before) / counts.idle
        with load.phase("idle"):
            cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(counts.idle_seconds)
            values["idle_cpu_percent"] = 100 * (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
        idle = await peer.gc_snapshot()
        gc_values(values, before, idle, "gc_idle")
        if before and idle:
            added = idle["tracked"] + idle.get("frozen", 0) - before["tracked"] - before.get("frozen", 0)
            values["gc_tracked_per_connection"] = added / counts.idle

        # One broadcast to all N idle clients: until the last has it.
        await peer.ready_to_send()
        target = deliveries.tally.count + len(clients)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(counts.phase_timeout):  # aiosignalr answers once it has written to all
                await peer.send(b"all")
        except TimeoutError:
            raise BenchError(f"{peer.name}: the broadcast to all took over {counts.phase_timeout:g} s") from None
        last = await delivered(
            deliveries, target, f"{peer.name}: one broadcast to {len(clients)}", counts.phase_timeout
        )
        values["all_idle_broadcast_ms"] = 1000 * (last - started)

        extra = clients[counts.clients :]
        del clients[counts.clients :]
        await close_clients(extra)
        if peer.signalr:
            ping_silent(clients, 0.0)
        await asyncio.sleep(0.3)

        # Burst: B broadcasts back to back, until every client has every frame.
        k = len(clients)
        target = deliveries.tally.count + k * counts.burst
        cpu_before = cpu_seconds(pid)
        with load.phase("burst"):
            started = time.perf_counter()
            try:
                async with asyncio.timeout(counts.phase_timeout):
                    await peer.send_many(range(1, counts.burst + 1))
            except TimeoutError:
                raise BenchError(f"{peer.name}: the burst's sends took over {counts.phase_timeout:g} s") from None
            last = await delivered(
                deliveries, target, f"{peer.name}: {k * counts.burst} burst frames", counts.phase_timeout
            )
        elapsed = last - started
        values["burst_frames_per_s"] = k * counts.burst / elapsed
        values["burst_server_us_per_frame"] = 1e6 * (cpu_seconds(pid) - cpu_before) / (k * counts.burst)

        # Paced: P broadcasts at R/s; latency of every frame from the start of its send (the time it carries).
        await asyncio.sleep(0.3)
        target = deliveries.tally.count + k * counts.paced
        deliveries.timing = True
        with load.phase("paced"):
            try:
                await send_paced(counts.paced, counts.rate, deadline=float("inf"), send_one=lambda: _paced_send(peer))
            except TimeoutError:
                raise BenchError(f"{peer.name}: a paced send took over {REPLY_TIMEOUT:g} s") from None
            await delivered(deliveries, target, f"{peer.name}: {k * counts.paced} paced frames", counts.phase_timeout)
        deliveries.timing = False
        latencies = deliveries.latencies
        values["paced_p50_ms"] = 1000 * percentile(latencies, 50)
        values["paced_p99_ms"] = 1000 * percentile(latencies, 99)
        values["paced_max_ms"] = 1000 * max(latencies)
        end = await peer.gc_snapshot()
        gc_values(values, before, end, "gc")
        values["gc_max_pause_ms"] = max(values["gc_max_pause_ms"], values["gc_idle_max_pause_ms"])
        result.loop = str(end["loop"]) if end else "?"
        for phase, percent in load.percent.items():
            values[f"load_{phase}_cpu_percent"] = percent
    finally:
        if keeper is not None:
            keeper.cancel()
        await peer.close()
        await close_clients(clients)
    return result


async def _paced_send(peer: Peer) -> None:
    async with asyncio.timeout(REPLY_TIMEOUT):
        await peer.send(stamped())


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
    MetricInfo(
        "all_idle_broadcast_ms", "one REST broadcast to all {N} idle WS clients: ms until the last has it", False
    ),
    MetricInfo("gc_idle_max_pause_ms", "longest GC pause while {N} connect and sit idle, ms (gc.callbacks)", False),
    MetricInfo("gc_tracked_per_connection", "GC-tracked objects per idle connection (frozen ones included)", False),
    MetricInfo("gc_max_pause_ms", "longest GC pause in the round, ms", False),
    MetricInfo("gc_gen2_collections", "full (gen-2) collections in the round", False),
    MetricInfo("gc_tracked", "GC-tracked objects the collector walks at the end of the round ({K} connected)", False),
    MetricInfo("gc_frozen", "objects gc.freeze() put out of its reach at the end of the round", False),
    MetricInfo("load_burst_cpu_percent", "load generator CPU % during the burst (of one core)", False),
    MetricInfo("load_paced_cpu_percent", "load generator CPU % during the paced phase", False),
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


def markdown_table(results: Results, peers: Sequence[str], counts: Counts, loops: Loops | None = None) -> str:
    """Medians of the rounds with min–max, and the ratios ours/raw, ours/aiosignalr and Web PubSub/SignalR; the
    first row names the event loop each server ran on."""
    header = ["metric (median, min–max)", *peers, "emulator/websockets", "emulator/aiosignalr", "webpubsub/emulator"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if loops is not None:
        cells = ["/".join(sorted(set(loops.get(peer, [])))) or "n/a" for peer in peers]
        lines.append("| " + " | ".join(["server event loop", *cells, "", "", ""]) + " |")
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
    parser.add_argument(
        "--idle", type=int, default=Counts.idle, help=f"N idle connections, K..{MAX_IDLE:,} (default 2000)"
    )
    parser.add_argument("--burst", type=int, default=Counts.burst, help="B broadcasts back to back (default 200)")
    parser.add_argument("--paced", type=int, default=Counts.paced, help="P paced broadcasts (default 100)")
    parser.add_argument("--rate", type=float, default=Counts.rate, help="R paced broadcasts per s (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=Counts.idle_seconds, help="idle CPU window (default 3)")
    parser.add_argument("--rounds", type=int, default=Counts.rounds, help="rounds, order alternating (default 3)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=Counts.loop,
        help="every server's event loop (default auto: uvloop if installed)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=str(DEFAULT_JSON),
        help="per-round values as JSON (default artifacts/bench/fanout.json)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= args.idle <= MAX_IDLE:
        parser.error(f"need 1 <= --clients <= --idle <= {MAX_IDLE}")
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
        loop=args.loop,
    )
    return counts, peers, args.json


def order_of(peers: Sequence[str], round_index: int) -> list[str]:
    """Even rounds in the given order, odd rounds reversed."""
    return list(peers) if round_index % 2 == 0 else list(reversed(peers))


async def run(services: Services, counts: Counts, peers: Sequence[str]) -> tuple[Results, Loops, list[str]]:
    """Every round of every peer; returns ``{peer: {metric: [value per round]}}``, each server's loop per round, and
    what failed (a peer's round that fails is printed and left out; the others go on)."""
    results: Results = {peer: {} for peer in peers}
    loops: Loops = {peer: [] for peer in peers}
    failed: list[str] = []
    connector = aiohttp.TCPConnector(limit=HTTP_CONNECTIONS)
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as stats_dir:
        async with aiohttp.ClientSession(connector=connector) as session:
            launcher = Launcher(services, session, counts.loop, Path(stats_dir))
            for round_index in range(counts.rounds):
                for name in order_of(peers, round_index):
                    peer = launcher.start(name)
                    try:
                        round_result = await measure_peer(peer, counts)
                    except BenchError as exc:
                        failed.append(f"round {round_index + 1} {name}: {exc}")
                        print(f"  {failed[-1]}", flush=True)
                        continue
                    finally:
                        peer.process.stop()
                        services.processes.remove(peer.process)
                    for key, value in round_result.values.items():
                        results[name].setdefault(key, []).append(value)
                    loops[name].append(round_result.loop)
                    print(
                        f"  round {round_index + 1} {name} ({round_result.loop}): " + _summary(round_result.values),
                        flush=True,
                    )
    return results, loops, failed


def _summary(values: dict[str, float]) -> str:
    return (
        f"{values['burst_frames_per_s']:,.0f} frames/s, p99 {values['paced_p99_ms']:.1f} ms, "
        f"{values['kib_per_connection']:.1f} KiB/conn, idle CPU {values['idle_cpu_percent']:.1f} %, "
        f"to all idle {values['all_idle_broadcast_ms']:.0f} ms, GC max {values['gc_max_pause_ms']:.1f} ms, "
        f"load generator {values['load_burst_cpu_percent']:.0f} % CPU in the burst"
    )


def main(argv: list[str] | None = None) -> int:
    counts, wanted, json_path = parse_args(argv)
    peers, missing = available_peers(wanted)

    def measure(services: Services) -> Callable[[], None]:
        raise_fd_limit(counts.idle + 2 * HTTP_CONNECTIONS)  # per process: the WebSockets, the HTTP pool and a few
        pinning = pin_load_generator()
        if missing:
            print(f"left out (no venv under bench/.venvs; `make bench-peers`): {', '.join(missing)}", flush=True)
        loop = loop_name()
        print(
            f"K={counts.clients} N={counts.idle} B={counts.burst} P={counts.paced}@{counts.rate:g}/s, "
            f"{counts.rounds} rounds; {pinning}; load generator on {loop}, servers --loop {counts.loop}",
            flush=True,
        )
        results, loops, failed = run_load(run(services, counts, peers))

        def report() -> None:
            print(markdown_table(results, peers, counts, loops), flush=True)
            for failure in failed:
                print(f"failed: {failure}", flush=True)
            document = {
                "counts": counts.__dict__,
                "peers": list(peers),
                "left_out": missing,
                "pinning": pinning,
                "load_loop": loop,
                "server_loops": loops,
                "failed": failed,
                "rounds": results,
            }
            path = Path(json_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            print(f"per-round values: {json_path}", flush=True)

        return report

    return run_benchmark("bench.fanout", measure)


if __name__ == "__main__":
    sys.exit(main())
