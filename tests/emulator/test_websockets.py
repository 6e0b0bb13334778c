"""WebSockets on ``/client/``: handshake, relay, status codes, bad frames and timers (protocol.md §3.5, §4)."""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp
import pytest

from .conftest import HANDSHAKE, Emulator, EmulatorFactory, exists, records, ws_next_non_ping, ws_records


async def upgrade(emulator: Emulator, url: str, headers: dict[str, str]) -> tuple[int, str]:
    """A WebSocket upgrade request whose refusal we can read (status and body)."""
    upgrade_headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **headers,
    }
    async with emulator.session.get(url, headers=upgrade_headers) as response:
        return response.status, await response.text()


async def test_rest_broadcast_arrives_as_the_exact_wire_record(emulator: Emulator) -> None:
    ws, _ = await emulator.open_ws()
    await emulator.broadcast("broadcastMessage", "alice", "hi")
    message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.TEXT
    assert message.data == '{"type":1,"target":"broadcastMessage","arguments":["alice","hi"]}\x1e'
    await ws.close()


async def test_records_following_the_handshake_in_one_frame_are_processed(emulator: Emulator) -> None:
    """Trap 8: handshake, ping and an invocation in one frame; the reply to each comes back."""
    ws, _ = await emulator.connect_ws()
    frame = HANDSHAKE + b'{"type":6}\x1e{"type":1,"invocationId":"7","target":"echo","arguments":["a","b"]}\x1e'
    await ws.send_str(frame.decode())
    got: list[dict[str, object]] = []
    while len(got) < 2:
        got += await ws_records(ws)
    assert got[0] == {}
    assert got[1] == {"type": 3, "invocationId": "7", "error": "No upstream is configured for hub 'chat'."}
    await ws.close()


async def test_unknown_id_is_404_with_aspnet_text(emulator: Emulator) -> None:
    token = emulator.client_token()
    status, text = await upgrade(emulator, emulator.connect_url("nope"), emulator.auth(token))
    assert (status, text) == (404, "No Connection with that ID")


async def test_second_websocket_on_one_id_is_409_and_the_first_survives(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = emulator.auth(emulator.client_token())
    ws = await emulator.session.ws_connect(url.replace("http", "ws", 1), headers=headers)
    await ws.send_str(HANDSHAKE.decode())
    assert await ws_records(ws) == [{}]
    status, _ = await upgrade(emulator, url, headers)
    assert status == 409
    await emulator.broadcast("broadcastMessage", "still", "here")
    assert await ws_next_non_ping(ws) == [{"type": 1, "target": "broadcastMessage", "arguments": ["still", "here"]}]
    await ws.close()


async def test_websocket_on_a_long_polling_connection_is_400(emulator: Emulator) -> None:
    url, _ = await emulator.open_lp()
    status, text = await upgrade(emulator, url, emulator.auth(emulator.client_token()))
    assert (status, text) == (400, "Cannot change transports mid-connection")


async def test_websocket_without_id_skips_negotiate_like_aspnet_core(emulator: Emulator) -> None:
    """signalrcore and pysignalr connect without ``id`` after a one-hop redirect (Appendix A)."""
    ws = await emulator.session.ws_connect(
        f"{emulator.base}/client/?hub=chat&asrs.op=%2Fchat".replace("http", "ws", 1),
        headers=emulator.auth(emulator.client_token()),
    )
    await ws.send_str(HANDSHAKE.decode())
    assert await ws_records(ws) == [{}]
    await emulator.broadcast("broadcastMessage", "a", "b")
    assert await ws_next_non_ping(ws) == [{"type": 1, "target": "broadcastMessage", "arguments": ["a", "b"]}]
    await ws.close()


async def test_websocket_without_id_or_hub_is_400(emulator: Emulator) -> None:
    status, text = await upgrade(emulator, f"{emulator.base}/client/", emulator.auth(emulator.client_token()))
    assert (status, text) == (400, "The 'hub' query parameter is required.")


async def test_query_token_is_accepted_on_upgrade(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    token = emulator.client_token()
    url = emulator.connect_url(negotiated["connectionToken"], extra=f"&access_token={token}")
    ws = await emulator.session.ws_connect(url.replace("http", "ws", 1))
    await ws.send_str(HANDSHAKE.decode())
    assert await ws_records(ws) == [{}]
    await ws.close()


async def test_header_wins_over_query_token(emulator: Emulator) -> None:
    """Trap 13: a bad header is not rescued by a good query token."""
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"], extra=f"&access_token={emulator.client_token()}")
    status, _ = await upgrade(emulator, url, emulator.auth(emulator.client_token(key="wrong-key-" + "x" * 40)))
    assert status == 401


async def test_upgrade_without_token_is_401(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    status, _ = await upgrade(emulator, emulator.connect_url(negotiated["connectionToken"]), {})
    assert status == 401


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"type":1,"arguments":[]}\x1e', "Missing required property 'target'."),
        ("{not json}\x1e", "Message is not valid JSON"),
        ('{"type":99}\x1e', "Unknown message type '99'."),
        ("[1,2]\x1e", "Message must be a JSON object."),
    ],
)
async def test_malformed_frame_closes_only_that_connection_with_a_reason(
    emulator: Emulator, frame: str, reason: str
) -> None:
    bad, bad_id = await emulator.open_ws()
    good, good_id = await emulator.open_ws()
    await bad.send_str(frame)
    close = await ws_next_non_ping(bad)
    assert close[0]["type"] == 7 and reason in str(close[0]["error"])
    message = await bad.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1000
    assert await exists(emulator, bad_id) == 404
    assert await exists(emulator, good_id) == 200
    await emulator.broadcast("broadcastMessage", "x", "y")
    assert await ws_next_non_ping(good) == [{"type": 1, "target": "broadcastMessage", "arguments": ["x", "y"]}]
    await good.close()


