"""Keep secrets out of logs, traces and screens: access tokens, AccessKeys and subscription keys."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["REDACTED", "SECRET_HEADERS", "SECRET_QUERY_KEYS", "redact_headers", "redact_text", "redact_url"]

# What every secret is replaced by; callers that redact their own formats (the gateway's query names) use it too.
REDACTED = "***"
SECRET_QUERY_KEYS = frozenset({"access_token", "subscription-key", "code", "sig", "signature"})
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


def redact_url(url: str) -> str:
    """``url`` with the values of secret query parameters replaced by ``***``."""
    return _QUERY.sub(r"\1" + REDACTED, url)


def redact_text(text: str) -> str:
    """Free text with bearer tokens, JWTs, AccessKey values, subscription keys and secret query values replaced."""
    text = _QUERY.sub(r"\1" + REDACTED, text)
    text = _BEARER.sub(r"\1" + REDACTED, text)
    text = _ACCESS_KEY.sub(r"\1" + REDACTED, text)
    text = _SUBSCRIPTION_HEADER.sub(r"\1" + REDACTED, text)
    return _JWT.sub(REDACTED, text)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header pairs with the values of secret headers replaced."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in pairs]
