"""What ``chat probe`` observed and what it concluded: frozen dataclasses, no I/O.

:mod:`chat.probe.checks` fills :class:`StepResult` records (one per request or hub message a client exchanges),
:mod:`chat.probe.verdict` turns them into a :class:`TransportReport` per transport and the :class:`ProbeReport`, and
:mod:`chat.probe.report` renders that as a table or JSON. Every string in these records is already redacted: URLs
through :func:`signalr.redact.redact_url`, free text through :func:`signalr.redact.redact_text`; access tokens and
subscription keys are never stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from signalr.negotiate import TransportType

__all__ = [
    "ALL_TRANSPORTS",
    "DEFAULT_TIMEOUT",
    "PROFILE_TRANSPORTS",
    "WEBPUBSUB_TRANSPORT",
    "Cause",
    "Cors",
    "Finding",
    "Fix",
    "HostKind",
    "NegotiateFindings",
    "NetError",
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
    "origin_of",
    "working_profiles",
]

DEFAULT_TIMEOUT = 10.0
ALL_TRANSPORTS = (TransportType.WEBSOCKETS, TransportType.SERVER_SENT_EVENTS, TransportType.LONG_POLLING)
WEBPUBSUB_TRANSPORT = TransportType.WEBSOCKETS
"""Web PubSub's one transport: the row of a Web PubSub report."""


class Service(StrEnum):
    """What the app server's negotiate answers for: Azure SignalR Service (a redirect) or Azure Web PubSub (a client
    access URL, ``{"service": "webpubsub", "hub", "url"}``)."""

    SIGNALR = "signalr"
    WEBPUBSUB = "webpubsub"


class Profile(StrEnum):
    """The APIM configurations ``apim-gateway`` knows: the guide's two for SignalR (docs/apim.md §1; one serves
    WebSockets, the other SSE and LP) and Web PubSub's one WebSocket API ``client/hubs/<hub>`` (docs/apim.md §9)."""

    WEBSOCKET = "websocket"
    SSE_LP = "sse-lp"
    WEBPUBSUB = "webpubsub"


PROFILE_TRANSPORTS: dict[Profile, tuple[TransportType, ...]] = {
    Profile.WEBSOCKET: (TransportType.WEBSOCKETS,),
    Profile.SSE_LP: (TransportType.SERVER_SENT_EVENTS, TransportType.LONG_POLLING),
}


class Step(StrEnum):
    """One thing a SignalR client does, in the order a browser does it."""

    APP_NEGOTIATE = "app negotiate"
    """``POST <hub>/negotiate`` at the app server: the redirect to the service (or the gateway)."""
    ROUTE_CHECK = "route check"
    """A request no APIM operation matches, sent to the redirect's host: APIM answers its own 404 envelope."""
    NEGOTIATE_PREFLIGHT = "negotiate preflight"
    NEGOTIATE = "negotiate"
    POLL_PREFLIGHT = "poll preflight"
    CONNECT = "connect"
    SEND_PREFLIGHT = "send preflight"
    HANDSHAKE = "handshake"
    ECHO = "echo"
    CLOSE = "close message"
    DELETE_PREFLIGHT = "delete preflight"
    DELETE = "delete"
    CONNECTED = "connected message"
    """Web PubSub: the service's ``connected`` system message after the upgrade."""
    SOCKET_CLOSE = "close"
    """Web PubSub: the client's WebSocket close (code 1000)."""


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class NetError(StrEnum):
    """Why a request got no HTTP response."""

    REFUSED = "connection refused"
    DNS = "host name not found"
    CONNECT_TIMEOUT = "no TCP connection in time"
    TIMEOUT = "no answer in time"
    DISCONNECTED = "connection closed"
    TLS = "TLS failed"
    OTHER = "failed"


