"""``bench.http_fanout`` still runs: tiny counts, one round, the table printed and the JSON written.

Nothing here judges speed. The SSE and LongPolling legs need only the product's venv; the raw WebSocket baseline
needs ``bench/.venvs/websockets`` (``make bench-peers``; ``make test`` never installs it) and is skipped, saying so,
when it is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fanout import available_peers
from tests.support.processes import REPO

TINY = ["--clients", "3", "--burst", "5", "--paced", "5", "--rate", "50", "--rounds", "1"]
MISSING = available_peers(["websockets"])[1]


def run_http_fanout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.http_fanout", *TINY, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_usage_errors_exit_2() -> None:
    result = run_http_fanout("--legs", "sse,carrier-pigeon")
    assert result.returncode == 2
    assert "--legs: unknown carrier-pigeon" in result.stderr


def test_sse_and_longpolling_run_and_write_json(tmp_path: Path) -> None:
    out = tmp_path / "http_fanout.json"
    result = run_http_fanout("--legs", "sse,longpolling", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| fan-out to 3, 5 broadcasts back to back: frames/s ↑ |" in result.stdout
    rounds = json.loads(out.read_text(encoding="utf-8"))["rounds"]
    for leg in ("sse", "longpolling"):
        assert rounds[leg]["burst_frames_per_s"][0] > 0
        assert rounds[leg]["paced_p99_ms"][0] >= rounds[leg]["paced_p50_ms"][0] > 0


@pytest.mark.skipif(bool(MISSING), reason="bench/.venvs/websockets is missing: make bench-peers")
def test_the_http_legs_have_their_ratio_to_raw_websockets(tmp_path: Path) -> None:
    out = tmp_path / "http_fanout.json"
    result = run_http_fanout("--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("| fan-out to 3, 5"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[-2].endswith("x") and cells[-1].endswith("x"), row  # sse/websockets, longpolling/websockets
    assert sorted(json.loads(out.read_text(encoding="utf-8"))["rounds"]) == ["longpolling", "sse", "websockets"]
