"""Access-token checks for client requests and REST calls, with ASP.NET JwtBearer-style 401 answers.

Client tokens (``docs/protocol.md`` §2, §3.4): signature with the AccessKey's UTF-8 bytes, ``exp`` and ``nbf``, and an
``aud`` whose path is ``/client/`` and whose ``hub`` query names the requested hub (case-insensitive). Unlike Azure,
the scheme and host of ``aud`` are not compared: the app server's Endpoint may say ``localhost`` where clients reach
us as ``127.0.0.1``, and clients come through a gateway that rewrites ``Host``.

Server tokens (Default and Classic mode): signature, ``exp``, and an ``aud`` whose path is ``/server/`` and whose
``hub`` query names the requested hub, compared like client tokens. Only the ``Authorization`` header carries them.

REST tokens (§6.1, trap 17): signature, ``exp``, and ``aud`` naming the request URL, with or without its query, port
ignored. A token is never echoed in an answer or a log line.

A LongPolling or SSE client sends the same token with every poll and POST: :class:`CheckedTokens` remembers, per
connection, the one token string that passed the full check, and takes it again without a signature check while its
``exp`` and ``nbf`` still hold. Any other token, or that one once it has expired, is checked in full again.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from signalr.tokens import TokenError, rest_audience_matches, verify_token

__all__ = [
    "CheckedTokens",
    "ClientIdentity",
    "Unauthorized",
    "authenticate_client",
    "authenticate_rest",
    "authenticate_server",
    "bearer_token",
    "client_audience_matches",
    "server_audience_matches",
]

# TokenError reasons of signalr.tokens → the descriptions a client sees in WWW-Authenticate.
_DESCRIPTIONS = {
    "malformed token": "The token is malformed",
    "invalid signature": "The signature is invalid",
    "missing exp claim": "The token has no expiration time",
    "invalid exp claim": "The token expiration time is invalid",
    "token expired": "The token is expired",
    "token not yet valid": "The token is not valid yet",
    "missing aud claim": "The token has no audience",
    "audience mismatch": "The audience is invalid",
}


class Unauthorized(Exception):
    """A request without a usable token. ``description`` is None when no token was sent at all."""

    def __init__(self, description: str | None) -> None:
        super().__init__(description or "No bearer token was sent")
        self.description = description

    @property
    def www_authenticate(self) -> str:
        """The challenge header, as ASP.NET's JwtBearer handler writes it."""
        if self.description is None:
            return "Bearer"
        return f'Bearer error="invalid_token", error_description="{self.description}"'


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client token says the client is. ``user_id`` comes from ``asrs.s.uid``, else ``nameid`` (§2).

    ``owner`` is what a connection is bound to at negotiate: ``user:<id>`` for a token that names a user (a refreshed
    token of the same user keeps working), else ``token:<sha256>`` of the token itself, since nothing else tells one
    anonymous client from another that negotiated with an equally anonymous token.
    """

    claims: dict[str, Any]
    user_id: str | None
    owner: str


def bearer_token(request: web.BaseRequest, *, allow_query: bool) -> str | None:
    """The bearer token of ``request``: the ``Authorization`` header, else (when ``allow_query``) the last
    ``access_token`` query value. The header wins even when the query has one too (trap 13)."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None
    if allow_query:
        values = request.rel_url.query.getall("access_token", [])
        if values and values[-1]:
            return str(values[-1])
    return None


def _audience_matches(aud: str, path: str, hub: str) -> bool:
    found = _audience_hub(aud)
    return found is not None and found[0] == path and found[1] == hub.lower()


@functools.lru_cache(maxsize=1024)
def _audience_hub(aud: str) -> tuple[str, str] | None:
    """The path (without trailing slash) and the lower-cased single ``hub=`` of an audience, None without exactly one
    hub; remembered per audience (an app server mints many tokens for few audiences)."""
    try:
        parts = urlsplit(aud)
    except ValueError:
        return None
    hubs = [value for key, value in parse_qsl(parts.query, keep_blank_values=True) if key == "hub"]
    if len(hubs) != 1:
        return None
    return parts.path.rstrip("/"), hubs[0].lower()


