"""The terminal chat under load: a room broadcasting 500 messages/s for 60 s to the real ``ChatApp``, with keys typed
meanwhile; the backlog of messages received but not yet on screen, keystroke-to-screen latency, CPU and memory, against
the same app with no load.

Processes: ``signalr-emulator --service-mode serverless`` and ``chat-server`` on 127.0.0.1, and a broadcaster (this
module with ``--broadcaster``, its own process) that paces ``POST /api/hubs/chat/:send`` (the REST call an app server
makes to broadcast, with its token) at ``--rate`` per second for ``--duration`` seconds: what every member of a busy
room receives. The chat runs headless in this process (Textual ``run_test``, ``--size`` 120x40 by default), joined to
the room like a user (the app server's negotiate, WebSockets, JSON). The headless driver writes nothing to a terminal;
each screen update is still encoded as a terminal would get it (``render_segments``), so that cost is counted.

Measured per phase (first with no load, then under the load):

- backlog: load messages the connection received minus those painted on screen (the message on the view's bottom row
  at each screen update), sampled every 0.5 s: its maximum, its mean in the last quarter of the phase against the
  second quarter (a growing backlog shows as a rising mean), and how long it takes to drain once the load stops;
- keystroke-to-screen: characters typed into the message field at ``--keys`` per second, each timed from posting the
  key event (as the terminal driver does) to the first screen update after the field rendered it: p50, p99, max;
- the app's CPU (this process) and memory (RSS) at the phase's start and end;
- how long the app's thread waited for a CPU (the run queue, ``/proc/self/schedstat``): on a shared machine that
  wait is the machine's share of the latencies, so the keystroke latency is also given without it.

Run ``python -m bench.tui_load`` (``--help`` for the options); the Markdown table is printed and written with the JSON
of every sample under ``artifacts/bench/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from textual import events
from textual.widgets import Input

from chat.app import ChatApp, freeze_startup_heap
from chat.connection import ChatConnection
from chat.service_connection import ServiceConnection
from signalr.client import ConnectionState, TransportChoice
from signalr.connection_string import parse_connection_string
from tests.support.processes import REPO, Process, free_port
from tests.support.stack import SERVER_READY, upstream_template

from ._harness import BenchError, RestBroadcaster, Services, _script, cpu_of, percentile, ready_line, run_benchmark

HUB = "chat"
LOAD_SENDERS = ("ana", "ben", "cleo", "dev", "eve")
LOAD_PREFIX = "load message "
CONNECTION_ENV = "BENCH_TUI_LOAD_CONNECTION_STRING"
SAMPLE_EVERY = 0.5
KEY_TIMEOUT = 5.0  # a keystroke not on screen after this long counts as lost
KEYS_PER_FIELD = 40  # the message field is emptied after this many characters (once all are on screen)
DRAIN_TIMEOUT = 30.0
JOIN_TIMEOUT = 20.0
IN_FLIGHT = 32  # concurrent REST broadcasts at most; a slower service makes the broadcaster fall behind its rate
DEFAULT_JSON = REPO / "artifacts" / "bench" / "tui_load.json"
TARGET_KEY_P99_MS = 50.0


# --- the broadcaster (its own process) -----------------------------------------------------------------------------


def load_body(seq: int) -> bytes:
    """The REST body of load message ``seq``: broadcastMessage from one of a few senders, a sentence with the number."""
    sender = LOAD_SENDERS[seq % len(LOAD_SENDERS)]
    text = f"{LOAD_PREFIX}{seq}: the quick brown fox jumps over the lazy dog"
    return json.dumps({"target": "broadcastMessage", "arguments": [sender, text]}).encode()


def load_seq(text: str) -> int | None:
    """The number of a load message's text (or of a chat line showing one), None for any other text."""
    start = text.find(LOAD_PREFIX)
    if start < 0:
        return None
    digits = text[start + len(LOAD_PREFIX) :].partition(":")[0]
    return int(digits) if digits.isdigit() else None


