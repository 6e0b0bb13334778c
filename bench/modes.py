"""The Chatroom path in Default mode against Serverless mode, side by side: client → service → app server → service →
clients, with ``signalr-emulator`` and ``chat-server`` as real processes in each mode.

Processes: two pairs on 127.0.0.1, no gateway. Default: ``signalr-emulator --service-mode default`` and ``chat-server
--service-mode default`` (its server connections carry every client; the run starts once all are open). Serverless:
``signalr-emulator --service-mode serverless --upstream http://127.0.0.1:<server port>/upstream/{hub}/{category}/
{event}`` and ``chat-server --service-mode serverless`` (the invocation is POSTed to the app server, which broadcasts
through the REST API). Each pair gets the same K raw WebSocket clients in this process: ``POST /chat/negotiate`` at
the app server, then a WebSocket to the redirect URL with its token, the JSON handshake, hub records. Per round, each
mode measures:

- paced latency: one client invokes ``broadcastMessage`` (with an ``invocationId``) at a fixed rate; latency is the
  time from writing the invocation until the last of the K clients has the broadcast → p50/p99;
- throughput: a burst of broadcasts written back to back by several clients with ``send`` (no ``invocationId``) →
  deliveries/s over all K receivers and broadcasts/s until the last delivery, and the CPU time the emulator and the
  app server spent per broadcast (``/proc``).

Rounds alternate which mode goes first; the table shows medians of the rounds and the ratio Default/Serverless.
Run ``python -m bench.modes`` (``--budget`` seconds for the whole run, default 110; ``--clients`` K, default 20).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support.processes import Process, free_port
from tests.support.stack import SERVER_READY, upstream_template

from ._harness import (
    REPLY_TIMEOUT,
    BenchError,
    Budget,
    Metric,
    RawWebSocketClient,
    RoundResult,
    Services,
    Tally,
    _script,
    arrival,
    check_load,
    measured_cpu,
    median,
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

MODES = ("default", "serverless")
PHASES = 2  # paced latency, burst
MAX_CLIENTS = 200
DRAIN_TIMEOUT = 15.0  # after the last write of a burst, how long its deliveries may take before they count as lost
CONNECT_TIMEOUT = 20.0  # Default mode: until every server connection of the app server is open


@dataclass(frozen=True)
class Counts:
    """Upper bounds per phase and round; a phase also stops at its share of the time budget."""

    clients: int = 20
    paced: int = 400
    rate: float = 50.0
    burst: int = 2000
    senders: int = 4


# --- records -----------------------------------------------------------------------------------------------------


def invocation(seq: int, invocation_id: int | None) -> bytes:
    """``broadcastMessage("bench", "<seq>")``, with an ``invocationId`` (invoke) or without (send)."""
    if invocation_id is None:
        return b'{"type":1,"target":"broadcastMessage","arguments":["bench","%d"]}\x1e' % seq
    return b'{"type":1,"invocationId":"%d","target":"broadcastMessage","arguments":["bench","%d"]}\x1e' % (
        invocation_id,
        seq,
    )


def received_seq(record: bytes) -> int | None:
    """The number of a broadcastMessage record from the hub, None for any other record (Completion, Ping).

    The fast path splits the string (the hub writes ``…"arguments":["bench","<seq>"]}``); anything else is parsed.
    """
    if not record.startswith(b'{"type":1,'):
        return None
    try:
        return int(record.rsplit(b'"', 2)[1])
    except (ValueError, IndexError):
        obj = json.loads(record)
        if obj.get("target") != "broadcastMessage":
            return None
        return int(obj["arguments"][1])


# --- receiving ---------------------------------------------------------------------------------------------------


class Room:
    """What the K clients of one mode received: per-broadcast counts for the paced phase, a running total, and the
    sender's Completions."""

    def __init__(self, recipients: int) -> None:
        self.recipients = recipients
        self.delivered = Tally()
        self.completions = Tally()
        self.completion_errors: list[str] = []
        self.latencies: list[float] = []
        self._tracked: dict[int, list[float]] = {}  # seq → [count, written at]
        self._all_done: asyncio.Future[None] | None = None

    def on_record(self, record: bytes, arrived: float) -> None:
        seq = received_seq(record)
        if seq is None:
            if record.startswith(b'{"type":3'):
                self.completions.add(arrived)
                obj = json.loads(record)
                if obj.get("error"):
                    self.completion_errors.append(str(obj["error"]))
            return
        self.delivered.add(arrived)
        tracked = self._tracked.get(seq)
        if tracked is None:
            return
        tracked[0] += 1
        if tracked[0] == self.recipients:
            del self._tracked[seq]
            self.latencies.append(arrived - tracked[1])
            if not self._tracked and self._all_done is not None and not self._all_done.done():
                self._all_done.set_result(None)

    def track(self, seq: int, written: float) -> None:
        self._tracked[seq] = [0, written]

    def untracked(self) -> asyncio.Future[None]:
        """Resolves once every tracked broadcast reached all K clients."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._tracked:
            future.set_result(None)
        else:
            self._all_done = future
        return future

    def reset_paced(self) -> None:
        self._tracked.clear()
        self._all_done = None
        self.latencies = []


# --- one mode: its processes and its clients ---------------------------------------------------------------------


@dataclass
class Pair:
    """One mode's emulator and app server, and the K clients connected through the app server's negotiate."""

    mode: str
    emulator: Process
    server: Process
    server_url: str
    room: Room
    clients: list[RawWebSocketClient] = field(default_factory=list)

    async def connect(self, session: aiohttp.ClientSession, count: int) -> None:
        limit = asyncio.Semaphore(10)

        async def one() -> RawWebSocketClient:
            async with limit:
                redirect = await server_negotiate(session, self.server_url, self.mode)
                client = RawWebSocketClient(self.room.on_record)
                self.clients.append(client)
                await client.open(session, redirect.url, redirect.access_token, handshake=True)
                return client

        await asyncio.gather(*(one() for _ in range(count)))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients))


@dataclass
class ModeResult(RoundResult):
    """One mode's raw numbers, per round."""

    broadcasts_per_s: list[float] = field(default_factory=list)
    emulator_us: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)


