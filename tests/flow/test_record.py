"""flow.record: the journeys as Markdown with Mermaid blocks, written as they complete, parsed by mermaid."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flow.hops import Hop
from flow.ids import flow_id
from flow.journey import JourneyBook
from flow.record import Recorder, markdown_text
from tests.support.mermaid import mermaid_blocks, parse_mermaid

T0 = 1_800_000_000.0


def broadcast(book_or_recorder: Recorder | JourneyBook, n: int, at: float) -> str:
    f = flow_id("conn", str(n))
    hops = [
        Hop.make("client", "client", "apim", "send", "broadcastMessage", at=at, flow_id=f, connection_id="conn"),
        Hop.make("service", "client", "service", "invoke", "broadcastMessage", at=at + 0.001, flow_id=f),
        Hop.make("service", "service", "others", "fan-out", "to 2", at=at + 0.002, flow_id=f, count=2),
    ]
    for hop in hops:
        book_or_recorder.add(hop)
    return f


def test_journeys_are_written_as_they_complete_and_parse(tmp_path: Path) -> None:
    path = tmp_path / "flow.md"
    recorder = Recorder(path, title="Demo: SignalR Serverless", quiet=3.0)
    assert path.read_text().startswith("# Demo: SignalR Serverless\n")
    first = broadcast(recorder, 1, T0)
    recorder.book.label_message(first, "alice", "hello")
    assert "## 1." not in path.read_text()  # not quiet yet
    second = broadcast(recorder, 2, T0 + 5)  # the first has been quiet for 5 s: written now
    text = path.read_text()
    assert "## 1. alice: hello" in text and first in text and second not in text
    assert recorder.close() == path
    recorder.close()
    text = path.read_text()
    assert "## 2. a message (hops carry no text: only its clients know it)" in text and second in text
    assert recorder.written == 2
    blocks = mermaid_blocks(text)
    assert len(blocks) == 2
    results = parse_mermaid(blocks)
    assert all(r["ok"] for r in results), results
    assert [len(r["messages"]) for r in results] == [3, 3]
    assert results[0]["title"] == "alice: hello"


def test_flush_by_the_clock_and_a_shared_book(tmp_path: Path) -> None:
    book = JourneyBook()
    recorder = Recorder(tmp_path / "r.md", book=book, quiet=0.5)
    at = time.time() - 60
    f = broadcast(book, 1, at)
    book.label_message(f, "bob", "hi")
    assert recorder.flush(now=at + 0.1) == 0
    assert recorder.flush() == 1  # a minute ago by the clock
    assert recorder.flush() == 0  # written once
    recorder.close()
    assert (tmp_path / "r.md").read_text().count("```mermaid") == 1


def test_hostile_chat_lines_stay_inside_their_section(tmp_path: Path) -> None:
    path = tmp_path / "hostile.md"
    recorder = Recorder(path, title="# title\n```mermaid\ninjected")
    hostile = [
        "```\n## injected heading\n```mermaid\nsequenceDiagram\n    a->>b: injected",
        "<script>alert(1)</script> [link](javascript:alert(1)) ![img](x) *bold* _it_ `code` | table |",
        "%%{init: {'securityLevel': 'loose'}}%%\nclient->>app: injected",
    ]
    for n, text in enumerate(hostile):
        f = broadcast(recorder, n, T0 + n * 10)
        recorder.book.label_message(f, f"eve{n}\n## x", text)
    recorder.close()
    markdown = path.read_text()
    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    assert len(headings) == 1 + len(hostile)
    assert markdown.count("```") == 2 * len(hostile)
    assert "<script>" not in markdown
    outside_fences = markdown.split("```")[::2]
    assert not any("[link](javascript" in part for part in outside_fences)
    results = parse_mermaid(mermaid_blocks(markdown))
    assert len(results) == len(hostile)
    for text, result in zip(hostile, results, strict=True):
        assert result["ok"], result
        assert len(result["messages"]) == 3 and len(result["notes"]) == 1
        assert text.replace("\n", " ") in result["title"].replace("\n", " ")


def test_markdown_text_is_inert() -> None:
    assert markdown_text("a *b* `c` <d> & [e](f) # g\nh") == r"a \*b\* \`c\` &lt;d&gt; &amp; \[e\](f) \# g h"
    assert len(markdown_text("x" * 500)) == 100


def test_an_unwritable_path_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Recorder(tmp_path / "missing" / "dir" / "flow.md")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fail writes")
def test_a_write_error_stops_the_recording_not_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder("/dev/full")
    assert isinstance(recorder.error, OSError)
    broadcast(recorder, 1, T0)
    broadcast(recorder, 2, T0 + 10)
    recorder.close()
    assert recorder.written == 0
    assert sum("cannot write the recording" in r.getMessage() for r in caplog.records) == 1
