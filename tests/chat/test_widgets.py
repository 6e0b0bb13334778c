"""Rendering of chat lines, status and trace rows: literal text, no terminal control, no secrets."""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime

import pytest
from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from textual.strip import Strip

from chat.widgets import (
    MAX_SHOWN_CHARS,
    ChatLine,
    LineKind,
    StatusBar,
    StatusInfo,
    printable,
    render_chat_line,
    render_chat_row,
    render_chat_rows,
    render_trace_row,
)
from signalr.client import ConnectionState, TraceEvent, TransportChoice

AT = datetime(2024, 5, 17, 9, 5, 7)


def plain(text: Text, width: int = 60) -> str:
    """``text`` laid out at ``width`` columns, as plain lines (what the terminal would show)."""
    console = Console(width=width, color_system=None, file=io.StringIO())
    lines = console.render_lines(text, console.options, pad=False)
    return "\n".join("".join(segment.text for segment in line) for line in lines) + "\n"


def test_line_kinds_follow_the_sample() -> None:
    assert ChatLine.from_hub("_SYSTEM_", "bob JOINED", "alice", AT).kind is LineKind.SYSTEM
    assert ChatLine.from_hub("_BROADCAST_", "x", "alice", AT).kind is LineKind.BROADCAST
    assert ChatLine.from_hub("alice", "x", "alice", AT).kind is LineKind.OWN
    assert ChatLine.from_hub("bob", "x", "alice", AT).kind is LineKind.OTHER
    assert ChatLine.from_hub("alice", "x", None, AT).kind is LineKind.OTHER


ONE_ROW_TEXTS = ["hi", "日本語のテキスト", "🙂 emoji", "[bold]x[/]", "  leading spaces", "x" * 40]


def rich_rows(line: ChatLine, width: int, console: Console) -> list[list[Segment]]:
    """The line laid out by Rich at ``width`` cells (as the message view did with every line before)."""
    return list(Segment.split_lines(console.render(render_chat_line(line), console.options.update_width(width))))


@pytest.mark.parametrize("kind", list(LineKind))
@pytest.mark.parametrize("width", [20, 60, 118])
def test_a_line_that_fits_is_drawn_as_rich_lays_it_out(kind: LineKind, width: int) -> None:
    console = Console(width=200, color_system="truecolor", file=io.StringIO())
    exact = "y" * max(1, width - len("09:05:07 bob (you): "))  # fills the row to the last cell (own lines)
    for message in [*ONE_ROW_TEXTS, exact]:
        line = ChatLine(kind, AT, "bob", message)
        row = render_chat_row(line, width, console)
        expected = rich_rows(line, width, console)
        if row is None:
            assert len(expected) > 1, message  # only a line Rich wraps is left to Rich
            continue
        assert len(expected) == 1 and list(row) == expected[0], message
        assert row.cell_length == width


def test_lines_that_wrap_or_hold_tabs_are_laid_out_by_rich() -> None:
    console = Console(width=200, color_system="truecolor", file=io.StringIO())
    for message in ["word " * 30, "two\nlines", "a\ttab"]:
        line = ChatLine(LineKind.OTHER, AT, "bob", message)
        assert render_chat_row(line, 40, console) is None
        rows = render_chat_rows(line, 40, console)
        assert len(rows) >= 2 or "\t" in message
        assert " ".join(Strip(row).text for row in rows).split() == render_chat_line(line).plain.expandtabs().split()
    centred = ChatLine(LineKind.SYSTEM, AT, "_SYSTEM_", "trailing   ")
    assert render_chat_row(centred, 60, console) is None  # Rich strips the spaces before centring: it does it
    assert [list(r) for r in render_chat_rows(centred, 60, console)] == rich_rows(centred, 60, console)


