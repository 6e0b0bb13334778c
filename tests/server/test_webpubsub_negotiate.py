"""``chat-server --service webpubsub``: negotiate, the configuration errors, the bundle route, and no secret in logs.

The client access URL is compared with what ``azure-messaging-webpubsubservice`` itself mints for the same connection
string: the same path, and a token with the same claims signed with the AccessKey.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from azure.messaging.webpubsubservice import WebPubSubServiceClient

from server import webpubsub as server_webpubsub
from server.app import create_app
from server.config import Service, load_settings
from tests.support.processes import script
from tests.support.wps_server import WebPubSubChatServer, start_webpubsub_chat_server

ACCESS_KEY = "WpsNegotiateKey0000DoNotPrint1111abcdefghijklmn"
SERVICE_PORT = 18889  # nothing listens there: negotiate mints tokens locally
CONNECTION_STRING = f"Endpoint=http://127.0.0.1;Port={SERVICE_PORT};AccessKey={ACCESS_KEY};Version=1.0;"
SERVICE_AUD = f"http://127.0.0.1:{SERVICE_PORT}/client/hubs/chat"


def _request(
    url: str, method: str = "POST", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _claims(url: str) -> dict[str, Any]:
    token = parse_qs(urlsplit(url).query)["access_token"][0]
    claims: dict[str, Any] = jwt.decode(token, ACCESS_KEY, algorithms=["HS256"], audience=SERVICE_AUD)
    return claims


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPubSubChatServer]:
    srv = start_webpubsub_chat_server(CONNECTION_STRING, cwd=tmp_path_factory.mktemp("wps-negotiate"))
    yield srv
    srv.stop()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_negotiate_answers_the_sdks_client_access_url(server: WebPubSubChatServer, method: str) -> None:
    status, headers, body = _request(server.negotiate_url + "?id=alice", method)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Cache-Control"] == "no-store"
    answer = json.loads(body)
    assert set(answer) == {"service", "hub", "url"}
    assert (answer["service"], answer["hub"]) == ("webpubsub", "chat")
    url = urlsplit(answer["url"])
    assert (url.scheme, url.netloc, url.path) == ("ws", f"127.0.0.1:{SERVICE_PORT}", "/client/hubs/chat")
    claims = _claims(answer["url"])
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 3600

    # The SDK, given the same connection string, mints a URL to the same place with the same kind of token.
    sdk = WebPubSubServiceClient.from_connection_string(CONNECTION_STRING, hub="chat")
    reference = sdk.get_client_access_token(user_id="alice")
    assert reference["url"].split("?")[0] == answer["url"].split("?")[0]
    assert set(_claims(reference["url"])) == set(claims)


def test_negotiate_without_a_user_gives_a_token_without_sub(server: WebPubSubChatServer) -> None:
    status, _, body = _request(server.negotiate_url)
    assert status == 200
    assert "sub" not in _claims(json.loads(body)["url"])


def test_negotiate_route_ignores_case_and_a_trailing_slash(server: WebPubSubChatServer) -> None:
    status, _, body = _request(f"{server.url}/CHAT/Negotiate/?userId=bob")
    assert status == 200
    assert _claims(json.loads(body)["url"])["sub"] == "bob"
    status, _, _ = _request(f"{server.url}/other/negotiate")
    assert status == 404


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?id=a%20b", {}),
        ("?id=" + "x" * 129, {}),
        ("?id=", {}),
        ("?id=alice&userId=bob", {}),
        ("?id=alice", {"X-User-Id": "mallory"}),
        ("?id=%0Aalice", {}),
    ],
)
def test_negotiate_refuses_bad_user_ids(server: WebPubSubChatServer, query: str, headers: dict[str, str]) -> None:
    status, _, body = _request(server.negotiate_url + query, headers=headers)
    assert status == 400
    assert "Invalid user id" in json.loads(body)["error"]
    # ...and keeps serving.
    assert _request(server.negotiate_url + "?id=alice")[0] == 200


def test_negotiate_cors(server: WebPubSubChatServer) -> None:
    origin = "http://127.0.0.1:9"
    status, headers, _ = _request(server.negotiate_url, headers={"Origin": origin})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Allow-Credentials"] == "true"
    status, headers, _ = _request(
        server.negotiate_url,
        "OPTIONS",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-a"},
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in headers["Access-Control-Allow-Methods"]


def test_health_says_webpubsub_and_the_page_is_served(server: WebPubSubChatServer) -> None:
    status, _, body = _request(server.url + "/healthz", "GET")
    assert (status, json.loads(body)) == (200, {"status": "ok", "hub": "chat", "service": "webpubsub"})
    status, headers, body = _request(server.url + "/", "GET")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # The SignalR routes are not there.
    assert _request(server.url + "/upstream")[0] == 404


def test_the_web_pubsub_client_bundle_is_served(server: WebPubSubChatServer) -> None:
    bundle = server_webpubsub.WEBPUBSUB_CLIENT_JS
    if not bundle.is_file():
        pytest.skip("the @azure/web-pubsub-client bundle is not built (make node)")
    status, headers, body = _request(server.url + "/lib/web-pubsub-client.js", "GET")
    assert status == 200
    assert headers["Content-Type"].startswith("application/javascript")
    assert body == bundle.read_bytes()
    assert b"WebPubSubClient" in body


async def test_a_missing_bundle_is_a_clear_404(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(server_webpubsub, "WEBPUBSUB_CLIENT_JS", tmp_path / "absent.js")
    settings = load_settings(connection_string=CONNECTION_STRING, service=Service.WEBPUBSUB)
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get("/lib/web-pubsub-client.js")
        assert response.status == 404
        assert "make node" in await response.text()


@pytest.mark.parametrize(
    ("client_endpoint", "expected_base"),
    [
        ("http://127.0.0.1:9999", "ws://127.0.0.1:9999/client/hubs/chat"),
        ("https://gateway.example", "wss://gateway.example/client/hubs/chat"),
        ("HTTPS://gateway.example:8443/", "wss://gateway.example:8443/client/hubs/chat"),
        ("https://gateway.example/wps", "wss://gateway.example/wps/client/hubs/chat"),
    ],
)
def test_client_endpoint_swaps_scheme_and_host_but_not_the_audience(
    tmp_path: Path, client_endpoint: str, expected_base: str
) -> None:
    with start_webpubsub_chat_server(f"{CONNECTION_STRING}ClientEndpoint={client_endpoint};", cwd=tmp_path) as srv:
        status, _, body = _request(srv.negotiate_url + "?id=carol")
        assert status == 200
        url = json.loads(body)["url"]
        assert url.split("?")[0] == expected_base
        assert set(parse_qs(urlsplit(url).query)) == {"access_token"}
        claims = _claims(url)  # verifies aud == the service's own URL, not the gateway's
        assert claims["aud"] == SERVICE_AUD and claims["sub"] == "carol"


def test_a_subscription_key_in_the_query_is_copied_into_the_url(tmp_path: Path) -> None:
    """A browser cannot send headers on a WebSocket handshake: its APIM key rides the client access URL's query."""
    with start_webpubsub_chat_server(f"{CONNECTION_STRING}ClientEndpoint=http://127.0.0.1:1;", cwd=tmp_path) as srv:
        status, _, body = _request(srv.negotiate_url + "?id=dave&subscription-key=k%2By%20z")
        assert status == 200
        url = json.loads(body)["url"]
        query = parse_qs(urlsplit(url).query)
        assert query["subscription-key"] == ["k+y z"] and set(query) == {"access_token", "subscription-key"}
        assert _claims(url)["sub"] == "dave"
        status, _, body = _request(srv.negotiate_url + "?subscription-key=a&subscription-key=b")
        assert status == 400 and "more than once" in json.loads(body)["error"]
        log = srv.stderr()
        assert "k%2By%20z" not in log and "k+y z" not in log and "k%2By+z" not in log


