"""Azure Web PubSub connection strings: ``Endpoint=https://<name>.webpubsub.azure.com;AccessKey=<key>;Version=1.0;``.

Parsing follows ``azure-messaging-webpubsubservice`` (``_parse_connection_string`` in its ``_patch.py``,
https://github.com/Azure/azure-sdk-for-python/tree/main/sdk/webpubsub/azure-messaging-webpubsubservice): parts split on
``;``, each at its first ``=``, keys case-insensitive, ``Endpoint`` and ``AccessKey`` required, ``Port`` appended to the
endpoint, ``Version`` ignored. ``ClientEndpoint`` is ours (the SDK ignores it): where clients are sent instead of the
endpoint, e.g. a gateway. Unlike the SDK, values are trimmed, a part without ``=`` or a repeated key is an error, and
the endpoint must be an absolute http(s) URL; error messages name the key and never contain the AccessKey.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from signalr.connection_string import ConnectionStringError, is_http_url

__all__ = ["ConnectionStringError", "WebPubSubConnectionString", "parse_connection_string"]


@dataclass(frozen=True)
class WebPubSubConnectionString:
    """A parsed connection string. ``endpoint`` has no trailing ``/`` and carries ``Port=`` when given (as the SDK's
    ``WebPubSubServiceClient`` builds it); ``client_endpoint`` is where clients connect (``ClientEndpoint``, else
    ``endpoint``)."""

    endpoint: str
    access_key: str = field(repr=False)
    client_endpoint: str = ""
    version: str | None = None

    def client_audience(self, hub: str) -> str:
        """``aud`` of a client access token for ``hub``, as the SDK mints it:
        ``<endpoint lower-cased>/client/hubs/<hub>``."""
        return f"{self.endpoint.lower()}/client/hubs/{hub}"

    def client_base_url(self, hub: str) -> str:
        """The client access URL without its token: ``ws(s)://<client endpoint>/client/hubs/<hub>``."""
        base = self.client_endpoint.rstrip("/")
        scheme, _, rest = base.partition("://")
        ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
        return f"{ws_scheme}://{rest}/client/hubs/{hub}"

    @property
    def origin(self) -> str:
        """The endpoint's host (and port when not the scheme's default), as ``WebHook-Request-Origin`` names it."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or ""
        default = {"http": 80, "https": 443}.get(parts.scheme.lower())
        return host if parts.port in (None, default) else f"{host}:{parts.port}"

    def redacted(self) -> str:
        """The string with its AccessKey replaced by ``***``: safe to log."""
        text = f"Endpoint={self.endpoint};AccessKey=***;"
        if self.client_endpoint != self.endpoint:
            text += f"ClientEndpoint={self.client_endpoint};"
        if self.version:
            text += f"Version={self.version};"
        return text


def parse_connection_string(text: str) -> WebPubSubConnectionString:
    """Parse and validate ``text``; raises :class:`ConnectionStringError` naming the offending key."""
    values: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ConnectionStringError("Malformed connection string: every part must be key=value.")
        name, _, value = part.partition("=")
        key = name.strip().lower()
        if key in values:
            raise ConnectionStringError(f"Duplicate key in connection string: {name.strip()[:40]}.")
        values[key] = value.strip()
    endpoint = values.get("endpoint", "").rstrip("/")
    if not endpoint:
        raise ConnectionStringError("Connection string missing required property Endpoint.")
    if not is_http_url(endpoint) or (urlsplit(endpoint).port is not None and "port" in values):
        raise ConnectionStringError("Invalid value for Endpoint: it must be an absolute http(s) URL.")
    access_key = values.get("accesskey")
    if not access_key:
        raise ConnectionStringError("Connection string missing required property AccessKey.")
    if "port" in values:
        raw = values["port"]
        if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 65536:
            raise ConnectionStringError("Invalid value for Port: it must be an integer between 1 and 65535.")
        endpoint = f"{endpoint}:{int(raw)}"
    client_endpoint = values.get("clientendpoint", "").rstrip("/")
    if client_endpoint and not is_http_url(client_endpoint):
        raise ConnectionStringError("Invalid value for ClientEndpoint: it must be an absolute http(s) URL.")
    return WebPubSubConnectionString(
        endpoint=endpoint,
        access_key=access_key,
        client_endpoint=client_endpoint or endpoint,
        version=values.get("version"),
    )
