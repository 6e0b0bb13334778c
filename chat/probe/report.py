"""A :class:`~chat.probe.model.ProbeReport` as text for people (:func:`render_table`, at most 100 columns) and as one
JSON document for scripts (:func:`report_json`), and the exit code of ``chat probe`` (:func:`exit_code`).

Both only show what the report holds, and the report holds no secret (its strings are redacted when recorded); the
text is passed through :func:`signalr.redact.redact_text` once more on the way out all the same.
"""

from __future__ import annotations

import dataclasses
import textwrap
from enum import Enum
from typing import Any

from signalr.negotiate import TransportType
from signalr.redact import redact_text

from .model import (
    PROFILE_TRANSPORTS,
    Finding,
    Outcome,
    ProbeReport,
    Service,
    Step,
    StepResult,
    Target,
    TransportReport,
    Works,
)
from .verdict import GUIDE_URL

__all__ = ["WIDTH", "exit_code", "header_facts", "no_gateway_line", "render_table", "report_json"]

WIDTH = 100
_NAME = 18
_WORKS = 17
_LATENCY = 9
_INDENT = "  "


def exit_code(report: ProbeReport) -> int:
    """0 when every transport of at least one APIM profile works (browsers included), else 1."""
    return 0 if report.working_profiles else 1


def ms_text(value: float | None) -> str:
    """A duration in milliseconds as people read it: ``4.2 ms``, ``120 ms``, ``12.5 s`` (``-`` when unknown)."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.1f} ms"
    if value < 10_000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.1f} s"


def duration_text(seconds: int) -> str:
    """A token lifetime or time left: ``90 s``, ``59 min``, ``2.0 h``."""
    if abs(seconds) < 120:
        return f"{seconds} s"
    if abs(seconds) < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def _wrap(label: str, text: str, indent: str = _INDENT) -> list[str]:
    """``label`` then ``text`` wrapped at :data:`WIDTH`, continuation lines aligned after the label."""
    first = f"{indent}{label}"
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=first,
        subsequent_indent=" " * len(first),
        break_on_hyphens=False,
        break_long_words=True,
    ) or [first.rstrip()]


def step_summary(step: StepResult) -> str:
    """``METHOD path -> status`` (or the network error) of one step, e.g. ``GET /client/ -> 404 (APIM: …)``."""
    target = f"{step.method} {_path(step.url)}".strip() if step.method else step.step.value
    if step.status is not None:
        answer = str(step.status)
        if step.apim is not None:
            answer += f" (APIM: {step.apim})" if step.apim else " (APIM)"
    elif step.error is not None:
        answer = step.error.value
    else:
        answer = step.outcome.value
    return f"{target} -> {answer}"


def _path(url: str) -> str:
    if "://" not in url:
        return url
    rest = url.split("://", 1)[1]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    return path.split("?", 1)[0]


def header_facts(report: ProbeReport, *, always_key: bool = False) -> list[tuple[str, str]]:
    """``(label, text)`` rows about the app server's negotiate: its answer (the redirect, or for Web PubSub the hub
    and the client access URL), where that points, the subscription key in its query (``always_key``: also say when
    it is not there) and the token's claims. The table and the TUI's panel both show these."""
    found = report.negotiate
    step = found.step
    took = f" in {ms_text(step.elapsed_ms)}" if step.elapsed_ms is not None else ""
    webpubsub = found.service is Service.WEBPUBSUB and found.redirect
    if webpubsub:
        what = f"{step_summary(step)}{took}: Azure Web PubSub, hub {found.hub}, client access URL {found.redirect_url}"
    elif found.redirect:
        what = f"{step_summary(step)}{took}: redirect to {shown_url(found.redirect_url)}"
    else:
        what = f"{step_summary(step)}{took}" + (f": {step.detail}" if step.detail else "")
    rows = [("app server", what)]
    if found.redirect:
        kind = f"{found.host_kind.value}; " if found.host_kind is not None else ""
        evidence = f" ({found.target_evidence})" if found.target_evidence else ""
        label = "client URL" if webpubsub else "redirect"
        rows.append((label, f"{found.redirect_host}: {kind}{found.target.value}{evidence}"))
        where = "the client access URL's" if webpubsub else "the redirect's"
        if found.query_key:
            rows.append(("key", f"a subscription key is in {where} query (browsers can pass APIM)"))
        elif always_key:
            rows.append(("key", f"subscription key not in {where} query"))
    token = found.token
    if token is not None:
        parts = []
        if token.expires_in_s is not None:
            parts.append(f"expires in {duration_text(token.expires_in_s)}")
        if token.lifetime_s is not None:
            parts.append(f"lifetime {duration_text(token.lifetime_s)}")
        if token.audience is not None:
            parts.append(f"audience {token.audience}")
        if token.problem:
            parts.append(f"problem: {token.problem}")
        rows.append(("token", ", ".join(parts) or "no claims"))
    return rows


def _header(report: ProbeReport) -> list[str]:
    echo = "" if report.echo else ", no echo"
    lines = _wrap("chat probe ", f"{report.url} (origin {report.origin}, timeout {report.timeout_s:g} s{echo})", "")
    for label, text in header_facts(report):
        lines += _wrap(f"{label:<13}", text, indent="")
    return lines


def no_gateway_line(report: ProbeReport) -> str | None:
    """The sentence saying that no gateway is in between, when the redirect goes straight to the service."""
    if report.negotiate.target is Target.SERVICE:
        return "No gateway in between: the app server's redirect goes straight to the service."
    if report.negotiate.target is Target.WEBPUBSUB:
        return "No gateway in between: the client access URL goes straight to the service."
    return None


def _command_lines(command: str, indent: str) -> list[str]:
    """A shell command in lines of at most :data:`WIDTH` columns, continued with `` \\`` so it can be pasted."""
    lines: list[str] = []
    current = ""
    for word in command.split(" "):
        if current and len(indent) + len(current) + 1 + len(word) + 2 > WIDTH:
            lines.append(f"{indent}{current} \\")
            current = "    " + word
        else:
            current = f"{current} {word}" if current else word
    lines.append(f"{indent}{current}")
    return lines


def _finding_lines(finding: Finding, label: str = "cause: ") -> list[str]:
    lines = _wrap(label, finding.cause)
    if finding.fix is not None:
        pad = " " * len(label)
        lines += _wrap("fix:" + pad[4:], finding.fix.doc)
        if finding.fix.command:
            lines += _command_lines(finding.fix.command, _INDENT + pad)
    return lines


def same_finding(a: Finding | None, b: Finding | None) -> bool:
    """Whether two transports failed for the same reason (the table then says \"as for\" the first)."""
    return a is not None and b is not None and (a.code, a.what, a.fix) == (b.code, b.what, b.fix)


def _row(transport: TransportReport, before: TransportReport | None) -> list[str]:
    latency = ms_text(transport.latency_ms) if transport.works is not Works.NO else "-"
    what = transport.problem.what if transport.problem is not None else "-"
    head = f"{transport.transport.value:<{_NAME}}{transport.works.value:<{_WORKS}}{latency:>{_LATENCY}}  "
    lines = textwrap.wrap(
        what, width=WIDTH, initial_indent=head, subsequent_indent=" " * len(head), break_on_hyphens=False
    ) or [head.rstrip()]
    if transport.problem is not None:
        if before is not None and same_finding(transport.problem, before.problem):
            lines += _wrap("", f"cause and fix: as for {before.transport.value}")
        else:
            lines += _finding_lines(transport.problem)
    problem = transport.problem
    for note in transport.notes:
        if problem is not None and note.code is problem.code:
            continue  # the same cause at a later step: already said
        lines += _wrap("note:  ", f"{note.what}: {note.cause}")
        if note.fix is not None and note.fix.command:
            lines += _wrap("       ", note.fix.doc)
            lines += _command_lines(note.fix.command, _INDENT + "       ")
    return lines


def shown_url(url: str) -> str:
    """The redirect URL without the parameters only the service reads (``negotiateVersion``, ``asrs_request_id``)."""
    base, _, query = url.partition("?")
    kept = [p for p in query.split("&") if p and not p.lower().startswith(("negotiateversion=", "asrs_request_id="))]
    return base + ("?" + "&".join(kept) if kept else "")


def _fails(report: ProbeReport, kind: TransportType) -> bool:
    transport = report.transport(kind)
    return transport is None or transport.works is not Works.YES


def mentions_guide(report: ProbeReport) -> bool:
    """Whether a cause or fix of the report refers to the guide, so its link must be shown."""
    findings = [report.problem] + [f for t in report.transports for f in (t.problem, *t.notes)]
    return any(f is not None and "the guide" in f"{f.cause} {f.fix.doc if f.fix else ''}" for f in findings)


def summary_line(report: ProbeReport) -> str:
    """One sentence: which APIM profile works (exit code 0), or why none does; the table's last line and the TUI's."""
    profiles = report.working_profiles
    if profiles:
        return f"Works as APIM profile {' and '.join(p.value for p in profiles)}."
    if report.problem is not None:
        return f"No transport was tried: {report.problem.what}."
    if report.service is Service.WEBPUBSUB:
        broken = next((t.problem for t in report.transports if t.problem is not None), None)
        what = broken.what if broken is not None else "it did not connect"
        return f"Web PubSub's WebSocket does not work: {what}."
    server_side = [
        p.value
        for p, kinds in PROFILE_TRANSPORTS.items()
        if all((t := report.transport(k)) is not None and t.works is not Works.NO for k in kinds)
    ]
    if server_side:
        return f"Profile {' and '.join(server_side)} works for server-side clients only: browsers fail."
    parts = []
    for profile, kinds in PROFILE_TRANSPORTS.items():
        failed = [k.value for k in kinds if _fails(report, k)]
        verb = "fails" if len(failed) == 1 else "fail"
        parts.append(f"for {profile.value}, {' and '.join(failed)} {verb}")
    return f"No APIM profile works: {'; '.join(parts)}."


def render_table(report: ProbeReport) -> str:
    """The header (app-server negotiate, redirect, token), the verdict table and the summary line; ends with a
    newline. No line is longer than :data:`WIDTH` columns."""
    lines = _header(report)
    lines.append("")
    if report.problem is not None:
        lines += _finding_lines(report.problem, "problem: ")
    else:
        lines.append(f"{'transport':<{_NAME}}{'works':<{_WORKS}}{'latency':>{_LATENCY}}  what failed")
        before: TransportReport | None = None
        for transport in report.transports:
            lines += _row(transport, before)
            before = transport
    lines.append("")
    if mentions_guide(report):
        lines.append(f"The guide: {GUIDE_URL}")
    gateway = no_gateway_line(report)
    if gateway is not None:
        lines.append(gateway)
    lines += _wrap("", f"{summary_line(report)} Exit {exit_code(report)}.", "")
    text = "\n".join(line.rstrip() for line in lines) + "\n"
    return redact_text(text)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, str):
        return redact_text(value)  # already redacted when recorded; once more, as the table is
    return value


