"""The emulator's per-connection and per-broadcast costs: fan-out to K WebSocket clients, and N idle connections.

- Fan-out: K clients (default 1 000) in one hub; B REST broadcasts (default 200) written back to back by 4 senders,
  timed until all K x B deliveries arrived: deliveries/s and the emulator's CPU per delivery. Then P broadcasts paced
  at R/s (default 100 at 20/s), each timed from the start of its POST until the K-th client has it: p50 and p99.
- Idle: N connected clients (default 2 000) that send nothing for W seconds (default 20, so one keep-alive round of
  15 s falls inside): the emulator's CPU as a share of the window, and its RSS before the clients connected and after
  (KiB per connection).

Run ``python -m bench.connection_costs`` from the repository root (``--help`` for the counts). Everything is bounded:
counts are capped, every wait has a timeout; the emulator is a child process on ``127.0.0.1``, stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Iterator

import aiohttp

from signalr.connection_string import ConnectionString
from signalr.negotiate import build_redirect

from ._harness import (
    BenchError,
    RawWebSocketClient,
    RestBroadcaster,
    Services,
    broadcast_body,
    cpu_seconds,
    median,
    percentile,
    run_benchmark,
)

MAX_CLIENTS = 8000  # each client holds one socket in this process and one in the emulator
SETTLE = 1.0
DELIVERY_TIMEOUT = 60.0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS")


class Arrivals:
    """Counts deliveries; ``until(total)`` resolves when the count reaches ``total``."""

    def __init__(self) -> None:
        self.count = 0
        self._target = 0
        self._waiter: asyncio.Future[float] | None = None

    def add(self, _record: bytes, arrived: float) -> None:
        self.count += 1
        waiter = self._waiter
        if waiter is not None and self.count >= self._target and not waiter.done():
            waiter.set_result(arrived)

    async def until(self, total: int) -> float:
        if self.count >= total:
            return time.perf_counter()
        self._target = total
        self._waiter = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(DELIVERY_TIMEOUT):
            return await self._waiter


async def _connect(
    session: aiohttp.ClientSession, connection: ConnectionString, hub: str, count: int, arrivals: Arrivals
) -> list[RawWebSocketClient]:
    redirect = build_redirect(connection, hub, request_path="/chat/negotiate")
    url = redirect.url
    limit = asyncio.Semaphore(20)

    async def one() -> RawWebSocketClient:
        async with limit:
            # A WebSocket without id= gets a connection without a negotiate (the service allows it).
            client = RawWebSocketClient(arrivals.add)
            await client.open(session, url, redirect.access_token, handshake=True)
            return client

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _sender(rest: RestBroadcaster, todo: Iterator[int], seqs: Iterator[int]) -> None:
    for _ in todo:
        await rest.send("fanout", broadcast_body(next(seqs)))


async def _fanout(args: argparse.Namespace, pid: int, connection: ConnectionString) -> list[str]:
    lines: list[str] = []
    arrivals = Arrivals()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = await _connect(session, connection, "fanout", args.clients, arrivals)
        try:
            rest = RestBroadcaster(session, connection)
            seqs = itertools.count(1)
            k = args.clients
            for _ in range(3):  # warm-up
                await rest.send("fanout", broadcast_body(next(seqs)))
            await arrivals.until(3 * k)
            for rnd in range(args.rounds):
                base = arrivals.count
                cpu0 = cpu_seconds(pid)
                started = time.perf_counter()
                todo = iter(range(args.broadcasts))
                await asyncio.gather(*(_sender(rest, todo, seqs) for _ in range(4)))
                ended = await arrivals.until(base + args.broadcasts * k)
                cpu = cpu_seconds(pid) - cpu0
                deliveries = args.broadcasts * k
                lines.append(
                    f"round {rnd + 1}: burst {args.broadcasts} to {k}: {deliveries / (ended - started):,.0f} "
                    f"deliveries/s, emulator CPU {cpu * 1e6 / deliveries:.2f} µs/delivery"
                )
                await asyncio.sleep(SETTLE)
                latencies: list[float] = []
                interval = 1.0 / args.rate
                next_at = time.perf_counter()
                for _ in range(args.paced):
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    base = arrivals.count
                    start = time.perf_counter()
                    await rest.send("fanout", broadcast_body(next(seqs)))
                    last = await arrivals.until(base + k)
                    latencies.append((last - start) * 1000)
                lines.append(
                    f"round {rnd + 1}: paced {args.paced} at {args.rate:g}/s to {k}: p50 {median(latencies):.2f} ms, "
                    f"p99 {percentile(latencies, 99):.2f} ms"
                )
                for client in clients:
                    await client.ping()
        finally:
            await asyncio.gather(*(c.close() for c in clients))
    return lines


async def _idle(args: argparse.Namespace, pid: int, connection: ConnectionString) -> list[str]:
    arrivals = Arrivals()
    await asyncio.sleep(SETTLE)
    rss_before = _rss_kib(pid)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = await _connect(session, connection, "idle", args.idle, arrivals)
        try:
            await asyncio.sleep(SETTLE)
            for client in clients:
                await client.ping()
            cpu0 = cpu_seconds(pid)
            started = time.monotonic()
            await asyncio.sleep(args.window)
            cpu = cpu_seconds(pid) - cpu0
            wall = time.monotonic() - started
            rss_after = _rss_kib(pid)
        finally:
            await asyncio.gather(*(c.close() for c in clients))
    n = args.idle
    return [
        f"idle {n} WS for {wall:.1f} s: emulator CPU {100 * cpu / wall:.2f} % "
        f"({cpu * 1000:.0f} ms), keep-alive pings received {arrivals.count}",
        f"idle {n} WS: emulator RSS {rss_before / 1024:.1f} → {rss_after / 1024:.1f} MiB, "
        f"{(rss_after - rss_before) / n:.1f} KiB per connection",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.connection_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="K, clients in the fan-out (default 1000)")
    parser.add_argument("--broadcasts", type=int, default=200, help="B, broadcasts per burst (default 200)")
    parser.add_argument("--paced", type=int, default=100, help="P, paced broadcasts per round (default 100)")
    parser.add_argument("--rate", type=float, default=20.0, help="R, paced broadcasts per second (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="fan-out rounds (default 3)")
    parser.add_argument("--idle", type=int, default=2000, help="N, idle connections (default 2000; 0 skips)")
    parser.add_argument("--window", type=float, default=20.0, help="W, idle window in seconds (default 20)")
    parser.add_argument("--skip-fanout", action="store_true", help="measure only the idle connections")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 <= args.idle <= MAX_CLIENTS:
        parser.error(f"--clients and --idle must be at most {MAX_CLIENTS}")
    if not 1 <= args.broadcasts <= 2000 or not 1 <= args.paced <= 1000 or not 1 <= args.rounds <= 9:
        parser.error("--broadcasts at most 2000, --paced at most 1000, --rounds 1–9")
    if not 1 <= args.window <= 25 or not 1 <= args.rate <= 200:
        parser.error("--window 1–25 s (the client timeout is 30 s), --rate 1–200")

    def measure(services: Services) -> object:
        lines: list[str] = []
        if not args.skip_fanout:
            process, connection = services.start_emulator()
            lines += asyncio.run(_fanout(args, process.pid, connection))
            process.stop()
        if args.idle:
            process, connection = services.start_emulator()
            lines += asyncio.run(_idle(args, process.pid, connection))

        def report() -> None:
            for line in lines:
                print(line)

        return report

    return run_benchmark("bench.connection_costs", measure)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
