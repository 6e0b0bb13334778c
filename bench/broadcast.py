"""The emulator's fan-out: REST broadcasts to K WebSocket clients, against a minimal aiohttp fan-out server in the
same run.

Processes: one ``signalr-emulator --port 0`` and one baseline server (this module with ``--serve-baseline``): an
aiohttp app with no SignalR protocol and no auth that writes the body of every ``POST /send/{room}`` as one text frame
to each WebSocket of ``GET /ws/{room}``. Both get the same clients in this process (K in one hub/room, 1 in another)
and the same bytes: the baseline is posted the exact record the emulator makes of the REST body, so the clients see
identical frames. Per round, each server measures:

- latency: one broadcast at a time (``POST /api/hubs/{hub}/:send?api-version=2022-06-01`` with a REST token) until all
  K clients have it → p50/p95;
- burst: M broadcasts from 4 concurrent senders → deliveries/s until every client has every message, and the server
  process's CPU time per delivery (``/proc``);
- the same to 1 client, so the cost per extra recipient shows: (cost to K - cost to 1) / (K - 1);
- latency and burst to K clients of a second hub where every other client speaks MessagePack (binary frames) and the
  others JSON: the *mixed* rows, beside the JSON-only ones, against the same baseline numbers (the baseline sends
  JSON to all K).

The emulator serialises a broadcast once per hub protocol in use among its recipients and queues the same bytes to
every recipient of that protocol (``emulator/hub.py``); what grows with K is one queue append, one writer wake-up and
one WebSocket frame per recipient. Rounds alternate which server goes first; the table shows medians of the rounds and
the ratio emulator/baseline.
Run ``python -m bench.broadcast`` (``--budget`` seconds for the whole run, default 25; ``--clients`` K, default 50).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType, web

from signalr.connection_string import ConnectionString
from signalr.hub_protocol import HubProtocol
from signalr.json_protocol import JSON
from signalr.messagepack_protocol import MESSAGEPACK
from signalr.negotiate import build_redirect
from tests.support.processes import Process

from ._harness import (
    REPLY_TIMEOUT,
    BenchError,
    Budget,
    Metric,
    RawWebSocketClient,
    RestBroadcaster,
    Services,
    Tally,
    arrival,
    broadcast_body,
    broadcast_record,
    broadcast_seq_reader,
    measured_cpu,
    median,
    negotiate,
    parse_rounds,
    percentile,
    print_capped,
    print_table,
    ready_line,
    round_parser,
    run_benchmark,
    run_measuring_load,
)

SERVERS = ("emulator", "baseline")
FANOUT = "fanout"  # hub / room with K clients
SOLO = "solo"  # hub / room with 1 client
MIXED = "fanout_mixed"  # the emulator's hub with K clients, every other one in MessagePack
SENDERS = 4  # concurrent REST senders in a burst
PHASES = 4  # latency to K, burst to K, latency to 1, burst to 1
MIXED_PHASES = 2  # latency to K mixed, burst to K mixed
BASELINE_READY = "baseline fan-out listening on "
MAX_CLIENTS = 200


@dataclass(frozen=True)
class Counts:
    """Upper bounds per phase and round; a phase also stops at its share of the time budget."""

    clients: int = 50
    latency: int = 100
    burst: int = 400
    solo_latency: int = 300
    solo_burst: int = 1000


# --- the baseline server -----------------------------------------------------------------------------------------


def baseline_app() -> web.Application:
    """The fan-out floor: no protocol, no auth, no queue — each POST body written to every socket of its room."""
    rooms: dict[str, set[web.WebSocketResponse]] = {}

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False)
        await ws.prepare(request)
        room = rooms.setdefault(request.match_info["room"], set())
        room.add(ws)
        try:
            async for _ in ws:  # the clients' pings are read and ignored
                pass
        finally:
            room.discard(ws)
        return ws

    async def send(request: web.Request) -> web.Response:
        body = await request.read()
        for ws in list(rooms.get(request.match_info["room"], ())):
            with contextlib.suppress(ConnectionError):
                await ws.send_frame(body, WSMsgType.TEXT)
        return web.Response(status=202)

    app = web.Application()
    app.router.add_get("/ws/{room}", websocket)
    app.router.add_post("/send/{room}", send)
    return app


async def serve_baseline(port: int) -> None:
    """Serve :func:`baseline_app` on 127.0.0.1 until SIGINT/SIGTERM; print the ready line once listening."""
    runner = web.AppRunner(baseline_app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        print(f"{BASELINE_READY}http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


# --- receiving ---------------------------------------------------------------------------------------------------


class Fanout:
    """What one group of clients (K, or 1) received: per-message first/last arrival, and a running total."""

    def __init__(self, recipients: int) -> None:
        self.recipients = recipients
        self.delivered = Tally()
        self._tracked: dict[int, list[float]] = {}  # seq → [count, first arrival, last arrival]
        self._waiters: dict[int, asyncio.Future[tuple[float, float]]] = {}

    def receiver(self, protocol: HubProtocol) -> Callable[[bytes, float], None]:
        """The ``on_record`` of a client speaking ``protocol``."""
        seq_of = broadcast_seq_reader(protocol)

        def on_record(record: bytes, arrived: float) -> None:
            self.on_seq(seq_of(record), arrived)

        return on_record

    def on_seq(self, seq: int | None, arrived: float) -> None:
        if seq is None:
            return  # a keep-alive Ping from the emulator
        tracked = self._tracked.get(seq)
        if tracked is not None:
            tracked[0] += 1
            tracked[1] = min(tracked[1], arrived)
            tracked[2] = max(tracked[2], arrived)
            if tracked[0] == self.recipients:
                del self._tracked[seq]
                everyone = self._waiters.pop(seq)
                if not everyone.done():
                    everyone.set_result((tracked[1], tracked[2]))
        self.delivered.add(arrived)

    def everyone_has(self, seq: int) -> asyncio.Future[tuple[float, float]]:
        """Resolves with (first, last) arrival time once all recipients have message ``seq``."""
        future: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._tracked[seq] = [0, float("inf"), 0.0]
        self._waiters[seq] = future
        return future


# --- the two servers as broadcast targets ------------------------------------------------------------------------


class Target:
    """A fan-out server under test: its process, how to connect a client, how to broadcast one message."""

    name: str
    process: Process

    async def connect(
        self, session: aiohttp.ClientSession, room: str, fanout: Fanout, protocol: HubProtocol = JSON
    ) -> RawWebSocketClient:
        raise NotImplementedError

    async def send(self, room: str, seq: int) -> None:
        raise NotImplementedError


class EmulatorTarget(Target):
    name = "emulator"

    def __init__(self, process: Process, connection: ConnectionString, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.connection = connection
        self.rest = RestBroadcaster(session, connection)

    async def connect(
        self, session: aiohttp.ClientSession, room: str, fanout: Fanout, protocol: HubProtocol = JSON
    ) -> RawWebSocketClient:
        redirect = build_redirect(self.connection, room, request_path="/chat/negotiate")
        client = RawWebSocketClient(fanout.receiver(protocol), protocol)
        await client.open(session, await negotiate(session, redirect), redirect.access_token, handshake=True)
        return client

    async def send(self, room: str, seq: int) -> None:
        await self.rest.send(room, broadcast_body(seq))


class BaselineTarget(Target):
    name = "baseline"

    def __init__(self, process: Process, url: str, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.url = url
        self.session = session

    async def connect(
        self, session: aiohttp.ClientSession, room: str, fanout: Fanout, protocol: HubProtocol = JSON
    ) -> RawWebSocketClient:
        assert protocol is JSON, "the baseline speaks no hub protocol: its clients read the JSON records it relays"
        client = RawWebSocketClient(fanout.receiver(protocol))
        await client.open(session, f"{self.url}/ws/{room}", None, handshake=False)
        return client

    async def send(self, room: str, seq: int) -> None:
        # The record the emulator would make of the same REST body, so both servers' clients get identical frames.
        async with self.session.post(f"{self.url}/send/{room}", data=broadcast_record(seq)) as response:
            if response.status != 202:
                raise BenchError(f"baseline answered {response.status}")


@dataclass(frozen=True)
class FanoutRows:
    """The table rows of a fan-out to K clients: latency p50 and p95, burst rate, server CPU per delivery."""

    p50: Metric
    p95: Metric
    rate: Metric
    cpu: Metric


@dataclass
class Group:
    """The clients of one room on one target."""

    room: str
    fanout: Fanout
    clients: list[RawWebSocketClient]


class BroadcastBench:
    def __init__(self, targets: list[Target], budget: Budget, counts: Counts, rounds: int) -> None:
        self.targets = targets
        self.budget = budget
        self.counts = counts
        self.rounds = rounds
        self.capped: list[str] = []
        self._seqs = itertools.count(1)  # broadcast numbers, unique across the run
        k = counts.clients
        self.last_p50 = Metric(f"broadcast to {k}, all delivered p50", "ms")
        self.last_p95 = Metric(f"broadcast to {k}, all delivered p95", "ms")
        self.rate = Metric(f"burst to {k}", "deliveries/s", higher_is_better=True)
        self.cpu = Metric(f"burst to {k}, server CPU", "µs/delivery")
        self.solo_p50 = Metric("broadcast to 1, p50", "ms")
        self.solo_rate = Metric("burst to 1", "broadcasts/s", higher_is_better=True)
        self.solo_cpu = Metric("burst to 1, server CPU", "µs/broadcast")
        self.mixed_p50 = Metric(f"mixed JSON/MessagePack, broadcast to {k}, all delivered p50", "ms")
        self.mixed_p95 = Metric(f"mixed JSON/MessagePack, broadcast to {k}, all delivered p95", "ms")
        self.mixed_rate = Metric(f"mixed JSON/MessagePack, burst to {k}", "deliveries/s", higher_is_better=True)
        self.mixed_cpu = Metric(f"mixed JSON/MessagePack, burst to {k}, server CPU", "µs/delivery")
        self.json_rows = FanoutRows(self.last_p50, self.last_p95, self.rate, self.cpu)
        self.mixed_rows = FanoutRows(self.mixed_p50, self.mixed_p95, self.mixed_rate, self.mixed_cpu)

    @property
    def metrics(self) -> list[Metric]:
        return [
            self.last_p50,
            self.last_p95,
            self.rate,
            self.cpu,
            self.mixed_p50,
            self.mixed_p95,
            self.mixed_rate,
            self.mixed_cpu,
            self.solo_p50,
            self.solo_rate,
            self.solo_cpu,
        ]

    @staticmethod
    def _record(metric: Metric, target: Target, value: float) -> None:
        if target.name == "baseline":
            metric.add(baseline=value)
        else:
            metric.add(ours=value)

    async def _connect(
        self, session: aiohttp.ClientSession, target: Target, room: str, protocols: list[HubProtocol]
    ) -> Group:
        """One client per entry of ``protocols``, in that protocol."""
        fanout = Fanout(len(protocols))
        limit = asyncio.Semaphore(10)

        async def one(protocol: HubProtocol) -> RawWebSocketClient:
            async with limit:
                return await target.connect(session, room, fanout, protocol)

        clients = list(await asyncio.gather(*(one(protocol) for protocol in protocols)))
        return Group(room, fanout, clients)

    async def run(self, session: aiohttp.ClientSession) -> None:
        groups: dict[str, list[Group]] = {}
        k = self.counts.clients
        try:
            for target in self.targets:
                many = await self._connect(session, target, FANOUT, [JSON] * k)
                groups[target.name] = [many, await self._connect(session, target, SOLO, [JSON])]
                if target.name == "emulator":
                    mixed: list[HubProtocol] = [JSON if i % 2 == 0 else MESSAGEPACK for i in range(k)]
                    groups[target.name].append(await self._connect(session, target, MIXED, mixed))
            for target in self.targets:  # warm-up: pools, caches and lazy imports on both sides
                for group in groups[target.name]:
                    await self._latency(target, group, 10, time.monotonic() + 5)
            for round_no in range(self.rounds):
                order = self.targets if round_no % 2 == 0 else self.targets[::-1]
                for target in order:
                    for group in groups[target.name]:
                        for client in group.clients:
                            await client.ping()  # the emulator's 30 s client timeout (§0.1) must not fire mid-run
                    many, solo, *mixed_group = groups[target.name]
                    # The baseline relays JSON to all K: its numbers are the floor of the mixed rows too.
                    rows = [self.json_rows, self.mixed_rows] if target.name == "baseline" else [self.json_rows]
                    await self._measure_to_many(target, many, rows)
                    await self._measure_to_one(target, solo)
                    for group in mixed_group:
                        await self._measure_to_many(target, group, [self.mixed_rows])
                print(f"round {round_no + 1}/{self.rounds} done at {self.budget.elapsed():.1f} s", flush=True)
        finally:
            for target_groups in groups.values():
                await asyncio.gather(*(c.close() for group in target_groups for c in group.clients))

    async def _measure_to_one(self, target: Target, solo: Group) -> None:
        """Latency (p50) and burst (broadcasts/s, CPU per broadcast) to the one client of ``solo``."""
        lasts = await self._latency(target, solo, self.counts.solo_latency, self.budget.next_phase())
        if lasts:
            self._record(self.solo_p50, target, percentile(lasts, 50) * 1000)
        sent, elapsed, cpu = await self._burst(target, solo, self.counts.solo_burst, self.budget.next_phase())
        if sent:
            self._record(self.solo_rate, target, sent / elapsed)
            self._record(self.solo_cpu, target, cpu / sent * 1e6)

    async def _measure_to_many(self, target: Target, many: Group, rows: list[FanoutRows]) -> None:
        """Latency (p50, p95) and burst (deliveries/s, CPU per delivery) to the K clients of ``many``, recorded in
        each of ``rows``."""
        lasts = await self._latency(target, many, self.counts.latency, self.budget.next_phase())
        sent, elapsed, cpu = await self._burst(target, many, self.counts.burst, self.budget.next_phase())
        deliveries = sent * many.fanout.recipients
        for row in rows:
            if lasts:
                self._record(row.p50, target, percentile(lasts, 50) * 1000)
                self._record(row.p95, target, percentile(lasts, 95) * 1000)
            if sent:
                self._record(row.rate, target, deliveries / elapsed)
                self._record(row.cpu, target, cpu / deliveries * 1e6)

    async def _latency(self, target: Target, group: Group, count: int, deadline: float) -> list[float]:
        """One broadcast at a time; returns each one's latency until its last recipient had it."""
        lasts: list[float] = []
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            seq = next(self._seqs)
            everyone = group.fanout.everyone_has(seq)
            posted = time.perf_counter()
            await target.send(group.room, seq)
            _, last = await arrival(everyone, f"broadcast {seq} to every client")
            lasts.append(last - posted)
        if len(lasts) < count:
            self.capped.append(f"{target.name} latency to {group.fanout.recipients}: {len(lasts)} of {count}")
        return lasts

    async def _burst(self, target: Target, group: Group, count: int, deadline: float) -> tuple[int, float, float]:
        """``count`` broadcasts from concurrent senders; returns (sent, seconds until all delivered, server CPU s)."""
        fanout = group.fanout
        base = fanout.delivered.count
        seqs = [next(self._seqs) for _ in range(count)]
        issued = 0

        async def sender() -> None:
            nonlocal issued
            while issued < count and time.monotonic() < deadline:
                seq = seqs[issued]
                issued += 1
                await target.send(group.room, seq)

        with measured_cpu([target.process]) as cpu:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + REPLY_TIMEOUT):
                    await asyncio.gather(*(sender() for _ in range(SENDERS)))
            except TimeoutError:
                raise BenchError(f"{target.name}: the burst's requests did not finish in time") from None
            expected = base + issued * fanout.recipients
            finished = await arrival(fanout.delivered.reaches(expected), f"{target.name}: the burst's deliveries")
        if issued < count:
            self.capped.append(f"{target.name} burst to {fanout.recipients}: {issued} of {count}")
        return issued, finished - started, cpu[0]

    def report(self) -> None:
        print_table(self.metrics, "baseline", "emulator")
        k = self.counts.clients
        for name, pick in (("emulator", "ours"), ("baseline", "baseline")):
            latency_k = median(getattr(self.last_p50, pick))
            latency_1 = median(getattr(self.solo_p50, pick))
            cpu_k = median(getattr(self.cpu, pick)) * k  # µs per broadcast to K
            cpu_1 = median(getattr(self.solo_cpu, pick))
            print(
                f"{name}: per extra recipient {(latency_k - latency_1) / (k - 1) * 1000:.0f} µs latency, "
                f"{(cpu_k - cpu_1) / (k - 1):.0f} µs CPU; fixed per broadcast ≈ {cpu_1:.0f} µs CPU "
                f"(broadcast to {k}: {cpu_k:.0f} µs, to 1: {cpu_1:.0f} µs)",
                flush=True,
            )
        print(
            f"emulator, mixed JSON/MessagePack vs JSON only, to {k}: "
            f"p50 {median(self.mixed_p50.ours) / median(self.last_p50.ours):.2f}x, "
            f"burst {median(self.mixed_rate.ours) / median(self.rate.ours):.2f}x, "
            f"CPU per delivery {median(self.mixed_cpu.ours) / median(self.cpu.ours):.2f}x",
            flush=True,
        )
        print_capped(self.capped)


