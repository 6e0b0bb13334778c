"""Azure SignalR Service connection strings (``docs/protocol.md`` §1).

Parsing follows the ASP.NET SDK's ``ConnectionStringParser``: parts split on ``;`` (empty parts dropped), each part
split at its first ``=``, keys trimmed and case-insensitive, values trimmed and case-sensitive, a key repeated in any
casing is an error. Error messages are the SDK's and never contain the AccessKey.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

__all__ = ["ConnectionString", "ConnectionStringError", "is_http_url", "parse_connection_string"]

_VERSION = re.compile(r"^1\.\d+(?:[\w\-.]+)?$")
_ENTRA_TYPES = frozenset({"aad", "azure", "azure.app", "azure.msi"})


class ConnectionStringError(ValueError):
    """A connection string that cannot be used; the message names the offending key, never a secret."""


@dataclass(frozen=True)
class ConnectionString:
    """A parsed, validated connection string.

    ``endpoint`` has no trailing ``/`` and carries ``Port=`` when given; ``client_endpoint`` is the URL clients are
    redirected to (``ClientEndpoint`` as written, else ``endpoint``); ``server_endpoint`` is where REST calls go.
    """

    endpoint: str
    access_key: str | None = field(repr=False)
    version: str | None = None
    port: int | None = None
    client_endpoint: str = ""
    server_endpoint: str = ""
    auth_type: str | None = None

    @property
    def audience_base(self) -> str:
        """``{scheme}://{host}/`` of the Endpoint: no port, no path (trap 2)."""
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.hostname}/"

    @property
    def client_base(self) -> str:
        """The ClientEndpoint's absolute URI, as .NET's ``Uri.AbsoluteUri`` renders it (trap 4)."""
        return _absolute_uri(self.client_endpoint)

    @property
    def uses_entra_id(self) -> bool:
        """Whether ``AuthType`` selects Microsoft Entra ID (``aad``, ``azure``, ``azure.app``, ``azure.msi``, any case).

        The SDK then authenticates with Entra ID even when an AccessKey is present (§1): a caller that can only sign
        with the key must refuse such a string rather than use the key.
        """
        return (self.auth_type or "").lower() in _ENTRA_TYPES

    def client_audience(self, hub: str) -> str:
        """``aud`` of a client access token for ``hub``: ``{scheme}://{host}/client/?hub={hub}``."""
        return f"{self.audience_base}client/?hub={hub.lower()}"

    def server_audience(self, hub: str) -> str:
        """``aud`` of a server-connection token (Default mode): ``{scheme}://{host}/server/?hub={hub}``, the Endpoint's
        scheme and host without port, never the ServerEndpoint (``docs/default-mode.md``)."""
        return f"{self.audience_base}server/?hub={hub.lower()}"

    def server_connection_url(self, hub: str, connection_id: str) -> str:
        """Where a server connection dials: ``{ServerEndpoint}/server/?hub={hub}&cid={id}``, ws/wss for http/https."""
        base = self.server_endpoint.rstrip("/") + "/"
        scheme, _, rest = base.partition("://")
        ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
        return f"{ws_scheme}://{rest}server/?hub={quote(hub.lower(), safe='')}&cid={quote(connection_id, safe='')}"

    def redacted(self) -> str:
        """The string with its AccessKey replaced by ``***``: safe to log."""
        text = f"Endpoint={self.endpoint};AccessKey=***;"
        if self.client_endpoint != self.endpoint:
            text += f"ClientEndpoint={self.client_endpoint};"
        if self.version:
            text += f"Version={self.version};"
        return text


def _absolute_uri(url: str) -> str:
    """``https://h`` → ``https://h/``; a URL with a path keeps it untouched (.NET ``AbsoluteUri``)."""
    parts = urlsplit(url)
    return url if parts.path else url + "/"


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute ``http``/``https`` URL with a host and a valid port (.NET's absolute URI, §1).

    The client applies the same rule to hub and redirect URLs before it sends anything there.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port outside 0..65535
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return parts._replace(netloc=f"{host}:{port}").geturl()


def parse_connection_string(text: str) -> ConnectionString:
    """Parse and validate ``text``; raises :class:`ConnectionStringError` in the SDK's order of checks."""
    # StringSplitOptions.RemoveEmptyEntries drops only empty parts: a blank part still counts towards the two.
    parts = [p for p in text.split(";") if p]
    if len(parts) < 2:
        raise ConnectionStringError("Connection string missing required properties endpoint.")
    values: dict[str, str] = {}
    for part in parts:
        if "=" not in part:
            continue
        name, _, value = part.partition("=")
        key = name.strip().lower()
        if key in values:
            # The SDK names the key as written in its second occurrence.
            raise ConnectionStringError(f"Duplicate properties found in connection string: {name.strip()}.")
        values[key] = value.strip()

    if "endpoint" not in values:
        raise ConnectionStringError("Connection string missing required properties endpoint.")
    endpoint = values["endpoint"].rstrip("/")
    if not is_http_url(endpoint):
        raise ConnectionStringError("Invalid value for endpoint property, it must be a valid URI.")

    version = values.get("version")
    if version is not None and not _VERSION.match(version):
        raise ConnectionStringError(f"Version {version} is not supported.")

    port: int | None = None
    if "port" in values:
        raw = values["port"]
        if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 65536:  # isdigit() alone takes "²"
            raise ConnectionStringError(
                "Invalid value for port property, it must be an positive integer between (0, 65536)."
            )
        port = int(raw)
        endpoint = _with_port(endpoint, port)

    client_endpoint = values.get("clientendpoint")
    if client_endpoint is not None and not is_http_url(client_endpoint):
        raise ConnectionStringError("Invalid value for clientEndpoint property, it must be a valid URI.")

    server_endpoint = values.get("serverendpoint")
    if server_endpoint is not None and not is_http_url(server_endpoint):
        raise ConnectionStringError("Invalid value for serverEndpoint property, it must be a valid URI.")

    auth_type = values.get("authtype")
    entra_type = (auth_type or "").lower()
    if entra_type == "azure.app":
        for key, name in (("clientid", "clientId"), ("tenantid", "tenantId")):
            if key not in values:
                raise ConnectionStringError(f"Connection string missing required properties {name}.")
        if "clientsecret" not in values and "clientcert" not in values:
            raise ConnectionStringError("Connection string missing required properties clientSecret or clientCert.")
    access_key = values.get("accesskey")
    if entra_type not in _ENTRA_TYPES and not access_key:
        raise ConnectionStringError("accesskey is required.")

    return ConnectionString(
        endpoint=endpoint,
        access_key=access_key,
        version=version,
        port=port,
        client_endpoint=client_endpoint if client_endpoint is not None else endpoint,
        server_endpoint=(server_endpoint.rstrip("/") if server_endpoint else endpoint),
        auth_type=auth_type,
    )
