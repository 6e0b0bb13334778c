"""What the emulator runs with: address, AccessKey, upstreams, timers and limits.

Production defaults are the service's (``docs/protocol.md`` §0.1). Tests shorten the timers through environment
variables (see :func:`EmulatorSettings.from_env`) instead of waiting 15 s for a ping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from signalr.upstream import UpstreamTemplate

from .public_host import valid_public_host

__all__ = ["ENV_KNOBS", "SERVICE_MODES", "EmulatorSettings", "SettingsError", "new_access_key"]

MIB = 1024 * 1024
# Serverless: clients are served by the emulator and the upstream. Default: every client is carried by an app server's
# server connection. Classic: carried by a server connection when the hub has one, else served as in Serverless.
SERVICE_MODES = ("serverless", "default", "classic")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


def new_access_key() -> str:
    """A fresh random AccessKey: 43 URL-safe characters (256 random bits), like a portal key in length.

    Never starts with ``-``: passed back as ``--access-key KEY`` such a key would be read as an option.
    """
    while True:
        key = secrets.token_urlsafe(32)
        if not key.startswith("-"):
            return key


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything :func:`emulator.app.create_app` needs. Times are seconds, sizes bytes."""

    host: str = "127.0.0.1"
    port: int = 8888
    access_key: str = field(default_factory=new_access_key, repr=False)
    upstreams: tuple[UpstreamTemplate, ...] = ()
    # §0.1: ping after 15 s without sending, drop after 30 s without receiving (WebSockets and SSE only).
    keepalive_interval: float = 15.0
    client_timeout: float = 30.0
    # §0.1: no handshake within 15 s closes the connection; a negotiated id never connected expires as well.
    handshake_timeout: float = 15.0
    # §3.7: a poll is held up to 90 s; no poll for 5 s drops the connection.
    poll_timeout: float = 90.0
    max_poll_interval: float = 5.0
    # Outbound bytes queued per connection before a slow reader is dropped (memory stays bounded).
    max_buffer_size: int = MIB
    # One hub record (without its separator); bigger closes the connection with a Close message.
    max_message_size: int = MIB
    # §6.1: REST request bodies up to 1 MB; §0.1: upstream responses up to 16 MB.
    max_rest_body: int = MIB
    max_upstream_response: int = 16 * MIB
    upstream_timeout: float = 100.0
    # Client messages waiting for the upstream per connection before the transport stops reading.
    max_pending_upstream: int = 64
    # Default and Classic mode: the service pings each server connection every 5 s, expects its HandshakeRequest
    # within 15 s and closes a server connection that sent nothing for 30 s.
    service_mode: str = "serverless"
    server_ping_interval: float = 5.0
    server_handshake_timeout: float = 15.0
    server_timeout: float = 30.0
    # One service message (its VarInt length) from an app server; a longer one closes that server connection.
    max_service_message_size: int = MIB
    # --public-host: the only Host name served (any port); None serves every Host (emulator/public_host.py).
    public_host: str | None = None
    # --flow-to: where hop events go (a loopback UDP address, emulator/flow.py); None publishes nothing.
    flow_to: tuple[str, int] | None = None
    # Freeze the collector's view of the heap each time this many more connections are open (emulator/collector.py);
    # 0 leaves the collector as it is.
    gc_freeze_step: int = 250

    @property
    def endpoint_host(self) -> str:
        """The host to print in the connection string: the public host when one is set (the only name served), else
        the listening address, where wildcard binds are reached on loopback."""
        if self.public_host:
            return self.public_host
        if self.host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.host == "::":
            return "[::1]"
        return f"[{self.host}]" if ":" in self.host else self.host

    def connection_string(self, port: int) -> str:
        """The connection string the CLI prints when ready (docs/emulator.md): ``Endpoint=http://…;Port=…;AccessKey=…;``."""
        return f"Endpoint=http://{self.endpoint_host};Port={port};AccessKey={self.access_key};Version=1.0;"

    @property
    def server_tick(self) -> float:
        """How often server-connection timers are checked: a quarter of the shortest one, at most once a second."""
        shortest = min(self.server_ping_interval, self.server_handshake_timeout, self.server_timeout)
        return max(0.02, min(1.0, shortest / 4))

    @property
    def tick(self) -> float:
        """How often timers are checked: a quarter of the shortest timer, at most once a second."""
        shortest = min(self.keepalive_interval, self.client_timeout, self.handshake_timeout, self.max_poll_interval)
        return max(0.02, min(1.0, shortest / 4))

    def validate(self) -> EmulatorSettings:
        """Raise :class:`SettingsError` for unusable values; returns ``self`` for chaining."""
        if not self.access_key or any(c in self.access_key for c in ";\r\n"):
            raise SettingsError("--access-key must be non-empty and contain no ';' or line breaks")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port must be between 0 and 65535, not {self.port}")
        if self.public_host is not None and not valid_public_host(self.public_host):
            raise SettingsError(
                f"--public-host must be a host name or IP address without scheme, port or path (IPv6 in brackets), "
                f"not {self.public_host[:64]!r}"
            )
        if self.service_mode not in SERVICE_MODES:
            raise SettingsError(f"--service-mode must be one of {', '.join(SERVICE_MODES)}, not {self.service_mode!r}")
        for name in (
            "keepalive_interval",
            "client_timeout",
            "handshake_timeout",
            "poll_timeout",
            "max_poll_interval",
            "server_ping_interval",
            "server_handshake_timeout",
            "server_timeout",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        for name in (
            "max_buffer_size",
            "max_message_size",
            "max_rest_body",
            "max_upstream_response",
            "max_service_message_size",
        ):
            if getattr(self, name) < 64:
                raise SettingsError(f"{name} must be at least 64 bytes")
        return self

    def from_env(self, env: Mapping[str, str] | None = None) -> EmulatorSettings:
        """A copy with the ``SIGNALR_EMULATOR_*`` knobs of ``env`` (default: the process environment) applied."""
        source = os.environ if env is None else env
        changes: dict[str, float | int] = {}
        for variable, (name, kind) in ENV_KNOBS.items():
            raw = source.get(variable)
            if raw is None or raw == "":
                continue
            try:
                changes[name] = kind(raw)
            except ValueError:
                raise SettingsError(f"{variable} must be a number, not {raw[:32]!r}") from None
        return replace(self, **changes).validate()  # type: ignore[arg-type]


# Hidden knobs for tests and experiments; production defaults above stay exact.
ENV_KNOBS: dict[str, tuple[str, type[float] | type[int]]] = {
    "SIGNALR_EMULATOR_KEEPALIVE": ("keepalive_interval", float),
    "SIGNALR_EMULATOR_CLIENT_TIMEOUT": ("client_timeout", float),
    "SIGNALR_EMULATOR_HANDSHAKE_TIMEOUT": ("handshake_timeout", float),
    "SIGNALR_EMULATOR_POLL_TIMEOUT": ("poll_timeout", float),
    "SIGNALR_EMULATOR_MAX_POLL_INTERVAL": ("max_poll_interval", float),
    "SIGNALR_EMULATOR_UPSTREAM_TIMEOUT": ("upstream_timeout", float),
    "SIGNALR_EMULATOR_MAX_BUFFER": ("max_buffer_size", int),
    "SIGNALR_EMULATOR_MAX_MESSAGE": ("max_message_size", int),
    "SIGNALR_EMULATOR_SERVER_PING_INTERVAL": ("server_ping_interval", float),
    "SIGNALR_EMULATOR_SERVER_HANDSHAKE_TIMEOUT": ("server_handshake_timeout", float),
    "SIGNALR_EMULATOR_SERVER_TIMEOUT": ("server_timeout", float),
    "SIGNALR_EMULATOR_MAX_SERVICE_MESSAGE": ("max_service_message_size", int),
}