async def broadcast(connection_string: str, rate: float, duration: float) -> dict[str, float]:
    """``rate`` broadcasts per second for ``duration`` seconds (at most :data:`IN_FLIGHT` at a time); what was sent."""
    connection = parse_connection_string(connection_string)
    sent = errors = 0
    limit = asyncio.Semaphore(IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:
        rest = RestBroadcaster(session, connection)

        async def one(seq: int) -> None:
            nonlocal sent, errors
            try:
                async with asyncio.timeout(10):
                    await rest.send(HUB, load_body(seq))
                sent += 1
            except (BenchError, aiohttp.ClientError, TimeoutError):
                errors += 1
            finally:
                limit.release()

        started = time.monotonic()
        seq = 0
        cpu_started = time.process_time()
        while (now := time.monotonic()) < started + duration and seq < rate * duration:
            due = int((now - started) * rate) + 1
            while seq < due:
                await limit.acquire()
                seq += 1
                task = asyncio.create_task(one(seq))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.005)
        issued_for = time.monotonic() - started
        if tasks:
            await asyncio.wait(set(tasks), timeout=15)
        cpu = time.process_time() - cpu_started
    return {"issued": seq, "sent": sent, "errors": errors, "seconds": issued_for, "cpu_s": cpu}


def broadcaster_main(rate: float, duration: float) -> int:
    """``--broadcaster``: print ``ready``, wait for a line on stdin, broadcast, print the result as one JSON line."""
    connection_string = os.environ.get(CONNECTION_ENV, "")
    print("ready", flush=True)
    if not sys.stdin.readline():
        return 1
    result = asyncio.run(broadcast(connection_string, rate, duration))
    print(json.dumps(result), flush=True)
    return 0


# --- what the app shows, seen from hooks on it ---------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    received: int
    painted: int
    rss_kib: int
    cpu_s: float

    @property
    def backlog(self) -> int:
        return max(0, self.received - self.painted)


