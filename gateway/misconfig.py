"""The misconfigurations the gateway reproduces on purpose, and the notes its access log adds for them.

Each ``apim-gateway`` switch that breaks something a real APIM setup can break (docs/gateway.md, "Reproducing
misconfigurations") leaves a note on every access line whose outcome it caused, naming the switch, so that a user
or ``chat probe`` reading the log can tell a reproduced failure from a bug. Real APIM gives no such hint.

The 404 of a request meant for the other service (a SignalR client against the ``webpubsub`` profile, a Web PubSub
client against a SignalR profile) gets a note naming the profile it needs: real APIM answers both with the same
bare 404.

Switches that change the model (``--no-options``, ``--buffer-sse``) are recorded by comparing the model before and
after (`removed_options`, `rebuffered`); ``--keep-host`` changes only what the proxy sends. All of it is pure: no
I/O, and nothing here is ever exported (``apim-gateway export`` refuses these switches).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from gateway.model import Api, ApimModel, Service, template_key
from gateway.routing import NoRoute, Route

__all__ = [
    "HOST_SHOWN_CHARS",
    "Misconfigurations",
    "rebuffered",
    "removed_options",
]

#: How much of a client's Host header a note repeats (the rest is cut, with an ellipsis).
HOST_SHOWN_CHARS = 100


def removed_options(before: ApimModel, after: ApimModel) -> frozenset[str]:
    """Names of the APIs that had OPTIONS operations in ``before`` and have none left in ``after``."""
    kept = {api.name for api in after.apis if any(op.method == "OPTIONS" for op in api.operations)}
    had = {api.name for api in before.apis if any(op.method == "OPTIONS" for op in api.operations)}
    return frozenset(had - kept)


def rebuffered(before: ApimModel, after: ApimModel) -> frozenset[tuple[str, str]]:
    """``(api, operation)`` names whose responses were unbuffered in ``before`` and are buffered in ``after``."""
    unbuffered = {
        (api.name, op.name) for api in before.apis for op in api.operations if not op.forward_request.buffer_response
    }
    buffered = {
        (api.name, op.name) for api in after.apis for op in api.operations if op.forward_request.buffer_response
    }
    return frozenset(unbuffered & buffered)


def _serves_get_without_delete(api: Api) -> bool:
    routes = {(op.method, template_key(op.url_template)) for op in api.operations}
    return ("GET", "/") in routes and ("DELETE", "/") not in routes


def _is_webpubsub_client_path(raw_path: str) -> bool:
    """Whether the path is under Web PubSub's client endpoint ``/client/hubs/`` (compared as APIM matches suffixes:
    decoded, without regard to case)."""
    segments = [unquote(s).casefold() for s in raw_path.strip("/").split("/")]
    return segments[:2] == ["client", "hubs"] and len(segments) > 2


def _wrong_service(service: Service, api: Api | None, raw_path: str, *, upgrade: bool) -> list[str] | None:
    """Notes for a 404 whose request was meant for the other service than the model's, or None when it was not."""
    if service is Service.SIGNALR:
        if _is_webpubsub_client_path(raw_path):
            return [
                "Azure Web PubSub's client endpoint client/hubs/<hub> is not an API of this profile: a Web PubSub "
                "client needs --profile webpubsub"
            ]
        return None
    if api is None:
        if _is_webpubsub_client_path(raw_path):
            return ["no API serves this Web PubSub hub: the webpubsub profile serves one hub (--hub chooses it)"]
        if raw_path.strip("/").split("/")[0].casefold() == "client":
            return [
                "SignalR's client endpoints (client/negotiate, client/?hub=) are not APIs of the webpubsub profile: "
                "a SignalR client needs --profile websocket or sse-lp"
            ]
        return []
    if api.is_websocket and not upgrade:
        return ["Web PubSub clients connect with a WebSocket handshake (GET with Upgrade: websocket) only"]
    return []


def _shown(host: str) -> str:
    return host if len(host) <= HOST_SHOWN_CHARS else host[:HOST_SHOWN_CHARS] + "…"


@dataclass(frozen=True)
class Misconfigurations:
    """What a running gateway reproduces on purpose.

    keep_host: forward the client's ``Host`` header instead of the backend's authority (``--keep-host``).
    no_options: APIs whose OPTIONS operations were removed (``--no-options``; see `removed_options`).
    buffered: ``(api, operation)`` pairs whose ``buffer-response="false"`` was removed (``--buffer-sse``; see
        `rebuffered`).
    The default reproduces nothing beyond the model itself.
    """

    keep_host: bool = False
    no_options: frozenset[str] = field(default_factory=frozenset)
    buffered: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @property
    def switches(self) -> tuple[str, ...]:
        """The switches in effect, as typed on the command line (e.g. ``("--no-options", "--keep-host")``)."""
        names = []
        if self.no_options:
            names.append("--no-options")
        if self.buffered:
            names.append("--buffer-sse")
        if self.keep_host:
            names.append("--keep-host")
        return tuple(names)

    def unmatched(
        self,
        no_route: NoRoute,
        method: str,
        *,
        upgrade: bool,
        raw_path: str = "",
        service: Service = Service.SIGNALR,
    ) -> list[str]:
        """Notes for a request APIM answers with its 404: which switch (or which profile) left it unmatched.

        raw_path: the request path as received; service: the service the gateway's model fronts.
        """
        api = no_route.api
        wrong = _wrong_service(service, api, raw_path, upgrade=upgrade)
        if wrong is not None:
            return wrong
        if api is None:
            return []
        if api.is_websocket:
            if upgrade:
                return []
            return [
                "a WebSocket API serves only WebSocket handshakes: Server-Sent Events and LongPolling need an HTTP "
                "API with GET and POST / (the sse-lp profile, --profile sse-lp)"
            ]
        if method == "OPTIONS" and api.name in self.no_options:
            return [
                f"API '{api.name}' has no OPTIONS operations (--no-options): a browser's CORS preflight gets this "
                "404 without CORS headers"
            ]
        if method == "DELETE" and _serves_get_without_delete(api):
            return ["LongPolling's stop: the guide's API has no DELETE / (--with-delete adds it)"]
        return []

    def denied(self, method: str) -> list[str]:
        """Notes for APIM's 401: a browser's preflight cannot carry the key header, only the query key."""
        if method == "OPTIONS":
            return [
                "a browser's CORS preflight cannot send the key header: subscription required, so browsers need the "
                "key in the query"
            ]
        return []

    def forwarded(self, route: Route, client_host: str | None, *, upgrade: bool) -> list[str]:
        """Notes for a request the gateway forwards: the client's Host kept, responses buffered, an upgrade sent
        to an HTTP API."""
        notes = []
        if upgrade and not route.is_websocket:
            notes.append("WebSockets need a WebSocket API on the suffix (the websocket profile, --profile websocket)")
        if route.operation is not None and (route.api.name, route.operation.name) in self.buffered:
            notes.append('buffered in 8 KB blocks: buffer-response="false" removed (--buffer-sse)')
        if self.keep_host:
            shown = f"'{_shown(client_host)}'" if client_host is not None else "none"
            notes.append(f"the client's Host {shown} sent to the backend instead of its own (--keep-host)")
        return notes
