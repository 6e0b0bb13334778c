"""The chat's widgets: message view, status bar, network-trace panel, transport and protocol selectors.

Everything that shows text from the network builds ``rich.text.Text`` objects from plain strings — never markup
strings — so a message such as ``[bold]x`` or ``[/]`` renders literally, and control characters are made visible
before they reach the terminal (a peer must not be able to send escape sequences to your screen).
"""

from __future__ import annotations

import bisect
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import OptionList, RichLog, Select, Static

from signalr.client import ConnectionState, TraceEvent, TransportChoice
from signalr.hub_protocol import HubProtocol
from signalr.json_protocol import JSON
from signalr.redact import redact_text, redact_url

from .names import BROADCAST_SENDER, SYSTEM_SENDER
from .protocol_choice import PROTOCOL_NAMES, carries, protocol_label, protocol_named, why_not

__all__ = [
    "MAX_CHAT_LINES",
    "MAX_SHOWN_CHARS",
    "MAX_TRACE_ROWS",
    "ChatLine",
    "ChatLog",
    "LineKind",
    "ProtocolSelector",
    "StatusBar",
    "StatusInfo",
    "TracePanel",
    "TransportSelector",
    "printable",
    "render_chat_line",
    "render_chat_row",
    "render_chat_rows",
    "render_trace_row",
]

MAX_CHAT_LINES = 5000
"""Chat lines kept in the view; older ones scroll out (bounded memory at any message rate)."""
MAX_TRACE_ROWS = 500
"""Trace rows kept; the panel shows the most recent ones."""
MAX_SHOWN_CHARS = 2000
"""Longest message text rendered; the rest is summarised (a 1 MB message must not freeze the view)."""
MAX_NAME_CHARS = 64
FLUSH_BUDGET_S = 0.005
"""Longest stretch of laying out chat lines per turn of the message loop (keeps key handling prompt)."""
FLUSH_INTERVAL_S = 0.05
"""Shortest time between two writes to the message view: in a busy room the view scrolls (and the screen repaints
it) at most 20 times a second, whatever the message rate; a line after a quiet spell is written at once."""


class LineKind(Enum):
    """How a chat line is shown: the sample's four kinds of lines plus local errors and notes."""

    OWN = "own"  # sent by this user: right-aligned, green, "(you)"
    OTHER = "other"  # sent by someone else: left-aligned
    SYSTEM = "system"  # sender _SYSTEM_: centred, dim (e.g. "alice JOINED")
    BROADCAST = "broadcast"  # sender _BROADCAST_: centred
    ERROR = "error"  # a local error (connection failure, rejected send): red
    NOTE = "note"  # a local explanation (e.g. why the gateway profile changes): centred, italic


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One line of the message view, before rendering."""

    kind: LineKind
    at: datetime
    sender: str
    text: str

    @classmethod
    def from_hub(cls, sender: str, text: str, own_name: str | None, at: datetime) -> ChatLine:
        """Classify a ``(name, message)`` pair the way the sample's page does (§5)."""
        if sender == SYSTEM_SENDER:
            kind = LineKind.SYSTEM
        elif sender == BROADCAST_SENDER:
            kind = LineKind.BROADCAST
        elif own_name is not None and sender == own_name:
            kind = LineKind.OWN
        else:
            kind = LineKind.OTHER
        return cls(kind, at, sender, text)


