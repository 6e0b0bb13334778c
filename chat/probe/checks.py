"""The probe's requests: every request a SignalR client makes, as a browser and as a server-side client would.

:func:`run_probe` negotiates with the app server, looks at its redirect (where ``url`` points, the token's lifetime
and audience), sends one request no APIM operation serves to the redirect's host (APIM answers its own 404 envelope,
which tells a gateway from the service), then drives each transport through the redirect, all three at once:

- WebSockets: negotiate preflight, negotiate, the upgrade, the hub handshake, an ``echo`` round trip, a Close message;
- ServerSentEvents: negotiate preflight, negotiate, the event stream GET (time to its first byte: a proxy that buffers
  it never delivers one), the preflight of the sends, the handshake, ``echo``, Close;
- LongPolling: negotiate preflight, negotiate, the poll's preflight, the first poll, the sends' preflight, handshake,
  ``echo``, Close, the DELETE's preflight and the DELETE.

Preflights are sent exactly as a browser sends them (``OPTIONS`` with ``Origin``, ``Access-Control-Request-Method``
and ``Access-Control-Request-Headers: authorization,x-requested-with,x-signalr-user-agent``, the headers the JS client
adds: ``FetchHttpClient`` sets ``X-Requested-With``, ``getUserAgentHeader`` the user agent, ``AccessTokenHttpClient``
``Authorization``). A failed preflight does not stop the transport: the requests after it are what a server-side
client sends (the subscription key as a header, the token as a bearer header), so a transport can work for server-side
clients and not for browsers. Any other failed step ends its transport.

Every wait is bounded by ``options.timeout``; the transports together by :data:`TRANSPORT_BUDGET` timeouts. Nothing
here raises for network trouble: each step's outcome is recorded, and :mod:`chat.probe.verdict` explains it. Secrets
are never recorded: URLs go through :func:`~signalr.redact.redact_url`, bodies and texts through
:func:`~signalr.redact.redact_text`, and the token is decoded (not verified) into its lifetime and audience only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
import jwt

from signalr.client.errors import apim_message, host_of
from signalr.client.http_context import HttpContext, to_url, user_agent
from signalr.client.trace import Tracer
from signalr.handshake import decode_handshake_response, encode_handshake_request, split_handshake
from signalr.json_protocol import JSON
from signalr.messages import Close, Completion, Invocation, ProtocolError, UnknownMessageType
from signalr.negotiate import (
    NegotiateError,
    NegotiateRedirect,
    NegotiateResult,
    TransportType,
    WebPubSubAnswer,
    connect_url,
    negotiate_url,
    parse_negotiate_response,
)
from signalr.redact import redact_text, redact_url
from signalr.sse import SseDecoder
from signalr.tokens import MAX_TOKEN_LENGTH

from . import verdict
from .model import (
    ALL_TRANSPORTS,
    Cors,
    HostKind,
    NegotiateFindings,
    NetError,
    OnStep,
    Outcome,
    ProbeOptions,
    ProbeReport,
    Service,
    Step,
    StepResult,
    Target,
    TokenInfo,
    origin_of,
)

__all__ = ["PREFLIGHT_HEADERS", "SUBSCRIPTION_KEY_HEADER", "TRANSPORT_BUDGET", "host_kind", "run_probe"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SUBSCRIPTION_KEY_HEADER = "Ocp-Apim-Subscription-Key"
PREFLIGHT_HEADERS = "authorization,x-requested-with,x-signalr-user-agent"
"""``Access-Control-Request-Headers`` of the JS client's preflights after the redirect: lower case, sorted, joined
with ``,`` as browsers write it (``Content-Type: text/plain;charset=UTF-8`` is CORS-safelisted and not listed)."""
APP_PREFLIGHT_HEADERS = "x-requested-with,x-signalr-user-agent"
"""The app-server negotiate's preflight (cross-origin pages only): no token yet, so no ``authorization``."""
TRANSPORT_BUDGET = 5
"""The transports together get this many ``--timeout`` periods; steps still running then are recorded as failed."""
TEXT_CONTENT_TYPE = "text/plain;charset=UTF-8"
MAX_BODY = 1024 * 1024
SNIPPET = 200
_SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})


@dataclass
class _Answer:
    """One HTTP exchange: the status, headers and body, or the network error; and how long it took."""

    status: int | None
    headers: Mapping[str, str]
    body: bytes
    error: NetError | None
    reason: str
    elapsed_ms: float


