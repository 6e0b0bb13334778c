"""Findings of a security review, each pinned by a test: a connection token used with another identity's access token
(403), secrets kept out of what goes upstream, hostile records that used to end in a 500 or a close without reason,
and messages over the size limit (WebSocket close 1009)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any

import aiohttp
import pytest

from signalr.service_protocol import ConnectionData, Ping

from .conftest import HANDSHAKE, Emulator, EmulatorFactory, UpstreamReceiver, records, ws_next_non_ping
from .fake_app_server import FakeAppServer

ALICE = {"nameid": "alice"}
MALLORY = {"nameid": "mallory"}


async def status_of(emulator: Emulator, method: str, url: str, headers: dict[str, str], data: bytes = b"") -> int:
    async with emulator.session.request(method, url, headers=headers, data=data or None) as response:
        await response.read()
        return response.status


def ws_upgrade_headers(token: str) -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Authorization": f"Bearer {token}",
    }


async def open_lp_as(emulator: Emulator, token: str) -> tuple[str, str]:
    """A handshaken LongPolling connection negotiated and used with ``token``: (connect URL, connectionId)."""
    negotiated = await emulator.negotiate(token=token)
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = emulator.auth(token)
    assert await status_of(emulator, "GET", url, headers) == 200
    assert await status_of(emulator, "POST", url, headers, HANDSHAKE) == 200
    async with emulator.session.get(url, headers=headers) as response:
        assert records(await response.read()) == [{}]
    return url, negotiated["connectionId"]


# --- 1. a connection token only works for the identity that negotiated it ----------------------------------------


async def test_another_users_token_cannot_send_read_or_stop_a_long_polling_connection(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = emulator_with_upstream
    victim_token = emulator.client_token(claims=ALICE)
    url, connection_id = await open_lp_as(emulator, victim_token)
    await upstream_receiver.event("connected", connection_id)
    attacker = emulator.auth(emulator.client_token(claims=MALLORY))
    invocation = b'{"type":1,"target":"send","arguments":["forged"]}\x1e'
    assert await status_of(emulator, "POST", url, attacker, invocation) == 403
    await emulator.broadcast("news", "for alice only")
    assert await status_of(emulator, "GET", url, attacker) == 403
    assert await status_of(emulator, "DELETE", url, attacker) == 403
    # The victim still gets what was queued for it, and nothing forged reached the upstream.
    async with emulator.session.get(url, headers=emulator.auth(victim_token)) as response:
        assert response.status == 200
        assert records(await response.read()) == [{"type": 1, "target": "news", "arguments": ["for alice only"]}]
    await asyncio.sleep(0.2)
    assert not [call for call in upstream_receiver.calls if call.headers.get("x-asrs-category") == "messages"]


@pytest.mark.parametrize("mode", ["serverless", "default", "classic"])
@pytest.mark.parametrize("request_kind", ["websocket", "sse", "poll", "send", "delete"])
async def test_every_request_with_a_connection_token_is_403_for_another_identity(
    start_emulator: EmulatorFactory, mode: str, request_kind: str
) -> None:
    emulator = await start_emulator(service_mode=mode)
    victim_token = emulator.client_token(claims=ALICE)
    negotiated = await emulator.negotiate(token=victim_token)
    url = emulator.connect_url(negotiated["connectionToken"])
    attacker_token = emulator.client_token(claims=MALLORY)
    method, headers = {
        "websocket": ("GET", ws_upgrade_headers(attacker_token)),
        "sse": ("GET", {"Accept": "text/event-stream", **emulator.auth(attacker_token)}),
        "poll": ("GET", emulator.auth(attacker_token)),
        "send": ("POST", emulator.auth(attacker_token)),
        "delete": ("DELETE", emulator.auth(attacker_token)),
    }[request_kind]
    async with emulator.session.request(method, url, headers=headers) as response:
        assert response.status == 403
        assert await response.text() == "Forbidden"
    # The refused request bound nothing: the victim starts its transport as if nothing happened.
    assert await status_of(emulator, "GET", url, emulator.auth(victim_token)) == 200


async def test_the_same_user_with_a_refreshed_token_keeps_its_connection(emulator: Emulator) -> None:
    first = emulator.client_token(claims=ALICE, now=time.time() - 30)
    url, _ = await open_lp_as(emulator, first)
    refreshed = emulator.auth(emulator.client_token(claims=ALICE))
    assert await status_of(emulator, "POST", url, refreshed, b'{"type":6}\x1e') == 200
    await emulator.broadcast("news", "still yours")
    async with emulator.session.get(url, headers=refreshed) as response:
        assert records(await response.read()) == [{"type": 1, "target": "news", "arguments": ["still yours"]}]
    assert await status_of(emulator, "DELETE", url, refreshed) == 202


async def test_asrs_user_id_claim_is_the_identity_too(emulator: Emulator) -> None:
    url, _ = await open_lp_as(emulator, emulator.client_token(claims={"asrs.s.uid": "alice"}))
    same = emulator.auth(emulator.client_token(claims={"asrs.s.uid": "alice", "role": "x"}))
    other = emulator.auth(emulator.client_token(claims={"asrs.s.uid": "mallory", "nameid": "alice"}))
    assert await status_of(emulator, "POST", url, other, b'{"type":6}\x1e') == 403
    assert await status_of(emulator, "POST", url, same, b'{"type":6}\x1e') == 200


async def test_an_anonymous_connection_is_bound_to_the_token_that_negotiated_it(emulator: Emulator) -> None:
    victim_token = emulator.client_token(now=time.time() - 30)
    url, _ = await open_lp_as(emulator, victim_token)
    # Another anonymous client's token (another negotiate at the app server) is refused, and so is a user's.
    for other in (emulator.client_token(now=time.time() - 5), emulator.client_token(claims=ALICE)):
        assert await status_of(emulator, "POST", url, emulator.auth(other), b'{"type":6}\x1e') == 403
    assert await status_of(emulator, "POST", url, emulator.auth(victim_token), b'{"type":6}\x1e') == 200


async def test_a_user_connection_refuses_an_anonymous_token(emulator: Emulator) -> None:
    url, _ = await open_lp_as(emulator, emulator.client_token(claims=ALICE))
    assert await status_of(emulator, "GET", url, emulator.auth(emulator.client_token())) == 403


# --- 2. what goes upstream carries no subscription key -----------------------------------------------------------


async def test_client_query_forwarded_upstream_drops_the_subscription_key(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = emulator_with_upstream
    token = emulator.client_token()
    negotiated = await emulator.negotiate(token=token)
    secret = "planted-subscription-key-0123456789"
    url = emulator.connect_url(
        negotiated["connectionToken"],
        extra=f"&subscription-key={secret}&Subscription-Key={secret}&room=lobby&access_token={token}",
    )
    ws = await emulator.session.ws_connect(url.replace("http", "ws", 1))
    await ws.send_str(HANDSHAKE.decode())
    assert records(await ws.receive_str(timeout=5)) == [{}]
    call = await upstream_receiver.event("connected", negotiated["connectionId"])
    assert call.headers["x-asrs-client-query"] == "?hub=chat&room=lobby"
    assert not [c for c in upstream_receiver.calls if secret in str(c.headers) or token in str(c.headers)]
    await ws.close()


# --- 3. records nested deep enough to break the re-encode for the upstream ---------------------------------------

# Around the decoder's depth limit: how deep a re-encode can still go depends on the stack below it (in-process or
# not), so every depth up to the limit is tried.
DEPTHS = range(930, 1000)


def deep_invocation(depth: int) -> bytes:
    head = b'{"type":1,"invocationId":"1","target":"send","arguments":['
    return head + b"[" * depth + b"]" * depth + b"]}\x1e"


def answered_or_closed_with_reason(reply: list[dict[str, Any]]) -> bool:
    """A Completion for the invocation, or a Close message that says why."""
    last = reply[-1]
    return (last["type"] == 3 and last["invocationId"] == "1") or (last["type"] == 7 and bool(last.get("error")))


async def test_deeply_nested_websocket_records_get_an_answer_or_a_close_message_with_a_reason(
    emulator: Emulator,
) -> None:
    for depth in DEPTHS:
        ws, _ = await emulator.open_ws()
        await ws.send_bytes(deep_invocation(depth))
        message = await ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.TEXT, (depth, message)
        assert answered_or_closed_with_reason(records(message.data)), (depth, message.data)
        await ws.close()
    good, _ = await emulator.open_ws()
    await emulator.broadcast("news", "still serving")
    assert await ws_next_non_ping(good) == [{"type": 1, "target": "news", "arguments": ["still serving"]}]
    await good.close()


async def test_deeply_nested_posts_are_200_and_the_next_poll_has_the_answer(emulator: Emulator) -> None:
    headers = emulator.auth(emulator.client_token())
    for depth in DEPTHS:
        url, _ = await emulator.open_lp()
        assert await status_of(emulator, "POST", url, headers, deep_invocation(depth)) == 200, depth
        async with emulator.session.get(url, headers=headers) as response:
            assert answered_or_closed_with_reason(records(await response.read())), depth
        await status_of(emulator, "DELETE", url, headers)


async def test_a_deeply_nested_record_in_default_mode_is_passed_on_unread(start_emulator: EmulatorFactory) -> None:
    """Default mode forwards client bytes without decoding them, so depth is the app server's business."""
    emulator = await start_emulator(service_mode="default")
    server = await FakeAppServer.connect(emulator)
    ws, _ = await emulator.connect_ws()
    await ws.send_str(HANDSHAKE.decode())
    await server.accept()
    assert records(await ws.receive_str(timeout=5)) == [{}]
    await ws.send_bytes(deep_invocation(DEPTHS[-1]))
    data = await server.expect(ConnectionData)
    assert data.payload == deep_invocation(DEPTHS[-1])
    await server.send(Ping(("echo", "alive")))
    assert await server.expect(Ping) == Ping(("echo", "alive"))
    await ws.close()
    await server.close()