class ModesBench:
    def __init__(self, pairs: list[Pair], budget: Budget, counts: Counts, rounds: int) -> None:
        self.pairs = pairs
        self.budget = budget
        self.counts = counts
        self.rounds = rounds
        self.capped: list[str] = []
        self.results = {pair.mode: ModeResult() for pair in pairs}
        self._seqs = itertools.count(1)  # broadcast numbers, unique across the run
        self._ids = itertools.count(1)
        k, rate = counts.clients, counts.rate
        self.p50 = Metric(f"paced {rate:g}/s, until all {k} have it, p50", "ms")
        self.p99 = Metric(f"paced {rate:g}/s, until all {k} have it, p99", "ms")
        self.deliveries = Metric(f"burst to {k}, {counts.senders} senders", "deliveries/s", higher_is_better=True)
        self.broadcasts = Metric(f"burst to {k}, {counts.senders} senders", "broadcasts/s", higher_is_better=True)
        self.cpu = Metric("burst CPU, emulator + app server", "µs/broadcast")

    @property
    def metrics(self) -> list[Metric]:
        return [self.p50, self.p99, self.deliveries, self.broadcasts, self.cpu]

    @staticmethod
    def _record(metric: Metric, mode: str, value: float) -> None:
        if mode == "serverless":
            metric.add(baseline=value)
        else:
            metric.add(ours=value)

    async def run(self, session: aiohttp.ClientSession) -> None:
        try:
            for pair in self.pairs:
                await pair.connect(session, self.counts.clients)
            for pair in self.pairs:  # warm-up: pools, caches and lazy imports on every hop
                await self._paced(pair, min(20, self.counts.paced), time.monotonic() + 5, warmup=True)
            for round_no in range(self.rounds):
                order = self.pairs if round_no % 2 == 0 else self.pairs[::-1]
                for pair in order:
                    await self._keep_alive()
                    await self._paced(pair, self.counts.paced, self.budget.next_phase())
                    await self._keep_alive()
                    await self._burst(pair, self.counts.burst, self.budget.next_phase())
                print(f"round {round_no + 1}/{self.rounds} done at {self.budget.elapsed():.1f} s", flush=True)
        finally:
            for pair in self.pairs:
                await pair.close()

    async def _keep_alive(self) -> None:
        """A hub Ping from every client of both modes: a client that says nothing for 30 s is closed (by the app server
        in Default mode, by the service in Serverless mode), and the idle mode's clients wait through the other's
        phases."""
        await ping_all(pair.clients for pair in self.pairs)

    async def _paced(self, pair: Pair, count: int, deadline: float, *, warmup: bool = False) -> None:
        """``count`` invocations at the fixed rate from the first client, each tracked until all K have it."""
        room, sender = pair.room, pair.clients[0]
        room.reset_paced()
        completions_before = room.completions.count
        errors_before = len(room.completion_errors)

        async def send_one() -> None:
            seq = next(self._seqs)
            record = invocation(seq, next(self._ids))
            room.track(seq, time.perf_counter())
            await sender.send(record)

        sent = await send_paced(count, self.counts.rate, deadline, send_one)
        try:
            await arrival(room.untracked(), f"{pair.mode}: the paced broadcasts to every client")
        except BenchError:
            if warmup:
                raise
        await arrival(room.completions.reaches(completions_before + sent), f"{pair.mode}: the paced Completions")
        if warmup:
            return
        result = self.results[pair.mode]
        result.completion_errors += len(room.completion_errors) - errors_before
        if sent < count:
            self.capped.append(f"{pair.mode} paced: {sent} of {count}")
        percentiles = result.add_paced(sent, room.latencies)
        if percentiles is not None:
            p50, p99 = percentiles
            self._record(self.p50, pair.mode, p50)
            self._record(self.p99, pair.mode, p99)

    async def _burst(self, pair: Pair, count: int, deadline: float) -> None:
        """``count`` sends written back to back by the first ``senders`` clients; counts every delivery."""
        room = pair.room
        k = len(pair.clients)
        base = room.delivered.count
        seqs = [next(self._seqs) for _ in range(count)]
        senders = pair.clients[: max(1, min(self.counts.senders, k))]
        with measured_cpu([pair.emulator]) as emulator_cpu, measured_cpu([pair.server]) as server_cpu:
            started = time.perf_counter()
            issued = await write_burst(senders, seqs, deadline, lambda seq: invocation(seq, None), pair.mode)
            expected = issued * k
            finished = await room.delivered.drained(base + expected, DRAIN_TIMEOUT)
            delivered = room.delivered.count - base
        result = self.results[pair.mode]
        if issued < count:
            self.capped.append(f"{pair.mode} burst: {issued} of {count}")
        if delivered < expected:
            self.capped.append(f"{pair.mode} burst: only {delivered} of {expected} deliveries within the drain time")
        rate = result.add_burst(issued, expected, delivered, finished - started)
        if rate is not None:
            result.broadcasts_per_s.append(rate / k)
            result.emulator_us.append(emulator_cpu[0] / issued * 1e6)
            result.server_us.append(server_cpu[0] / issued * 1e6)
            self._record(self.deliveries, pair.mode, rate)
            self._record(self.broadcasts, pair.mode, rate / k)
            self._record(self.cpu, pair.mode, (emulator_cpu[0] + server_cpu[0]) / issued * 1e6)

    def summary(self, load: float) -> dict[str, Any]:
        """Everything the report shows, as JSON-ready data (``--json``)."""
        modes: dict[str, Any] = {}
        for mode, r in self.results.items():
            modes[mode] = {
                "paced": r.paced_summary(),
                "burst": {
                    **r.burst_summary(),
                    "broadcasts_per_s": r.broadcasts_per_s,
                    "emulator_cpu_us_per_broadcast": r.emulator_us,
                    "server_cpu_us_per_broadcast": r.server_us,
                },
            }
        ratios = {
            "p50": self.p50.ratio,
            "p99": self.p99.ratio,
            "deliveries_per_s": self.deliveries.ratio,
            "broadcasts_per_s": self.broadcasts.ratio,
            "cpu_per_broadcast": self.cpu.ratio,
        }
        return {
            "clients": self.counts.clients,
            "rounds": self.rounds,
            "rate": self.counts.rate,
            "modes": modes,
            "ratios_default_over_serverless": {k: (v if math.isfinite(v) else None) for k, v in ratios.items()},
            "benchmark_process_load": load,
            "capped": self.capped,
        }

    def report(self) -> None:
        print_table(self.metrics, "serverless", "default")
        for mode, r in self.results.items():
            print(
                f"{mode}: burst CPU per broadcast: emulator {median(r.emulator_us):.0f} µs, "
                f"app server {median(r.server_us):.0f} µs; paced broadcasts complete at all clients "
                f"{sum(r.paced_complete)} of {sum(r.paced_sent)}, burst deliveries "
                f"{sum(r.burst_delivered)} of {sum(r.burst_expected)}, completion errors {r.completion_errors}",
                flush=True,
            )
        print_capped(self.capped)


