"""From observations to conclusions, pure: each transport's steps become a :class:`~chat.probe.model.TransportReport`
naming the failing step, the cause in APIM terms and the fix.

The causes follow what APIM and SignalR Service answer (docs/apim.md): APIM's own 404 envelope means no operation
matched (§2), its 401 envelope a missing or wrong subscription key (§3), its 500 a backend it could not reach (§2),
an upgrade answered without 101 an HTTP API on ``client/`` (§2 rule 5), an event stream whose first byte never comes a
response APIM buffers (§4), a 401 or 404 on a preflight a browser that cannot get through (§5), APIM's 404 on
``DELETE`` the guide's missing operation (§6). The fixes name the step of Microsoft's guide
(:data:`GUIDE_URL`) and the ``apim-gateway export`` command that writes a configuration without the fault.

A transport *works* when no step failed; *server-side only* when only the browser's part failed (a preflight, or
CORS headers missing on an answer); otherwise it does not work, and :attr:`TransportReport.problem` says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from signalr.negotiate import TransportType
from signalr.redact import redact_url

from .model import (
    ALL_TRANSPORTS,
    Cause,
    Finding,
    Fix,
    HostKind,
    NegotiateFindings,
    NetError,
    ProbeOptions,
    ProbeReport,
    Profile,
    Service,
    Step,
    StepResult,
    Target,
    TransportReport,
    Works,
)

__all__ = [
    "CONNECTION_ERRORS",
    "GUIDE_SECTIONS",
    "GUIDE_URL",
    "Context",
    "app_problem",
    "azure_url_for",
    "conclude",
    "export_command",
    "judge_transport",
    "profile_of",
    "service_url_for",
]

GUIDE_URL = "https://learn.microsoft.com/azure/azure-signalr/signalr-howto-work-with-apim"
GUIDE_SECTIONS: dict[Profile, str] = {
    Profile.WEBSOCKET: 'the guide\'s section "Configure APIs when client connects with WebSocket transport"',
    Profile.SSE_LP: "the guide's section \"Configure APIs when client connects with ServerSentEvents or LongPolling "
    'transport"',
}
SERVICE_PLACEHOLDER = "https://<resource>.service.signalr.net"
PREFLIGHTS = frozenset({Step.NEGOTIATE_PREFLIGHT, Step.POLL_PREFLIGHT, Step.SEND_PREFLIGHT, Step.DELETE_PREFLIGHT})
# Steps after the transport worked: their failure is a note, not the transport's failure.
AFTERWARDS = frozenset({Step.CLOSE, Step.DELETE, Step.DELETE_PREFLIGHT})
CONNECTION_ERRORS = frozenset({NetError.REFUSED, NetError.DNS, NetError.CONNECT_TIMEOUT})
"""Errors that mean nothing answered at that address."""


def profile_of(kind: TransportType) -> Profile:
    """The APIM profile that serves ``kind``."""
    return Profile.WEBSOCKET if kind is TransportType.WEBSOCKETS else Profile.SSE_LP


def service_url_for(audience: str | None) -> str:
    """``https://<host>`` of the service the token is for, when that is an Azure SignalR host; else a placeholder."""
    return azure_url_for(audience, ".service.signalr.net", SERVICE_PLACEHOLDER)


def azure_url_for(audience: str | None, host_suffix: str, placeholder: str) -> str:
    """``https://<host>`` of a token's audience when it is an https URL on a host ending in ``host_suffix`` (an
    Azure resource of that kind), else ``placeholder``."""
    if audience:
        try:
            parts = urlsplit(audience)
        except ValueError:
            return placeholder
        host = (parts.hostname or "").lower()
        if parts.scheme == "https" and host.endswith(host_suffix):
            return f"https://{host}"
    return placeholder


