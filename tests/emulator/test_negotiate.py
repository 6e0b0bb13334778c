"""``POST /client/negotiate``: versions, ids, auth failures and CORS (protocol.md §3.2, §3.3, traps 6, 7, 13, 18)."""

from __future__ import annotations

import json
import time

import pytest

from signalr.negotiate import NegotiateResult, parse_negotiate_response

from .conftest import Emulator

ALL_TRANSPORTS = [
    {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
    {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
    {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
]


async def post(emulator: Emulator, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, object]:
    async with emulator.session.post(emulator.base + path, headers=headers) as response:
        return response.status, await response.read(), response.headers


@pytest.mark.parametrize("path", ["/client/negotiate", "/client/negotiate/"])
async def test_v1_reply_has_distinct_id_and_token_in_aspnet_field_order(emulator: Emulator, path: str) -> None:
    headers = emulator.auth(emulator.client_token())
    status, body, response_headers = await post(emulator, path + "?hub=chat&negotiateVersion=1", headers)
    assert status == 200
    assert response_headers["Content-Type"].startswith("application/json")  # type: ignore[index]
    reply = json.loads(body)
    assert list(reply) == ["negotiateVersion", "connectionId", "connectionToken", "availableTransports"]
    assert reply["negotiateVersion"] == 1
    assert reply["availableTransports"] == ALL_TRANSPORTS
    # Trap 6: the token is a different secret from the public id, and both are URL-safe.
    assert reply["connectionId"] != reply["connectionToken"]
    for value in (reply["connectionId"], reply["connectionToken"]):
        assert value and all(c.isalnum() or c in "-_" for c in value)
    parsed = parse_negotiate_response(body)
    assert isinstance(parsed, NegotiateResult) and parsed.id_for_connect == reply["connectionToken"]


async def test_v0_when_version_absent_omits_the_token(emulator: Emulator) -> None:
    reply = await emulator.negotiate(version=None)
    assert list(reply) == ["negotiateVersion", "connectionId", "availableTransports"]
    assert reply["negotiateVersion"] == 0


async def test_version_above_one_is_granted_one_and_query_key_is_case_insensitive(emulator: Emulator) -> None:
    headers = emulator.auth(emulator.client_token())
    status, body, _ = await post(emulator, "/client/negotiate?hub=chat&NEGOTIATEVERSION=7", headers)
    assert status == 200 and json.loads(body)["negotiateVersion"] == 1


async def test_non_integer_version_is_an_error_reply(emulator: Emulator) -> None:
    headers = emulator.auth(emulator.client_token())
    status, body, _ = await post(emulator, "/client/negotiate?hub=chat&negotiateVersion=one", headers)
    assert status == 200
    assert json.loads(body) == {"error": "The client requested a non-integer protocol version."}


async def test_negative_version_is_refused(emulator: Emulator) -> None:
    headers = emulator.auth(emulator.client_token())
    status, body, _ = await post(emulator, "/client/negotiate?hub=chat&negotiateVersion=-1", headers)
    assert status == 200
    assert json.loads(body) == {
        "error": "The client requested version '-1', but the server does not support this version."
    }


async def test_hub_is_case_insensitive(emulator: Emulator) -> None:
    headers = emulator.auth(emulator.client_token("chat"))
    status, _, _ = await post(emulator, "/client/negotiate?hub=CHAT&negotiateVersion=1", headers)
    assert status == 200


async def test_missing_hub_is_400_with_a_clear_text(emulator: Emulator) -> None:
    status, body, _ = await post(emulator, "/client/negotiate?negotiateVersion=1", emulator.auth("x"))
    assert status == 400
    assert body == b"The 'hub' query parameter is required."


@pytest.mark.parametrize("hub", ["9chat", "chat-room", "a" * 129, "chat%20x"])
async def test_invalid_hub_name_is_400(emulator: Emulator, hub: str) -> None:
    status, body, _ = await post(emulator, f"/client/negotiate?hub={hub}", emulator.auth("x"))
    assert status == 400
    assert body.startswith(b"Invalid hub name")


async def test_missing_token_is_401_with_a_bare_bearer_challenge(emulator: Emulator) -> None:
    status, body, headers = await post(emulator, "/client/negotiate?hub=chat&negotiateVersion=1")
    assert status == 401
    assert headers["WWW-Authenticate"] == "Bearer"  # type: ignore[index]
    assert body == b""


async def test_query_token_is_not_accepted_on_negotiate(emulator: Emulator) -> None:
    """Trap 13: negotiate needs the header."""
    token = emulator.client_token()
    status, _, _ = await post(emulator, f"/client/negotiate?hub=chat&access_token={token}")
    assert status == 401


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("wrong key", "The signature is invalid"),
        ("expired", "The token is expired"),
        ("not yet valid", "The token is not valid yet"),
        ("wrong hub", "The audience is invalid"),
        ("rest audience", "The audience is invalid"),
        ("garbage", "The token is malformed"),
    ],
)
async def test_bad_tokens_are_401_with_a_reason_and_never_echoed(
    emulator: Emulator, case: str, description: str
) -> None:
    tokens = {
        "wrong key": emulator.client_token(key="another-access-key-of-a-reasonable-length-0123"),
        "expired": emulator.client_token(now=time.time() - 7200),
        "not yet valid": emulator.client_token(now=time.time() + 600),
        "wrong hub": emulator.client_token("other"),
        "rest audience": emulator.client_token(aud="http://127.0.0.1/api/hubs/chat/:send"),
        "garbage": "not.a.jwt",
    }
    token = tokens[case]
    status, body, headers = await post(emulator, "/client/negotiate?hub=chat", emulator.auth(token))
    assert status == 401
    challenge = headers["WWW-Authenticate"]  # type: ignore[index]
    assert challenge == f'Bearer error="invalid_token", error_description="{description}"'
    assert token not in challenge and token.encode() not in body


async def test_audience_host_and_scheme_are_not_compared(emulator: Emulator) -> None:
    """Deliberate difference: a token for https://localhost (or a gateway host) works; path and hub must match."""
    for aud in ("https://localhost/client/?hub=chat", "http://apim.example/client?hub=Chat"):
        reply = await emulator.negotiate(token=emulator.client_token(aud=aud))
        assert reply["connectionId"]


async def test_get_on_negotiate_is_405(emulator: Emulator) -> None:
    async with emulator.session.get(emulator.base + "/client/negotiate?hub=chat") as response:
        assert response.status == 405


@pytest.mark.parametrize("path", ["/client/negotiate?hub=chat", "/client/?hub=chat&id=x"])
async def test_cors_preflight_echoes_origin_and_requested_headers(emulator: Emulator, path: str) -> None:
    headers = {
        "Origin": "http://page.example:5000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-signalr-user-agent",
    }
    async with emulator.session.options(emulator.base + path, headers=headers) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "http://page.example:5000"
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert response.headers["Access-Control-Allow-Headers"] == "authorization,x-signalr-user-agent"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert "DELETE" in response.headers["Access-Control-Allow-Methods"]


async def test_cors_headers_on_actual_responses_including_errors(emulator: Emulator) -> None:
    origin = {"Origin": "http://page.example"}
    status, _, headers = await post(emulator, "/client/negotiate?hub=chat", origin)
    assert status == 401
    assert headers["Access-Control-Allow-Origin"] == "http://page.example"  # type: ignore[index]
    headers_ok = {**origin, **emulator.auth(emulator.client_token())}
    status, _, headers = await post(emulator, "/client/negotiate?hub=chat&negotiateVersion=1", headers_ok)
    assert status == 200
    assert headers["Access-Control-Allow-Credentials"] == "true"  # type: ignore[index]


async def test_no_cors_headers_without_origin(emulator: Emulator) -> None:
    status, _, headers = await post(emulator, "/client/negotiate?hub=chat", emulator.auth(emulator.client_token()))
    assert status == 200
    assert "Access-Control-Allow-Origin" not in headers  # type: ignore[operator]


async def test_user_id_comes_from_asrs_uid_then_nameid(emulator: Emulator) -> None:
    service = emulator.running.service  # type: ignore[union-attr]
    first = await emulator.negotiate(token=emulator.client_token(claims={"asrs.s.uid": "alice", "nameid": "x"}))
    second = await emulator.negotiate(token=emulator.client_token(claims={"nameid": "bob"}))
    third = await emulator.negotiate()
    users = [service.lookup(r["connectionToken"]).user_id for r in (first, second, third)]  # type: ignore[union-attr]
    assert users == ["alice", "bob", None]
