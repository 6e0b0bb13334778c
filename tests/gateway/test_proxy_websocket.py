"""`apim-gateway` as a process: WebSocket passthrough (onHandshake) in the `websocket` profile."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.gateway.conftest import PRIMARY_KEY, Backend, Gateway

QUERY = "hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id=AbC%3D&id=tok-1"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def url(gateway: Gateway, path_and_query: str) -> URL:
    return URL(gateway.url + path_and_query, encoded=True)


async def handshake(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The backend's first message: how it saw the handshake."""
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.TEXT
    return dict(json.loads(msg.data))


async def test_websocket_through_the_gateway(
    ws_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    target = url(ws_gateway, f"/client/?{QUERY}&access_token=ws-token")
    async with http.ws_connect(
        target, headers={"Authorization": "Bearer hdr", "X-Custom": "yes"}, protocols=("chat.v1",)
    ) as ws:
        seen = await handshake(ws)
        assert ws.protocol == "chat.v1"  # subprotocol negotiated end to end
        assert seen["protocol"] == "chat.v1"
        request = seen["handshake"]
        assert request["path"] == "/client/"
        assert request["query"] == f"{QUERY}&access_token=ws-token"
        assert request["host"] == backend.authority
        assert request["headers"]["authorization"] == ["Bearer hdr"]
        assert request["headers"]["x-custom"] == ["yes"]
        await ws.send_str('{"protocol":"json","version":1}\x1e')
        echo = await asyncio.wait_for(ws.receive(), 5)
        assert echo.data == '{"protocol":"json","version":1}\x1e'
    text = ws_gateway.wait_for_log("websocket closed")
    assert "-> signalr-connect/onHandshake 101 (WebSocket relayed)" in text
    assert "ws-token" not in text


async def test_thousand_messages_each_way_unchanged(ws_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    count = 1000
    texts = [
        f'{{"type":1,"target":"send","arguments":["m{n}","ünïcødé ✓ {"x" * (n % 97)}"]}}\x1e' for n in range(count)
    ]
    blobs = [bytes((n + k) % 256 for k in range(n % 300 + 1)) for n in range(count)]
    outgoing: list[str | bytes] = [t if n % 2 else b for n, (t, b) in enumerate(zip(texts, blobs, strict=True))]
    async with http.ws_connect(url(ws_gateway, f"/client/?{QUERY}"), max_msg_size=0) as ws:
        await handshake(ws)

        async def send() -> None:
            for item in outgoing:
                if isinstance(item, str):
                    await ws.send_str(item)
                else:
                    await ws.send_bytes(item)

        async def receive() -> list[str | bytes]:
            got: list[str | bytes] = []
            while len(got) < count:
                msg = await ws.receive()
                assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
                got.append(msg.data)
            return got

        async with asyncio.timeout(30):
            _, received = await asyncio.gather(send(), receive())
        assert received == outgoing
        await ws.close()
    text = ws_gateway.wait_for_log("1000 messages up, 1001 down")
    assert "client closed with 1000" in text


async def test_backend_close_code_reaches_the_client(ws_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(url(ws_gateway, f"/client/?{QUERY}")) as ws:
        await handshake(ws)
        await ws.send_str("close:4001:server says bye")
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (4001, "server says bye")
    assert ws.close_code == 4001


async def test_client_close_code_reaches_the_backend(
    ws_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(url(ws_gateway, f"/client/?{QUERY}")) as ws:
        await handshake(ws)
        await ws.close(code=4002, message=b"client says bye")
    deadline = time.monotonic() + 5
    while True:
        async with http.get(backend.url + "/stats") as response:
            last = (await response.json())["last_client_close"]
        if last == [4002, "client says bye"]:
            break
        assert time.monotonic() < deadline, last
        await asyncio.sleep(0.05)


async def test_refused_handshake_is_returned_without_upgrading(
    ws_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(url(ws_gateway, f"/client/?{QUERY}&refuse=404"))
    assert info.value.status == 404
    async with http.get(
        url(ws_gateway, f"/client/?{QUERY}&refuse=404"),
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    ) as response:
        assert response.status == 404
        assert await response.read() == b"No Connection with that ID"  # SignalR's own message


@pytest.mark.parametrize("path", ["/client/sub", "/client/negotiate"])
async def test_upgrade_elsewhere_is_404(ws_gateway: Gateway, http: aiohttp.ClientSession, path: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(url(ws_gateway, f"{path}?{QUERY}"))
    assert info.value.status == 404


async def test_sse_lp_profile_refuses_the_upgrade(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(url(sse_gateway, f"/client/?{QUERY}"))
    assert info.value.status != 101


async def test_websocket_subscription_keys(keyed_ws_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for headers, query in (({}, ""), ({"Ocp-Apim-Subscription-Key": "nope"}, "")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(url(keyed_ws_gateway, f"/client/?{QUERY}{query}"), headers=headers)
        assert info.value.status == 401  # before any upgrade
    # browsers cannot set headers on a WebSocket: the query key works
    async with http.ws_connect(url(keyed_ws_gateway, f"/client/?{QUERY}&subscription-key={PRIMARY_KEY}")) as ws:
        seen = await handshake(ws)
        assert seen["handshake"]["query"].endswith(f"&subscription-key={PRIMARY_KEY}")
    async with http.ws_connect(
        url(keyed_ws_gateway, f"/client/?{QUERY}"), headers={"Ocp-Apim-Subscription-Key": PRIMARY_KEY}
    ) as ws:
        seen = await handshake(ws)
        assert seen["handshake"]["headers"]["ocp-apim-subscription-key"] == [PRIMARY_KEY]
    text = keyed_ws_gateway.wait_for_log("websocket closed")
    assert PRIMARY_KEY not in text