@dataclass(frozen=True)
class Cors:
    """The CORS headers of a response, and why a browser at the probe's origin would refuse it (``None``: it would
    not)."""

    allow_origin: str | None
    allow_credentials: bool
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class StepResult:
    """One step of one transport (``transport`` ``None`` for the app-server steps), as observed on the wire.

    ``status`` is the HTTP status (101 for an accepted WebSocket upgrade), ``None`` when no response came; then
    ``error`` says why. ``apim`` is APIM's own message when the body was the gateway's JSON envelope (a 404
    ``Resource not found``, a 401 about the subscription key, a 500); ``body`` is the start of any other body.
    ``first_byte_ms`` is, for the SSE stream, the time until its first bytes. ``detail`` says what happened in words.
    """

    transport: TransportType | None
    step: Step
    outcome: Outcome
    method: str = ""
    url: str = ""
    status: int | None = None
    elapsed_ms: float | None = None
    error: NetError | None = None
    apim: str | None = None
    body: str = ""
    cors: Cors | None = None
    first_byte_ms: float | None = None
    detail: str = ""
    error_name: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAILED


OnStep = Callable[[StepResult], None]
"""Called with each :class:`StepResult` as soon as the step ended (from the event loop running the probe)."""


class Cause(StrEnum):
    """Why a transport failed, in APIM terms; stable codes for ``--json``, tests and the TUI."""

    APP_UNREACHABLE = "app-server-unreachable"
    APP_NEGOTIATE_FAILED = "app-server-negotiate-failed"
    REDIRECT_UNREACHABLE = "redirect-unreachable"
    CLIENT_ENDPOINT_WRONG = "client-endpoint-wrong"
    GATEWAY_UNREACHABLE = "gateway-unreachable"
    WRONG_BACKEND = "wrong-backend"
    HOST_NOT_REWRITTEN = "host-not-rewritten"
    SUBSCRIPTION_KEY_MISSING = "subscription-key-missing"
    SUBSCRIPTION_KEY_INVALID = "subscription-key-invalid"
    PREFLIGHT_SUBSCRIPTION = "preflight-subscription-required"
    PREFLIGHT_NOT_FOUND = "preflight-no-options-operation"
    CORS_REFUSED = "cors-refused"
    NO_NEGOTIATE_OPERATION = "no-negotiate-operation"
    NO_CONNECT_OPERATION = "no-connect-operation"
    UPGRADE_REFUSED = "websocket-upgrade-refused"
    SSE_BUFFERED = "sse-buffered"
    NO_DELETE_OPERATION = "no-delete-operation"
    TOKEN_REJECTED = "token-rejected"
    TRANSPORT_NOT_OFFERED = "transport-not-offered"
    HANDSHAKE_FAILED = "handshake-failed"
    ECHO_FAILED = "echo-failed"
    SUBPROTOCOL_MISSING = "subprotocol-not-returned"
    CONNECTED_MISSING = "no-connected-message"
    EVENT_HANDLER_FAILED = "event-handler-failed"
    TIMED_OUT = "timed-out"
    UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class Fix:
    """What to change: ``doc`` names the guide's step (and our notes), ``command`` is the ``apim-gateway export``
    command that writes a working configuration (empty when the fix is not in APIM)."""

    doc: str
    command: str = ""


@dataclass(frozen=True)
class Finding:
    """One conclusion: ``what`` failed (the request and its answer), the ``cause`` in APIM terms and the ``fix``.

    ``harmless`` findings (no ``DELETE`` operation) are notes: the transport still works.
    """

    code: Cause
    step: Step | None
    what: str
    cause: str
    fix: Fix | None = None
    harmless: bool = False


class Works(StrEnum):
    YES = "yes"
    NO = "no"
    SERVER_ONLY = "server-side only"
    """Server-side clients connect; browsers cannot (their CORS preflight fails)."""


@dataclass(frozen=True)
class TransportReport:
    """One transport's verdict: whether it works, its latency, the first failure that matters and harmless notes.

    ``latency_ms`` is the echo round trip (the hub's ``echo`` through the whole path), or, with ``--no-echo``, the
    connect and handshake time.
    """

    transport: TransportType
    works: Works
    latency_ms: float | None
    steps: tuple[StepResult, ...]
    problem: Finding | None = None
    notes: tuple[Finding, ...] = ()

    @property
    def failed_step(self) -> StepResult | None:
        """The first failed step, if any."""
        return next((s for s in self.steps if s.failed), None)


