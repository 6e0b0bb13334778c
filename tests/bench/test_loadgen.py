"""``bench.loadgen``'s WebSocket client: the frames it parses from real bytes, the upgrade and handshake answers it
refuses, and a real aiohttp WebSocket server it talks to. Nothing here judges speed."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web

from bench._harness import BenchError
from bench.loadgen import (
    Deliveries,
    WebSocketClient,
    accept_of,
    close_clients,
    connect,
    open_clients,
    ping_silent,
    stamped,
)

RECORD = b'{"type":1,"target":"broadcastMessage","arguments":["bench","1"]}\x1e'


class FakeTransport(asyncio.Transport):
    """What a client writes, and whether it closed or aborted its connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted


def server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """An unmasked server frame in the shortest length form (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, unmasked payload) of each masked client frame in ``data``."""
    frames = []
    i = 0
    while i < len(data):
        opcode, n = data[i] & 0x0F, data[i + 1]
        assert n & 0x80, "client frames are masked"
        n &= 0x7F
        i += 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        key, i = data[i : i + 4], i + 4
        frames.append((opcode, bytes(b ^ key[j % 4] for j, b in enumerate(data[i : i + n]))))
        i += n
    return frames


def upgrade_answer(request: bytes, *, accept: bytes | None = None, extra: str = "") -> bytes:
    match = re.search(rb"Sec-WebSocket-Key: (\S+)\r\n", request)
    assert match is not None
    accept = accept_of(match.group(1)) if accept is None else accept
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra.encode() + b"\r\n"
    )


class Opening:
    """A client whose upgrade request is written to a fake transport; the test feeds the server's answers."""

    def __init__(self, deliveries: Deliveries, *, signalr: bool, headers: dict[str, str] | None = None) -> None:
        self.client = WebSocketClient(deliveries)
        self.transport = FakeTransport()
        self.client.connection_made(self.transport)
        opening = self.client.open(self.transport, "127.0.0.1:1", "/hub", headers or {}, signalr=signalr)
        self.task = asyncio.ensure_future(opening)

    async def request(self) -> bytes:
        """What the client wrote so far (the upgrade request once it has run)."""
        await asyncio.sleep(0)
        return bytes(self.transport.written)


async def opened(deliveries: Deliveries, *, signalr: bool = False) -> tuple[WebSocketClient, FakeTransport]:
    """A client opened over a fake transport, the server's answers fed by hand."""
    opening = Opening(deliveries, signalr=signalr)
    client, transport = opening.client, opening.transport
    client.data_received(upgrade_answer(await opening.request()))
    if signalr:
        request = transport.written.partition(b"\r\n\r\n")[2]
        assert client_frames(bytes(request)) == [(0x1, b'{"protocol":"json","version":1}\x1e')]
        client.data_received(server_frame(0x1, b"{}\x1e"))
    await opening.task
    transport.written.clear()
    return client, transport


async def test_frames_split_across_chunks_are_counted_once_each() -> None:
    deliveries = Deliveries()
    client, _ = await opened(deliveries)
    data = server_frame(0x1, RECORD) * 3 + server_frame(0x2, RECORD)
    for i in range(len(data)):
        client.data_received(data[i : i + 1])
    assert deliveries.tally.count == 4


@pytest.mark.parametrize("size", [125, 126, 300, 65535, 70000])
async def test_each_length_form_is_read(size: int) -> None:
    deliveries = Deliveries()
    client, _ = await opened(deliveries)
    payload = RECORD + b" " * (size - len(RECORD))
    data = server_frame(0x1, payload) + server_frame(0x1, RECORD)
    client.data_received(data[:5])
    client.data_received(data[5:])
    assert deliveries.tally.count == 2


async def test_a_64_bit_length_is_read_even_for_a_short_payload() -> None:
    deliveries = Deliveries()
    client, _ = await opened(deliveries)
    client.data_received(bytes((0x81, 127)) + len(RECORD).to_bytes(8, "big") + RECORD)
    assert deliveries.tally.count == 1


async def test_a_fragmented_message_is_counted_when_complete() -> None:
    deliveries = Deliveries()
    client, transport = await opened(deliveries)
    client.data_received(server_frame(0x1, RECORD[:30], fin=False))
    client.data_received(server_frame(0x9, b"mid"))  # a control frame between fragments
    client.data_received(server_frame(0x0, RECORD[30:40], fin=False))
    assert deliveries.tally.count == 0
    client.data_received(server_frame(0x0, RECORD[40:]))
    assert deliveries.tally.count == 1
    assert client_frames(bytes(transport.written)) == [(0xA, b"mid")]


async def test_a_ping_is_answered_with_a_masked_pong_of_its_payload() -> None:
    client, transport = await opened(Deliveries())
    client.data_received(server_frame(0x9, b"are you there"))
    assert client_frames(bytes(transport.written)) == [(0xA, b"are you there")]


async def test_a_close_is_answered_and_the_connection_closed() -> None:
    deliveries = Deliveries()
    client, transport = await opened(deliveries)
    client.data_received(server_frame(0x8, b"\x03\xe9bye") + server_frame(0x1, RECORD))
    assert client_frames(bytes(transport.written)) == [(0x8, b"\x03\xe9")]
    assert transport.closed
    assert deliveries.tally.count == 0  # nothing is read after a close
    assert deliveries.lost == 1


