"""``bench.tui_load`` on a small load: the chat receives and paints every broadcast, every key typed reaches the
screen, and the JSON summary has the shape the report is built from. Nothing here judges speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.tui_load import LOAD_PREFIX, load_body, load_seq
from tests.support.processes import REPO

RATE = 40
DURATION = 3


def test_a_load_message_and_its_chat_line_carry_the_same_number() -> None:
    body = json.loads(load_body(17))
    assert body["target"] == "broadcastMessage"
    sender, text = body["arguments"]
    assert text.startswith(LOAD_PREFIX) and load_seq(text) == 17
    assert load_seq(f"12:00:00 {sender}: {text}") == 17  # as the message view shows it
    assert load_seq("12:00:00 tui JOINED") is None


def test_small_load_is_received_painted_and_keys_reach_the_screen(tmp_path: Path) -> None:
    out = tmp_path / "tui_load.json"
    args = ["--rate", str(RATE), "--duration", str(DURATION), "--baseline", "2", "--keys", "5", "--budget", "60"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.tui_load", *args, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "keystroke → screen p99 (ms)" in result.stdout
    assert out.with_suffix(".md").read_text().startswith("| metric")
    summary = json.loads(out.read_text())
    assert summary["options"]["size"] == [120, 40]
    baseline, load = summary["phases"]["no load"], summary["phases"][f"{RATE} msg/s"]
    assert baseline["received"] == 0 and baseline["keys"] >= 5 and baseline["keys_lost"] == 0
    sent = load["broadcaster"]["sent"]
    assert sent == load["broadcaster"]["issued"] > 0 and load["broadcaster"]["errors"] == 0
    # Every broadcast reached the chat and the newest one ended up on screen; the backlog drained.
    assert load["received"] == load["painted"] == sent
    assert load["drain_s"] is not None and load["samples"]
    assert load["keys"] >= 5 * DURATION - 1 and load["keys_lost"] == 0
    assert 0 < load["key_p50_ms"] <= load["key_p99_ms"] <= load["key_max_ms"]
