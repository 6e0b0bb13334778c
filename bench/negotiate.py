"""Negotiates per second: ``signalr-emulator`` against a bare aiohttp + PyJWT handler doing the same work.

Servers (a fresh process each per round, pinned to core 0 with ``taskset`` when there are two cores or more; this
load generator is pinned to core 1, like ``bench.fanout``), both on the same event loop (``--loop``):

- ``pyjwt``: ``bench/peers/negotiate_pyjwt.py`` in the product's venv: verifies the bearer token with PyJWT (HS256,
  ``exp``, ``aud``), makes a connection id and token with ``secrets`` and answers the v1 JSON. The floor.
- ``emulator``: ``signalr-emulator --port 0 --log-level warning`` (Serverless mode): ``POST /client/negotiate``, which
  also checks the hub name and the negotiate version, derives the connection's owner and registers the pending
  connection.

Both get the same token (minted as an app server's redirect does, for the emulator's AccessKey) and the same request,
``POST /client/negotiate?hub=bench&negotiateVersion=1``, from C keep-alive connections (``--clients``), each sending
its next request when the previous answer is in. The load generator speaks HTTP/1.1 itself over asyncio protocols
(no HTTP client library), so it spends little per request. Per server and round: a warm-up, then up to N requests
or the round's share of the time budget: requests/s and the server's CPU µs per request (``/proc``). Rounds
alternate which server goes first; the table shows the medians and the ratio emulator/pyjwt.
Run ``python -m bench.negotiate`` (``--budget`` seconds for the whole run, default 30; ``--json PATH`` writes every
round's values; ``--help`` for all).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from signalr.connection_string import parse_connection_string
from signalr.negotiate import NegotiateResult, parse_negotiate_response
from signalr.tokens import mint_token
from tests.support.processes import REPO, Process, script

from ._harness import (
    REPLY_TIMEOUT,
    BenchError,
    Budget,
    Metric,
    Services,
    cpu_seconds,
    parse_rounds,
    print_capped,
    print_table,
    ready_line,
    reporter,
    round_parser,
    run_benchmark,
    run_measuring_load,
)
from .fanout import pin_load_generator, pinned

SERVERS = ("pyjwt", "emulator")
PEER_SCRIPT = REPO / "bench" / "peers" / "negotiate_pyjwt.py"
PEER_READY = "negotiate peer listening on "
HUB = "bench"
ACCESS_KEY = "bench-negotiate-access-key-0123456789abcdef"
AUDIENCE_BASE = "http://127.0.0.1/"  # the Endpoint's scheme and host, as both servers' audiences name them
WARM_UP = 300


@dataclass(frozen=True)
class Load:
    """Concurrent connections and the upper bound of requests per server and round."""

    clients: int = 16
    requests: int = 20000


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a fixed request and reads one answer at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(BenchError("the server closed a keep-alive connection"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self._buffer[:head_end]).lower() + b"\r\n"
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:
            raise BenchError("an answer without Content-Length")
        length = int(head[marker + 17 : head.index(b"\r\n", marker + 2)])
        end = head_end + 4 + length
        if len(self._buffer) < end:
            return
        status = int(head[9:12])
        body = bytes(self._buffer[head_end + 4 : end])
        del self._buffer[:end]
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((status, body))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer


def _request(port: int) -> bytes:
    """The request every client sends; its token is signed as an app server's redirect would sign it."""
    token = mint_token(ACCESS_KEY, f"{AUDIENCE_BASE}client/?hub={HUB}")
    return (
        f"POST /client/negotiate?hub={HUB}&negotiateVersion=1 HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _check_answer(status: int, body: bytes, name: str) -> None:
    if status != 200:
        raise BenchError(f"{name}: negotiate answered {status}: {body[:200]!r}")
    if not isinstance(parse_negotiate_response(body), NegotiateResult):
        raise BenchError(f"{name}: negotiate did not answer a connection: {body[:200]!r}")


async def _run_load(port: int, name: str, clients: int, count: int, deadline: float) -> tuple[int, float]:
    """``count`` negotiates (or as many as fit before ``deadline``) over ``clients`` connections: (done, seconds)."""
    loop = asyncio.get_running_loop()
    request = _request(port)
    connections = [(await loop.create_connection(_Connection, "127.0.0.1", port))[1] for _ in range(clients)]
    status, body = await connections[0].exchange(request)
    _check_answer(status, body, name)
    issued = 0
    done = 0

    async def worker(connection: _Connection) -> None:
        nonlocal issued, done
        while issued < count and time.monotonic() < deadline:
            issued += 1
            status, _ = await connection.exchange(request)
            if status != 200:
                raise BenchError(f"{name}: negotiate answered {status}")
            done += 1

    started = time.perf_counter()
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + REPLY_TIMEOUT):
            await asyncio.gather(*(worker(c) for c in connections))
    except TimeoutError:
        raise BenchError(f"{name}: negotiates did not finish in time") from None
    finally:
        elapsed = time.perf_counter() - started
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    return done, elapsed


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


