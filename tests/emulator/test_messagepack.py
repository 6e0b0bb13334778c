"""MessagePack clients of the emulator over raw sockets: the handshake picks the protocol, WebSockets carry it in
binary frames, LongPolling in bodies, ServerSentEvents refuses it; fan-out encodes once per protocol; the upstream gets
MessagePack bodies and the caller its Completion in MessagePack; Default mode routes MessagePack clients; hostile
MessagePack closes only its own connection (``docs/emulator.md``, ``docs/protocol.md`` §4.1)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web

from signalr.handshake import encode_handshake_request
from signalr.json_protocol import JSON
from signalr.messagepack_protocol import MESSAGEPACK
from signalr.messages import Close, Completion, HubMessage, Invocation, Ping, StreamInvocation
from signalr.service_protocol import BroadcastData, CloseConnection, ConnectionData, OpenConnection

from .conftest import HANDSHAKE, Emulator, EmulatorFactory, UpstreamCall, UpstreamReceiver, records, ws_records
from .fake_app_server import FakeAppServer
from .test_sse_longpolling import EventStream

MP = MESSAGEPACK
MP_HANDSHAKE = encode_handshake_request("messagepack", 1)
HANDSHAKE_OK = b"{}\x1e"
V2 = "?api-version=2022-06-01"


def mp_messages(data: bytes) -> list[HubMessage]:
    """Every MessagePack message of a complete frame or body."""
    return [MP.decode(payload) for payload in MP.split(data)]


def frame(value: Any) -> bytes:
    """``value`` packed and framed with its VarInt length, as a MessagePack client writes one message."""
    return MP.frame(msgpack.packb(value))


async def binary_frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> bytes:
    message = await ws.receive(timeout=timeout)
    assert message.type is aiohttp.WSMsgType.BINARY, f"expected a binary frame, got {message.type}: {message.data!r}"
    data: bytes = message.data
    return data


async def next_messages(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> list[HubMessage]:
    """The messages of the next binary frame that holds more than pings."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = [m for m in mp_messages(await binary_frame(ws, max(0.05, deadline - loop.time()))) if m != Ping()]
        if got:
            return got


