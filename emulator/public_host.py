"""``--public-host NAME``: serve only requests whose ``Host`` names the service, like Azure's front end.

Azure SignalR Service is multi-tenant and finds the resource a request is for by its ``Host`` header, which is why a
proxy in front of it must rewrite ``Host`` to the service's host name
(https://learn.microsoft.com/azure/azure-signalr/signalr-howto-reverse-proxy-overview). The emulator serves every
``Host`` by default; with a public host set, a request whose ``Host`` is another name (any port is accepted) gets
`STATUS` with a plain-text body saying so, before any route runs, on every path (client, server and REST endpoints)
and without CORS headers. That makes a gateway that forwards its own ``Host`` (``apim-gateway --keep-host``)
observable locally. The status is inferred: Azure does not document what its front end answers for an unknown host;
404 is what a multi-tenant front end answers for a name it does not serve (docs/emulator.md, "Host check").

This module imports nothing else of the emulator: `emulator.settings` validates the name with it.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from signalr.redact import redact_text

__all__ = ["STATUS", "check_host_middleware", "host_name", "refused_for_host", "valid_public_host"]

log = logging.getLogger("emulator")

#: What a request for another host gets (inferred, see the module docstring).
STATUS = 404
# A DNS name or IPv4 address (letters, digits, '-' and '.'), or an IPv6 address in brackets.
_NAME = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9.])?|\[[0-9A-Fa-f:.]{2,45}\])$")
# How much of a foreign Host the answer and the log line repeat.
_SHOWN = 100
_REFUSED = web.RequestKey("refused_for_host", bool)


def valid_public_host(name: str) -> bool:
    """Whether ``name`` can be a public host: a host name or an IP address (IPv6 in brackets), without a port."""
    return bool(_NAME.match(name))


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header value, without its port, lower-cased, without a final dot."""
    value = host_header.strip()
    if value.startswith("["):
        end = value.find("]")
        name = value[: end + 1] if end != -1 else value
    else:
        name = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return name.rstrip(".").lower()


def refused_for_host(request: web.Request) -> bool:
    """Whether this request was refused for its ``Host`` (its answer then carries no CORS headers)."""
    return bool(request.get(_REFUSED, False))


def check_host_middleware(public_host: str) -> Middleware:
    """The middleware that refuses every request whose ``Host`` name is not ``public_host`` (compared without port
    or case). Put it first, so nothing else runs for a refused request."""
    expected = host_name(public_host)

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        received = request.headers.get("Host")
        if received is not None and host_name(received) == expected:
            return await handler(request)
        shown = "none" if received is None else repr(received[:_SHOWN])
        request[_REFUSED] = True
        log.warning(
            "refused %s: Host %s is not this service's host name %s (--public-host)",
            redact_text(f"{request.method[:16]} {request.path_qs[:512]}"),
            shown,
            public_host,
        )
        return web.Response(
            status=STATUS,
            content_type="text/plain",
            text=f"The Host header {shown} does not name this service ({public_host}). A proxy in front of the "
            "service must send the service's own host name in Host.",
        )

    return check_host
