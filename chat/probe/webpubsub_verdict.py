"""The verdict of a Web PubSub run, pure: its one WebSocket's steps become a
:class:`~chat.probe.model.TransportReport` naming the failing step, the cause in APIM terms and the fix.

The causes follow what APIM and the service answer (docs/apim.md §2, §3, §9): APIM's own 404 envelope on the upgrade
means no WebSocket API serves ``client/hubs/<hub>``; its 401 envelope a missing or wrong subscription key; its 500 a
backend it could not reach; a 401 without the envelope the service refusing the token; an upgrade answered 200 an
HTTP API on the path; a 101 without ``Sec-WebSocket-Protocol`` something in between dropping the subprotocol; an
``InvocationFailed`` ack the service finding no event handler for the event, or the handler failing
(https://learn.microsoft.com/azure/azure-web-pubsub/concept-ack). The fixes name the ``apim-gateway export
--profile webpubsub`` command that writes a working configuration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from signalr.redact import redact_url

from . import verdict
from .model import (
    WEBPUBSUB_TRANSPORT,
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
from .verdict import CONNECTION_ERRORS, _answer, app_problem

__all__ = ["SERVICE_PLACEHOLDER", "conclude", "export_command", "judge", "service_url_for"]

SERVICE_PLACEHOLDER = "https://<resource>.webpubsub.azure.com"
SETTING = "Azure__WebPubSub__ConnectionString"
EVENT_HANDLER_DOC = "https://learn.microsoft.com/azure/azure-web-pubsub/howto-develop-eventhandler"
_HUB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
"""A hub name as the service's SDK describes it (a letter, then letters, digits or ``_``)."""


def service_url_for(audience: str | None) -> str:
    """``https://<host>`` of the Web PubSub resource the token is for, when it is one; else a placeholder."""
    return verdict.azure_url_for(audience, ".webpubsub.azure.com", SERVICE_PLACEHOLDER)


def export_command(service_url: str = SERVICE_PLACEHOLDER, hub: str = "chat", *, subscription: bool = False) -> str:
    """The ``apim-gateway export`` command that writes the ``webpubsub`` profile (``--hub`` unless it is ``chat``; a
    hub that is not a valid hub name, which the app server should never send, becomes ``<hub>``, so the command is
    always safe to paste)."""
    safe_hub = (hub if _HUB_NAME.fullmatch(hub) else "<hub>") if hub else "chat"
    return verdict.export_command(Profile.WEBPUBSUB, service_url, subscription=subscription, hub=safe_hub)


@dataclass(frozen=True)
class Context:
    """What the verdict needs besides the steps."""

    negotiate: NegotiateFindings
    subscription_key: bool
    timeout: float
    service_url: str = SERVICE_PLACEHOLDER

    @property
    def hub(self) -> str:
        return self.negotiate.hub or "chat"

    @property
    def host(self) -> str:
        return self.negotiate.redirect_host or "the client access URL's host"

    @property
    def api(self) -> str:
        return f"client/hubs/{self.hub}"

    def fix(self, doc: str, *, command: bool = True, subscription: bool = False) -> Fix:
        return Fix(doc, export_command(self.service_url, self.hub, subscription=subscription) if command else "")


