"""What watching a message costs: the chat path with hop events on against the same path with them off, in one run.

Processes: per arm, the stack ``chat-demo`` starts (Default mode, the ``websocket`` profile): ``signalr-emulator``,
``apim-gateway`` in front of it and ``chat-server``, all on 127.0.0.1. Arm ``off`` runs them as shipped (no
``--flow-to``, no ``--flow-port``: flow off is exactly "no flag"); arm ``on`` gives every server
``--flow-to 127.0.0.1:<port>`` and ``chat-server --flow-port <port>`` (its collector), and a reader follows
``GET /flow`` as the terminal chat's Flow view does. With ``--before DIR``, a third arm runs the same servers from
the source tree DIR (e.g. the commit before the flow package, ``git archive <commit> | tar -x -C DIR``), to show
that flow off costs nothing against code that has no flow at all. Each arm gets K raw WebSocket clients in this
process: the app server's negotiate, the redirect's negotiate through the gateway, the WebSocket, the JSON handshake.
Per round, each arm measures:

- round trip: one client invokes ``broadcastMessage`` (with an ``invocationId``, as the chat does: the message has
  a flow id) at a fixed rate; the time from writing the invocation until all K clients have the broadcast → p50/p99;
- fan-out burst: invocations written back to back by several clients → deliveries/s over the K receivers, and the
  CPU time the emulator, the gateway and the app server spent per broadcast (``/proc``).

Rounds alternate which arm goes first; the tables show medians of the rounds, the ratio on/off and the range of the
per-round ratios. Run ``python -m bench.flow_overhead`` (``--budget`` seconds for the whole run, default 60;
``--clients`` K, default 20).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from signalr.connection_string import parse_connection_string
from tests.support.processes import Process
from tests.support.stack import SERVER_READY

from ._harness import (
    GATEWAY_READY,
    REPLY_TIMEOUT,
    BenchError,
    Budget,
    Metric,
    RawWebSocketClient,
    RoundResult,
    Services,
    _script,
    arrival,
    check_load,
    cpu_seconds,
    measured_cpu,
    median,
    negotiate,
    parse_rounds,
    ping_all,
    print_capped,
    print_table,
    ready_line,
    reporter,
    round_parser,
    run_benchmark,
    run_measuring_load,
    send_paced,
    server_negotiate,
    write_burst,
)
from .modes import Room, invocation

PHASES = 2  # round trip, burst
MAX_CLIENTS = 200
DRAIN_TIMEOUT = 15.0  # after the last write of a burst, how long its deliveries may take before they count as lost
CONNECT_TIMEOUT = 20.0  # until every server connection of the app server is open
PROFILE = "websocket"
PROCESS_NAMES = ("emulator", "gateway", "app server")  # the order of Arm.processes
MODE = "default"


@dataclass(frozen=True)
class Counts:
    """Upper bounds per phase and round; a phase also stops at its share of the time budget."""

    clients: int = 20
    paced: int = 200
    rate: float = 50.0
    burst: int = 1000
    senders: int = 4


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (the collector's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- one arm: its processes, its clients, its /flow reader -------------------------------------------------------


@dataclass
class Arm:
    """One stack (emulator, gateway, app server) and the K clients connected to it through the gateway."""

    name: str
    processes: list[Process]
    server_url: str
    flow: bool
    room: Room
    clients: list[RawWebSocketClient] = field(default_factory=list)
    hops_read: int = 0
    reconnects: int = 0
    _reader: asyncio.Task[None] | None = None

    async def connect(self, session: aiohttp.ClientSession, count: int) -> None:
        limit = asyncio.Semaphore(10)

        async def one() -> None:
            async with limit:
                redirect = await server_negotiate(session, self.server_url, self.name)
                url = await negotiate(session, redirect)  # the second negotiate, through the gateway
                client = RawWebSocketClient(self.room.on_record)
                self.clients.append(client)
                await client.open(session, url, redirect.access_token, handshake=True)

        await asyncio.gather(*(one() for _ in range(count)))
        if self.flow:
            self._reader = asyncio.create_task(self._read_flow(session))

    async def _read_flow(self, session: aiohttp.ClientSession) -> None:
        """Follow ``GET /flow`` as the Flow view does, counting the hops (their decoding is the viewer's cost, in
        another process; here they are only counted). The app server ends a stream whose reader fell too far
        behind; like an EventSource, the reader comes back at once (each return replays the latest hops)."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=REPLY_TIMEOUT)
        while True:
            async with session.get(f"{self.server_url}flow", timeout=timeout) as response:
                if response.status != 200:
                    raise BenchError(f"{self.name}: GET /flow answered {response.status}")
                async for line in response.content:
                    if line.startswith(b"data: "):
                        self.hops_read += 1
            self.reconnects += 1

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            if self._reader.done() and not self._reader.cancelled() and self._reader.exception() is not None:
                raise BenchError(f"{self.name}: the /flow reader failed: {self._reader.exception()}")
        await asyncio.gather(*(c.close() for c in self.clients))


