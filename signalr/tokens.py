"""Access tokens: HS256 JWTs signed with the UTF-8 bytes of the AccessKey (``docs/protocol.md`` §2, §6.1).

Client tokens carry ``aud`` = ``{scheme}://{host}/client/?hub={hub}`` (query included, no port). REST tokens carry the
request URL; the stand-in compares those ignoring query, port and trailing ``/``. ``kid`` is never verified (trap 3).
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt.algorithms import HMACAlgorithm

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
_DIGESTS = {"HS256": "sha256", "HS512": "sha512"}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_PLAIN_HEADER_KEYS = frozenset({"alg", "typ", "kid"})
_CACHED = 64  # header segments and keys remembered (a service sees one or two of each)
_plain_headers: dict[str, str] = {}  # header segment → its alg, for headers PyJWT takes as they are
_hmac_secrets: dict[str, bytes | None] = {}  # access key → its UTF-8 bytes, None when PyJWT refuses it as a secret


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
    claims = _plain_claims(token, keys)
    if claims is None:
        claims = _claims_by_pyjwt(token, keys)
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


def _claims_by_pyjwt(token: str, keys: list[str]) -> dict[str, Any] | None:
    """The claims of ``token`` as PyJWT verifies it with the first of ``keys`` that signed it; None when none did.
    Raises :class:`TokenError` for a token PyJWT refuses otherwise."""
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
    return claims


def _plain_claims(token: str, keys: list[str]) -> dict[str, Any] | None:
    """The claims of a plainly well-formed token that one of ``keys`` signed, verified without PyJWT: a plain header
    (:func:`_header_alg`), canonical unpadded base64url, a JSON object payload. None for anything else, and then
    PyJWT decides, with its exact reasons; what this accepts, PyJWT accepts with the same claims.

    The signature is compared in its encoded form, so one HMAC and one base64 encoding are its whole cost.
    """
    header, _, rest = token.partition(".")
    payload, _, signature = rest.partition(".")
    alg = _header_alg(header)
    if alg is None or not signature or "." in signature:
        return None
    signing_input = token[: len(header) + 1 + len(payload)].encode()
    sent = signature.encode()
    for key in keys:
        secret = _hmac_secret(key)
        if secret is None:
            return None
        expected = base64.urlsafe_b64encode(hmac.digest(secret, signing_input, _DIGESTS[alg])).rstrip(b"=")
        if hmac.compare_digest(expected, sent):
            return _payload_claims(payload)
    return None


def _header_alg(segment: str) -> str | None:
    """The ``alg`` of a header segment PyJWT takes as it is (only ``alg``, ``typ`` and a string ``kid``; HS256 or
    HS512), remembered per segment; None for any other header."""
    alg = _plain_headers.get(segment)
    if alg is not None:
        return alg
    header = _json_object(segment)
    if header is None or not header.keys() <= _PLAIN_HEADER_KEYS:
        return None
    alg = header.get("alg")
    if alg not in _DIGESTS or not isinstance(header.get("kid", ""), str):
        return None
    if len(_plain_headers) < _CACHED:
        _plain_headers[segment] = alg
    return str(alg)


def _hmac_secret(key: str) -> bytes | None:
    """The UTF-8 bytes of ``key`` when PyJWT takes them as an HMAC secret (not empty, not an asymmetric key or a JWK),
    remembered per key; None otherwise."""
    if key in _hmac_secrets:
        return _hmac_secrets[key]
    secret: bytes | None = key.encode("utf-8")
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key.encode("utf-8"))
    except jwt.InvalidKeyError:
        secret = None
    if len(_hmac_secrets) < _CACHED:
        _hmac_secrets[key] = secret
    return secret


def _payload_claims(segment: str) -> dict[str, Any] | None:
    """The claims of a payload segment as PyJWT reads them (a JSON object; ``sub`` and ``jti`` strings if present),
    else None."""
    claims = _json_object(segment)
    if claims is None:
        return None
    if not isinstance(claims.get("sub", ""), str) or not isinstance(claims.get("jti", ""), str):
        return None
    return claims


def _json_object(segment: str) -> dict[str, Any] | None:
    """The JSON object an unpadded, canonical base64url segment holds (read as PyJWT reads it), else None."""
    if len(segment) % 4 == 1 or not _BASE64URL.fullmatch(segment):
        return None
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=") != segment.encode():
        return None  # unused bits set in the last character: PyJWT refuses that
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


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