def _upgrade_finding(step: StepResult, ctx: Context) -> Finding:
    """Why the upgrade (``connect``) failed."""
    what = _answer(step)
    target = ctx.negotiate.target
    if step.status is None:
        reason = step.error.value if step.error is not None else "no answer"
        if step.error in CONNECTION_ERRORS:
            where = "the APIM gateway" if ctx.negotiate.host_kind is HostKind.APIM else "nothing"
            return Finding(
                Cause.GATEWAY_UNREACHABLE if ctx.negotiate.host_kind is HostKind.APIM else Cause.REDIRECT_UNREACHABLE,
                step.step,
                what,
                f"{where} answers at {ctx.host}, where the client access URL points ({reason}): the gateway is "
                f"down, or the ClientEndpoint in the app server's {SETTING} names the wrong host or port",
                ctx.fix(
                    "start the gateway, or set ClientEndpoint=https://<apim>.azure-api.net in the app server's "
                    f"{SETTING} (the app server swaps the client access URL's host for it)",
                    command=False,
                ),
            )
        return Finding(
            Cause.TIMED_OUT,
            step.step,
            what,
            f"the WebSocket upgrade got no answer ({step.detail or reason}): the gateway or the service is stuck, "
            "or a proxy in between holds the upgrade",
            ctx.fix(
                f"check the gateway's and the service's health; raise --timeout (now {ctx.timeout:g} s)", command=False
            ),
        )
    if step.status == 401 and step.apim is not None:
        if "missing" in step.apim.lower() or not ctx.subscription_key:
            return Finding(
                Cause.SUBSCRIPTION_KEY_MISSING,
                step.step,
                what,
                f"the API {ctx.api} requires a subscription key and none was sent (APIM's 401, docs/apim.md §3, §9)",
                ctx.fix(
                    "pass the key of an active subscription: chat probe --subscription-key KEY (clients send it as "
                    "the Ocp-Apim-Subscription-Key header or the subscription-key query parameter), or turn "
                    "'Subscription required' off on the webpubsub-client API",
                ),
            )
        return Finding(
            Cause.SUBSCRIPTION_KEY_INVALID,
            step.step,
            what,
            "the subscription key was refused: it is not a key of an active subscription to this API (APIM's 401, "
            "docs/apim.md §3)",
            ctx.fix(
                "use the primary or secondary key of an active subscription whose scope includes the API", command=False
            ),
        )
    if step.status == 404 and step.apim is not None:
        return Finding(
            Cause.NO_CONNECT_OPERATION,
            step.step,
            what,
            f"no WebSocket API on {ctx.api}: APIM has no route for the upgrade (APIM's 404, docs/apim.md §9); a "
            "gateway set up for SignalR (the websocket or sse-lp profile) serves client/ only, and one instance "
            "serves one profile",
            ctx.fix(
                f"add the WebSocket API {ctx.api} with Web service URL wss://<resource>.webpubsub.azure.com/{ctx.api} "
                "(the webpubsub profile)",
            ),
        )
    if step.apim is not None and step.status >= 500:
        return Finding(
            Cause.WRONG_BACKEND,
            step.step,
            what,
            "APIM could not reach its backend (its 500 envelope): the API's Web service URL does not point at a "
            "running Web PubSub resource (docs/apim.md §9)",
            ctx.fix(f"set the Web service URL to wss://<resource>.webpubsub.azure.com/{ctx.api}"),
        )
    if step.status in (200, 204):
        return Finding(
            Cause.UPGRADE_REFUSED,
            step.step,
            what,
            f"WebSocket upgrade refused: answered {step.status}, not 101, because {ctx.api} is an HTTP API in APIM "
            "(APIM forwards the upgrade as a plain GET, docs/apim.md §2 rule 5); Web PubSub needs a WebSocket API",
            ctx.fix(f"replace the API on {ctx.api} with a WebSocket API (the webpubsub profile)"),
        )
    if step.status == 101:
        return Finding(
            Cause.SUBPROTOCOL_MISSING,
            step.step,
            what,
            "the upgrade was answered 101 without the subprotocol json.reliable.webpubsub.azure.v1: something "
            "between the client and the service dropped Sec-WebSocket-Protocol (the official clients refuse such a "
            "handshake; the service treats a client without it as a simple WebSocket client: no acks, no events)",
            ctx.fix(
                "let the gateway pass Sec-WebSocket-Protocol both ways: no set-header policy or proxy may remove it",
                command=False,
            ),
        )
    if step.status == 401:
        return Finding(
            Cause.TOKEN_REJECTED,
            step.step,
            what,
            "the service refused the access token (401 without APIM's envelope): the app server signs it with an "
            f"AccessKey the service does not have, for another hub than {ctx.hub!r}, or its clock is off",
            ctx.fix(
                f"copy the Web PubSub resource's current connection string (Keys) into the app server's {SETTING}, "
                "and let the app server and its clients use the same hub",
                command=False,
            ),
        )
    if target in (Target.NOT_WEBPUBSUB, Target.APP_SERVER):
        found = ctx.negotiate
        return Finding(
            Cause.CLIENT_ENDPOINT_WRONG,
            step.step,
            what,
            f"the client access URL points at {ctx.host}, which is {found.target.value} ({found.target_evidence}): "
            f"the ClientEndpoint in the app server's {SETTING} is wrong",
            ctx.fix(
                "set ClientEndpoint to the gateway's URL (https://<apim>.azure-api.net) in the app server's connection "
                "string, or leave it out to connect to the service directly",
                command=False,
            ),
        )
    if target is Target.GATEWAY and step.status in (400, 404):
        return Finding(
            Cause.WRONG_BACKEND,
            step.step,
            what,
            f"the gateway forwarded the upgrade, but what answered {step.status} is not the Web PubSub client "
            f"endpoint: the API's Web service URL points elsewhere (docs/apim.md §9)",
            ctx.fix(f"set the Web service URL to wss://<resource>.webpubsub.azure.com/{ctx.api}"),
        )
    if step.status == 403 or 400 <= step.status < 500:
        return Finding(
            Cause.UNEXPECTED,
            step.step,
            what,
            f"the service refused the connection ({step.status}): the app server's event handler may have refused "
            f"the connect event{f' ({step.body[:120]})' if step.body else ''}",
            Fix("check the app server's log for the connect event"),
        )
    return Finding(Cause.UNEXPECTED, step.step, what, f"the upgrade failed: {step.detail or 'unexpected answer'}")


