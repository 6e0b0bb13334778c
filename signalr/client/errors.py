"""Errors of the asyncio client: every message says what happened and what the user can do about it.

All are :class:`SignalRClientError` subclasses, so a UI can catch that one class and show ``str(error)``. Messages
never contain access tokens or subscription keys (URLs in them are redacted).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from signalr.redact import redact_url

__all__ = [
    "ConnectionClosedError",
    "GatewayRouteNotFound",
    "HandshakeFailed",
    "HubError",
    "InvocationTimeout",
    "NegotiateFailed",
    "NotConnected",
    "ServerTimeout",
    "ServerUnreachable",
    "SignalRClientError",
    "SubscriptionKeyRejected",
    "TransferFormatNotSupported",
    "TransportFailed",
    "Unauthorized",
    "apim_message",
    "host_of",
]


class SignalRClientError(Exception):
    """Base class of every error the client raises or reports to ``on_close``."""


class NegotiateFailed(SignalRClientError):
    """The negotiate request failed: ``status`` is the HTTP status (``None`` when there was no usable response)."""

    def __init__(self, message: str, *, status: int | None, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = redact_url(url)


class GatewayRouteNotFound(SignalRClientError):
    """APIM's own 404 (``{ "statusCode": 404, "message": "Resource not found" }``): the gateway has no operation there.

    On the connect URL this means the APIM instance is configured for the other profile (docs/apim.md §2): a
    ``websocket`` profile serves no SSE/LongPolling, an ``sse-lp`` profile serves no WebSockets.
    """

    def __init__(self, *, host: str, transport: str, path: str = "client/", url: str = "") -> None:
        if path == "client/":
            other = "websocket" if transport == "WebSockets" else "sse-lp"
            this = "sse-lp" if transport == "WebSockets" else "websocket"
            message = (
                f"the gateway at {host} has no API for {transport} on client/ — APIM is configured for the other "
                f"profile (websocket vs sse-lp): it looks like the {this} profile, while {transport} needs the "
                f"{other} profile; pick a transport that profile serves or change the APIM configuration"
            )
        else:
            message = (
                f"the gateway at {host} has no API for {path} (APIM answered 404 Resource not found) — "
                f"check the APIM API suffixes and operations, or the ClientEndpoint in the connection string"
            )
        super().__init__(message)
        self.host = host
        self.transport = transport
        self.path = path
        self.url = redact_url(url)


class SubscriptionKeyRejected(SignalRClientError):
    """APIM's 401 with a ``statusCode`` JSON body: the subscription key is missing or not one of the gateway's keys."""

    def __init__(self, *, host: str, apim_message: str = "") -> None:
        detail = f" (APIM: {apim_message})" if apim_message else ""
        super().__init__(
            f"missing or invalid subscription key (Ocp-Apim-Subscription-Key) at the gateway {host}{detail} — "
            f"pass the key of an active subscription, e.g. chat --subscription-key KEY"
        )
        self.host = host


class Unauthorized(SignalRClientError):
    """The service (or app server) answered 401: the access token is missing, malformed or signed with another key."""

    def __init__(self, *, host: str, what: str, reason: str = "") -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"{what} was rejected with 401 Unauthorized by {host}{why}: the access token is missing or invalid — "
            f"check that the app server's connection string has the service's current AccessKey"
        )
        self.host = host


class ServerUnreachable(SignalRClientError):
    """Nothing accepted the TCP connection (refused, unknown host, or connect timeout)."""

    def __init__(self, *, host: str, reason: str = "connection refused") -> None:
        super().__init__(f"cannot reach {host} ({reason}) — is the server running and is the URL right?")
        self.host = host


class TransportFailed(SignalRClientError):
    """The transport could not connect or broke (unexpected status, protocol mismatch, a proxy in the way)."""


class TransferFormatNotSupported(TransportFailed):
    """No transport left that can carry the hub protocol's transfer format: ServerSentEvents carries Text only, so
    MessagePack (Binary) needs WebSockets or LongPolling, and the service must list the format for the transport in
    its negotiate response. Raised before any connect request.

    ``reasons`` are the JS client's words per skipped transport, e.g. ``'ServerSentEvents' does not support
    Binary.`` (``HttpConnection._resolveTransportOrError``,
    https://github.com/dotnet/aspnetcore/blob/main/src/SignalR/clients/ts/signalr/src/HttpConnection.ts).
    ``service_host`` names the service when its negotiate response ruled a transport out, ``""`` when only the
    client's own transports did.
    """

    def __init__(self, reasons: list[str], *, protocol: str, transfer_format: str, service_host: str = "") -> None:
        if service_host:
            hint = (
                f"The service at {service_host} does not list {transfer_format} in the negotiate response's "
                f"transferFormats for the transports left — use the json protocol with it"
            )
        elif transfer_format == "Binary":
            hint = (
                f"The {protocol} hub protocol is binary and needs WebSockets or LongPolling — choose websockets, "
                f"longpolling or sse-lp, or the json protocol for ServerSentEvents"
            )
        else:
            hint = f"The {protocol} hub protocol needs a transport that carries {transfer_format}"
        super().__init__(f"{' '.join(reasons)} {hint}")
        self.reasons = list(reasons)
        self.protocol = protocol
        self.transfer_format = transfer_format
        self.service_host = service_host


class HandshakeFailed(SignalRClientError):
    """The hub handshake was refused by the server or not answered in time."""


class ServerTimeout(SignalRClientError):
    """Nothing arrived from the server for the server timeout (30 s by default, never on LongPolling)."""


class ConnectionClosedError(SignalRClientError):
    """The server closed the connection with a Close message carrying an error."""


class HubError(SignalRClientError):
    """An invocation completed with an error; ``str()`` is the server's error text."""


class NotConnected(SignalRClientError):
    """send/invoke was called while the connection is not in the Connected state."""


class InvocationTimeout(SignalRClientError):
    """invoke() got no Completion within its timeout."""


def host_of(url: str) -> str:
    """``host:port`` of a URL, with the scheme's default port filled in: what the user must check."""
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "wss": 443}.get(parts.scheme, 80)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def apim_message(status: int, body: bytes) -> str | None:
    """APIM's message when ``body`` is the gateway's own error envelope for the response ``status``, else ``None``.

    The gateway answers with ``{ "statusCode": 404, "message": "Resource not found" }`` or a 401 ``statusCode`` body
    (docs/apim.md §2, §3); the service's own errors are plain text, which is how the two are told apart.
    """
    if not body or len(body) > 4096 or not body.lstrip().startswith(b"{"):
        return None
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    code = obj.get("statusCode")
    if not isinstance(code, int) or isinstance(code, bool) or code != status:
        return None
    message = obj.get("message")
    return message if isinstance(message, str) else ""