@dataclass
class ArmResult(RoundResult):
    """One arm's raw numbers, per round."""

    cpu_us: list[float] = field(default_factory=list)
    cpu_us_by_process: dict[str, list[float]] = field(default_factory=dict)


class Comparison:
    """The metrics of one pair of arms (``ours`` against ``baseline``), for one table."""

    def __init__(self, baseline: str, ours: str, counts: Counts) -> None:
        self.baseline = baseline
        self.ours = ours
        k, rate = counts.clients, counts.rate
        self.p50 = Metric(f"round trip at {rate:g}/s to all {k}, p50", "ms")
        self.p99 = Metric(f"round trip at {rate:g}/s to all {k}, p99", "ms")
        self.deliveries = Metric(f"burst to {k}, {counts.senders} senders", "deliveries/s", higher_is_better=True)
        self.cpu = Metric("burst CPU, emulator + gateway + app server", "µs/broadcast")

    @property
    def metrics(self) -> list[Metric]:
        return [self.p50, self.p99, self.deliveries, self.cpu]

    def record(self, metric: str, arm: str, value: float) -> None:
        target: Metric = getattr(self, metric)
        if arm == self.baseline:
            target.add(baseline=value)
        elif arm == self.ours:
            target.add(ours=value)

    def ratios(self) -> dict[str, float | None]:
        """``ours/baseline`` per metric (median of rounds over median of rounds); None without numbers."""
        ratios: dict[str, float | None] = {}
        for name in ("p50", "p99", "deliveries", "cpu"):
            ratio = getattr(self, name).ratio
            ratios[name] = ratio if math.isfinite(ratio) else None
        return ratios


