"""What every server ``bench.fanout`` starts shares: the event loop it runs on (``--loop``) and the GC figures it
reports (``--stats PATH``).

The GC figures come from ``gc.callbacks``: the longest pause per generation since the previous snapshot, the number
of collections per generation and the total pause time since start, and the objects the collector tracks now
(``len(gc.get_objects())``, the ones it collects, and ``gc.get_freeze_count()``, the ones ``gc.freeze()`` moved out of
its reach), with the event loop running. ``bench.fanout`` asks for a snapshot with SIGUSR1: the
process writes it to PATH as JSON (whole, then renamed into place, with a sequence number), and writes a last one
when it exits. This file is imported by path (the peers run as scripts, each in its own venv), so it uses the
standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import time
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

LOOP_CHOICES = ("auto", "asyncio", "uvloop")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--loop`` (default auto: uvloop when installed) and ``--stats PATH``."""
    parser.add_argument("--loop", choices=LOOP_CHOICES, default="auto", help="event loop (auto: uvloop if installed)")
    parser.add_argument("--stats", metavar="PATH", help="write GC figures here on SIGUSR1 and at exit")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """How to make the loop ``choice`` means; None for asyncio's own. SystemExit when uvloop is asked for and is
    missing."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("--loop uvloop: uvloop is not installed in this venv") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, None], choice: str) -> None:
    """``asyncio.run(main)`` on the loop ``--loop choice`` names."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        runner.run(main)


def set_default_loop(choice: str) -> None:
    """Make the loop ``choice`` names asyncio's default (an event loop policy), for code that calls ``asyncio.run``."""
    if loop_factory(choice) is not None:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: the package of the loop running in this thread ("none" outside one)."""
    loop = asyncio._get_running_loop()
    return "none" if loop is None else type(loop).__module__.split(".")[0]


class GcWatch:
    """GC pauses seen through ``gc.callbacks`` once :meth:`install` is called."""

    def __init__(self) -> None:
        self._started = 0.0
        self.max_ms = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.total_ms = 0.0
        self._snapshots = 0

    def install(self) -> None:
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = (time.perf_counter() - self._started) * 1000.0
        generation = info["generation"]
        self.collections[generation] += 1
        self.total_ms += pause
        self.max_ms[generation] = max(self.max_ms[generation], pause)

    def snapshot(self) -> dict[str, Any]:
        """The figures now; the longest pauses start again from zero."""
        self._snapshots += 1
        longest, self.max_ms = self.max_ms, [0.0, 0.0, 0.0]
        return {
            "seq": self._snapshots,
            "loop": running_loop_name(),
            "max_ms": max(longest),
            "max_ms_by_generation": longest,
            "collections_by_generation": list(self.collections),
            "total_ms": self.total_ms,
            "tracked": len(gc.get_objects()),
            "frozen": gc.get_freeze_count(),
        }

    def write(self, path: str) -> None:
        """A snapshot to ``path``, written whole and renamed into place."""
        partial = f"{path}.partial"
        with open(partial, "w", encoding="utf-8") as out:
            json.dump(self.snapshot(), out)
        os.replace(partial, path)

    def report_to(self, path: str | None) -> None:
        """Install the callbacks and, with a ``path``, write a snapshot there on each SIGUSR1."""
        self.install()
        if path is None:
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.write(path)

        signal.signal(signal.SIGUSR1, on_signal)


def serve_peer(serve: Callable[[], Coroutine[Any, Any, None]], description: str) -> None:
    """A peer script's entry point: ``--loop`` and ``--stats`` from the command line, the GC watched, ``serve()`` run
    on the chosen loop until it returns, and a last snapshot written at exit."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    args = parser.parse_args()
    watch = GcWatch()
    watch.report_to(args.stats)
    try:
        run(serve(), args.loop)
    finally:
        if args.stats:
            watch.write(args.stats)
