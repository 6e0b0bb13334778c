"""Keep secrets out of the gateway's logs.

Secrets that cross the gateway: access tokens (``Authorization`` header, ``access_token`` query), Web PubSub
reconnection tokens (``awps_reconnection_token`` query of a reliable client's reconnect),
subscription keys (``Ocp-Apim-Subscription-Key`` header, ``subscription-key`` query, or the
names an API configures) and connection tokens (the ``id`` query parameter of connect requests,
shown as the short hash tag of `signalr.redact.connection_token_tag`, ``id=~3f2a9c1b``).
Log lines are built from redacted request targets, never from headers;
`RedactingFilter` is a second line of defence on every record that reaches the log handler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from signalr.query import split_query
from signalr.redact import REDACTED, connection_token_tag, redact_text

__all__ = [
    "DEFAULT_SECRET_QUERY_NAMES",
    "REDACTED",
    "SCRUBBED_WITH",
    "RedactingFilter",
    "redact_query",
    "redact_target",
]

# awps_reconnection_token: with it and the connection id, a reliable Web PubSub connection can be taken over
# (https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-reliable-webpubsub-subprotocol).
DEFAULT_SECRET_QUERY_NAMES = frozenset({"access_token", "subscription-key", "awps_reconnection_token"})

#: The log record attribute (``extra=``) that says which rules already scrubbed its message (`RedactingFilter.rules`).
SCRUBBED_WITH = "scrubbed_with"


def _tag(raw_value: str) -> str:
    return raw_value if raw_value.startswith("~") else connection_token_tag(raw_value)


def redact_query(raw_query: str, secret_names: Iterable[str] = DEFAULT_SECRET_QUERY_NAMES) -> str:
    """The raw query with the values of secret parameters replaced by ``***`` (names compared
    case-insensitively, after percent-decoding) and the connection token (``id``) by its hash tag;
    everything else is kept byte for byte."""
    names = {n.lower() for n in secret_names}
    parts = []
    for part in split_query(raw_query):
        if part.value is not None and part.name.lower() in names:
            parts.append(f"{part.raw_name}={REDACTED}")
        elif part.value and part.name == "id":
            parts.append(f"{part.raw_name}={_tag(part.raw.partition('=')[2])}")
        else:
            parts.append(part.raw)
    return "&".join(parts)


def redact_target(path: str, raw_query: str, secret_names: Iterable[str] = DEFAULT_SECRET_QUERY_NAMES) -> str:
    """``path?query`` for a log line, with secret query values redacted, the connection token tagged, and
    tokens that a client put in the path (bearer values, JWTs or their prefixes) replaced too."""
    query = redact_query(raw_query, secret_names)
    return redact_text(f"{path}?{query}" if query else path)


class RedactingFilter(logging.Filter):
    """Scrubs secrets from every record that passes a handler.

    Catches bearer tokens, ``access_token=``/subscription-key query values in any URL that found
    its way into a message (e.g. an exception text), and the configured subscription keys
    themselves wherever they appear.
    """

    def __init__(self, secret_query_names: Iterable[str] = DEFAULT_SECRET_QUERY_NAMES) -> None:
        super().__init__()
        self._literals: set[str] = set()
        alternatives = "|".join(re.escape(n) for n in sorted({*secret_query_names, *DEFAULT_SECRET_QUERY_NAMES}))
        self._query = re.compile(rf"(?i)((?:^|[?&;\s])(?:{alternatives})=)[^&\s\"'#]*")
        self._rules: tuple[str, frozenset[str]] = (self._query.pattern, frozenset())

    @property
    def rules(self) -> tuple[str, frozenset[str]]:
        """What this filter scrubs: filters with equal rules turn any text into the same text."""
        return self._rules

    def add_secret(self, value: str) -> None:
        """Redact this literal value (e.g. a configured subscription key) wherever it appears.
        Values shorter than 4 characters are skipped: replacing them everywhere would garble every
        line, and they never reach a log line anyway (headers are not logged, query values are redacted by name)."""
        if len(value) >= 4:
            self._literals.add(value)
            self._rules = (self._query.pattern, frozenset(self._literals))

    def scrub(self, text: str) -> str:
        # The shared rules (bearer tokens, JWTs, AccessKeys, the usual secret query names) first, then the
        # names this gateway's APIs configure and the literal keys it was given.
        text = redact_text(text)
        text = self._query.sub(rf"\g<1>{REDACTED}", text)
        for literal in self._literals:
            text = text.replace(literal, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, SCRUBBED_WITH, None) == self._rules and not record.exc_info:
            return True  # scrubbed with these very rules when it was logged: a second pass changes nothing
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True
