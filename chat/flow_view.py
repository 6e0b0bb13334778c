"""The Flow view (F11): one chat message's journey as a text sequence diagram.

Five lifelines — Client (this chat), App server, APIM, Service, Other clients — and one row per hop: the arrow between
two lifelines, then the hop's label, status and latency. The lifelines narrow on a small terminal (80 columns) so the
labels keep their room. Above the diagram, what a learner compares between runs: the service (SignalR or Web PubSub),
how the service reaches the app server (Default mode's server connection, Serverless mode's upstream POST, Web
PubSub's event handler POST) and the transport through APIM (WebSockets, ServerSentEvents, LongPolling).

Everything here is built from plain strings into ``rich.text.Text`` (never markup), and every label passes through
:func:`chat.widgets.printable`, so neither a peer's message nor a hop's label can reach the terminal as escape codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from flow.hops import Hop, Lifeline

from .widgets import printable

__all__ = [
    "LIFELINES",
    "OUTSIDE_THE_DEMO",
    "FlowContext",
    "FlowPanel",
    "Layout",
    "diagram_order",
    "journey_facts",
    "layout_for",
    "message_span_ms",
    "origin",
    "render_diagram",
    "render_header",
    "render_hop",
]

LIFELINES: tuple[Lifeline, ...] = (
    Lifeline.CLIENT,
    Lifeline.APP,
    Lifeline.APIM,
    Lifeline.SERVICE,
    Lifeline.OTHERS,
)
"""The five lifelines, left to right."""

OUTSIDE_THE_DEMO = "Server hops need the local stack (chat-demo): a real Azure service and APIM do not report them."
"""What the view says when the chat has no flow stream (a real Azure service): only the client's own hops show."""

_ROLE_STYLES = {"client": "cyan", "app": "green", "apim": "magenta", "service": "yellow"}
_REPORTERS = {"client": "you", "app": "app", "apim": "apim", "service": "svc"}
"""Who reported a hop, in the wide view's ``by`` column (the arrow's colour says it at any width)."""
_BY_WIDTH = 4
_STATUS_WIDTH = 4
_TIME_WIDTH = 7