def _run_config_error(connection_string: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    if connection_string is not None:
        env["Azure__WebPubSub__ConnectionString"] = connection_string
    return subprocess.run(
        [script("chat-server"), "--service", "webpubsub", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("connection_string", "needle"),
    [
        (None, "Azure__WebPubSub__ConnectionString is not set"),
        (f"Endpoint=ftp://127.0.0.1;AccessKey={ACCESS_KEY};Version=1.0;", "endpoint"),
        (f"AccessKey={ACCESS_KEY};Version=1.0;", "endpoint"),
        ("Endpoint=http://127.0.0.1;Version=1.0;", "accesskey"),
        (f"Endpoint=http://127.0.0.1;Port=abc;AccessKey={ACCESS_KEY};", "port"),
        (f"Endpoint=http://127.0.0.1;AccessKey={ACCESS_KEY};ClientEndpoint=gateway;", "clientEndpoint"),
        (f"Endpoint=http://127.0.0.1;AccessKey={ACCESS_KEY};AccessKey={ACCESS_KEY}x;", "Duplicate"),
        (f"Endpoint=http://127.0.0.1;AccessKey={ACCESS_KEY};Version=9;", "Version"),
    ],
)
def test_a_bad_connection_string_names_the_key_and_never_the_access_key(
    tmp_path: Path, connection_string: str | None, needle: str
) -> None:
    result = _run_config_error(connection_string, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert needle in result.stderr
    assert result.stderr.startswith("error: ")
    assert ACCESS_KEY not in result.stderr


def test_no_secret_in_the_log(server: WebPubSubChatServer) -> None:
    status, _, body = _request(server.negotiate_url + "?id=dave")
    assert status == 200
    token = parse_qs(urlsplit(json.loads(body)["url"]).query)["access_token"][0]
    deadline = time.monotonic() + 5
    while "negotiate: client access URL" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.stderr()
    assert "negotiate: client access URL ws://127.0.0.1" in log
    assert "access_token=***" in log
    assert ACCESS_KEY not in log
    assert token not in log and token[:20] not in log


def test_token_lifetime_and_a_clean_exit(tmp_path: Path) -> None:
    srv = start_webpubsub_chat_server(CONNECTION_STRING, "--token-lifetime", "120", cwd=tmp_path)
    try:
        status, _, body = _request(srv.negotiate_url)
        assert status == 200
        claims = _claims(json.loads(body)["url"])
        assert claims["exp"] - claims["iat"] == 120
    finally:
        assert srv.stop() == 0  # SIGTERM: the SDK client closed, exit 0
    assert "Traceback" not in srv.stderr()