def export_command(
    profile: Profile,
    service_url: str = SERVICE_PLACEHOLDER,
    *,
    with_delete: bool = True,
    subscription: bool = False,
    hub: str = "chat",
) -> str:
    """The ``apim-gateway export`` command that writes ``profile`` as Bicep (``--hub`` for another hub than ``chat``,
    ``--with-delete`` for ``sse-lp`` unless told otherwise, ``--subscription-required`` when asked)."""
    parts = ["apim-gateway", "export", "--profile", profile.value]
    if hub != "chat":
        parts += ["--hub", hub]
    parts += ["--format", "bicep", "--service-url", service_url]
    if profile is Profile.SSE_LP and with_delete:
        parts.append("--with-delete")
    if subscription:
        parts.append("--subscription-required")
    return " ".join(parts)


@dataclass(frozen=True)
class Context:
    """What the verdict needs besides a transport's own steps."""

    negotiate: NegotiateFindings
    subscription_key: bool
    """Whether the probe sent a subscription key (as a header)."""
    origin: str
    service_url: str = SERVICE_PLACEHOLDER
    configured: Profile | None = None
    """The profile the gateway looks configured for (from all transports' answers), if that is clear."""
    app_browser: Finding | None = None
    """Why a browser page on another origin cannot even negotiate with the app server, if it cannot."""

    @property
    def host(self) -> str:
        return self.negotiate.redirect_host or "the redirect's host"

    def fix(
        self, doc: str, profile: Profile | None = None, *, with_delete: bool = True, subscription: bool = False
    ) -> Fix:
        command = (
            export_command(profile, self.service_url, with_delete=with_delete, subscription=subscription)
            if profile is not None
            else ""
        )
        return Fix(doc, command)


def _short(message: str) -> str:
    """APIM's message up to its first sentence's end (``Access denied due to missing subscription key.``)."""
    end = message.find(". ")
    return message[: end + 1] if end > 0 else message


def _answer(step: StepResult) -> str:
    """``METHOD /path -> status (APIM: message)`` or the network error: what failed, in one line."""
    path = ""
    if step.url:
        try:
            path = urlsplit(step.url).path or "/"
        except ValueError:
            path = "?"
    target = f"{step.method} {path}".strip() or step.step.value
    if step.status is not None:
        answer = str(step.status)
        if step.apim is not None:
            answer += f" (APIM: {_short(step.apim)})" if step.apim else " (APIM)"
        elif step.body:
            answer += f" ({step.body[:60]})"
    elif step.error is not None:
        answer = step.error.value
    else:
        answer = step.detail or step.outcome.value
    return f"{step.step.value}: {target} -> {answer}"


def _key_finding(step: StepResult, ctx: Context) -> Finding:
    profile = profile_of(step.transport) if step.transport is not None else None
    missing = "missing" in (step.apim or "").lower() or not ctx.subscription_key
    if missing:
        return Finding(
            Cause.SUBSCRIPTION_KEY_MISSING,
            step.step,
            _answer(step),
            "the API requires a subscription key and none was sent (APIM's 401, docs/apim.md §3)",
            ctx.fix(
                "pass the key of an active subscription: chat probe --subscription-key KEY (browsers: add it to the "
                "hub URL as the query parameter subscription-key, the app server copies it into the redirect), or "
                "turn 'Subscription required' off on the APIs as the guide's demo does",
                profile,
            ),
        )
    return Finding(
        Cause.SUBSCRIPTION_KEY_INVALID,
        step.step,
        _answer(step),
        "the subscription key was refused: it is not a key of an active subscription to this API (APIM's 401, "
        "docs/apim.md §3)",
        ctx.fix("use the primary or secondary key of an active subscription whose scope includes these APIs"),
    )


