"""The transport selector at the terminal widths people use: every choice fits on one line, closed and open.

Read from the rendered screen (an SVG screenshot's character grid), the way a user sees it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chat.app import ChatApp
from chat.widgets import TransportSelector
from signalr.client import TransportChoice
from tests.support.tui import wait_until

from .fake_client import FakeHub
from .test_snapshot import screen_text

# What the selector shows for each choice: the full name, except SSE with its fallback, which names SSE by its
# common short form so that it fits the selector at 80 columns.
SHOWN = {
    TransportChoice.WEBSOCKETS: "WebSockets",
    TransportChoice.SERVER_SENT_EVENTS: "ServerSentEvents",
    TransportChoice.LONG_POLLING: "LongPolling",
    TransportChoice.SSE_THEN_LONG_POLLING: "SSE → LongPolling",
}


def cells(app: ChatApp, x: int, y: int, width: int, height: int) -> list[str]:
    """The screen's characters in a rectangle, one string per row (padded, so columns line up)."""
    lines = screen_text(app.export_screenshot())
    return [
        lines[row].ljust(x + width)[x : x + width] if row < len(lines) else " " * width for row in range(y, y + height)
    ]


def inner(row: str) -> str:
    """A row's words without the border characters around them, single-spaced."""
    return " ".join(row.strip().strip("▊▎▌▐│┃").split())


@pytest.mark.parametrize("width", [80, 130])
@pytest.mark.parametrize("choice", list(TransportChoice), ids=[c.value for c in TransportChoice])
async def test_the_chosen_transport_fits_on_one_line_inside_the_border(
    make_app: Callable[..., ChatApp], hub: FakeHub, width: int, choice: TransportChoice
) -> None:
    app = make_app(transport=choice)
    async with app.run_test(size=(width, 30)) as pilot:
        await wait_until(pilot, lambda: any("alice JOINED" in line for line in app.chat_log.plain_lines))
        selector = app.query_one("#transport", TransportSelector)
        region = selector.region
        assert region.height == 3
        top, middle, bottom = cells(app, region.x, region.y, region.width, region.height)
        assert inner(middle) == f"{SHOWN[choice]} ▼", (top, middle, bottom)
        # Nothing of the label spills onto the border rows (a wrapped "LongPolling" would be on the bottom one).
        assert not any(c.isalnum() for c in top + bottom), (top, middle, bottom)


@pytest.mark.parametrize("width", [80, 130])
async def test_every_option_of_the_open_list_fits_on_one_line(
    make_app: Callable[..., ChatApp], hub: FakeHub, width: int
) -> None:
    app = make_app(transport=TransportChoice.SSE_THEN_LONG_POLLING)
    async with app.run_test(size=(width, 30)) as pilot:
        await wait_until(pilot, lambda: any("alice JOINED" in line for line in app.chat_log.plain_lines))
        selector = app.query_one("#transport", TransportSelector)
        selector.focus()
        await pilot.press("enter")
        overlay = selector.query_one("SelectOverlay")  # the open list, by its type name
        await wait_until(pilot, lambda: overlay.display and overlay.region.height > 0)
        await pilot.pause()
        region = overlay.region
        rows = cells(app, region.x, region.y, region.width, region.height)
        # Between the top and bottom border rows: one row per option, each with its whole text.
        assert [inner(row) for row in rows[1:-1]] == list(SHOWN.values()), rows
