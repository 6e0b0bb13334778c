"""Keep secrets out of logs, traces and screens: access tokens, AccessKeys, subscription keys and connection tokens.

A connection token (the ``id=`` of a client's connect requests) is not shown either: with it, whoever also holds a
valid access token could address the connection. It is replaced by a short hash (``id=~3f2a9c1b``), so lines about
one connection can still be matched.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "REDACTED",
    "SECRET_HEADERS",
    "SECRET_QUERY_KEYS",
    "connection_token_tag",
    "redact_headers",
    "redact_text",
    "redact_url",
]

# What every secret is replaced by; callers that redact their own formats (the gateway's query names) use it too.
REDACTED = "***"
# awps_reconnection_token: Azure Web PubSub's reconnect URL carries it; with the connection id it resumes a connection
# (https://learn.microsoft.com/azure/azure-web-pubsub/howto-develop-reliable-clients).
SECRET_QUERY_KEYS = frozenset(
    {"access_token", "subscription-key", "code", "sig", "signature", "awps_reconnection_token"}
)
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "ocp-apim-subscription-key",
        "x-asrs-signature",
        "cookie",
        "set-cookie",
        "authentication",
    }
)
_QUERY = re.compile(r"(?i)([?&](?:" + "|".join(re.escape(k) for k in SECRET_QUERY_KEYS) + r")=)[^&#\s\"']*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
# Connection strings trim keys and values, so "AccessKey = k" is valid and must be caught too (§1).
_ACCESS_KEY = re.compile(r"(?i)(accesskey\s*=\s*)[^;\s\"']*")
# A subscription key written as a header in free text ("Ocp-Apim-Subscription-Key: k", or a dict's repr).
_SUBSCRIPTION_HEADER = re.compile(r"(?i)(ocp-apim-subscription-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
# A JWT cut short (its first characters are its base64url header, always "eyJ"): no prefix of a token is logged.
_JWT_PREFIX = re.compile(r"\beyJ[A-Za-z0-9_.-]{6,}")
_CONNECTION_TOKEN = re.compile(r"([?&]id=)([^&#\s\"']+)")


def connection_token_tag(token: str) -> str:
    """A short, stable stand-in for a connection token: ``~`` and 8 hex digits of its SHA-256."""
    return "~" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _tag_connection_token(match: re.Match[str]) -> str:
    value = match.group(2)
    return match.group(1) + (value if value.startswith("~") else connection_token_tag(value))


def redact_url(url: str) -> str:
    """``url`` with the values of secret query parameters replaced by ``***`` and the connection token (``id=``) by
    its tag."""
    return _CONNECTION_TOKEN.sub(_tag_connection_token, _QUERY.sub(r"\1" + REDACTED, url))


def redact_text(text: str) -> str:
    """Free text with bearer tokens, JWTs (whole or cut short), AccessKey values, subscription keys, secret query values
    and connection tokens in URLs replaced."""
    # Each rule runs only when the text has the fixed part every match of it needs (most log lines have none):
    # the same result, without seven regular expressions over every line. A replacement never adds such a part.
    lowered = text.lower()
    if "=" in text:
        text = _QUERY.sub(r"\1" + REDACTED, text)
    if "bearer" in lowered:
        text = _BEARER.sub(r"\1" + REDACTED, text)
    if "accesskey" in lowered:
        text = _ACCESS_KEY.sub(r"\1" + REDACTED, text)
    if "ocp-apim-subscription-key" in lowered:
        text = _SUBSCRIPTION_HEADER.sub(r"\1" + REDACTED, text)
    if "id=" in text:
        text = _CONNECTION_TOKEN.sub(_tag_connection_token, text)
    if "eyJ" in text:
        text = _JWT_PREFIX.sub(REDACTED, _JWT.sub(REDACTED, text))
    return text


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header pairs with the values of secret headers replaced."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in pairs]
