"""Negotiate: the app server redirect, the service reply (v0/v1), the client URL rules (``docs/protocol.md`` §2, §3).

Pure functions over strings and bytes; the aiohttp adapters in the emulator, the app server and the client call them.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

from .connection_string import ConnectionString
from .hub_protocol import TransferFormat
from .tokens import DEFAULT_LIFETIME, mint_token

__all__ = [
    "MAX_REDIRECTS",
    "AvailableTransport",
    "NegotiateError",
    "NegotiateRedirect",
    "NegotiateResult",
    "TransportType",
    "WebPubSubAnswer",
    "build_redirect",
    "connect_url",
    "negotiate_url",
    "new_request_id",
    "parse_negotiate_response",
    "requested_version",
    "service_negotiate_response",
]

MAX_REDIRECTS = 100
# .NET's white space for number parsing is tab, line feed, vertical tab, form feed, carriage return and space only
# (Python's \s also takes \x1c-\x1f and Unicode spaces, which int() then refuses).
_INTEGER = re.compile(r"[\t\n\v\f\r ]*[+-]?[0-9]{1,16}[\t\n\v\f\r ]*")


class TransportType(Enum):
    """Transport names as they appear in ``availableTransports``."""

    WEBSOCKETS = "WebSockets"
    SERVER_SENT_EVENTS = "ServerSentEvents"
    LONG_POLLING = "LongPolling"


ALL_TRANSPORTS: list[dict[str, Any]] = [
    {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
    {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
    {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
]
_ALL_TRANSPORTS_JSON = json.dumps(ALL_TRANSPORTS, separators=(",", ":"))
# Strings that JSON writes as they are between quotes: connection ids and tokens from ``secrets.token_urlsafe``.
_JSON_AS_IS = re.compile(r"[A-Za-z0-9_-]*")


class NegotiateError(Exception):
    """Negotiation failed; the message is the one the official JS client would report."""


MAX_WEBPUBSUB_URL = 8192
"""Longest client access URL taken from a Web PubSub answer (a token URL is a few hundred characters)."""


class WebPubSubAnswer(NegotiateError):
    """The app server answers for Azure Web PubSub (``{"service": "webpubsub", "hub": …, "url": …}``), not SignalR.

    ``url`` is the client access URL (``ws://``/``wss://``, with its ``access_token``: never show it unredacted) and
    ``hub`` the Web PubSub hub. A SignalR client cannot go on; a caller that speaks Web PubSub catches this and
    connects to ``url`` with a Web PubSub client (https://learn.microsoft.com/azure/azure-web-pubsub/howto-websocket-connect).
    """

    def __init__(self, url: str, hub: str) -> None:
        super().__init__(
            f"The app server answers for Azure Web PubSub, not SignalR (hub {hub!r}): connect with a Web PubSub "
            "client to the client access URL it returned."
        )
        self.url = url
        self.hub = hub

    def __repr__(self) -> str:  # the URL carries the access token
        return f"WebPubSubAnswer(hub={self.hub!r})"


@dataclass(frozen=True)
class NegotiateRedirect:
    """A redirect reply: connect to ``url`` with ``access_token`` as the bearer token (§3.1)."""

    url: str
    access_token: str = field(repr=False)

    def to_json(self) -> bytes:
        """The ASP.NET SDK's reply, fields in its order; ``negotiateVersion`` 0 and no transports (trap 5)."""
        body = {
            "negotiateVersion": 0,
            "url": self.url,
            "accessToken": self.access_token,
            "availableTransports": [],
        }
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class AvailableTransport:
    """One ``availableTransports`` entry: a transport and the transfer formats the service takes on it."""

    transport: TransportType
    transfer_formats: frozenset[TransferFormat]


@dataclass(frozen=True)
class NegotiateResult:
    """A service's final reply: the connection to open."""

    connection_id: str
    connection_token: str | None
    negotiate_version: int
    transports: tuple[AvailableTransport, ...]

    @property
    def id_for_connect(self) -> str:
        """The ``id=`` query value: ``connectionToken`` under v1, ``connectionId`` under v0 (trap 6)."""
        return self.connection_token or self.connection_id

    @property
    def available_transports(self) -> tuple[TransportType, ...]:
        """The offered transports, in the service's order."""
        return tuple(entry.transport for entry in self.transports)

    def transfer_formats(self, transport: TransportType) -> frozenset[TransferFormat] | None:
        """The formats the service takes on ``transport``; ``None`` when it does not offer that transport."""
        for entry in self.transports:
            if entry.transport is transport:
                return entry.transfer_formats
        return None


def new_request_id(now_ns: int | None = None) -> str:
    """An ``asrs_request_id``: base64 of an 8-byte monotonic timestamp, like the SDK's Stopwatch value."""
    ticks = (time.monotonic_ns() if now_ns is None else now_ns) // 100
    return base64.b64encode(ticks.to_bytes(8, "little", signed=False)).decode()


def build_redirect(
    connection: ConnectionString,
    hub: str,
    *,
    request_path: str,
    request_query: str = "",
    request_id: str | None = None,
    lifetime: int = DEFAULT_LIFETIME,
    claims: dict[str, Any] | None = None,
    now: float | None = None,
) -> NegotiateRedirect:
    """The app server's answer to ``POST {request_path}?{request_query}``, as the ASP.NET SDK builds it (§2).

    ``url`` = ClientEndpoint's absolute URI + ``client/?hub=`` + hub [+ ``&asrs.op=`` + path before ``/negotiate``]
    + ``&`` + the original query (if any) + ``&asrs_request_id=…``; the token's ``aud`` is on the Endpoint.
    """
    if connection.access_key is None:
        raise NegotiateError("Unable to get the negotiate endpoint")
    hub = hub.lower()
    url = f"{connection.client_base}client/?hub={quote(hub, safe='')}"
    path = request_path.rstrip("/")
    if path.endswith("/negotiate"):
        url += "&asrs.op=" + quote_plus(path[: -len("/negotiate")], safe="")
    query = request_query.lstrip("?")
    if query:
        url += "&" + query
    url += "&asrs_request_id=" + quote(request_id or new_request_id(), safe="")
    token = mint_token(
        connection.access_key, connection.client_audience(hub), lifetime=lifetime, claims=claims, now=now
    )
    return NegotiateRedirect(url, token)


def negotiate_url(url: str) -> str:
    """The negotiate URL for a hub or redirect URL: path + ``negotiate`` + the original query (trap 7).

    ``negotiateVersion=1`` is added when the query has no ``negotiateVersion`` yet (the redirect copies it, trap 5).
    """
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    query = parts.query
    if not any(k.lower() == "negotiateversion" for k, _ in parse_qsl(query, keep_blank_values=True)):
        query = f"{query}&negotiateVersion=1" if query else "negotiateVersion=1"
    return urlunsplit((parts.scheme, parts.netloc, path + "negotiate", query, ""))


def connect_url(url: str, connection_id: str) -> str:
    """``url`` + ``&id=…`` (or ``?id=…``) — the token is URL-safe and is not encoded (§3.4)."""
    return url + ("&" if "?" in url else "?") + "id=" + connection_id


def parse_negotiate_response(body: bytes) -> NegotiateRedirect | NegotiateResult:
    """Interpret a 200 negotiate body; raises :class:`NegotiateError` with the JS client's messages (§3.1).

    An app server on Azure Web PubSub answers ``{"service": "webpubsub", "hub": …, "url": …}``: that raises
    :class:`WebPubSubAnswer` (a :class:`NegotiateError`) carrying the client access URL.
    """
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, a number with too many digits, deep nesting
        raise NegotiateError("Negotiate response is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise NegotiateError("Negotiate response is not a JSON object.")
    if obj.get("error"):
        raise NegotiateError(str(obj["error"]))
    if obj.get("service") == "webpubsub":
        raise _webpubsub_answer(obj)
    if obj.get("ProtocolVersion"):  # truthy, as the JS client tests it
        raise NegotiateError(
            "Detected a connection attempt to an ASP.NET SignalR Server. This client only supports connecting to "
            "an ASP.NET Core SignalR Server. See https://aka.ms/signalr-core-differences for details."
        )
    if obj.get("url"):
        token = obj.get("accessToken")
        return NegotiateRedirect(str(obj["url"]), str(token) if token else "")
    connection_id = obj.get("connectionId")
    if not isinstance(connection_id, str) or not connection_id:
        raise NegotiateError("Negotiate response has no connectionId.")
    version = obj.get("negotiateVersion")
    if version is None:
        version = 0
    if not isinstance(version, int) or isinstance(version, bool):
        raise NegotiateError("Negotiate response has a negotiateVersion that is not an integer.")
    token = obj.get("connectionToken") if version > 0 else None
    entries = obj.get("availableTransports")
    if entries is not None and not isinstance(entries, list):
        raise NegotiateError("Negotiate response has availableTransports that is not an array.")
    transports: list[AvailableTransport] = []
    for entry in entries or []:
        try:
            kind = TransportType(entry.get("transport"))
        except (ValueError, AttributeError, TypeError):
            continue  # a transport this client does not know, or garbage: skipped like the JS client does
        if kind not in (t.transport for t in transports):  # a repeated entry: the first one counts
            transports.append(AvailableTransport(kind, _transfer_formats(entry.get("transferFormats"))))
    return NegotiateResult(connection_id, token if isinstance(token, str) else None, version, tuple(transports))


def _webpubsub_answer(obj: dict[str, Any]) -> NegotiateError:
    """The :class:`WebPubSubAnswer` of a ``"service": "webpubsub"`` body, or a :class:`NegotiateError` saying what is
    wrong with it (the URL is never quoted: it carries the access token)."""
    hub = obj.get("hub")
    url = obj.get("url")
    if not isinstance(hub, str) or not hub or len(hub) > 128 or not hub.isprintable():
        return NegotiateError("The Web PubSub negotiate answer has no valid hub name.")
    if not isinstance(url, str) or not _is_websocket_url(url):
        return NegotiateError("The Web PubSub negotiate answer's url is not an absolute ws:// or wss:// URL.")
    return WebPubSubAnswer(url, hub)


def _is_websocket_url(url: str) -> bool:
    """An absolute ``ws``/``wss`` URL with a host and a valid port, printable, at most :data:`MAX_WEBPUBSUB_URL`."""
    if len(url) > MAX_WEBPUBSUB_URL or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("ws", "wss") and bool(parts.hostname)


def _transfer_formats(value: object) -> frozenset[TransferFormat]:
    """The known names of a ``transferFormats`` array (``Text``, ``Binary``, case as sent by ASP.NET Core).

    Unknown names and non-strings are ignored, as the JS client maps them to nothing; a missing or non-array value
    gives no format at all, so no protocol can pick that transport (the JS client fails the whole start there).
    """
    if not isinstance(value, list):
        return frozenset()
    names = {f.value: f for f in TransferFormat}
    return frozenset(names[item] for item in value if isinstance(item, str) and item in names)


def service_negotiate_response(
    connection_id: str,
    connection_token: str,
    version: int,
    transports: list[dict[str, Any]] | None = None,
) -> bytes:
    """The service's reply in ASP.NET Core's field order; v0 omits ``connectionToken`` (§3.3)."""
    plain = (
        transports is None
        and type(version) is int
        and _JSON_AS_IS.fullmatch(connection_id) is not None
        and (version < 1 or _JSON_AS_IS.fullmatch(connection_token) is not None)
    )
    if plain:  # the usual reply, from a template: the very bytes json.dumps makes of it
        token = f',"connectionToken":"{connection_token}"' if version >= 1 else ""
        return (
            f'{{"negotiateVersion":{version},"connectionId":"{connection_id}"{token},'
            f'"availableTransports":{_ALL_TRANSPORTS_JSON}}}'
        ).encode()
    body: dict[str, Any] = {"negotiateVersion": version, "connectionId": connection_id}
    if version >= 1:
        body["connectionToken"] = connection_token
    body["availableTransports"] = ALL_TRANSPORTS if transports is None else transports
    return json.dumps(body, separators=(",", ":")).encode()


def requested_version(query: str) -> int:
    """The negotiate version a service grants for ``query``: min(requested, 1), 0 when absent (§3.2).

    Raises :class:`NegotiateError` with ASP.NET Core's text for a non-integer or negative version; the caller
    answers it as ``{"error": …}``.
    """
    for key, value in _query_pairs(query):
        if key.lower() == "negotiateversion":
            # .NET int.TryParse: optional sign and spaces, ASCII digits, 32 bits (Python's int() takes more).
            if not _INTEGER.fullmatch(value) or not -(2**31) <= int(value) < 2**31:
                raise NegotiateError("The client requested a non-integer protocol version.")
            version = int(value)
            if version < 0:
                raise NegotiateError(
                    f"The client requested version '{version}', but the server does not support this version."
                )
            return min(version, 1)
    return 0


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """``parse_qsl(query, keep_blank_values=True)``; split here when nothing is percent-encoded (then ``+`` is all
    there is to decode), which is what a client sends."""
    if "%" in query:
        return parse_qsl(query, keep_blank_values=True)
    pairs = []
    for part in query.replace("+", " ").split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs
