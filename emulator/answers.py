"""Answers the emulator's HTTP routes share before any protocol work: a refused request, plain-text errors, the 401
of ASP.NET's JwtBearer handler, the validated ``hub`` query, and a request line safe for logs."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from signalr.redact import redact_text

from .auth import Unauthorized
from .hub import HUB_NAME, INVALID_HUB_NAME

__all__ = ["Refused", "hub_query", "plain_text", "request_line", "unauthorized"]


class Refused(Exception):
    """A request answered with an error before any transport work; carries the response."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def plain_text(status: int, text: str = "", headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", headers=headers)


def unauthorized(exc: Unauthorized) -> web.Response:
    return web.Response(status=401, headers={"WWW-Authenticate": exc.www_authenticate})


def hub_query(request: web.Request, default: str | None = None) -> str:
    """The ``hub`` query (else ``default``), validated and lower-cased; raises :class:`Refused` (400) when there is
    neither or the name is invalid."""
    hub = request.rel_url.query.get("hub") or default
    if not hub:
        raise Refused(plain_text(400, "The 'hub' query parameter is required."))
    if not HUB_NAME.match(hub):
        raise Refused(plain_text(400, INVALID_HUB_NAME))
    return hub.lower()


def request_line(request: web.Request) -> str:
    """The request's method and target for a log line: connection tokens tagged, access tokens, keys and anything
    that looks like a JWT removed."""
    return redact_text(f"{request.method[:16]} {request.path_qs[:512]}")
