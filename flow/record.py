"""Record a session's journeys as Markdown: a title, then one section per message with a ```mermaid sequence diagram.

``chat-demo --record FILE`` makes a :class:`Recorder`, hands it every hop (:meth:`Recorder.add`, or a
:class:`~flow.journey.JourneyBook` it shares with the Flow view), calls :meth:`Recorder.flush` now and then and
:meth:`Recorder.close` on exit. A journey is written once, when it has been quiet for ``quiet`` seconds (or on
close); the file is flushed after each, so what was recorded survives a crash. GitHub, GitLab and most slide tools
draw the blocks (https://mermaid.js.org/syntax/sequenceDiagram.html).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from .hops import Hop
from .journey import Journey, JourneyBook
from .mermaid import sequence_diagram

__all__ = ["QUIET", "Recorder", "markdown_text"]

log = logging.getLogger("flow")

# Seconds without a new hop after which a journey is complete and written.
QUIET = 3.0
_MARKDOWN_SPECIAL = str.maketrans(
    {c: "\\" + c for c in "\\`*_[]#|~!"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"} | {c: " " for c in range(0x20)}
)


def markdown_text(text: str, limit: int = 100) -> str:
    """``text`` as inert inline Markdown on one line: no emphasis, link, code, HTML or heading can start in it."""
    text = " ".join(text.replace("\u2028", " ").replace("\u2029", " ").split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.translate(_MARKDOWN_SPECIAL)


class Recorder:
    """Writes journeys to ``path`` (created or truncated now; OSError if it cannot be).

    ``book`` is the :class:`JourneyBook` to record from (a new one by default, fed by :meth:`add`); pass the Flow
    view's to record the client's own hops and chat lines too. Not thread-safe. After a write error the recorder
    stops writing, logs it once and keeps it in ``error``; the chat goes on.
    """

    def __init__(
        self, path: str | Path, *, title: str = "Flow recording", book: JourneyBook | None = None, quiet: float = QUIET
    ) -> None:
        self.path = Path(path)
        self.book = book if book is not None else JourneyBook()
        self.quiet = quiet
        self.written = 0
        self.error: OSError | None = None
        self._done: set[str] = set()
        self._file: TextIO | None = self.path.open("w", encoding="utf-8", newline="\n")
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self._write(
            f"# {markdown_text(title)}\n\n"
            f"Recorded {started}. Each section is one chat message's journey, hop by hop: "
            "Client · App server · APIM · Service · Other clients, with each hop's status and latency.\n"
        )

    def add(self, hop: Hop) -> None:
        """File ``hop`` in the book and write the journeys that have been quiet long enough (by the hop's clock)."""
        self.book.add(hop)
        self.flush(now=hop.at)

    def flush(self, now: float | None = None) -> int:
        """Write every journey quiet since ``quiet`` seconds before ``now`` (default: the clock); returns how many."""
        now = time.time() if now is None else now
        return self._write_journeys(lambda journey: journey.last_at <= now - self.quiet)

    def close(self) -> Path:
        """Write every journey not written yet, close the file (idempotent), and return its path."""
        if self._file is not None:
            self._write_journeys(lambda journey: True)
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                self._failed(exc)
        return self.path

    def _write_journeys(self, ready: Callable[[Journey], bool]) -> int:
        count = 0
        for journey in self.book.journeys():
            if journey.flow_id is None or journey.flow_id in self._done or not journey.hops or not ready(journey):
                continue
            self._done.add(journey.flow_id)
            if self._write(self._section(journey)):
                self.written += 1
                count += 1
        return count

    def _section(self, journey: Journey) -> str:
        number = self.written + 1
        if journey.name is not None and journey.text is not None:
            heading = f"{markdown_text(journey.name, 40)}: {markdown_text(journey.text)}"
        else:
            heading = "a message (hops carry no text: only its clients know it)"
        took = f" · {journey.duration_ms:.1f} ms end to end" if journey.duration_ms is not None else ""
        when = datetime.fromtimestamp(journey.hops[0].at, UTC).strftime("%H:%M:%S")
        return (
            f"\n## {number}. {heading}\n\n"
            f"{when} UTC · flow `{journey.flow_id}` · {len(journey.arrows())} hops{took}\n\n"
            f"```mermaid\n{sequence_diagram(journey)}```\n"
        )

    def _write(self, text: str) -> bool:
        if self._file is None or self.error is not None:
            return False
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc
            log.warning("flow: cannot write the recording %s: %s; recording stopped", self.path.name, exc)
