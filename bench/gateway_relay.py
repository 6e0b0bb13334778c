"""The cost of going through ``apim-gateway`` (the APIM stand-in): the same client, directly to the emulator vs through
the gateway, measured in one run against the same ``signalr-emulator`` process.

Processes: one ``signalr-emulator --port 0``, one ``apim-gateway --profile websocket`` and one ``--profile sse-lp`` in
front of it. The client token comes from ``signalr.negotiate.build_redirect`` as the app server would make it; the
ClientEndpoint is the emulator (direct) or a gateway. Per round, each path (direct, gateway) measures:

- WebSocket invoke round trip: an Invocation with an id, answered by the emulator at once with a Completion error
  (no upstream is configured, ``docs/protocol.md`` §6.4), one at a time → p50/p95;
- WebSocket invoke burst: a bounded number of Invocations written back to back → round trips/s, and the CPU time the
  emulator and the gateway spent per round trip (``/proc``);
- REST broadcast → WebSocket delivery: ``POST /api/hubs/{hub}/:send`` straight to the emulator (the app server's
  REST calls never cross APIM), time until the client has the record → p50;
- REST broadcast → Server-Sent Events delivery, through the ``sse-lp`` gateway (``buffer-response="false"``) → p50/p95
  and CPU per event;
- negotiate: ``POST /client/negotiate`` with the token, 8 concurrent clients → requests/s and CPU per request.

Rounds alternate which path goes first; the table shows the median of the rounds and the ratio gateway/direct.
Run ``python -m bench.gateway_relay`` (``--budget`` seconds for the whole run, default 25).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from signalr.connection_string import ConnectionString
from signalr.negotiate import build_redirect, negotiate_url
from tests.support.processes import Process

from ._harness import (
    REPLY_TIMEOUT,
    BenchError,
    Budget,
    Metric,
    RawSseClient,
    RawWebSocketClient,
    RestBroadcaster,
    Services,
    Tally,
    arrival,
    broadcast_body,
    broadcast_seq,
    measured_cpu,
    median,
    negotiate,
    parse_rounds,
    percentile,
    print_capped,
    print_table,
    round_parser,
    run_benchmark,
    run_measuring_load,
    with_client_endpoint,
)

PATHS = ("direct", "gateway")
PHASES = ("ws round trip", "ws burst", "ws delivery", "sse delivery", "negotiate")
NEGOTIATE_WORKERS = 8


@dataclass(frozen=True)
class Counts:
    """Upper bounds per phase and round; a phase also stops at its share of the time budget."""

    round_trips: int = 1000
    burst: int = 10000
    deliveries: int = 300
    negotiates: int = 1000


class Inbox:
    """Routes one client leg's records: Completions are counted, broadcast records complete their waiter."""

    def __init__(self) -> None:
        self.completions = Tally()
        self._deliveries: dict[int, asyncio.Future[float]] = {}

    def on_record(self, record: bytes, arrived: float) -> None:
        if record.startswith(b'{"type":3,'):
            self.completions.add(arrived)
            return
        seq = broadcast_seq(record)
        if seq is not None:
            future = self._deliveries.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(arrived)

    def delivery(self, seq: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._deliveries[seq] = future
        return future


def _invocation(invocation_id: int) -> bytes:
    # The Chatroom's echo with an invocationId: without an upstream the emulator answers a Completion error at once.
    return b'{"type":1,"invocationId":"%d","target":"echo","arguments":["bench","hi"]}\x1e' % invocation_id


class GatewayRelayBench:
    """One run: the processes, the metrics, and the measurement phases of every round."""

    def __init__(
        self,
        connection: ConnectionString,
        ws_gateway: str,
        sse_gateway: str,
        emulator: Process,
        gateways: Sequence[Process],
        budget: Budget,
        counts: Counts,
        rounds: int,
    ) -> None:
        self.connection = connection
        # Client endpoints per path: the WebSocket profile cannot serve SSE, the sse-lp profile cannot serve WebSockets.
        self.ws_endpoint = {"direct": connection, "gateway": with_client_endpoint(connection, ws_gateway)}
        self.sse_endpoint = {"direct": connection, "gateway": with_client_endpoint(connection, sse_gateway)}
        self.emulator = emulator
        self.gateways = list(gateways)
        self.servers = [emulator, *gateways]
        self.budget = budget
        self.counts = counts
        self.rounds = rounds
        self.capped: list[str] = []
        self._seqs = itertools.count(1)  # broadcast numbers, unique across the run
        self.rtt_p50 = Metric("WS invoke round trip p50", "ms")
        self.rtt_p95 = Metric("WS invoke round trip p95", "ms")
        self.burst_rate = Metric("WS invoke burst", "round trips/s", higher_is_better=True)
        self.burst_cpu = Metric("WS burst CPU, emulator+gateway", "µs/round trip")
        self.ws_delivery = Metric("REST broadcast → WS delivery p50", "ms")
        self.ws_delivery_cpu = Metric("WS delivery CPU, emulator+gateway", "µs/event")
        self.sse_p50 = Metric("REST broadcast → SSE delivery p50", "ms")
        self.sse_p95 = Metric("REST broadcast → SSE delivery p95", "ms")
        self.sse_cpu = Metric("SSE CPU, emulator+gateway", "µs/event")
        self.negotiate_rate = Metric(f"negotiate, {NEGOTIATE_WORKERS} concurrent", "requests/s", higher_is_better=True)
        self.negotiate_cpu = Metric("negotiate CPU, emulator+gateway", "µs/request")
        # CPU µs of the gateway process alone per operation, gateway path only.
        self.gateway_only: dict[str, list[float]] = {"ws": [], "ws event": [], "sse": [], "negotiate": []}

    @property
    def metrics(self) -> list[Metric]:
        return [
            self.rtt_p50,
            self.rtt_p95,
            self.burst_rate,
            self.burst_cpu,
            self.ws_delivery,
            self.ws_delivery_cpu,
            self.sse_p50,
            self.sse_p95,
            self.sse_cpu,
            self.negotiate_rate,
            self.negotiate_cpu,
        ]

    # --- bookkeeping -----------------------------------------------------------------------------------------

    def _note_cap(self, what: str, done: int, wanted: int) -> None:
        if done < wanted:
            self.capped.append(f"{what}: {done} of {wanted}")

    @staticmethod
    def _record(metric: Metric, path: str, value: float) -> None:
        if path == "direct":
            metric.add(baseline=value)
        else:
            metric.add(ours=value)

    @staticmethod
    def _hub(kind: str, round_no: int, path: str) -> str:
        # A hub per leg, so a broadcast never reaches a connection of another leg that is still closing.
        return f"bench_{kind}_{round_no}_{path}"

    # --- phases ----------------------------------------------------------------------------------------------

    async def run(self, session: aiohttp.ClientSession) -> None:
        rest = RestBroadcaster(session, self.connection)
        await self._warm_up(session, rest)
        for round_no in range(self.rounds):
            order = PATHS if round_no % 2 == 0 else PATHS[::-1]
            for path in order:
                await self._websocket(session, rest, round_no, path)
                await self._sse(session, rest, round_no, path)
                await self._negotiate(session, round_no, path)
            print(f"round {round_no + 1}/{self.rounds} done at {self.budget.elapsed():.1f} s", flush=True)

    async def _warm_up(self, session: aiohttp.ClientSession, rest: RestBroadcaster) -> None:
        """A few of each request per path, so pools, caches and lazy imports are warm before round 1."""
        for path in PATHS:
            hub = self._hub("warm", 0, path)
            inbox = Inbox()
            client = await self._open_websocket(session, path, hub, inbox)
            try:
                for i in range(20):
                    done = inbox.completions.reaches(inbox.completions.count + 1)
                    await client.send(_invocation(i))
                    await arrival(done, "warm-up completion")
                seq = next(self._seqs)
                arrived = inbox.delivery(seq)
                await rest.send(hub, broadcast_body(seq))
                await arrival(arrived, "warm-up broadcast")
            finally:
                await client.close()
            inbox = Inbox()
            events = await self._open_sse(session, path, hub, inbox)
            try:
                seq = next(self._seqs)
                arrived = inbox.delivery(seq)
                await rest.send(hub, broadcast_body(seq))
                await arrival(arrived, "warm-up event")
            finally:
                await events.close()
            await self._negotiate_requests(session, self.ws_endpoint[path], hub, 20, time.monotonic() + 5)

    async def _open_websocket(
        self, session: aiohttp.ClientSession, path: str, hub: str, inbox: Inbox
    ) -> RawWebSocketClient:
        redirect = build_redirect(self.ws_endpoint[path], hub, request_path="/chat/negotiate")
        url = await negotiate(session, redirect)
        client = RawWebSocketClient(inbox.on_record)
        await client.open(session, url, redirect.access_token, handshake=True)
        return client

    async def _open_sse(self, session: aiohttp.ClientSession, path: str, hub: str, inbox: Inbox) -> RawSseClient:
        redirect = build_redirect(self.sse_endpoint[path], hub, request_path="/chat/negotiate")
        url = await negotiate(session, redirect)
        client = RawSseClient(inbox.on_record)
        await client.open(session, url, redirect.access_token)
        return client

    async def _websocket(self, session: aiohttp.ClientSession, rest: RestBroadcaster, round_no: int, path: str) -> None:
        hub = self._hub("ws", round_no, path)
        inbox = Inbox()
        client = await self._open_websocket(session, path, hub, inbox)
        gateway = self.gateways[0]
        try:
            # Round trips, one at a time.
            deadline = self.budget.next_phase()
            rtts: list[float] = []
            for i in range(self.counts.round_trips):
                if time.monotonic() > deadline:
                    break
                done = inbox.completions.reaches(inbox.completions.count + 1)
                sent = time.perf_counter()
                await client.send(_invocation(i))
                rtts.append(await arrival(done, "Completion") - sent)
            self._note_cap(f"{path} WS round trips", len(rtts), self.counts.round_trips)
            if rtts:
                self._record(self.rtt_p50, path, percentile(rtts, 50) * 1000)
                self._record(self.rtt_p95, path, percentile(rtts, 95) * 1000)

            # A burst written back to back; the emulator's per-connection upstream slots apply backpressure.
            deadline = self.budget.next_phase()
            records = [_invocation(i) for i in range(self.counts.burst)]
            base = inbox.completions.count
            sent_count = 0
            with measured_cpu(self.servers) as cpu, measured_cpu([gateway]) as gateway_cpu:
                started = time.perf_counter()
                for record in records:
                    if time.monotonic() > deadline:
                        break
                    await client.send(record)
                    sent_count += 1
                wait = max(REPLY_TIMEOUT, deadline - time.monotonic() + REPLY_TIMEOUT)
                finished = await arrival(inbox.completions.reaches(base + sent_count), "the burst's Completions", wait)
            self._note_cap(f"{path} WS burst", sent_count, self.counts.burst)
            if sent_count:
                self._record(self.burst_rate, path, sent_count / (finished - started))
                self._record(self.burst_cpu, path, cpu[0] / sent_count * 1e6)
                if path == "gateway":
                    self.gateway_only["ws"].append(gateway_cpu[0] / sent_count * 1e6)

            # REST broadcasts to this one connection, one at a time.
            with measured_cpu(self.servers) as cpu, measured_cpu([gateway]) as gateway_cpu:
                latencies = await self._deliveries(rest, hub, inbox, self.budget.next_phase())
            self._note_cap(f"{path} WS deliveries", len(latencies), self.counts.deliveries)
            if latencies:
                self._record(self.ws_delivery, path, percentile(latencies, 50) * 1000)
                self._record(self.ws_delivery_cpu, path, cpu[0] / len(latencies) * 1e6)
                if path == "gateway":
                    self.gateway_only["ws event"].append(gateway_cpu[0] / len(latencies) * 1e6)
        finally:
            await client.close()

    async def _deliveries(self, rest: RestBroadcaster, hub: str, inbox: Inbox, deadline: float) -> list[float]:
        latencies: list[float] = []
        for _ in range(self.counts.deliveries):
            if time.monotonic() > deadline:
                break
            seq = next(self._seqs)
            arrived = inbox.delivery(seq)
            posted = time.perf_counter()
            await rest.send(hub, broadcast_body(seq))
            latencies.append(await arrival(arrived, f"broadcast {seq}") - posted)
        return latencies

    async def _sse(self, session: aiohttp.ClientSession, rest: RestBroadcaster, round_no: int, path: str) -> None:
        hub = self._hub("sse", round_no, path)
        inbox = Inbox()
        client = await self._open_sse(session, path, hub, inbox)
        gateway = self.gateways[1]
        try:
            with measured_cpu(self.servers) as cpu, measured_cpu([gateway]) as gateway_cpu:
                latencies = await self._deliveries(rest, hub, inbox, self.budget.next_phase())
            self._note_cap(f"{path} SSE deliveries", len(latencies), self.counts.deliveries)
            if latencies:
                self._record(self.sse_p50, path, percentile(latencies, 50) * 1000)
                self._record(self.sse_p95, path, percentile(latencies, 95) * 1000)
                self._record(self.sse_cpu, path, cpu[0] / len(latencies) * 1e6)
                if path == "gateway":
                    self.gateway_only["sse"].append(gateway_cpu[0] / len(latencies) * 1e6)
        finally:
            await client.close()

    async def _negotiate(self, session: aiohttp.ClientSession, round_no: int, path: str) -> None:
        hub = self._hub("negotiate", round_no, path)
        deadline = self.budget.next_phase()
        with measured_cpu(self.servers) as cpu, measured_cpu(self.gateways[:1]) as gateway_cpu:
            started = time.perf_counter()
            done = await self._negotiate_requests(
                session, self.ws_endpoint[path], hub, self.counts.negotiates, deadline
            )
            elapsed = time.perf_counter() - started
        self._note_cap(f"{path} negotiates", done, self.counts.negotiates)
        if done:
            self._record(self.negotiate_rate, path, done / elapsed)
            self._record(self.negotiate_cpu, path, cpu[0] / done * 1e6)
            if path == "gateway":
                self.gateway_only["negotiate"].append(gateway_cpu[0] / done * 1e6)

    @staticmethod
    async def _negotiate_requests(
        session: aiohttp.ClientSession, endpoint: ConnectionString, hub: str, count: int, deadline: float
    ) -> int:
        """``count`` negotiates (or as many as fit before ``deadline``) from concurrent workers; returns how many."""
        redirect = build_redirect(endpoint, hub, request_path="/chat/negotiate")
        url = negotiate_url(redirect.url)
        headers = {"Authorization": f"Bearer {redirect.access_token}"}
        issued = 0
        done = 0

        async def worker() -> None:
            nonlocal issued, done
            while issued < count and time.monotonic() < deadline:
                issued += 1
                async with session.post(url, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise BenchError(f"negotiate answered {response.status}")
                done += 1

        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + REPLY_TIMEOUT):
                await asyncio.gather(*(worker() for _ in range(NEGOTIATE_WORKERS)))
        except TimeoutError:
            raise BenchError("negotiate requests did not finish in time") from None
        return done

    # --- report ----------------------------------------------------------------------------------------------

    def report(self) -> None:
        print_table(self.metrics, "direct", "gateway")
        ws, ws_event, sse, neg = (median(self.gateway_only[k]) for k in ("ws", "ws event", "sse", "negotiate"))
        emulator = {
            "ws": median(self.burst_cpu.baseline),
            "ws event": median(self.ws_delivery_cpu.baseline),
            "sse": median(self.sse_cpu.baseline),
            "negotiate": median(self.negotiate_cpu.baseline),
        }
        print(
            "gateway process alone, CPU µs per operation (and as a share of the emulator's own CPU for it, direct): "
            f"WS burst round trip {ws:.0f} ({ws / emulator['ws']:.0%}), "
            f"WS event {ws_event:.0f} ({ws_event / emulator['ws event']:.0%}), "
            f"SSE event {sse:.0f} ({sse / emulator['sse']:.0%}), "
            f"negotiate {neg:.0f} ({neg / emulator['negotiate']:.0%})",
            flush=True,
        )
        print_capped(self.capped)


async def _measure(bench: GatewayRelayBench) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await bench.run(session)


def main(argv: list[str] | None = None) -> int:
    parser = round_parser("python -m bench.gateway_relay", __doc__.splitlines()[0], "path")
    args = parse_rounds(parser, argv)
    budget = Budget(args.budget, reserve=3.0, phases=args.rounds * len(PATHS) * len(PHASES))
    counts = Counts()

    def measure(services: Services) -> Callable[[], None]:
        emulator, connection = services.start_emulator()
        ws_gateway, ws_url = services.start_gateway(connection.endpoint, "websocket")
        sse_gateway, sse_url = services.start_gateway(connection.endpoint, "sse-lp")
        print(
            f"emulator {connection.endpoint}; gateways: websocket {ws_url}, sse-lp {sse_url}; "
            f"{args.rounds} rounds of up to {counts.round_trips} round trips, a burst of {counts.burst}, "
            f"{counts.deliveries} WS and {counts.deliveries} SSE deliveries, {counts.negotiates} negotiates",
            flush=True,
        )
        bench = GatewayRelayBench(
            connection, ws_url, sse_url, emulator, [ws_gateway, sse_gateway], budget, counts, args.rounds
        )
        _, load = run_measuring_load(_measure(bench))

        def report() -> None:
            bench.report()
            print(f"benchmark process CPU {load:.0%} of wall time; measured in {budget.elapsed():.1f} s", flush=True)

        return report

    return run_benchmark("bench.gateway_relay", measure)


if __name__ == "__main__":
    raise SystemExit(main())
