"""One negotiated connection: negotiate (following redirects), pick the transport, connect it.

Negotiate exactly like ``@microsoft/signalr`` (``docs/protocol.md`` §3.1–§3.3): ``POST <path>/negotiate?…`` with
``negotiateVersion=1`` (trap 7), the custom headers and, once a token is known, ``Authorization: Bearer``. A reply with
``url`` is a redirect: the URL becomes the new base, its ``accessToken`` the bearer for every later request, and the
custom headers stay; at most :data:`~signalr.negotiate.MAX_REDIRECTS` negotiates. The final reply's
``connectionToken`` becomes ``id=`` (trap 6).

Transport choice: WebSockets never falls back (an APIM instance serves it or SSE/LongPolling, never both,
docs/apim.md §2). ``sse-lp`` tries ServerSentEvents and, when its connect fails, negotiates again (a fresh connection,
as the JS client does) and uses LongPolling; both attempts are traced.

The hub protocol's transfer format narrows the choice as in the JS client's ``_resolveTransportOrError``
(https://github.com/dotnet/aspnetcore/blob/main/src/SignalR/clients/ts/signalr/src/HttpConnection.ts): a transport
whose ``transferFormats`` in the negotiate response lack the format is skipped with ``'<transport>' does not support
<format>.``, so MessagePack (Binary) behind the ``sse-lp`` profile goes straight to LongPolling. A transport that can
never carry the format (ServerSentEvents and Binary) is ruled out before negotiating: when none is left, start fails
with :class:`~signalr.client.errors.TransferFormatNotSupported` without a single request.
"""

from __future__ import annotations

import logging
import time

import aiohttp

from signalr.connection_string import is_http_url
from signalr.hub_protocol import HubProtocol, TransferFormat
from signalr.json_protocol import JSON
from signalr.negotiate import (
    MAX_REDIRECTS,
    NegotiateError,
    NegotiateRedirect,
    NegotiateResult,
    TransportType,
    connect_url,
    negotiate_url,
    parse_negotiate_response,
)
from signalr.redact import redact_url

from .errors import (
    GatewayRouteNotFound,
    NegotiateFailed,
    SignalRClientError,
    TransferFormatNotSupported,
    TransportFailed,
    host_of,
)
from .http_context import HTTP_TIMEOUT, HttpContext, error_for_exception, error_for_status, read_limited, to_url
from .trace import Tracer
from .transport_choice import TRANSPORT_CLASSES, TransportChoice
from .transports import (
    LongPollingTransport,
    OnClose,
    OnReceive,
    ServerSentEventsTransport,
    Transport,
    WebSocketTransport,
)

__all__ = ["MAX_NEGOTIATE_BODY", "HttpConnection", "negotiate"]

log = logging.getLogger(__name__)

MAX_NEGOTIATE_BODY = 1024 * 1024


async def negotiate(context: HttpContext, url: str) -> tuple[str, NegotiateResult]:
    """Negotiate against ``url``, following redirects; returns the final base URL and the service's reply.

    Updates ``context.access_token`` with each redirect's token. Raises :class:`NegotiateFailed`,
    :class:`GatewayRouteNotFound`, :class:`SubscriptionKeyRejected`, :class:`Unauthorized` or
    :class:`ServerUnreachable`.
    """
    for _ in range(MAX_REDIRECTS):
        reply = await _negotiate_once(context, negotiate_url(url))
        if isinstance(reply, NegotiateResult):
            return url, reply
        # §3.1: the redirect URL is the new base; its token (if any) is the bearer from now on; custom headers stay.
        url = reply.url
        if reply.access_token:
            context.access_token = reply.access_token
        context.tracer.emit("redirect", url=url, detail=f"redirected to {redact_url(url)}")
    raise NegotiateFailed("Negotiate redirection limit exceeded.", status=200, url=url)