# --- processes ---------------------------------------------------------------------------------------------------


def _start_server(services: Services, connection_string: str, mode: str, port: int) -> tuple[Process, str]:
    argv = [_script("chat-server"), "--service-mode", mode, "--port", str(port)]
    process = services.spawn(argv, env={"Azure__SignalR__ConnectionString": connection_string})
    line = ready_line(process)
    match = SERVER_READY.match(line)
    if match is None:
        raise BenchError(f"unexpected ready line from chat-server: {line[:200]!r}")
    return process, match.group(1)


def _wait_for_server_connections(server_url: str) -> None:
    """Default mode: until ``/healthz`` says every server connection is open (the service refuses clients before)."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        with urllib.request.urlopen(server_url + "healthz", timeout=REPLY_TIMEOUT) as response:
            status = json.loads(response.read()).get("server_connections") or {}
        if status.get("wanted") and status.get("connected", 0) >= status["wanted"]:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"default: server connections {status} after {CONNECT_TIMEOUT:g} s")
        time.sleep(0.05)


def start_pair(services: Services, mode: str, room: Room) -> Pair:
    """One mode's emulator and app server, ready for clients."""
    if mode == "serverless":
        port = free_port()
        emulator, connection = services.start_emulator("--service-mode", mode, "--upstream", upstream_template(port))
    else:
        port = 0
        emulator, connection = services.start_emulator("--service-mode", mode)
    connection_string = f"Endpoint={connection.endpoint};AccessKey={connection.access_key};Version=1.0;"
    server, url = _start_server(services, connection_string, mode, port)
    if mode == "default":
        _wait_for_server_connections(url)
    return Pair(mode, emulator, server, url, room)