def printable(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` safe for the terminal: control characters shown as ``\\xNN``, long text cut at ``limit``.

    Newlines and tabs are kept (multi-line messages wrap in the view); everything else in Unicode category ``Cc``
    (ESC, BEL, CR, ...) is made visible so a peer cannot move the cursor or recolour the terminal.
    """
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    if text.isprintable():  # no control character (nor any other unprintable one): nothing to escape
        out = text
    else:
        out = "".join(c if c in "\n\t" or unicodedata.category(c) != "Cc" else f"\\x{ord(c):02x}" for c in text)
    if extra > 0:
        out += f"… ({extra} more characters)"
    return out


def render_chat_line(line: ChatLine) -> Text:
    """The line as shown: ``HH:MM:SS name: text``; own lines right-aligned with ``(you)``, system lines centred."""
    stamp = line.at.strftime("%H:%M:%S")
    sender = printable(line.sender, MAX_NAME_CHARS)
    text = printable(line.text)
    if line.kind is LineKind.OWN:
        return Text.assemble(
            (stamp, "dim"), " ", (f"{sender} (you)", "bold green"), ": ", (text, "green"), justify="right"
        )
    if line.kind is LineKind.OTHER:
        return Text.assemble((stamp, "dim"), " ", (sender, "bold cyan"), ": ", text, justify="left")
    if line.kind is LineKind.SYSTEM:
        return Text.assemble((stamp, "dim"), " ", (text, "dim italic"), justify="center")
    if line.kind is LineKind.BROADCAST:
        return Text.assemble((stamp, "dim"), " ", (text, "bold yellow"), justify="center")
    if line.kind is LineKind.ERROR:
        return Text.assemble((stamp, "dim"), " ", (text, "bold red"), justify="left")
    return Text.assemble((stamp, "dim"), " ", (text, "italic magenta"), justify="center")


def render_chat_row(line: ChatLine, width: int, console: Console) -> Strip | None:
    """The line as the one row Rich would lay it out in at ``width`` cells, without Rich's wrapping machinery;
    ``None`` when it takes more than a row (or has a tab, or trailing spaces Rich would strip): then let Rich do it.

    Most chat lines fit in a row: this draws them for a fraction of a full render, with the same segments.
    """
    text = render_chat_line(line)
    plain = text.plain
    length = text.cell_len
    if length > width or "\n" in plain or "\t" in plain:
        return None
    spare = width - length
    if text.justify == "left":
        text.pad_right(spare)
    elif plain[-1:].isspace():
        return None
    elif text.justify == "right":
        text.pad_left(spare)
    else:  # centred, as rich.containers.Lines.justify does it
        text.pad_left(spare // 2)
        text.pad_right(spare - spare // 2)
    return Strip(list(text.render(console)), width)


def render_chat_rows(line: ChatLine, width: int, console: Console) -> list[Strip]:
    """The line laid out at ``width`` cells, one strip per row: as :func:`render_chat_row` when it fits in a row, else
    wrapped by Rich (tabs expanded)."""
    row = render_chat_row(line, width, console)
    if row is not None:
        return [row]
    text = render_chat_line(line)
    text.expand_tabs()
    segments = console.render(text, console.options.update_width(width))
    return [Strip(row) for row in Segment.split_lines(segments)] or [Strip.blank(width)]


class ChatLog(ScrollView, can_focus=True):
    """The message view: bounded, laid out in time-sliced batches, drawn lazily, laid out again when its width changes.

    Call :meth:`add` for every line. Lines are laid out on later turns of the widget's message loop, at most
    :data:`FLUSH_BUDGET_S` of work per turn and at most one batch every :data:`FLUSH_INTERVAL_S`, so a burst of
    thousands of messages never freezes the keyboard: keys are handled between slices, and a burst costs one scroll
    (and one repaint of the view) per slice, not one per line.

    Only the lines on screen are drawn (a few recent ones are kept drawn): the history holds the :class:`ChatLine`
    records and how many rows each takes, not rendered rows, so a busy room's scrollback costs little memory and little
    work for the garbage collector.

    A click on a line posts :class:`ChatLog.Selected` with the :class:`ChatLine` drawn there (the Flow view replays
    that message's journey).
    """

    class Selected(Message):
        """The user clicked ``line`` in the message view."""

        def __init__(self, line: ChatLine) -> None:
            super().__init__()
            self.line = line

    DEFAULT_CSS = """
    ChatLog {
        background: $surface;
        color: $foreground;
        overflow-y: scroll;
        overflow-x: hidden;
        scrollbar-gutter: stable;
        &:focus {
            background-tint: $foreground 5%;
        }
    }
    """

    MIN_WIDTH = 20
    """Narrowest layout: a line is never laid out narrower than this, however narrow the view."""
    DRAWN_LINES = 128
    """Laid-out lines whose rows are kept drawn (the newest, usually the ones on screen)."""

    def __init__(self, max_lines: int = MAX_CHAT_LINES, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        """Most lines (and rows) held; older ones scroll out."""
        self.auto_scroll = True
        """Scroll to the newest line when lines are added."""
        self.records: deque[ChatLine] = deque(maxlen=max_lines)
        """The lines held by the view, oldest first, laid out or not yet."""
        self._pending: deque[ChatLine] = deque(maxlen=max_lines)
        self._flush_scheduled = False
        self._flushed_at = 0.0
        # The laid-out lines, oldest first, and the absolute row each ends before; rows are numbered from the first row
        # ever laid out at this width, so dropping old lines renumbers nothing.
        self._laid: deque[ChatLine] = deque()
        self._ends: deque[int] = deque()
        self._first_row = 0
        self._dropped = 0  # laid-out lines dropped so far: the absolute number of the first one held
        self._width = 0
        self._drawn: LRUCache[int, list[Strip]] = LRUCache(self.DRAWN_LINES)
        self._row_style: Style | None = None

    # --- the lines ----------------------------------------------------------------------------------------------

    def add(self, line: ChatLine) -> None:
        """Queue ``line`` for display; it appears within a few frames, after the current burst was handled."""
        self.records.append(line)
        self._pending.append(line)  # bounded: lines that would scroll out of the history at once are never laid out
        self._schedule_flush()

    def clear_messages(self) -> None:
        """Remove every line from the view."""
        self.records.clear()
        self._pending.clear()
        self._reset(self._width)
        self.refresh()

    @property
    def backlog(self) -> int:
        """Lines added but not laid out yet."""
        return len(self._pending)

    @property
    def row_count(self) -> int:
        """Rows the laid-out lines take at the current width."""
        return self._ends[-1] - self._first_row if self._ends else 0

    @property
    def lines(self) -> list[Strip]:
        """Every row held, drawn (what a reader sees when scrolling through the whole view)."""
        rows: list[Strip] = []
        for index in range(len(self._laid)):
            rows.extend(self._rows_of(index))
        return rows

    @property
    def plain_lines(self) -> list[str]:
        """The rows as plain text (what a reader of the screen sees, scrolled or not)."""
        return [strip.text for strip in self.lines]

    def line_at(self, row: int) -> ChatLine | None:
        """The chat line drawn on content row ``row`` (0 = the first row held), ``None`` past the end."""
        found = self._find(row)
        return self._laid[found[0]] if found is not None else None

    def _find(self, row: int) -> tuple[int, int] | None:
        """The laid-out line drawn on content row ``row`` and the row within it."""
        if not 0 <= row < self.row_count:
            return None
        absolute = self._first_row + row
        index = bisect.bisect_right(self._ends, absolute)
        start = self._ends[index - 1] if index else self._first_row
        return index, absolute - start

    def _rows_of(self, index: int) -> list[Strip]:
        key = self._dropped + index
        rows = self._drawn.get(key)
        if rows is None:
            rows = render_chat_rows(self._laid[index], self._width, self.app.console)
            self._drawn[key] = rows
        return rows

    # --- laying out -----------------------------------------------------------------------------------------------

    def _reset(self, width: int) -> None:
        """Forget the layout (every held line is laid out again at ``width`` by the next flush)."""
        self._laid.clear()
        self._ends.clear()
        self._first_row = 0
        self._dropped = 0
        self._width = width
        self._drawn.clear()
        self.virtual_size = Size(width, 0)

    def _layout_width(self) -> int:
        """The width lines are laid out at: the view's content width (0 while it is not known yet)."""
        width = self.scrollable_content_region.width
        return max(width, self.MIN_WIDTH) if width else 0

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        wait = self._flushed_at + FLUSH_INTERVAL_S - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self._flush)
        else:
            self.call_later(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._flushed_at = time.monotonic()
        width = self._layout_width()
        if not width:
            return  # laid out once the view has a size (on_resize)
        if width != self._width:
            # Centred and right-aligned lines were laid out for the old width: lay out the held lines again.
            self._reset(width)
            self._pending = deque(self.records, maxlen=self.records.maxlen)
        deadline = self._flushed_at + FLUSH_BUDGET_S
        laid = 0
        end = self._ends[-1] if self._ends else self._first_row
        while self._pending:
            self._laid.append(self._pending.popleft())
            end += len(self._rows_of(len(self._laid) - 1))
            self._ends.append(end)
            laid += 1
            if laid % 16 == 0 and time.monotonic() > deadline:
                break
        while len(self._laid) > self.max_lines or self.row_count > self.max_lines:
            self._laid.popleft()
            self._first_row = self._ends.popleft()
            self._dropped += 1
        if laid:
            self.virtual_size = Size(width, self.row_count)
            self.refresh()
            if self.auto_scroll:
                self.scroll_end(animate=False, immediate=False, x_axis=False)
        if self._pending:  # the rest on the next turn, after keys and other messages had theirs
            self._flush_scheduled = True
            self.call_later(self._flush)

    def on_resize(self, event: events.Resize) -> None:
        if self._layout_width() != self._width:
            self._schedule_flush()

    # --- drawing --------------------------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn.clear()

    def render_lines(self, crop: Region) -> list[Strip]:
        # The view's style once per repaint, not once per row (working it out from the CSS is not free).
        self._row_style = self.rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._row_style = None

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        style = self._row_style or self.rich_style
        found = self._find(scroll_y + y)
        if found is None:
            return Strip.blank(width, style)
        index, row = found
        rows = self._rows_of(index)
        line = rows[row] if row < len(rows) else Strip.blank(width, style)
        if scroll_x or line.cell_length != width:
            # (Only when it changes the row: a strip cropped to itself caches itself, a cycle only a full garbage
            # collection frees.)
            line = line.crop_extend(scroll_x, scroll_x + width, style)
        return line.apply_style(style)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        line = self.line_at(offset.y + round(self.scroll_offset.y))
        if line is not None:
            self.post_message(self.Selected(line))


@dataclass(frozen=True)
class StatusInfo:
    """What the status bar shows; ``host_label`` says whose host ``host`` is (e.g. ``via gateway``)."""

    state: ConnectionState = ConnectionState.DISCONNECTED
    transport: str | None = None
    connection_id: str | None = None
    host: str | None = None
    host_label: str = ""
    rtt_ms: float | None = None
    profile: str | None = None
    wanted: TransportChoice | None = None
    mode: str | None = None
    """The service mode behind the connection (``default`` or ``serverless``), when known."""
    protocol: str | None = None
    """The hub protocol's display name (``JSON``, ``MessagePack``): the one in use, or the one wanted."""


_STATE_STYLES = {
    ConnectionState.CONNECTED: "bold green",
    ConnectionState.CONNECTING: "bold yellow",
    ConnectionState.RECONNECTING: "bold yellow",
    ConnectionState.DISCONNECTING: "yellow",
    ConnectionState.DISCONNECTED: "bold red",
}


class StatusBar(Static):
    """One line: state, transport in use and hub protocol, connection id, host connected to, round-trip time, APIM
    profile, and the service mode.

    The round trip is the chat's own (a sent message coming back as broadcast or echo), else the client's
    ``last_rtt_ms``; ``—`` until one is known.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.info: StatusInfo | None = None

    def show(self, info: StatusInfo) -> None:
        """Display ``info`` (cheap when nothing changed)."""
        if info == self.info:
            return
        self.info = info
        self.update(self.render_info(info))

    @staticmethod
    def render_info(info: StatusInfo) -> Text:
        sep = (" │ ", "dim")
        transport = info.transport or (f"{info.wanted.label} (wanted)" if info.wanted else "—")
        parts: list[tuple[str, str] | str] = [
            ("● " + info.state.name.capitalize(), _STATE_STYLES.get(info.state, "")),
            sep,
            transport,
        ]
        if info.protocol:
            parts += [(" · ", "dim"), (info.protocol, "bold")]
        parts += [
            sep,
            ("→ ", "dim"),
            printable(info.host or "—", 80),
        ]
        if info.host and info.host_label:
            parts += [" ", (info.host_label, "bold magenta")]
        parts += [sep, ("rtt ", "dim"), f"{info.rtt_ms:.0f} ms" if info.rtt_ms is not None else "—"]
        if info.profile:
            parts += [sep, ("APIM ", "dim"), info.profile]
        if info.mode:
            parts += [sep, ("mode ", "dim"), info.mode.capitalize()]
        # The connection id comes last: on a narrow terminal it is the part to lose.
        parts += [sep, ("id ", "dim"), printable(info.connection_id or "—", 40)]
        return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")


_HOST_WIDTH = 24
_TRACE_HEADER = (
    f"{'time':<12} {'kind':<9} {'method':<6} {'status':>6} {'ms':>7} {'bytes':>7} "
    f"{'host':<{_HOST_WIDTH}} detail  →  url"
)


def _cell(text: str, width: int) -> str:
    """``text`` printable and exactly ``width`` cells: padded, or cut in the middle (a host keeps its port)."""
    text = printable(text, 200)
    if len(text) > width:
        head = (width - 1) // 2
        text = text[:head] + "…" + text[len(text) - (width - 1 - head) :]
    return f"{text:<{width}}"


def render_trace_row(event: TraceEvent) -> Text:
    """One trace row: time, kind, method, status, duration, bytes, host, detail, URL — secrets redacted again."""
    stamp = datetime.fromtimestamp(event.at).strftime("%H:%M:%S.%f")[:12]
    status = "" if event.status is None else str(event.status)
    duration = "" if event.duration_ms is None else f"{event.duration_ms:.1f}"
    size = "" if event.bytes is None else str(event.bytes)
    # The detail is the most telling column ("redirected to …", "2 records: …"): never cut it to a column width;
    # the URL follows it and is read by scrolling sideways.
    detail = printable(redact_text(event.detail), 300)
    failed = event.kind == "error" or (event.status is not None and event.status >= 400 and event.method != "WS")
    style = "red" if failed else {"redirect": "magenta", "negotiate": "cyan", "connect": "green"}.get(event.kind, "")
    return Text.assemble(
        (f"{stamp:<12} ", "dim"),
        (_cell(event.kind, 9) + " ", style or "bold"),
        _cell(event.method, 6) + " ",
        (f"{status:>6} ", "red" if failed else ""),
        f"{duration:>7} ",
        f"{size:>7} ",
        (_cell(event.host, _HOST_WIDTH) + " ", "bold"),
        (detail, style),
        ("  →  " if event.url else "", "dim"),
        (printable(redact_url(event.url), 2000), "dim"),
        no_wrap=True,
    )


class TracePanel(Vertical):
    """The network trace (F12): a column header and the last :data:`MAX_TRACE_ROWS` trace events.

    Events are always recorded; they are rendered only while the panel is shown, so a hidden panel costs nothing.
    ``clean`` makes an event fit to be shown (the app removes its own secrets): it is applied when a row is drawn, so
    it costs nothing while the panel is hidden; :attr:`events` holds the events as recorded.
    """

    def __init__(
        self,
        max_rows: int = MAX_TRACE_ROWS,
        *,
        clean: Callable[[TraceEvent], TraceEvent] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.events: deque[TraceEvent] = deque(maxlen=max_rows)
        self._max_rows = max_rows
        self._clean = clean

    def compose(self) -> ComposeResult:
        yield Static(Text(_TRACE_HEADER, style="bold underline", no_wrap=True), id="trace-header")
        yield RichLog(max_lines=self._max_rows, wrap=False, markup=False, highlight=False, id="trace-log")

    @property
    def log_view(self) -> RichLog:
        return self.query_one("#trace-log", RichLog)

    def record(self, event: TraceEvent) -> None:
        """Keep ``event``; show it at once if the panel is visible."""
        self.events.append(event)
        if self.display:
            self.log_view.write(self._row(event))

    def _row(self, event: TraceEvent) -> Text:
        return render_trace_row(self._clean(event) if self._clean is not None else event)

    def redraw(self) -> None:
        """Draw every kept event again (call after making the panel visible)."""
        view = self.log_view
        view.clear()
        for event in self.events:
            view.write(self._row(event), scroll_end=False)
        view.scroll_end(animate=False, immediate=False)

    @property
    def plain_rows(self) -> list[str]:
        """The rendered rows as plain text."""
        return [strip.text for strip in self.log_view.lines]


# The selector is 28 cells wide (app.tcss); after its border, padding and arrow, "ServerSentEvents → LongPolling"
# (30 cells) wrapped onto the bottom border and was cut in the open list. The selector says SSE there; notes, the
# help and the command palette keep the full label.
_SELECTOR_LABELS = {choice: choice.label for choice in TransportChoice} | {
    TransportChoice.SSE_THEN_LONG_POLLING: "SSE → LongPolling"
}


# A transport the current hub protocol cannot use stays listed, disabled, and says which protocols it carries, e.g.
# "SSE (JSON only)": short enough for the open list at the selector's width.
_SHORT_LABELS = {TransportChoice.SERVER_SENT_EVENTS: "SSE", TransportChoice.SSE_THEN_LONG_POLLING: "SSE → LP"}


def _unusable_label(choice: TransportChoice) -> str:
    carried = [protocol_label(p) for p in map(protocol_named, PROTOCOL_NAMES) if carries(choice, p)]
    short = _SHORT_LABELS.get(choice, _SELECTOR_LABELS[choice])
    return f"{short} ({' or '.join(carried)} only)" if carried else f"{short} (unavailable)"


class TransportSelector(Select[TransportChoice]):
    """Pick the transport; a change posts ``Select.Changed`` and the app reconnects with it.

    Call :meth:`set_protocol` when the hub protocol changes: a transport that cannot carry it (ServerSentEvents for
    MessagePack) is disabled in the list, and the tooltip says why.
    """

    def __init__(self, value: TransportChoice, protocol: HubProtocol = JSON, *, id: str | None = None) -> None:
        super().__init__(
            [(_SELECTOR_LABELS[choice], choice) for choice in TransportChoice],
            value=value,
            allow_blank=False,
            prompt="Transport",
            id=id,
        )
        self.protocol = protocol

    def on_mount(self) -> None:
        # Select fills its list in its own mount handler, which runs after this one.
        self.call_later(self._show_protocol)

    def set_protocol(self, protocol: HubProtocol) -> None:
        """Offer only the transports that can carry ``protocol``; the others stay listed, disabled."""
        self.protocol = protocol
        if self.is_mounted:
            self._show_protocol()

    def _show_protocol(self) -> None:
        overlay = self.query_one(OptionList)
        reasons: list[str] = []
        for index, choice in enumerate(TransportChoice):
            usable = carries(choice, self.protocol)
            label = _SELECTOR_LABELS[choice] if usable else _unusable_label(choice)
            overlay.replace_option_prompt_at_index(index, label)
            if usable:
                overlay.enable_option_at_index(index)
            else:
                overlay.disable_option_at_index(index)
                reasons.append(why_not(choice, self.protocol) or "")
        self.tooltip = "\n".join(reasons) if reasons else None


class ProtocolSelector(Select[str]):
    """Pick the hub protocol by handshake name (``json``, ``messagepack``); a change posts ``Select.Changed``."""

    TOOLTIP = "The hub protocol: JSON (text) or MessagePack (binary, not over ServerSentEvents)"

    def __init__(self, value: HubProtocol, *, id: str | None = None) -> None:
        super().__init__(
            [(protocol_label(protocol_named(name)), name) for name in PROTOCOL_NAMES],
            value=value.name,
            allow_blank=False,
            prompt="Protocol",
            id=id,
        )
        self.tooltip = self.TOOLTIP
