"""A journey as a Mermaid ``sequenceDiagram``: five fixed lifelines, one arrow per hop, notes for the facts.

Every piece of text that reaches the diagram (hop labels, chat names and lines, titles) goes through
:func:`escape_text`, which keeps letters, digits, spaces and a few harmless marks and writes every other character as a
Mermaid entity code (``#35;`` for ``#``): statement separators (``;``, newlines), arrows, comments and directives
(``%%``), HTML, quotes and colons cannot break the diagram or add to it. Mermaid decodes entity codes only when it
draws the text (https://mermaid.js.org/syntax/sequenceDiagram.html#entity-codes-to-escape-characters).
"""

from __future__ import annotations

from .hops import Hop, Lifeline
from .journey import Journey

__all__ = ["LIFELINE_NAMES", "MAX_ARROWS", "arrow_text", "escape_text", "sequence_diagram"]

# The most arrows a diagram draws; the hops past them are counted in a note.
MAX_ARROWS = 80

# The lifelines, in the order they are drawn, and the names shown on them.
LIFELINE_NAMES: dict[Lifeline, str] = {
    Lifeline.CLIENT: "Client",
    Lifeline.APP: "App server",
    Lifeline.APIM: "APIM",
    Lifeline.SERVICE: "Service",
    Lifeline.OTHERS: "Other clients",
}
_SERVICE_NAMES = {"signalr": "Azure SignalR", "webpubsub": "Azure Web PubSub"}
_MODE_NAMES = {"default": "Default mode", "serverless": "Serverless mode"}
# Hops drawn as asynchronous arrows (the service pushing to clients); the others are requests or frames.
_ASYNC_KINDS = frozenset({"fan-out", "deliver"})
# Characters other than letters and digits that are kept as they are. A message's, a note's or a title's text runs to
# the end of the line, a ``;`` or a ``#`` (the sequence grammar's TXT token); ``%`` and ``{}`` could form a directive,
# ``<>&`` HTML, a backquote end a Markdown fence, a ``:`` make ``wrap:`` a directive or a ``style…:…#…;`` line lose
# its last ``;`` (mermaid's encodeEntities): all of those are written as entity codes, and so is everything not listed
# here.
_SAFE = frozenset(" .,/()[]'?!@$*+=~|^_-·…→←×")
_MAX_TEXT = 200


def escape_text(text: str, limit: int = _MAX_TEXT) -> str:
    """``text`` (cut to ``limit`` characters) safe inside a Mermaid sequence message, note or title: letters, digits
    and a few marks as they are, every other character as the entity code ``#<code point>;``, newlines included."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "".join(c if (c.isalnum() and c.isprintable()) or c in _SAFE else f"#{ord(c)};" for c in text)


def arrow_text(hop: Hop) -> str:
    """The unescaped text of ``hop``'s arrow: its label, then its status, latency, recipients and size."""
    parts = [hop.label.strip() or hop.kind]
    if hop.status is not None and str(hop.status) not in hop.label:
        parts.append(str(hop.status))
    if hop.duration_ms is not None:
        parts.append(f"{hop.duration_ms:.1f} ms")
    if hop.count is not None:
        parts.append(f"×{hop.count}")
    if hop.bytes is not None:
        parts.append(f"{hop.bytes} B")
    return " · ".join(parts)


def _facts(journey: Journey) -> str:
    facts = journey.facts()
    words = [_SERVICE_NAMES.get(s, s) for s in facts["service"]]
    words += [_MODE_NAMES.get(m, m) for m in facts["mode"]]
    words += facts["transport"]
    if journey.flow_id is not None:
        words.append(f"flow {journey.flow_id}")
    if journey.duration_ms is not None and len(journey.hops) > 1:
        words.append(f"{journey.duration_ms:.1f} ms end to end")
    return " · ".join(words)


def sequence_diagram(journey: Journey, title: str | None = None) -> str:
    """The Mermaid ``sequenceDiagram`` of ``journey`` (no fence, ends with a newline): ``title`` (by default the chat
    line, when known) as its title, the five lifelines in their fixed order, a note with the service, mode,
    transport and flow id, the chat line as a note when the title is something else, then one arrow per hop in the
    journey's order (the service's pushes to clients as asynchronous arrows). A run of alike gateway hops (one
    broadcast relayed to many clients) is one arrow that says how many; past :data:`MAX_ARROWS` arrows a note
    counts the hops left out."""
    lines = ["sequenceDiagram"]
    said = f"{journey.name}: {journey.text}" if journey.name is not None and journey.text is not None else None
    if title is None:
        title, said = said, None
    if title:
        lines.append(f"    title {escape_text(title)}")
    for lifeline, name in LIFELINE_NAMES.items():
        lines.append(f"    participant {lifeline.value} as {name}")
    facts = _facts(journey)
    if facts:
        lines.append(f"    Note over {Lifeline.CLIENT.value},{Lifeline.OTHERS.value}: {escape_text(facts)}")
    if said is not None:
        lines.append(f"    Note right of {Lifeline.CLIENT.value}: {escape_text(said)}")
    groups = _groups(journey.arrows())
    for group in groups[:MAX_ARROWS]:
        hop = group[0]
        text = arrow_text(hop)
        if len(group) > 1:
            text += f" · {len(group)} hops like it"
            sizes = [h.bytes for h in group if h.bytes is not None]
            if sizes:
                text += f", {sum(sizes)} B in all"
        arrow = "-)" if hop.kind in _ASYNC_KINDS else "->>"
        lines.append(f"    {hop.source.value}{arrow}{hop.target.value}: {escape_text(text)}")
    left = sum(len(g) for g in groups[MAX_ARROWS:]) + journey.more
    if left:
        lines.append(f"    Note over {Lifeline.CLIENT.value},{Lifeline.OTHERS.value}: {left} more hops not drawn")
    if not journey.hops:
        lines.append(f"    Note over {Lifeline.CLIENT.value}: no hop reported yet")
    return "\n".join(lines) + "\n"


def _groups(hops: list[Hop]) -> list[list[Hop]]:
    """Hops in order, with each run of alike hops without a flow id (the gateway relaying one broadcast to many
    clients: same kind, same arrow) as one group."""
    groups: list[list[Hop]] = []
    for hop in hops:
        if groups:
            last = groups[-1][0]
            if (
                hop.flow_id is None
                and last.flow_id is None
                and (hop.kind, hop.source, hop.target) == (last.kind, last.source, last.target)
            ):
                groups[-1].append(hop)
                continue
        groups.append([hop])
    return groups