def _step_finding(step: StepResult, ctx: Context) -> Finding:
    what = _answer(step)
    if step.step is Step.CONNECT:
        return _upgrade_finding(step, ctx)
    if step.step is Step.CONNECTED:
        through = (
            " (through APIM: is the API's Web service URL the service's client endpoint?)"
            if (ctx.negotiate.target is Target.GATEWAY)
            else ""
        )
        return Finding(
            Cause.CONNECTED_MISSING,
            step.step,
            what,
            f"the WebSocket opened but the service's connected message did not come: {step.detail}; what answered "
            f"does not behave as Web PubSub{through}",
            ctx.fix(
                f"point the client access URL at the service's client endpoint /{ctx.api}, directly or through the "
                "webpubsub profile",
                command=ctx.negotiate.target is Target.GATEWAY,
            ),
        )
    if step.step is Step.ECHO and step.error_name == "InvocationFailed":
        if "no event handler" in step.detail.lower() or "not registered" in step.detail.lower():
            return Finding(
                Cause.EVENT_HANDLER_FAILED,
                step.step,
                what,
                f"the service answered the echo event with InvocationFailed: no event handler is configured for "
                f"hub {ctx.hub!r} on the Web PubSub resource, so no event reaches the app server",
                Fix(
                    f"add an event handler for hub {ctx.hub!r} on the Web PubSub resource (Settings): URL template "
                    "https://<app-server>/eventhandler, user events *, system events connect, connected and "
                    f"disconnected ({EVENT_HANDLER_DOC}); locally: webpubsub-emulator --event-handler "
                    f"{ctx.hub}=http://<app-server>/eventhandler"
                ),
            )
        return Finding(
            Cause.EVENT_HANDLER_FAILED,
            step.step,
            what,
            "the service answered the echo event with InvocationFailed: its event handler did not answer with a "
            "success status (the app server is unreachable from the service, refused the request's signature, or "
            "failed)",
            Fix(
                "check the app server's log for the echo event; its AccessKey must be the service's, and the event "
                f"handler URL on the resource must reach its /eventhandler ({EVENT_HANDLER_DOC})"
            ),
        )
    if step.step is Step.ECHO and step.error is NetError.TIMEOUT:
        return Finding(
            Cause.TIMED_OUT,
            step.step,
            what,
            f"the service did not acknowledge the echo event in time ({step.detail}): the app server's event handler "
            "is slow or the service cannot reach it",
            Fix(f"check the app server's log; raise --timeout (now {ctx.timeout:g} s)"),
        )
    if step.step is Step.ECHO:
        return Finding(
            Cause.ECHO_FAILED,
            step.step,
            what,
            f"the echo round trip failed: {step.detail or 'no reply'}",
            Fix(
                "the app server's event handler must answer the echo event with send_to_connection (the chat's "
                "chat-server --service webpubsub does); for another app server, run chat probe --no-echo"
            ),
        )
    return Finding(Cause.UNEXPECTED, step.step, what, f"{step.step.value} failed: {step.detail or 'unexpected'}")


def judge(steps: Sequence[StepResult], ctx: Context) -> TransportReport:
    """The verdict for the WebSocket from its steps, in order."""
    problem: Finding | None = None
    notes: list[Finding] = []
    for step in steps:
        if not step.failed:
            continue
        if step.step is Step.SOCKET_CLOSE:
            notes.append(Finding(Cause.UNEXPECTED, step.step, _answer(step), step.detail, harmless=True))
        else:
            problem = _step_finding(step, ctx)
            break
    if problem is None and not any(s.step is Step.CONNECTED and s.ok for s in steps):
        problem = Finding(Cause.UNEXPECTED, None, "-", "the probe ended before the connected message")
    echo = next((s for s in steps if s.step is Step.ECHO and s.ok), None)
    latency = echo.elapsed_ms if echo is not None else None
    if latency is None and problem is None:
        latency = sum(s.elapsed_ms or 0.0 for s in steps if s.step in (Step.CONNECT, Step.CONNECTED))
    works = Works.NO if problem is not None else Works.YES
    return TransportReport(
        WEBPUBSUB_TRANSPORT, works, None if problem else latency, tuple(steps), problem, tuple(notes)
    )


def conclude(
    options: ProbeOptions, negotiate: NegotiateFindings, steps: Sequence[StepResult], *, elapsed_ms: float = 0.0
) -> ProbeReport:
    """The report of a Web PubSub run: the app server's problem, or the WebSocket's verdict."""
    problem = app_problem(negotiate, options)
    if problem is not None:
        transports = (TransportReport(WEBPUBSUB_TRANSPORT, Works.NO, None, (), problem),)
    else:
        audience = negotiate.token.audience if negotiate.token is not None else None
        ctx = Context(negotiate, bool(options.subscription_key), options.timeout, service_url_for(audience))
        transports = (judge(steps, ctx),)
    return ProbeReport(
        url=redact_url(options.url),
        origin=options.page_origin,
        timeout_s=options.timeout,
        echo=options.echo,
        negotiate=negotiate,
        transports=transports,
        problem=problem,
        elapsed_ms=elapsed_ms,
        service=Service.WEBPUBSUB,
    )