def _preflight_finding(step: StepResult, ctx: Context) -> Finding:
    kind = step.transport
    profile = profile_of(kind) if kind is not None else None
    section = GUIDE_SECTIONS[profile] if profile is not None else "the guide"
    what = _answer(step)
    if step.status == 401 and step.apim is not None:
        return Finding(
            Cause.PREFLIGHT_SUBSCRIPTION,
            step.step,
            what,
            "OPTIONS preflight answered 401 without CORS headers: the API requires a subscription and browsers "
            "cannot send the key on a preflight (docs/apim.md §3, §5); server-side clients that send the key header "
            "are not affected",
            ctx.fix(
                "browsers need the key in the query: add it to the hub URL as the query parameter "
                "subscription-key (the app server copies it into the redirect URL), or turn 'Subscription "
                "required' off on the APIs as the guide's demo does",
                profile,
            ),
        )
    if step.status == 404 and step.apim is not None:
        return Finding(
            Cause.PREFLIGHT_NOT_FOUND,
            step.step,
            what,
            "OPTIONS preflight answered APIM's 404: the API has no OPTIONS operation, so browsers fail with a CORS "
            "error (docs/apim.md §5); server-side clients do not preflight",
            ctx.fix(f"add the OPTIONS operations of {section} (they forward preflights to the service)", profile),
        )
    if step.status is None:
        return Finding(
            Cause.CORS_REFUSED,
            step.step,
            what,
            f"the preflight got no answer from {ctx.host} ({step.detail or 'network error'})",
            ctx.fix(f"check that {ctx.host} accepts OPTIONS requests", profile),
        )
    problem = step.cors.problem if step.cors is not None and step.cors.problem else f"status {step.status}"
    return Finding(
        Cause.CORS_REFUSED,
        step.step,
        what,
        f"a browser at {ctx.origin} is refused: {problem}; SignalR Service answers preflights itself when APIM "
        f"forwards them, so a cors policy at another scope or a proxy is in the way (docs/apim.md §5)",
        ctx.fix(
            "allow the page's origin in the service's CORS settings and remove cors policies that rewrite "
            "Access-Control-* headers, or pass --origin with the page's real origin",
            profile,
        ),
    )


def _unreachable(step: StepResult, ctx: Context) -> Finding:
    found = ctx.negotiate
    reason = step.error.value if step.error is not None else "no answer"
    if found.host_kind is HostKind.APIM:
        return Finding(
            Cause.GATEWAY_UNREACHABLE,
            step.step,
            _answer(step),
            f"the APIM gateway {ctx.host}, where the app server's redirect points, cannot be reached ({reason})",
            ctx.fix("check the APIM instance name in the ClientEndpoint of the app server's connection string"),
        )
    return Finding(
        Cause.REDIRECT_UNREACHABLE,
        step.step,
        _answer(step),
        f"nothing answers at {ctx.host}, where the app server's redirect points ({reason}): the gateway is down, "
        "or the ClientEndpoint in the app server's connection string names the wrong host or port",
        ctx.fix(
            "start the gateway, or set ClientEndpoint=https://<apim>.azure-api.net in the app server's connection "
            "string (the value apim-gateway export prints)"
        ),
    )


def _backend_finding(step: StepResult, ctx: Context) -> Finding | None:
    """A failure the gateway's backend caused: APIM's 500, a Host it refused, or an answer no SignalR gives."""
    kind = step.transport
    profile = profile_of(kind) if kind is not None else None
    what = _answer(step)
    if step.apim is not None and step.status is not None and step.status >= 500:
        return Finding(
            Cause.WRONG_BACKEND,
            step.step,
            what,
            "APIM could not reach its backend (its 500 envelope): the API's Web service URL does not point at a "
            "running SignalR Service (docs/apim.md §2, §4)",
            ctx.fix(f"set the Web service URL to {ctx.service_url}/client/… as the guide does", profile),
        )
    if "host header" in step.body.lower() and step.status in (400, 404, 421):
        return Finding(
            Cause.HOST_NOT_REWRITTEN,
            step.step,
            what,
            "the service refused the request's Host header: the gateway forwarded its own Host instead of the "
            "service's host name, and a multi-tenant service finds the resource by Host (docs/apim.md §4)",
            ctx.fix(
                "let APIM set Host to the backend's (remove set-header policies that write Host; no proxy in between "
                "may keep the client's Host)",
                profile,
            ),
        )
    if ctx.negotiate.target is Target.GATEWAY and step.step is Step.NEGOTIATE and step.apim is None:
        if step.status not in (401, 403):
            return Finding(
                Cause.WRONG_BACKEND,
                step.step,
                what,
                "the gateway forwarded negotiate, but what answered is not SignalR Service: the API's Web service "
                "URL points elsewhere (docs/apim.md §1, §4)",
                ctx.fix(f"set the Web service URL to {ctx.service_url}/client/… as the guide does", profile),
            )
    return None


