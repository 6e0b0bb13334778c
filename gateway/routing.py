"""Request routing: which API and operation a request reaches, or why it gets APIM's 404.

APIM does not publish its matching algorithm; these are the rules the seed doc's working setups
imply (docs/apim.md §2):

1. The API is the one whose suffix is the longest segment-wise prefix of the path (``client``
   matches ``/client`` and ``/client/…``, never ``/clientx``), compared case-insensitively
   [unverified]; the path is forwarded as received.
2. The remainder is the path after the suffix; ``""`` counts as ``/`` and a trailing ``/`` is
   ignored when matching.
3. HTTP APIs: method and template must both match; a method mismatch is 404 (no 405), HEAD does
   not match GET, the query never affects matching.
4. WebSocket APIs serve only onHandshake: a GET with ``Upgrade: websocket`` at the suffix root.
   Everything else there is 404.
5. An upgrade request to an HTTP API is matched like a plain request (the proxy then drops the
   hop-by-hop upgrade headers and never switches protocols).

All functions here are pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from gateway.model import Api, ApimModel, Operation

__all__ = ["ON_HANDSHAKE", "NoRoute", "Route", "backend_url", "route", "template_matches"]

ON_HANDSHAKE = "onHandshake"


@dataclass(frozen=True)
class Route:
    """A request matched an operation.

    api: the matched API.
    operation: the matched operation; None for a WebSocket API's implicit onHandshake.
    remainder: the raw path after the suffix, as received ("" when the path ends at the suffix).
    """

    api: Api
    operation: Operation | None
    remainder: str

    @property
    def is_websocket(self) -> bool:
        """True when the request must be relayed as a WebSocket (onHandshake)."""
        return self.operation is None

    @property
    def operation_name(self) -> str:
        return self.operation.name if self.operation else ON_HANDSHAKE

    def backend_url(self, raw_query: str) -> str:
        return backend_url(self.api.service_url, self.remainder, raw_query)


@dataclass(frozen=True)
class NoRoute:
    """No operation matched: APIM answers 404 "Resource not found".

    api: the API whose suffix matched, if any.
    reason: why nothing matched, for the access log (APIM itself gives no hint).
    """

    api: Api | None
    reason: str


def _segments(path: str) -> list[str]:
    """Path segments of an absolute path; "" and "/" have none, a trailing "/" adds none."""
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


def _same(a: str, b: str) -> bool:
    return unquote(a).casefold() == unquote(b).casefold()


def template_matches(url_template: str, remainder: str) -> bool:
    """Whether a remainder (raw, as received) matches an operation's URL template."""
    template = _segments(url_template)
    actual = _segments(remainder)
    for n, expected in enumerate(template):
        if expected == "*" and n == len(template) - 1:
            return True
        if n >= len(actual):
            return False
        if expected.startswith("{") and expected.endswith("}"):
            if not actual[n]:
                return False
        elif not _same(expected, actual[n]):
            return False
    return len(actual) == len(template)


def _split_suffix(api: Api, raw_path: str) -> str | None:
    """The raw remainder if the API's suffix is a segment-wise prefix of the path, else None."""
    if not raw_path.startswith("/"):
        raw_path = "/" + raw_path
    suffix = _segments(api.suffix)
    parts = raw_path[1:].split("/")
    if len(parts) < len(suffix):
        return None
    for expected, actual in zip(suffix, parts, strict=False):
        if not _same(expected, actual):
            return None
    rest = parts[len(suffix) :]
    return "/" + "/".join(rest) if rest else ""


def _describe(api: Api) -> str:
    ops = ", ".join(f"{op.method} {op.url_template}" for op in api.operations)
    return f"API '{api.name}' (suffix /{api.suffix}) has operations: {ops}"


def route(model: ApimModel, method: str, raw_path: str, *, upgrade: bool) -> Route | NoRoute:
    """Match a request against the model.

    method: the request method as received (matched exactly, so upper-case).
    raw_path: the request path, percent-encoded as received, without the query.
    upgrade: whether the request carries ``Upgrade: websocket``.
    Returns a `Route`; the caller then checks the subscription key and forwards. A `NoRoute`
    means APIM's 404, whatever key the request carries.
    """
    matches = [(api, rest) for api in model.apis if (rest := _split_suffix(api, raw_path)) is not None]
    if not matches:
        return NoRoute(None, "no API suffix matches the path")
    # Rule 1: the longest suffix wins (suffixes are unique, so there is one longest).
    api, remainder = max(matches, key=lambda match: len(_segments(match[0].suffix)))
    if api.is_websocket:
        at_root = not _segments(remainder)
        if method == "GET" and upgrade and at_root:
            return Route(api, None, remainder)
        wanted = "a GET with Upgrade: websocket" if not (method == "GET" and upgrade) else "the suffix root"
        return NoRoute(
            api,
            f"OperationNotFound: API '{api.name}' is a WebSocket API (suffix /{api.suffix}); "
            f"it serves only onHandshake, {wanted}",
        )
    for op in api.operations:
        if op.method == method and template_matches(op.url_template, remainder):
            return Route(api, op, remainder)
    return NoRoute(
        api,
        f"OperationNotFound: no operation for {method} {remainder or '/'}; {_describe(api)}",
    )


def backend_url(service_url: str, remainder: str, raw_query: str) -> str:
    """The backend URL: service URL without its trailing ``/`` + remainder, + the raw query, byte for byte
    (docs/apim.md §4). An empty remainder (the path ended at the suffix) adds nothing: the service URL is used as
    written, ``/`` only when it has no path. So ``client/`` service URLs get ``/client/`` for ``/client``, and Web
    PubSub's ``/client/hubs/chat`` is forwarded as the client sent it, without a ``/`` the client never wrote."""
    if remainder:
        url = service_url.rstrip("/") + remainder
    else:
        url = service_url if urlsplit(service_url).path else service_url + "/"
    return f"{url}?{raw_query}" if raw_query else url