def _parser() -> argparse.ArgumentParser:
    parser = round_parser("python -m bench.broadcast", __doc__.splitlines()[0], "server")
    parser.add_argument("--clients", type=int, default=Counts.clients, help="K, the clients in the fan-out room")
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser


async def _measure(
    budget: Budget,
    counts: Counts,
    rounds: int,
    emulator: Process,
    connection: ConnectionString,
    baseline: Process,
    baseline_url: str,
) -> BroadcastBench:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        targets: list[Target] = [
            EmulatorTarget(emulator, connection, session),
            BaselineTarget(baseline, baseline_url, session),
        ]
        bench = BroadcastBench(targets, budget, counts, rounds)
        await bench.run(session)
    return bench


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parse_rounds(parser, argv)
    if args.serve_baseline:
        asyncio.run(serve_baseline(args.port))
        return 0
    if not 2 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 2 and {MAX_CLIENTS}")
    budget = Budget(args.budget, reserve=3.0, phases=args.rounds * (len(SERVERS) * PHASES + MIXED_PHASES))
    counts = Counts(clients=args.clients)

    def measure(services: Services) -> Callable[[], None]:
        emulator, connection = services.start_emulator()
        baseline = services.spawn([sys.executable, "-m", "bench.broadcast", "--serve-baseline"])
        line = ready_line(baseline)
        if not line.startswith(BASELINE_READY):
            raise BenchError(f"unexpected ready line from the baseline server: {line[:200]!r}")
        url = line.removeprefix(BASELINE_READY)
        print(
            f"emulator {connection.endpoint}; baseline {url}; {args.rounds} rounds: "
            f"{counts.clients} clients × up to {counts.latency} one-at-a-time and {counts.burst} burst broadcasts, "
            f"1 client × up to {counts.solo_latency} and {counts.solo_burst}",
            flush=True,
        )
        bench, load = run_measuring_load(_measure(budget, counts, args.rounds, emulator, connection, baseline, url))

        def report() -> None:
            bench.report()
            print(f"benchmark process CPU {load:.0%} of wall time; measured in {budget.elapsed():.1f} s", flush=True)

        return report

    return run_benchmark("bench.broadcast", measure)


if __name__ == "__main__":
    raise SystemExit(main())