def _wrong_endpoint(step: StepResult, ctx: Context) -> Finding:
    found = ctx.negotiate
    return Finding(
        Cause.CLIENT_ENDPOINT_WRONG,
        step.step,
        _answer(step),
        f"the app server's redirect points at {ctx.host}, which is {found.target.value} ({found.target_evidence}): "
        "the ClientEndpoint in its connection string is wrong",
        ctx.fix(
            "set ClientEndpoint to the gateway's URL (https://<apim>.azure-api.net, printed by apim-gateway export) "
            "in the app server's connection string"
        ),
    )


def _profile_mismatch(step: StepResult, ctx: Context) -> Finding | None:
    """APIM's 404 on ``client/`` (the websocket profile) or an upgrade without 101 (the sse-lp profile)."""
    kind = step.transport
    if kind is None:
        return None
    wanted = profile_of(kind)
    other = Profile.SSE_LP if wanted is Profile.WEBSOCKET else Profile.WEBSOCKET
    what = _answer(step)
    if kind is TransportType.WEBSOCKETS and step.step is Step.CONNECT and step.status in (200, 204):
        return Finding(
            Cause.UPGRADE_REFUSED,
            step.step,
            what,
            f"WebSocket upgrade refused: APIM answered {step.status}, not 101, because client/ is an HTTP API — the "
            "sse-lp profile is configured (APIM forwards the upgrade as a plain GET, docs/apim.md §2 rule 5); one "
            "instance serves one profile",
            ctx.fix(
                "use ServerSentEvents or LongPolling with this instance, or set up the APIs of "
                f"{GUIDE_SECTIONS[wanted]} on an instance of its own",
                wanted,
            ),
        )
    if step.status == 404 and step.apim is not None and step.step in (Step.CONNECT, Step.HANDSHAKE, Step.ECHO):
        if kind is TransportType.WEBSOCKETS:
            return Finding(
                Cause.NO_CONNECT_OPERATION,
                step.step,
                what,
                "no WebSocket API on client/: APIM has no route for the upgrade (docs/apim.md §2)",
                ctx.fix(f"add the WebSocket API of {GUIDE_SECTIONS[wanted]}", wanted),
            )
        operation = f"{step.method} /" if step.method else "GET /"
        configured = " — the websocket profile is configured" if ctx.configured is Profile.WEBSOCKET else ""
        return Finding(
            Cause.NO_CONNECT_OPERATION,
            step.step,
            what,
            f"no HTTP operation `{operation}` on client/{configured} (APIM's 404, docs/apim.md §2); one instance "
            "serves one profile",
            ctx.fix(
                f"use WebSockets with this instance, or set up the APIs of {GUIDE_SECTIONS[wanted]} (they "
                f"replace the {other.value} profile's APIs on client/)",
                wanted,
            ),
        )
    return None