async def _negotiate_once(context: HttpContext, target: str) -> NegotiateRedirect | NegotiateResult:
    """One negotiate POST to ``target``, traced; a redirect is returned only when its URL is http(s)."""
    started = time.monotonic()
    try:
        async with context.session.post(
            to_url(target),
            headers=context.request_headers(),
            timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
        ) as response:
            status = response.status
            challenge = response.headers.get("WWW-Authenticate", "")
            body = await read_limited(response, MAX_NEGOTIATE_BODY)
    except ValueError as exc:
        raise NegotiateFailed(f"negotiate at {host_of(target)} failed: {exc}", status=None, url=target) from None
    except Exception as exc:
        error = error_for_exception(exc, target, what="negotiate", transport="negotiate")
        context.tracer.emit("error", url=target, method="POST", started=started, detail=str(error))
        raise error from None

    def trace(detail: str) -> None:
        context.tracer.emit(
            "negotiate", url=target, method="POST", status=status, started=started, size=len(body), detail=detail
        )

    if status != 200:
        error = error_for_status(status, body, target, what="negotiate", transport="negotiate", challenge=challenge)
        trace(str(error))
        raise error
    try:
        reply = parse_negotiate_response(body)
    except NegotiateError as exc:
        trace(str(exc))
        raise NegotiateFailed(str(exc), status=status, url=target) from None
    if isinstance(reply, NegotiateRedirect):
        if not _is_redirect_url(reply.url):
            message = f"the negotiate redirect from {host_of(target)} is not an http(s) URL: {redact_url(reply.url)!r}"
            trace(message)
            raise NegotiateFailed(message, status=status, url=target)
        trace("redirect")
        return reply
    offered = ", ".join(f"{t.transport.value} ({_formats(t.transfer_formats)})" for t in reply.transports) or "none"
    trace(f"connection {reply.connection_id}, v{reply.negotiate_version}, transports: {offered}")
    return reply


def _formats(formats: frozenset[TransferFormat]) -> str:
    return "/".join(f.value for f in TransferFormat if f in formats) or "no transfer format"


def _does_not_support(kind: TransportType, transfer_format: TransferFormat) -> str:
    """The JS client's reason for skipping a transport (``HttpConnection._resolveTransportOrError``)."""
    return f"'{kind.value}' does not support {transfer_format.value}."