class NegotiateBench:
    """The metrics of one run and how one server is measured in one round."""

    def __init__(self, services: Services, budget: Budget, load: Load, loop: str) -> None:
        self.services = services
        self.budget = budget
        self.load = load
        self.loop = loop
        self.capped: list[str] = []
        self.rate = Metric(f"negotiate, {load.clients} connections", "requests/s", higher_is_better=True)
        self.cpu = Metric("server CPU", "µs/request")

    def start(self, name: str) -> tuple[Process, int]:
        """Start server ``name`` pinned to the server core; returns its process and port."""
        if name == "emulator":
            argv = [script("signalr-emulator"), "--port", "0", "--log-level", "warning", "--access-key", ACCESS_KEY]
            process = self.services.spawn(pinned([*argv, "--loop", self.loop]))
            return process, _port(parse_connection_string(ready_line(process)).endpoint)
        argv = [sys.executable, str(PEER_SCRIPT), "--access-key", ACCESS_KEY, "--audience-base", AUDIENCE_BASE]
        process = self.services.spawn(pinned([*argv, "--loop", self.loop]))
        line = ready_line(process)
        if not line.startswith(PEER_READY):
            raise BenchError(f"unexpected ready line from the pyjwt peer: {line[:200]!r}")
        return process, _port(line.removeprefix(PEER_READY))

    async def measure(self, name: str, round_no: int) -> None:
        """One round of server ``name``: a fresh process, a warm-up, then the measured load."""
        process, port = self.start(name)
        try:
            await _run_load(port, name, self.load.clients, WARM_UP, time.monotonic() + REPLY_TIMEOUT)
            deadline = self.budget.next_phase()
            cpu_before = cpu_seconds(process.pid)
            done, elapsed = await _run_load(port, name, self.load.clients, self.load.requests, deadline)
            cpu = cpu_seconds(process.pid) - cpu_before
        finally:
            process.stop()
            self.services.processes.remove(process)
        if done < self.load.requests:
            self.capped.append(f"{name} round {round_no + 1}: {done} of {self.load.requests}")
        rate = done / elapsed if elapsed > 0 else float("nan")
        per_request = cpu / done * 1e6 if done else float("nan")
        if name == "emulator":
            self.rate.add(ours=rate)
            self.cpu.add(ours=per_request)
        else:
            self.rate.add(baseline=rate)
            self.cpu.add(baseline=per_request)
        print(f"  round {round_no + 1} {name}: {rate:,.0f} negotiates/s, {per_request:.0f} µs CPU each", flush=True)

    async def run(self, rounds: int) -> None:
        for round_no in range(rounds):
            for name in SERVERS if round_no % 2 == 0 else SERVERS[::-1]:
                await self.measure(name, round_no)

    def report(self) -> None:
        print_table([self.rate, self.cpu], "pyjwt", "emulator")
        print_capped(self.capped)

    def summary(self, load: float) -> dict[str, Any]:
        """Every round's values and the ratios of the medians, as JSON-ready data (``--json``)."""
        return {
            "clients": self.load.clients,
            "loop": self.loop,
            "negotiates_per_s": {"pyjwt": self.rate.baseline, "emulator": self.rate.ours, "ratio": self.rate.ratio},
            "server_cpu_us": {"pyjwt": self.cpu.baseline, "emulator": self.cpu.ours, "ratio": self.cpu.ratio},
            "capped": self.capped,
            "load_generator_cpu": load,
        }


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Load]:
    parser = round_parser("python -m bench.negotiate", __doc__.splitlines()[0], "server")
    parser.set_defaults(budget=30.0)
    parser.add_argument("--clients", type=int, default=Load.clients, help="concurrent connections (default 16)")
    parser.add_argument(
        "--requests", type=int, default=Load.requests, help="negotiates per server and round, at most (default 20000)"
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default=_default_loop(),
        help="both servers' event loop (default uvloop when installed)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parse_rounds(parser, argv)
    if not 1 <= args.clients <= 256 or not 100 <= args.requests <= 1_000_000:
        parser.error("--clients must be 1..256 and --requests 100..1000000")
    return args, Load(clients=args.clients, requests=args.requests)


def main(argv: list[str] | None = None) -> int:
    args, load = parse_args(argv)

    def measure(services: Services) -> Callable[[], None]:
        pinning = pin_load_generator()
        budget = Budget(args.budget, reserve=2.0, phases=args.rounds * len(SERVERS))
        bench = NegotiateBench(services, budget, load, args.loop)
        print(
            f"{args.rounds} rounds of up to {load.requests} negotiates per server over {load.clients} connections; "
            f"{pinning}; servers on {args.loop}",
            flush=True,
        )
        _, load_share = run_measuring_load(bench.run(args.rounds))
        return reporter(bench, load_share, budget, args.json)

    return run_benchmark("bench.negotiate", measure)


if __name__ == "__main__":
    raise SystemExit(main())