def _step_finding(step: StepResult, ctx: Context) -> Finding:
    """Why a failed non-preflight step failed."""
    kind = step.transport
    profile = profile_of(kind) if kind is not None else None
    what = _answer(step)
    if step.status is None and step.error in CONNECTION_ERRORS and step.step is Step.NEGOTIATE:
        return _unreachable(step, ctx)
    if step.status == 401 and step.apim is not None:
        return _key_finding(step, ctx)
    if ctx.negotiate.target in (Target.OTHER, Target.APP_SERVER) and step.step is Step.NEGOTIATE:
        return _wrong_endpoint(step, ctx)
    mismatch = _profile_mismatch(step, ctx)
    if mismatch is not None:
        return mismatch
    if step.step is Step.NEGOTIATE and step.status == 404 and step.apim is not None:
        return Finding(
            Cause.NO_NEGOTIATE_OPERATION,
            step.step,
            what,
            "no operation POST on client/negotiate (APIM's 404): the negotiate API or operation is missing",
            ctx.fix(f"add the negotiate operations of {GUIDE_SECTIONS[profile or Profile.WEBSOCKET]}", profile),
        )
    if step.step is Step.NEGOTIATE and "does not offer" in step.detail:
        return Finding(
            Cause.TRANSPORT_NOT_OFFERED,
            step.step,
            what,
            f"the service's negotiate does not offer this transport: {step.detail}",
            ctx.fix("enable the transport on the service (or the app server's hub options)"),
        )
    backend = _backend_finding(step, ctx)
    if backend is not None:
        return backend
    if kind is TransportType.SERVER_SENT_EVENTS and step.step is Step.CONNECT and step.error is NetError.TIMEOUT:
        where = "APIM" if ctx.negotiate.target is Target.GATEWAY else "a proxy between client and service"
        return Finding(
            Cause.SSE_BUFFERED,
            step.step,
            what,
            f"SSE buffered: `GET /` buffers the response — {where} holds the event stream until 8 KB or its end, so "
            f'the first byte never comes ({step.detail}); add <forward-request buffer-response="false" /> '
            "(docs/apim.md §4)",
            ctx.fix(
                f"{GUIDE_SECTIONS[Profile.SSE_LP]}: the connect GET operation with <forward-request "
                'buffer-response="false" /> in its backend section',
                Profile.SSE_LP,
            ),
        )
    if step.status == 401:
        return Finding(
            Cause.TOKEN_REJECTED,
            step.step,
            what,
            "the service refused the access token (401 without APIM's envelope): the app server signs with an "
            "AccessKey the service does not have, or its clock is off",
            ctx.fix("copy the service's current connection string (Keys blade) into the app server's settings"),
        )
    if step.step is Step.HANDSHAKE:
        return Finding(
            Cause.HANDSHAKE_FAILED,
            step.step,
            what,
            f"the hub handshake failed: {step.detail or 'no reply'}",
            ctx.fix("check the app server's log: the hub refused the connection or did not answer", profile),
        )
    if step.step is Step.ECHO:
        return Finding(
            Cause.ECHO_FAILED,
            step.step,
            what,
            f"the echo round trip failed: {step.detail or 'no reply'}",
            ctx.fix(
                "the app server must answer the hub's echo (its upstream reachable by the service); for another "
                "hub than Chat, run chat probe --no-echo"
            ),
        )
    if step.status is None and step.error is not None:
        return Finding(
            Cause.UNEXPECTED,
            step.step,
            what,
            f"{step.step.value} failed: {step.error.value}{f' ({step.detail})' if step.detail else ''}",
        )
    return Finding(
        Cause.UNEXPECTED,
        step.step,
        what,
        f"{step.step.value} failed: {step.detail or 'unexpected answer'}",
    )


def _note(step: StepResult, ctx: Context) -> Finding:
    """A failure after the transport worked (Close, DELETE): reported, harmless or not."""
    if step.step is Step.DELETE and step.status == 404 and step.apim is not None:
        return Finding(
            Cause.NO_DELETE_OPERATION,
            step.step,
            _answer(step),
            "no `DELETE /` operation: harmless, clients send a Close message first (docs/apim.md §6)",
            ctx.fix(
                "to close LongPolling connections at once even when a Close message is lost, add the DELETE "
                "operation the guide omits",
                Profile.SSE_LP,
            ),
            harmless=True,
        )
    if step.step in PREFLIGHTS:
        return _preflight_finding(step, ctx)
    return Finding(Cause.UNEXPECTED, step.step, _answer(step), f"{step.step.value}: {step.detail}", harmless=True)


