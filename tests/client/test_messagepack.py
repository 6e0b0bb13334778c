"""The client in MessagePack mode against a scripted service: what goes on the wire (binary WebSocket frames,
``application/octet-stream`` POSTs, VarInt-framed messages), what comes back, and the transport choice a binary
protocol forces (no ServerSentEvents, as the JS client's ``_resolveTransportOrError`` decides)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiohttp import WSMsgType

from signalr.client import (
    ConnectionClosedError,
    ConnectionState,
    HubConnection,
    HubError,
    TransferFormatNotSupported,
    TransportChoice,
    TransportFailed,
)
from signalr.client.http_context import HttpContext
from signalr.client.trace import Tracer
from signalr.client.transports import ServerSentEventsTransport
from signalr.hub_protocol import TransferFormat
from signalr.json_protocol import JSON
from signalr.messagepack_protocol import MESSAGEPACK
from signalr.messages import Close, Completion, HubMessage, Invocation, Ping
from tests.client.fake_service import FakeService
from tests.client.inbox import connect

BINARY_CAPABLE = [TransportChoice.WEBSOCKETS, TransportChoice.LONG_POLLING]
IDS = ["ws", "lp"]
HANDSHAKE = b'{"protocol":"messagepack","version":1}'


def mp(*messages: HubMessage) -> bytes:
    """Messages as one MessagePack frame/body."""
    return MESSAGEPACK.encode_many(list(messages))


async def next_invocation(service: FakeService, timeout: float = 5.0) -> Invocation:
    """The next Invocation the client sent, decoded as MessagePack (the handshake and Pings are passed over)."""
    async with asyncio.timeout(timeout):
        while True:
            payload = await service.records.get()
            if payload == HANDSHAKE:
                continue
            message = MESSAGEPACK.decode(payload)
            if isinstance(message, Invocation):
                return message
            assert isinstance(message, Ping), message


@pytest.mark.parametrize("choice", BINARY_CAPABLE, ids=IDS)
async def test_handshake_names_messagepack_and_messages_flow_both_ways(choice: TransportChoice) -> None:
    service = FakeService(protocol=MESSAGEPACK, after_handshake=mp(Invocation("broadcastMessage", ("srv", "early"))))
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice, protocol="messagepack")
        await connection.start()
        try:
            assert connection.protocol is MESSAGEPACK
            assert await service.next_record() == HANDSHAKE
            assert await inbox.next() == ("broadcastMessage", ("srv", "early"))  # right after the handshake reply
            # Several messages in one frame or poll body, a Ping among them.
            service.push(mp(Invocation("echo", ("a", "1")), Ping(), Invocation("ECHO", ("b", b"\x00\xff"))))
            assert await inbox.next() == ("echo", ("a", "1"))
            assert await inbox.next() == ("echo", ("b", b"\x00\xff"))  # bin stays bytes
            when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
            await connection.send("broadcastMessage", "py", b"\x01\x02", when)
            assert await next_invocation(service) == Invocation("broadcastMessage", ("py", b"\x01\x02", when))
        finally:
            await connection.stop()


async def test_websocket_frames_are_binary_for_messagepack_and_text_for_json() -> None:
    for protocol, frame_type in ((MESSAGEPACK, WSMsgType.BINARY), (JSON, WSMsgType.TEXT)):
        service = FakeService(protocol=protocol)
        async with service.running():
            connection, _ = connect(service.hub_url, protocol=protocol)
            await connection.start()
            await connection.send("echo", "x", "y")
            await connection.stop()
        # Handshake, the first Ping, the Invocation and the Close message: every frame of the protocol's type (as the
        # .NET client sends them; the transport is told the format at connect and never looks at the bytes).
        assert len(service.ws_frame_types) >= 4
        assert set(service.ws_frame_types) == {frame_type}, service.ws_frame_types


async def test_long_polling_posts_are_octet_stream_for_messagepack_and_text_for_json() -> None:
    for protocol, content_type in (
        (MESSAGEPACK, "application/octet-stream"),
        (JSON, "text/plain;charset=UTF-8"),
    ):
        service = FakeService(protocol=protocol)
        async with service.running():
            connection, _ = connect(service.hub_url, transport=TransportChoice.LONG_POLLING, protocol=protocol)
            await connection.start()
            await connection.send("echo", "x", "y")
            await connection.stop()
        posts = [r for r in service.requests if r.method == "POST" and r.path == "/client/"]
        assert len(posts) >= 3  # handshake, the Invocation, the Close message
        assert {r.headers.get("Content-Type") for r in posts} == {content_type}


@pytest.mark.parametrize("choice", BINARY_CAPABLE, ids=IDS)
async def test_invoke_gets_results_errors_and_void_completions(choice: TransportChoice) -> None:
    service = FakeService(protocol=MESSAGEPACK)

    async def answer() -> None:
        while True:
            payload = await service.records.get()
            if payload == HANDSHAKE:
                continue
            message = MESSAGEPACK.decode(payload)
            if isinstance(message, Invocation) and message.invocation_id is not None:
                match message.target:
                    case "add":
                        service.push(mp(Completion.with_result(message.invocation_id, sum(message.arguments))))
                    case "fail":
                        service.push(mp(Completion.with_error(message.invocation_id, "no such luck")))
                    case _:
                        service.push(mp(Completion(message.invocation_id)))

    async with service.running():
        connection, _ = connect(service.hub_url, transport=choice, protocol=MESSAGEPACK)
        await connection.start()
        answering = asyncio.create_task(answer())
        try:
            assert await connection.invoke("add", 1, 2, 2**40) == 3 + 2**40
            with pytest.raises(HubError, match=r"^no such luck$"):
                await connection.invoke("fail")
            assert await connection.invoke("nothing") is None
        finally:
            answering.cancel()
            await connection.stop()


async def test_server_invocations_with_an_id_are_answered_in_messagepack() -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection = HubConnection(service.hub_url, protocol="messagepack", reconnect_delays=None)
        connection.on("getName", lambda prefix: prefix + "alice")
        await connection.start()
        service.push(mp(Invocation("GetName", ("dr. ",), invocation_id="s1")))
        async with asyncio.timeout(5):
            while True:
                payload = await service.records.get()
                if payload != HANDSHAKE and isinstance(message := MESSAGEPACK.decode(payload), Completion):
                    break
        await connection.stop()
    assert message == Completion.with_result("s1", "dr. alice")


async def test_keep_alive_pings_are_messagepack_pings_and_traced_as_pings() -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection, inbox = connect(service.hub_url, protocol="messagepack", keep_alive_interval=0.2)
        await connection.start()
        assert await service.next_record() == HANDSHAKE
        await asyncio.sleep(0.7)
        await connection.stop()
    sent = [service.records.get_nowait() for _ in range(service.records.qsize())]
    pings = [p for p in sent if MESSAGEPACK.decode(p) == Ping()]
    assert len(pings) >= 3 and sent[: len(pings)] == pings  # the first right after the handshake, then one per 0.2 s
    traced = [e for e in inbox.trace if e.kind == "ping"]
    assert len(traced) == len(pings)
    assert {(e.bytes, e.detail) for e in traced} == {(len(MESSAGEPACK.ping), "messagepack, 3 bytes: Ping")}


@pytest.mark.parametrize("choice", BINARY_CAPABLE, ids=IDS)
async def test_a_close_message_with_an_error_ends_the_connection(choice: TransportChoice) -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice, protocol="messagepack", reconnect_delays=(0,))
        await connection.start()
        service.push(mp(Close("Kicked by the admin.")))
        error = await inbox.next_close()
        assert isinstance(error, ConnectionClosedError)
        assert str(error) == "Server returned an error on close: Kicked by the admin."
        assert connection.state is ConnectionState.DISCONNECTED
        await asyncio.sleep(0.2)
        assert service.negotiations == 1  # no allowReconnect, no reconnect


@pytest.mark.parametrize("choice", BINARY_CAPABLE, ids=IDS)
async def test_unknown_message_types_are_skipped(choice: TransportChoice) -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice, protocol="messagepack")
        await connection.start()
        # [99, {}, "future"]: a type a newer server might send, then a message this client knows.
        unknown = MESSAGEPACK.frame(b"\x93\x63\x80\xa6future")
        service.push(unknown + mp(Invocation("broadcastMessage", ("a", "after"))))
        assert await inbox.next() == ("broadcastMessage", ("a", "after"))
        assert connection.state is ConnectionState.CONNECTED
        received = [e for e in inbox.trace if e.kind in ("receive", "poll") and "after" not in e.detail]
        assert any("2 messages: unknown message type 99, Invocation broadcastMessage" in e.detail for e in received)
        await connection.stop()


@pytest.mark.parametrize("choice", BINARY_CAPABLE, ids=IDS)
async def test_bytes_that_break_messagepack_end_the_connection_with_the_reason(choice: TransportChoice) -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice, protocol="messagepack")
        await connection.start()
        service.push(b"\xff\xff\xff\xff\xff\x01")  # a length prefix of 2 GiB or more
        error = await inbox.next_close()
    assert str(error) == "invalid data from the server: Messages over 2GB in size are not supported."


async def test_server_sent_events_with_messagepack_fails_before_any_request() -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection, inbox = connect(
            service.hub_url, transport=TransportChoice.SERVER_SENT_EVENTS, protocol="messagepack"
        )
        with pytest.raises(TransferFormatNotSupported) as caught:
            await connection.start()
        assert service.requests == []  # not even a negotiate
    assert str(caught.value) == (
        "'ServerSentEvents' does not support Binary. The messagepack hub protocol is binary and needs WebSockets or "
        "LongPolling — choose websockets, longpolling or sse-lp, or the json protocol for ServerSentEvents"
    )
    assert caught.value.reasons == ["'ServerSentEvents' does not support Binary."]
    assert connection.state is ConnectionState.DISCONNECTED
    assert [e.kind for e in inbox.trace] == ["error"] and "does not support Binary" in inbox.trace[0].detail


async def test_the_event_stream_transport_itself_refuses_binary_without_a_request() -> None:
    service = FakeService()
    async with service.running():
        context = HttpContext(headers=None, access_token=None, tracer=Tracer(None))
        transport = ServerSentEventsTransport(context, lambda _: None, lambda _: None)
        try:
            with pytest.raises(TransportFailed) as caught:
                await transport.connect(f"{service.hub_url}&id=x", TransferFormat.BINARY)
        finally:
            await transport.stop()
            await context.close()
        assert service.requests == []
    assert str(caught.value) == "The Server-Sent Events transport only supports the 'Text' transfer format"


async def test_sse_then_long_polling_with_messagepack_goes_straight_to_long_polling() -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection, inbox = connect(
            service.hub_url, transport=TransportChoice.SSE_THEN_LONG_POLLING, protocol="messagepack"
        )
        await connection.start()
        try:
            assert connection.transport_name == "LongPolling"
            service.push(mp(Invocation("echo", ("lp", "binary"))))
            assert await inbox.next() == ("echo", ("lp", "binary"))
        finally:
            await connection.stop()
    assert service.negotiations == 1  # SSE was skipped, not tried and failed
    assert not any(r.headers.get("Accept") == "text/event-stream" for r in service.requests)
    skipped = [e.detail for e in inbox.trace if e.kind == "negotiate" and "skipped" in e.detail]
    assert skipped == ["ServerSentEvents skipped: 'ServerSentEvents' does not support Binary."]


async def test_the_default_transport_for_messagepack_is_websockets() -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection = HubConnection(service.hub_url, protocol="messagepack", reconnect_delays=None)
        await connection.start()
        assert connection.transport_name == "WebSockets"
        await connection.stop()
    assert set(service.ws_frame_types) == {WSMsgType.BINARY}


@pytest.mark.parametrize(
    ("formats", "choice", "reason"),
    [
        # The service lists LongPolling as Text only: skipped after negotiating, with the JS client's words.
        ({"LongPolling": ["Text"]}, TransportChoice.LONG_POLLING, "'LongPolling' does not support Binary."),
        # No transferFormats at all, or garbage there: no format to pick it for.
        ({}, TransportChoice.WEBSOCKETS, "'WebSockets' does not support Binary."),
        ({"WebSockets": "Binary"}, TransportChoice.WEBSOCKETS, "'WebSockets' does not support Binary."),
        ({"WebSockets": ["binary", 2, None]}, TransportChoice.WEBSOCKETS, "'WebSockets' does not support Binary."),
    ],
    ids=["text-only", "missing", "not-an-array", "garbage-names"],
)
async def test_a_transport_the_service_does_not_offer_binary_on_is_skipped(
    formats: dict[str, object], choice: TransportChoice, reason: str
) -> None:
    service = FakeService(protocol=MESSAGEPACK, transfer_formats=formats)
    async with service.running():
        connection, _ = connect(service.hub_url, transport=choice, protocol="messagepack")
        with pytest.raises(TransferFormatNotSupported) as caught:
            await connection.start()
        assert [r.path for r in service.requests] == ["/client/negotiate"]  # no connect request
    host = service.url.removeprefix("http://")
    assert caught.value.reasons == [reason]
    assert str(caught.value) == (
        f"{reason} The service at {host} does not list Binary in the negotiate response's transferFormats for the "
        "transports left — use the json protocol with it"
    )


async def test_sse_then_long_polling_with_messagepack_and_no_binary_long_polling_says_why_for_both() -> None:
    service = FakeService(protocol=MESSAGEPACK, transfer_formats={"ServerSentEvents": ["Text"], "LongPolling": []})
    async with service.running():
        connection, _ = connect(
            service.hub_url, transport=TransportChoice.SSE_THEN_LONG_POLLING, protocol="messagepack"
        )
        with pytest.raises(TransferFormatNotSupported) as caught:
            await connection.start()
        assert [r.path for r in service.requests] == ["/client/negotiate"]
    assert caught.value.reasons == [
        "'ServerSentEvents' does not support Binary.",
        "'LongPolling' does not support Binary.",
    ]


async def test_sse_then_long_polling_with_messagepack_where_long_polling_is_not_offered() -> None:
    service = FakeService(protocol=MESSAGEPACK, transports=["WebSockets", "ServerSentEvents"])
    async with service.running():
        connection, _ = connect(
            service.hub_url, transport=TransportChoice.SSE_THEN_LONG_POLLING, protocol="messagepack"
        )
        with pytest.raises(TransportFailed) as caught:
            await connection.start()
    assert not isinstance(caught.value, TransferFormatNotSupported)
    assert str(caught.value) == (
        f"the service at {service.url.removeprefix('http://')} does not offer LongPolling (it offers WebSockets, "
        "ServerSentEvents); 'ServerSentEvents' does not support Binary."
    )


async def test_json_still_connects_where_the_service_offers_text_only() -> None:
    service = FakeService(transfer_formats={"WebSockets": ["Text"]})
    async with service.running():
        connection, inbox = connect(service.hub_url)
        await connection.start()
        service.push(JSON.encode(Invocation("echo", ("a", "b"))))
        assert await inbox.next() == ("echo", ("a", "b"))
        await connection.stop()


def test_the_protocol_is_given_by_name_or_as_an_object() -> None:
    assert HubConnection("http://127.0.0.1:1/chat").protocol is JSON
    assert HubConnection("http://127.0.0.1:1/chat", protocol="messagepack").protocol is MESSAGEPACK
    assert HubConnection("http://127.0.0.1:1/chat", protocol=MESSAGEPACK).protocol is MESSAGEPACK
    with pytest.raises(ValueError, match=r"unknown hub protocol 'msgpack': expected one of json, messagepack"):
        HubConnection("http://127.0.0.1:1/chat", protocol="msgpack")


async def test_the_trace_names_the_protocol_and_the_frame_sizes() -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection, inbox = connect(service.hub_url, protocol="messagepack")
        await connection.start()
        frame = mp(Invocation("echo", ("a", "b")))
        service.push(frame)
        await inbox.next()
        await connection.stop()
    rows = [(e.kind, e.bytes, e.detail) for e in inbox.trace if e.method == "WS" and e.kind != "close"]
    handshake = len(HANDSHAKE) + 1
    assert rows[1] == ("send", handshake, f"messagepack, {handshake} bytes: handshake request (messagepack v1)")
    assert ("receive", 3, "messagepack, 3 bytes: handshake response") in rows
    assert ("receive", len(frame), f"messagepack, {len(frame)} bytes: Invocation echo") in rows
    assert ("send", len(mp(Close())), f"messagepack, {len(mp(Close()))} bytes: Close") in rows
    [done] = [e.detail for e in inbox.trace if e.kind == "handshake"]
    assert done == "handshake complete (messagepack, version 1)"


async def test_a_value_messagepack_cannot_carry_fails_that_send_only() -> None:
    service = FakeService(protocol=MESSAGEPACK)
    async with service.running():
        connection, _ = connect(service.hub_url, protocol="messagepack")
        await connection.start()
        try:
            with pytest.raises(ValueError, match=r"^MessagePack cannot carry this value: Integer value out of range$"):
                await connection.send("echo", "big", 2**70)
            await connection.send("echo", "small", 2**63 - 1)
            assert await next_invocation(service) == Invocation("echo", ("small", 2**63 - 1))
            assert connection.state is ConnectionState.CONNECTED
        finally:
            await connection.stop()