@dataclass(frozen=True)
class Layout:
    """How wide each lifeline's lane is and what its header says, for one width of the view."""

    lane: int
    names: tuple[str, ...]
    offsets: bool
    """Whether each row also shows the time since the message set out (``+12.3``) and who reported the hop."""

    @property
    def lanes_width(self) -> int:
        """The lanes' cells: up to the last lifeline, and room for the last name past it."""
        return self.center(LIFELINES[-1]) + 1 + max(3, (len(self.names[-1]) + 1) // 2)

    def center(self, lifeline: Lifeline) -> int:
        """The column of ``lifeline``'s vertical line inside the lanes."""
        return LIFELINES.index(lifeline) * self.lane + (self.lane - 1) // 2


_NARROW = Layout(5, ("You", "App", "APIM", "Svc", "Others"), offsets=False)
_MEDIUM = Layout(8, ("You", "App", "APIM", "Service", "Others"), offsets=False)
_WIDE = Layout(10, ("Client", "App server", "APIM", "Service", "Others"), offsets=True)
_LABEL_LINES = 3
"""A label longer than its column wraps onto at most this many rows (the last one cut with ``…``)."""


def layout_for(width: int) -> Layout:
    """The layout for a view ``width`` cells wide: short lifeline names under 100 cells, full ones from 115."""
    if width >= 115:
        return _WIDE
    if width >= 96:
        return _MEDIUM
    return _NARROW


def _label_width(layout: Layout, width: int) -> int:
    fixed = layout.lanes_width + 1 + 1 + _STATUS_WIDTH + 1 + _TIME_WIDTH
    if layout.offsets:
        fixed += _TIME_WIDTH + 1 + _BY_WIDTH + 1
    return max(12, width - fixed)


def _split_point(word: str, room: int) -> int:
    """Where to cut ``word`` so that its head fits in ``room`` cells: after the last ``/``, ``?``, ``&`` or ``=`` that
    allows it (a URL path breaks between segments), else 0."""
    cut = max(word.rfind(mark, 0, room) for mark in "/?&=")
    return cut + 1 if cut > 0 else 0


def _wrap(text: str, width: int, lines: int = _LABEL_LINES) -> list[str]:
    """``text`` printable, in rows of at most ``width`` cells, at most ``lines`` rows; words are kept whole when they
    fit, and a long one (a URL) breaks after a ``/``; the last row ends with ``…`` when text was left out."""
    rows: list[str] = []
    current = ""
    for word in printable(" ".join(text.split()), 400).split(" "):
        while word:
            room = width - len(current) - (1 if current else 0)
            if len(word) <= room:
                current = f"{current} {word}" if current else word
                break
            cut = _split_point(word, room) if len(word) > width // 2 else 0
            if cut:
                current = f"{current} {word[:cut]}" if current else word[:cut]
                word = word[cut:]
            elif not current:
                current, word = word[:width], word[width:]
            rows.append(current)
            current = ""
    if current or not rows:
        rows.append(current)
    if len(rows) > lines:
        rows = rows[:lines]
        last = rows[-1]
        rows[-1] = (last if len(last) < width else last[: width - 1]) + "…"
    return rows


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 10_000:
        return f"{value / 1000:.0f} s"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def render_header(width: int) -> Text:
    """The row naming the lifelines over their lanes, then the columns of the hop rows."""
    layout = layout_for(width)
    cells = [" "] * layout.lanes_width
    for lifeline, name in zip(LIFELINES, layout.names, strict=True):
        start = max(0, min(layout.center(lifeline) - (len(name) - 1) // 2, layout.lanes_width - len(name)))
        start = max(start, LIFELINES.index(lifeline) * layout.lane)
        shown = name if lifeline is LIFELINES[-1] else name[: layout.lane]
        for offset, char in enumerate(shown):
            cells[start + offset] = char
    label_width = _label_width(layout, width)
    text = Text("".join(cells) + " ", style="bold")
    if layout.offsets:
        text.append(f"{'at':>{_TIME_WIDTH}} {'by':<{_BY_WIDTH}} ", style="bold")
    text.append(f"{'hop':<{label_width}} {'stat':>{_STATUS_WIDTH}} {'took':>{_TIME_WIDTH}}", style="bold")
    text.no_wrap = True
    return text


def _arrow(hop: Hop, layout: Layout) -> str:
    cells = list(_lifelines(layout))
    source, target = layout.center(hop.source), layout.center(hop.target)
    if source == target:
        cells[source] = "↻"
        return "".join(cells)
    step = 1 if target > source else -1
    for column in range(source + step, target, step):
        cells[column] = "┼" if cells[column] == "│" else "─"
    cells[source] = "├" if step > 0 else "┤"
    cells[target] = "▶" if step > 0 else "◀"
    return "".join(cells)


def origin(hops: Sequence[Hop]) -> float | None:
    """When the message set out: the start of the first hop that carries its flow id (of the first hop if none does)."""
    own = [hop.started for hop in hops if hop.flow_id is not None] or [hop.started for hop in hops]
    return min(own) if own else None


def _moment(hop: Hop, start: float | None) -> float:
    """Where ``hop`` sits in the diagram: when it began, or when it ended if it began before the message set out (a
    LongPolling poll or an SSE stream already waiting: its arrow is the answer that carried the message)."""
    return hop.at if start is not None and hop.started < start else hop.started


def diagram_order(hops: Sequence[Hop]) -> list[Hop]:
    """``hops`` in the order the diagram draws them: by :func:`_moment` (a request before what its handler did, a
    waiting poll at the moment it answered), arrival order among equals."""
    start = origin(hops)
    return sorted(hops, key=lambda hop: _moment(hop, start))


def message_span_ms(hops: Sequence[Hop]) -> float | None:
    """From when the message set out to the end of its last hop, in ms (None without two hops)."""
    start = origin(hops)
    if start is None or len(hops) < 2:
        return None
    return max(0.0, (max(hop.at for hop in hops) - start) * 1000)


def _offset(ms: float) -> str:
    return f"+{ms / 1000:.2f}s" if ms >= 10_000 else f"+{ms:.1f}"


def render_hop(hop: Hop, width: int, first_at: float | None = None) -> Text:
    """One hop: the arrow across the lanes, the label, the status and the hop's own latency (``took``); on a wide view
    also when it is drawn (:func:`diagram_order`), in ms after ``first_at``.

    A label longer than its column goes on under itself, beside the bare lifelines (at most three rows).
    """
    layout = layout_for(width)
    label_width = _label_width(layout, width)
    style = _ROLE_STYLES.get(str(hop.role.value), "")
    failed = hop.status is not None and hop.status >= 400
    label = hop.label
    if hop.count is not None and str(hop.count) not in label:
        label = f"{label} ({hop.count} recipients)"
    rows = _wrap(label, label_width)
    text = Text(_arrow(hop, layout), style=style)
    text.append(" ")
    if layout.offsets:
        offset = "" if first_at is None else _offset(max(0.0, (_moment(hop, first_at) - first_at) * 1000))
        text.append(f"{offset:>{_TIME_WIDTH}} ", style="dim")
        text.append(f"{_REPORTERS.get(str(hop.role.value), '?'):<{_BY_WIDTH}} ", style=style)
    text.append(f"{rows[0]:<{label_width}} ", style="red" if failed else "")
    status = "" if hop.status is None else str(hop.status)
    text.append(f"{status:>{_STATUS_WIDTH}} ", style="bold red" if failed else "dim")
    text.append(f"{_ms(hop.duration_ms):>{_TIME_WIDTH}}")
    lifelines = _lifelines(layout)
    for row in rows[1:]:
        text.append("\n" + lifelines + " ", style="dim")
        if layout.offsets:
            text.append(" " * (_TIME_WIDTH + 1 + _BY_WIDTH + 1))
        text.append(row, style="red" if failed else "")
    text.no_wrap = True
    return text


def _lifelines(layout: Layout) -> str:
    cells = [" "] * layout.lanes_width
    for lifeline in LIFELINES:
        cells[layout.center(lifeline)] = "│"
    return "".join(cells)


def render_diagram(hops: Sequence[Hop], width: int) -> Text:
    """Every hop of a journey in :func:`diagram_order`, one row each; ``+ms`` (wide views) counts from when the message
    set out (:func:`origin`). The header is :func:`render_header`."""
    ordered = diagram_order(hops)
    first = origin(hops)
    rows = Text("\n").join(render_hop(hop, width, first) for hop in ordered)
    rows.no_wrap = True
    return rows


@dataclass(frozen=True)
class FlowContext:
    """What the chat knows of its own connection, for the facts a journey's hops do not say."""

    service: str | None = None
    """``signalr`` or ``webpubsub``."""
    mode: str | None = None
    """``default`` or ``serverless`` (SignalR only)."""
    transport: str | None = None
    """The transport in use (``WebSockets``, ``ServerSentEvents``, ``LongPolling``, Web PubSub's ``WebSocket``)."""
    via_gateway: bool = True
    """Whether the client goes through APIM (the gateway) to the service."""


_SERVICE_NAMES = {"signalr": "Azure SignalR Service", "webpubsub": "Azure Web PubSub"}
# What happens behind the service, and what the transport does, in a few words each (two lines at 80 columns).
_PATHS = {
    "default": "the service passes it to the app server over its server connection (no HTTP per message); the "
    "broadcast comes back on it",
    "serverless": "the service POSTs it to the app server's /upstream; the broadcast comes back as a REST call",
    "webpubsub": "the service POSTs the event (a CloudEvent) to the app server's event handler; the broadcast comes "
    "back as a REST call",
}
_TRANSPORTS = {
    "WebSockets": "one connection carries frames both ways",
    "ServerSentEvents": "an event stream down, a POST per message up",
    "LongPolling": "a POST per message up, the next poll brings it down",
}
_WEBPUBSUB_TRANSPORT = "one WebSocket, reliable JSON subprotocol (acks)"


def _first(hops: Sequence[Hop], attribute: str) -> str | None:
    for hop in hops:
        value = getattr(hop, attribute)
        if isinstance(value, str) and value:
            return value
    return None


def journey_facts(hops: Sequence[Hop], context: FlowContext) -> tuple[str, str]:
    """The journey's service, mode and transport on one line, and the path behind the service explained.

    The hops' own fields win; the chat's ``context`` fills what they do not say.
    """
    service = _first(hops, "service") if hops else None
    service = service or context.service or "signalr"
    mode = _first(hops, "mode") or context.mode
    client_transport = next((hop.transport for hop in hops if hop.role.value == "client" and hop.transport), None)
    transport = client_transport or _first(hops, "transport") or context.transport
    via = " through APIM" if context.via_gateway else " straight to the service"
    parts = [_SERVICE_NAMES.get(service, service)]
    if service == "webpubsub":
        parts.append("event handler")
        parts.append(f"WebSocket{via}")
        path = _PATHS["webpubsub"] + " · " + _WEBPUBSUB_TRANSPORT
    else:
        parts.append(f"{mode.capitalize()} mode" if mode else "mode unknown")
        parts.append(f"{transport or 'transport unknown'}{via}")
        explained = [_PATHS[mode]] if mode in _PATHS else []
        if transport in _TRANSPORTS:
            explained.append(_TRANSPORTS[transport])
        path = " · ".join(explained)
    return " · ".join(parts), path


MIN_DIAGRAM_ROWS = 10
"""Rows the diagram keeps before the path sentence is given room above it."""
_FIXED_ROWS = 4  # caption, facts, lifeline header, note


def _line(text: str, style: str) -> Text:
    """``text`` printable on one line, cut with ``…`` at the view's edge."""
    return Text(printable(" ".join(text.split()), 300), style=style, no_wrap=True, overflow="ellipsis")


class FlowPanel(Vertical):
    """The Flow view: a title line, the service/mode/transport line, the lifeline header and the hop rows.

    Call :meth:`show` with the hops to draw (or none) and a caption; the panel redraws itself when its width changes.
    Nothing is rendered while the panel is hidden: the app calls :meth:`show` again when it becomes visible.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.hops: tuple[Hop, ...] = ()
        self.caption = ""
        self.context = FlowContext()
        self.note = ""
        self._drawn_width = 0
        self._drawn_height = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="flow-caption")
        yield Static("", id="flow-facts")
        yield Static("", id="flow-header")
        with VerticalScroll(id="flow-body"):
            yield Static("", id="flow-rows")
        yield Static("", id="flow-note")

    def show(self, hops: Sequence[Hop], caption: str, context: FlowContext, note: str = "") -> None:
        """Draw ``hops`` (one journey, any order) under ``caption``; ``note`` is the line under the diagram."""
        self.hops = tuple(diagram_order(hops))
        self.caption = caption
        self.context = context
        self.note = note
        if self.display and self.is_mounted:
            self.redraw()

    @property
    def view_width(self) -> int:
        """The cells a row may use (the panel's content width less the scrollbar, at least 60; 80 before the first
        layout)."""
        width = self.content_region.width
        return max(60, width - 1) if width else 80

    def redraw(self) -> None:
        """Render the current hops at the current size.

        The caption, the facts and the note take one line each (cut with ``…``); the sentence explaining the path
        behind the service is shown when the diagram keeps at least :data:`MIN_DIAGRAM_ROWS` rows beside it (not on
        an 80×24 terminal, where the facts line still names service, mode and transport).
        """
        width = self.view_width
        self._drawn_width = width
        self._drawn_height = self.content_region.height
        facts, path = journey_facts(self.hops, self.context)
        self.query_one("#flow-caption", Static).update(_line(self.caption, "bold"))
        facts_text = _line(facts, "bold magenta")
        path_rows = -(-len(path) // width) if path else 0
        if path and self._drawn_height - _FIXED_ROWS - path_rows >= MIN_DIAGRAM_ROWS:
            facts_text = Text.assemble(facts_text, "\n", (path, "italic"))
        self.query_one("#flow-facts", Static).update(facts_text)
        self.query_one("#flow-header", Static).update(render_header(width))
        rows = render_diagram(self.hops, width) if self.hops else Text("no hop yet: send a message", style="dim")
        self.query_one("#flow-rows", Static).update(rows)
        self.query_one("#flow-note", Static).update(_line(self.note, "dim italic"))
        self.query_one("#flow-body", VerticalScroll).scroll_end(animate=False, immediate=False)

    def on_resize(self) -> None:
        resized = (self.view_width, self.content_region.height) != (self._drawn_width, self._drawn_height)
        if self.display and self.is_mounted and resized:
            self.redraw()

    @property
    def plain_rows(self) -> list[str]:
        """The hop rows as plain text, as drawn at the current width."""
        return render_diagram(self.hops, self.view_width).plain.splitlines() if self.hops else []


def stamp(at: float) -> str:
    """``HH:MM:SS`` of ``at`` (a ``time.time()`` value), for captions."""
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")
