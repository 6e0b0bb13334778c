"""What every HTTP request of one connection shares: the aiohttp session, the headers, the bearer token, the tracer.

Header rules (``docs/protocol.md`` §3.1, §3.4): the user's custom headers (e.g. ``Ocp-Apim-Subscription-Key``) go on
every request of every transport, the WebSocket upgrade and the SSE GET included, and survive redirects. The bearer
token is the caller's ``access_token`` until a negotiate redirect replaces it; it travels as ``Authorization: Bearer``
(the SSE transport also puts it in the query, where a browser would). Responses are mapped to the client's errors
here, so every transport reports the same problem in the same words.
"""

from __future__ import annotations

import asyncio
import platform
import re
import types
from collections.abc import Mapping
from importlib import metadata
from urllib.parse import urlsplit

import aiohttp
import yarl

from signalr.redact import redact_text

from .errors import (
    GatewayRouteNotFound,
    NegotiateFailed,
    ServerUnreachable,
    SignalRClientError,
    SubscriptionKeyRejected,
    TransportFailed,
    Unauthorized,
    apim_message,
    host_of,
)
from .trace import Tracer

__all__ = ["MAX_ERROR_BODY", "HttpContext", "error_for_exception", "error_for_status", "to_url", "user_agent"]

MAX_ERROR_BODY = 4096
HTTP_TIMEOUT = 100.0  # JS client default request timeout (docs/protocol.md §0.1)
CONNECT_TIMEOUT = 10.0


def _version() -> str:
    try:
        return metadata.version("signalr-apim-chat")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def user_agent() -> str:
    """The ``X-SignalR-User-Agent`` value, laid out like the JS client's: ``name/x.y (version; OS; runtime; ver)``."""
    version = _version()
    major_minor = ".".join(version.split(".")[:2])
    return (
        f"signalr-apim-chat/{major_minor} ({version}; {platform.system() or 'Unknown OS'}; "
        f"{platform.python_implementation()}; {platform.python_version()})"
    )


def to_url(url: str) -> yarl.URL:
    """A yarl URL that sends ``url``'s bytes as they are: the query of a redirect URL must not be re-encoded.

    (``asrs.op=%2Fchat``, ``asrs_request_id=…%3D`` and the unencoded ``id`` reach the service byte for byte.)
    """
    if url.isascii() and " " not in url:
        return yarl.URL(url, encoded=True)
    return yarl.URL(url)


class HttpContext:
    """Per-connection HTTP state. Create it inside the running loop; call :meth:`close` when the connection ends."""

    def __init__(self, *, headers: Mapping[str, str] | None, access_token: str | None, tracer: Tracer) -> None:
        self.custom_headers = dict(headers or {})
        self.access_token = access_token
        self.tracer = tracer
        self.user_agent = user_agent()
        # aiohttp's ws_connect drops the body of a refused upgrade; APIM's 404/401 are told apart from the service's
        # only by that body, so a request hook keeps it (the refusal is then mapped by error_for_status).
        self.refused_upgrade_body = b""
        hooks = aiohttp.TraceConfig()
        hooks.on_request_end.append(self._keep_refused_upgrade_body)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            trace_configs=[hooks],
        )

    def request_headers(self, *, with_token: bool = True) -> dict[str, str]:
        """User agent, then the custom headers, then ``Authorization`` (the token wins, as in the JS client)."""
        out = {"X-SignalR-User-Agent": self.user_agent}
        out.update(self.custom_headers)
        if with_token and self.access_token:
            out["Authorization"] = f"Bearer {self.access_token}"
        return out

    async def close(self) -> None:
        await self.session.close()

    async def _keep_refused_upgrade_body(
        self, session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        response = params.response
        if params.headers.get("Upgrade", "").lower() != "websocket" or response.status == 101:
            return
        try:
            self.refused_upgrade_body = await asyncio.wait_for(response.content.read(MAX_ERROR_BODY), 2.0)
        except Exception:
            self.refused_upgrade_body = b""


_DESCRIPTION = re.compile(r'error_description="([^"]*)"')


def _snippet(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return f": {redact_text(text)}" if text else ""


def error_for_status(
    status: int,
    body: bytes,
    url: str,
    *,
    what: str,
    transport: str,
    challenge: str = "",
) -> SignalRClientError:
    """The error for an unexpected HTTP status.

    ``what`` names the request for the message (``negotiate``, ``the WebSockets upgrade``, ``the LongPolling poll``…);
    ``transport`` is the transport the request belongs to (for the gateway profile hint); ``challenge`` is the
    response's ``WWW-Authenticate`` header, whose ``error_description`` says why a token was refused. APIM's own
    envelopes are recognised by their JSON body (docs/apim.md §2, §3); everything else is the service's or the app
    server's answer.
    """
    host = host_of(url)
    gateway_message = apim_message(status, body)
    if gateway_message is not None and status == 404:
        path = f"POST {urlsplit(url).path}" if what == "negotiate" else "client/"
        return GatewayRouteNotFound(host=host, transport=transport, path=path, url=url)
    if gateway_message is not None and status == 401:
        return SubscriptionKeyRejected(host=host, apim_message=gateway_message)
    if status == 401:
        match = _DESCRIPTION.search(challenge)
        reason = redact_text(match.group(1))[:200] if match else ""
        return Unauthorized(host=host, what=what[0].upper() + what[1:], reason=reason)
    if what == "negotiate":
        return NegotiateFailed(
            f"Unexpected status code returned from negotiate '{status}' (POST {host}{_snippet(body)})",
            status=status,
            url=url,
        )
    return TransportFailed(f"{transport} failed: {what} to {host} returned HTTP {status}{_snippet(body)}")


def error_for_exception(exc: BaseException, url: str, *, what: str, transport: str) -> SignalRClientError:
    """The error for a request that got no HTTP response at all."""
    host = host_of(url)
    if isinstance(exc, SignalRClientError):
        return exc
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ServerUnreachable(host=host, reason="host name not found")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else str(exc.strerror or exc)
        return ServerUnreachable(host=host, reason=redact_text(reason))
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ServerUnreachable(host=host, reason=f"no TCP connection within {CONNECT_TIMEOUT:g} s")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        message = f"{what} to {host} timed out"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        message = f"{host} closed the connection during {what}"
    else:
        message = f"{what} to {host} failed: {redact_text(str(exc)) or type(exc).__name__}"
    if what == "negotiate":
        return NegotiateFailed(message, status=None, url=url)
    return TransportFailed(f"{transport} failed: {message}")


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The response body, or :class:`ValueError` when it is larger than ``limit`` bytes (a hostile or broken peer)."""
    data = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        data += chunk
        if len(data) > limit:
            raise ValueError(f"response body larger than {limit} bytes")
    return bytes(data)