async def test_stamped_records_give_latencies_while_timing() -> None:
    deliveries = Deliveries()
    client, _ = await opened(deliveries)
    record = b'{"type":1,"target":"broadcastMessage","arguments":["bench","' + stamped() + b'"]}\x1e'
    client.data_received(server_frame(0x1, record))
    assert deliveries.latencies == []
    deliveries.timing = True
    client.data_received(server_frame(0x1, record))
    assert deliveries.tally.count == 2
    assert len(deliveries.latencies) == 1 and deliveries.latencies[0] >= 0


async def test_signalr_handshake_answer_is_not_counted_and_what_follows_it_is() -> None:
    deliveries = Deliveries()
    opening = Opening(deliveries, signalr=True)
    client, request = opening.client, await opening.request()
    client.data_received(upgrade_answer(request) + server_frame(0x1, b"{}\x1e" + RECORD))
    await opening.task
    assert deliveries.tally.count == 1


async def test_a_wrong_accept_is_refused_with_a_clear_error() -> None:
    opening = Opening(Deliveries(), signalr=False)
    client, request = opening.client, await opening.request()
    client.data_received(upgrade_answer(request, accept=base64.b64encode(b"x" * 20)))
    with pytest.raises(BenchError, match="Sec-WebSocket-Accept is 'eHh4"):
        await opening.task
    assert opening.transport.aborted


async def test_another_status_or_subprotocol_is_refused() -> None:
    opening = Opening(Deliveries(), signalr=False)
    client, request = opening.client, await opening.request()
    client.data_received(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(BenchError, match=re.escape("answered 'HTTP/1.1 401 Unauthorized'")):
        await opening.task

    opening = Opening(Deliveries(), signalr=False, headers={"Sec-WebSocket-Protocol": "p1"})
    client, request = opening.client, await opening.request()
    client.data_received(upgrade_answer(request, extra="Sec-WebSocket-Protocol: p2\r\n"))
    with pytest.raises(BenchError, match="chose subprotocol 'p2', not 'p1'"):
        await opening.task


async def test_a_refused_signalr_handshake_is_an_error() -> None:
    opening = Opening(Deliveries(), signalr=True)
    client, request = opening.client, await opening.request()
    client.data_received(upgrade_answer(request))
    client.data_received(server_frame(0x1, b'{"error":"unsupported protocol"}\x1e'))
    with pytest.raises(BenchError, match="SignalR handshake refused"):
        await opening.task


async def test_a_masked_server_frame_is_a_protocol_error() -> None:
    client, transport = await opened(Deliveries())
    client.data_received(bytes((0x81, 0x80 | 1)) + b"\0\0\0\0x")
    assert client_frames(bytes(transport.written)) == [(0x8, b"\x03\xea")]
    assert transport.closed


# --- against a real aiohttp WebSocket server -----------------------------------------------------------------------


class Received:
    """What the server received from its clients, in order."""

    def __init__(self) -> None:
        self.messages: list[tuple[WSMsgType, bytes]] = []
        self._changed = asyncio.Event()

    def add(self, kind: WSMsgType, data: bytes) -> None:
        self.messages.append((kind, data))
        self._changed.set()

    def count(self, kind: WSMsgType) -> int:
        return sum(1 for received, _ in self.messages if received is kind)

    async def until(self, kind: WSMsgType, count: int) -> None:
        while self.count(kind) < count:
            self._changed.clear()
            await self._changed.wait()


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Received]]:
    """A SignalR-like aiohttp WebSocket server: answers the handshake, sends three records of different sizes and a
    ping, and records what the client sends (pongs, pings, the close)."""
    received = Received()

    async def hub(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        handshake = await ws.receive()
        received.add(handshake.type, handshake.data.encode())
        await ws.send_str("{}\x1e")
        for size in (10, 1000, 70000):
            await ws.send_str(RECORD.decode() + " " * size)
        await ws.ping(b"hello")
        while not ws.closed:
            message = await ws.receive()
            data = message.data
            received.add(message.type, data.encode() if isinstance(data, str) else bytes(data) if data else b"")
        return ws

    app = web.Application()
    app.router.add_get("/hub", hub)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hub", received
    finally:
        await runner.cleanup()


async def test_against_a_real_server(server: tuple[str, Received]) -> None:
    url, received = server
    deliveries = Deliveries()
    clients = await open_clients(3, lambda: connect(url, deliveries, signalr=True), deadline=float("inf"))
    async with asyncio.timeout(10):
        await deliveries.tally.reaches(9)
        await received.until(WSMsgType.PONG, 3)
    assert ping_silent(clients, 0.0) == 3
    await close_clients(clients)
    async with asyncio.timeout(10):
        await received.until(WSMsgType.CLOSE, 3)
    assert received.count(WSMsgType.TEXT) == 6  # each client's handshake request and hub Ping
    assert (WSMsgType.TEXT, b'{"protocol":"json","version":1}\x1e') in received.messages
    assert (WSMsgType.TEXT, b'{"type":6}\x1e') in received.messages
    assert (WSMsgType.PONG, b"hello") in received.messages
    assert deliveries.tally.count == 9 and deliveries.lost == 0


async def test_a_server_that_is_not_there_is_a_clear_error() -> None:
    with pytest.raises(BenchError, match=re.escape("WebSocket connect to 127.0.0.1:1 failed")):
        await connect("ws://127.0.0.1:1/ws", Deliveries())