def _cors_note(step: StepResult, ctx: Context) -> Finding | None:
    """A step that worked but whose answer a browser could not read (CORS headers missing)."""
    if step.cors is None or step.cors.problem is None:
        return None
    return Finding(
        Cause.CORS_REFUSED,
        step.step,
        _answer(step),
        f"a browser at {ctx.origin} cannot read this answer: {step.cors.problem} (docs/apim.md §5)",
        ctx.fix("allow the page's origin in the service's CORS settings; no cors policy may strip SignalR's headers"),
    )


def judge_transport(kind: TransportType, steps: Sequence[StepResult], ctx: Context) -> TransportReport:
    """The verdict for one transport from its steps, in order."""
    problem: Finding | None = None
    browser: Finding | None = None
    notes: list[Finding] = []
    for step in steps:
        if step.failed:
            if step.step in AFTERWARDS:
                notes.append(_note(step, ctx))
            elif step.step in PREFLIGHTS:
                browser = browser or _preflight_finding(step, ctx)
            else:
                problem = _step_finding(step, ctx)
                break
        elif step.ok and browser is None:
            browser = _cors_note(step, ctx)
    echo = next((s for s in steps if s.step is Step.ECHO and s.ok), None)
    latency = echo.elapsed_ms if echo is not None else None
    if latency is None:
        connect = [s.elapsed_ms or 0.0 for s in steps if s.ok and s.step in (Step.CONNECT, Step.HANDSHAKE)]
        latency = sum(connect) if len(connect) == 2 else None
    if problem is not None:
        return TransportReport(kind, Works.NO, None, tuple(steps), problem, tuple(notes))
    if not any(s.step is Step.HANDSHAKE and s.ok for s in steps):
        missing = Finding(Cause.UNEXPECTED, None, "-", "the probe ended before the handshake")
        return TransportReport(kind, Works.NO, None, tuple(steps), missing, tuple(notes))
    browser = browser or ctx.app_browser
    if browser is not None:
        return TransportReport(kind, Works.SERVER_ONLY, latency, tuple(steps), browser, tuple(notes))
    return TransportReport(kind, Works.YES, latency, tuple(steps), None, tuple(notes))


def _configured(steps: Mapping[TransportType, Sequence[StepResult]]) -> Profile | None:
    """The profile the gateway answers as: an upgrade refused with 200 means sse-lp, APIM's 404 on the event
    stream or the first poll means websocket."""

    def connect(kind: TransportType) -> StepResult | None:
        return next((s for s in steps.get(kind, ()) if s.step is Step.CONNECT), None)

    ws, sse, lp = (connect(k) for k in ALL_TRANSPORTS)
    if ws is not None and ws.status in (200, 204):
        return Profile.SSE_LP
    http_404 = [s for s in (sse, lp) if s is not None and s.status == 404 and s.apim is not None]
    if http_404 and (ws is None or ws.status == 101):
        return Profile.WEBSOCKET
    return None


def _app_preflight_finding(step: StepResult, ctx: Context) -> Finding:
    """The app server refused the CORS preflight of a page on another origin (``--origin``)."""
    problem = step.cors.problem if step.cors is not None and step.cors.problem else None
    why = problem or (step.error.value if step.error is not None else f"status {step.status}")
    return Finding(
        Cause.CORS_REFUSED,
        step.step,
        f"app server {_answer(step)}",
        f"the app server refuses a page at {ctx.origin}: {why}; browsers cannot negotiate from that origin",
        Fix("allow the page's origin in the app server's CORS settings, or serve the page from the app server"),
    )


