"""PNG plots of the benchmark results: ``artifacts/bench/<name>.json`` → ``docs/img/<name>.png``.

``python -m bench`` draws them after its modules ran (``python -m bench plots`` draws them from the last results
without running anything). Each plot is one panel per metric, a bar per peer at the median of the rounds with a
min–max whisker, the product's servers in one colour and the peers in another. Drawing needs matplotlib (the
project's ``bench`` extra, installed by ``make bench``); without it the plots are skipped with a note.

Only results written as JSON are drawn: today ``bench.fanout``'s (``--json``, the default path), whose document is
``{"counts": {...}, "peers": [...], "pinning": "...", "load_loop": "...", "server_loops": {peer: [loop per round]},
"rounds": {peer: {metric: [value per round]}}}``.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import REPO

from ._harness import median

__all__ = ["PLOTS", "Bar", "Panel", "Plot", "bars", "matplotlib_installed", "write_plots"]

RESULTS = REPO / "artifacts" / "bench"
IMAGES = REPO / "docs" / "img"
OURS = frozenset({"emulator", "webpubsub"})  # the product's servers; every other name is a peer
OUR_COLOUR = "#1f77b4"
PEER_COLOUR = "#a0a0a0"


@dataclass(frozen=True)
class Panel:
    """One metric of a results document: its key under ``rounds``, the panel's title and whether more is better."""

    key: str
    title: str
    higher_is_better: bool


@dataclass(frozen=True)
class Plot:
    """One PNG: the results file it is drawn from (``<name>.json``) and its panels."""

    name: str
    title: str
    panels: tuple[Panel, ...]


PLOTS = (
    Plot(
        "fanout",
        "bench.fanout: broadcasts to K WebSocket clients",
        (
            Panel("burst_frames_per_s", "frames/s, back to back", higher_is_better=True),
            Panel("paced_p99_ms", "paced delivery p99, ms", higher_is_better=False),
            Panel("kib_per_connection", "KiB per idle connection", higher_is_better=False),
        ),
    ),
)


@dataclass(frozen=True)
class Bar:
    """A peer's median over the rounds and the smallest and largest round."""

    peer: str
    median: float
    low: float
    high: float


def bars(rounds: Mapping[str, Mapping[str, Sequence[float]]], peers: Sequence[str], key: str) -> list[Bar]:
    """A bar per peer that has a finite value of ``key`` (NaN rounds are left out), in the order of ``peers``."""
    found = []
    for peer in peers:
        finite = [v for v in rounds.get(peer, {}).get(key, []) if v == v]
        if finite:
            found.append(Bar(peer, median(finite), min(finite), max(finite)))
    return found


def matplotlib_installed() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _subtitle(document: Mapping[str, Any]) -> str:
    """Two lines: the run's sizes, then rounds, pinning and the load generator's loop (what the document has)."""
    counts = document["counts"]
    rounds = int(counts["rounds"])
    sizes = (
        f"K={counts['clients']:,} clients, N={counts['idle']:,} idle, {counts['burst']} broadcasts back to back, "
        f"{counts['paced']} paced at {counts['rate']:g}/s"
    )
    how = [f"median of {rounds} round{'s' if rounds != 1 else ''}, whiskers min–max"]
    if "pinning" in document:
        how.append(str(document["pinning"]))
    servers = _server_loops(document.get("server_loops", {}))
    if servers:
        how.append(f"servers on {servers}")
    if "load_loop" in document:
        how.append(f"load generator on {document['load_loop']}")
    return sizes + "\n" + "; ".join(how)


def _server_loops(loops: Mapping[str, Sequence[str]]) -> str:
    """The event loop the servers ran on: one name when they all ran on the same, else each peer's."""
    names = {peer: "/".join(sorted(set(rounds))) for peer, rounds in loops.items() if rounds}
    if len(set(names.values())) == 1:
        return next(iter(names.values()))
    return ", ".join(f"{peer} {name}" for peer, name in names.items())


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def draw(plot: Plot, document: Mapping[str, Any], path: Path) -> None:
    """Draw ``plot`` from a results ``document`` into the PNG ``path`` (its folder is created)."""
    # The bench extra, imported here so that the rest of bench runs without it; callers check matplotlib_installed().
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    peers: list[str] = list(document.get("peers") or document["rounds"])
    figure = Figure(figsize=(4.2 * len(plot.panels), 4.6), layout="constrained")
    figure.suptitle(f"{plot.title}\n{_subtitle(document)}", fontsize=10)
    for axes, panel in zip(figure.subplots(1, len(plot.panels), squeeze=False)[0], plot.panels, strict=True):
        found = bars(document["rounds"], peers, panel.key)
        arrow = "↑ better" if panel.higher_is_better else "↓ better"
        axes.set_title(f"{panel.title} ({arrow})", fontsize=10)
        if not found:
            axes.text(0.5, 0.5, "no values", ha="center", va="center", transform=axes.transAxes)
            axes.set_xticks([])
            continue
        xs = range(len(found))
        medians = [bar.median for bar in found]
        axes.bar(
            xs,
            medians,
            yerr=[[bar.median - bar.low for bar in found], [bar.high - bar.median for bar in found]],
            capsize=4,
            color=[OUR_COLOUR if bar.peer in OURS else PEER_COLOUR for bar in found],
        )
        for x, bar in zip(xs, found, strict=True):  # the median above its whisker
            axes.annotate(
                _label(bar.median), (x, bar.high), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8
            )
        axes.set_xticks(list(xs), [bar.peer for bar in found], rotation=20, fontsize=9)
        axes.set_ylim(0, max(bar.high for bar in found) * 1.15)
        axes.grid(axis="y", alpha=0.3)
        axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}" if max(medians) >= 100 else "{x:g}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def write_plots(results: Path | None = None, images: Path | None = None) -> list[str]:
    """Draw every plot whose results file is in ``results`` (default :data:`RESULTS`) into ``images`` (default
    :data:`IMAGES`); returns one line per plot for the report (written, or why not)."""
    results = RESULTS if results is None else results
    images = IMAGES if images is None else images
    if not matplotlib_installed():
        return ["plots skipped: matplotlib is not installed (make bench installs it: pip install -e '.[bench]')"]
    lines = []
    for plot in PLOTS:
        source = results / f"{plot.name}.json"
        if not source.exists():
            lines.append(f"plot {plot.name}: no results ({source.name} not found)")
            continue
        target = images / f"{plot.name}.png"
        draw(plot, json.loads(source.read_text(encoding="utf-8")), target)
        lines.append(f"plot {plot.name}: {_shown(target)}")
    return lines


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