@dataclass
class Phase:
    """One phase's numbers (the no-load baseline or the load)."""

    name: str
    seconds: float = 0.0
    received: int = 0
    painted: int = 0
    key_latencies_ms: list[float] = field(default_factory=list)
    key_own_latencies_ms: list[float] = field(default_factory=list)
    keys_lost: int = 0
    cpu_s: float = 0.0
    waited_s: float = 0.0
    servers_cpu_s: float = 0.0
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    rss_mid_kib: int = 0
    drain_s: float | None = None
    samples: list[Sample] = field(default_factory=list)
    broadcaster: dict[str, float] = field(default_factory=dict)

    def backlog_means(self) -> tuple[float, float]:
        """Mean backlog in the second quarter and in the last quarter of the phase."""
        n = len(self.samples)
        if n < 4:
            return float("nan"), float("nan")
        second = [s.backlog for s in self.samples[n // 4 : n // 2]]
        last = [s.backlog for s in self.samples[3 * n // 4 :]]
        return statistics.fmean(second), statistics.fmean(last)

    def summary(self) -> dict[str, Any]:
        keys, own = self.key_latencies_ms, self.key_own_latencies_ms
        second, last = self.backlog_means()
        return {
            "seconds": self.seconds,
            "received": self.received,
            "painted": self.painted,
            "received_per_s": self.received / self.seconds if self.seconds else None,
            "backlog_max": max((s.backlog for s in self.samples), default=0),
            "backlog_mean_second_quarter": second,
            "backlog_mean_last_quarter": last,
            "backlog_at_end": self.samples[-1].backlog if self.samples else 0,
            "drain_s": self.drain_s,
            "keys": len(keys),
            "keys_lost": self.keys_lost,
            "key_p50_ms": percentile(keys, 50) if keys else None,
            "key_p99_ms": percentile(keys, 99) if keys else None,
            "key_max_ms": max(keys) if keys else None,
            "key_own_p50_ms": percentile(own, 50) if own else None,
            "key_own_p99_ms": percentile(own, 99) if own else None,
            "app_cpu_percent": 100 * self.cpu_s / self.seconds if self.seconds else None,
            "app_waiting_for_cpu_percent": 100 * self.waited_s / self.seconds if self.seconds else None,
            "servers_cpu_percent": 100 * self.servers_cpu_s / self.seconds if self.seconds else None,
            "rss_start_mib": self.rss_start_kib / 1024,
            "rss_end_mib": self.rss_end_kib / 1024,
            "rss_growth_second_half_mib": (self.rss_end_kib - self.rss_mid_kib) / 1024,
            "broadcaster": self.broadcaster,
            "samples": [[round(s.at, 2), s.received, s.painted, s.rss_kib, round(s.cpu_s, 3)] for s in self.samples],
        }


def run_queue_wait_s() -> float:
    """Seconds this process's main thread (the app's loop) spent ready to run but waiting for a CPU (``/proc``'s
    schedstat; NaN without it): on a shared machine, latency that is the machine's, not the app's."""
    try:
        with open("/proc/self/schedstat", "rb") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def rss_kib() -> int:
    """This process's resident memory in KiB (``/proc``; the peak on systems without it)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Watch:
    """Hooks on the running app: load messages the connection received, the newest one painted, and keystrokes
    typed into the message field until the screen shows them."""

    def __init__(self) -> None:
        self.received = 0
        self.painted = 0
        self._rendered_length = 0
        self._typed = 0  # characters typed into the field since it was last emptied
        # (field length once the key is in, when it was posted, the run-queue wait so far then)
        self._pending: list[tuple[int, float, float]] = []
        self.latencies_ms: list[float] = []
        self.own_latencies_ms: list[float] = []  # the same without the time spent waiting for a CPU meanwhile
        self.lost = 0

    def connection_factory(self, url: str, **options: Any) -> ChatConnection:
        """The app's own connection (a :class:`chat.connection.ConnectionFactory`), with one more handler that counts
        the load messages it receives."""
        connection = ServiceConnection(url, **options)
        connection.on("broadcastMessage", self._on_broadcast)
        return connection

    def _on_broadcast(self, sender: str = "", text: str = "", *_: Any) -> None:
        if isinstance(text, str) and text.startswith(LOAD_PREFIX):
            self.received += 1

    def attach(self, app: ChatApp) -> Input:
        """Hook the message field's rendering and the app's screen updates; returns the field."""
        field = app.query_one("#message", Input)
        render_line = field.render_line

        def rendered(y: int) -> Any:
            if y == 0:
                self._rendered_length = len(field.value)
            return render_line(y)

        display = app._display

        def displayed(screen: Any, renderable: Any) -> None:
            encode = getattr(renderable, "render_segments", None)
            if encode is not None:
                encode(app.console)  # what a terminal driver would write (the headless one skips it)
            display(screen, renderable)
            self._on_display(app)

        setattr(field, "render_line", rendered)  # noqa: B010 (an instance hook on a method)
        setattr(app, "_display", displayed)  # noqa: B010
        return field

    def _on_display(self, app: ChatApp) -> None:
        log = app.chat_log
        bottom = min(round(log.scroll_offset.y) + log.scrollable_content_region.height, log.row_count) - 1
        line = log.line_at(bottom)
        seq = load_seq(line.text) if line is not None else None
        if seq is not None and seq > self.painted:
            self.painted = seq
        if self._pending:
            now = time.perf_counter()
            waited = run_queue_wait_s()
            while self._pending and self._pending[0][0] <= self._rendered_length:
                _, posted, waited_before = self._pending.pop(0)
                self.latencies_ms.append((now - posted) * 1000)
                self.own_latencies_ms.append((now - posted - (waited - waited_before)) * 1000)

    def type_key(self, app: ChatApp, field: Input, char: str) -> None:
        """Post one key as the terminal driver does; empty the field first when it is long and nothing is pending."""
        now = time.perf_counter()
        while self._pending and now - self._pending[0][1] > KEY_TIMEOUT:
            self._pending.pop(0)
            self.lost += 1
        if self._typed >= KEYS_PER_FIELD and not self._pending:
            field.value = ""
            self._typed = self._rendered_length = 0
        self._typed += 1
        self._pending.append((self._typed, time.perf_counter(), run_queue_wait_s()))
        key = events.Key(char, char)
        key.set_sender(app)
        app.post_message(key)

    def take_keys(self) -> tuple[list[float], list[float], int]:
        """The latencies, those without the run-queue wait, and the lost keys so far (and start over)."""
        latencies, own, lost = self.latencies_ms, self.own_latencies_ms, self.lost + len(self._pending)
        self.latencies_ms, self.own_latencies_ms, self.lost, self._pending = [], [], 0, []
        return latencies, own, lost


# --- the run -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    rate: float
    duration: float
    keys: float
    baseline: float
    size: tuple[int, int]
    deadline: float  # monotonic: the whole run ends by then


async def _phase(
    app: ChatApp,
    field: Input,
    watch: Watch,
    phase: Phase,
    seconds: float,
    keys_per_s: float,
    servers: Sequence[Process],
) -> None:
    """Type keys at ``keys_per_s`` and sample every :data:`SAMPLE_EVERY` for ``seconds``."""
    started = time.monotonic()
    cpu0, servers0, waited0 = time.process_time(), cpu_of(servers), run_queue_wait_s()
    received0, painted0 = watch.received, watch.painted
    phase.rss_start_kib = rss_kib()
    next_key, next_sample, typed = started, started, 0
    mid_taken = False
    while (now := time.monotonic()) < started + seconds:
        if now >= next_key:
            watch.type_key(app, field, "abcdefghij"[typed % 10])
            typed += 1
            next_key += 1 / keys_per_s
        if now >= next_sample:
            phase.samples.append(
                Sample(
                    now - started,
                    watch.received - received0,
                    watch.painted - painted0,
                    rss_kib(),
                    time.process_time() - cpu0,
                )
            )
            next_sample += SAMPLE_EVERY
        if not mid_taken and now >= started + seconds / 2:
            phase.rss_mid_kib, mid_taken = rss_kib(), True
        await asyncio.sleep(max(0.0, min(next_key, next_sample) - time.monotonic()))
    phase.seconds = time.monotonic() - started
    phase.cpu_s = time.process_time() - cpu0
    phase.waited_s = run_queue_wait_s() - waited0
    phase.servers_cpu_s = cpu_of(servers) - servers0
    phase.rss_end_kib = rss_kib()


async def _collect_keys(watch: Watch, phase: Phase) -> None:
    await asyncio.sleep(KEY_TIMEOUT / 10)  # the last keys reach the screen
    phase.key_latencies_ms, phase.key_own_latencies_ms, phase.keys_lost = watch.take_keys()


async def _drain(watch: Watch, phase: Phase, painted0: int, received0: int, timeout: float) -> None:
    """After the load: how long until every received message is painted (None when not within ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        if watch.painted - painted0 >= watch.received - received0:
            phase.drain_s = time.monotonic() - started
            break
        await asyncio.sleep(0.02)
    phase.received = watch.received - received0
    phase.painted = watch.painted - painted0


async def measure(server_url: str, broadcaster: Process, servers: Sequence[Process], options: Options) -> list[Phase]:
    watch = Watch()
    app = ChatApp(
        f"{server_url}chat", TransportChoice.WEBSOCKETS, name="tui", connection_factory=watch.connection_factory
    )
    phases = [Phase("no load"), Phase(f"{options.rate:g} msg/s")]
    freeze_startup_heap()  # as the chat command does before it runs the app
    async with app.run_test(size=options.size) as pilot:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while app.connection is None or app.connection.state is not ConnectionState.CONNECTED:
            if time.monotonic() > deadline:
                raise BenchError(f"the chat did not connect within {JOIN_TIMEOUT:g} s")
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        field = watch.attach(app)
        field.focus()
        await pilot.pause(0.2)
        await _phase(app, field, watch, phases[0], options.baseline, options.keys, servers)
        await _collect_keys(watch, phases[0])
        phases[0].received, phases[0].painted = watch.received, watch.painted
        received0, painted0 = watch.received, watch.painted
        assert broadcaster.popen.stdin is not None
        broadcaster.popen.stdin.write(b"go\n")
        broadcaster.popen.stdin.flush()
        load = phases[1]
        seconds = max(1.0, min(options.duration, options.deadline - time.monotonic() - DRAIN_TIMEOUT))
        await _phase(app, field, watch, load, seconds, options.keys, servers)
        await _drain(
            watch, load, painted0, received0, max(1.0, min(DRAIN_TIMEOUT, options.deadline - time.monotonic()))
        )
        await _collect_keys(watch, load)
        line = await asyncio.to_thread(broadcaster.readline, max(1.0, options.deadline - time.monotonic()) + 15)
        load.broadcaster = json.loads(line)
        await app.action_quit()
    return phases


# --- report ----------------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def markdown_table(phases: Sequence[Phase], options: Options) -> str:
    base, load = (p.summary() for p in phases)
    sent = load["broadcaster"].get("sent", 0)
    sent_s = load["broadcaster"].get("seconds") or float("nan")
    rows = [
        ("messages broadcast (/s)", "0", f"{_fmt(sent / sent_s)} ({sent:,} in {sent_s:.0f} s)", f"{options.rate:g}"),
        ("messages received by the chat (/s)", _fmt(base["received_per_s"]), _fmt(load["received_per_s"]), ""),
        ("backlog, max (messages)", _fmt(base["backlog_max"]), _fmt(load["backlog_max"]), ""),
        (
            "backlog, mean of 2nd → last quarter (messages)",
            "",
            f"{_fmt(load['backlog_mean_second_quarter'])} → {_fmt(load['backlog_mean_last_quarter'])}",
            "not growing",
        ),
        ("drained after the load (s)", "", _fmt(load["drain_s"], 2), ""),
        ("painted / received at the end", "", f"{load['painted']:,} / {load['received']:,}", "all"),
        ("keystroke → screen p50 (ms)", _fmt(base["key_p50_ms"]), _fmt(load["key_p50_ms"]), ""),
        ("keystroke → screen p99 (ms)", _fmt(base["key_p99_ms"]), _fmt(load["key_p99_ms"]), f"≤ {TARGET_KEY_P99_MS:g}"),
        ("keystroke → screen max (ms)", _fmt(base["key_max_ms"]), _fmt(load["key_max_ms"]), ""),
        (
            "keystroke → screen without run-queue wait p50 / p99 (ms)",
            f"{_fmt(base['key_own_p50_ms'])} / {_fmt(base['key_own_p99_ms'])}",
            f"{_fmt(load['key_own_p50_ms'])} / {_fmt(load['key_own_p99_ms'])}",
            "",
        ),
        ("keys typed (lost)", f"{base['keys']} ({base['keys_lost']})", f"{load['keys']} ({load['keys_lost']})", ""),
        ("chat CPU (% of one core)", _fmt(base["app_cpu_percent"]), _fmt(load["app_cpu_percent"]), ""),
        (
            "chat waiting for a CPU, run queue (% of wall)",
            _fmt(base["app_waiting_for_cpu_percent"]),
            _fmt(load["app_waiting_for_cpu_percent"]),
            "",
        ),
        ("emulator + app server CPU (%)", _fmt(base["servers_cpu_percent"]), _fmt(load["servers_cpu_percent"]), ""),
        (
            "chat RSS start → end (MiB)",
            f"{_fmt(base['rss_start_mib'])} → {_fmt(base['rss_end_mib'])}",
            f"{_fmt(load['rss_start_mib'])} → {_fmt(load['rss_end_mib'])}",
            "",
        ),
        (
            "chat RSS growth, 2nd half (MiB)",
            _fmt(base["rss_growth_second_half_mib"]),
            _fmt(load["rss_growth_second_half_mib"]),
            "≈ 0",
        ),
    ]
    width, height = options.size
    header = [
        f"metric ({width}x{height}, {options.keys:g} keys/s)",
        f"no load ({base['seconds']:.0f} s)",
        f"{phases[1].name} ({load['seconds']:.0f} s)",
        "target",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError("a size is WIDTHxHEIGHT, e.g. 120x40")
    return int(width), int(height)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tui_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="broadcasts per second (default 500)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--keys", type=float, default=10.0, help="keys typed per second (default 10)")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds with no load first (default 10)")
    parser.add_argument("--size", type=_size, default=(120, 40), help="terminal size (default 120x40)")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for the whole run (default 150)")
    parser.add_argument("--json", metavar="PATH", default=str(DEFAULT_JSON), help="samples and results as JSON")
    parser.add_argument("--broadcaster", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not (0 < args.rate <= 5000 and 1 <= args.duration <= 300 and 0.5 <= args.keys <= 50):
        parser.error("--rate must be above 0 and at most 5000, --duration 1–300 s, --keys 0.5–50 per second")
    if not (1 <= args.baseline <= 60 and 10 <= args.budget <= 600):
        parser.error("--baseline must be 1–60 s and --budget 10–600 s")
    if not (40 <= args.size[0] <= 400 and 10 <= args.size[1] <= 200):
        parser.error("--size must be 40–400 columns and 10–200 rows")
    if args.broadcaster:
        return broadcaster_main(args.rate, args.duration)
    started = time.monotonic()

    def run(services: Services) -> Callable[[], None]:
        port = free_port()
        emulator = services.spawn(
            [
                _script("signalr-emulator"),
                "--port",
                "0",
                "--service-mode",
                "serverless",
                "--upstream",
                upstream_template(port),
            ]
        )
        ready = ready_line(emulator)
        connection = parse_connection_string(ready)
        connection_string = f"Endpoint={connection.endpoint};AccessKey={connection.access_key};Version=1.0;"
        server = services.spawn(
            [_script("chat-server"), "--service-mode", "serverless", "--port", str(port)],
            env={"Azure__SignalR__ConnectionString": connection_string},
        )
        match = SERVER_READY.match(ready_line(server))
        if match is None:
            raise BenchError("unexpected ready line from chat-server")
        broadcaster = services.spawn(
            [
                sys.executable,
                "-m",
                "bench.tui_load",
                "--broadcaster",
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
            ],
            env={CONNECTION_ENV: ready},
        )
        if ready_line(broadcaster) != "ready":
            raise BenchError("the broadcaster did not start")
        options = Options(args.rate, args.duration, args.keys, args.baseline, args.size, started + args.budget - 5)
        print(
            f"emulator pid {emulator.pid}, app server {match.group(1)}, broadcaster pid {broadcaster.pid}: "
            f"{options.baseline:g} s with no load, then {options.rate:g} msg/s for {options.duration:g} s; "
            f"{options.keys:g} keys/s; {options.size[0]}x{options.size[1]}",
            flush=True,
        )
        phases = asyncio.run(measure(match.group(1), broadcaster, [emulator, server], options))

        def report() -> None:
            table = markdown_table(phases, options)
            print(table, flush=True)
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            document = {"options": asdict(options), "phases": {p.name: p.summary() for p in phases}}
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            path.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
            print(f"results: {path} and {path.with_suffix('.md')}", flush=True)

        return report

    return run_benchmark("bench.tui_load", run)


if __name__ == "__main__":
    raise SystemExit(main())