def report_json(report: ProbeReport) -> dict[str, Any]:
    """The report as plain JSON types: every field, per transport the step its problem is at (``failed_step``),
    ``working_profiles`` and ``exit_code``. Enums are their values, times are milliseconds rounded to 0.1."""
    out: dict[str, Any] = _plain(report)
    for entry, transport in zip(out["transports"], report.transports, strict=True):
        step = transport.problem.step if transport.problem is not None else None
        entry["failed_step"] = step.value if step is not None else None
    out["working_profiles"] = [p.value for p in report.working_profiles]
    out["exit_code"] = exit_code(report)
    return out


# Kept for callers that show one step as it happens (the TUI's progress line).
def step_line(step: StepResult) -> str:
    """One line about one step: ``[transport] step: METHOD path -> status in N ms``."""
    who = f"{step.transport.value} " if step.transport is not None else ""
    took = f" in {ms_text(step.elapsed_ms)}" if step.elapsed_ms is not None else ""
    mark = {Outcome.OK: "ok", Outcome.FAILED: "FAILED", Outcome.SKIPPED: "skipped"}[step.outcome]
    summary = step_summary(step) if step.step is not Step.HANDSHAKE or step.status is not None else step.step.value
    return redact_text(f"{who}{step.step.value}: {summary}{took} [{mark}]")
