"""Screen snapshot: the chat's layout at a fixed size, name and clock, compared with a stored SVG.

The stored file is a real SVG screenshot (``App.export_screenshot``), viewable in a browser. The comparison reads the
character grid back out of both SVGs, so colours and theme details may change without breaking the test, while any
change of text or layout fails it. To accept a deliberate change, run with ``CHAT_UPDATE_SNAPSHOTS=1`` and review
the new file.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable
from pathlib import Path

from chat.app import ChatApp
from signalr.client import TransportChoice
from tests.support.tui import wait_until

from .conftest import FIXED_TIME
from .fake_client import FakeHub

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (110, 34)
_TEXT = re.compile(
    r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="([\d.]+)" '
    r'clip-path="url\(#[\w-]+-line-(\d+)\)">(.*?)</text>'
)


def screen_text(svg: str) -> list[str]:
    """The character grid of a Rich SVG screenshot, one string per terminal line, trailing spaces removed."""
    rows: dict[int, dict[int, str]] = {}
    for x, length, line, content in _TEXT.findall(svg):
        text = html.unescape(content).replace("\xa0", " ")
        char_width = float(length) / len(text)
        column = round(float(x) / char_width)
        cells = rows.setdefault(int(line), {})
        for offset, char in enumerate(text):
            cells[column + offset] = char
    if not rows:
        return []
    out = []
    for number in range(max(rows) + 1):
        cells = rows.get(number, {})
        width = max(cells) + 1 if cells else 0
        out.append("".join(cells.get(i, " ") for i in range(width)).rstrip())
    return out


def normalised(lines: list[str]) -> list[str]:
    """Lines with the measured round trip replaced by ``N`` (a timing, not layout)."""
    return [re.sub(r"rtt +\d+ ms", "rtt N ms", line) for line in lines]


def check_snapshot(name: str, svg: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("CHAT_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(svg)
        if os.environ.get("CHAT_UPDATE_SNAPSHOTS") != "1":
            raise AssertionError(f"snapshot {name} did not exist; written now — review it and run again")
    expected = normalised(screen_text(path.read_text()))
    actual = normalised(screen_text(svg))
    assert expected, f"no text found in the stored snapshot {name}"
    if actual != expected:
        diff = [
            f"line {i}:\n  expected {e!r}\n  actual   {a!r}"
            for i, (e, a) in enumerate(zip(expected, actual, strict=False))
            if e != a
        ]
        raise AssertionError(
            f"screen differs from {name} ({len(actual)} vs {len(expected)} lines):\n" + "\n".join(diff)
        )


def test_screen_text_reads_an_svg_back() -> None:
    svg = (
        '<text class="t-r1" x="0" y="20" textLength="24.4" clip-path="url(#t-line-0)">ab</text>'
        '<text class="t-r2" x="48.8" y="20" textLength="12.2" clip-path="url(#t-line-0)">&lt;</text>'
        '<text class="t-r1" x="12.2" y="44" textLength="36.6" clip-path="url(#t-line-1)">x&#160;y</text>'
    )
    assert screen_text(svg) == ["ab  <", " x y"]


async def test_chat_screen_matches_the_stored_snapshot(make_app: Callable[..., ChatApp], hub: FakeHub) -> None:
    hub.clock = FIXED_TIME.timestamp
    app = make_app(gateway_profile="websocket", transport=TransportChoice.WEBSOCKETS)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: any("alice JOINED" in line for line in app.chat_log.plain_lines))
        hub.push("broadcastMessage", "_SYSTEM_", "bob JOINED")
        hub.push("broadcastMessage", "bob", "hi alice — [bold]not bold[/]")
        await pilot.press(*"hello bob", "enter")
        await wait_until(pilot, lambda: any("hello bob" in line for line in app.chat_log.plain_lines))
        await pilot.press(*"ping", "ctrl+e")
        await wait_until(pilot, lambda: any("echo from server" in line for line in app.chat_log.plain_lines))
        await pilot.press("f12")
        await wait_until(pilot, lambda: len(app.trace_panel.plain_rows) >= 7)
        await pilot.pause(0.2)
        check_snapshot("chat_screen.svg", app.export_screenshot(title="chat"))