def _net_error(exc: BaseException) -> tuple[NetError, str]:
    """The kind of network failure and a redacted one-line reason."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return NetError.DNS, "host name not found"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return NetError.TLS, redact_text(str(exc))[:SNIPPET]
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return NetError.REFUSED, "connection refused"
        return NetError.OTHER, redact_text(str(exc.strerror or exc))[:SNIPPET]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return NetError.CONNECT_TIMEOUT, "no TCP connection in time"
    if isinstance(exc, TimeoutError):
        return NetError.TIMEOUT, "no answer in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | ConnectionResetError):
        return NetError.DISCONNECTED, "the server closed the connection"
    return NetError.OTHER, redact_text(str(exc) or type(exc).__name__)[:SNIPPET]


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, or its first :data:`MAX_BODY` bytes (the rest is not read: a larger answer is not SignalR's)."""
    data = bytearray()
    while len(data) < MAX_BODY:
        chunk = await response.content.read(MAX_BODY - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


async def wait_for_change(changed: asyncio.Event, check: Callable[[], _T | None], timeout: float) -> _T | None:
    """``check()``'s first value that is not None, looked at again each time ``changed`` is set, within ``timeout``
    s; None when the time is up. ``changed`` is cleared before each look, so a change in between is not missed."""
    deadline = time.monotonic() + timeout
    while True:
        changed.clear()
        value = check()
        if value is not None:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), left)


def _snippet(body: bytes) -> str:
    """The start of a body, redacted before it is cut (a token cut short would escape redaction)."""
    return redact_text(body[:4096].decode("utf-8", "replace")).strip()[:SNIPPET]


def host_kind(hostname: str) -> HostKind:
    """What a host name looks like: APIM's default ``*.azure-api.net``, the service's ``*.service.signalr.net`` (or
    Web PubSub's ``*.webpubsub.azure.com``), a local or private address, or a custom domain (which may front APIM or
    anything else)."""
    name = hostname.lower().rstrip(".")
    if name.endswith(".azure-api.net"):
        return HostKind.APIM
    if name.endswith(".service.signalr.net") or ".service.signalr." in name:
        return HostKind.SERVICE
    if name.endswith(".webpubsub.azure.com") or ".webpubsub.azure." in name:
        return HostKind.WEBPUBSUB
    if name == "localhost" or name.endswith(".localhost"):
        return HostKind.LOCAL
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return HostKind.CUSTOM
    return HostKind.LOCAL if address.is_loopback or address.is_private or address.is_link_local else HostKind.CUSTOM


def check_cors(headers: Mapping[str, str], origin: str, *, method: str | None = None, requested: str = "") -> Cors:
    """The CORS headers of a response to a page at ``origin`` and why a browser would refuse it.

    ``method`` and ``requested`` (comma-separated header names) are the preflight's; without ``method`` the response
    is an actual request's, which needs only the origin headers. The JS client sends credentials (``withCredentials``
    defaults to true), so ``*`` does not count as a wildcard and ``Access-Control-Allow-Credentials: true`` is needed.
    """
    allow_origin = headers.get("Access-Control-Allow-Origin")
    credentials = headers.get("Access-Control-Allow-Credentials", "").strip().lower() == "true"
    methods = tuple(m.strip() for m in headers.get("Access-Control-Allow-Methods", "").split(",") if m.strip())
    allowed = tuple(h.strip() for h in headers.get("Access-Control-Allow-Headers", "").split(",") if h.strip())
    problem: str | None = None
    if allow_origin is None:
        problem = "no Access-Control-Allow-Origin header"
    elif allow_origin.strip() == "*":
        problem = "Access-Control-Allow-Origin is *, which browsers refuse for requests with credentials"
    elif allow_origin.strip().rstrip("/") != origin:
        problem = f"Access-Control-Allow-Origin is {redact_text(allow_origin.strip())[:80]!r}, not {origin}"
    elif not credentials:
        problem = "no Access-Control-Allow-Credentials: true (the JS client sends credentials)"
    elif method is not None:
        if method not in _SAFELISTED_METHODS and method not in methods:
            problem = f"Access-Control-Allow-Methods does not list {method}"
        else:
            lowered = {h.lower() for h in allowed}
            missing = [h for h in requested.split(",") if h and h.lower() not in lowered]
            if missing:
                problem = f"Access-Control-Allow-Headers does not list {', '.join(missing)}"
    return Cors(allow_origin and redact_text(allow_origin)[:80], credentials, methods, allowed, problem)


def decode_token(token: str, now: float | None = None) -> TokenInfo:
    """Lifetime, time left and audience of a JWT, read without verifying its signature (the probe has no key).

    The token itself is not kept; a token that cannot be read gets a ``problem`` and nothing else.
    """
    if not token:
        return TokenInfo(problem="the redirect carries no accessToken")
    if not token.isascii() or len(token) > MAX_TOKEN_LENGTH * 4:
        return TokenInfo(problem="the accessToken is not a readable JWT")
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError):
        return TokenInfo(problem="the accessToken is not a readable JWT")
    current = time.time() if now is None else now

    def number(name: str) -> float | None:
        value = claims.get(name)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    exp, issued = number("exp"), number("iat") or number("nbf")
    audience = claims.get("aud")
    if isinstance(audience, list):
        audience = next((a for a in audience if isinstance(a, str) and a), None)
    aud = redact_text(audience)[:200] if isinstance(audience, str) and audience else None
    problem = None
    if exp is None:
        problem = "the token has no exp claim"
    elif exp <= current:
        problem = "the token has already expired (is the app server's clock right?)"
    elif aud is None:
        problem = "the token has no aud claim"
    lifetime = int(exp - issued) if exp is not None and issued is not None else None
    left = int(exp - current) if exp is not None else None
    return TokenInfo(lifetime_s=lifetime, expires_in_s=left, audience=aud, problem=problem)


