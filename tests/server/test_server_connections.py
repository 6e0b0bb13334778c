"""Default mode, app-server side: the server connections and the carried clients against a scripted service.

The "service" here is a small aiohttp WebSocket endpoint on 127.0.0.1 that speaks the service protocol with
:mod:`signalr.service_protocol` and records what the app server writes, so every assertion is about bytes on the wire.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.carried_clients import ClientTable, ClientTimers
from server.hub import ChatHub
from server.server_connections import ServerConnections, ServerConnectionTimers, retry_delay
from signalr import service_protocol as sp
from signalr.connection_string import parse_connection_string
from signalr.json_protocol import RECORD_SEPARATOR
from signalr.protocols import PROTOCOLS
from signalr.tokens import verify_token
from tests.support.browser import until

KEY = "ServerConnTestKey0123456789abcdefghijklmnopqrstuv"
HANDSHAKE = b'{"protocol":"json","version":1}\x1e'


@dataclass
class Dialled:
    """One server connection as the fake service saw it."""

    request_headers: dict[str, str]
    query: dict[str, str]
    ws: web.WebSocketResponse
    inbox: asyncio.Queue[sp.ServiceMessage] = field(default_factory=asyncio.Queue)

    async def send(self, *messages: sp.ServiceMessage) -> None:
        await self.ws.send_bytes(sp.encode_many(list(messages)))

    async def next(self, kind: type[sp.ServiceMessage], timeout: float = 5.0) -> Any:
        """The next message of ``kind`` (keep-alive and status pings in between are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if isinstance(message, sp.Ping) and message.messages[:1] in (("#clientInHub",), ("status",)):
                    continue
                if isinstance(message, kind):
                    return message


class FakeService:
    """Accepts server connections; ``status`` refuses the upgrade, ``handshake_error`` refuses the handshake."""

    def __init__(self) -> None:
        self.dialled: asyncio.Queue[Dialled] = asyncio.Queue()
        self.status: int | None = None
        self.handshake_error = ""
        self.all: list[Dialled] = []
        self.first_frames: list[bytes] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.status is not None:
            return web.Response(status=self.status, text="refused")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        dialled = Dialled(dict(request.headers), dict(request.query), ws)
        reader = sp.ServiceMessageReader()
        first = True
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.BINARY:
                continue
            if first:
                self.first_frames.append(message.data)
            for parsed in reader.feed(message.data):
                if first:
                    first = False
                    assert isinstance(parsed, sp.HandshakeRequest)
                    await ws.send_bytes(sp.encode(sp.HandshakeResponse(self.handshake_error, connection_id="sc-1")))
                    if self.handshake_error:
                        await ws.close()
                        return ws
                    self.all.append(dialled)
                    await self.dialled.put(dialled)
                    continue
                if isinstance(parsed, sp.Ping) and parsed.get("shutdown") == "fin:0":
                    await ws.send_bytes(sp.encode(sp.Ping(("shutdown", "finack"))))
                await dialled.inbox.put(parsed)
        return ws


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeService, str]]:
    fake = FakeService()
    app = web.Application()
    app.router.add_get("/server/", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, f"Endpoint=http://127.0.0.1;Port={server.port};AccessKey={KEY};Version=1.0;"
    await server.close()


FAST = ServerConnectionTimers(handshake_timeout=2, keepalive=0.2, status_interval=0.3, service_timeout=3)


def pool(connection_string: str, count: int = 1, timers: ClientTimers | None = None) -> ServerConnections:
    clients = ClientTable(ChatHub(), timers or ClientTimers())
    return ServerConnections(parse_connection_string(connection_string), "Chat", clients, count=count, timers=FAST)


async def test_dials_with_the_sdk_url_headers_token_and_handshake(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string, count=2)
    await connections.start()
    try:
        first = await asyncio.wait_for(fake.dialled.get(), 5)
        second = await asyncio.wait_for(fake.dialled.get(), 5)
        assert first.query["hub"] == "chat"
        assert first.query["cid"] != second.query["cid"]
        headers = first.request_headers
        assert headers["X-Requested-With"] == "XMLHttpRequest"
        assert headers["X-ASRS-Server-Id"] == connections.server_id
        assert headers["Asrs-User-Agent"].startswith("signalr-apim-chat/")
        scheme, _, token = headers["Authorization"].partition(" ")
        assert scheme == "Bearer"
        claims = verify_token(token, KEY, "http://127.0.0.1/server/?hub=chat")
        assert claims["nameid"] == connections.server_id
        assert claims["exp"] - claims["iat"] == 3600
        assert await connections.wait_connected(1)
        assert connections.status()["connected"] == 2
    finally:
        await connections.stop()


async def test_handshake_request_bytes(service: tuple[FakeService, str]) -> None:
    """The first frame is the SDK's 7-item HandshakeRequest, byte for byte."""
    fake, connection_string = service
    connections = pool(connection_string)
    await connections.start()
    try:
        await asyncio.wait_for(fake.dialled.get(), 5)
    finally:
        await connections.stop()
    assert fake.first_frames[0] == bytes.fromhex("0897010100a00080c2")


async def test_pings_status_echo_and_graceful_shutdown(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string)
    await connections.start()
    dialled = await asyncio.wait_for(fake.dialled.get(), 5)
    # The SDK pings when something arrives and more than the keep-alive interval passed since its last ping.
    await asyncio.sleep(0.3)
    pings: list[sp.Ping] = []
    async with asyncio.timeout(5):
        while not any(p.messages == ("status", "1") for p in pings) or not any(
            p.messages[:1] == ("#clientInHub",) for p in pings
        ):
            message = await dialled.inbox.get()
            if isinstance(message, sp.Ping):
                pings.append(message)
            await dialled.send(sp.Ping())
            await asyncio.sleep(0.05)
    assert ("#clientInHub", "0", "#client", "0") in [p.messages for p in pings]
    await dialled.send(sp.Ping(("echo", "42")))
    async with asyncio.timeout(5):
        while (await dialled.inbox.get()) != sp.Ping(("echo", "42")):
            pass
    await connections.stop()
    messages = []
    while not dialled.inbox.empty():
        messages.append(dialled.inbox.get_nowait())
    assert sp.Ping(("shutdown", "fin:0")) in messages
    assert dialled.ws.close_code == 1000


async def test_a_carried_client_chats_through_the_hub(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string)
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        claims = (("nameid", "alice"), ("asrs.s.uid", "alice"), ("aud", "x"))
        await dialled.send(sp.OpenConnection("c1", claims, {"Host": ("apim",)}, "?hub=chat", {3: "json"}))
        await dialled.send(sp.ConnectionData("c1", HANDSHAKE))
        reply = await dialled.next(sp.ConnectionData)
        assert (reply.connection_id, reply.payload, reply.data_message_type) == (
            "c1",
            b"{}\x1e",
            sp.DataMessageType.HANDSHAKE,
        )
        invoke = b'{"type":1,"invocationId":"1","target":"BroadcastMessage","arguments":["alice","hi"]}\x1e'
        echo = b'{"type":1,"invocationId":"2","target":"echo","arguments":["alice","me"]}\x1e'
        await dialled.send(sp.ConnectionData("c1", invoke + echo))
        broadcast = await dialled.next(sp.BroadcastData)
        assert broadcast.excluded == ()
        assert json.loads(broadcast.payloads["json"].rstrip(RECORD_SEPARATOR)) == {
            "type": 1,
            "target": "broadcastMessage",
            "arguments": ["alice", "hi"],
        }
        completion = await dialled.next(sp.ConnectionData)
        assert completion.payload == b'{"type":3,"invocationId":"1"}\x1e'
        assert completion.data_message_type is sp.DataMessageType.INVOCATION
        to_caller = await dialled.next(sp.MultiConnectionData)
        assert to_caller.connection_ids == ("c1",)
        assert json.loads(to_caller.payloads["json"].rstrip(RECORD_SEPARATOR))["arguments"] == [
            "alice",
            "me (echo from server)",
        ]
        assert (await dialled.next(sp.ConnectionData)).payload == b'{"type":3,"invocationId":"2"}\x1e'
        unknown = b'{"type":1,"invocationId":"3","target":"nope","arguments":[]}\x1e'
        await dialled.send(sp.ConnectionData("c1", unknown))
        error = await dialled.next(sp.ConnectionData)
        assert json.loads(error.payload.rstrip(RECORD_SEPARATOR))["error"] == "Unknown hub method 'nope'"
        # The client sends Close: the app server ends it towards the service.
        await dialled.send(sp.ConnectionData("c1", b'{"type":7}\x1e'))
        closed = await dialled.next(sp.CloseConnection)
        assert (closed.connection_id, closed.error) == ("c1", "")
        assert len(connections.clients) == 0
    finally:
        await connections.stop()


async def test_bad_handshake_and_garbage_end_only_that_client(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string)
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(sp.OpenConnection("bad", (), {}, "", {3: "json"}))
        await dialled.send(sp.ConnectionData("bad", b'{"protocol":"xml","version":1}\x1e'))
        reply = await dialled.next(sp.ConnectionData)
        assert reply.payload == b'{"error":"The protocol \'xml\' is not supported."}\x1e'
        assert (await dialled.next(sp.CloseConnection)).connection_id == "bad"
        await dialled.send(sp.OpenConnection("ok", (), {}, "", {3: "json"}), sp.ConnectionData("ok", HANDSHAKE))
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        await dialled.send(sp.ConnectionData("ok", b"{not json\x1e"))
        close = await dialled.next(sp.ConnectionData)
        assert json.loads(close.payload.rstrip(RECORD_SEPARATOR))["type"] == 7
        assert (await dialled.next(sp.CloseConnection)).connection_id == "ok"
        # Data for clients the app server does not know is ignored; the connection stays up.
        await dialled.send(sp.ConnectionData("ghost", HANDSHAKE), sp.Ping(("echo", "still")))
        assert await dialled.next(sp.Ping) == sp.Ping(("echo", "still"))
    finally:
        await connections.stop()


async def test_client_keepalive_and_timeout_come_from_the_app_server(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string, timers=ClientTimers(keepalive=0.3, client_timeout=1.5, handshake_timeout=1))
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(sp.OpenConnection("c1", (), {}, "", {3: "json"}), sp.ConnectionData("c1", HANDSHAKE))
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        ping = await dialled.next(sp.ConnectionData)
        assert (ping.payload, ping.data_message_type) == (b'{"type":6}\x1e', sp.DataMessageType.OTHER)
        close = await dialled.next(sp.CloseConnection, timeout=5)
        assert close.error == "Server timeout elapsed without receiving a message from the client."
        # A client that never completes its handshake is ended too.
        await dialled.send(sp.OpenConnection("slow", (), {}, "", {3: "json"}))
        slow = await dialled.next(sp.CloseConnection, timeout=5)
        assert (slow.connection_id, slow.error) == ("slow", "Handshake was not completed in time.")
    finally:
        await connections.stop()


@pytest.mark.parametrize(
    ("status", "text"),
    [(401, "AccessKey"), (403, "--service-mode serverless"), (404, "--service-mode serverless")],
)
async def test_refused_upgrades_are_explained(
    service: tuple[FakeService, str], status: int, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake, connection_string = service
    fake.status = status
    connections = pool(connection_string)
    await connections.start()
    try:
        await until(lambda: any(f"({status})" in r.getMessage() for r in caplog.records), "the refusal line", 5)
    finally:
        await connections.stop()
    line = next(r.getMessage() for r in caplog.records if f"({status})" in r.getMessage())
    assert text in line
    assert "retrying in" in line
    assert KEY not in caplog.text


async def test_unreachable_service_retries_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    connections = pool(f"Endpoint=http://127.0.0.1;Port=9;AccessKey={KEY};Version=1.0;")
    await connections.start()
    try:
        assert not await connections.wait_connected(0.5)
    finally:
        await connections.stop()
    assert "cannot reach the service at http://127.0.0.1:9" in caplog.text
    # The first delay is 1 s plus up to 1 s of jitter, printed to a tenth: 1.0 to 2.0.
    assert re.search(r"retrying in (1\.\d|2\.0) s", caplog.text), caplog.text


async def test_handshake_error_is_reported(service: tuple[FakeService, str], caplog: pytest.LogCaptureFixture) -> None:
    fake, connection_string = service
    fake.handshake_error = "Version mismatch."
    connections = pool(connection_string)
    await connections.start()
    try:
        await until(lambda: "refused the handshake" in caplog.text, "the handshake refusal", 5)
    finally:
        await connections.stop()
    assert "the service refused the handshake: Version mismatch." in caplog.text


async def test_dropped_connection_forgets_its_clients_and_redials(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string)
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(sp.OpenConnection("c1", (), {}, "", {3: "json"}), sp.ConnectionData("c1", HANDSHAKE))
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        assert len(connections.clients) == 1
        await dialled.ws.close()
        again = await asyncio.wait_for(fake.dialled.get(), 5)  # after 1-2 s
        assert again.query["cid"] != dialled.query["cid"]
        assert len(connections.clients) == 0
    finally:
        await connections.stop()


async def test_an_unexpected_failure_is_logged_and_the_connection_dials_again(
    service: tuple[FakeService, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, connection_string = service
    connections = pool(connection_string)
    original = ClientTable.handle
    failures: list[sp.ServiceMessage] = []

    async def fails_once(self: ClientTable, message: sp.ServiceMessage, link: Any) -> None:
        if not failures:
            failures.append(message)
            raise RuntimeError("a defect in message handling")
        await original(self, message, link)

    monkeypatch.setattr(ClientTable, "handle", fails_once)
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(sp.OpenConnection("c1", (), {}, "", {3: "json"}))
        again = await asyncio.wait_for(fake.dialled.get(), 5)  # after 1-2 s
        await again.send(sp.OpenConnection("c2", (), {}, "", {3: "json"}), sp.ConnectionData("c2", HANDSHAKE))
        assert (await again.next(sp.ConnectionData)).payload == b"{}\x1e"
    finally:
        await connections.stop()
    assert "server connection 0 failed unexpectedly" in caplog.text
    assert "RuntimeError: a defect in message handling" in caplog.text


def test_retry_delays_follow_the_sdk() -> None:
    for attempt, base in enumerate((1, 2, 4, 8, 16, 32, 60, 60)):
        delay = retry_delay(attempt)
        assert base <= delay < base + 1


async def test_oversized_input_is_bounded(service: tuple[FakeService, str], caplog: pytest.LogCaptureFixture) -> None:
    """A client record over 1 MiB ends that client with a reason; a service frame over the limit ends the server
    connection (it redials); neither is buffered whole."""
    fake, connection_string = service
    connections = pool(connection_string)
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(sp.OpenConnection("big", (), {}, "", {3: "json"}), sp.ConnectionData("big", HANDSHAKE))
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        await dialled.send(sp.ConnectionData("big", b'{"type":1,"target":"echo","arguments":["' + b"x" * (1 << 20)))
        close = await dialled.next(sp.ConnectionData)
        assert json.loads(close.payload.rstrip(RECORD_SEPARATOR))["type"] == 7
        assert "exceeded the maximum message size" in json.loads(close.payload.rstrip(RECORD_SEPARATOR))["error"]
        assert (await dialled.next(sp.CloseConnection)).connection_id == "big"
        # A frame announcing more than the app server reads from the service: the connection is dropped and redialled.
        await dialled.ws.send_bytes(bytes.fromhex("ffffff7f"))  # a VarInt length of 256 MiB, no body
        again = await asyncio.wait_for(fake.dialled.get(), 5)
        assert again.query["cid"] != dialled.query["cid"]
    finally:
        await connections.stop()
    assert "not the service protocol" in caplog.text


# -- MessagePack clients carried through the service -------------------------------------------------------------
# Their messages are written here with the `msgpack` package and a VarInt prefix spelled out, and what the app server
# writes is unpacked the same way: the test does not read the product's codec back with itself.

MSGPACK_HANDSHAKE = b'{"protocol":"messagepack","version":1}\x1e'


def framed(*items: Any) -> bytes:
    """One MessagePack hub message: the array behind its VarInt length (all under 128 bytes here)."""
    payload: bytes = msgpack.packb(list(items), use_bin_type=True)
    assert len(payload) < 128
    return bytes([len(payload)]) + payload


def unframe(data: bytes) -> list[list[Any]]:
    """Every message of a MessagePack byte stream, each checked against its VarInt length."""
    messages: list[list[Any]] = []
    offset = 0
    while offset < len(data):
        size, shift = 0, 0
        while True:
            byte = data[offset]
            offset += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        assert offset + size <= len(data), data
        item = msgpack.unpackb(data[offset : offset + size], raw=False)
        assert isinstance(item, list)
        messages.append(item)
        offset += size
    return messages


def invocation(items: list[Any]) -> list[Any]:
    """An Invocation array without its trailing stream ids, when they are empty (ASP.NET writes ``[]``)."""
    assert items[0] == 1 and items[5:] in ([], [[]]), items
    return items[:5]


def open_messagepack(connection_id: str) -> list[sp.ServiceMessage]:
    return [
        sp.OpenConnection(connection_id, (), {}, "?hub=chat", {3: "messagepack"}),
        sp.ConnectionData(connection_id, MSGPACK_HANDSHAKE),
    ]


async def test_a_messagepack_client_chats_in_its_own_protocol(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string)
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(*open_messagepack("m1"))
        reply = await dialled.next(sp.ConnectionData)
        # The handshake reply is JSON text for every protocol.
        assert (reply.payload, reply.data_message_type) == (b"{}\x1e", sp.DataMessageType.HANDSHAKE)
        broadcast_call = framed(1, {}, "1", "BroadcastMessage", ["alice", "hi ✓"])
        echo_call = framed(1, {}, "2", "echo", ["alice", "me"])
        await dialled.send(sp.ConnectionData("m1", broadcast_call + echo_call))

        broadcast = await dialled.next(sp.BroadcastData)
        # For every registered protocol, keyed as the SDK keys them: the service picks each recipient's.
        assert set(broadcast.payloads) == {"json", "messagepack"}
        [packed] = unframe(broadcast.payloads["messagepack"])
        assert invocation(packed) == [1, {}, None, "broadcastMessage", ["alice", "hi ✓"]]
        assert json.loads(broadcast.payloads["json"].rstrip(RECORD_SEPARATOR)) == {
            "type": 1,
            "target": "broadcastMessage",
            "arguments": ["alice", "hi ✓"],
        }
        done = await dialled.next(sp.ConnectionData)
        assert unframe(done.payload) == [[3, {}, "1", 2]]  # void completion
        assert done.data_message_type is sp.DataMessageType.INVOCATION

        to_caller = await dialled.next(sp.MultiConnectionData)
        # A send to a client this app server carries: only that client's protocol, as the SDK does.
        assert to_caller.connection_ids == ("m1",) and set(to_caller.payloads) == {"messagepack"}
        [echoed] = unframe(to_caller.payloads["messagepack"])
        assert invocation(echoed) == [1, {}, None, "echo", ["alice", "me (echo from server)"]]
        assert unframe((await dialled.next(sp.ConnectionData)).payload) == [[3, {}, "2", 2]]

        await dialled.send(sp.ConnectionData("m1", framed(1, {}, "3", "nope", [])))
        error = await dialled.next(sp.ConnectionData)
        assert unframe(error.payload) == [[3, {}, "3", 1, "Unknown hub method 'nope'"]]
        # The client sends Close ([7, nil]): the app server ends it towards the service.
        await dialled.send(sp.ConnectionData("m1", framed(7, None)))
        closed = await dialled.next(sp.CloseConnection)
        assert (closed.connection_id, closed.error) == ("m1", "")
        assert len(connections.clients) == 0
    finally:
        await connections.stop()


async def test_json_and_messagepack_clients_side_by_side(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string)
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(
            sp.OpenConnection("j", (), {}, "", {3: "json"}), sp.ConnectionData("j", HANDSHAKE), *open_messagepack("m")
        )
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        await dialled.send(sp.ConnectionData("j", b'{"type":1,"target":"echo","arguments":["j","x"]}\x1e'))
        to_json = await dialled.next(sp.MultiConnectionData)
        assert to_json.connection_ids == ("j",) and set(to_json.payloads) == {"json"}
        await dialled.send(sp.ConnectionData("m", framed(1, {}, None, "broadcastMessage", ["m", "y"])))
        broadcast = await dialled.next(sp.BroadcastData)
        assert set(broadcast.payloads) == {"json", "messagepack"}
        assert json.loads(broadcast.payloads["json"].rstrip(RECORD_SEPARATOR))["arguments"] == ["m", "y"]
    finally:
        await connections.stop()


async def test_messagepack_keepalive_timeout_and_protocol_errors(service: tuple[FakeService, str]) -> None:
    fake, connection_string = service
    connections = pool(connection_string, timers=ClientTimers(keepalive=0.3, client_timeout=1.5, handshake_timeout=1))
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(*open_messagepack("m1"))
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        ping = await dialled.next(sp.ConnectionData)
        assert (unframe(ping.payload), ping.data_message_type) == ([[6]], sp.DataMessageType.OTHER)
        close = await dialled.next(sp.CloseConnection, timeout=5)
        assert close.error == "Server timeout elapsed without receiving a message from the client."

        # Garbage after the handshake: a MessagePack Close with the reason, then CloseConnection with it.
        await dialled.send(*open_messagepack("m2"))
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        await dialled.send(sp.ConnectionData("m2", b"\x02\xc1\xc1"))
        goodbye = await dialled.next(sp.ConnectionData)
        [[kind, reason, *_]] = unframe(goodbye.payload)
        assert kind == 7 and isinstance(reason, str) and reason
        ended = await dialled.next(sp.CloseConnection)
        assert (ended.connection_id, ended.error) == ("m2", reason)

        # A declared length over 1 MiB ends the client before the message is buffered.
        await dialled.send(*open_messagepack("m3"))
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        await dialled.send(sp.ConnectionData("m3", b"\x81\x80\x80\x01"))  # VarInt 2 MiB + 1, nothing after it
        [[kind, reason, *_]] = unframe((await dialled.next(sp.ConnectionData)).payload)
        assert kind == 7 and "maximum message size" in reason
        assert (await dialled.next(sp.CloseConnection)).connection_id == "m3"
    finally:
        await connections.stop()


async def test_payloads_follow_the_registered_protocols(service: tuple[FakeService, str]) -> None:
    """An app server that registers only JSON refuses a MessagePack handshake and writes only JSON payloads."""
    fake, connection_string = service
    clients = ClientTable(ChatHub(), ClientTimers(), protocols={"json": PROTOCOLS["json"]})
    connections = ServerConnections(parse_connection_string(connection_string), "Chat", clients, count=1, timers=FAST)
    await connections.start()
    try:
        dialled = await asyncio.wait_for(fake.dialled.get(), 5)
        await dialled.send(*open_messagepack("m"))
        reply = await dialled.next(sp.ConnectionData)
        assert reply.payload == b'{"error":"The protocol \'messagepack\' is not supported."}\x1e'
        assert (await dialled.next(sp.CloseConnection)).connection_id == "m"
        await dialled.send(sp.OpenConnection("j", (), {}, "", {3: "json"}), sp.ConnectionData("j", HANDSHAKE))
        assert (await dialled.next(sp.ConnectionData)).payload == b"{}\x1e"
        await dialled.send(sp.ConnectionData("j", b'{"type":1,"target":"broadcastMessage","arguments":["j","y"]}\x1e'))
        assert set((await dialled.next(sp.BroadcastData)).payloads) == {"json"}
    finally:
        await connections.stop()