async def test_oversized_frame_closes_that_connection_with_the_size_in_the_reason(
    start_emulator: EmulatorFactory,
) -> None:
    emulator = await start_emulator(max_message_size=1024)
    bad, _ = await emulator.open_ws()
    good, _ = await emulator.open_ws()
    await bad.send_str('{"type":1,"target":"echo","arguments":["' + "x" * 2000 + '"]}\x1e')
    close = await ws_next_non_ping(bad)
    assert close == [{"type": 7, "error": "The message exceeded the maximum message size of 1024 bytes."}]
    await emulator.broadcast("broadcastMessage", "x", "y")
    assert await ws_next_non_ping(good) == [{"type": 1, "target": "broadcastMessage", "arguments": ["x", "y"]}]
    await good.close()


async def test_unsupported_hub_protocol_gets_a_handshake_error_then_close(emulator: Emulator) -> None:
    ws, _ = await emulator.connect_ws()
    await ws.send_str('{"protocol":"xml","version":1}\x1e')
    assert await ws_records(ws) == [{"error": "The protocol 'xml' is not supported."}]
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE


async def test_a_newer_protocol_version_gets_a_handshake_error(emulator: Emulator) -> None:
    ws, _ = await emulator.connect_ws()
    await ws.send_str('{"protocol":"messagepack","version":2}\x1e')
    error = "The server does not support version 2 of the 'messagepack' protocol."
    assert await ws_records(ws) == [{"error": error}]
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE


async def test_ping_after_keepalive_interval_without_sending(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(keepalive_interval=0.3)
    ws, _ = await emulator.open_ws()
    assert await ws_records(ws, timeout=3) == [{"type": 6}]
    await ws.close()


async def test_silent_client_is_closed_after_client_timeout(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(keepalive_interval=10, client_timeout=0.5)
    ws, connection_id = await emulator.open_ws()
    close = await ws_next_non_ping(ws, timeout=5)
    assert close == [{"type": 7, "error": "Client timeout elapsed without receiving a message from the client."}]
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    assert await exists(emulator, connection_id) == 404


async def test_pinging_client_is_kept(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(keepalive_interval=10, client_timeout=0.6)
    ws, connection_id = await emulator.open_ws()
    for _ in range(6):  # 1.2 s of 0.2 s pings: twice the timeout
        await ws.send_str('{"type":6}\x1e')
        await asyncio.sleep(0.2)
    assert await exists(emulator, connection_id) == 200
    await ws.close()


async def test_no_handshake_within_timeout_closes_the_socket(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(handshake_timeout=0.4)
    ws, _ = await emulator.connect_ws()
    message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE


async def test_negotiated_but_never_connected_id_expires(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(handshake_timeout=0.3)
    negotiated = await emulator.negotiate()
    await asyncio.sleep(0.8)
    status, text = await upgrade(
        emulator, emulator.connect_url(negotiated["connectionToken"]), emulator.auth(emulator.client_token())
    )
    assert (status, text) == (404, "No Connection with that ID")


async def test_close_message_from_client_ends_with_1000(emulator: Emulator) -> None:
    ws, connection_id = await emulator.open_ws()
    await ws.send_str('{"type":7}\x1e')
    message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1000
    assert await exists(emulator, connection_id) == 404


async def test_rest_close_sends_close_message_with_reason(emulator: Emulator) -> None:
    ws, connection_id = await emulator.open_ws()
    status, _, _ = await emulator.rest(
        "DELETE", f"/api/hubs/chat/connections/{connection_id}?api-version=2022-06-01&reason=kicked"
    )
    assert status == 200
    assert await ws_next_non_ping(ws) == [{"type": 7, "error": "kicked"}]
    message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1000


async def test_post_on_a_websocket_connection_is_405(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = emulator.auth(emulator.client_token())
    ws = await emulator.session.ws_connect(url.replace("http", "ws", 1), headers=headers)
    await ws.send_str(HANDSHAKE.decode())
    assert await ws_records(ws) == [{}]
    async with emulator.session.post(url, data=b'{"type":6}\x1e', headers=headers) as response:
        assert response.status == 405
        assert await response.text() == "POST requests are not allowed for WebSocket connections."
    await ws.close()


async def test_delete_on_a_websocket_connection_is_400(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = emulator.auth(emulator.client_token())
    ws = await emulator.session.ws_connect(url.replace("http", "ws", 1), headers=headers)
    await ws.send_str(HANDSHAKE.decode())
    assert records((await ws.receive(timeout=5)).data) == [{}]
    async with emulator.session.delete(url, headers=headers) as response:
        assert response.status == 400
        assert await response.text() == "Cannot terminate this connection using the DELETE endpoint."
    await ws.close()