def _route_check_url(redirect_url: str) -> str:
    """``GET`` target on the redirect's host that no APIM operation serves: the negotiate path, without a query."""
    parts = urlsplit(redirect_url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return f"{parts.scheme}://{parts.netloc}{path}negotiate"


def _same_service(redirect_url: str, audience: str | None) -> bool:
    """Whether the redirect goes to the host the token is for (the service's Endpoint; no port in ``aud``)."""
    if not audience:
        return False
    try:
        target, aud = urlsplit(redirect_url), urlsplit(audience)
    except ValueError:
        return False
    return (target.hostname or "").lower() == (aud.hostname or "").lower() and target.scheme == aud.scheme


def _has_query_key(url: str) -> bool:
    try:
        return any(k.lower() == "subscription-key" for k, _ in parse_qsl(urlsplit(url).query))
    except ValueError:
        return False


class _Probe:
    """One run: the options, the callback, the HTTP session of each part. Use :func:`run_probe`."""

    def __init__(self, options: ProbeOptions, on_step: OnStep | None) -> None:
        self.options = options
        self.origin = options.page_origin
        self.timeout = options.timeout
        self._on_step = on_step
        self.steps: dict[TransportType | None, list[StepResult]] = {None: []}
        self.webpubsub: WebPubSubAnswer | None = None
        """Set by :meth:`app_negotiate` when the app server answers for Azure Web PubSub."""

    # --- recording ------------------------------------------------------------------------------------------

    def record(self, result: StepResult) -> StepResult:
        self.steps.setdefault(result.transport, []).append(result)
        if self._on_step is not None:
            try:
                self._on_step(result)
            except Exception:  # a faulty progress view must not break the probe
                log.exception("on_step callback failed")
        return result

    def headers(self, token: str | None) -> dict[str, str]:
        """The headers of the JS client's requests, plus the subscription key (as a server-side client sends it)."""
        out = {"X-Requested-With": "XMLHttpRequest", "X-SignalR-User-Agent": user_agent(), "Origin": self.origin}
        if self.options.subscription_key:
            out[SUBSCRIPTION_KEY_HEADER] = self.options.subscription_key
        if token:
            out["Authorization"] = f"Bearer {token}"
        return out

    async def exchange(
        self,
        context: HttpContext,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> _Answer:
        """One request, bounded by ``timeout`` (default: the probe's); never raises for network trouble."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                async with context.session.request(
                    method, to_url(url), headers=dict(headers), data=data, allow_redirects=False
                ) as response:
                    body = await _read_body(response)
                    return _Answer(response.status, response.headers, body, None, "", _ms(started))
        except Exception as exc:
            error, reason = _net_error(exc)
            return _Answer(None, {}, b"", error, reason, _ms(started))

    def result(
        self,
        transport: TransportType | None,
        step: Step,
        method: str,
        url: str,
        answer: _Answer,
        *,
        ok: bool,
        detail: str = "",
        cors: Cors | None = None,
    ) -> StepResult:
        envelope = apim_message(answer.status, answer.body) if answer.status is not None else None
        return self.record(
            StepResult(
                transport=transport,
                step=step,
                outcome=Outcome.OK if ok else Outcome.FAILED,
                method=method,
                url=redact_url(url),
                status=answer.status,
                elapsed_ms=answer.elapsed_ms,
                error=answer.error,
                apim=envelope,
                body="" if envelope is not None or ok else _snippet(answer.body),
                cors=cors,
                detail=redact_text(detail or answer.reason),
            )
        )

    # --- preflights -----------------------------------------------------------------------------------------

    async def preflight(
        self,
        context: HttpContext,
        transport: TransportType | None,
        step: Step,
        url: str,
        method: str,
        requested: str = PREFLIGHT_HEADERS,
    ) -> StepResult:
        """``OPTIONS`` as a browser sends it before a ``method`` request to ``url`` with the JS client's headers."""
        headers = {
            "Origin": self.origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": requested,
        }
        answer = await self.exchange(context, "OPTIONS", url, headers)
        if answer.status is None:
            return self.result(transport, step, "OPTIONS", url, answer, ok=False)
        cors = check_cors(answer.headers, self.origin, method=method, requested=requested)
        ok = 200 <= answer.status < 300 and cors.problem is None
        detail = f"preflight for {method}: " + (
            "allowed" if ok else (cors.problem or f"status {answer.status} is not 2xx")
        )
        if not 200 <= answer.status < 300:
            detail = f"preflight for {method}: answered {answer.status}" + (
                f" ({cors.problem})" if cors.problem else ""
            )
        return self.result(transport, step, "OPTIONS", url, answer, ok=ok, detail=detail, cors=cors)

    # --- the app server -------------------------------------------------------------------------------------

    async def app_negotiate(self, context: HttpContext) -> tuple[NegotiateFindings, str | None, str | None]:
        """The app server's negotiate; returns the findings, the base URL and token for the transports (``None``
        base when the run cannot go on)."""
        url = negotiate_url(self.options.url)
        app_origin = origin_of(self.options.url)
        if app_origin != self.origin:
            await self.preflight(context, None, Step.NEGOTIATE_PREFLIGHT, url, "POST", APP_PREFLIGHT_HEADERS)
        answer = await self.exchange(context, "POST", url, self.headers(None))
        if answer.status != 200:
            step = self.result(None, Step.APP_NEGOTIATE, "POST", url, answer, ok=False)
            return NegotiateFindings(step=step), None, None
        try:
            reply = parse_negotiate_response(answer.body)
        except WebPubSubAnswer as exc:
            self.webpubsub = exc
            detail = f"Azure Web PubSub, hub {exc.hub!r}: a client access URL"
            step = self.result(None, Step.APP_NEGOTIATE, "POST", url, answer, ok=True, detail=detail)
            return NegotiateFindings(step=step, service=Service.WEBPUBSUB, hub=exc.hub), None, None
        except NegotiateError as exc:
            step = self.result(None, Step.APP_NEGOTIATE, "POST", url, answer, ok=False, detail=str(exc))
            service = Service.WEBPUBSUB if str(exc).startswith("The Web PubSub") else Service.SIGNALR
            return NegotiateFindings(step=step, service=service), None, None
        if isinstance(reply, NegotiateResult):
            # No redirect: a self-hosted ASP.NET Core SignalR server (no Azure SignalR, no APIM in between).
            step = self.result(
                None, Step.APP_NEGOTIATE, "POST", url, answer, ok=True, detail="no redirect: the app server is the hub"
            )
            findings = NegotiateFindings(
                step=step,
                redirect=False,
                redirect_url=redact_url(self.options.url),
                redirect_host=host_of(self.options.url),
                target=Target.APP_SERVER,
                target_evidence="its negotiate answered with a connection, not a redirect",
            )
            return findings, self.options.url, None
        return await self._redirect_findings(context, url, answer, reply)

    async def _redirect_findings(
        self, context: HttpContext, url: str, answer: _Answer, reply: NegotiateRedirect
    ) -> tuple[NegotiateFindings, str | None, str | None]:
        target_url = reply.url
        valid = target_url.startswith(("http://", "https://")) and target_url.isprintable() and " " not in target_url
        if not valid:
            detail = f"the redirect url is not an http(s) URL: {redact_url(target_url)[:120]!r}"
            step = self.result(None, Step.APP_NEGOTIATE, "POST", url, answer, ok=False, detail=detail)
            return NegotiateFindings(step=step, redirect=True, redirect_url=redact_url(target_url)), None, None
        token = decode_token(reply.access_token)
        step = self.result(None, Step.APP_NEGOTIATE, "POST", url, answer, ok=True, detail="redirect")
        hostname = urlsplit(target_url).hostname or ""
        kind = host_kind(hostname)
        check_url = _route_check_url(target_url)
        check = await self.exchange(context, "GET", check_url, {"Origin": self.origin})
        envelope = apim_message(check.status, check.body) if check.status is not None else None
        if check.status is None:
            target, evidence = Target.UNREACHABLE, f"GET {urlsplit(check_url).path}: {check.reason}"
        elif check.status == 404 and envelope is not None:
            target = Target.GATEWAY
            evidence = f"APIM's 404 envelope for GET {urlsplit(check_url).path}, a route no operation serves"
        elif kind is HostKind.SERVICE or _same_service(target_url, token.audience):
            target, evidence = Target.SERVICE, "the token's audience names this host: no gateway in between"
        elif host_of(target_url) == host_of(self.options.url):
            target, evidence = Target.APP_SERVER, "the redirect points back at the app server"
        else:
            target = Target.OTHER
            evidence = f"GET {urlsplit(check_url).path} answered {check.status}, not APIM's 404 envelope"
        self.result(
            None,
            Step.ROUTE_CHECK,
            "GET",
            check_url,
            check,
            ok=check.status is not None,
            detail=f"{target.value}: {evidence}",
        )
        findings = NegotiateFindings(
            step=step,
            redirect=True,
            redirect_url=redact_url(target_url),
            redirect_host=host_of(target_url),
            host_kind=kind,
            target=target,
            target_evidence=evidence,
            token=token,
            query_key=_has_query_key(target_url),
        )
        return findings, target_url, reply.access_token or None

    # --- one transport --------------------------------------------------------------------------------------

    async def transport(self, kind: TransportType, base: str, token: str | None) -> None:
        """Drive ``kind`` through ``base``; every step is recorded, the first failure (not a preflight) ends it."""
        context = HttpContext(headers=None, access_token=None, tracer=Tracer(None))
        try:
            negotiate_target = negotiate_url(base)
            await self.preflight(context, kind, Step.NEGOTIATE_PREFLIGHT, negotiate_target, "POST")
            reply = await self.negotiate(context, kind, negotiate_target, token)
            if reply is None:
                return
            url = connect_url(base, reply.id_for_connect)
            if kind is TransportType.WEBSOCKETS:
                await _WebSocketRun(self, context, url, token).run()
            elif kind is TransportType.SERVER_SENT_EVENTS:
                await _SseRun(self, context, url, token).run()
            else:
                await _LongPollingRun(self, context, url, token).run()
        finally:
            await context.close()

    async def negotiate(
        self, context: HttpContext, kind: TransportType, url: str, token: str | None
    ) -> NegotiateResult | None:
        answer = await self.exchange(context, "POST", url, self.headers(token))
        if answer.status != 200:
            self.result(kind, Step.NEGOTIATE, "POST", url, answer, ok=False)
            return None
        cors = check_cors(answer.headers, self.origin)
        try:
            reply = parse_negotiate_response(answer.body)
        except NegotiateError as exc:
            self.result(kind, Step.NEGOTIATE, "POST", url, answer, ok=False, detail=str(exc), cors=cors)
            return None
        if isinstance(reply, NegotiateRedirect):
            detail = "the service answered with another redirect; the probe follows only the app server's"
            self.result(kind, Step.NEGOTIATE, "POST", url, answer, ok=False, detail=detail, cors=cors)
            return None
        if kind not in reply.available_transports:
            offered = ", ".join(t.value for t in reply.available_transports) or "none"
            detail = f"the service does not offer {kind.value} (it offers {offered})"
            self.result(kind, Step.NEGOTIATE, "POST", url, answer, ok=False, detail=detail, cors=cors)
            return None
        detail = "connection negotiated" + (f"; a browser could not read it: {cors.problem}" if cors.problem else "")
        self.result(kind, Step.NEGOTIATE, "POST", url, answer, ok=True, detail=detail, cors=cors)
        return reply

    def skipped(self, kind: TransportType, step: Step, detail: str) -> None:
        self.record(StepResult(kind, step, Outcome.SKIPPED, detail=detail))

    def failed(self, kind: TransportType, step: Step, detail: str, *, started: float, method: str = "") -> None:
        self.record(
            StepResult(kind, step, Outcome.FAILED, method=method, elapsed_ms=_ms(started), detail=redact_text(detail))
        )

    def passed(
        self,
        kind: TransportType,
        step: Step,
        detail: str,
        *,
        started: float,
        method: str = "",
        status: int | None = None,
    ) -> StepResult:
        return self.record(
            StepResult(kind, step, Outcome.OK, method=method, status=status, elapsed_ms=_ms(started), detail=detail)
        )


def _echo_message(nonce: str) -> bytes:
    return JSON.encode(Invocation("echo", ("probe", f"probe {nonce}"), invocation_id="1"))


class _HubSession:
    """The hub side of one connection: handshake reply, then messages; waits for what the probe expects."""

    def __init__(self) -> None:
        self.buffer = b""
        self.handshake_done = False
        self.handshake_error: str | None = None
        self.messages: list[object] = []
        self.protocol_error: str | None = None
        self.changed = asyncio.Event()
        self._reader = JSON.reader(MAX_BODY)

    def feed(self, data: bytes) -> None:
        try:
            if not self.handshake_done:
                self.buffer += data
                split = split_handshake(self.buffer, MAX_BODY)
                if split is None:
                    return
                record, rest = split
                self.handshake_error = decode_handshake_response(record)
                self.handshake_done = True
                self.buffer = b""
                data = rest
            for payload in self._reader.feed(data):
                with contextlib.suppress(UnknownMessageType):  # skipped, as clients do
                    self.messages.append(JSON.decode(payload))
        except ProtocolError as exc:
            self.protocol_error = str(exc)
        finally:
            self.changed.set()

    def echo_answer(self, nonce: str) -> tuple[bool, str] | None:
        """``(True, "")`` once the echo came back, ``(False, why)`` when the hub refused it or closed, else None."""
        for message in self.messages:
            if isinstance(message, Invocation) and message.target.lower() == "echo":
                if any(isinstance(a, str) and nonce in a for a in message.arguments):
                    return True, ""
            elif isinstance(message, Completion) and message.invocation_id == "1" and message.error:
                return False, f"the hub answered echo with an error: {message.error}"
            elif isinstance(message, Close):
                return False, f"the server closed the connection{f': {message.error}' if message.error else ''}"
        if self.protocol_error:
            return False, f"unreadable hub message: {self.protocol_error}"
        return None


class _Run:
    """Shared steps of the three transports."""

    kind: TransportType

    def __init__(self, probe: _Probe, context: HttpContext, url: str, token: str | None) -> None:
        self.probe = probe
        self.context = context
        self.url = url
        self.token = token
        self.hub = _HubSession()
        self.connected_at = 0.0
        self.latency_ms: float | None = None
        self.reader: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Connect, handshake and echo, then stop as this transport's clients do; what was opened is released."""
        try:
            if await self.connect() and await self.handshake_and_echo():
                await self.stop()
        finally:
            await self.release()

    async def connect(self) -> bool:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def release(self) -> None:
        """Cancel the reader task, if one was started; subclasses also close their socket or stream."""
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader

    async def wait(self, check: Callable[[], _T | None], timeout: float) -> _T | None:
        """Wait until ``check()`` returns something not None, at most ``timeout`` s; returns it or None."""
        return await wait_for_change(self.hub.changed, check, timeout)

    def handshake_state(self) -> tuple[bool, str] | None:
        hub = self.hub
        if hub.protocol_error:
            return False, f"unreadable handshake reply: {hub.protocol_error}"
        if hub.handshake_done:
            return (True, "") if hub.handshake_error is None else (False, f"refused: {hub.handshake_error}")
        return None

    async def send(self, data: bytes) -> bool:
        raise NotImplementedError

    async def pump(self, timeout: float) -> None:
        """Give the transport a chance to receive for at most ``timeout`` s (LongPolling polls here); the others
        receive in the background."""

    async def handshake_and_echo(self) -> bool:
        probe, kind = self.probe, self.kind
        started = time.monotonic()
        if not await self.send(encode_handshake_request("json", 1)):
            return False
        state = await self.receive_until(self.handshake_state, started)
        if state is None:
            probe.failed(kind, Step.HANDSHAKE, "no handshake reply in time", started=started)
            return False
        if not state[0]:
            probe.failed(kind, Step.HANDSHAKE, state[1], started=started)
            return False
        probe.passed(kind, Step.HANDSHAKE, "json protocol accepted", started=started)
        if not probe.options.echo:
            probe.skipped(kind, Step.ECHO, "--no-echo")
            self.latency_ms = _ms(self.connected_at)
            return True
        nonce = secrets.token_hex(4)
        started = time.monotonic()
        if not await self.send(_echo_message(nonce)):
            return False
        answer = await self.receive_until(lambda: self.hub.echo_answer(nonce), started)
        if answer is None:
            probe.failed(
                kind,
                Step.ECHO,
                "no echo in time: is this the Chat hub? (use --no-echo for other hubs)",
                started=started,
            )
            return False
        if not answer[0]:
            probe.failed(kind, Step.ECHO, answer[1], started=started)
            return False
        self.latency_ms = _ms(started)
        probe.passed(kind, Step.ECHO, "echo came back", started=started)
        return True

    async def receive_until(self, check: Callable[[], _T | None], started: float) -> _T | None:
        """``check()``'s first value that is not None, received within the timeout counted from ``started``."""
        deadline = started + self.probe.timeout
        while True:
            value = check()
            if value is not None:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await self.pump(left)
            value = await self.wait(check, min(left, 0.5) if self.polls else left)
            if value is not None:
                return value

    polls = False


class _WebSocketRun(_Run):
    kind = TransportType.WEBSOCKETS

    def __init__(self, probe: _Probe, context: HttpContext, url: str, token: str | None) -> None:
        super().__init__(probe, context, url, token)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed_by_server: str | None = None

    async def release(self) -> None:
        await super().release()
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 1.0)

    async def connect(self) -> bool:
        probe, context = self.probe, self.context
        target = "ws" + self.url[4:]
        started = time.monotonic()
        try:
            async with asyncio.timeout(probe.timeout):
                self.ws = await context.session.ws_connect(
                    to_url(target),
                    headers=probe.headers(self.token),
                    autoping=True,
                    timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
                )
        except aiohttp.WSServerHandshakeError as exc:
            body, context.refused_upgrade_body = context.refused_upgrade_body, b""
            answer = _Answer(exc.status, exc.headers or {}, body, None, "", _ms(started))
            detail = f"the upgrade was answered {exc.status} instead of 101 Switching Protocols"
            probe.result(self.kind, Step.CONNECT, "GET", target, answer, ok=False, detail=detail)
            return False
        except Exception as exc:
            error, reason = _net_error(exc)
            probe.result(
                self.kind, Step.CONNECT, "GET", target, _Answer(None, {}, b"", error, reason, _ms(started)), ok=False
            )
            return False
        self.connected_at = started
        probe.record(
            StepResult(
                self.kind,
                Step.CONNECT,
                Outcome.OK,
                method="GET",
                url=redact_url(target),
                status=101,
                elapsed_ms=_ms(started),
                detail="upgraded",
            )
        )
        self.reader = asyncio.create_task(self.read())
        return True

    async def read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.hub.feed(message.data.encode("utf-8"))
            elif message.type is aiohttp.WSMsgType.BINARY:
                self.hub.feed(message.data)
        self.closed_by_server = f"the server closed the WebSocket ({self.ws.close_code})"
        self.hub.protocol_error = self.hub.protocol_error or self.closed_by_server
        self.hub.changed.set()

    async def send(self, data: bytes) -> bool:
        assert self.ws is not None
        try:
            await asyncio.wait_for(self.ws.send_str(data.decode("utf-8")), self.probe.timeout)
        except Exception as exc:
            step = Step.ECHO if self.hub.handshake_done else Step.HANDSHAKE
            self.probe.failed(self.kind, step, f"cannot send: {_net_error(exc)[1]}", started=time.monotonic())
            return False
        return True

    async def stop(self) -> None:
        assert self.ws is not None
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.ws.send_str(JSON.encode(Close()).decode("utf-8")), self.probe.timeout)
            await asyncio.wait_for(self.ws.close(), self.probe.timeout)
        except Exception as exc:
            self.probe.failed(self.kind, Step.CLOSE, f"closing failed: {_net_error(exc)[1]}", started=started)
            return
        self.probe.passed(
            self.kind, Step.CLOSE, f"Close message sent, WebSocket closed ({self.ws.close_code})", started=started
        )


