"""Routing of the `webpubsub` profile, pure: which requests reach the service, and the URL they reach it at."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.misconfig import Misconfigurations
from gateway.model import Service, resolve_backend
from gateway.profiles import webpubsub_profile
from gateway.routing import NoRoute, Route, route

MODEL = resolve_backend(webpubsub_profile(), "http://127.0.0.1:8889")
SERVICE_URL = "ws://127.0.0.1:8889/client/hubs/chat"


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("/client/hubs/chat", SERVICE_URL),
        ("/client/hubs/chat/", SERVICE_URL + "/"),
        ("/Client/Hubs/CHAT", SERVICE_URL),  # suffixes match without regard to case (docs/apim.md §2)
        ("/client/hubs/%63hat", SERVICE_URL),
    ],
)
def test_the_handshake_reaches_the_hubs_client_endpoint(path: str, url: str) -> None:
    hit = route(MODEL, "GET", path, upgrade=True)
    assert isinstance(hit, Route) and hit.api.name == "webpubsub-client" and hit.is_websocket
    assert hit.backend_url("access_token=a%2Eb") == f"{url}?access_token=a%2Eb"


@pytest.mark.parametrize(
    ("method", "path", "upgrade", "note"),
    [
        ("POST", "/client/negotiate", False, "a SignalR client needs --profile websocket or sse-lp"),
        ("GET", "/client/", True, "a SignalR client needs --profile websocket or sse-lp"),
        ("GET", "/client/hubs/other", True, "the webpubsub profile serves one hub (--hub chooses it)"),
        ("GET", "/client/hubs/chat", False, "Web PubSub clients connect with a WebSocket handshake"),
        ("OPTIONS", "/client/hubs/chat", False, "Web PubSub clients connect with a WebSocket handshake"),
        ("GET", "/other", True, None),
    ],
)
def test_everything_else_is_404_with_a_note(method: str, path: str, upgrade: bool, note: str | None) -> None:
    miss = route(MODEL, method, path, upgrade=upgrade)
    assert isinstance(miss, NoRoute)
    notes = Misconfigurations().unmatched(miss, method, upgrade=upgrade, raw_path=path, service=MODEL.service)
    assert notes == [] if note is None else any(note in n for n in notes), notes


def test_a_web_pubsub_path_on_a_signalr_profile_names_the_webpubsub_profile() -> None:
    from gateway.profiles import build_profile

    model = build_profile("websocket")
    miss = route(model, "GET", "/client/hubs/chat", upgrade=True)
    assert isinstance(miss, NoRoute)
    (note,) = Misconfigurations().unmatched(miss, "GET", upgrade=True, raw_path="/client/hubs/chat")
    assert "a Web PubSub client needs --profile webpubsub" in note
    assert model.service is Service.SIGNALR


_NOTES = {
    n
    for method, path, upgrade in (
        ("POST", "/client/negotiate", False),
        ("GET", "/client/hubs/other", True),
        ("GET", "/client/hubs/chat", False),
    )
    for n in Misconfigurations().unmatched(
        route(MODEL, method, path, upgrade=upgrade),  # type: ignore[arg-type]
        method,
        upgrade=upgrade,
        raw_path=path,
        service=MODEL.service,
    )
}

_segment = st.sampled_from(["client", "hubs", "chat", "CHAT", "", ".", "..", "%2F", "%2e", "?", "negotiate"]) | st.text(
    max_size=6
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["GET", "POST", "OPTIONS", "DELETE", "get"]), st.lists(_segment, max_size=6), st.booleans())
def test_only_the_hub_root_is_ever_forwarded(method: str, segments: list[str], upgrade: bool) -> None:
    path = "/" + "/".join(segments)
    result = route(MODEL, method, path, upgrade=upgrade)
    if isinstance(result, Route):
        assert method == "GET" and upgrade and result.remainder in ("", "/")
        assert result.backend_url("q") in (f"{SERVICE_URL}?q", f"{SERVICE_URL}/?q")
    else:
        notes = Misconfigurations().unmatched(result, method, upgrade=upgrade, raw_path=path, service=MODEL.service)
        assert len(notes) <= 1  # at most one hint, and always one of the fixed texts above
        assert all(n in _NOTES for n in notes), notes
