"""Access tokens: HS256 JWTs signed with the UTF-8 bytes of the AccessKey (``docs/protocol.md`` §2, §6.1).

Client tokens carry ``aud`` = ``{scheme}://{host}/client/?hub={hub}`` (query included, no port). REST tokens carry the
request URL; the stand-in compares those ignoring query, port and trailing ``/``. ``kid`` is never verified (trap 3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import jwt

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_TOKEN_LENGTH",
    "TokenError",
    "mint_token",
    "rest_audience_matches",
    "verify_token",
]

DEFAULT_LIFETIME = 3600
MAX_TOKEN_LENGTH = 4096
_ALGORITHMS = ["HS256", "HS512"]


class TokenError(Exception):
    """A token that must be refused; ``str()`` is the reason, without the token itself."""


def mint_token(
    access_key: str,
    audience: str,
    *,
    lifetime: int = DEFAULT_LIFETIME,
    claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A compact HS256 JWT with ``nbf`` = ``iat`` = now, ``exp`` = now + ``lifetime`` and the given ``aud``."""
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = dict(claims or {})
    payload.update({"nbf": issued, "exp": issued + lifetime, "iat": issued, "aud": audience})
    return jwt.encode(payload, access_key.encode("utf-8"), algorithm="HS256")


def verify_token(
    token: str,
    access_keys: str | list[str],
    audience: str | Callable[[str], bool] | None,
    *,
    now: float | None = None,
    leeway: int = 0,
) -> dict[str, Any]:
    """The claims of ``token`` if it is signed by one of ``access_keys``, current, and for ``audience``.

    ``audience`` is an exact string, a predicate on ``aud``, or ``None`` to skip the check.
    Raises :class:`TokenError` naming the reason.
    """
    keys = [access_keys] if isinstance(access_keys, str) else access_keys
    if not token.isascii():
        raise TokenError("malformed token")  # a JWT is ASCII; undecodable header bytes must not reach PyJWT
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed token") from None
    if header.get("alg") not in _ALGORITHMS:
        raise TokenError(f"unsupported algorithm {str(header.get('alg'))[:16]!r}")
    claims: dict[str, Any] | None = None
    for key in keys:
        try:
            claims = jwt.decode(
                token,
                key.encode("utf-8"),
                algorithms=_ALGORITHMS,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
    if claims is None:
        raise TokenError("invalid signature")
    current = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("missing exp claim")
    if not _reasonable_time(exp):  # JSON NaN, 1e400 or 10**400: a token that would never expire
        raise TokenError("invalid exp claim")
    if current > exp + leeway:
        raise TokenError("token expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and (not _reasonable_time(nbf) or not current + leeway >= nbf):
        raise TokenError("token not yet valid")
    if audience is not None:
        aud = claims.get("aud")
        if not isinstance(aud, str):
            raise TokenError("missing aud claim")
        ok = audience(aud) if callable(audience) else aud == audience
        if not ok:
            raise TokenError("audience mismatch")
    return claims


def _reasonable_time(value: float) -> bool:
    """A finite time a float can hold (an integer of 400 digits cannot even be compared with ``time.time()``)."""
    if isinstance(value, int):
        return abs(value) < 2**53
    return math.isfinite(value)


def rest_audience_matches(request_url: str, aud: str) -> bool:
    """Whether ``aud`` names ``request_url`` ignoring query, port, case of scheme/host and a trailing ``/``."""

    def norm(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url)
        return (parts.scheme.lower(), (parts.hostname or "").lower(), parts.path.rstrip("/"))

    try:
        return norm(request_url) == norm(aud)
    except ValueError:
        return False
