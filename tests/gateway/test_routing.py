"""Routing: every row of docs/apim.md §2 "Expected outcomes", plus the matching rules behind it."""

from __future__ import annotations

import pytest

from gateway.model import Api, ApimModel, ApiType, Operation, resolve_backend
from gateway.profiles import build_profile, sse_lp_profile, websocket_profile
from gateway.routing import NoRoute, Route, backend_url, route, template_matches

S = "http://127.0.0.1:8888"
WS = resolve_backend(websocket_profile(), S)
SSE = resolve_backend(sse_lp_profile(), S)
Q = "hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id=AbC%3D&id=tok-1&access_token=a.b.c"

# (request, websocket-profile outcome, sse-lp-profile outcome). An outcome is either
# (api, operation, backend URL) or "404".
Outcome = tuple[str, str, str] | str
TABLE: list[tuple[tuple[str, str, bool], Outcome, Outcome]] = [
    (
        ("POST", "/client/negotiate", False),
        ("signalr-negotiate", "negotiate", f"{S}/client/negotiate/?{Q}"),
        ("signalr", "negotiate", f"{S}/client/negotiate?{Q}"),
    ),
    (
        ("OPTIONS", "/client/negotiate", False),
        ("signalr-negotiate", "negotiate-preflight", f"{S}/client/negotiate/?{Q}"),
        ("signalr", "negotiate-preflight", f"{S}/client/negotiate?{Q}"),
    ),
    (
        ("GET", "/client/", True),
        ("signalr-connect", "onHandshake", f"ws://127.0.0.1:8888/client/?{Q}"),
        ("signalr", "connect-get", f"{S}/client/?{Q}"),
    ),
    (("GET", "/client/", False), "404", ("signalr", "connect-get", f"{S}/client/?{Q}")),
    (("POST", "/client/", False), "404", ("signalr", "connect", f"{S}/client/?{Q}")),
    (("OPTIONS", "/client/", False), "404", ("signalr", "connect-preflight", f"{S}/client/?{Q}")),
    (("DELETE", "/client/", False), "404", "404"),
    (("GET", "/client/negotiate", False), "404", "404"),
    (("GET", "/", False), "404", "404"),
    (("GET", "/other", False), "404", "404"),
]


def _check(model: ApimModel, request: tuple[str, str, bool], expected: Outcome) -> None:
    method, path, upgrade = request
    result = route(model, method, path, upgrade=upgrade)
    if expected == "404":
        assert isinstance(result, NoRoute), result
        return
    assert isinstance(result, Route), result
    api, operation, url = expected
    assert (result.api.name, result.operation_name, result.backend_url(Q)) == (api, operation, url)


@pytest.mark.parametrize(
    ("request_", "ws_outcome", "sse_outcome"),
    TABLE,
    ids=[f"{r[0]} {r[1]}{' upgrade' if r[2] else ''}" for r, _, _ in TABLE],
)
def test_expected_outcomes_table(request_: tuple[str, str, bool], ws_outcome: Outcome, sse_outcome: Outcome) -> None:
    _check(WS, request_, ws_outcome)
    _check(SSE, request_, sse_outcome)


def test_websocket_handshake_is_relayed_only_for_the_websocket_api() -> None:
    ws = route(WS, "GET", "/client/", upgrade=True)
    assert isinstance(ws, Route) and ws.is_websocket
    sse = route(SSE, "GET", "/client/", upgrade=True)
    assert isinstance(sse, Route) and not sse.is_websocket  # a plain GET: never 101


def test_lp_delete_opt_in() -> None:
    model = resolve_backend(build_profile("sse-lp", delete=True), S)
    result = route(model, "DELETE", "/client/", upgrade=False)
    assert isinstance(result, Route) and result.operation_name == "connect-delete"
    assert isinstance(route(WS, "DELETE", "/client/", upgrade=False), NoRoute)


def test_suffix_is_a_segment_prefix_never_a_string_prefix() -> None:
    for path in ("/clientx", "/clientx/negotiate", "/client-negotiate"):
        assert isinstance(route(SSE, "POST", path, upgrade=False), NoRoute)
        assert route(SSE, "POST", path, upgrade=False).api is None  # type: ignore[union-attr]


