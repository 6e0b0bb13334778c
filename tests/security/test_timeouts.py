"""Connection limits of the three servers as processes (``--header-timeout``, ``--body-timeout``,
``--idle-timeout``, all 1 s here): slowloris sockets, a stalled body and an idle keep-alive socket are disconnected;
an SSE stream, WebSockets and the app server's server connections outlive every limit. 127.0.0.1 only, bounded
in sockets and seconds."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from signalr.tokens import mint_token

from .conftest import BODY_S, HEADER_S, IDLE_S, Servers

SERVERS = ["signalr-emulator", "apim-gateway", "chat-server"]
SLOWLORIS_SOCKETS = 50
SLACK_S = 2.0  # scheduling slack on a loaded machine
HANDSHAKE = '{"protocol":"json","version":1}\x1e'


async def _slowloris(port: int, seconds: float) -> tuple[float | None, bytes]:
    """A request head sent one header line every 0.25 s and never finished: (seconds until the server closed the
    socket or None if it never did within ``seconds``, what the server sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = b""
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for n in range(int(seconds / 0.25)):
            try:
                chunk = await asyncio.wait_for(reader.read(1024), 0.25)
            except TimeoutError:
                writer.write(f"X-Slow-{n}: x\r\n".encode())
                await writer.drain()
                continue
            if not chunk:
                return time.monotonic() - started, received
            received += chunk
    except ConnectionError:
        return time.monotonic() - started, received
    finally:
        writer.close()
    return None, received


@pytest.mark.parametrize("name", SERVERS)
async def test_slowloris_sockets_are_disconnected_after_the_header_timeout(servers: Servers, name: str) -> None:
    served = servers.by_name[name]
    results = await asyncio.gather(*(_slowloris(served.port, HEADER_S + 4.0) for _ in range(SLOWLORIS_SOCKETS)))
    closed_after = [took for took, _ in results if took is not None]
    assert len(closed_after) == SLOWLORIS_SOCKETS, f"{SLOWLORIS_SOCKETS - len(closed_after)} sockets still open"
    assert min(closed_after) > HEADER_S * 0.5
    assert max(closed_after) < HEADER_S + SLACK_S
    # Each is answered 408 before the close, unless its next header line crossed the close: the kernel then resets
    # the socket and the client may lose the answer.
    answers = [data for _, data in results if data]
    assert answers and all(data.startswith(b"HTTP/1.1 408 Request Timeout\r\n") for data in answers)
    assert served.process.popen.poll() is None


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    await asyncio.wait_for(reader.readexactly(length), 5)
    return head


@pytest.mark.parametrize("name", SERVERS)
async def test_an_idle_keep_alive_socket_is_closed_after_the_idle_timeout(servers: Servers, name: str) -> None:
    served = servers.by_name[name]
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await _read_response(reader)
        assert b"connection: close" not in head.lower()
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(1024), IDLE_S + SLACK_S + 1)  # b"" once closed
        took = time.monotonic() - started
    finally:
        writer.close()
    assert rest == b""
    assert IDLE_S * 0.5 < took < IDLE_S + SLACK_S


@pytest.mark.parametrize("name", SERVERS)
async def test_a_stalled_request_body_is_cut_after_the_body_timeout(servers: Servers, name: str) -> None:
    served = servers.by_name[name]
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    started = time.monotonic()
    try:
        writer.write(b"POST /client/?hub=chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n0123456789")
        async with asyncio.timeout(BODY_S + SLACK_S + 1):
            while await reader.read(4096):  # the server may answer first; it must then close
                pass
        took = time.monotonic() - started
    finally:
        writer.close()
    assert took < BODY_S + SLACK_S


def _auth(access_key: str) -> dict[str, str]:
    token = mint_token(access_key, "http://127.0.0.1/client/?hub=chat")
    return {"Authorization": f"Bearer {token}"}


async def _negotiate(session: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> str:
    async with session.post(f"{base}/client/negotiate?hub=chat&negotiateVersion=1", headers=auth) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["connectionToken"]
        return token


async def _sse_outlives_the_limits(session: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> None:
    url = f"{base}/client/?hub=chat&id={await _negotiate(session, base, auth)}"
    async with session.get(url, headers={**auth, "Accept": "text/event-stream"}) as stream:
        assert stream.status == 200
        await asyncio.sleep(3 * max(HEADER_S, BODY_S, IDLE_S))  # quiet for three times every limit
        async with session.post(url, data=HANDSHAKE, headers=auth) as sent:
            assert sent.status == 200
        async with asyncio.timeout(10):
            line = b""
            while not line.startswith(b"data:"):
                line = await stream.content.readline()
                assert line, "the event stream ended"
        assert json.loads(line[5:].strip().rstrip(b"\x1e")) == {}


async def _websocket_outlives_the_limits(session: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> None:
    url = f"{base}/client/?hub=chat&id={await _negotiate(session, base, auth)}".replace("http", "ws", 1)
    async with session.ws_connect(url, headers=auth, autoping=False) as ws:
        await asyncio.sleep(3 * max(HEADER_S, BODY_S, IDLE_S))
        await ws.send_str(HANDSHAKE)
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        assert json.loads(message.data.split("\x1e")[0]) == {}


async def test_sse_websockets_and_server_connections_outlive_every_limit(servers: Servers) -> None:
    emulator = servers.emulator
    auth = _auth(emulator.access_key)
    gateway = f"http://127.0.0.1:{servers.by_name['apim-gateway'].port}"
    ws_gateway = f"http://127.0.0.1:{servers.by_name['apim-gateway-ws'].port}"
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(
            _sse_outlives_the_limits(session, emulator.base, auth),
            _sse_outlives_the_limits(session, gateway, auth),
            _websocket_outlives_the_limits(session, emulator.base, auth),
            _websocket_outlives_the_limits(session, ws_gateway, auth),
        )
        # chat-server's server connections are WebSockets the emulator serves: still all up after all that time.
        server = servers.by_name["chat-server"]
        async with session.get(f"http://127.0.0.1:{server.port}/healthz") as response:
            status = (await response.json())["server_connections"]
    assert status["connected"] == status["wanted"] == 2
