"""The REST data plane, driven by the official ``azure-messaging-webpubsubservice`` 1.3 (sync and aio clients), as
the recipients see it on the wire (raw WebSocket clients)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.messaging.webpubsubservice import WebPubSubServiceClient

from tests.support.wps_emulator import WebPubSubEmulator

from .helpers import JSON, RELIABLE, RawClient, async_service, client_url, eventually, service


async def _client(emulator: WebPubSubEmulator, protocol: str | None = JSON, **token: object) -> RawClient:
    return await RawClient.connect(client_url(emulator, **token), protocol)


def _data(client: RawClient) -> list[object]:
    return [m.get("data") for m in client.messages() if m.get("type") == "message"]


async def test_send_to_all_reaches_every_dialect_encoded_for_each(emulator: WebPubSubEmulator) -> None:
    plain = await _client(emulator, None, user_id="p")
    pubsub = await _client(emulator, JSON, user_id="j")
    reliable = await _client(emulator, RELIABLE, user_id="r")
    try:
        async with async_service(emulator) as rest:
            await rest.send_to_all({"hello": "world"})
            await rest.send_to_all("plain text", content_type="text/plain")
            await rest.send_to_all(b"\x00\x01binary", content_type="application/octet-stream")
        await eventually(lambda: len(_data(pubsub)) == 3 and len(_data(reliable)) == 3)
        await eventually(lambda: len(plain.data_frames()) == 3)
        assert pubsub.messages()[1:] == [
            {"type": "message", "from": "server", "dataType": "json", "data": {"hello": "world"}},
            {"type": "message", "from": "server", "dataType": "text", "data": "plain text"},
            {"type": "message", "from": "server", "dataType": "binary", "data": "AAFiaW5hcnk="},
        ]
        assert [m["sequenceId"] for m in reliable.messages()[1:]] == [1, 2, 3]
        frames = plain.data_frames()
        assert [f.type for f in frames] == [aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY]
        assert [f.data for f in frames] == ['{"hello":"world"}', "plain text", b"\x00\x01binary"]
    finally:
        for client in (plain, pubsub, reliable):
            await client.close()


async def test_excluded_and_filter_select_recipients(emulator: WebPubSubEmulator) -> None:
    alice = await _client(emulator, user_id="alice")
    bob = await _client(emulator, user_id="bob")
    carol = await _client(emulator, user_id="carol", groups=["vip"])
    clients = (alice, bob, carol)
    try:
        rest = service(emulator)
        rest.send_to_all({"n": 1}, excluded=[alice.connection_id, bob.connection_id])
        rest.send_to_all({"n": 2}, filter="userId eq 'bob' or 'vip' in groups")
        rest.send_to_all({"n": 3}, filter=f"connectionId ne '{alice.connection_id}' and not ('vip' in groups)")
        rest.send_to_group("vip", {"n": 4}, filter="startswith(userId, 'car')")
        rest.send_to_user("alice", {"n": 5}, filter="length(userId) gt 10")
        rest.send_to_all({"n": 6})  # a marker: everything before it arrived
        await eventually(lambda: all({"n": 6} in _data(c) for c in clients))
        assert _data(alice) == [{"n": 6}]
        assert _data(bob) == [{"n": 2}, {"n": 3}, {"n": 6}]
        assert _data(carol) == [{"n": 1}, {"n": 2}, {"n": 4}, {"n": 6}]
        with pytest.raises(HttpResponseError) as error:
            rest.send_to_all({"n": 7}, filter="userId eq")
        assert error.value.status_code == 400
        assert "filter" in str(error.value.message).lower()
    finally:
        for client in clients:
            await client.close()


async def test_membership_exists_and_close_with_the_aio_client(emulator: WebPubSubEmulator) -> None:
    one = await _client(emulator, user_id="dave")
    two = await _client(emulator, user_id="dave")
    other = await _client(emulator, user_id="erin")
    try:
        async with async_service(emulator) as rest:
            assert await rest.user_exists("dave")
            assert not await rest.user_exists("nobody")
            assert await rest.connection_exists(one.connection_id)
            assert not await rest.group_exists("team")
            await rest.add_connection_to_group("team", one.connection_id)
            await rest.add_user_to_group("team", "erin")
            assert await rest.group_exists("team")
            members = [(m.connection_id, m.user_id) async for m in rest.list_connections(group="team")]
            assert sorted(members) == sorted([(one.connection_id, "dave"), (other.connection_id, "erin")])
            await rest.send_to_group("team", "to the team", content_type="text/plain")
            await rest.send_to_connection(two.connection_id, "to two", content_type="text/plain")
            await rest.send_to_user("dave", "to dave", content_type="text/plain")
            await eventually(lambda: len(_data(two)) == 2 and len(_data(one)) == 2 and len(_data(other)) == 1)
            assert _data(one) == ["to the team", "to dave"]
            assert _data(two) == ["to two", "to dave"]
            assert _data(other) == ["to the team"]
            await rest.remove_connection_from_group("team", one.connection_id)
            await rest.remove_user_from_group("team", "erin")
            assert not await rest.group_exists("team")
            await rest.add_connection_to_group("g1", one.connection_id)
            await rest.add_connection_to_group("g2", one.connection_id)
            await rest.remove_connection_from_all_groups(one.connection_id)
            assert not await rest.group_exists("g1") and not await rest.group_exists("g2")
            await rest.add_user_to_group("g3", "dave")
            await rest.remove_user_from_all_groups("dave")
            assert not await rest.group_exists("g3")
            with pytest.raises(ResourceNotFoundError):
                await rest.add_connection_to_group("team", "no-such-connection")

            await rest.close_user_connections("dave", excluded=[two.connection_id], reason="bye dave")
            closed = await one.wait_closed()
            assert closed.data == 1008
            assert one.messages()[-1] == {"type": "system", "event": "disconnected", "message": "bye dave"}
            assert await rest.connection_exists(two.connection_id)
            await rest.close_connection(two.connection_id, reason="bye two")
            await two.wait_closed()
            await rest.add_connection_to_group("last", other.connection_id)
            await rest.close_group_connections("last")
            await other.wait_closed()
            assert not await rest.user_exists("dave") and not await rest.user_exists("erin")
    finally:
        for client in (one, two, other):
            await client.close()


async def test_close_all_connections_with_exclusion(emulator: WebPubSubEmulator) -> None:
    stay = await _client(emulator, user_id="stay")
    leave = await _client(emulator, user_id="leave")
    try:
        service(emulator).close_all_connections(excluded=[stay.connection_id], reason="maintenance")
        await leave.wait_closed()
        assert leave.messages()[-1]["message"] == "maintenance"
        assert service(emulator).connection_exists(stay.connection_id)
    finally:
        await stay.close()
        await leave.close()


async def test_permissions_granted_checked_and_revoked(emulator: WebPubSubEmulator) -> None:
    client = await _client(emulator, user_id="frank")
    try:
        rest = service(emulator)
        cid = client.connection_id
        assert not rest.has_permission("joinLeaveGroup", cid, target_name="room")
        await client.send({"type": "joinGroup", "group": "room", "ackId": 1})
        assert (await client.ack(1))["error"]["name"] == "Forbidden"
        rest.grant_permission("joinLeaveGroup", cid, target_name="room")
        assert rest.has_permission("joinLeaveGroup", cid, target_name="room")
        assert not rest.has_permission("joinLeaveGroup", cid)
        await client.send({"type": "joinGroup", "group": "room", "ackId": 2})
        assert (await client.ack(2))["success"] is True
        await client.send({"type": "joinGroup", "group": "other", "ackId": 3})
        assert (await client.ack(3))["error"]["name"] == "Forbidden"
        rest.grant_permission("sendToGroup", cid)
        assert rest.has_permission("sendToGroup", cid, target_name="anything")
        rest.revoke_permission("sendToGroup", cid)
        assert not rest.has_permission("sendToGroup", cid, target_name="anything")
        rest.revoke_permission("joinLeaveGroup", cid, target_name="room")
        assert not rest.has_permission("joinLeaveGroup", cid, target_name="room")
        with pytest.raises(HttpResponseError) as error:
            rest.grant_permission("rule", cid)
        assert error.value.status_code == 400
        with pytest.raises(ResourceNotFoundError):
            rest.grant_permission("sendToGroup", "no-such-connection")
    finally:
        await client.close()


async def test_client_access_token_client_minted_and_service_generated(emulator: WebPubSubEmulator) -> None:
    rest = service(emulator)
    minted = rest.get_client_access_token(user_id="gina", roles=["webpubsub.joinLeaveGroup"], groups=["news"])
    assert minted["url"].startswith(f"ws://127.0.0.1:{emulator.port}/client/hubs/chat?access_token=")
    claims = jwt.decode(minted["token"], options={"verify_signature": False})
    assert claims["aud"] == f"http://127.0.0.1:{emulator.port}/client/hubs/chat"
    # The generated operation calls the service's :generateToken (the patched one mints locally).
    generated = super(type(rest), rest).get_client_access_token(user_id="hank", groups=["news"], minutes_to_expire=5)
    token = generated["token"]
    claims = jwt.decode(token, emulator.access_key, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["sub"] == "hank" and claims["webpubsub.group"] == ["news"]
    assert 280 <= claims["exp"] - time.time() <= 301
    for url in (minted["url"], f"{minted['baseUrl']}?access_token={token}"):
        client = await RawClient.connect(url, JSON)
        try:
            rest.send_to_group("news", "extra", content_type="text/plain")
            await eventually(lambda c=client: _data(c) == ["extra"])
        finally:
            await client.close()


def test_wrong_key_and_expired_tokens_are_401(emulator: WebPubSubEmulator) -> None:
    wrong = emulator.connection_string.replace(emulator.access_key, "x" * 43)
    with pytest.raises(ClientAuthenticationError) as error:
        WebPubSubServiceClient.from_connection_string(wrong, hub="chat").send_to_all({"x": 1})
    assert error.value.status_code == 401
    url = f"{emulator.endpoint}/api/hubs/chat/:send?api-version=2024-12-01"
    expired = jwt.encode({"aud": url, "exp": int(time.time()) - 5}, emulator.access_key, algorithm="HS256")
    for headers in ({"Authorization": f"Bearer {expired}"}, {}, {"Authorization": "Bearer not.a.jwt"}):
        response = _post(url, headers | {"Content-Type": "application/json"}, b"{}")
        assert response[0] == 401, response
        assert "Unauthorized" in response[1]
        assert expired not in response[1]
    other = jwt.encode(
        {"aud": f"{emulator.endpoint}/api/hubs/other/:send", "exp": int(time.time()) + 60},
        emulator.access_key,
        algorithm="HS256",
    )
    assert _post(url, {"Authorization": f"Bearer {other}", "Content-Type": "application/json"}, b"{}")[0] == 401


def _post(url: str, headers: dict[str, str], body: bytes, method: str = "POST") -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _signed(emulator: WebPubSubEmulator, url: str) -> dict[str, str]:
    token = jwt.encode({"aud": url, "exp": int(time.time()) + 60}, emulator.access_key, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def test_hostile_rest_requests_get_clear_errors(emulator: WebPubSubEmulator) -> None:
    base = f"{emulator.endpoint}/api/hubs/chat"
    cases: list[tuple[str, str, dict[str, str], bytes, int, str]] = [
        ("POST", "/:send?api-version=2024-12-01", {"Content-Type": "application/json"}, b"{bad", 400, "JSON"),
        ("POST", "/:send?api-version=2024-12-01", {"Content-Type": "application/json"}, b"[" * 5000, 400, "JSON"),
        ("POST", "/:send?api-version=2024-12-01", {"Content-Type": "application/xml"}, b"<a/>", 400, "Content-Type"),
        ("POST", "/:send?api-version=2024-12-01", {"Content-Type": "text/plain"}, b"\xff\xfe", 400, "UTF-8"),
        ("POST", "/:send", {"Content-Type": "application/json"}, b"{}", 400, "api-version"),
        (
            "POST",
            "/:send?api-version=1&filter=" + "x" * 5000,
            {"Content-Type": "application/json"},
            b"{}",
            400,
            "filter",
        ),
        ("POST", "/:send?api-version=1", {"Content-Type": "text/plain"}, b"x" * (1024 * 1024 + 1), 413, "1 MB"),
        ("POST", "/:nope?api-version=1", {}, b"", 404, "No REST operation"),
        ("PUT", "/:send?api-version=1", {}, b"", 405, "not allowed"),
        ("POST", "/:generateToken?api-version=1&minutesToExpire=-1", {}, b"", 400, "minutesToExpire"),
        ("GET", "/groups/g/connections?api-version=1&top=x", {}, b"", 400, "integers"),
    ]
    for method, path, headers, body, status, needle in cases:
        url = base + path
        got = _post(url, headers | _signed(emulator, url), body, method)
        assert got[0] == status and needle in got[1], (path[:60], got)
    bad_hub = f"{emulator.endpoint}/api/hubs/1bad/:send?api-version=1"
    got = _post(bad_hub, {"Content-Type": "application/json"} | _signed(emulator, bad_hub), b"{}")
    assert got[0] == 400 and "hub" in got[1]
    # The emulator still serves after all of that.
    service(emulator).send_to_all({"still": "serving"})


async def test_a_broadcast_encodes_once_per_dialect_and_all_get_it(emulator: WebPubSubEmulator) -> None:
    clients = [await _client(emulator, RELIABLE if i % 2 else JSON, user_id=f"u{i}") for i in range(40)]
    try:
        async with async_service(emulator) as rest:
            await asyncio.gather(*(rest.send_to_all({"i": i}) for i in range(20)))
        await eventually(lambda: all(len(_data(c)) == 20 for c in clients), what="20 messages each")
        for client in clients:
            assert sorted(d["i"] for d in _data(client)) == list(range(20))  # type: ignore[index]
    finally:
        for client in clients:
            await client.close()