def client_audience_matches(aud: str, hub: str) -> bool:
    """Whether ``aud`` is a client audience for ``hub``: path ``/client/`` and ``hub=`` equal ignoring case."""
    return _audience_matches(aud, "/client", hub)


def server_audience_matches(aud: str, hub: str) -> bool:
    """Whether ``aud`` is a server-connection audience for ``hub``: path ``/server/`` (or ``/server``) and ``hub=``
    equal ignoring case."""
    return _audience_matches(aud, "/server", hub)


def _description(exc: TokenError) -> str:
    reason = str(exc)
    if reason.startswith("unsupported algorithm"):
        return "The token algorithm is not supported"
    return _DESCRIPTIONS.get(reason, "The token is invalid")


def _verified_claims(
    request: web.BaseRequest,
    access_key: str,
    audience_matches: Callable[[str], bool],
    *,
    allow_query: bool,
    token: str | None = None,
) -> dict[str, Any]:
    """The claims of the request's bearer token (``token`` when the caller already read it) once checked."""
    if token is None:
        token = bearer_token(request, allow_query=allow_query)
    if token is None:
        raise Unauthorized(None)
    try:
        return verify_token(token, access_key, audience_matches)
    except TokenError as exc:
        raise Unauthorized(_description(exc)) from None


def authenticate_client(request: web.BaseRequest, hub: str, access_key: str, *, allow_query: bool) -> ClientIdentity:
    """Check a client request's token for ``hub``; raises :class:`Unauthorized`."""
    token = bearer_token(request, allow_query=allow_query)
    claims = _verified_claims(
        request, access_key, lambda aud: client_audience_matches(aud, hub), allow_query=allow_query, token=token
    )
    user = claims.get("asrs.s.uid") or claims.get("nameid")
    user_id = str(user) if user not in (None, "") else None
    if user_id is not None:
        owner = "user:" + user_id
    else:
        owner = "token:" + hashlib.sha256((token or "").encode("utf-8", "surrogatepass")).hexdigest()
    return ClientIdentity(claims, user_id, owner)


def authenticate_server(request: web.BaseRequest, hub: str, access_key: str) -> dict[str, Any]:
    """Check a server connection's token for ``hub``; returns its claims (``nameid`` is the server id), raises
    :class:`Unauthorized`."""
    return _verified_claims(request, access_key, lambda aud: server_audience_matches(aud, hub), allow_query=False)


def authenticate_rest(request: web.BaseRequest, access_key: str) -> dict[str, Any]:
    """Check a REST call's token against the request URL; raises :class:`Unauthorized`."""
    url = str(request.url)
    return _verified_claims(request, access_key, lambda aud: rest_audience_matches(url, aud), allow_query=False)


@dataclass(frozen=True, slots=True)
class _Checked:
    """A client token that passed the full check for ``hub`` with ``access_key``, and when it is valid."""

    token: str
    hub: str
    access_key: str
    valid_from: float
    valid_until: float
    identity: ClientIdentity


class CheckedTokens:
    """The token each connection last passed the full check with (at most ``size`` connections: the oldest entry
    goes first). An entry holds strings and the identity only, never the connection, so a forgotten connection's
    entry just ages out."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[str, _Checked] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def identity(self, connection: str, token: str, hub: str, access_key: str) -> ClientIdentity | None:
        """The identity ``token`` was found to be for ``connection``, when it is the very token that passed, for the
        same hub and key, and its ``nbf``/``exp`` still hold now (``verify_token``'s bounds); else None."""
        checked = self._entries.get(connection)
        if checked is None or checked.token != token or checked.hub != hub or checked.access_key != access_key:
            return None
        if not checked.valid_from <= time.time() <= checked.valid_until:
            del self._entries[connection]
            return None
        return checked.identity

    def remember(self, connection: str, token: str, hub: str, access_key: str, identity: ClientIdentity) -> None:
        """``token`` passed the full check (:func:`authenticate_client`) for ``connection`` as ``identity``."""
        claims = identity.claims
        nbf = claims.get("nbf")
        valid_from = float(nbf) if isinstance(nbf, int | float) else -math.inf
        entries = self._entries
        entries.pop(connection, None)
        if len(entries) >= self._size:
            del entries[next(iter(entries))]
        entries[connection] = _Checked(token, hub, access_key, valid_from, float(claims["exp"]), identity)
