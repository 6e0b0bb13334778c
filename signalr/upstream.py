"""Upstream webhooks (serverless mode), sans-I/O (``docs/protocol.md`` §6.2–§6.4).

The service POSTs client events to the app server with ``X-ASRS-*`` headers; ``X-ASRS-Signature`` is
``sha256=`` + upper-case hex HMAC-SHA256 of the connection id under each access key, comma-joined (trap 14).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from .hub_protocol import HubProtocol
from .protocols import PROTOCOLS

__all__ = [
    "MEDIA_TYPES",
    "PLACEHOLDERS",
    "UpstreamTemplate",
    "UpstreamTemplateError",
    "protocol_for_media_type",
    "sign_connection_id",
    "signature_header",
    "verify_signature",
]

# The content type of a `messages` body, and of the completion answering it, by hub protocol (docs/protocol.md §6.3).
MEDIA_TYPES: Mapping[str, str] = {"json": "application/json", "messagepack": "application/x-msgpack"}


def protocol_for_media_type(media_type: str) -> HubProtocol | None:
    """The hub protocol whose upstream content type is ``media_type`` (no parameters; any case), or ``None``."""
    wanted = media_type.strip().lower()
    return next((PROTOCOLS[name] for name, known in MEDIA_TYPES.items() if known == wanted and name in PROTOCOLS), None)


def sign_connection_id(access_key: str, connection_id: str) -> str:
    """``sha256=<HEX>`` for one key."""
    digest = hmac.new(access_key.encode("utf-8"), connection_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return "sha256=" + digest.upper()


def signature_header(access_keys: list[str], connection_id: str) -> str:
    """The ``X-ASRS-Signature`` value: one signature per key, comma-joined."""
    return ",".join(sign_connection_id(key, connection_id) for key in access_keys)


def verify_signature(header: str | None, access_keys: list[str], connection_id: str) -> bool:
    """Whether any signature in ``header`` matches any key; compared case-insensitively in constant time."""
    if not header or not header.isascii() or not _encodable(connection_id):
        return False  # a signature is ASCII hex; a value no client could sign never matches (and never crashes)
    offered = [part.strip().lower() for part in header.split(",") if part.strip()]
    expected = [sign_connection_id(key, connection_id).lower() for key in access_keys]
    matched = False
    for candidate in offered:
        for good in expected:
            matched |= hmac.compare_digest(candidate.encode(), good.encode())
    return matched


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from undecodable bytes in a header
        return False
    return True


def _matches(pattern: str, value: str) -> bool:
    names = [p.strip() for p in pattern.split(",")]
    return "*" in names or value in names


# §6.2: the only placeholders of an upstream URL template; they are replaced case-sensitively.
PLACEHOLDERS = ("{hub}", "{category}", "{event}")
_BRACED = re.compile(r"\{[^{}]*\}")
_KNOWN = "the placeholders are {hub}, {category} and {event}"


class UpstreamTemplateError(ValueError):
    """A URL template that would not expand as its author meant; the message names the offending part."""


def _check_placeholders(url_template: str) -> None:
    """Refuse any ``{…}`` but the three placeholders, and unpaired braces: they would be posted literally."""
    for braced in _BRACED.findall(url_template):
        if braced not in PLACEHOLDERS:
            # The message is one line of bounded length whatever the template holds.
            shown = braced if braced.isprintable() and len(braced) <= 64 else repr(braced[:64])
            raise UpstreamTemplateError(f"unknown placeholder {shown}; {_KNOWN}")
    rest = _BRACED.sub("", url_template)
    if "{" in rest:
        raise UpstreamTemplateError(f"'{{' without a closing '}}'; {_KNOWN}")
    if "}" in rest:
        raise UpstreamTemplateError(f"'}}' without an opening '{{'; {_KNOWN}")


@dataclass(frozen=True)
class UpstreamTemplate:
    """One upstream setting: where to POST events of matching hub, category and event (first match wins).

    Raises :class:`UpstreamTemplateError` when ``url_template`` holds a ``{…}`` other than ``{hub}``,
    ``{category}`` and ``{event}``, or an unpaired brace.
    """

    url_template: str
    hub_pattern: str = "*"
    category_pattern: str = "*"
    event_pattern: str = "*"

    def __post_init__(self) -> None:
        _check_placeholders(self.url_template)

    def matches(self, hub: str, category: str, event: str) -> bool:
        return (
            _matches(self.hub_pattern, hub)
            and _matches(self.category_pattern, category)
            and _matches(self.event_pattern, event)
        )

    def url(self, hub: str, category: str, event: str) -> str:
        """The template with ``{hub}``, ``{category}``, ``{event}`` replaced by their escaped values."""
        return (
            self.url_template.replace("{hub}", quote(hub, safe=""))
            .replace("{category}", quote(category, safe=""))
            .replace("{event}", quote(event, safe=""))
        )
