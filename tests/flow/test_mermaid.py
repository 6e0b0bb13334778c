"""flow.mermaid: a journey as a Mermaid sequenceDiagram, checked by parsing it with the real npm ``mermaid`` package.

Hostile text (chat lines, labels) must neither break the diagram (a parse error) nor add to it (another arrow, note,
participant or directive): each diagram below parses, has exactly the five lifelines and one arrow per hop, and every
text comes back, once Mermaid decodes its entity codes, exactly as it was meant to be shown.
"""

from __future__ import annotations

import random
import re
import subprocess
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flow.hops import Hop
from flow.ids import flow_id
from flow.journey import Journey, JourneyBook
from flow.mermaid import LIFELINE_NAMES, MAX_ARROWS, arrow_text, escape_text, sequence_diagram
from tests.support.mermaid import PARSE_SCRIPT, mermaid_blocks, parse_mermaid, parse_mermaid_async

T0 = 1_800_000_000.0
HOSTILE = [
    'say "hi"',
    "a # b #35; c",
    "one; two;; three",
    "time: 12:30",
    "client-->>others: injected",
    "x\nclient->>app: injected on a new line\r\nNote over app: injected note",
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)"> <b>bold</b> <br/> &amp; &lt;',
    "%% a comment",
    '%%{init: {"theme": "forest", "securityLevel": "loose"}}%%',
    "```\n# heading\n```mermaid",
    "end",
    "participant evil as Evil",
    "title Hijacked",
    "wrap: long text",
    "style: a#b; classDef x fill:#f00;",
    "\u2028line\u2029separator\x00\x07\x1b[31m",
    "emoji 😀 and 汉字 and é",
    "back\\slash and `ticks` and ~tilde~",
    "{curly} [square] (round) |pipe|",
    "-) -x --x ->>+ -->>- <<->>",
    "autonumber",
    'links client: {"a": "https://evil.example"}',
    "",
    "   ",
    "x" * 500,
]


def hostile_journey(text: str, n: int) -> Journey:
    book = JourneyBook()
    f = flow_id("conn", str(n))
    common: dict[str, Any] = {"flow_id": f, "service": "signalr", "mode": "serverless", "transport": "WebSockets"}
    hops = [
        Hop.make("client", "client", "apim", "send", f"send {text}", at=T0, connection_id="conn", **common),
        Hop.make("apim", "apim", "service", "relay", text, at=T0 + 0.001, bytes=10, connection_id="conn"),
        Hop.make("service", "client", "service", "invoke", text, at=T0 + 0.002, connection_id="conn", **common),
        Hop.make("service", "service", "app", "upstream", text, at=T0 + 0.01, status=200, duration_ms=7.5, **common),
        Hop.make("app", "app", "service", "rest", text, at=T0 + 0.009, status=202, duration_ms=2.25, **common),
        Hop.make("service", "service", "others", "fan-out", text, at=T0 + 0.009, count=3, **common),
        Hop.make("client", "service", "client", "deliver", text, at=T0 + 0.011, **common),
    ]
    for hop in hops:
        book.add(hop)
    journey = book.label_message(f, f"name {text}", text)
    assert len(journey.hops) == len(hops)
    return journey


def expected_title(journey: Journey) -> str:
    title = f"{journey.name}: {journey.text}"
    return title if len(title) <= 200 else title[:199] + "…"


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, Journey, str, dict[str, Any]]]:
    """Every hostile text's journey, its diagram, and what mermaid parsed of it (one Node run)."""
    journeys = [hostile_journey(text, n) for n, text in enumerate(HOSTILE)]
    diagrams = [sequence_diagram(j) for j in journeys]
    results = parse_mermaid(diagrams)
    return list(zip(HOSTILE, journeys, diagrams, results, strict=True))


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_hostile_text_neither_breaks_nor_adds_to_the_diagram(
    parsed: list[tuple[str, Journey, str, dict[str, Any]]], index: int
) -> None:
    text, journey, diagram, result = parsed[index]
    assert result["ok"], f"{text!r} broke the diagram: {result.get('error')}\n{diagram}"
    assert result["type"] == "sequence"
    assert result["actors"] == [[lifeline.value, name] for lifeline, name in LIFELINE_NAMES.items()]
    assert [(m["from"], m["to"]) for m in result["messages"]] == [(h.source, h.target) for h in journey.hops]
    assert [m["text"].strip() for m in result["messages"]] == [arrow_text(h).strip() for h in journey.hops]
    assert result["title"].strip() == expected_title(journey).strip()
    assert len(result["notes"]) == 1  # the facts note, nothing injected
    assert "Azure SignalR · Serverless mode · WebSockets" in result["notes"][0]["text"]
    # Nothing of the text reaches the source as markup: every line is one of ours.
    lines = diagram.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert len(lines) == 1 + 1 + 5 + 1 + len(journey.hops)
    assert "%%" not in diagram and "<" not in diagram and "`" not in diagram


def test_the_diagram_of_a_journey() -> None:
    journey = hostile_journey("broadcastMessage", 0)
    diagram = sequence_diagram(journey, title="Flow of one message")
    [result] = parse_mermaid(diagram)
    assert result["ok"], result
    assert result["title"] == "Flow of one message"
    kinds = [h.kind for h in journey.hops]
    assert kinds == ["send", "relay", "invoke", "upstream", "rest", "fan-out", "deliver"]
    texts = [m["text"] for m in result["messages"]]
    assert texts[3] == "broadcastMessage · 200 · 7.5 ms"
    assert texts[4] == "broadcastMessage · 202 · 2.2 ms" or texts[4] == "broadcastMessage · 202 · 2.3 ms"
    assert texts[5] == "broadcastMessage · ×3"
    assert texts[1] == "broadcastMessage · 10 B"
    notes = [n["text"] for n in result["notes"]]
    assert notes[0].startswith("Azure SignalR · Serverless mode · WebSockets · flow ")
    assert notes[1] == "name broadcastMessage: broadcastMessage"  # the chat line, the title being something else
    # fan-out and deliver are the service's pushes: asynchronous arrows; the others solid ones.
    types = [m["type"] for m in result["messages"]]
    assert types[5] == types[6] != types[0]


