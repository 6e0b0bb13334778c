"""Azure Web PubSub access tokens: HS256 JWTs signed with the AccessKey (the shared core is :mod:`signalr.tokens`).

Client access tokens, as ``azure-messaging-webpubsubservice`` mints them (``get_token_by_key``): ``aud`` =
``<endpoint lower-cased>/client/hubs/<hub>``, ``iat``, ``exp``, and optionally ``sub`` (the user id), ``role`` (a list
of roles such as ``webpubsub.joinLeaveGroup.<group>``) and ``webpubsub.group`` (groups joined on connect)
(https://learn.microsoft.com/azure/azure-web-pubsub/concept-client-protocols#supported-claims). A single role or group
may also come as a string.

REST tokens: ``aud`` = the request URL, ``exp`` (the SDK's ``JwtCredentialPolicy`` gives 60 s), optionally the name
claim. The stand-in compares ``aud`` ignoring query, port and a trailing ``/``
(:func:`signalr.tokens.rest_audience_matches`), and client audiences by path and hub only: clients reach the service
through a gateway that rewrites the host, while the token keeps the service's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from signalr.tokens import MAX_TOKEN_LENGTH, TokenError, mint_token, rest_audience_matches, verify_token

__all__ = [
    "GROUP_CLAIM",
    "MAX_REST_TOKEN_LENGTH",
    "MAX_TOKEN_LENGTH",
    "ROLE_CLAIM",
    "USER_CLAIM",
    "ClientClaims",
    "TokenError",
    "client_audience_matches",
    "mint_client_token",
    "mint_rest_token",
    "verify_client_token",
    "verify_rest_token",
]

USER_CLAIM = "sub"
ROLE_CLAIM = "role"
GROUP_CLAIM = "webpubsub.group"
# A REST token's aud is the whole request URL, filter included: longer than a client token may be.
MAX_REST_TOKEN_LENGTH = 16 * 1024
_MAX_CLAIM_ITEMS = 1000
_MAX_NAME = 1024


@dataclass(frozen=True)
class ClientClaims:
    """What a verified client token says: the user, the roles, the groups to join, and every claim as sent."""

    user_id: str | None
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict, repr=False)


def mint_client_token(
    access_key: str,
    audience: str,
    *,
    user_id: str | None = None,
    roles: Sequence[str] = (),
    groups: Sequence[str] = (),
    lifetime: int = 3600,
    now: float | None = None,
) -> str:
    """A client access token for ``audience`` (see :meth:`WebPubSubConnectionString.client_audience`), with the claims
    the SDK sets (``sub``, ``role``, ``webpubsub.group`` only when given)."""
    claims: dict[str, Any] = {}
    if user_id:
        claims[USER_CLAIM] = user_id
    if roles:
        claims[ROLE_CLAIM] = list(roles)
    if groups:
        claims[GROUP_CLAIM] = list(groups)
    return mint_token(access_key, audience, lifetime=lifetime, claims=claims, now=now)


def mint_rest_token(access_key: str, url: str, *, lifetime: int = 60, now: float | None = None) -> str:
    """A REST token for one request ``url`` (what the SDK's ``JwtCredentialPolicy`` sends)."""
    return mint_token(access_key, url, lifetime=lifetime, now=now)


def client_audience_matches(aud: str, hub: str) -> bool:
    """Whether ``aud`` is a client audience for ``hub``: path ``/client/hubs/<hub>`` (the SDKs' form) or ``/client/``
    with a single ``hub=<hub>`` query (the service's other endpoint); hub names compared ignoring case."""
    try:
        parts = urlsplit(aud)
    except ValueError:
        return False
    path = parts.path.rstrip("/")
    prefix = "/client/hubs/"
    if path.lower().startswith(prefix):
        return unquote(path[len(prefix) :]).lower() == hub.lower()
    if path == "/client":
        hubs = [value for key, value in parse_qsl(parts.query, keep_blank_values=True) if key == "hub"]
        return len(hubs) == 1 and hubs[0].lower() == hub.lower()
    return False


def _strings(value: Any, name: str) -> tuple[str, ...]:
    """A claim that is a string or a list of strings, as a tuple; raises :class:`TokenError` otherwise."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > _MAX_CLAIM_ITEMS:
        raise TokenError(f"invalid {name} claim")
    if not all(isinstance(item, str) and 0 < len(item) <= _MAX_NAME for item in items):
        raise TokenError(f"invalid {name} claim")
    return tuple(items)


def verify_client_token(token: str, access_key: str, hub: str, *, now: float | None = None) -> ClientClaims:
    """The claims of a client access token for ``hub``. Raises :class:`TokenError` (the reason, never the token) when it
    is too long, malformed, not signed with ``access_key``, expired, for another audience, or has claims of the wrong
    shape."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("token too long")
    claims = verify_token(token, access_key, lambda aud: client_audience_matches(aud, hub), now=now)
    user = claims.get(USER_CLAIM)
    if user is not None and (not isinstance(user, str) or len(user) > _MAX_NAME):
        raise TokenError("invalid sub claim")
    return ClientClaims(
        user_id=user or None,
        roles=_strings(claims.get(ROLE_CLAIM), ROLE_CLAIM),
        groups=_strings(claims.get(GROUP_CLAIM), GROUP_CLAIM),
        claims=claims,
    )


def verify_rest_token(token: str, access_key: str, request_url: str, *, now: float | None = None) -> dict[str, Any]:
    """The claims of a REST token for ``request_url``; raises :class:`TokenError` like :func:`verify_client_token`."""
    if len(token) > MAX_REST_TOKEN_LENGTH:
        raise TokenError("token too long")
    return verify_token(token, access_key, lambda aud: rest_audience_matches(request_url, aud), now=now)