class FlowBench:
    def __init__(self, arms: list[Arm], budget: Budget, counts: Counts, rounds: int) -> None:
        self.arms = arms
        self.budget = budget
        self.counts = counts
        self.rounds = rounds
        self.capped: list[str] = []
        self.results = {arm.name: ArmResult() for arm in arms}
        self.comparisons = [Comparison("off", "on", counts)]
        if any(arm.name == "before" for arm in arms):
            self.comparisons.append(Comparison("before", "off", counts))
        self._seqs = itertools.count(1)  # broadcast numbers, unique across the run
        self._ids = itertools.count(1)  # invocation ids, unique across the run

    def _record(self, metric: str, arm: str, value: float) -> None:
        for comparison in self.comparisons:
            comparison.record(metric, arm, value)

    async def run(self, session: aiohttp.ClientSession) -> None:
        try:
            for arm in self.arms:
                await arm.connect(session, self.counts.clients)
            for arm in self.arms:  # warm-up: pools, caches and lazy imports on every hop
                await self._paced(arm, min(20, self.counts.paced), time.monotonic() + 5, warmup=True)
            for round_no in range(self.rounds):
                shift = round_no % len(self.arms)
                for arm in self.arms[shift:] + self.arms[:shift]:
                    await self._keep_alive()
                    await self._paced(arm, self.counts.paced, self.budget.next_phase())
                    await self._keep_alive()
                    await self._burst(arm, self.counts.burst, self.budget.next_phase())
                print(f"round {round_no + 1}/{self.rounds} done at {self.budget.elapsed():.1f} s", flush=True)
        finally:
            for arm in self.arms:
                await arm.close()

    async def _keep_alive(self) -> None:
        """A hub Ping from every client of every arm: a client silent for 30 s is closed, and the idle arms' clients
        wait through the others' phases."""
        await ping_all(arm.clients for arm in self.arms)

    async def _paced(self, arm: Arm, count: int, deadline: float, *, warmup: bool = False) -> None:
        """``count`` invocations at the fixed rate from the first client, each tracked until all K have it."""
        room, sender = arm.room, arm.clients[0]
        room.reset_paced()
        completions_before = room.completions.count
        errors_before = len(room.completion_errors)

        async def send_one() -> None:
            seq = next(self._seqs)
            room.track(seq, time.perf_counter())
            await sender.send(invocation(seq, next(self._ids)))

        sent = await send_paced(count, self.counts.rate, deadline, send_one)
        await arrival(room.untracked(), f"{arm.name}: the paced broadcasts to every client")
        await arrival(room.completions.reaches(completions_before + sent), f"{arm.name}: the paced Completions")
        if warmup:
            return
        result = self.results[arm.name]
        result.completion_errors += len(room.completion_errors) - errors_before
        if sent < count:
            self.capped.append(f"{arm.name} round trip: {sent} of {count}")
        percentiles = result.add_paced(sent, room.latencies)
        if percentiles is not None:
            p50, p99 = percentiles
            self._record("p50", arm.name, p50)
            self._record("p99", arm.name, p99)

    async def _burst(self, arm: Arm, count: int, deadline: float) -> None:
        """``count`` invocations written back to back by the first ``senders`` clients; counts every delivery."""
        room = arm.room
        k = len(arm.clients)
        base = room.delivered.count
        completions_before = room.completions.count
        seqs = [next(self._seqs) for _ in range(count)]
        senders = arm.clients[: max(1, min(self.counts.senders, k))]
        before = [cpu_seconds(p.pid) for p in arm.processes]
        with measured_cpu(arm.processes) as cpu:
            started = time.perf_counter()
            issued = await write_burst(senders, seqs, deadline, lambda seq: invocation(seq, next(self._ids)), arm.name)
            expected = issued * k
            finished = await room.delivered.drained(base + expected, DRAIN_TIMEOUT)
            delivered = room.delivered.count - base
        spent = [cpu_seconds(p.pid) - b for p, b in zip(arm.processes, before, strict=True)]
        # The Completions come back after the broadcasts; wait for them so the next phase starts quiet.
        with contextlib.suppress(BenchError):
            await arrival(room.completions.reaches(completions_before + issued), "", timeout=DRAIN_TIMEOUT)
        result = self.results[arm.name]
        if issued < count:
            self.capped.append(f"{arm.name} burst: {issued} of {count}")
        if delivered < expected:
            self.capped.append(f"{arm.name} burst: only {delivered} of {expected} deliveries within the drain time")
        rate = result.add_burst(issued, expected, delivered, finished - started)
        if rate is not None:
            result.cpu_us.append(cpu[0] / issued * 1e6)
            for name, seconds in zip(PROCESS_NAMES, spent, strict=True):
                result.cpu_us_by_process.setdefault(name, []).append(seconds / issued * 1e6)
            self._record("deliveries", arm.name, rate)
            self._record("cpu", arm.name, cpu[0] / issued * 1e6)

    def summary(self, load: float) -> dict[str, Any]:
        """Everything the report shows, as JSON-ready data (``--json``)."""
        arms: dict[str, Any] = {}
        for arm in self.arms:
            r = self.results[arm.name]
            arms[arm.name] = {
                "flow": arm.flow,
                "hops_read": arm.hops_read,
                "flow_reconnects": arm.reconnects,
                "paced": r.paced_summary(),
                "burst": {
                    **r.burst_summary(),
                    "cpu_us_per_broadcast": r.cpu_us,
                    "cpu_us_per_broadcast_by_process": r.cpu_us_by_process,
                },
            }
        return {
            "clients": self.counts.clients,
            "rounds": self.rounds,
            "rate": self.counts.rate,
            "arms": arms,
            "ratios": {f"{c.ours}/{c.baseline}": c.ratios() for c in self.comparisons},
            "benchmark_process_load": load,
            "capped": self.capped,
        }

    def report(self) -> None:
        for comparison in self.comparisons:
            print_table(comparison.metrics, comparison.baseline, comparison.ours)
        for arm in self.arms:
            r = self.results[arm.name]
            sent = sum(r.paced_sent) + sum(r.burst_sent)
            hops = ""
            if arm.flow and sent:
                hops = (
                    f"; {arm.hops_read / sent:.1f} hops per broadcast read from /flow (replays included), the reader "
                    f"cut off as too slow {arm.reconnects} times"
                )
            by_process = ", ".join(f"{n} {median(v):.0f}" for n, v in r.cpu_us_by_process.items())
            print(
                f"{arm.name}: burst CPU {median(r.cpu_us):.0f} µs per broadcast ({by_process}); round trips "
                f"complete at all clients {sum(r.paced_complete)} of {sum(r.paced_sent)}, burst deliveries "
                f"{sum(r.burst_delivered)} of {sum(r.burst_expected)}, completion errors {r.completion_errors}{hops}",
                flush=True,
            )
        print_capped(self.capped)


# --- processes ---------------------------------------------------------------------------------------------------


def _command(name: str, module: str, source: Path | None) -> list[str]:
    """The console script ``name``, or its ``main`` (in ``module``) run from the source tree ``source``."""
    if source is None:
        return [_script(name)]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def _spawn(services: Services, argv: list[str], source: Path | None, env: dict[str, str] | None = None) -> Process:
    if source is None:
        return services.spawn(argv, env=env)
    try:
        process = Process(argv, env=env, cwd=source)
    except OSError as exc:
        raise BenchError(f"cannot start a server from {source}: {exc.strerror or exc}") from None
    services.processes.append(process)
    return process