def test_an_empty_journey_still_parses() -> None:
    [result] = parse_mermaid(sequence_diagram(Journey(flow_id("c", "1"))))
    assert result["ok"], result
    assert result["messages"] == []


def test_the_parser_reports_broken_diagrams() -> None:
    """The check is not blind: what the escaping prevents does break or change a diagram."""
    raw = "sequenceDiagram\n    client->>app: "
    broken, injected, commented = parse_mermaid(
        [raw + "x\n a->>", raw + "one; app->>client: two", raw + "before # after"]
    )
    assert not broken["ok"] and "Parse error" in broken["error"]
    assert injected["ok"] and len(injected["messages"]) == 2
    assert commented["ok"] and commented["messages"][0]["text"].strip() == "before"


SAFE_OR_CODE = re.compile(r"(?:[\w .,/()\[\]'?!@$*+=~|^\-·…→←×]|#\d+;)*")


@given(st.text(max_size=300))
def test_escape_text_writes_only_safe_characters_and_entity_codes(text: str) -> None:
    escaped = escape_text(text, limit=1000)
    assert SAFE_OR_CODE.fullmatch(escaped), escaped
    assert not set(re.sub(r"#\d+;", "", escaped)) & set(';#:\n\r%{}<>&`"')
    decoded = re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), escaped)
    assert decoded == text


def test_random_hostile_texts_parse_as_one_note_each() -> None:
    rng = random.Random(16)
    alphabet = [*"#;:%{}<>&`\"'\\-|()[]\n\r\t ", "-->>", "->>", "%%", "end", "Note", "<br>", "😀", "\u2028"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(60)]
    diagrams = [f"sequenceDiagram\n    participant a\n    Note over a: {escape_text(t)}\n" for t in texts]
    for text, result in zip(texts, parse_mermaid(diagrams), strict=True):
        assert result["ok"], (text, result)
        assert len(result["notes"]) == 1 and result["messages"] == []
        assert result["notes"][0]["text"].strip() == text.strip()


def test_mermaid_blocks() -> None:
    markdown = "# t\n\n```mermaid\nsequenceDiagram\n    a->>b: x\n```\n\ntext\n\n```mermaid\nsequenceDiagram\n```\n"
    assert mermaid_blocks(markdown) == ["sequenceDiagram\n    a->>b: x\n", "sequenceDiagram\n"]
    assert mermaid_blocks("```python\nx\n```") == []


def test_each_diagram_of_a_batch_is_parsed_on_its_own() -> None:
    one = "sequenceDiagram\n    a->>b: first\n    b->>a: second\n"
    two = "sequenceDiagram\n    title Two\n    c->>d: third\n"
    first, second, again = parse_mermaid([one, two, one])
    assert [m["text"] for m in first["messages"]] == ["first", "second"]
    assert [m["text"] for m in second["messages"]] == ["third"] and second["title"] == "Two"
    assert [a[0] for a in second["actors"]] == ["c", "d"]
    assert again == first


async def test_parse_mermaid_async() -> None:
    [result] = await parse_mermaid_async("sequenceDiagram\n    a->>b: x #35; y\n")
    assert result["ok"] and result["messages"][0]["text"] == "x # y"


def test_the_parse_script_refuses_what_is_not_a_list() -> None:
    done = subprocess.run(
        ["node", str(PARSE_SCRIPT)], input=b'{"not": "a list"}', capture_output=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert b"JSON array" in done.stderr


def test_a_broadcast_to_many_clients_stays_a_readable_diagram() -> None:
    book = JourneyBook()
    f = flow_id("conn", "big")
    book.add(Hop.make("service", "client", "service", "invoke", "broadcastMessage", at=T0, flow_id=f))
    book.add(Hop.make("service", "service", "others", "fan-out", "to 2500", at=T0 + 0.01, flow_id=f, count=2500))
    for n in range(2500):  # the gateway relays the frame to each client: one hop each
        book.add(Hop.make("apim", "apim", "client", "relay", "frame", at=T0 + 0.02, connection_id=f"r{n}", bytes=100))
    journey = book.get(f)
    assert journey is not None
    assert len(journey.hops) == 2000 and journey.more == 502  # the journey keeps MAX_HOPS, counts the rest
    [result] = parse_mermaid(sequence_diagram(journey))
    assert result["ok"], result
    texts = [m["text"] for m in result["messages"]]
    assert texts == ["broadcastMessage", "to 2500 · ×2500", "frame · 100 B · 1998 hops like it, 199800 B in all"]
    assert result["notes"][-1]["text"] == "502 more hops not drawn"


def test_past_the_most_arrows_a_note_counts_the_rest() -> None:
    journey = Journey(flow_id("c", "many"))
    book = JourneyBook()
    for n in range(MAX_ARROWS + 20):
        kind = "send" if n % 2 else "invoke"
        book.add(Hop.make("client", "client", "service", kind, f"hop {n}", at=T0 + n * 0.001, flow_id=journey.flow_id))
    drawn = book.get(str(journey.flow_id))
    assert drawn is not None
    [result] = parse_mermaid(sequence_diagram(drawn))
    assert result["ok"], result
    assert len(result["messages"]) == MAX_ARROWS
    assert result["notes"][-1]["text"] == "20 more hops not drawn"