async def open_mp_ws(emulator: Emulator, hub: str = "chat") -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A MessagePack WebSocket connection after its handshake, and its connectionId."""
    ws, connection_id = await emulator.connect_ws(hub)
    await ws.send_bytes(MP_HANDSHAKE)
    assert await binary_frame(ws) == HANDSHAKE_OK  # the answer is JSON text, in the protocol's (binary) frame
    return ws, connection_id


async def open_mp_lp(emulator: Emulator) -> tuple[str, str]:
    """A MessagePack LongPolling connection after its handshake: (connect URL, connectionId)."""
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = emulator.auth(emulator.client_token())
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 200
    async with emulator.session.post(url, data=MP_HANDSHAKE, headers=headers) as response:
        assert response.status == 200
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 200
        assert await response.read() == HANDSHAKE_OK
    return url, negotiated["connectionId"]


async def poll(emulator: Emulator, url: str) -> tuple[int, str, bytes]:
    async with emulator.session.get(url, headers=emulator.auth(emulator.client_token())) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


# --- the handshake and the transports --------------------------------------------------------------------------


async def test_websocket_client_gets_binary_frames_in_messagepack(emulator: Emulator) -> None:
    ws, _ = await open_mp_ws(emulator)
    await emulator.broadcast("broadcastMessage", "alice", "hi")
    data = await binary_frame(ws)
    assert data == MP.encode(Invocation("broadcastMessage", ("alice", "hi")))
    assert msgpack.unpackb(MP.split(data)[0]) == [1, {}, None, "broadcastMessage", ["alice", "hi"], []]
    await ws.close()


async def test_the_handshake_answer_and_following_messages_share_one_binary_frame(emulator: Emulator) -> None:
    ws, _ = await emulator.connect_ws()
    await ws.send_bytes(MP_HANDSHAKE + frame([1, {}, "7", "nobody", []]))
    data = await binary_frame(ws)
    if data == HANDSHAKE_OK:  # the Completion may leave in a frame of its own
        data += await binary_frame(ws)
    assert data.startswith(HANDSHAKE_OK)
    assert mp_messages(data[len(HANDSHAKE_OK) :]) == [
        Completion.with_error("7", "No upstream is configured for hub 'chat'.")
    ]
    await ws.close()


async def test_keepalive_pings_are_messagepack(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(keepalive_interval=0.3)
    ws, _ = await open_mp_ws(emulator)
    assert await binary_frame(ws, timeout=3) == MP.ping
    await ws.close()


async def test_longpolling_carries_messagepack_bodies_both_ways(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = emulator_with_upstream
    url, connection_id = await open_mp_lp(emulator)
    headers = emulator.auth(emulator.client_token())
    await emulator.broadcast("broadcastMessage", "to", "lp")
    status, content_type, body = await poll(emulator, url)
    # As ASP.NET Core's LongPolling transport answers any data: application/octet-stream.
    assert (status, content_type) == (200, "application/octet-stream")
    assert mp_messages(body) == [Invocation("broadcastMessage", ("to", "lp"))]
    # Two messages in one binary POST body, each reaches the upstream.
    sent = frame([1, {}, None, "broadcastMessage", ["a", "1"]]) + frame([1, {}, None, "broadcastMessage", ["b", "2"]])
    async with emulator.session.post(url, data=sent, headers=headers) as response:
        assert response.status == 200
    first = await upstream_receiver.event("broadcastMessage", connection_id)
    await upstream_receiver.wait_for(lambda c: c is not first and c.headers.get("x-asrs-event") == "broadcastMessage")
    messages = [c for c in upstream_receiver.calls if c.headers.get("x-asrs-category") == "messages"]
    assert [msgpack.unpackb(c.body)[4] for c in messages] == [["a", "1"], ["b", "2"]]


async def test_messagepack_on_server_sent_events_gets_the_handshake_error(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    response = await emulator.session.get(
        url + f"&access_token={emulator.client_token()}", headers={"Accept": "text/event-stream"}
    )
    try:
        assert response.status == 200
        stream = EventStream(response)
        async with emulator.session.post(
            url, data=MP_HANDSHAKE, headers=emulator.auth(emulator.client_token())
        ) as posted:
            assert posted.status == 200
        assert records(await stream.next_event()) == [
            {
                "error": "Cannot use the 'messagepack' protocol on the current transport. The transport does not "
                "support 'Binary' transfer format."
            }
        ]
        with pytest.raises(EOFError):
            await stream.next_event()
    finally:
        response.close()
    status, _, _ = await emulator.rest("HEAD", f"/api/hubs/chat/connections/{negotiated['connectionId']}{V2}")
    assert status == 404


async def test_a_message_of_the_largest_size_fits_a_websocket_frame_one_byte_more_does_not(
    start_emulator: EmulatorFactory,
) -> None:
    """The frame limit leaves room for the longest framing (MessagePack's VarInt), so a message at the limit passes."""
    emulator = await start_emulator(max_message_size=1000)
    ws, _ = await open_mp_ws(emulator)
    head = msgpack.packb([1, {}, None, "x", [""]])[:-1]  # the arguments' one string still to come
    filler = 1000 - len(head) - 3  # str16 header: 3 bytes
    exact = head + b"\xda" + filler.to_bytes(2, "big") + b"y" * filler
    assert len(exact) == 1000
    await ws.send_bytes(MP.frame(exact))
    await emulator.broadcast("broadcastMessage", "still", "open")
    assert await next_messages(ws) == [Invocation("broadcastMessage", ("still", "open"))]
    await ws.send_bytes(MP.frame(exact + b"\x00"))  # a 1001-byte message: refused from its length prefix
    assert await next_messages(ws) == [Close("The message exceeded the maximum message size of 1000 bytes.")]
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE


# --- fan-out -----------------------------------------------------------------------------------------------------


async def test_json_and_messagepack_clients_see_the_same_broadcasts(emulator: Emulator) -> None:
    json_ws, json_id = await emulator.open_ws()
    mp_ws, mp_id = await open_mp_ws(emulator)
    for path in (f"/api/hubs/chat/:send{V2}", f"/api/hubs/chat/connections/{mp_id}/:send{V2}"):
        status, _, _ = await emulator.rest("POST", path, {"target": "news", "arguments": [path[-30:], 1, None]})
        assert status == 202
    message = await json_ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.TEXT
    assert records(message.data)[0]["arguments"][1:] == [1, None]
    assert await next_messages(mp_ws) == [Invocation("news", (f"/api/hubs/chat/:send{V2}"[-30:], 1, None))]
    got = await next_messages(mp_ws)
    assert got == [Invocation("news", (f"/api/hubs/chat/connections/{mp_id}/:send{V2}"[-30:], 1, None))]
    status, _, _ = await emulator.rest("HEAD", f"/api/hubs/chat/connections/{json_id}{V2}")
    assert status == 200
    await json_ws.close()
    await mp_ws.close()


async def test_one_encode_per_protocol_per_broadcast_shared_by_its_recipients(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sockets = [(await emulator.open_ws())[0] for _ in range(3)] + [(await open_mp_ws(emulator))[0] for _ in range(3)]
    expected = [JSON.encode(Invocation("t", ("once",))), MP.encode(Invocation("t", ("once",)))]
    encodes: dict[str, int] = {"json": 0, "messagepack": 0}

    def counting(name: str, encode: Callable[[HubMessage], bytes]) -> Callable[[HubMessage], bytes]:
        def encode_counted(message: HubMessage) -> bytes:
            encodes[name] += 1
            return encode(message)

        return encode_counted

    for protocol in (JSON, MP):
        monkeypatch.setattr(protocol, "encode", counting(protocol.name, protocol.encode))
    assert emulator.running is not None
    hub = emulator.running.service.find_hub("chat")
    assert hub is not None
    status, _, _ = await emulator.rest("POST", f"/api/hubs/chat/:send{V2}", {"target": "t", "arguments": ["once"]})
    assert status == 202
    assert encodes == {"json": 1, "messagepack": 1}
    received = []
    for ws in sockets:
        message = await ws.receive(timeout=5)
        received.append(message.data.encode() if message.type is aiohttp.WSMsgType.TEXT else message.data)
    assert len(set(received[:3])) == 1 and len(set(received[3:])) == 1
    assert [received[0], received[3]] == expected
    # Only JSON clients left in a group: a group send encodes JSON only.
    for connection in hub.connections.values():
        if connection.protocol is JSON:
            hub.add_to_group("json-only", connection.connection_id)
    await emulator.rest("POST", f"/api/hubs/chat/groups/json-only/:send{V2}", {"target": "t", "arguments": ["g"]})
    assert encodes == {"json": 2, "messagepack": 1}
    for ws in sockets:
        await ws.close()


async def test_arguments_messagepack_cannot_carry_are_400_and_reach_nobody(emulator: Emulator) -> None:
    json_ws, _ = await emulator.open_ws()
    body = {"target": "t", "arguments": [2**70]}
    status, _, _ = await emulator.rest("POST", f"/api/hubs/chat/:send{V2}", body)
    assert status == 202  # JSON carries any integer
    assert (await ws_records(json_ws))[0]["arguments"] == [2**70]
    mp_ws, _ = await open_mp_ws(emulator)
    status, response, _ = await emulator.rest("POST", f"/api/hubs/chat/:send{V2}", body)
    assert status == 400
    assert b"cannot be sent as a hub message" in response
    await emulator.broadcast("after", "it")
    assert (await ws_records(json_ws))[0]["target"] == "after"  # nothing of the refused send came first
    assert await next_messages(mp_ws) == [Invocation("after", ("it",))]
    await json_ws.close()
    await mp_ws.close()


async def test_group_and_user_sends_reach_messagepack_clients(emulator: Emulator) -> None:
    ws, connection_id = await emulator.connect_ws(token=emulator.client_token(claims={"asrs.s.uid": "mia"}))
    await ws.send_bytes(MP_HANDSHAKE)
    assert await binary_frame(ws) == HANDSHAKE_OK
    status, _, _ = await emulator.rest("PUT", f"/api/hubs/chat/groups/g/connections/{connection_id}{V2}")
    assert status == 200
    await emulator.rest("POST", f"/api/hubs/chat/groups/g/:send{V2}", {"target": "group", "arguments": [{"k": [1]}]})
    assert await next_messages(ws) == [Invocation("group", ({"k": [1]},))]
    await emulator.rest("POST", f"/api/hubs/chat/users/mia/:send{V2}", {"target": "user", "arguments": [1.5, True]})
    assert await next_messages(ws) == [Invocation("user", (1.5, True))]
    await ws.close()


# --- upstream ----------------------------------------------------------------------------------------------------


async def test_invocation_body_is_the_unframed_message_as_x_msgpack(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    ws, connection_id = await open_mp_ws(emulator_with_upstream)
    # With headers (a client's leak): the upstream gets the message re-encoded without them.
    await ws.send_bytes(frame([1, {"Authorization": "Bearer x"}, None, "broadcastMessage", ["a", {"b": 1}]]))
    call = await upstream_receiver.event("broadcastMessage", connection_id)
    assert call.signature_ok
    assert call.headers["content-type"] == "application/x-msgpack"
    assert msgpack.unpackb(call.body) == [1, {}, None, "broadcastMessage", ["a", {"b": 1}], []]
    connected = await upstream_receiver.event("connected", connection_id)
    assert connected.headers["content-type"] == "application/json" and connected.body == b'{"type":10}'
    await ws.close()
    disconnected = await upstream_receiver.event("disconnected", connection_id)
    assert disconnected.headers["content-type"] == "application/json"


def _answer_in(protocol_name: str) -> Callable[[UpstreamCall], web.Response]:
    """An upstream answering every invocation with a Completion in ``protocol_name``, with its media type."""

    def respond(call: UpstreamCall) -> web.Response:
        if call.headers.get("x-asrs-category") != "messages":
            return web.Response()
        invocation_id = msgpack.unpackb(call.body)[2]
        completion = Completion.with_result(invocation_id, ["answer", 42])
        if protocol_name == "messagepack":
            return web.Response(body=MP.encode(completion), content_type="application/x-msgpack")
        return web.Response(body=JSON.encode(completion), content_type="application/json")

    return respond


@pytest.mark.parametrize("answered_in", ["messagepack", "json"])
async def test_the_completion_reaches_the_caller_in_messagepack(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver, answered_in: str
) -> None:
    """A MessagePack answer passes as it is (what the Functions extension sends); a JSON one is converted."""
    upstream_receiver.responder = _answer_in(answered_in)
    ws, _ = await open_mp_ws(emulator_with_upstream)
    await ws.send_bytes(frame([1, {}, "5", "echo", ["x"]]))
    data = await binary_frame(ws)
    assert data == MP.encode(Completion.with_result("5", ["answer", 42]))
    await ws.close()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (204, b"", "text/plain", Completion("6")),
        (200, b"", "application/x-msgpack", Completion("6")),
        (500, b"", "text/plain", Completion.with_error("6", "Invocation failed, status code 500")),
        (
            200,
            b"\x05\x93\x03",  # cut short
            "application/x-msgpack",
            Completion.with_error(
                "6", "Invocation failed, error: the upstream response is not a complete hub protocol message."
            ),
        ),
        (
            200,
            b'{"type":3,"invocationId":"6","result":1}\x1e',  # JSON without saying so: not converted
            "text/plain",
            Completion.with_error(
                "6", "Invocation failed, error: the upstream response is not a complete hub protocol message."
            ),
        ),
    ],
    ids=["204", "empty", "500", "cut", "unlabelled-json"],
)
async def test_upstream_failures_reach_the_caller_in_messagepack(
    emulator_with_upstream: Emulator,
    upstream_receiver: UpstreamReceiver,
    status: int,
    body: bytes,
    content_type: str,
    expected: Completion,
) -> None:
    upstream_receiver.responder = lambda call: web.Response(status=status, body=body, content_type=content_type)
    ws, _ = await open_mp_ws(emulator_with_upstream)
    await ws.send_bytes(frame([1, {}, "6", "echo", []]))
    assert await next_messages(ws) == [expected]
    await ws.close()


async def test_invocations_nobody_answers_and_streams_get_messagepack_errors(emulator: Emulator) -> None:
    ws, _ = await open_mp_ws(emulator)
    await ws.send_bytes(frame([1, {}, "1", "echo", []]))
    assert await next_messages(ws) == [Completion.with_error("1", "No upstream is configured for hub 'chat'.")]
    await ws.send_bytes(MP.encode(StreamInvocation("2", "counter", (3,))))
    error = "Streaming hub methods are not supported in serverless mode."
    assert await next_messages(ws) == [Completion.with_error("2", error)]
    await ws.close()


async def test_arguments_too_deep_to_pass_on_close_the_connection_with_a_reason(
    emulator_with_upstream: Emulator,
) -> None:
    """MessagePack reads 1024 levels but writes 512: a message that decoded but cannot be re-encoded ends its client."""
    ws, _ = await open_mp_ws(emulator_with_upstream)
    nested = b"\x91" * 700 + b"\xc0"
    await ws.send_bytes(MP.frame(b"\x96\x01\x80\xc0\xa1t\x91" + nested + b"\x90"))
    closing = await next_messages(ws)
    assert closing == [Close("The message is nested too deeply to be passed on to the upstream.")]
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE


# --- Default mode ------------------------------------------------------------------------------------------------


@pytest.fixture
async def default_emulator(start_emulator: EmulatorFactory) -> Emulator:
    return await start_emulator(service_mode="default")


async def test_a_messagepack_client_is_routed_with_its_protocol_and_gets_binary_frames(
    default_emulator: Emulator,
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    ws, cid = await default_emulator.connect_ws()
    first = frame([1, {}, None, "hello", []])
    await ws.send_bytes(MP_HANDSHAKE + first)
    opened = await server.expect(OpenConnection)
    assert opened.connection_id == cid and opened.ext == {3: "messagepack"} and opened.protocol == "messagepack"
    assert await server.expect(ConnectionData) == ConnectionData(cid, MP_HANDSHAKE + first)
    pushed = MP.encode(Invocation("broadcastMessage", ("app", "server")))
    await server.send(ConnectionData(cid, HANDSHAKE_OK + pushed))
    assert await binary_frame(ws) == HANDSHAKE_OK + pushed  # the app server's bytes, as they are, in a binary frame
    later = frame([1, {}, "1", "echo", ["later"]])
    await ws.send_bytes(later)
    assert await server.expect(ConnectionData) == ConnectionData(cid, later)  # unread, as sent
    # The service's own messages to it are MessagePack too: a REST broadcast and the Close of a REST close.
    await default_emulator.broadcast("rest", "call")
    assert await next_messages(ws) == [Invocation("rest", ("call",))]
    status, _, _ = await default_emulator.rest("DELETE", f"/api/hubs/chat/connections/{cid}{V2}&reason=bye")
    assert status == 200
    assert await next_messages(ws) == [Close("bye")]
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    assert (await server.expect(CloseConnection)).error == "bye"


async def test_an_app_server_handshake_error_reaches_a_messagepack_client_as_text(default_emulator: Emulator) -> None:
    """The handshake did not succeed, so no binary format became active: the error is a text frame."""
    server = await FakeAppServer.connect(default_emulator)
    ws, cid = await default_emulator.connect_ws()
    await ws.send_bytes(MP_HANDSHAKE)
    await server.expect(OpenConnection)
    await server.expect(ConnectionData)
    await server.send(ConnectionData(cid, b'{"error":"nope"}\x1e'))
    assert await ws_records(ws) == [{"error": "nope"}]
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE


async def test_app_server_payloads_go_to_each_client_in_its_protocol(default_emulator: Emulator) -> None:
    server = await FakeAppServer.connect(default_emulator)
    json_ws, json_id = await default_emulator.connect_ws()
    await json_ws.send_str(HANDSHAKE.decode())
    await server.accept()
    assert await ws_records(json_ws) == [{}]
    mp_ws, mp_id = await default_emulator.connect_ws()
    await mp_ws.send_bytes(MP_HANDSHAKE)
    await server.expect(OpenConnection)
    await server.expect(ConnectionData)
    await server.send(ConnectionData(mp_id, HANDSHAKE_OK))
    assert await binary_frame(mp_ws) == HANDSHAKE_OK
    message = Invocation("broadcastMessage", ("both", "protocols"))
    await server.send(BroadcastData((), {"json": JSON.encode(message), "MessagePack": MP.encode(message)}))
    assert await ws_records(json_ws) == [{"type": 1, "target": "broadcastMessage", "arguments": ["both", "protocols"]}]
    assert await binary_frame(mp_ws) == MP.encode(message)
    # No payload for a protocol: its clients get nothing.
    await server.send(BroadcastData((), {"json": JSON.encode(Invocation("json-only"))}))
    assert await ws_records(json_ws) == [{"type": 1, "target": "json-only", "arguments": []}]
    with pytest.raises(TimeoutError):
        await mp_ws.receive(timeout=0.3)
    # A dropped server connection ends the MessagePack client with a MessagePack Close that allows reconnecting.
    await server.close()
    assert await next_messages(mp_ws) == [
        Close("Server connection dropped: the app server carrying this connection went away.", allow_reconnect=True)
    ]
    assert json_id != mp_id
    await json_ws.close()


async def test_classic_mode_without_an_app_server_serves_a_messagepack_client_itself(
    upstream_receiver: UpstreamReceiver, start_emulator: EmulatorFactory
) -> None:
    emulator = await start_emulator(service_mode="classic", **upstream_receiver.emulator_settings)
    ws, connection_id = await open_mp_ws(emulator)
    await ws.send_bytes(frame([1, {}, None, "broadcastMessage", ["classic"]]))
    call = await upstream_receiver.event("broadcastMessage", connection_id)
    assert call.headers["content-type"] == "application/x-msgpack"
    assert msgpack.unpackb(call.body)[4] == ["classic"]
    await ws.close()


async def test_messagepack_on_server_sent_events_is_refused_by_the_service_not_routed(
    default_emulator: Emulator,
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    negotiated = await default_emulator.negotiate()
    url = default_emulator.connect_url(negotiated["connectionToken"])
    response = await default_emulator.session.get(
        url + f"&access_token={default_emulator.client_token()}", headers={"Accept": "text/event-stream"}
    )
    try:
        stream = EventStream(response)
        headers = default_emulator.auth(default_emulator.client_token())
        async with default_emulator.session.post(url, data=MP_HANDSHAKE, headers=headers) as posted:
            assert posted.status == 200
        error = records(await stream.next_event())[0]["error"]
        assert "does not support 'Binary' transfer format" in error
    finally:
        response.close()
    with pytest.raises(TimeoutError):
        await server.expect(OpenConnection, timeout=0.3)


# --- hostile MessagePack -----------------------------------------------------------------------------------------

HOSTILE_FRAMES: list[bytes] = [
    b"\xff\xff\xff\xff\x7f",  # a length prefix of 2 GiB or more
    b"\x80\x80\x80\x80\x80\x01",  # a prefix longer than five bytes
    b"\xfe\xff\x3f" + b"\x00" * 8,  # a declared length over the limit, refused before the body arrives
    MP.frame(b"\xc1"),  # a byte MessagePack never uses
    frame({"type": 1}),  # not an array
    frame([]),
    frame(["1"]),  # the type is not an integer
    frame([1, {}, None, 5, []]),  # the target is not a string
    frame([1, {}, None, "t", "not an array"]),
    frame([1, "headers", None, "t", []]),
    frame([1, {1: 2}, None, "t", []]),  # a header that is not string → string
    frame([3, {}, "1", 9, "x"]),  # an unknown result kind
    frame([99]),  # an unknown message type: the server closes
    MP.frame(b"\x92\x01"),  # an array cut short inside its message
    MP.frame(b"\x91\x01\x01"),  # bytes after the array
    MP.frame(b"\xdd\xff\xff\xff\xff"),  # an array declaring four billion elements
    MP.frame(b"\x95\x01\x80\xc0\xa2\xff\xfe\x90"),  # a target that is not UTF-8
    MP.frame(b"\x91" * 2000 + b"\xc0"),  # nesting deeper than the reader allows (1024)
    frame([1, {}, None, "t", [msgpack.ExtType(5, b"x")]]),  # an extension type
]


async def _assert_closed_with_a_reason(ws: aiohttp.ClientWebSocketResponse) -> None:
    messages = await next_messages(ws)
    assert isinstance(messages[-1], Close) and messages[-1].error, messages
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1000


async def _assert_serving(emulator: Emulator) -> None:
    good, _ = await open_mp_ws(emulator)
    await emulator.broadcast("broadcastMessage", "still", "serving")
    assert await next_messages(good) == [Invocation("broadcastMessage", ("still", "serving"))]
    await good.close()


@pytest.mark.parametrize("payload", HOSTILE_FRAMES, ids=lambda p: p[:12].hex())
async def test_hostile_messagepack_frame_closes_only_that_connection(
    start_emulator: EmulatorFactory, payload: bytes
) -> None:
    emulator = await start_emulator(max_message_size=4096)
    bad, bad_id = await open_mp_ws(emulator)
    await bad.send_bytes(payload)
    await _assert_closed_with_a_reason(bad)
    await _assert_serving(emulator)
    status, _, _ = await emulator.rest("HEAD", f"/api/hubs/chat/connections/{bad_id}{V2}")
    assert status == 404


@pytest.mark.parametrize("payload", HOSTILE_FRAMES[3:8], ids=lambda p: p[:12].hex())
async def test_hostile_messagepack_post_body_closes_only_that_connection(emulator: Emulator, payload: bytes) -> None:
    url, _ = await open_mp_lp(emulator)
    async with emulator.session.post(url, data=payload, headers=emulator.auth(emulator.client_token())) as response:
        assert response.status == 200
    status, _, body = await poll(emulator, url)
    assert status == 200
    closing = mp_messages(body)[-1]
    assert isinstance(closing, Close) and closing.error
    await _assert_serving(emulator)


async def test_random_frames_end_in_a_close_or_nothing_and_never_an_internal_error(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Fixed-seed random binary frames after a MessagePack handshake: each is read, or closes its connection with a
    Close message; nothing is logged as an error and the service keeps serving."""
    generator = random.Random(20240917)
    caplog.set_level(logging.INFO, logger="emulator")
    for _ in range(24):
        payload = bytes(generator.randrange(256) for _ in range(generator.randrange(1, 48)))
        ws, _ = await open_mp_ws(emulator)
        await ws.send_bytes(MP.frame(payload) if generator.random() < 0.7 else payload)
        try:
            message = await ws.receive(timeout=0.3)
        except TimeoutError:
            await ws.close()  # read and kept (or waiting for more of a message): the connection stays usable
            continue
        if message.type is aiohttp.WSMsgType.BINARY:
            last = mp_messages(message.data)[-1]
            assert isinstance(last, Close | Completion), last
            if isinstance(last, Close):
                assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        await ws.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    await _assert_serving(emulator)