def _confirmed_target(
    negotiate: NegotiateFindings, steps: Mapping[TransportType, Sequence[StepResult]]
) -> NegotiateFindings:
    """The findings with ``target`` corrected by what the negotiates through the redirect got: a host taken for the
    service (by the token's audience, a weak hint on one machine) whose negotiate answers 404 or 405 is not one."""
    if negotiate.target not in (Target.SERVICE, Target.UNKNOWN):
        return negotiate
    answers = [s for kind in ALL_TRANSPORTS for s in steps.get(kind, ()) if s.step is Step.NEGOTIATE]
    if answers and all(s.failed and s.apim is None and s.status in (404, 405) for s in answers):
        status = answers[0].status
        return replace(
            negotiate,
            target=Target.OTHER,
            target_evidence=f"its negotiate answered {status} without APIM's envelope",
        )
    return negotiate


def app_problem(negotiate: NegotiateFindings, options: ProbeOptions) -> Finding | None:
    """Why the run could not get past the app server, or ``None`` when it did."""
    step = negotiate.step
    if step.ok:
        return None
    what = _answer(step)
    if step.status is None:
        return Finding(
            Cause.APP_UNREACHABLE,
            step.step,
            what,
            f"the app server cannot be reached ({step.error.value if step.error else 'no answer'}): nothing "
            "listens at the --url's host and port, or it did not answer in time",
            Fix("start the app server (chat-server) or correct --url: the hub URL, e.g. http://localhost:5000/chat"),
        )
    if step.status == 404:
        cause = "the app server has no hub at this path (negotiate answered 404)"
        return Finding(
            Cause.APP_NEGOTIATE_FAILED, step.step, what, cause, Fix("check --url: the hub URL ends in /chat")
        )
    detail = step.detail or f"status {step.status}"
    setting = (
        "Azure Web PubSub connection string (Azure__WebPubSub__ConnectionString)"
        if negotiate.service is Service.WEBPUBSUB
        else "Azure SignalR connection string"
    )
    return Finding(
        Cause.APP_NEGOTIATE_FAILED,
        step.step,
        what,
        f"the app server's negotiate failed: {detail}",
        Fix(f"check the app server's log and its {setting}"),
    )


def conclude(
    options: ProbeOptions,
    negotiate: NegotiateFindings,
    steps: Mapping[TransportType, Sequence[StepResult]],
    *,
    elapsed_ms: float = 0.0,
) -> ProbeReport:
    """The report: the app server's problem (then every transport carries it), or one verdict per transport."""
    problem = app_problem(negotiate, options)
    if problem is not None:
        reports = tuple(TransportReport(k, Works.NO, None, (), problem) for k in ALL_TRANSPORTS)
        return _report(options, negotiate, reports, problem, elapsed_ms)
    negotiate = _confirmed_target(negotiate, steps)
    ctx = Context(
        negotiate=negotiate,
        subscription_key=bool(options.subscription_key),
        origin=options.page_origin,
        service_url=service_url_for(negotiate.token.audience if negotiate.token is not None else None),
        configured=_configured(steps),
    )
    app_preflight = next((s for s in negotiate.checks if s.failed and s.step is Step.NEGOTIATE_PREFLIGHT), None)
    if app_preflight is not None:
        ctx = replace(ctx, app_browser=_app_preflight_finding(app_preflight, ctx))
    reports = tuple(judge_transport(k, steps.get(k, ()), ctx) for k in ALL_TRANSPORTS)
    return _report(options, negotiate, reports, None, elapsed_ms)


def _report(
    options: ProbeOptions,
    negotiate: NegotiateFindings,
    transports: tuple[TransportReport, ...],
    problem: Finding | None,
    elapsed_ms: float,
) -> ProbeReport:
    return ProbeReport(
        url=redact_url(options.url),
        origin=options.page_origin,
        timeout_s=options.timeout,
        echo=options.echo,
        negotiate=negotiate,
        transports=transports,
        problem=problem,
        elapsed_ms=elapsed_ms,
        service=negotiate.service,
    )
