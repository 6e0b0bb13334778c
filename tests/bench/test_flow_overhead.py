"""``bench.flow_overhead`` on tiny counts: both arms run (flow off: no flag at all; flow on: every server publishes and
the app server's ``/flow`` is read), every broadcast reaches every client in both, and the JSON summary has the shape
the report is built from. Nothing here judges speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO

CLIENTS = 3
PACED = 20
BURST = 100


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.flow_overhead", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_flow_overhead_smoke_run_delivers_every_message_with_flow_off_and_on(tmp_path: Path) -> None:
    out = tmp_path / "flow.json"
    result = run(
        *("--budget", "15", "--rounds", "1", "--clients", str(CLIENTS), "--paced", str(PACED)),
        *("--burst", str(BURST), "--senders", "2", "--json", str(out)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "on/off" in result.stdout and "before" not in result.stdout
    summary = json.loads(out.read_text())
    assert summary["clients"] == CLIENTS and summary["rounds"] == 1
    assert set(summary["arms"]) == {"off", "on"}
    for name, arm in summary["arms"].items():
        paced, burst = arm["paced"], arm["burst"]
        assert arm["flow"] == (name == "on")
        # Every round trip was written, answered without error and reached all clients.
        assert paced["sent"] == [PACED] and paced["complete"] == [PACED], name
        assert paced["completion_errors"] == 0, name
        assert 0 < paced["p50_ms"][0] <= paced["p99_ms"][0] < 5000, name
        # Every burst invocation reached every client (the senders receive their own broadcasts too).
        assert burst["sent"] == [BURST] and burst["delivered"] == [BURST * CLIENTS], name
        assert set(burst["cpu_us_per_broadcast_by_process"]) == {"emulator", "gateway", "app server"}, name
    # Flow on really published: the /flow reader saw hops (at least the service's and the app server's per message);
    # flow off has no stream to read.
    assert summary["arms"]["on"]["hops_read"] >= 2 * (PACED + BURST)
    assert summary["arms"]["off"]["hops_read"] == 0
    ratios = summary["ratios"]["on/off"]
    assert set(ratios) == {"p50", "p99", "deliveries", "cpu"}
    for name in ("p50", "p99", "deliveries"):
        assert ratios[name] is not None and ratios[name] > 0, name
    # CPU is read in 10 ms ticks: at these counts the off arm's burst may measure 0, and then there is no ratio.
    assert summary["capped"] == []


def test_flow_overhead_refuses_bad_arguments(tmp_path: Path) -> None:
    result = run("--before", str(tmp_path), timeout=30)
    assert result.returncode == 2
    assert "--before" in result.stderr and "not a source tree of this project" in result.stderr
    result = run("--clients", "1", timeout=30)
    assert result.returncode == 2 and "--clients must be between 2 and" in result.stderr