async def _measure(pairs: list[Pair], budget: Budget, counts: Counts, rounds: int) -> ModesBench:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        bench = ModesBench(pairs, budget, counts, rounds)
        await bench.run(session)
    return bench


def _parser() -> argparse.ArgumentParser:
    parser = round_parser("python -m bench.modes", __doc__.splitlines()[0], "mode")
    parser.set_defaults(budget=110.0)
    parser.add_argument("--clients", type=int, default=Counts.clients, help="K, the connected clients per mode")
    parser.add_argument("--paced", type=int, default=Counts.paced, help="paced invocations per mode and round")
    parser.add_argument("--rate", type=float, default=Counts.rate, help="paced invocations per second")
    parser.add_argument("--burst", type=int, default=Counts.burst, help="burst broadcasts per mode and round")
    parser.add_argument(
        "--senders", type=int, default=Counts.senders, help="clients writing the burst (at most --clients)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parse_rounds(parser, argv)
    check_load(parser, args, MAX_CLIENTS)
    counts = Counts(args.clients, args.paced, args.rate, args.burst, min(args.senders, args.clients))
    budget = Budget(args.budget, reserve=3.0, phases=args.rounds * len(MODES) * PHASES)

    def measure(services: Services) -> Callable[[], None]:
        pairs = [start_pair(services, mode, Room(counts.clients)) for mode in MODES]
        print(
            f"default: emulator pid {pairs[0].emulator.pid}, app server {pairs[0].server_url}; serverless: emulator "
            f"pid {pairs[1].emulator.pid}, app server {pairs[1].server_url}; {args.rounds} rounds: {counts.clients} "
            f"clients, up to {counts.paced} invocations at {counts.rate:g}/s and {counts.burst} sends from "
            f"{counts.senders} clients",
            flush=True,
        )
        bench, load = run_measuring_load(_measure(pairs, budget, counts, args.rounds))
        return reporter(bench, load, budget, args.json)

    return run_benchmark("bench.modes", measure)


if __name__ == "__main__":
    raise SystemExit(main())
