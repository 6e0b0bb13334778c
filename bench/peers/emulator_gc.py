"""Run a Python server module in this process with GC figures from the inside, the server's code unchanged: the
emulators' CLIs (``emulator.cli``, ``emulator.webpubsub.cli``) and ``bench.broadcast``'s aiohttp baseline.

Usage (the product's venv, the repository root on ``PYTHONPATH`` for ``bench.*``)::

    python emulator_gc.py [--stats PATH] [--set-loop auto|asyncio|uvloop] MODULE [ARG ...]

It installs ``gc.callbacks`` (``peer_runtime.GcWatch``: the longest pause per generation, collections per
generation, tracked objects in each snapshot), writes a snapshot to PATH on each SIGUSR1 and a last one when the
module exits (SIGTERM included: the module's own shutdown runs first), and runs MODULE as ``__main__`` with ARGs as
its command line (``runpy``). ``--set-loop`` makes asyncio's default loop uvloop (or keeps asyncio's) for a module
without a ``--loop`` of its own; a module that has one is given it among its ARGs instead.
"""

from __future__ import annotations

import argparse
import runpy
import sys

from peer_runtime import LOOP_CHOICES, GcWatch, set_default_loop  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stats", metavar="PATH", help="where the GC figures are written")
    parser.add_argument("--set-loop", choices=LOOP_CHOICES, help="asyncio's default loop for MODULE")
    parser.add_argument("module", metavar="MODULE", help="the module to run as __main__")
    parser.add_argument("args", metavar="ARG", nargs=argparse.REMAINDER, help="its command line")
    args = parser.parse_args()
    if args.set_loop is not None:
        set_default_loop(args.set_loop)
    watch = GcWatch()
    watch.report_to(args.stats)
    sys.argv = [args.module, *args.args]
    try:
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    finally:
        if args.stats:
            watch.write(args.stats)


if __name__ == "__main__":
    main()
