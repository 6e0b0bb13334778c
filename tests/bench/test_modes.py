"""``bench.modes`` on tiny counts: both Service modes run, every broadcast reaches every client, and the JSON summary
has the shape the report is built from. Nothing here judges speed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO

CLIENTS = 3
PACED = 20
BURST = 100


def test_modes_smoke_run_delivers_every_message_in_both_modes(tmp_path: Path) -> None:
    out = tmp_path / "modes.json"
    args = ["--budget", "15", "--rounds", "1", "--clients", str(CLIENTS), "--paced", str(PACED)]
    args += ["--burst", str(BURST), "--senders", "2", "--json", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "bench.modes", *args], cwd=REPO, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "default/serverless" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["clients"] == CLIENTS and summary["rounds"] == 1
    assert set(summary["modes"]) == {"default", "serverless"}
    for mode, data in summary["modes"].items():
        paced, burst = data["paced"], data["burst"]
        # Every paced invocation was written, answered without error and reached all clients.
        assert paced["sent"] == [PACED], mode
        assert paced["complete"] == [PACED], mode
        assert paced["completion_errors"] == 0, mode
        assert 0 < paced["p50_ms"][0] <= paced["p99_ms"][0] < 5000, mode
        # Every burst send reached every client (the senders receive their own broadcasts too).
        assert burst["sent"] == [BURST], mode
        assert burst["expected_deliveries"] == [BURST * CLIENTS], mode
        assert burst["delivered"] == [BURST * CLIENTS], mode
        assert burst["deliveries_per_s"][0] > 0, mode
        assert math.isclose(burst["deliveries_per_s"][0], burst["broadcasts_per_s"][0] * CLIENTS), mode
    ratios = summary["ratios_default_over_serverless"]
    for name in ("p50", "p99", "deliveries_per_s", "broadcasts_per_s"):
        assert ratios[name] is not None and ratios[name] > 0, name
    assert summary["capped"] == []
