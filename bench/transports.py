"""The project's own client (``signalr.client.HubConnection``) on each transport, directly and through the gateway
profile that serves it, against WebSockets straight to the emulator in the same run.

Processes: one ``signalr-emulator --port 0``, ``apim-gateway --profile websocket`` and ``apim-gateway --profile
sse-lp --with-delete`` (so a LongPolling stop gets its 202, ``docs/apim.md`` §6). A client is started on the redirect
URL with the redirect's token, as after the app server's negotiate (``docs/protocol.md`` §3.1). Per round, each leg
(WebSockets, ServerSentEvents, LongPolling × direct, gateway) measures:

- invoke round trip: ``invoke("echo", …)``, answered by the emulator with a Completion error because no upstream is
  configured (§6.4; the client raises ``HubError``) → p50;
- broadcast delivery: a REST broadcast straight to the emulator until the client's ``broadcastMessage`` handler runs
  → p50. On LongPolling each message ends the held poll and the client polls again (§3.7).

Rounds rotate the order of the legs; the table shows medians of the rounds and each leg's ratio to WebSockets direct.
Run ``python -m bench.transports`` (``--budget`` seconds for the whole run, default 25).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from signalr.client import HubConnection, HubError, TransportChoice
from signalr.connection_string import ConnectionString
from signalr.negotiate import build_redirect

from ._harness import (
    REPLY_TIMEOUT,
    BenchError,
    Budget,
    Metric,
    RestBroadcaster,
    Services,
    arrival,
    broadcast_body,
    median,
    parse_rounds,
    percentile,
    print_capped,
    print_table,
    round_parser,
    run_benchmark,
    with_client_endpoint,
)

TRANSPORTS = (TransportChoice.WEBSOCKETS, TransportChoice.SERVER_SENT_EVENTS, TransportChoice.LONG_POLLING)
PATHS = ("direct", "gateway")
PHASES = 2  # invoke round trips, broadcast deliveries


@dataclass(frozen=True)
class Leg:
    transport: TransportChoice
    path: str

    @property
    def name(self) -> str:
        return f"{self.transport.label} {self.path}"


LEGS = tuple(Leg(t, p) for t in TRANSPORTS for p in PATHS)
BASELINE = Leg(TransportChoice.WEBSOCKETS, "direct")  # every leg's ratio is to this one, measured in the same round


@dataclass(frozen=True)
class Counts:
    round_trips: int = 200
    deliveries: int = 200


class TransportsBench:
    def __init__(
        self,
        connection: ConnectionString,
        ws_gateway: str,
        sse_gateway: str,
        budget: Budget,
        counts: Counts,
        rounds: int,
    ) -> None:
        self.connection = connection
        self.endpoints = {
            ("direct", "websocket"): connection,
            ("direct", "sse-lp"): connection,
            ("gateway", "websocket"): with_client_endpoint(connection, ws_gateway),
            ("gateway", "sse-lp"): with_client_endpoint(connection, sse_gateway),
        }
        self.budget = budget
        self.counts = counts
        self.rounds = rounds
        self.capped: list[str] = []
        self._seqs = itertools.count(1)  # broadcast numbers, unique across the run
        # One row per leg and measure; every round's value of WebSockets direct is the baseline of every row.
        self.round_trip = {leg: Metric(f"{leg.name}: invoke round trip p50", "ms") for leg in LEGS}
        self.delivery = {leg: Metric(f"{leg.name}: broadcast delivery p50", "ms") for leg in LEGS}

    @property
    def metrics(self) -> list[Metric]:
        return [*self.round_trip.values(), *self.delivery.values()]

    async def run(self, session: aiohttp.ClientSession) -> None:
        rest = RestBroadcaster(session, self.connection)
        for round_no in range(self.rounds):
            shift = round_no % len(LEGS)
            results: dict[Leg, tuple[float, float]] = {}
            for leg in LEGS[shift:] + LEGS[:shift]:
                results[leg] = await self._leg(rest, leg, round_no)
            base_rtt, base_delivery = results[BASELINE]
            for leg, (rtt, delivery) in results.items():
                self.round_trip[leg].add(baseline=base_rtt, ours=rtt)
                self.delivery[leg].add(baseline=base_delivery, ours=delivery)
            print(f"round {round_no + 1}/{self.rounds} done at {self.budget.elapsed():.1f} s", flush=True)

    async def _leg(self, rest: RestBroadcaster, leg: Leg, round_no: int) -> tuple[float, float]:
        """Start a client for ``leg``, measure both phases, stop it; returns the two p50s in ms."""
        hub = f"bench_{leg.transport.name.lower()}_{leg.path}_{round_no}"
        endpoint = self.endpoints[(leg.path, leg.transport.family)]
        redirect = build_redirect(endpoint, hub, request_path="/chat/negotiate")
        waiting: dict[int, asyncio.Future[float]] = {}

        def on_broadcast(_name: str, message: str) -> None:
            arrived = time.perf_counter()
            future = waiting.pop(int(message), None)
            if future is not None and not future.done():
                future.set_result(arrived)

        client = HubConnection(
            redirect.url, transport=leg.transport, access_token=redirect.access_token, reconnect_delays=None
        )
        client.on("broadcastMessage", on_broadcast)
        try:
            async with asyncio.timeout(REPLY_TIMEOUT * 2):
                await client.start()
        except Exception as exc:
            raise BenchError(f"{leg.name}: start failed: {exc}") from None
        try:
            round_trips = await self._round_trips(client, leg)
            deliveries = await self._deliveries(rest, hub, waiting, leg)
        finally:
            await client.stop()
        return percentile(round_trips, 50) * 1000, percentile(deliveries, 50) * 1000

    async def _round_trips(self, client: HubConnection, leg: Leg) -> list[float]:
        deadline = self.budget.next_phase()
        samples: list[float] = []
        for _ in range(self.counts.round_trips):
            if time.monotonic() > deadline and samples:
                break
            started = time.perf_counter()
            try:
                await client.invoke("echo", "bench", "hi", timeout=REPLY_TIMEOUT)
            except HubError:
                pass  # the expected answer: no upstream is configured (§6.4)
            except Exception as exc:
                raise BenchError(f"{leg.name}: invoke failed: {exc}") from None
            samples.append(time.perf_counter() - started)
        if len(samples) < self.counts.round_trips:
            self.capped.append(f"{leg.name} round trips: {len(samples)} of {self.counts.round_trips}")
        return samples

    async def _deliveries(
        self, rest: RestBroadcaster, hub: str, waiting: dict[int, asyncio.Future[float]], leg: Leg
    ) -> list[float]:
        deadline = self.budget.next_phase()
        samples: list[float] = []
        for _ in range(self.counts.deliveries):
            if time.monotonic() > deadline and samples:
                break
            seq = next(self._seqs)
            future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            waiting[seq] = future
            posted = time.perf_counter()
            await rest.send(hub, broadcast_body(seq))
            samples.append(await arrival(future, f"{leg.name}: broadcast {seq}") - posted)
        if len(samples) < self.counts.deliveries:
            self.capped.append(f"{leg.name} deliveries: {len(samples)} of {self.counts.deliveries}")
        return samples

    def report(self) -> None:
        rows = [m for m in self.metrics if not m.name.startswith(BASELINE.name)]
        print_table(rows, "WS direct", "this leg")
        base_rtt = self.round_trip[BASELINE]
        base_delivery = self.delivery[BASELINE]
        print(
            f"baseline {BASELINE.name}: invoke round trip p50 {median(base_rtt.ours):.3f} ms, "
            f"broadcast delivery p50 {median(base_delivery.ours):.3f} ms (median of rounds)",
            flush=True,
        )
        print_capped(self.capped)


async def _measure(bench: TransportsBench) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await bench.run(session)


def main(argv: list[str] | None = None) -> int:
    parser = round_parser("python -m bench.transports", __doc__.splitlines()[0], "leg")
    args = parse_rounds(parser, argv)
    budget = Budget(args.budget, reserve=3.0, phases=args.rounds * len(LEGS) * PHASES)
    counts = Counts()

    def measure(services: Services) -> Callable[[], None]:
        _, connection = services.start_emulator()
        _, ws_url = services.start_gateway(connection.endpoint, "websocket")
        _, sse_url = services.start_gateway(connection.endpoint, "sse-lp", "--with-delete")
        print(
            f"emulator {connection.endpoint}; gateways: websocket {ws_url}, sse-lp {sse_url} (--with-delete); "
            f"{args.rounds} rounds of up to {counts.round_trips} invokes and {counts.deliveries} broadcasts a leg",
            flush=True,
        )
        bench = TransportsBench(connection, ws_url, sse_url, budget, counts, args.rounds)
        asyncio.run(_measure(bench))

        def report() -> None:
            bench.report()
            print(f"measured in {budget.elapsed():.1f} s", flush=True)

        return report

    return run_benchmark("bench.transports", measure)


if __name__ == "__main__":
    raise SystemExit(main())