class HttpConnection:
    """Negotiate + one transport. Call :meth:`start` once, then :meth:`send`; :meth:`stop` always (idempotent).

    ``protocol`` is the hub protocol: the transport is picked and opened for its transfer format. ``on_receive``
    gets the bytes as they arrived; ``on_close`` is called once if the server side ends the transport.
    """

    def __init__(
        self,
        url: str,
        *,
        choice: TransportChoice,
        protocol: HubProtocol = JSON,
        headers: dict[str, str],
        access_token: str | None,
        tracer: Tracer,
        on_receive: OnReceive,
        on_close: OnClose,
        sse_open_timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._choice = choice
        self._protocol = protocol
        self._headers = headers
        self._access_token = access_token
        self._tracer = tracer
        self._on_receive = on_receive
        self._on_close = on_close
        self._sse_open_timeout = sse_open_timeout
        self._context: HttpContext | None = None
        self.transport: Transport | None = None
        self.connection_id: str | None = None
        self.base_url: str | None = None

    @property
    def inherent_keep_alive(self) -> bool:
        return self.transport is not None and self.transport.inherent_keep_alive

    @property
    def transport_name(self) -> str | None:
        return self.transport.kind.value if self.transport is not None else None

    async def start(self) -> None:
        """Negotiate and connect; raises a :class:`SignalRClientError` subclass (then call :meth:`stop`)."""
        fmt = self._protocol.transfer_format
        wanted = self._choice.transports
        if not any(fmt in TRANSPORT_CLASSES[t].transfer_formats for t in wanted):
            # Nothing the user allowed can ever carry this format: say so before any request.
            raise self._unsupported([_does_not_support(t, fmt) for t in wanted])
        context = HttpContext(headers=self._headers, access_token=self._access_token, tracer=self._tracer)
        self._context = context
        base, reply = await negotiate(context, self._url)
        usable = self._usable(base, reply)
        failures: list[SignalRClientError] = []
        for attempt, kind in enumerate(usable):
            if attempt > 0:
                # The failed transport may have consumed the connection: negotiate a fresh one (JS HttpConnection).
                self._tracer.emit("error", url=base, detail=f"{failures[-1]}; falling back to {kind.value}")
                base, reply = await negotiate(context, base)
            transport = self._make(kind, context)
            target = connect_url(base, reply.id_for_connect)
            try:
                await transport.connect(target, fmt)
            except SignalRClientError as exc:
                failures.append(exc)
                await transport.stop(graceful=False)
                continue
            self.transport = transport
            self.connection_id = reply.connection_id
            self.base_url = base
            return
        raise _combined(failures)

    def _usable(self, base: str, reply: NegotiateResult) -> list[TransportType]:
        """The chosen transports the service offers for the protocol's transfer format, in the user's order; each
        one skipped for its format is traced. Raises when none is left."""
        fmt = self._protocol.transfer_format
        wanted = self._choice.transports
        usable: list[TransportType] = []
        reasons: list[str] = []
        missing: list[TransportType] = []
        by_service = False
        for kind in wanted:
            formats = reply.transfer_formats(kind)
            if formats is None and fmt in TRANSPORT_CLASSES[kind].transfer_formats:
                missing.append(kind)
                continue
            if formats is not None and fmt in formats and fmt in TRANSPORT_CLASSES[kind].transfer_formats:
                usable.append(kind)
                continue
            reason = _does_not_support(kind, fmt)
            by_service = by_service or fmt in TRANSPORT_CLASSES[kind].transfer_formats
            reasons.append(reason)
            self._tracer.emit("negotiate", url=base, detail=f"{kind.value} skipped: {reason}")
        if usable:
            return usable
        if by_service:
            raise self._unsupported(reasons, service_host=host_of(base))
        offered = ", ".join(t.value for t in reply.available_transports) or "no transport"
        also = f"; {' '.join(reasons)}" if reasons else ""
        raise TransportFailed(
            f"the service at {host_of(base)} does not offer {' or '.join(t.value for t in missing)} "
            f"(it offers {offered}){also}"
        )

    def _unsupported(self, reasons: list[str], *, service_host: str = "") -> TransferFormatNotSupported:
        protocol = self._protocol
        return TransferFormatNotSupported(
            reasons, protocol=protocol.name, transfer_format=protocol.transfer_format.value, service_host=service_host
        )

    def _make(self, kind: TransportType, context: HttpContext) -> Transport:
        if kind is TransportType.WEBSOCKETS:
            return WebSocketTransport(context, self._on_receive, self._on_close)
        if kind is TransportType.SERVER_SENT_EVENTS:
            return ServerSentEventsTransport(
                context, self._on_receive, self._on_close, open_timeout=self._sse_open_timeout
            )
        return LongPollingTransport(context, self._on_receive, self._on_close)

    async def send(self, data: bytes) -> None:
        if self.transport is None:
            raise TransportFailed("the transport is not connected")
        await self.transport.send(data)

    async def stop(self, *, graceful: bool = True) -> None:
        """Close the transport (if it is open) and the HTTP session; never raises.

        ``graceful=False`` when the server already ended the connection (no LongPolling DELETE then).
        """
        transport, self.transport = self.transport, None
        if transport is not None:
            try:
                await transport.stop(graceful=graceful)
            except Exception:
                log.exception("transport stop failed")
        context, self._context = self._context, None
        if context is not None:
            await context.close()


def _is_redirect_url(url: str) -> bool:
    """A redirect comes from a server: besides being http(s), it must be one printable token, sent byte for byte."""
    return is_http_url(url) and url.isprintable() and " " not in url


def _combined(failures: list[SignalRClientError]) -> SignalRClientError:
    if len(failures) == 1:
        return failures[0]
    last = failures[-1]
    if all(isinstance(f, GatewayRouteNotFound) for f in failures):
        assert isinstance(last, GatewayRouteNotFound)
        return GatewayRouteNotFound(host=last.host, transport="ServerSentEvents or LongPolling", url=last.url)
    if type(last) is TransportFailed:
        return TransportFailed(f"{last} (before that, {failures[0]})")
    return last