class HostKind(StrEnum):
    """What the redirect's host name looks like."""

    APIM = "APIM default host (*.azure-api.net)"
    SERVICE = "Azure SignalR Service (*.service.signalr.net)"
    WEBPUBSUB = "Azure Web PubSub (*.webpubsub.azure.com)"
    LOCAL = "local address"
    CUSTOM = "custom domain"


class Target(StrEnum):
    """What the redirect's host turned out to be."""

    GATEWAY = "APIM gateway"
    SERVICE = "SignalR Service"
    WEBPUBSUB = "Web PubSub Service"
    APP_SERVER = "the app server itself"
    OTHER = "neither APIM nor SignalR Service"
    NOT_WEBPUBSUB = "neither APIM nor Web PubSub Service"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TokenInfo:
    """The redirect's access token, decoded without verifying its signature. The token itself is never kept."""

    lifetime_s: int | None = None
    """``exp`` - ``iat`` (or ``nbf``)."""
    expires_in_s: int | None = None
    """``exp`` - now, at the probe."""
    audience: str | None = None
    problem: str | None = None
    """Why the token looks unusable (not a JWT, expired, no ``aud``), else ``None``."""


@dataclass(frozen=True)
class NegotiateFindings:
    """The app server's negotiate and what its redirect (for Web PubSub: its client access URL) says.

    ``redirect_url`` is redacted; ``redirect_host`` is ``host:port``. ``target`` is what answered there (APIM is
    recognised by its own 404 envelope on a route no operation serves), ``target_evidence`` says how that was told.
    ``query_key`` is whether the redirect URL carries a subscription key in its query (what browsers need).
    ``checks`` are the other requests of this phase: the app server's preflight (for a page on another origin) and
    the route check on the redirect's host. ``service`` is what the app server answers for; ``hub`` is the Web PubSub
    hub it named (empty for SignalR).
    """

    step: StepResult
    redirect: bool = False
    redirect_url: str = ""
    redirect_host: str = ""
    host_kind: HostKind | None = None
    target: Target = Target.UNKNOWN
    target_evidence: str = ""
    token: TokenInfo | None = None
    query_key: bool = False
    checks: tuple[StepResult, ...] = ()
    service: Service = Service.SIGNALR
    hub: str = ""


@dataclass(frozen=True)
class ProbeOptions:
    """What to probe. ``url`` is the app server's hub URL (``http://host:5000/chat``, any query is kept, e.g.
    ``?subscription-key=…`` for the browser path); ``origin`` is the page origin of the CORS checks (default: the app
    server's); ``timeout`` bounds every single wait in seconds; ``echo`` calls the Chat hub's ``echo``."""

    url: str
    subscription_key: str | None = field(default=None, repr=False)
    origin: str | None = None
    echo: bool = True
    timeout: float = DEFAULT_TIMEOUT

    @property
    def page_origin(self) -> str:
        return self.origin or origin_of(self.url)


@dataclass(frozen=True)
class ProbeReport:
    """Everything one probe run found. ``problem`` is set when the run stopped before the transports (the app server
    is unreachable or did not redirect); ``transports`` then carry that same problem. For Web PubSub (``service``)
    ``transports`` holds one WebSockets report: the service's only transport."""

    url: str
    origin: str
    timeout_s: float
    echo: bool
    negotiate: NegotiateFindings
    transports: tuple[TransportReport, ...]
    problem: Finding | None = None
    elapsed_ms: float = 0.0
    service: Service = Service.SIGNALR

    @property
    def working_profiles(self) -> tuple[Profile, ...]:
        return working_profiles(self.transports, self.service)

    def transport(self, kind: TransportType) -> TransportReport | None:
        return next((t for t in self.transports if t.transport is kind), None)


def working_profiles(transports: Sequence[TransportReport], service: Service = Service.SIGNALR) -> tuple[Profile, ...]:
    """The profiles whose transports all work (for browsers too); for Web PubSub, ``webpubsub`` when its WebSocket
    works."""
    works = {t.transport for t in transports if t.works is Works.YES}
    if service is Service.WEBPUBSUB:
        return (Profile.WEBPUBSUB,) if TransportType.WEBSOCKETS in works else ()
    return tuple(p for p, kinds in PROFILE_TRANSPORTS.items() if all(k in works for k in kinds))


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (lower case, default ports dropped), as a browser writes ``Origin``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")
