"""``chat probe``: check an app server and the APIM in front of its SignalR Service, transport by transport (or,
for an app server on Azure Web PubSub, the one WebSocket through its client access URL).

    chat probe [--url http://localhost:5000/chat] [--subscription-key KEY] [--origin URL] [--no-echo] [--json]
               [--timeout S]

``--url`` and ``--subscription-key`` fall back to ``CHAT_URL`` and ``APIM_SUBSCRIPTION_KEY`` (and ``./.env``) as for
``chat``. Prints the verdict table (or, with ``--json``, one JSON document) on stdout. Exit 0 when every transport of
at least one APIM profile works (Web PubSub: its WebSocket, echo included), 1 otherwise, 2 for bad options. Keys and
tokens are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import NoReturn

from signalr.connection_string import is_http_url
from signalr.redact import redact_text

from .checks import run_probe
from .model import DEFAULT_TIMEOUT, ProbeOptions, StepResult, origin_of
from .report import exit_code, render_table, report_json, step_line

__all__ = ["MAX_TIMEOUT", "ProbeUsageError", "main", "parse_probe_options"]

DEFAULT_URL = "http://localhost:5000/chat"
MAX_TIMEOUT = 120.0


class ProbeUsageError(Exception):
    """An unusable option; the message names it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ProbeUsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chat probe",
        description="Run every request a SignalR client makes through the app server's redirect (and the APIM in "
        "front of the service), per transport, and say which transports work, what breaks the others and how to "
        "fix it. Exit 0 when the transports of one APIM profile (websocket, or sse-lp) all work, 1 otherwise. An app "
        "server on Azure Web PubSub is checked through its client access URL: the WebSocket with the subprotocol "
        "json.reliable.webpubsub.azure.v1, the connected message and an echo event (profile webpubsub).",
    )
    parser.add_argument("--url", help=f"the app server's hub URL (env CHAT_URL; default {DEFAULT_URL})")
    parser.add_argument(
        "--subscription-key",
        help="APIM subscription key, sent as the Ocp-Apim-Subscription-Key header (env APIM_SUBSCRIPTION_KEY); "
        "browsers cannot send it on preflights: put ?subscription-key=KEY in --url to probe the browser path",
    )
    parser.add_argument("--origin", help="the web page's origin for the CORS checks (default: the app server's)")
    parser.add_argument(
        "--no-echo", action="store_true", help="skip the echo round trip (for hubs or app servers other than Chat's)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"bound on every single wait, in seconds (default {DEFAULT_TIMEOUT:g}; the whole run takes at most "
        "about 7 times this)",
    )
    return parser


def parse_probe_options(argv: list[str], environ: dict[str, str] | None = None) -> tuple[ProbeOptions, bool]:
    """The probe's options and whether ``--json`` was given; raises :class:`ProbeUsageError`."""
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    url = args.url if args.url is not None else env.get("CHAT_URL") or DEFAULT_URL
    if not is_http_url(url):
        raise ProbeUsageError(f"--url must be an absolute http:// or https:// URL of the hub, e.g. {DEFAULT_URL}")
    origin = args.origin
    if origin is not None:
        if not is_http_url(origin):
            raise ProbeUsageError("--origin must be an http:// or https:// origin, e.g. https://chat.example.com")
        origin = origin_of(origin)
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise ProbeUsageError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds")
    key = args.subscription_key if args.subscription_key is not None else env.get("APIM_SUBSCRIPTION_KEY")
    if key is not None and (not key.strip() or any(c in key for c in "\r\n")):
        raise ProbeUsageError("--subscription-key must be a non-empty single-line value")
    options = ProbeOptions(
        url=url, subscription_key=key or None, origin=origin, echo=not args.no_echo, timeout=args.timeout
    )
    return options, bool(args.json)


def main(argv: list[str]) -> int:
    """Entry point of ``chat probe`` (``argv`` without ``probe``): 0, 1 or 2 as the module docstring says."""
    try:
        options, as_json = parse_probe_options(argv)
    except ProbeUsageError as exc:
        print(f"chat probe: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    progress = None
    if not as_json and sys.stderr.isatty():

        def progress(step: StepResult) -> None:
            print(step_line(step), file=sys.stderr, flush=True)

    report = asyncio.run(run_probe(options, on_step=progress))
    if as_json:
        print(redact_text(json.dumps(report_json(report), indent=2)))
    else:
        sys.stdout.write(render_table(report))
    sys.stdout.flush()
    return exit_code(report)
