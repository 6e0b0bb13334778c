"""The probe in the chat: "Probe this connection" (F2, or the command palette) runs :func:`chat.probe.run_probe`
against the chat's own hub URL and shows it in :class:`ProbeScreen`.

The app owns the run (:class:`ProbeRun`, in a Textual worker on the UI's event loop: the probe is asyncio, so the UI
and the chat connection keep going while it runs) and hands each step to the screen as it ends; the screen shows those
steps while the probe runs, then the verdict: per transport whether it works, its latency, what failed, the cause in
APIM terms and the fix (the guide's step and the ``apim-gateway export`` command). Closing the screen (Escape) does not
stop the probe; the chat says when it is done.

Everything shown comes from the probe's records, which hold no secret (their strings are redacted when recorded); the
screen still passes every string through the ``scrub`` function it is given (the app's: token and key patterns, and
the literal values of the chat's secret headers) on the way to the screen. Strings are turned into
``rich.text.Text`` objects, never markup, so nothing the network sent is interpreted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from signalr.redact import redact_url

from .probe import (
    GUIDE_URL,
    Finding,
    Outcome,
    ProbeOptions,
    ProbeReport,
    StepResult,
    TransportReport,
    Works,
    step_line,
    summary_line,
)
from .probe.report import header_facts, mentions_guide, ms_text, no_gateway_line, same_finding
from .widgets import printable

__all__ = [
    "MAX_SHOWN_STEPS",
    "ProbeRun",
    "ProbeScreen",
    "Scrub",
    "render_problem",
    "render_steps",
    "render_verdict",
    "render_verdict_table",
]

Scrub = Callable[[str], str]
"""Removes secrets from a string before it is shown (the app's ``_scrub``)."""

MAX_SHOWN_STEPS = 200
"""Steps listed under the verdict; a probe makes a few dozen, so this only bounds a misbehaving run."""
_MAX_FIELD = 2000
"""Longest single string shown (a cause, a URL, a body excerpt); the rest is summarised."""


@dataclass
class ProbeRun:
    """One probe of the chat's connection: its options, the steps seen so far, and the report (or why it stopped).

    ``number`` tells runs apart (steps of an older run are dropped). ``report`` and ``error`` stay ``None`` while the
    probe runs; one of them is set when it ends.
    """

    number: int
    options: ProbeOptions
    started_at: datetime
    started: float = field(default_factory=time.monotonic)
    steps: list[StepResult] = field(default_factory=list)
    report: ProbeReport | None = None
    error: str | None = None
    finished: float | None = None

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def elapsed_s(self) -> float:
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    def finish(self, report: ProbeReport | None, error: str | None) -> None:
        """Record the end of the run: its report, or the reason it produced none."""
        self.report = report
        self.error = error
        self.finished = time.monotonic()


_WORKS_STYLE = {Works.YES: "bold green", Works.NO: "bold red", Works.SERVER_ONLY: "bold yellow"}
_OUTCOME_STYLE = {Outcome.OK: "", Outcome.FAILED: "red", Outcome.SKIPPED: "dim"}


def _text(scrub: Scrub, value: str, style: str = "") -> Text:
    return Text(printable(scrub(value), _MAX_FIELD), style=style)


def _labelled(rows: Sequence[tuple[str, Text]]) -> Table:
    """``label  text`` rows, the text wrapping under itself (a hanging indent)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    for label, text in rows:
        grid.add_row(label, text)
    return grid


def _finding_rows(finding: Finding, scrub: Scrub, *, with_what: bool) -> list[tuple[str, Text]]:
    rows: list[tuple[str, Text]] = []
    if with_what:
        rows.append(("failed", _text(scrub, finding.what, "bold")))
    rows.append(("cause", _text(scrub, finding.cause)))
    if finding.fix is not None:
        rows.append(("fix", _text(scrub, finding.fix.doc)))
        if finding.fix.command:
            rows.append(("", _text(scrub, "$ " + finding.fix.command, "cyan")))
    return rows


def _details(transport: TransportReport, before: TransportReport | None, scrub: Scrub) -> RenderableType:
    """The "what failed, cause and fix" cell of one transport: the problem, then harmless notes."""
    rows: list[tuple[str, Text]] = []
    problem = transport.problem
    if problem is not None:
        if before is not None and same_finding(problem, before.problem):
            rows.append(("failed", _text(scrub, problem.what, "bold")))
            rows.append(("", Text(f"cause and fix: as for {before.transport.value}", style="italic")))
        else:
            rows += _finding_rows(problem, scrub, with_what=True)
    for note in transport.notes:
        if problem is not None and note.code is problem.code:
            continue  # the same cause at a later step: already said
        rows.append(("note", _text(scrub, f"{note.what}: {note.cause}", "dim")))
        if note.fix is not None and note.fix.command:
            rows.append(("", _text(scrub, note.fix.doc, "dim")))
            rows.append(("", _text(scrub, "$ " + note.fix.command, "dim cyan")))
    if not rows:
        return Text("-", style="dim")
    return _labelled(rows)


def render_verdict_table(report: ProbeReport, scrub: Scrub) -> Table:
    """transport | works | latency | what failed, cause and fix: one row per transport; the last column wraps."""
    table = Table(box=box.HORIZONTALS, show_lines=True, expand=True, header_style="bold", pad_edge=False)
    table.add_column("transport", no_wrap=True)
    table.add_column("works", max_width=11)
    table.add_column("latency", justify="right", no_wrap=True)
    table.add_column("what failed · cause · fix", ratio=1)
    before: TransportReport | None = None
    for transport in report.transports:
        latency = ms_text(transport.latency_ms) if transport.works is not Works.NO else "-"
        table.add_row(
            Text(transport.transport.value, style="bold"),
            Text(transport.works.value, style=_WORKS_STYLE[transport.works]),
            latency,
            _details(transport, before, scrub),
        )
        before = transport
    return table


def _header_rows(report: ProbeReport, scrub: Scrub) -> list[tuple[str, Text]]:
    return [(label, _text(scrub, text)) for label, text in header_facts(report, always_key=True)]


def render_problem(finding: Finding, scrub: Scrub) -> Table:
    """Why the probe stopped before the transports (the app server is unreachable or did not redirect)."""
    return _labelled(
        [("problem", _text(scrub, finding.what, "bold red")), *_finding_rows(finding, scrub, with_what=False)]
    )


def render_verdict(report: ProbeReport, scrub: Scrub) -> Group:
    """The whole verdict: what the app server's negotiate said, the table (or the problem), and the summary."""
    parts: list[RenderableType] = [_labelled(_header_rows(report, scrub)), Text("")]
    if report.problem is not None:
        parts.append(render_problem(report.problem, scrub))
    else:
        parts.append(render_verdict_table(report, scrub))
    parts.append(Text(""))
    gateway = no_gateway_line(report)
    if gateway is not None:
        parts.append(Text(gateway))
    style = "bold green" if report.working_profiles else "bold red"
    parts.append(Text(summary_line(report), style=style))
    if mentions_guide(report):
        parts.append(Text(f"The guide: {GUIDE_URL}", style="dim"))
    return Group(*parts)


def render_steps(steps: Sequence[StepResult], scrub: Scrub) -> Text:
    """One line per step, in the order they ended (the transports run at once, so their steps interleave)."""
    shown = steps[-MAX_SHOWN_STEPS:]
    text = Text()
    if len(steps) > len(shown):
        text.append(f"({len(steps) - len(shown)} earlier steps not shown)\n", style="dim")
    for number, step in enumerate(shown):
        if number:
            text.append("\n")
        text.append(printable(scrub(step_line(step)), _MAX_FIELD), style=_OUTCOME_STYLE[step.outcome])
    return text


class ProbeScreen(ModalScreen[None]):
    """The probe's panel over the chat: the steps as they end, then the verdict. Escape (or F2) closes it, ``r``
    probes again once the run ended.

    ``rerun`` is called for ``r``; the app calls :meth:`show_run` with the run whenever it changed.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f2", "close", "Close"),
        Binding("r", "rerun", "Probe again"),
    ]

    def __init__(self, run: ProbeRun, scrub: Scrub, rerun: Callable[[], None]) -> None:
        super().__init__()
        self.probe_run = run
        self.scrub = scrub
        self._rerun = rerun

    def compose(self) -> ComposeResult:
        with Vertical(id="probe-dialog"):
            yield Static(id="probe-title")
            yield Static(id="probe-status")
            with VerticalScroll(id="probe-body"):
                yield Static(id="probe-verdict")
                yield Static(Text("Steps", style="bold underline"), id="probe-steps-title")
                yield Static(id="probe-steps")

    def on_mount(self) -> None:
        self.set_interval(0.5, self._tick)
        self.show_run(self.probe_run)
        self.query_one("#probe-body", VerticalScroll).focus()

    def _tick(self) -> None:
        if not self.probe_run.done:
            self._show_status()

    def show_run(self, run: ProbeRun) -> None:
        """Show ``run`` (the same run with more steps, its end, or a new run)."""
        self.probe_run = run
        options = run.options
        echo = "" if options.echo else ", no echo"
        title = Text.assemble(
            _text(self.scrub, f"Probe of {redact_url(options.url)}", "bold"),
            _text(self.scrub, f"  origin {options.page_origin}, timeout {options.timeout:g} s{echo}", "dim"),
            (f", started {run.started_at:%H:%M:%S}", "dim"),
        )
        self.query_one("#probe-title", Static).update(title)
        self._show_status()
        verdict = self.query_one("#probe-verdict", Static)
        if run.report is not None:
            verdict.update(render_verdict(run.report, self.scrub))
            verdict.display = True
        elif run.error is not None:
            verdict.update(_labelled([("problem", _text(self.scrub, run.error, "bold red"))]))
            verdict.display = True
        else:
            verdict.display = False
        self.query_one("#probe-steps-title", Static).display = run.done
        steps = render_steps(run.steps, self.scrub) if run.steps else Text("waiting for the first answer…", "dim")
        self.query_one("#probe-steps", Static).update(steps)

    def _show_status(self) -> None:
        run = self.probe_run
        count = f"{len(run.steps)} step{'s' if len(run.steps) != 1 else ''}"
        if not run.done:
            status = Text.assemble(
                ("Probing… ", "bold yellow"),
                f"{count} so far, {run.elapsed_s:.1f} s — the chat stays connected; Escape closes this view "
                "and the probe goes on",
            )
        elif run.report is not None:
            status = Text.assemble(
                ("Done ", "bold"),
                f"in {run.elapsed_s:.1f} s, {count}. ",
                (summary_line(run.report), "bold"),
                " r probes again, Escape closes.",
            )
        else:
            status = Text.assemble(("The probe stopped. ", "bold red"), "r probes again, Escape closes.")
        self.query_one("#probe-status", Static).update(status)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_rerun(self) -> None:
        if self.probe_run.done:
            self._rerun()
