"""``bench/_plots.py``: the PNG plots ``python -m bench`` draws from the JSON results, from a small fixture."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import bench._plots
from bench.__main__ import main
from bench._plots import Bar, bars, write_plots

NAN = float("nan")

# The shape bench.fanout --json writes: per peer and metric, one value per round.
FANOUT = {
    "counts": {"clients": 10, "idle": 20, "burst": 5, "paced": 5, "rate": 50.0, "idle_seconds": 0.5, "rounds": 3},
    "peers": ["websockets", "aiosignalr", "emulator"],
    "left_out": [],
    "pinning": "server on core 0, load generator on core 1",
    "load_loop": "uvloop",
    "server_loops": {"websockets": ["uvloop"] * 3, "aiosignalr": ["uvloop"] * 3, "emulator": ["asyncio"] * 3},
    "rounds": {
        "websockets": {
            "burst_frames_per_s": [90_000.0, 100_000.0, 95_000.0],
            "paced_p99_ms": [16.0, 18.0, 17.0],
            "kib_per_connection": [16.9, 17.1, 17.0],
        },
        "aiosignalr": {
            "burst_frames_per_s": [35_000.0, 30_000.0, 33_000.0],
            "paced_p99_ms": [119.0, 150.0, 100.0],
            "kib_per_connection": [33.0, 33.5, 32.5],
        },
        "emulator": {
            "burst_frames_per_s": [64_000.0, 60_000.0, 70_000.0],
            "paced_p99_ms": [21.0, NAN, 25.0],
            "kib_per_connection": [28.6, 28.0, 29.0],
        },
    },
}


def test_bars_are_the_median_and_range_of_the_finite_rounds_in_peer_order() -> None:
    rounds = FANOUT["rounds"]
    assert isinstance(rounds, dict)
    assert bars(rounds, ["emulator", "websockets", "absent"], "paced_p99_ms") == [
        Bar("emulator", 23.0, 21.0, 25.0),
        Bar("websockets", 17.0, 16.0, 18.0),
    ]
    assert bars({"emulator": {"gc_max_pause_ms": [NAN]}}, ["emulator"], "gc_max_pause_ms") == []


def _results(directory: Path) -> Path:
    directory.mkdir()
    (directory / "fanout.json").write_text(json.dumps(FANOUT), encoding="utf-8")
    return directory


def test_fanout_results_become_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    images = tmp_path / "img"
    lines = write_plots(_results(tmp_path / "results"), images)
    png = images / "fanout.png"
    assert lines == [f"plot fanout: {png}"]
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    height, width = imread(str(png)).shape[:2]
    assert width > 2 * height  # one panel per metric, side by side


def test_missing_results_are_named_not_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "results").mkdir()
    assert write_plots(tmp_path / "results", tmp_path / "img") == ["plot fanout: no results (fanout.json not found)"]
    assert not (tmp_path / "img").exists()


def test_without_matplotlib_the_plots_are_skipped_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    lines = write_plots(_results(tmp_path / "results"), tmp_path / "img")
    assert lines == ["plots skipped: matplotlib is not installed (make bench installs it: pip install -e '.[bench]')"]
    assert not (tmp_path / "img").exists()


def test_bench_plots_runs_no_benchmark_and_draws_the_last_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(bench._plots, "RESULTS", _results(tmp_path / "results"))
    monkeypatch.setattr(bench._plots, "IMAGES", tmp_path / "img")
    assert main(["plots"]) == 0
    assert capsys.readouterr().out.splitlines() == ["== plots", f"plot fanout: {tmp_path / 'img' / 'fanout.png'}"]
    assert (tmp_path / "img" / "fanout.png").exists()