# --- 4. message size: 1009 on WebSockets, for clients and server connections -------------------------------------

LIMIT = 1024


def padded_invocation(size: int) -> bytes:
    """A valid invocation record of exactly ``size`` bytes, without its separator."""
    head, tail = b'{"type":1,"target":"send","arguments":["', b'"]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def close_of(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict[str, Any]], int | None, str]:
    """Everything up to the close: (records received, close code, close reason)."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while True:
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                received += records(message.data)
                continue
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
            return received, ws.close_code, str(message.extra or "")


async def test_a_websocket_message_just_over_the_limit_closes_with_1009_and_a_reason(
    start_emulator: EmulatorFactory,
) -> None:
    emulator = await start_emulator(max_message_size=LIMIT)
    fits, _ = await emulator.open_ws()
    await fits.send_bytes(padded_invocation(LIMIT) + b"\x1e")
    await emulator.broadcast("news", "after the largest message")
    assert (await ws_next_non_ping(fits))[-1]["arguments"] == ["after the largest message"]
    await fits.close()

    too_big, connection_id = await emulator.open_ws()
    await too_big.send_bytes(padded_invocation(LIMIT + 1) + b"\x1e")
    received, code, reason = await close_of(too_big)
    assert code == 1009
    assert reason
    closes = [r for r in received if r.get("type") == 7]
    assert closes and closes[-1]["error"], received
    status, _, _ = await emulator.rest("HEAD", f"/api/hubs/chat/connections/{connection_id}?api-version=2022-06-01")
    assert status == 404


async def test_a_service_message_just_over_the_limit_closes_the_server_connection_with_1009(
    start_emulator: EmulatorFactory,
) -> None:
    emulator = await start_emulator(service_mode="default", max_service_message_size=LIMIT)
    good = await FakeAppServer.connect(emulator)
    bad = await FakeAppServer.connect(emulator)
    payload = b"\x93\x03\xc4" + b"\x00"  # a Ping-shaped start; the length prefix is what counts
    body = payload + b"\x00" * (LIMIT + 1 - len(payload))
    length = len(body)
    prefix = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        prefix.append(byte | (0x80 if length else 0))
        if not length:
            break
    await bad.ws.send_bytes(bytes(prefix) + body)
    code, reason = await bad.closed()
    assert code == 1009 and reason
    await good.send(Ping(("echo", "still-here")))
    assert await good.expect(Ping) == Ping(("echo", "still-here"))
    await good.close()