def test_longest_suffix_wins() -> None:
    result = route(WS, "POST", "/client/negotiate", upgrade=False)
    assert isinstance(result, Route) and result.api.name == "signalr-negotiate"
    # ...also with a trailing slash, and case-insensitively, forwarding the path as received
    for path in ("/client/negotiate/", "/Client/Negotiate"):
        hit = route(WS, "POST", path, upgrade=False)
        assert isinstance(hit, Route) and hit.api.name == "signalr-negotiate", path


def test_remainder_empty_counts_as_root_and_trailing_slash_is_ignored() -> None:
    for path, remainder in (("/client", ""), ("/client/", "/")):
        hit = route(SSE, "POST", path, upgrade=False)
        assert isinstance(hit, Route) and hit.operation_name == "connect" and hit.remainder == remainder
        assert hit.backend_url("") == f"{S}/client/"
    hit = route(SSE, "POST", "/client/negotiate/", upgrade=False)
    assert isinstance(hit, Route) and hit.operation_name == "negotiate"
    assert hit.backend_url("a=1") == f"{S}/client/negotiate/?a=1"
    ws_root = route(WS, "GET", "/client", upgrade=True)
    assert isinstance(ws_root, Route) and ws_root.backend_url("") == "ws://127.0.0.1:8888/client/"


def test_method_mismatch_is_404_and_head_is_not_get() -> None:
    for method in ("HEAD", "PUT", "PATCH", "get"):
        miss = route(SSE, method, "/client/", upgrade=False)
        assert isinstance(miss, NoRoute), method
        assert miss.reason.startswith("OperationNotFound")
        assert miss.api is not None and miss.api.name == "signalr"


def test_websocket_api_serves_only_the_handshake_at_its_root() -> None:
    for method, path, upgrade in (
        ("GET", "/client/", False),
        ("GET", "/client/sub", True),
        ("POST", "/client/", True),
        ("OPTIONS", "/client/", False),
        ("DELETE", "/client/", False),
    ):
        miss = route(WS, method, path, upgrade=upgrade)
        assert isinstance(miss, NoRoute), (method, path)
        assert "WebSocket API" in miss.reason


def test_404_reasons_name_the_api_and_its_operations() -> None:
    miss = route(SSE, "DELETE", "/client/", upgrade=False)
    assert isinstance(miss, NoRoute)
    assert "DELETE /" in miss.reason and "OPTIONS /negotiate" in miss.reason and "GET /" in miss.reason
    assert route(SSE, "GET", "/other", upgrade=False) == NoRoute(None, "no API suffix matches the path")


def test_templates() -> None:
    assert template_matches("/", "") and template_matches("/", "/")
    assert template_matches("/negotiate", "/negotiate/") and template_matches("/negotiate", "/NEGOTIATE")
    assert not template_matches("/negotiate", "/negotiate/x")
    assert template_matches("/users/{id}", "/users/42") and not template_matches("/users/{id}", "/users/")
    assert template_matches("/files/*", "/files/a/b/c") and not template_matches("/files/*", "/other/a")
    assert template_matches("/a%20b", "/a b") and template_matches("/a b", "/a%20b")


def test_empty_suffix_api_catches_everything_else() -> None:
    model = ApimModel(
        "x",
        (
            Api("root", ApiType.HTTP, "", "http://h/", (Operation("any", "GET", "/*"),)),
            Api("client", ApiType.HTTP, "client", "http://h/client/", (Operation("get", "GET", "/"),)),
        ),
    )
    hit = route(model, "GET", "/client/", upgrade=False)
    assert isinstance(hit, Route) and hit.api.name == "client"
    hit = route(model, "GET", "/x/y", upgrade=False)
    assert isinstance(hit, Route) and hit.api.name == "root" and hit.backend_url("q") == "http://h/x/y?q"


def test_backend_url_keeps_the_raw_query() -> None:
    raw = "hub=chat&asrs.op=%2Fchat&id=a+b/c&access_token=x%2Ey&_=1&subscription-key=k%3D"
    assert backend_url("https://s/client/", "/", raw) == f"https://s/client/?{raw}"
    assert backend_url("https://s/client/negotiate/", "", "") == "https://s/client/negotiate/"
    assert backend_url("https://s/client/", "/negotiate", "a=1") == "https://s/client/negotiate?a=1"