def test_own_line_is_right_aligned_with_you_and_others_left() -> None:
    own = plain(render_chat_line(ChatLine(LineKind.OWN, AT, "alice", "hi")))
    other = plain(render_chat_line(ChatLine(LineKind.OTHER, AT, "bob", "yo")))
    system = plain(render_chat_line(ChatLine(LineKind.SYSTEM, AT, "_SYSTEM_", "bob JOINED")))
    assert own.rstrip("\n").endswith("09:05:07 alice (you): hi")
    assert own.startswith(" ")
    assert other.startswith("09:05:07 bob: yo")
    line = system.rstrip("\n")
    assert line.strip() == "09:05:07 bob JOINED"
    left, right = len(line) - len(line.lstrip()), 60 - len(line.rstrip())
    assert abs(left - right) <= 1  # centred


@pytest.mark.parametrize("hostile", ["[bold]x", "[/]", "[red]red[/red]", "[link=http://e.vil]click[/link]", "[[", "]"])
def test_markup_in_messages_renders_literally(hostile: str) -> None:
    for kind in LineKind:
        text = render_chat_line(ChatLine(kind, AT, hostile, hostile))
        assert hostile in text.plain
        assert all(not span.style or "link" not in str(span.style) for span in text.spans)
        plain(text)  # rendering must not raise


def test_control_characters_are_made_visible() -> None:
    shown = printable("a\x1b[31mred\x07\rb\x00\nnext\tcol")
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown and "\x00" not in shown
    assert shown == "a\\x1b[31mred\\x07\\x0db\\x00\nnext\tcol"


def test_long_messages_are_cut_and_summarised() -> None:
    shown = printable("x" * (MAX_SHOWN_CHARS + 5000))
    assert shown.startswith("x" * MAX_SHOWN_CHARS)
    assert shown.endswith("… (5000 more characters)")


def test_status_bar_shows_state_transport_id_host_rtt_profile() -> None:
    info = StatusInfo(
        state=ConnectionState.CONNECTED,
        transport="LongPolling",
        connection_id="abc",
        host="127.0.0.1:8080",
        host_label="via gateway",
        rtt_ms=3.4,
        profile="sse-lp",
    )
    text = StatusBar.render_info(info).plain
    for part in ("Connected", "LongPolling", "id abc", "127.0.0.1:8080 via gateway", "rtt 3 ms", "APIM sse-lp"):
        assert part in text
    waiting = StatusBar.render_info(StatusInfo(wanted=TransportChoice.SERVER_SENT_EVENTS)).plain
    assert "Disconnected" in waiting and "ServerSentEvents (wanted)" in waiting


def test_trace_row_has_every_column_and_redacts_again() -> None:
    event = TraceEvent(
        kind="negotiate",
        method="POST",
        url="http://127.0.0.1:8080/client/negotiate?hub=chat&access_token=eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln",
        host="127.0.0.1:8080",
        status=401,
        duration_ms=12.25,
        bytes=143,
        detail="Bearer eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln rejected",
        at=AT.timestamp(),
    )
    row = render_trace_row(event).plain
    for part in ("09:05:07.000", "negotiate", "POST", "401", "12.2", "143", "127.0.0.1:8080", "access_token=***"):
        assert part in row
    assert "eyJ" not in row


def test_trace_row_keeps_columns_for_long_hosts_and_shows_full_detail() -> None:
    long_detail = "redirected to https://apim1.azure-api.net/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1"
    event = TraceEvent(
        "redirect", "", "https://apim1.azure-api.net/client/?hub=chat", "averylongresourcename.service.signalr.net:443",
        None, None, None, long_detail, AT.timestamp(),
    )  # fmt: skip
    row = render_trace_row(event).plain
    short = render_trace_row(dataclasses.replace(event, host="h:1")).plain
    assert row.index(long_detail) == short.index(long_detail)  # the detail column starts at the same place
    assert "…" in row and ":443 " in row  # a cut host keeps its port
    assert "→  https://apim1.azure-api.net/client/?hub=chat" in row
