"""The data-plane REST API, v1 and 2022-06-01: operations, status codes, auth and validation (protocol.md §6.1)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from signalr.messages import Invocation

from .conftest import Emulator, EmulatorFactory, assert_silent, ws_next_non_ping

V2 = "?api-version=2022-06-01"
MESSAGE = {"target": "broadcastMessage", "arguments": ["server", "hello"]}
WIRE = [{"type": 1, "target": "broadcastMessage", "arguments": ["server", "hello"]}]


def error_body(body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body)
    assert set(parsed) == {"code", "message", "target"}, parsed
    return parsed


# --- sends -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/hubs/chat/:send" + V2, "/api/v1/hubs/chat"])
async def test_broadcast_reaches_every_connection_and_answers_202(emulator: Emulator, path: str) -> None:
    a, _ = await emulator.open_ws()
    b, _ = await emulator.open_ws()
    status, body, _ = await emulator.rest("POST", path, MESSAGE)
    assert (status, body) == (202, b"")
    assert await ws_next_non_ping(a) == WIRE
    assert await ws_next_non_ping(b) == WIRE


async def test_broadcast_with_repeated_excluded(emulator: Emulator) -> None:
    a, a_id = await emulator.open_ws()
    b, b_id = await emulator.open_ws()
    c, _ = await emulator.open_ws()
    status, _, _ = await emulator.rest("POST", f"/api/hubs/chat/:send{V2}&excluded={a_id}&excluded={b_id}", MESSAGE)
    assert status == 202
    assert await ws_next_non_ping(c) == WIRE
    await assert_silent(a)
    await assert_silent(b)


async def test_broadcast_to_an_empty_or_unknown_hub_is_still_202(emulator: Emulator) -> None:
    status, _, _ = await emulator.rest("POST", "/api/hubs/nobody/:send" + V2, MESSAGE)
    assert status == 202


async def test_arguments_default_to_empty_and_property_names_ignore_case(emulator: Emulator) -> None:
    ws, _ = await emulator.open_ws()
    status, _, _ = await emulator.rest("POST", "/api/v1/hubs/chat", {"Target": "refresh"})
    assert status == 202
    assert await ws_next_non_ping(ws) == [{"type": 1, "target": "refresh", "arguments": []}]


@pytest.mark.parametrize("path", ["/api/hubs/chat/users/alice/:send" + V2, "/api/v1/hubs/chat/users/alice"])
async def test_send_to_user_reaches_all_their_connections_only(emulator: Emulator, path: str) -> None:
    alice_token = emulator.client_token(claims={"asrs.s.uid": "alice"})
    alice1, _ = await emulator.open_ws(token=alice_token)
    alice2, _ = await emulator.open_ws(token=alice_token)
    bob, _ = await emulator.open_ws(token=emulator.client_token(claims={"nameid": "bob"}))
    status, _, _ = await emulator.rest("POST", path, MESSAGE)
    assert status == 202
    assert await ws_next_non_ping(alice1) == WIRE
    assert await ws_next_non_ping(alice2) == WIRE
    await assert_silent(bob)


@pytest.mark.parametrize("version", ["v2", "v1"])
async def test_send_to_connection(emulator: Emulator, version: str) -> None:
    a, a_id = await emulator.open_ws()
    b, _ = await emulator.open_ws()
    path = (
        f"/api/hubs/chat/connections/{a_id}/:send{V2}" if version == "v2" else f"/api/v1/hubs/chat/connections/{a_id}"
    )
    status, _, _ = await emulator.rest("POST", path, MESSAGE)
    assert status == 202
    assert await ws_next_non_ping(a) == WIRE
    await assert_silent(b)


async def test_send_to_unknown_connection_is_202(emulator: Emulator) -> None:
    status, _, _ = await emulator.rest("POST", "/api/hubs/chat/connections/nobody/:send" + V2, MESSAGE)
    assert status == 202


# --- groups and users --------------------------------------------------------------------------------------------


async def test_group_membership_of_connections_v2(emulator: Emulator) -> None:
    a, a_id = await emulator.open_ws()
    b, b_id = await emulator.open_ws()
    c, _ = await emulator.open_ws()
    for cid in (a_id, b_id):
        status, _, _ = await emulator.rest("PUT", f"/api/hubs/chat/groups/room/connections/{cid}{V2}")
        assert status == 200
    assert (await emulator.rest("HEAD", "/api/hubs/chat/groups/room" + V2))[0] == 200
    status, _, _ = await emulator.rest("POST", f"/api/hubs/chat/groups/room/:send{V2}&excluded={b_id}", MESSAGE)
    assert status == 202
    assert await ws_next_non_ping(a) == WIRE
    await assert_silent(b)
    await assert_silent(c)
    status, _, _ = await emulator.rest("DELETE", f"/api/hubs/chat/groups/room/connections/{a_id}{V2}")
    assert status == 200
    status, _, _ = await emulator.rest("DELETE", f"/api/hubs/chat/connections/{b_id}/groups{V2}")
    assert status == 200
    assert (await emulator.rest("HEAD", "/api/hubs/chat/groups/room" + V2))[0] == 404
    await emulator.rest("POST", "/api/hubs/chat/groups/room/:send" + V2, MESSAGE)
    await assert_silent(a)


async def test_group_membership_of_connections_v1(emulator: Emulator) -> None:
    a, a_id = await emulator.open_ws()
    status, _, _ = await emulator.rest("PUT", f"/api/v1/hubs/chat/groups/room/connections/{a_id}")
    assert status == 200
    assert (await emulator.rest("GET", "/api/v1/hubs/chat/groups/room"))[0] == 200
    assert (await emulator.rest("POST", "/api/v1/hubs/chat/groups/room", MESSAGE))[0] == 202
    assert await ws_next_non_ping(a) == WIRE
    assert (await emulator.rest("DELETE", f"/api/v1/hubs/chat/groups/room/connections/{a_id}"))[0] == 200
    assert (await emulator.rest("GET", "/api/v1/hubs/chat/groups/room"))[0] == 404


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_group_change_for_unknown_connection_is_404_json(emulator: Emulator, method: str) -> None:
    status, body, _ = await emulator.rest(method, "/api/hubs/chat/groups/room/connections/ghost" + V2)
    assert status == 404
    assert error_body(body) == {
        "code": "NotFound",
        "message": "Connection 'ghost' does not exist.",
        "target": "connectionId",
    }


async def test_user_group_membership_v2(emulator: Emulator) -> None:
    alice, _ = await emulator.open_ws(token=emulator.client_token(claims={"asrs.s.uid": "alice"}))
    bob, _ = await emulator.open_ws(token=emulator.client_token(claims={"asrs.s.uid": "bob"}))
    assert (await emulator.rest("HEAD", "/api/hubs/chat/users/alice/groups/room" + V2))[0] == 404
    assert (await emulator.rest("PUT", "/api/hubs/chat/users/alice/groups/room" + V2))[0] == 200
    assert (await emulator.rest("HEAD", "/api/hubs/chat/users/alice/groups/room" + V2))[0] == 200
    assert (await emulator.rest("POST", "/api/hubs/chat/groups/room/:send" + V2, MESSAGE))[0] == 202
    assert await ws_next_non_ping(alice) == WIRE
    await assert_silent(bob)
    assert (await emulator.rest("DELETE", "/api/hubs/chat/users/alice/groups/room" + V2))[0] == 200
    assert (await emulator.rest("HEAD", "/api/hubs/chat/users/alice/groups/room" + V2))[0] == 404
    assert (await emulator.rest("PUT", "/api/hubs/chat/users/alice/groups/a" + V2))[0] == 200
    assert (await emulator.rest("PUT", "/api/hubs/chat/users/alice/groups/b" + V2))[0] == 200
    assert (await emulator.rest("DELETE", "/api/hubs/chat/users/alice/groups" + V2))[0] == 200
    for group in ("a", "b"):
        assert (await emulator.rest("HEAD", f"/api/hubs/chat/users/alice/groups/{group}" + V2))[0] == 404


async def test_user_group_membership_v1_and_user_exists(emulator: Emulator) -> None:
    assert (await emulator.rest("GET", "/api/v1/hubs/chat/users/carol"))[0] == 404
    carol, _ = await emulator.open_ws(token=emulator.client_token(claims={"asrs.s.uid": "carol"}))
    assert (await emulator.rest("GET", "/api/v1/hubs/chat/users/carol"))[0] == 200
    assert (await emulator.rest("HEAD", "/api/hubs/chat/users/carol" + V2))[0] == 200
    assert (await emulator.rest("PUT", "/api/v1/hubs/chat/groups/g/users/carol"))[0] == 200
    assert (await emulator.rest("GET", "/api/v1/hubs/chat/groups/g/users/carol"))[0] == 200
    assert (await emulator.rest("POST", "/api/v1/hubs/chat/groups/g", MESSAGE))[0] == 202
    assert await ws_next_non_ping(carol) == WIRE
    assert (await emulator.rest("DELETE", "/api/v1/hubs/chat/groups/g/users/carol"))[0] == 200
    assert (await emulator.rest("GET", "/api/v1/hubs/chat/groups/g/users/carol"))[0] == 404


# --- close and exists --------------------------------------------------------------------------------------------


async def test_connection_exists_and_close_with_reason(emulator: Emulator) -> None:
    ws, cid = await emulator.open_ws()
    assert (await emulator.rest("HEAD", f"/api/hubs/chat/connections/{cid}" + V2))[0] == 200
    assert (await emulator.rest("GET", f"/api/v1/hubs/chat/connections/{cid}"))[0] == 200
    status, _, _ = await emulator.rest("DELETE", f"/api/hubs/chat/connections/{cid}{V2}&reason=maintenance")
    assert status == 200
    assert await ws_next_non_ping(ws) == [{"type": 7, "error": "maintenance"}]
    assert (await emulator.rest("HEAD", f"/api/hubs/chat/connections/{cid}" + V2))[0] == 404
    # Closing what is already gone is not an error.
    assert (await emulator.rest("DELETE", f"/api/v1/hubs/chat/connections/{cid}"))[0] == 200


async def test_close_connections_of_hub_group_and_user(emulator: Emulator) -> None:
    alice, alice_id = await emulator.open_ws(token=emulator.client_token(claims={"asrs.s.uid": "alice"}))
    grouped, grouped_id = await emulator.open_ws()
    spared, spared_id = await emulator.open_ws()
    kept, kept_id = await emulator.open_ws()
    await emulator.rest("PUT", f"/api/hubs/chat/groups/g/connections/{grouped_id}{V2}")
    status, body, _ = await emulator.rest("POST", f"/api/hubs/chat/users/alice/:closeConnections{V2}&reason=u")
    assert (status, body) == (204, b"")
    assert await ws_next_non_ping(alice) == [{"type": 7, "error": "u"}]
    assert (await emulator.rest("POST", f"/api/hubs/chat/groups/g/:closeConnections{V2}&reason=g"))[0] == 204
    assert await ws_next_non_ping(grouped) == [{"type": 7, "error": "g"}]
    status, _, _ = await emulator.rest("POST", f"/api/hubs/chat/:closeConnections{V2}&excluded={kept_id}")
    assert status == 204
    assert await ws_next_non_ping(spared) == [{"type": 7}]
    for cid, expected in ((alice_id, 404), (grouped_id, 404), (spared_id, 404), (kept_id, 200)):
        assert (await emulator.rest("HEAD", f"/api/hubs/chat/connections/{cid}" + V2))[0] == expected
    await assert_silent(kept)


async def test_application_prefixes_the_hub(emulator: Emulator) -> None:
    ws, _ = await emulator.open_ws(hub="app_chat", token=emulator.client_token("app_chat"))
    status, _, _ = await emulator.rest("POST", f"/api/hubs/chat/:send{V2}&application=app", MESSAGE)
    assert status == 202
    assert await ws_next_non_ping(ws) == WIRE


@pytest.mark.parametrize(("method", "path"), [("HEAD", "/api/health"), ("GET", "/api/v1/health")])
async def test_health_needs_no_token(emulator: Emulator, method: str, path: str) -> None:
    async with emulator.session.request(method, emulator.base + path) as response:
        assert response.status == 200


# --- auth ------------------------------------------------------------------------------------------------------


async def test_missing_token_is_401_json_with_bearer_challenge(emulator: Emulator) -> None:
    async with emulator.session.post(emulator.base + "/api/hubs/chat/:send" + V2, json=MESSAGE) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert error_body(await response.read())["code"] == "Unauthorized"


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("wrong key", "The signature is invalid"),
        ("expired", "The token is expired"),
        ("wrong path", "The audience is invalid"),
        ("client audience", "The audience is invalid"),
        ("other host", "The audience is invalid"),
    ],
)
async def test_bad_rest_tokens_are_401(emulator: Emulator, case: str, description: str) -> None:
    path = "/api/hubs/chat/:send"
    from signalr.tokens import mint_token

    tokens = {
        "wrong key": emulator.rest_token(path, key="some-other-access-key-0123456789-abcdefghij"),
        "expired": emulator.rest_token(path, now=time.time() - 7200),
        "wrong path": emulator.rest_token("/api/hubs/other/:send"),
        "client audience": emulator.client_token(),
        "other host": mint_token(emulator.access_key, "http://elsewhere.example/api/hubs/chat/:send"),
    }
    status, body, headers = await emulator.rest("POST", path + V2, MESSAGE, token=tokens[case])
    assert status == 401
    assert headers["WWW-Authenticate"] == f'Bearer error="invalid_token", error_description="{description}"'
    parsed = error_body(body)
    assert tokens[case] not in parsed["message"]


async def test_audience_with_query_and_with_port_is_accepted(emulator: Emulator) -> None:
    """Trap 17: the Management SDK signs the URL with ``?api-version=…``; the docs sign it without."""
    from signalr.tokens import mint_token

    path = "/api/hubs/chat/:send"
    port = emulator.base.rsplit(":", 1)[1]
    for aud in (f"http://127.0.0.1{path}{V2}", f"http://127.0.0.1:{port}{path}", f"http://127.0.0.1{path}/"):
        token = mint_token(emulator.access_key, aud)
        status, _, _ = await emulator.rest("POST", path + V2, MESSAGE, token=token)
        assert status == 202, aud


async def test_rest_token_in_query_is_not_accepted(emulator: Emulator) -> None:
    token = emulator.rest_token("/api/hubs/chat/:send")
    url = f"{emulator.base}/api/hubs/chat/:send{V2}&access_token={token}"
    async with emulator.session.post(url, json=MESSAGE) as response:
        assert response.status == 401


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message", "target"),
    [
        (b"", "The request body is required.", "body"),
        (b"{nope", "The request body is not valid JSON.", "body"),
        (b"\xff\xfe", "The request body is not valid JSON.", "body"),
        (b"[1]", "The request body must be a JSON object.", "body"),
        (b'{"arguments":[]}', "The 'target' property is required and must be a non-empty string.", "target"),
        (b'{"target":5}', "The 'target' property is required and must be a non-empty string.", "target"),
        (b'{"target":"x","arguments":"a"}', "The 'arguments' property must be an array.", "arguments"),
    ],
)
async def test_bad_bodies_are_400_json(emulator: Emulator, raw: bytes, message: str, target: str) -> None:
    status, body, _ = await emulator.rest("POST", "/api/hubs/chat/:send" + V2, raw=raw)
    assert status == 400
    assert error_body(body) == {"code": "BadRequest", "message": message, "target": target}


@pytest.mark.parametrize("hub", ["1chat", "chat-room", "a" * 129])
async def test_invalid_hub_name_is_400_json(emulator: Emulator, hub: str) -> None:
    status, body, _ = await emulator.rest("POST", f"/api/hubs/{hub}/:send" + V2, MESSAGE)
    assert status == 400
    assert error_body(body)["target"] == "hub"


async def test_missing_api_version_is_400_json(emulator: Emulator) -> None:
    status, body, _ = await emulator.rest("POST", "/api/hubs/chat/:send", MESSAGE)
    assert status == 400
    assert error_body(body)["target"] == "api-version"


async def test_body_over_one_megabyte_is_413_json(emulator: Emulator) -> None:
    big = {"target": "x", "arguments": ["y" * (1024 * 1024)]}
    status, body, _ = await emulator.rest("POST", "/api/hubs/chat/:send" + V2, big)
    assert status == 413
    assert error_body(body)["code"] == "PayloadTooLarge"


async def test_smaller_rest_body_limit_is_configurable(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(max_rest_body=1000)
    status, _, _ = await emulator.rest("POST", "/api/hubs/chat/:send" + V2, {"target": "x", "arguments": ["y" * 2000]})
    assert status == 413


async def test_unknown_rest_path_is_404_json_and_wrong_method_405_json(emulator: Emulator) -> None:
    status, body, _ = await emulator.rest("POST", "/api/hubs/chat/nothing/here" + V2, MESSAGE)
    assert status == 404
    assert error_body(body)["code"] == "NotFound"
    status, body, _ = await emulator.rest("PATCH", "/api/hubs/chat/:send" + V2, MESSAGE)
    assert status == 405
    assert error_body(body)["code"] == "MethodNotAllowed"


async def test_broadcast_is_encoded_once_and_shared_by_all_recipients(emulator: Emulator) -> None:
    """The same bytes object is handed to every recipient: serialisation does not scale with the audience."""
    connections = [await emulator.open_ws() for _ in range(3)]
    hub = emulator.running.service.find_hub("chat")  # type: ignore[union-attr]
    assert hub is not None
    queued: list[bytes] = []
    for connection in hub.connections.values():
        send = connection.send

        def spy(record: bytes, send: Callable[[bytes], bool] = send) -> bool:
            queued.append(record)
            return send(record)

        connection.send = spy  # type: ignore[method-assign]
    assert hub.broadcast(Invocation("t", ())) == 3
    assert len(queued) == 3
    assert queued[0] == b'{"type":1,"target":"t","arguments":[]}\x1e'
    assert all(item is queued[0] for item in queued)
    for ws, _ in connections:
        assert await ws_next_non_ping(ws) == [{"type": 1, "target": "t", "arguments": []}]
