"""What ``webpubsub-emulator`` runs with: address, AccessKey, event handlers, limits and timers.

Event handlers are URL templates with ``{hub}`` and ``{event}`` (https://learn.microsoft.com/azure/azure-web-pubsub/
howto-develop-eventhandler); ``HUB=URL`` serves one hub, a bare URL every hub that has none of its own. Each handler
gets the system events ``connect``, ``connected`` and ``disconnected`` and every user event.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "HUB_NAME",
    "INVALID_HUB_NAME",
    "MAX_MESSAGE_SIZE",
    "EventHandlerTemplate",
    "SettingsError",
    "WebPubSubSettings",
    "new_access_key",
]

MIB = 1024 * 1024
# "The maximum allowed message size for one WebSocket frame is 1MB"
# (https://learn.microsoft.com/azure/azure-web-pubsub/concept-service-internals#client-message-limit); the REST API's
# message bodies get the same bound.
MAX_MESSAGE_SIZE = MIB
# The SDK: a hub "should start with alphabetic characters and only contain alpha-numeric characters or underscore".
HUB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
INVALID_HUB_NAME = "Invalid hub name: it must start with a letter and contain only letters, digits or '_'."
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


def new_access_key() -> str:
    """A fresh random AccessKey of 43 URL-safe characters, never starting with ``-`` (it would read as an option)."""
    while True:
        key = secrets.token_urlsafe(32)
        if not key.startswith("-"):
            return key


@dataclass(frozen=True)
class EventHandlerTemplate:
    """An event handler URL template; ``hub`` is None when it serves every hub without one of its own."""

    url_template: str
    hub: str | None = None

    @classmethod
    def parse(cls, text: str) -> EventHandlerTemplate:
        """``[HUB=]URL_TEMPLATE``; raises :class:`SettingsError` for a bad hub, URL or placeholder."""
        hub: str | None = None
        head, sep, tail = text.partition("=")
        if sep and "://" not in head and "/" not in head:
            if not HUB_NAME.match(head):
                raise SettingsError(f"invalid hub {head[:40]!r} in event handler: {INVALID_HUB_NAME}")
            hub, text = head.lower(), tail
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError("invalid event handler: must be an http(s) URL template")
        for name in _PLACEHOLDER.findall(text):
            if name not in ("hub", "event"):
                raise SettingsError(
                    f"invalid event handler: unknown placeholder {{{name[:20]}}} (only {{hub}}, {{event}})"
                )
        if "{" in parts.netloc or "}" in parts.netloc:
            raise SettingsError("invalid event handler: no placeholder is allowed in the host")
        if _PLACEHOLDER.sub("", text).count("{") or _PLACEHOLDER.sub("", text).count("}"):
            raise SettingsError("invalid event handler: unbalanced '{' or '}'")
        return cls(text, hub)

    def url(self, hub: str, event: str) -> str:
        """The URL for ``event`` of ``hub`` (``validate`` for the abuse-protection request)."""
        return self.url_template.replace("{hub}", hub).replace("{event}", event)


@dataclass(frozen=True)
class WebPubSubSettings:
    """Everything :func:`emulator.webpubsub.app.create_app` needs. Times are seconds, sizes bytes."""

    host: str = "127.0.0.1"
    port: int = 8889
    access_key: str = field(default_factory=new_access_key, repr=False)
    event_handlers: tuple[EventHandlerTemplate, ...] = ()
    # How long a blocking event (connect, user events) may take before the caller gets an error.
    event_handler_timeout: float = 30.0
    # A dropped reliable connection's session is kept this long for the client to reconnect; the SDKs retry recovery
    # for 30 s (azure-messaging-webpubsubclient's _RECOVERY_TIMEOUT), the docs say "more than 1 minute".
    reconnect_window: float = 60.0
    # Messages a reliable session keeps without a sequenceAck; more ends the session (howto-develop-reliable-clients).
    max_unacked_messages: int = 10_000
    max_unacked_bytes: int = 16 * MIB
    max_message_size: int = MAX_MESSAGE_SIZE
    # Outbound bytes queued per WebSocket before a client that stops reading is dropped.
    max_buffer_size: int = 4 * MIB
    # --flow-to: where hop events go (a loopback UDP address, emulator/webpubsub/flow.py); None publishes nothing.
    flow_to: tuple[str, int] | None = None

    def handler_for(self, hub: str) -> EventHandlerTemplate | None:
        """The event handler of ``hub`` (lower-cased): its own, else the first without a hub, else None."""
        fallback: EventHandlerTemplate | None = None
        for handler in self.event_handlers:
            if handler.hub == hub:
                return handler
            if handler.hub is None and fallback is None:
                fallback = handler
        return fallback

    @property
    def endpoint_host(self) -> str:
        """The host named in the connection string: loopback for a wildcard address."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    def connection_string(self, port: int) -> str:
        """The ready line: ``Endpoint=http://127.0.0.1;Port=<port>;AccessKey=<key>;Version=1.0;``."""
        return f"Endpoint=http://{self.endpoint_host};Port={port};AccessKey={self.access_key};Version=1.0;"