def _wait_for_server_connections(server_url: str) -> None:
    """Until ``/healthz`` says every server connection is open (the service refuses clients before)."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(server_url + "healthz", timeout=REPLY_TIMEOUT) as response:
                status = json.loads(response.read()).get("server_connections") or {}
            if status.get("wanted") and status.get("connected", 0) >= status["wanted"]:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"the app server's server connections are not all open after {CONNECT_TIMEOUT:g} s")
        time.sleep(0.05)


def start_arm(services: Services, name: str, counts: Counts, source: Path | None = None) -> Arm:
    """One stack as ``chat-demo`` starts it (Default mode, ``websocket`` profile); with flow on for arm ``on``;
    from the source tree ``source`` when given."""
    flow = name == "on"
    udp = free_udp_port() if flow else 0
    flow_to = ["--flow-to", f"127.0.0.1:{udp}"] if flow else []
    emulator = _spawn(
        services,
        [*_command("signalr-emulator", "emulator.cli", source), "--port", "0", "--service-mode", MODE, *flow_to],
        source,
    )
    connection = parse_connection_string(ready_line(emulator))
    gateway = _spawn(
        services,
        [
            *_command("apim-gateway", "gateway.cli", source),
            "--backend",
            connection.endpoint,
            "--profile",
            PROFILE,
            "--port",
            "0",
            *flow_to,
        ],
        source,
    )
    match = GATEWAY_READY.match(ready_line(gateway))
    if match is None:
        raise BenchError(f"{name}: unexpected ready line from apim-gateway")
    gateway_url = match.group(1)
    connection_string = (
        f"Endpoint={connection.endpoint};AccessKey={connection.access_key};ClientEndpoint={gateway_url};Version=1.0;"
    )
    argv = [*_command("chat-server", "server.cli", source), "--port", "0", "--service-mode", MODE]
    if flow:
        argv += ["--flow-port", str(udp)]
    server = _spawn(services, argv, source, env={"Azure__SignalR__ConnectionString": connection_string})
    line = ready_line(server)
    ready = SERVER_READY.match(line)
    if ready is None:
        raise BenchError(f"{name}: unexpected ready line from chat-server: {line[:200]!r}")
    _wait_for_server_connections(ready.group(1))
    return Arm(name, [emulator, gateway, server], ready.group(1), flow, Room(counts.clients))


async def _measure(arms: list[Arm], budget: Budget, counts: Counts, rounds: int) -> FlowBench:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        bench = FlowBench(arms, budget, counts, rounds)
        await bench.run(session)
    return bench


def _parser() -> argparse.ArgumentParser:
    parser = round_parser("python -m bench.flow_overhead", __doc__.splitlines()[0], "arm")
    parser.set_defaults(budget=60.0)
    parser.add_argument("--clients", type=int, default=Counts.clients, help="K, the connected clients per arm")
    parser.add_argument("--paced", type=int, default=Counts.paced, help="round-trip invocations per arm and round")
    parser.add_argument("--rate", type=float, default=Counts.rate, help="round-trip invocations per second")
    parser.add_argument("--burst", type=int, default=Counts.burst, help="burst broadcasts per arm and round")
    parser.add_argument(
        "--senders", type=int, default=Counts.senders, help="clients writing the burst (at most --clients)"
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        type=Path,
        help="also run the servers from this source tree (e.g. the commit before flow) as arm 'before'",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parse_rounds(parser, argv)
    check_load(parser, args, MAX_CLIENTS)
    if args.before is not None and not (args.before / "server" / "cli.py").is_file():
        parser.error(f"--before {args.before}: not a source tree of this project (no server/cli.py)")
    counts = Counts(args.clients, args.paced, args.rate, args.burst, min(args.senders, args.clients))
    names = ["off", "on"] + (["before"] if args.before is not None else [])
    budget = Budget(args.budget, reserve=3.0, phases=args.rounds * len(names) * PHASES)

    def measure(services: Services) -> Callable[[], None]:
        arms = [start_arm(services, name, counts, args.before if name == "before" else None) for name in names]
        print(
            f"{len(arms)} stacks ({', '.join(a.name for a in arms)}): emulator + apim-gateway ({PROFILE}) + "
            f"chat-server ({MODE} mode); {args.rounds} rounds: {counts.clients} clients, up to {counts.paced} round "
            f"trips at {counts.rate:g}/s and {counts.burst} invocations from {counts.senders} clients",
            flush=True,
        )
        bench, load = run_measuring_load(_measure(arms, budget, counts, args.rounds))
        if not any(arm.hops_read for arm in arms if arm.flow):
            raise BenchError("flow on, but GET /flow carried no hop: the servers published nothing")
        return reporter(bench, load, budget, args.json)

    return run_benchmark("bench.flow_overhead", measure)


if __name__ == "__main__":
    sys.exit(main())
