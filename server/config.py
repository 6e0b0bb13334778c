"""Settings of ``chat-server``: the connection string from the environment or ``.env``, plus command-line flags.

The connection string is read from ``Azure__SignalR__ConnectionString`` (``__`` stands for ``:`` in .NET
configuration, ``docs/protocol.md`` §1), or ``Azure__WebPubSub__ConnectionString`` for Azure Web PubSub. The process
environment wins over a ``.env`` file in the current directory.
Every problem is a :class:`ConfigError` whose message is safe to print: it never contains the AccessKey.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

from signalr.connection_string import ConnectionString, ConnectionStringError, parse_connection_string
from signalr.tokens import DEFAULT_LIFETIME, MAX_TOKEN_LENGTH

__all__ = [
    "CONNECTION_STRING_VARIABLE",
    "DEFAULT_SIGNALR_JS",
    "WEBPUBSUB_CONNECTION_STRING_VARIABLE",
    "ConfigError",
    "Service",
    "ServiceMode",
    "Settings",
    "load_settings",
    "read_connection_string",
]

CONNECTION_STRING_VARIABLE = "Azure__SignalR__ConnectionString"
WEBPUBSUB_CONNECTION_STRING_VARIABLE = "Azure__WebPubSub__ConnectionString"

# The official browser bundles, installed by `make node` (npm) at the repository root; never fetched from a CDN.
_NODE_MICROSOFT = Path(__file__).resolve().parents[1].joinpath("node_modules", "@microsoft")
DEFAULT_SIGNALR_JS = _NODE_MICROSOFT.joinpath("signalr", "dist", "browser", "signalr.min.js")
# The MessagePack hub protocol for the page's ?protocol=messagepack (adds signalR.protocols.msgpack).
MSGPACK_PROTOCOL_JS = _NODE_MICROSOFT.joinpath(
    "signalr-protocol-msgpack", "dist", "browser", "signalr-protocol-msgpack.min.js"
)

# The service's REST hub-name rule (docs/protocol.md §6.1): a letter, then letters, digits or `_`.
_HUB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")

MAX_TOKEN_LIFETIME = 24 * 3600
MAX_SERVER_CONNECTIONS = 64


class Service(Enum):
    """Which Azure service the app server works with: Azure SignalR Service (the hub protocol, negotiate redirect) or
    Azure Web PubSub (a client access URL from negotiate, client events on the event handler)."""

    SIGNALR = "signalr"
    WEBPUBSUB = "webpubsub"

    @property
    def connection_string_variable(self) -> str:
        """The setting that holds this service's connection string."""
        return WEBPUBSUB_CONNECTION_STRING_VARIABLE if self is Service.WEBPUBSUB else CONNECTION_STRING_VARIABLE


class ServiceMode(Enum):
    """How the hub reaches the service (``docs/default-mode.md``).

    ``default``: the app server dials server connections to the service, which carries every client through them
    (the portal's default; nothing but the connection string is needed). ``serverless``: the service posts client
    events to ``/upstream`` and the hub replies through the REST API (needs an upstream URL the service can reach).
    """

    DEFAULT = "default"
    SERVERLESS = "serverless"


class ConfigError(Exception):
    """Settings the server cannot start with; ``str()`` is one line for the user, without secrets."""


@dataclass(frozen=True)
class Settings:
    """Everything the app server needs, validated.

    ``hub`` is the hub name as configured (the route is ``/{hub}``); the service sees it lower-cased (trap 1).
    ``connection`` carries the AccessKey: log only ``connection.redacted()``.
    """

    connection: ConnectionString = field(repr=False)
    hub: str = "chat"
    host: str = "127.0.0.1"
    port: int = 5000
    token_lifetime: int = DEFAULT_LIFETIME
    signalr_js: Path = DEFAULT_SIGNALR_JS
    rest_timeout: float = 10.0
    max_upstream_body: int = 1024 * 1024
    max_token_length: int = MAX_TOKEN_LENGTH
    service_mode: ServiceMode = ServiceMode.DEFAULT
    server_connections: int = 5
    # Serverless: refuse upstream invocations from connections whose `connected` event was not seen (a replayed or
    # stale signed request; the signature covers only the connection id, by Azure's design).
    require_connected_event: bool = False
    service: Service = Service.SIGNALR

    @property
    def access_key(self) -> str:
        """The AccessKey (always present: :func:`load_settings` refuses every Entra ID ``AuthType``)."""
        assert self.connection.access_key is not None
        return self.connection.access_key


