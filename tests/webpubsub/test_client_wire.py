"""Our Web PubSub client against a scripted WebSocket server in the test: what it does with frames and closes the
emulator would never send (hostile or broken services, gateways' error envelopes), and its timing (sequenceAck,
keep-alive), asserted on the frames the server receives."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from signalr.client.errors import SubscriptionKeyRejected
from webpubsub.client import (
    AckTimeout,
    ClientState,
    ConnectFailed,
    NotConnected,
    SendError,
    TraceEvent,
    WebPubSubClient,
    WebPubSubClientError,
    recovery_url,
)
from webpubsub.subprotocol import (
    JSON_SUBPROTOCOL,
    RELIABLE_JSON_SUBPROTOCOL,
    DataType,
    Disconnected,
    GroupMessage,
    InvalidMessage,
)

WAIT = 10.0
Script = Callable[[web.WebSocketResponse, web.Request], Awaitable[None]]


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def connected(connection_id: str = "conn-1", token: str | None = "secret-reconnection-token") -> str:
    frame: dict[str, Any] = {"type": "system", "event": "connected", "userId": "u", "connectionId": connection_id}
    if token is not None:
        frame["reconnectionToken"] = token
    return json.dumps(frame)


def group_message(data: Any, sequence_id: int | None = None, group: str = "g") -> str:
    frame: dict[str, Any] = {"type": "message", "from": "group", "group": group, "dataType": "json", "data": data}
    if sequence_id is not None:
        frame["sequenceId"] = sequence_id
    return json.dumps(frame)


class FakeService:
    """A WebSocket server on 127.0.0.1 that runs ``script`` for each connection and records what clients send."""

    def __init__(self) -> None:
        self.scripts: list[Script] = []  # one per connection, the last one repeats
        self.requests: list[web.Request] = []
        self.received: list[list[dict[str, Any]]] = []  # per connection, the JSON frames the client sent
        self.http_answer: tuple[int, str, str] | None = None  # (status, body, content type) instead of an upgrade
        self.protocols: tuple[str, ...] = (JSON_SUBPROTOCOL, RELIABLE_JSON_SUBPROTOCOL)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/client/hubs/chat", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = int(server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/client/hubs/chat?access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.http_answer is not None:
            status, body, content_type = self.http_answer
            return web.Response(status=status, text=body, content_type=content_type)
        ws = web.WebSocketResponse(protocols=self.protocols, autoping=True)
        await ws.prepare(request)
        index = len(self.received)
        self.received.append([])
        script = self.scripts[min(index, len(self.scripts) - 1)]
        reader = asyncio.create_task(self._read(ws, self.received[index]))
        try:
            await script(ws, request)
        finally:
            if not reader.done():
                await asyncio.wait({reader}, timeout=1.0)
            reader.cancel()
        return ws

    @staticmethod
    async def _read(ws: web.WebSocketResponse, into: list[dict[str, Any]]) -> None:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                into.append(json.loads(message.data))

    def sent(self, kind: str, connection: int | None = None) -> list[dict[str, Any]]:
        frames = self.received if connection is None else [self.received[connection]]
        return [f for frames_of in frames for f in frames_of if f.get("type") == kind]


@pytest.fixture
async def service() -> AsyncIterator[FakeService]:
    running = FakeService()
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[WebPubSubClient]]:
    made: list[WebPubSubClient] = []
    yield made
    for client in made:
        await client.stop()


async def hold(ws: web.WebSocketResponse, seconds: float = WAIT) -> None:
    """Keep the connection open (reading happens elsewhere) until the client closes it or ``seconds`` pass."""
    for _ in range(int(seconds / 0.02)):
        if ws.closed:
            return
        await asyncio.sleep(0.02)


def acking(ws: web.WebSocketResponse, into: list[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
    """A loop that acks every request with an ackId, successfully."""

    async def loop() -> None:
        done = 0
        while not ws.closed:
            for frame in into[done:]:
                if "ackId" in frame:
                    await ws.send_str(json.dumps({"type": "ack", "ackId": frame["ackId"], "success": True}))
            done = len(into)
            await asyncio.sleep(0.01)

    return loop


# ---------------------------------------------------------------------------------------------------------------------


def test_recovery_url_keeps_the_query_and_replaces_old_recovery_values() -> None:
    url = "wss://h/client/hubs/chat?access_token=a.b%2Bc&x=1"
    assert recovery_url(url, "c 1", "t/+=") == (
        "wss://h/client/hubs/chat?access_token=a.b%2Bc&x=1&awps_connection_id=c+1&awps_reconnection_token=t%2F%2B%3D"
    )
    again = recovery_url(recovery_url(url, "old", "old"), "new", "tok")
    assert (
        again == "wss://h/client/hubs/chat?access_token=a.b%2Bc&x=1&awps_connection_id=new&awps_reconnection_token=tok"
    )
    assert recovery_url("ws://h/p", "c", "t") == "ws://h/p?awps_connection_id=c&awps_reconnection_token=t"


async def test_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="protocol must be one of"):
        WebPubSubClient("ws://127.0.0.1:1/client/hubs/chat", protocol="protobuf.webpubsub.azure.v1")
    client = WebPubSubClient("ws://127.0.0.1:1/client/hubs/chat")
    with pytest.raises(NotConnected, match="call start"):
        await client.join_group("g")
    await client.stop()  # stopping a stopped client is fine

    async def not_a_url() -> str:
        return "ftp://example"

    with pytest.raises(ConnectFailed, match="must return a ws://"):
        await WebPubSubClient(not_a_url).start()


async def test_bad_data_is_refused_before_anything_is_sent(
    service: FakeService, clients: list[WebPubSubClient]
) -> None:
    async def script(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected())
        await hold(ws)

    service.scripts = [script]
    client = WebPubSubClient(service.url)
    clients.append(client)
    await client.start()
    with pytest.raises(InvalidMessage, match="Binary data must be bytes"):
        await client.send_to_group("g", "text", DataType.BINARY)
    with pytest.raises(InvalidMessage, match="JSON cannot carry"):
        await client.send_event("e", {1, 2})
    with pytest.raises(WebPubSubClientError, match="needs a stopped client"):
        await client.start()
    await asyncio.sleep(0.1)
    assert service.sent("sendToGroup") == [] and service.sent("event") == []


async def test_hostile_frames_are_ignored_and_the_connection_stays(
    service: FakeService, clients: list[WebPubSubClient]
) -> None:
    async def script(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected())
        await ws.send_str("not json")
        await ws.send_str('{"type":"message","from":"group","dataType":"json","data":1}')  # no group
        await ws.send_str('{"type":"message","from":"group","group":"g","dataType":"binary","data":"***"}')
        await ws.send_str('{"type":"somethingNew","payload":[1,2,3]}')
        await ws.send_bytes(b"\xff\xfe\xfd")
        await ws.send_str("[" * 100_000)
        await ws.send_str('{"type":"ack","ackId":999,"success":true}')  # an ack nobody waits for
        await ws.send_bytes(group_message("valid", 1).encode())  # UTF-8 in a binary frame is fine
        await hold(ws)

    service.scripts = [script]
    trace: list[TraceEvent] = []
    messages: list[GroupMessage] = []
    client = WebPubSubClient(service.url, trace=trace.append, on_group_message=messages.append)
    clients.append(client)
    await client.start()
    await wait_for(lambda: len(messages) == 1, "the valid message")
    assert messages[0].data == "valid"
    assert client.is_connected
    details = [e.detail for e in trace if e.kind == "receive"]
    assert sum(d.startswith("invalid frame, ignored") for d in details) == 5
    assert "a message kind this client does not know, ignored" in details
    assert any("nested deeper" in d for d in details)


async def test_connect_failures_say_why(service: FakeService) -> None:
    service.protocols = ("something.else",)
    with pytest.raises(ConnectFailed, match=r"not the subprotocol json\.reliable\.webpubsub\.azure\.v1"):
        await WebPubSubClient(service.url).start()
    service.protocols = (JSON_SUBPROTOCOL, RELIABLE_JSON_SUBPROTOCOL)

    async def silent(ws: web.WebSocketResponse, request: web.Request) -> None:
        await hold(ws, 3.0)

    service.scripts = [silent]
    started = time.monotonic()
    with pytest.raises(ConnectFailed, match=r"sent no connected message within 0\.5 s"):
        await WebPubSubClient(service.url, start_timeout=0.5).start()
    assert time.monotonic() - started < 3.0

    async def declines(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str('{"type":"system","event":"disconnected","message":"Invalid value of hub."}')
        await ws.close(code=1008)

    service.scripts = [declines]
    with pytest.raises(ConnectFailed, match=r"before its connected message \(code 1008\): Invalid value of hub\."):
        await WebPubSubClient(service.url).start()


async def test_gateway_and_service_refusals(service: FakeService) -> None:
    service.http_answer = (
        401,
        '{ "statusCode": 401, "message": "Access denied due to missing subscription key." }',
        "application/json",
    )
    with pytest.raises(SubscriptionKeyRejected, match="missing subscription key"):
        await WebPubSubClient(service.url).start()
    service.http_answer = (404, '{ "statusCode": 404, "message": "Resource not found" }', "application/json")
    with pytest.raises(ConnectFailed, match=r"the gateway at .* has no API for /client/hubs/chat"):
        await WebPubSubClient(service.url).start()
    service.http_answer = (400, "Invalid value of 'hub'. token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln", "text/plain")
    with pytest.raises(ConnectFailed) as info:
        await WebPubSubClient(service.url).start()
    assert "refused with HTTP 400: Invalid value of 'hub'" in str(info.value)
    assert "eyJzdWIiOiJ1In0" not in str(info.value)


async def test_ack_outcomes(service: FakeService, clients: list[WebPubSubClient]) -> None:
    async def script(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected())
        answers = {
            1: {"success": False, "error": {"name": "InternalServerError", "message": "try again"}},
            2: {
                "success": False,
                "error": {"name": "Duplicate", "message": "Message with ack-id: 2 has been processed"},
            },
            3: {"success": False},
        }
        done = 0
        while not ws.closed:
            frames = service.received[0]
            for frame in frames[done:]:
                answer = answers.get(frame.get("ackId", 0))
                if answer is not None:
                    await ws.send_str(json.dumps({"type": "ack", "ackId": frame["ackId"], **answer}))
            done = len(frames)
            await asyncio.sleep(0.01)

    service.scripts = [script]
    client = WebPubSubClient(service.url, ack_timeout=0.5)
    clients.append(client)
    await client.start()
    with pytest.raises(SendError) as failed:
        await client.send_event("e", "x", DataType.TEXT)
    assert (failed.value.name, failed.value.message, failed.value.ack_id) == ("InternalServerError", "try again", 1)
    assert await client.join_group("g") == 2  # Duplicate: already done, a success
    with pytest.raises(SendError) as no_detail:
        await client.leave_group("g")
    assert no_detail.value.name == "Failed"
    started = time.monotonic()
    with pytest.raises(AckTimeout) as timeout:
        await client.send_to_group("g", 1)
    assert 0.4 < time.monotonic() - started < 3.0
    assert timeout.value.name == "Timeout" and timeout.value.ack_id == 4
    assert client.is_connected
    assert [f["ackId"] for f in service.received[0]] == [1, 2, 3, 4]


async def test_sequence_acks_are_batched_and_duplicates_dropped(
    service: FakeService, clients: list[WebPubSubClient]
) -> None:
    quick: list[float] = []

    async def script(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected())
        for n in (1, 2, 3, 2, 3):  # 2 and 3 again: a resend the client has seen
            await ws.send_str(group_message(n, n))
        # Right after the once-a-second ack, the next one is about a second away …
        await wait_for(lambda: service.sent("sequenceAck") != [], "the first sequenceAck")
        sent = time.monotonic()
        await ws.send_str(group_message(400, 400))  # … but 397 past the previous sequenceId is acknowledged at once
        await wait_for(lambda: len(service.sent("sequenceAck")) >= 2, "the quick sequenceAck")
        quick.append(time.monotonic() - sent)
        await hold(ws)

    service.scripts = [script]
    messages: list[GroupMessage] = []
    client = WebPubSubClient(service.url, on_group_message=messages.append)
    clients.append(client)
    await client.start()
    await wait_for(lambda: quick != [], "two sequenceAcks")
    acks = service.sent("sequenceAck")
    assert acks[0] == {"type": "sequenceAck", "sequenceId": 3}  # one ack for the first five frames
    assert acks[1] == {"type": "sequenceAck", "sequenceId": 400}
    assert quick[0] < 0.5
    assert [m.data for m in messages] == [1, 2, 3, 400]


async def test_plain_json_sends_no_sequence_acks(service: FakeService, clients: list[WebPubSubClient]) -> None:
    async def script(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected(token=None))
        await ws.send_str(group_message("a"))
        await hold(ws)

    service.scripts = [script]
    client = WebPubSubClient(service.url, protocol=JSON_SUBPROTOCOL)
    clients.append(client)
    await client.start()
    assert service.requests[0].headers["Sec-WebSocket-Protocol"] == JSON_SUBPROTOCOL
    await asyncio.sleep(1.3)
    assert service.sent("sequenceAck") == []


async def test_close_1008_means_no_recovery_but_a_new_connection(
    service: FakeService, clients: list[WebPubSubClient]
) -> None:
    async def first(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-1"))
        await asyncio.sleep(0.2)
        await ws.send_str('{"type":"system","event":"disconnected","message":"The connection is removed."}')
        await ws.close(code=1008)

    async def second(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-2"))
        await hold(ws)

    service.scripts = [first, second]
    urls = 0

    async def provider() -> str:
        nonlocal urls
        urls += 1
        return service.url

    disconnected: list[Disconnected | None] = []
    client = WebPubSubClient(provider, on_disconnected=disconnected.append, reconnect_delay=0.1)
    clients.append(client)
    await client.start()
    await wait_for(lambda: client.connection_id == "conn-2" and client.is_connected, "the new connection")
    assert urls == 2
    assert disconnected == [Disconnected("The connection is removed.")]
    assert all("awps_connection_id" not in r.query_string for r in service.requests)


async def test_keep_alive_pings_and_drops_a_silent_connection(
    service: FakeService, clients: list[WebPubSubClient]
) -> None:
    async def answers_pings(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-1"))
        answered = 0
        while not ws.closed:
            pings = service.sent("ping", 0)
            for _ in pings[answered:]:
                await ws.send_str('{"type":"pong"}')
            answered = len(pings)
            if answered >= 3:
                break  # and from now on stays silent
            await asyncio.sleep(0.02)
        await hold(ws)

    async def resumed(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-1"))
        await hold(ws)

    service.scripts = [answers_pings, resumed]
    trace: list[TraceEvent] = []
    client = WebPubSubClient(service.url, keep_alive_interval=0.2, keep_alive_timeout=2.5, trace=trace.append)
    clients.append(client)
    await client.start()
    await wait_for(lambda: len(service.requests) == 2, "the recovery after the silence")
    assert len(service.sent("ping", 0)) >= 3
    resume = service.requests[1].query
    assert resume["awps_connection_id"] == "conn-1"
    assert resume["awps_reconnection_token"] == "secret-reconnection-token"
    assert resume["access_token"]  # the original query stays
    assert any(e.kind == "close" and "nothing received for 2.5 s" in e.detail for e in trace)
    assert any(e.kind == "ping" for e in trace) and any(e.detail == "pong" for e in trace)
    assert "secret-reconnection-token" not in "\n".join(repr(e) for e in trace)
    await wait_for(lambda: client.is_connected, "the resumed connection")


async def test_an_oversized_frame_drops_the_connection_and_it_recovers(
    service: FakeService, clients: list[WebPubSubClient]
) -> None:
    async def first(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-1"))
        await ws.send_str(group_message("x" * 70_000, 1))
        await hold(ws, 2.0)

    async def resumed(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-1"))
        await ws.send_str(group_message("small", 2))
        await hold(ws)

    service.scripts = [first, resumed]
    messages: list[GroupMessage] = []
    client = WebPubSubClient(service.url, max_message_size=65536, on_group_message=messages.append)
    clients.append(client)
    await client.start()
    await wait_for(lambda: [m.data for m in messages] == ["small"], "the message after the recovery")
    assert "awps_connection_id=conn-1" in service.requests[1].query_string


async def test_callbacks_may_be_async_or_fail(service: FakeService, clients: list[WebPubSubClient]) -> None:
    async def script(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected())
        for n in range(1, 4):
            await ws.send_str(group_message(n, n))
        await hold(ws)

    service.scripts = [script]
    order: list[int] = []

    async def slow(message: GroupMessage) -> None:
        await asyncio.sleep(0.05 if message.data == 1 else 0)
        order.append(message.data)
        if message.data == 2:
            raise RuntimeError("a faulty handler")

    def bad_trace(event: TraceEvent) -> None:
        raise RuntimeError("a faulty trace view")

    client = WebPubSubClient(service.url, on_group_message=slow, trace=bad_trace)
    clients.append(client)
    await client.start()
    await wait_for(lambda: len(order) == 3, "three messages")
    assert order == [1, 2, 3]  # an async callback is awaited in turn: order is kept
    assert client.is_connected


async def test_stop_while_recovering(service: FakeService) -> None:
    async def first(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-1"))
        await asyncio.sleep(0.1)
        await ws.close(code=1011)

    async def refuses(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.close(code=1011)

    service.scripts = [first, refuses]
    stopped: list[BaseException | None] = []
    client = WebPubSubClient(service.url, on_stopped=stopped.append, recovery_interval=0.1)
    await client.start()
    await wait_for(lambda: client.state is ClientState.RECOVERING and len(service.requests) >= 3, "recovery attempts")
    pending = asyncio.create_task(client.send_event("e", 1))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(client.stop(), 5.0)
    assert client.state is ClientState.STOPPED and stopped == [None]
    with pytest.raises(NotConnected, match="the client stopped"):
        await asyncio.wait_for(pending, 2.0)


async def test_stop_from_a_callback(service: FakeService) -> None:
    async def script(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected())
        await ws.send_str(group_message("stop now", 1))
        await hold(ws)

    stopped: list[BaseException | None] = []
    client: WebPubSubClient

    async def on_group_message(message: GroupMessage) -> None:
        await client.stop()

    service.scripts = [script]
    client = WebPubSubClient(service.url, on_group_message=on_group_message, on_stopped=stopped.append)
    await client.start()
    await wait_for(lambda: stopped == [None], "the stop")
    await asyncio.sleep(0.3)
    assert client.state is ClientState.STOPPED
    assert len(service.requests) == 1  # no recovery, no reconnect after a stop


async def test_a_flood_before_the_connected_message_is_refused(service: FakeService) -> None:
    async def script(ws: web.WebSocketResponse, request: web.Request) -> None:
        for n in range(1500):
            if ws.closed:
                return
            await ws.send_str(group_message(n))
        await hold(ws, 3.0)

    service.scripts = [script]
    with pytest.raises(ConnectFailed, match="1001 messages and no connected message"):
        await WebPubSubClient(service.url).start()


async def test_a_fixed_url_refused_with_401_stops_reconnecting(service: FakeService) -> None:
    async def first(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected(token=None))
        await asyncio.sleep(0.1)
        service.http_answer = (401, "The access token is expired.", "text/plain")
        await ws.close(code=1011)

    service.scripts = [first]
    stopped: list[BaseException | None] = []
    client = WebPubSubClient(service.url, protocol=JSON_SUBPROTOCOL, reconnect_delay=0.1, on_stopped=stopped.append)
    await client.start()
    await wait_for(lambda: stopped != [], "the client to stop")
    assert len(service.requests) == 2  # one refused attempt, not one a second forever
    assert "no longer accepted" in str(stopped[0]) and "URL provider" in str(stopped[0])
    assert client.state is ClientState.STOPPED


async def test_stop_while_starting(service: FakeService) -> None:
    async def slow(ws: web.WebSocketResponse, request: web.Request) -> None:
        await asyncio.sleep(0.5)
        if not ws.closed:
            await ws.send_str(connected())
        await hold(ws, 2.0)

    service.scripts = [slow]
    stopped: list[BaseException | None] = []
    client = WebPubSubClient(service.url, on_stopped=stopped.append)
    starting = asyncio.create_task(client.start())
    await wait_for(lambda: len(service.requests) == 1, "the upgrade")
    await client.stop()
    with pytest.raises((NotConnected, WebPubSubClientError)):
        await asyncio.wait_for(starting, 5.0)
    assert client.state is ClientState.STOPPED and not client.is_connected
    assert stopped == [None]
    # It can start again afterwards.
    client.on_stopped = None
    await asyncio.wait_for(client.start(), 5.0)
    assert client.is_connected
    await client.stop()


async def test_a_resume_answered_with_another_connection_is_a_new_connection(
    service: FakeService, clients: list[WebPubSubClient]
) -> None:
    async def first(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-1"))
        await ws.send_str(group_message("old", 5))
        await asyncio.sleep(0.3)
        await ws.close(code=1011)

    async def other(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.send_str(connected("conn-9"))
        await ws.send_str(group_message("new", 1))  # sequence ids start again on the new connection
        await hold(ws)

    service.scripts = [first, other]
    seen: list[str] = []
    messages: list[GroupMessage] = []
    client = WebPubSubClient(
        service.url, on_connected=lambda c: seen.append(c.connection_id), on_group_message=messages.append
    )
    clients.append(client)
    await client.start()
    await wait_for(lambda: seen == ["conn-1", "conn-9"], "the second connected callback")
    await wait_for(lambda: [m.data for m in messages] == ["old", "new"], "the new connection's first message")
    assert client.connection_id == "conn-9"
    assert service.requests[1].query["awps_connection_id"] == "conn-1"
