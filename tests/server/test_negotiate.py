"""``POST /chat/negotiate``: the ASP.NET SDK's redirect, over a real loopback socket (aiohttp's test server)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, load_settings
from signalr.tokens import verify_token

KEY = "NegotiateTestKey0123456789abcdefghijklmnopqrs"
EMULATOR = f"Endpoint=http://127.0.0.1;Port=8888;AccessKey={KEY};Version=1.0;"
APIM = (
    f"Endpoint=https://res.service.signalr.net;AccessKey={KEY};ClientEndpoint=https://apim1.azure-api.net;Version=1.0;"
)

ClientFactory = Callable[..., Coroutine[Any, Any, TestClient[Any, Any]]]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def make(connection_string: str = APIM, **overrides: Any) -> TestClient[Any, Any]:
        settings = load_settings(connection_string=connection_string, hub=overrides.pop("hub", "chat"))
        if overrides:
            settings = dataclasses.replace(settings, **overrides)
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


async def negotiate(client: TestClient[Any, Any], path: str = "/chat/negotiate?negotiateVersion=1", **kw: Any) -> Any:
    response = await client.post(path, **kw)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    return json.loads(await response.read())


async def test_redirect_to_the_client_endpoint_as_the_sdk_builds_it(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    body = await negotiate(client)
    assert list(body) == ["negotiateVersion", "url", "accessToken", "availableTransports"]
    assert body["negotiateVersion"] == 0 and body["availableTransports"] == []
    url = body["url"]
    assert url.startswith(
        "https://apim1.azure-api.net/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id="
    )
    request_id = dict(query_of(url))["asrs_request_id"]
    assert request_id.endswith("=")  # base64 of 8 bytes, url-encoded in the URL as %3D
    assert url.endswith("%3D")
    assert url.count("negotiateVersion") == 1  # trap 5: copied once, never appended again


async def test_token_audience_is_the_endpoint_and_lifetime_one_hour(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    before = time.time()
    body = await negotiate(client)
    claims = verify_token(body["accessToken"], KEY, "https://res.service.signalr.net/client/?hub=chat")
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] == claims["iat"]
    assert before - 1 <= claims["iat"] <= time.time() + 1
    assert "nameid" not in claims and "asrs.s.uid" not in claims


async def test_port_changes_the_url_but_never_the_audience(make_client: ClientFactory) -> None:
    client = await make_client(EMULATOR)
    body = await negotiate(client)
    assert body["url"].startswith("http://127.0.0.1:8888/client/?hub=chat&asrs.op=%2Fchat&")
    verify_token(body["accessToken"], KEY, "http://127.0.0.1/client/?hub=chat")


async def test_token_lifetime_is_configurable(make_client: ClientFactory) -> None:
    client = await make_client(APIM, token_lifetime=120)
    claims = verify_token((await negotiate(client))["accessToken"], KEY, None)
    assert claims["exp"] - claims["iat"] == 120


async def test_trailing_slash_is_tolerated(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    body = await negotiate(client, "/chat/negotiate/?negotiateVersion=1")
    assert "&asrs.op=%2Fchat&negotiateVersion=1&" in body["url"]


async def test_hub_name_is_lower_cased_in_url_and_audience_but_not_in_the_route(make_client: ClientFactory) -> None:
    client = await make_client(APIM, hub="ChatRoom")
    body = await negotiate(client, "/ChatRoom/negotiate?negotiateVersion=1")
    assert body["url"].startswith("https://apim1.azure-api.net/client/?hub=chatroom&asrs.op=%2FChatRoom&")
    verify_token(body["accessToken"], KEY, "https://res.service.signalr.net/client/?hub=chatroom")


async def test_client_query_is_copied_verbatim_so_a_subscription_key_reaches_apim(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    body = await negotiate(client, "/chat/negotiate?subscription-key=s%2Bk&x=a%20b&negotiateVersion=1")
    assert "&asrs.op=%2Fchat&subscription-key=s%2Bk&x=a%20b&negotiateVersion=1&asrs_request_id=" in body["url"]


async def test_request_ids_are_unique(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    ids = {dict(query_of((await negotiate(client))["url"]))["asrs_request_id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/chat/negotiate?userId=alice", {}),
        ("/chat/negotiate", {"X-User-Id": "alice"}),
        ("/chat/negotiate?userId=alice", {"X-User-Id": "alice"}),
    ],
)
async def test_user_id_goes_into_nameid_and_asrs_uid(
    make_client: ClientFactory, path: str, headers: dict[str, str]
) -> None:
    client = await make_client(APIM)
    body = await negotiate(client, path, headers=headers)
    claims = verify_token(body["accessToken"], KEY, None)
    assert claims["nameid"] == "alice" and claims["asrs.s.uid"] == "alice"


@pytest.mark.parametrize(
    ("path", "headers", "reason"),
    [
        ("/chat/negotiate?userId=", {}, "Invalid user id: use"),
        ("/chat/negotiate?userId=%3Cscript%3E", {}, "Invalid user id: use"),
        ("/chat/negotiate?userId=a%20b", {}, "Invalid user id: use"),
        ("/chat/negotiate?userId=a%2Fb", {}, "Invalid user id: use"),
        ("/chat/negotiate?userId=bob%0A", {}, "Invalid user id: use"),  # "$" once let a trailing newline through
        ("/chat/negotiate?userId=" + "x" * 129, {}, "Invalid user id: use"),
        ("/chat/negotiate", {"X-User-Id": "bad;id"}, "Invalid user id: use"),
        ("/chat/negotiate?userId=a&userId=b", {}, "more than once"),
        ("/chat/negotiate?userId=alice", {"X-User-Id": "bob"}, "differ"),
    ],
)
async def test_bad_user_ids_are_a_clear_400(
    make_client: ClientFactory, path: str, headers: dict[str, str], reason: str
) -> None:
    client = await make_client(APIM)
    response = await client.post(path, headers=headers)
    assert response.status == 400
    body = await response.json()
    assert reason in body["error"]
    assert "accessToken" not in body


@pytest.mark.parametrize("key", ["hub", "HUB", "id", "access_token", "asrs.op", "asrs_request_id", "asrs_ui_lang"])
async def test_reserved_query_keys_are_refused(make_client: ClientFactory, key: str) -> None:
    client = await make_client(APIM)
    response = await client.post(f"/chat/negotiate?{key}=other&negotiateVersion=1")
    assert response.status == 400
    assert (await response.json())["error"] == f"Query parameter '{key}' is reserved for the service."


async def test_user_id_limit_fits_the_token_limit(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    body = await negotiate(client, "/chat/negotiate?userId=" + "u" * 128)
    assert len(body["accessToken"]) <= 4096


async def test_token_over_the_limit_is_413(make_client: ClientFactory) -> None:
    # The 4096 limit cannot be reached with a valid user id; a lower configured limit exercises the same path.
    client = await make_client(APIM, max_token_length=200)
    response = await client.post("/chat/negotiate?userId=alice")
    assert response.status == 413
    assert (await response.json())["error"] == "AccessToken must not be longer than 4K."


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_only_post_and_options(make_client: ClientFactory, method: str) -> None:
    client = await make_client(APIM)
    response = await client.request(method, "/chat/negotiate")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"POST", "OPTIONS"}


@pytest.mark.parametrize(
    ("path", "asrs_op"),
    [
        # asrs.op keeps the request path's casing (the SDK's GetOriginalPath uses request.Path as sent).
        ("/CHAT/negotiate", "&asrs.op=%2FCHAT"),
        ("/Chat/negotiate/", "&asrs.op=%2FChat"),
        # The SDK strips the suffix only when the path ends with "/negotiate" in that exact casing (a
        # case-sensitive EndsWith); otherwise asrs.op is omitted, while ASP.NET routing still reaches the handler.
        ("/chat/Negotiate", ""),
        ("/CHAT/NEGOTIATE", ""),
        ("/chat/NEGOTIATE/", ""),
    ],
)
async def test_the_route_ignores_case_and_asrs_op_follows_the_sdk(
    make_client: ClientFactory, path: str, asrs_op: str
) -> None:
    client = await make_client(APIM)
    body = await negotiate(client, path + "?negotiateVersion=1")
    assert body["url"].startswith(f"https://apim1.azure-api.net/client/?hub=chat{asrs_op}&negotiateVersion=1&")
    preflight = await client.options(
        path, headers={"Origin": "http://page.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://page.example"


@pytest.mark.parametrize(
    "path", ["/chat", "/chat/", "/other/negotiate", "/chatx/negotiate", "/chat/negotiatex", "/chat/negotiate/x"]
)
async def test_other_paths_are_404(make_client: ClientFactory, path: str) -> None:
    client = await make_client(APIM)
    assert (await client.post(path)).status == 404


async def test_preflight_from_another_origin(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    response = await client.options(
        "/chat/negotiate?negotiateVersion=1",
        headers={
            "Origin": "http://page.example:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-signalr-user-agent, x-requested-with",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "http://page.example:3000"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "x-signalr-user-agent, x-requested-with"


async def test_preflight_drops_header_names_that_are_not_tokens(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    response = await client.options(
        "/chat/negotiate", headers={"Origin": "http://o", "Access-Control-Request-Headers": "x-ok, bad name, a:b"}
    )
    assert response.headers["Access-Control-Allow-Headers"] == "x-ok"


async def test_cross_origin_post_carries_cors_headers_and_same_origin_none(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    cross = await client.post("/chat/negotiate", headers={"Origin": "http://page.example"})
    assert cross.headers["Access-Control-Allow-Origin"] == "http://page.example"
    assert cross.headers["Access-Control-Allow-Credentials"] == "true"
    same = await client.post("/chat/negotiate")
    assert "Access-Control-Allow-Origin" not in same.headers


async def test_request_body_is_ignored(make_client: ClientFactory) -> None:
    client = await make_client(APIM)
    body = await negotiate(client, data=b"x" * 10000)
    assert body["url"].startswith("https://apim1.azure-api.net/client/?hub=chat&")


async def test_settings_are_frozen() -> None:
    settings = load_settings(connection_string=APIM)
    assert isinstance(settings, Settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.hub = "x"  # type: ignore[misc]
    assert KEY not in repr(settings)