class _HttpRun(_Run):
    """SSE and LongPolling: sends are POSTs to the connect URL, preflighted in a browser."""

    send_preflighted = False

    async def send(self, data: bytes, step: Step | None = None) -> bool:
        probe = self.probe
        if not self.send_preflighted:
            self.send_preflighted = True
            await probe.preflight(self.context, self.kind, Step.SEND_PREFLIGHT, self.url, "POST")
        headers = probe.headers(self.token)
        headers["Content-Type"] = TEXT_CONTENT_TYPE
        answer = await probe.exchange(self.context, "POST", self.url, headers, data)
        if answer.status == 200:
            if step is not None:
                cors = check_cors(answer.headers, probe.origin)
                detail = "sent" + (f"; a browser could not read the answer: {cors.problem}" if cors.problem else "")
                probe.result(self.kind, step, "POST", self.url, answer, ok=True, detail=detail, cors=cors)
            return True
        failing = step or (Step.ECHO if self.hub.handshake_done else Step.HANDSHAKE)
        if answer.status is None:
            detail = f"the send POST failed: {answer.reason}"
        else:
            detail = f"the send POST was answered {answer.status}"
        probe.result(self.kind, failing, "POST", self.url, answer, ok=False, detail=detail)
        return False

    async def close_message(self) -> bool:
        return await self.send(JSON.encode(Close()), Step.CLOSE)


