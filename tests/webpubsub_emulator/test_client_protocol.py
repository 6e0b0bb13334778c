"""The client endpoint on the wire: auth before the upgrade, the JSON subprotocols' requests and acks, reliable
resume semantics, and hostile client input (malformed frames, unknown types, oversized and binary frames): a clear
error or a close with a reason, and the other clients unaffected."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt
import pytest

from tests.support.wps_emulator import WebPubSubEmulator

from .helpers import JSON, RELIABLE, RawClient, async_service, client_url, eventually, service

ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]


async def _upgrade_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, protocols=(JSON,), headers=headers):
                return 101, ""
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, exc.message


def _token(emulator: WebPubSubEmulator, aud: str, exp_delta: int = 60, key: str | None = None) -> str:
    return jwt.encode(
        {"aud": aud, "exp": int(time.time()) + exp_delta, "sub": "t"}, key or emulator.access_key, algorithm="HS256"
    )


async def test_tokens_are_checked_before_the_upgrade(emulator: WebPubSubEmulator) -> None:
    base = f"{emulator.ws_endpoint}/client/hubs/chat"
    aud = f"{emulator.endpoint}/client/hubs/chat"
    cases = {
        "no token": base,
        "expired": f"{base}?access_token={_token(emulator, aud, -10)}",
        "wrong key": f"{base}?access_token={_token(emulator, aud, key='k' * 43)}",
        "other hub": f"{base}?access_token={_token(emulator, aud.replace('chat', 'other'))}",
        "garbage": f"{base}?access_token=abc.def.ghi",
        "too long": f"{base}?access_token={'a' * 5000}",
    }
    for name, url in cases.items():
        status, _ = await _upgrade_status(url)
        assert status == 401, name
    good = _token(emulator, aud)
    assert (await _upgrade_status(base, {"Authorization": f"Bearer {good}"}))[0] == 101
    assert (await _upgrade_status(f"{base}?access_token={good}"))[0] == 101
    # The /client/?hub= endpoint and its audience form.
    other_form = _token(emulator, f"{emulator.endpoint}/client/?hub=chat")
    assert (await _upgrade_status(f"{emulator.ws_endpoint}/client/?hub=chat&access_token={other_form}"))[0] == 101
    assert (await _upgrade_status(f"{emulator.ws_endpoint}/client/?access_token={good}"))[0] == 400
    assert (await _upgrade_status(f"{emulator.ws_endpoint}/client/hubs/9bad?access_token={good}"))[0] == 400
    async with aiohttp.ClientSession() as session, session.get(f"{base}?access_token={good}") as response:
        assert response.status == 400 and "WebSocket" in await response.text()


async def test_requests_acks_and_errors(emulator: WebPubSubEmulator) -> None:
    alice = await RawClient.connect(client_url(emulator, user_id="alice", roles=ROLES), JSON)
    bob = await RawClient.connect(client_url(emulator, user_id="bob", roles=ROLES), JSON)
    try:
        assert alice.connected == {
            "type": "system",
            "event": "connected",
            "userId": "alice",
            "connectionId": alice.connection_id,
        }
        for client in (alice, bob):
            await client.send({"type": "joinGroup", "group": "g", "ackId": 1})
            await client.ack(1)
        await alice.send({"type": "sendToGroup", "group": "g", "dataType": "json", "data": [1], "noEcho": True})
        await alice.send({"type": "sendToGroup", "group": "g", "dataType": "text", "data": "t", "ackId": 2})
        assert (await alice.ack(2))["success"] is True
        await alice.send({"type": "sendToGroup", "group": "g", "dataType": "text", "data": "again", "ackId": 2})
        assert (await alice.wait_for(lambda m: m.get("error", {}).get("name") == "Duplicate"))["ackId"] == 2
        await alice.send({"type": "sendToGroup", "group": "x" * 1025, "dataType": "text", "data": "t", "ackId": 3})
        assert (await alice.ack(3))["error"]["name"] == "BadRequest"
        await alice.send({"type": "ping"})
        await alice.wait_for(lambda m: m == {"type": "pong"})
        await eventually(lambda: len([m for m in bob.messages() if m.get("type") == "message"]) == 2)
        got = [m for m in bob.messages() if m.get("type") == "message"]
        assert got == [
            {"type": "message", "from": "group", "group": "g", "dataType": "json", "data": [1], "fromUserId": "alice"},
            {"type": "message", "from": "group", "group": "g", "dataType": "text", "data": "t", "fromUserId": "alice"},
        ]
        assert [m.get("data") for m in alice.messages() if m.get("type") == "message"] == ["t"]  # noEcho
        # UTF-8 JSON in a binary frame is a request too (reference-json-requests: "UTF8 encoded binaries").
        await alice.ws.send_bytes(json.dumps({"type": "leaveGroup", "group": "g", "ackId": 4}).encode())
        assert (await alice.ack(4))["success"] is True
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ("not json", "Invalid message"),
        ('{"type":"dance"}', "Unknown request type"),
        ('{"type":"joinGroup"}', "group"),
        ('{"type":"sendToGroup","group":"g","dataType":"binary","data":"***"}', "base64"),
        ('{"type":"event","event":"e","dataType":"yaml","data":1}', "dataType"),
        ("[" * 100 + "]" * 100, "nested"),
        (b"\xff\xfe\x00", "UTF-8"),
        ('{"type":"joinGroup","group":"g","ackId":-1}', "ackId"),
    ],
)
async def test_malformed_frames_close_with_a_reason_others_unaffected(
    emulator: WebPubSubEmulator, frame: str | bytes, needle: str
) -> None:
    victim = await RawClient.connect(client_url(emulator, user_id="victim"), RELIABLE)
    bystander = await RawClient.connect(client_url(emulator, user_id="bystander"), JSON)
    try:
        if isinstance(frame, bytes):
            await victim.ws.send_bytes(frame)
        else:
            await victim.send_frame_text(frame) if hasattr(victim, "send_frame_text") else await victim.ws.send_str(
                frame
            )
        closed = await victim.wait_closed()
        assert closed.data == 1008
        last = victim.messages()[-1]
        assert last["type"] == "system" and last["event"] == "disconnected" and needle in last["message"], last
        service(emulator).send_to_user("bystander", "still here", content_type="text/plain")
        await bystander.wait_for(lambda m: m.get("data") == "still here")
        assert not service(emulator).user_exists("victim")
    finally:
        await victim.close()
        await bystander.close()


async def test_oversized_frame_closes_with_1009(emulator: WebPubSubEmulator) -> None:
    victim = await RawClient.connect(client_url(emulator, user_id="big"), JSON)
    plain = await RawClient.connect(client_url(emulator, user_id="bigplain"), None)
    try:
        big = json.dumps({"type": "event", "event": "e", "dataType": "text", "data": "x" * (1024 * 1024)})
        await victim.ws.send_str(big)
        closed = await victim.wait_closed()
        assert closed.data == 1009
        assert "maximum message size" in victim.messages()[-1]["message"]
        await plain.ws.send_bytes(b"x" * (1024 * 1024 + 1))
        assert (await plain.wait_closed()).data == 1009
        # Exactly the limit is fine for a frame (it fails later only because no handler listens).
        ok = await RawClient.connect(client_url(emulator, user_id="fits"), JSON)
        frame = json.dumps({"type": "ping", "pad": "x" * (1024 * 1024 - 40)})
        await ok.ws.send_str(frame + " " * (1024 * 1024 - len(frame)))
        await ok.wait_for(lambda m: m == {"type": "pong"})
        await ok.close()
    finally:
        await victim.close()
        await plain.close()


async def test_reliable_resume_resends_unacknowledged_in_order(emulator: WebPubSubEmulator) -> None:
    url = client_url(emulator, user_id="resume")
    first = await RawClient.connect(url, RELIABLE)
    cid, token = first.connection_id, first.connected["reconnectionToken"]
    rest = service(emulator)
    for i in range(1, 4):
        rest.send_to_connection(cid, {"i": i})
    await eventually(lambda: len(first.messages()) == 4)
    await first.send({"type": "sequenceAck", "sequenceId": 2})
    await first.send({"type": "ping"})
    await first.wait_for(lambda m: m == {"type": "pong"})  # the ack was processed before the drop
    await first.drop()
    await eventually(lambda: rest.connection_exists(cid))
    rest.send_to_connection(cid, {"i": 4})
    base = url.split("?")[0]
    wrong = await RawClient.connect(
        f"{base}?awps_connection_id={cid}&awps_reconnection_token=nope", RELIABLE, wait_connected=False
    )
    assert (await wrong.wait_closed()).data == 1008
    assert "no longer exists" in wrong.messages()[0]["message"]
    await wrong.close()
    second = await RawClient.connect(f"{base}?awps_connection_id={cid}&awps_reconnection_token={token}", RELIABLE)
    try:
        assert second.connection_id == cid
        await eventually(lambda: len(second.messages()) == 3)
        assert [(m["sequenceId"], m["data"]) for m in second.messages()[1:]] == [(3, {"i": 3}), (4, {"i": 4})]
        rest.send_to_connection(cid, {"i": 5})
        await eventually(lambda: second.messages()[-1].get("sequenceId") == 5)
    finally:
        await second.close()
    # A normal close ends the session: resuming it is refused.
    await eventually(lambda: not rest.connection_exists(cid))
    gone = await RawClient.connect(
        f"{base}?awps_connection_id={cid}&awps_reconnection_token={token}", RELIABLE, wait_connected=False
    )
    assert (await gone.wait_closed()).data == 1008
    await gone.close()


async def test_a_dropped_reliable_session_ends_after_its_window(emulator: WebPubSubEmulator) -> None:
    client = await RawClient.connect(client_url(emulator, user_id="late"), RELIABLE)
    cid = client.connection_id
    await client.drop()
    rest = service(emulator)
    assert rest.connection_exists(cid)
    await eventually(lambda: not rest.connection_exists(cid), timeout=10, what="the session's end (5 s window)")


async def test_plain_client_without_event_handler_is_dropped_with_a_reason(emulator: WebPubSubEmulator) -> None:
    client = await RawClient.connect(client_url(emulator, user_id="simple"), None)
    try:
        await client.ws.send_str("hello?")
        closed = await client.wait_closed()
        assert closed.data == 1008 and "No event handler" in (closed.extra or "")
    finally:
        await client.close()


async def test_a_client_that_stops_reading_is_dropped_others_unaffected(emulator: WebPubSubEmulator) -> None:
    import base64
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(client_url(emulator, user_id="sleepy"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", emulator.port))
    key = base64.b64encode(b"0123456789abcdef").decode()
    sock.sendall(
        f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {JSON}\r\n\r\n".encode()
    )
    assert b"101" in sock.recv(1024).split(b"\r\n")[0]
    awake = await RawClient.connect(client_url(emulator, user_id="awake"), JSON)
    rest = service(emulator)
    try:
        assert rest.user_exists("sleepy")
        chunk = "z" * (512 * 1024)
        for _ in range(40):  # 20 MB for a client that reads nothing
            rest.send_to_all(chunk, content_type="text/plain")
            if not rest.user_exists("sleepy"):
                break
        await eventually(lambda: not rest.user_exists("sleepy"), what="the sleepy client dropped")
        assert "send buffer exceeded" in emulator.stderr()
        rest.send_to_user("awake", "fine", content_type="text/plain")
        await awake.wait_for(lambda m: m.get("data") == "fine", timeout=20)
    finally:
        sock.close()
        await awake.close()


async def test_lone_surrogates_get_a_clear_answer(emulator: WebPubSubEmulator) -> None:
    roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]
    sender = await RawClient.connect(client_url(emulator, user_id="surrogate", roles=roles), RELIABLE)
    plain = await RawClient.connect(client_url(emulator, user_id="plain-reader"), None)
    try:
        service(emulator).add_user_to_group("s", "plain-reader")
        await sender.ws.send_str('{"type":"event","event":"e","dataType":"text","data":"\\udcff","ackId":1}')
        ack = await sender.ack(1)
        assert ack["success"] is False and ack["error"]["name"] in ("BadRequest", "InvocationFailed")
        await sender.ws.send_str('{"type":"sendToGroup","group":"s","dataType":"text","data":"a\\udcffb","ackId":2}')
        assert (await sender.ack(2))["success"] is True
        await eventually(lambda: bool(plain.data_frames()))
        frame = plain.data_frames()[0]
        assert frame.type is aiohttp.WSMsgType.TEXT and frame.data == "a?b"
    finally:
        await sender.close()
        await plain.close()


async def test_a_reliable_client_that_never_acknowledges_is_ended(emulator: WebPubSubEmulator) -> None:
    client = await RawClient.connect(client_url(emulator, user_id="no-acks"), RELIABLE)
    acking = await RawClient.connect(client_url(emulator, user_id="acks"), RELIABLE)
    try:
        chunk = "q" * (512 * 1024)
        async with async_service(emulator) as rest:
            for _ in range(40):  # 20 MB; the service keeps at most 16 MiB unacknowledged per session
                await rest.send_to_all(chunk, content_type="text/plain")
                await eventually(lambda: acking.messages()[-1].get("sequenceId") is not None)
                await acking.send({"type": "sequenceAck", "sequenceId": acking.messages()[-1]["sequenceId"]})
                if not await rest.user_exists("no-acks"):
                    break
            closed = await client.wait_closed(timeout=10)
            assert closed.data == 1008
            assert "not acknowledged" in client.messages()[-1]["message"]
            assert len(client.messages()) < 40
            assert await rest.user_exists("acks")
    finally:
        await client.close()
        await acking.close()
