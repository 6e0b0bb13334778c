"""``chat probe``: run every request a SignalR client makes through the app server's redirect (and so through APIM),
per transport, and say which transports work, which APIM setting breaks the others, and how to fix it. When the app
server answers for Azure Web PubSub, probe its one transport instead: the WebSocket through the client access URL
(:mod:`chat.probe.webpubsub_checks`, :mod:`chat.probe.webpubsub_verdict`).

Public API (stable; the TUI and the command line use only this)::

    report = await run_probe(ProbeOptions(url="http://localhost:5000/chat"), on_step=print_step)
    print(render_table(report))       # or json.dumps(report_json(report))
    sys.exit(exit_code(report))       # 0: one APIM profile (webpubsub for Web PubSub) works entirely; 1: none does

:mod:`chat.probe.model` holds the records (no I/O), :mod:`chat.probe.checks` the requests, :mod:`chat.probe.verdict`
the conclusions (pure) and :mod:`chat.probe.report` the rendering.
"""

from __future__ import annotations

from .checks import SUBSCRIPTION_KEY_HEADER, run_probe
from .model import (
    DEFAULT_TIMEOUT,
    Cause,
    Finding,
    Fix,
    NegotiateFindings,
    OnStep,
    Outcome,
    ProbeOptions,
    ProbeReport,
    Profile,
    Service,
    Step,
    StepResult,
    Target,
    TokenInfo,
    TransportReport,
    Works,
)
from .report import exit_code, render_table, report_json, step_line, summary_line
from .verdict import GUIDE_URL

__all__ = [
    "DEFAULT_TIMEOUT",
    "GUIDE_URL",
    "SUBSCRIPTION_KEY_HEADER",
    "Cause",
    "Finding",
    "Fix",
    "NegotiateFindings",
    "OnStep",
    "Outcome",
    "ProbeOptions",
    "ProbeReport",
    "Profile",
    "Service",
    "Step",
    "StepResult",
    "Target",
    "TokenInfo",
    "TransportReport",
    "Works",
    "exit_code",
    "render_table",
    "report_json",
    "run_probe",
    "step_line",
    "summary_line",
]