class _SseRun(_HttpRun):
    kind = TransportType.SERVER_SENT_EVENTS

    def __init__(self, probe: _Probe, context: HttpContext, url: str, token: str | None) -> None:
        super().__init__(probe, context, url, token)
        self.response: aiohttp.ClientResponse | None = None

    async def stop(self) -> None:
        await self.close_message()

    async def release(self) -> None:
        await super().release()
        if self.response is not None:
            self.response.close()

    async def connect(self) -> bool:
        probe, kind = self.probe, self.kind
        get_url = self.url
        if self.token:
            get_url += "&access_token=" + quote(self.token, safe="")
        headers = probe.headers(self.token)
        headers["Accept"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        started = time.monotonic()
        try:
            async with asyncio.timeout(probe.timeout):
                response = await self.context.session.get(
                    to_url(get_url), headers=headers, timeout=aiohttp.ClientTimeout(total=None)
                )
        except Exception as exc:
            error, reason = _net_error(exc)
            if error is NetError.TIMEOUT:
                reason = f"no response headers within {probe.timeout:g} s"
            probe.result(
                kind, Step.CONNECT, "GET", get_url, _Answer(None, {}, b"", error, reason, _ms(started)), ok=False
            )
            return False
        self.response = response
        head_ms = _ms(started)
        if response.status != 200 or not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            body = b""
            with contextlib.suppress(Exception):
                body = await asyncio.wait_for(response.content.read(4096), probe.timeout)
            answer = _Answer(response.status, response.headers, body, None, "", head_ms)
            detail = (
                "the event stream GET was refused"
                if response.status != 200
                else f"Content-Type {response.headers.get('Content-Type', 'none')!r} is not text/event-stream"
            )
            probe.result(kind, Step.CONNECT, "GET", get_url, answer, ok=False, detail=detail)
            return False
        try:
            first = await asyncio.wait_for(response.content.readany(), probe.timeout)
        except Exception as exc:
            error, reason = _net_error(exc)
            if error is NetError.TIMEOUT:
                reason = f"response headers after {head_ms:.0f} ms, then no byte within {probe.timeout:g} s"
            answer = _Answer(response.status, response.headers, b"", error, reason, _ms(started))
            probe.result(kind, Step.CONNECT, "GET", get_url, answer, ok=False)
            return False
        first_ms = _ms(started)
        self.connected_at = started
        cors = check_cors(response.headers, probe.origin)
        detail = f"event stream open, first byte after {first_ms:.0f} ms" + (
            f"; a browser could not read it: {cors.problem}" if cors.problem else ""
        )
        probe.record(
            StepResult(
                kind,
                Step.CONNECT,
                Outcome.OK,
                method="GET",
                url=redact_url(get_url),
                status=200,
                elapsed_ms=head_ms,
                cors=cors,
                first_byte_ms=first_ms,
                detail=detail,
            )
        )
        self.reader = asyncio.create_task(self.read(response, first))
        return True

    async def read(self, response: aiohttp.ClientResponse, first: bytes) -> None:
        decoder = SseDecoder(MAX_BODY)
        chunk = first
        try:
            while chunk:
                for payload in decoder.feed(chunk):
                    self.hub.feed(payload)
                chunk = await response.content.readany()
        except (aiohttp.ClientError, ValueError) as exc:
            self.hub.protocol_error = self.hub.protocol_error or f"the event stream broke: {_net_error(exc)[1]}"
        else:
            self.hub.protocol_error = self.hub.protocol_error or "the server ended the event stream"
        self.hub.changed.set()


class _LongPollingRun(_HttpRun):
    kind = TransportType.LONG_POLLING
    polls = True

    async def stop(self) -> None:
        if await self.close_message():
            await self.delete()

    def poll_url(self) -> str:
        return f"{self.url}&_={int(time.time() * 1000)}"

    async def connect(self) -> bool:
        probe = self.probe
        await probe.preflight(self.context, self.kind, Step.POLL_PREFLIGHT, self.url, "GET")
        url = self.poll_url()
        answer = await probe.exchange(self.context, "GET", url, probe.headers(self.token))
        if answer.status != 200:
            probe.result(
                self.kind,
                Step.CONNECT,
                "GET",
                url,
                answer,
                ok=False,
                detail="the first poll failed" if answer.status is not None else "",
            )
            return False
        self.connected_at = time.monotonic() - answer.elapsed_ms / 1000
        cors = check_cors(answer.headers, probe.origin)
        detail = "first poll answered" + (f"; a browser could not read it: {cors.problem}" if cors.problem else "")
        probe.result(self.kind, Step.CONNECT, "GET", url, answer, ok=True, detail=detail, cors=cors)
        if answer.body:
            self.hub.feed(answer.body)
        return True

    async def pump(self, timeout: float) -> None:
        """One poll, held at most ``timeout`` s; a failing poll ends the wait with an error the caller reports."""
        probe = self.probe
        url = self.poll_url()
        answer = await probe.exchange(self.context, "GET", url, probe.headers(self.token), timeout=timeout)
        if answer.status == 200:
            if answer.body:
                self.hub.feed(answer.body)
            return
        if answer.error is NetError.TIMEOUT:
            return
        why = f"a poll answered {answer.status}" if answer.status is not None else f"a poll failed: {answer.reason}"
        if answer.status == 204:
            why = "the server ended the connection (poll answered 204)"
        self.hub.protocol_error = self.hub.protocol_error or why
        self.hub.changed.set()

    async def delete(self) -> None:
        probe = self.probe
        await probe.preflight(self.context, self.kind, Step.DELETE_PREFLIGHT, self.url, "DELETE")
        answer = await probe.exchange(self.context, "DELETE", self.url, probe.headers(self.token))
        envelope = apim_message(answer.status, answer.body) if answer.status is not None else None
        if answer.status in (200, 202, 204):
            detail = "connection deleted"
        elif answer.status == 404 and envelope is None:
            detail = "404: the Close message had already ended the connection"
        elif answer.status == 404:
            detail = "APIM's 404: no DELETE operation (harmless: the Close message ended the connection)"
        else:
            detail = f"answered {answer.status}" if answer.status is not None else answer.reason
        ok = answer.status in (200, 202, 204) or (answer.status == 404 and envelope is None)
        probe.result(self.kind, Step.DELETE, "DELETE", self.url, answer, ok=ok, detail=detail)


async def _run_transports(probe: _Probe, base: str, token: str | None) -> None:
    tasks = [asyncio.create_task(probe.transport(kind, base, token)) for kind in ALL_TRANSPORTS]
    done, pending = await asyncio.wait(tasks, timeout=probe.timeout * TRANSPORT_BUDGET)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(BaseException):
            await task
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("probe of a transport failed", exc_info=task.exception())
    for kind, task in zip(ALL_TRANSPORTS, tasks, strict=True):
        if task in pending:
            probe.record(
                StepResult(
                    kind,
                    Step.CONNECT if not probe.steps.get(kind) else probe.steps[kind][-1].step,
                    Outcome.FAILED,
                    error=NetError.TIMEOUT,
                    detail=f"the probe's time for the transports ran out ({probe.timeout * TRANSPORT_BUDGET:g} s)",
                )
            )
        elif task.exception() is not None:
            probe.record(StepResult(kind, Step.CONNECT, Outcome.FAILED, detail=f"probe error: {task.exception()!r}"))


async def run_probe(options: ProbeOptions, on_step: OnStep | None = None) -> ProbeReport:
    """Probe ``options.url``; ``on_step`` is called with each step as it ends. Never raises for network trouble:
    every failure is in the report. Every wait is bounded by ``options.timeout``; the whole run by about
    ``(2 + TRANSPORT_BUDGET) * options.timeout``."""
    started = time.monotonic()
    probe = _Probe(options, on_step)
    context = HttpContext(headers=None, access_token=None, tracer=Tracer(None))
    try:
        findings, base, token = await probe.app_negotiate(context)
        if probe.webpubsub is not None:
            # Imported here: chat.probe.webpubsub_checks builds on this module's _Probe.
            from .webpubsub_checks import probe_webpubsub

            return await probe_webpubsub(probe, context, findings, probe.webpubsub, started)
    finally:
        await context.close()
    findings = replace(findings, checks=tuple(s for s in probe.steps[None] if s is not findings.step))
    if base is not None:
        await _run_transports(probe, base, token)
    steps = {kind: tuple(probe.steps.get(kind, ())) for kind in ALL_TRANSPORTS}
    return verdict.conclude(options, findings, steps, elapsed_ms=_ms(started))
