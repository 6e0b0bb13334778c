"""``bench.fanout`` still runs: tiny counts, one round, the table printed and the JSON written.

Nothing here judges speed. The emulator-only run needs nothing beyond the product's venv; the run with the peers
needs their venvs under ``bench/.venvs`` (``make bench-peers``; ``make test`` never installs them) and is skipped,
saying so, when one is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fanout import PEERS, available_peers, body_of, order_of, record_of, spread
from tests.support.processes import REPO

TINY = ["--clients", "3", "--idle", "6", "--burst", "5", "--paced", "5", "--rate", "50", "--idle-seconds", "0.5"]
MISSING = available_peers(PEERS)[1]


def run_fanout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.fanout", *TINY, "--rounds", "1", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_broadcast_carries_its_message_as_the_second_argument() -> None:
    assert record_of(42) == b'{"type":1,"target":"broadcastMessage","arguments":["bench","42"]}\x1e'
    assert body_of(b"sent@123") == b'{"target":"broadcastMessage","arguments":["bench","sent@123"]}'


def test_rounds_alternate_the_order_of_the_peers() -> None:
    assert order_of(PEERS, 0) == list(PEERS)
    assert order_of(PEERS, 1) == list(reversed(PEERS))


def test_spread_is_the_median_with_min_and_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == "2 (1–3)"
    assert spread([float("nan")]) == "n/a"


def test_usage_errors_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--clients", "10", "--idle", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--clients <= --idle <= 19900" in result.stderr


def test_emulator_alone_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "fanout.json"
    result = run_fanout("--peers", "emulator", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| fan-out to 3 WS, 5 broadcasts back to back: frames/s ↑ |" in result.stdout
    assert "| one REST broadcast to all 6 idle WS clients: ms until the last has it ↓ |" in result.stdout
    loop_row = next(line for line in result.stdout.splitlines() if line.startswith("| server event loop |"))
    assert loop_row.split("|")[2].strip() in ("asyncio", "uvloop"), loop_row
    document = json.loads(out.read_text(encoding="utf-8"))
    rounds = document["rounds"]["emulator"]
    assert len(rounds["burst_frames_per_s"]) == 1 and rounds["burst_frames_per_s"][0] > 0
    assert len(rounds["paced_p99_ms"]) == 1
    # The emulator's GC figures, from gc.callbacks inside its process.
    assert rounds["gc_max_pause_ms"][0] >= 0 and rounds["gc_tracked"][0] > 0


def test_webpubsub_runs_beside_the_signalr_emulator(tmp_path: Path) -> None:
    """Both services' emulators are in the product's venv: the Web PubSub row and its ratio to SignalR are there."""
    out = tmp_path / "fanout.json"
    result = run_fanout("--peers", "emulator,webpubsub", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("| fan-out to 3 WS"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[-1].endswith("x"), row  # webpubsub/emulator
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["rounds"]["webpubsub"]["burst_frames_per_s"][0] > 0
    assert (
        document["rounds"]["webpubsub"]["kib_per_connection"][0]
        == document["rounds"]["webpubsub"]["kib_per_connection"][0]
    )  # a number, not NaN: the process's RSS was read


@pytest.mark.skipif(
    bool(MISSING), reason=f"peer venvs missing under bench/.venvs ({', '.join(MISSING)}): make bench-peers"
)
def test_all_peers_run_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "fanout.json"
    result = run_fanout("--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    # The ratios ours/raw, ours/aiosignalr and Web PubSub/SignalR, e.g. "0.61x", on the frames/s row.
    row = next(line for line in result.stdout.splitlines() if line.startswith("| fan-out to 3 WS"))
    assert row.count("x |") == 3, row
    document = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(document["rounds"]) == sorted(PEERS)
    for peer in PEERS:
        assert document["rounds"][peer]["gc_max_pause_ms"][0] >= 0
        assert document["server_loops"][peer][0] in ("asyncio", "uvloop")
