"""Default mode, app-server side: the server connections and the carried clients against a scripted service.

The "service" here is a small aiohttp WebSocket endpoint on 127.0.0.1 that speaks the service protocol with
:mod:`signalr.service_protocol` and records what the app server writes, so every assertion is about bytes on the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.carried_clients import ClientTable, ClientTimers
from server.hub import ChatHub
from server.server_connections import ServerConnections, ServerConnectionTimers, retry_delay
from signalr import service_protocol as sp
from signalr.connection_string import parse_connection_string
from signalr.json_protocol import RECORD_SEPARATOR
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
        await dialled.send(sp.ConnectionData("bad", b'{"protocol":"messagepack","version":1}\x1e'))
        reply = await dialled.next(sp.ConnectionData)
        assert reply.payload == b'{"error":"The protocol \'messagepack\' is not supported."}\x1e'
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
    assert "retrying in 1." in caplog.text


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
