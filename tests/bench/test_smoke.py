"""The benchmarks still run: each module, on the smallest budget, exits 0 and prints its ratio table.

Nothing here judges speed (benchmarks do that, as ratios against their own baselines); this only keeps
``make bench`` from rotting between the times someone runs it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.processes import REPO

SMALLEST = {
    "codec": ["--budget", "3"],
    "broadcast": ["--budget", "10", "--rounds", "1"],
    "gateway_relay": ["--budget", "10", "--rounds", "1"],
    "transports": ["--budget", "10", "--rounds", "1"],
    "modes": ["--budget", "10", "--rounds", "1", "--clients", "3", "--paced", "20", "--burst", "100"],
}


def test_every_bench_module_is_covered() -> None:
    from bench.__main__ import modules

    # These have a smoke run of their own, tests/bench/test_<name>.py (bench.fanout and bench.http_fanout need the
    # peers' venvs for their ratios).
    own = ["fanout", "flow_overhead", "http_fanout", "negotiate", "tui_load"]
    assert sorted(modules()) == sorted([*SMALLEST, *own])


@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_bench_module_runs(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *SMALLEST[name]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Every benchmark reports against a baseline measured in the same run, as ratios like "1.16x".
    assert re.search(r"\b\d+\.\d+x\b", result.stdout), result.stdout[-2000:]