def read_connection_string(
    environ: Mapping[str, str], dotenv_path: str | None = None, variable: str = CONNECTION_STRING_VARIABLE
) -> str | None:
    """The raw connection string in ``variable``: the environment first, then ``.env``; ``None`` when unset.

    ``dotenv_path`` defaults to the ``.env`` python-dotenv finds from the current directory upwards. An empty value
    counts as unset, so the empty line of ``.env.example`` copied as is gives the "not set" error.
    """
    value = environ.get(variable, "").strip()
    if value:
        return value
    path = dotenv_path if dotenv_path is not None else find_dotenv(usecwd=True)
    if not path or not Path(path).is_file():
        return None
    file_value = dotenv_values(path).get(variable) or ""
    return file_value.strip() or None


def load_settings(
    *,
    connection_string: str | None,
    hub: str = "chat",
    host: str = "127.0.0.1",
    port: int = 5000,
    token_lifetime: int = DEFAULT_LIFETIME,
    signalr_js: Path | None = None,
    service_mode: ServiceMode = ServiceMode.DEFAULT,
    server_connections: int = 5,
    require_connected_event: bool = False,
    service: Service = Service.SIGNALR,
) -> Settings:
    """Validate everything and build :class:`Settings`; raises :class:`ConfigError` with the user's one-line message.

    A Web PubSub connection string (``Endpoint=…;AccessKey=…;Version=1.0;`` with optional ``Port`` and our
    ``ClientEndpoint``) has the SignalR string's shape and is checked by the same rules."""
    if connection_string is None:
        raise ConfigError(f"{service.connection_string_variable} is not set (environment or .env)")
    try:
        connection = parse_connection_string(connection_string)
    except ConnectionStringError as exc:
        raise ConfigError(f"invalid connection string: {exc}") from None
    # Any Entra ID AuthType is refused, with or without an AccessKey: the SDK would use Entra ID there (§1), so
    # signing with the key would quietly run a differently configured server.
    if connection.uses_entra_id or connection.access_key is None:
        advice = (
            "remove AuthType to sign with the AccessKey"
            if connection.access_key
            else "use the AccessKey connection string from the portal's Keys page"
        )
        raise ConfigError(
            f"invalid connection string: AuthType={connection.auth_type} (Microsoft Entra ID) is not supported: "
            f"chat-server supports only AccessKey auth; {advice}."
        )
    if not _HUB_NAME.match(hub):
        raise ConfigError(f"invalid hub name {hub[:64]!r}: use a letter, then up to 127 letters, digits or '_'")
    if not 0 <= port <= 65535:
        raise ConfigError(f"invalid port {port}: use 0..65535 (0 = any free port)")
    if not 60 <= token_lifetime <= MAX_TOKEN_LIFETIME:
        raise ConfigError(f"invalid token lifetime {token_lifetime}: use 60..{MAX_TOKEN_LIFETIME} seconds")
    if not 1 <= server_connections <= MAX_SERVER_CONNECTIONS:
        raise ConfigError(f"invalid server connection count {server_connections}: use 1..{MAX_SERVER_CONNECTIONS}")
    return Settings(
        connection=connection,
        hub=hub,
        host=host,
        port=port,
        token_lifetime=token_lifetime,
        signalr_js=signalr_js or DEFAULT_SIGNALR_JS,
        service_mode=service_mode,
        server_connections=server_connections,
        require_connected_event=require_connected_event,
        service=service,
    )
