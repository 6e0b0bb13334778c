"""Transport and hub-protocol behaviour against a scripted service: framing, handshake, Close, keep-alive, timeouts,
invocations, stop semantics and misbehaving servers. Observed on the wire (the service's records and close codes)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from signalr.client import (
    ConnectionClosedError,
    ConnectionState,
    HandshakeFailed,
    HubConnection,
    HubError,
    InvocationTimeout,
    ServerTimeout,
    SignalRClientError,
    TraceEvent,
    TransportChoice,
    TransportFailed,
)
from tests.client.fake_service import FakeService, records
from tests.client.inbox import Inbox, connect

ALL = list(TransportChoice)[:3]  # WebSockets, ServerSentEvents, LongPolling
IDS = ["ws", "sse", "lp"]
BROADCAST_1 = '{"type":1,"target":"broadcastMessage","arguments":["a","one"]}'
BROADCAST_2 = '{"type":1,"target":"BROADCASTMESSAGE","arguments":["b","two"]}'
ECHO_3 = '{"type":1,"target":"echo","arguments":["c","three"]}'
PING = b'{"type":6}'


@pytest.mark.parametrize("choice", ALL, ids=IDS)
async def test_records_right_after_the_handshake_reply_are_dispatched(choice: TransportChoice) -> None:
    service = FakeService(after_handshake=records(BROADCAST_1, BROADCAST_2))
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice)
        await connection.start()
        try:
            assert await inbox.next() == ("broadcastMessage", ("a", "one"))
            assert await inbox.next() == ("broadcastMessage", ("b", "two"))  # target matched case-insensitively
        finally:
            await connection.stop()


@pytest.mark.parametrize("choice", ALL, ids=IDS)
async def test_several_records_in_one_frame_event_or_poll_are_all_dispatched_in_order(choice: TransportChoice) -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice)
        await connection.start()
        try:
            service.push(records(BROADCAST_1, '{"type":6}', BROADCAST_2, ECHO_3))
            got = [await inbox.next() for _ in range(3)]
            assert got == [
                ("broadcastMessage", ("a", "one")),
                ("broadcastMessage", ("b", "two")),
                ("echo", ("c", "three")),
            ]
            frame = records(BROADCAST_1, '{"type":6}', BROADCAST_2, ECHO_3)
            summary = (
                f"json, {len(frame)} bytes: 4 messages: Invocation broadcastMessage, Ping, "
                "Invocation BROADCASTMESSAGE, Invocation echo"
            )
            assert any(
                e.detail == summary and e.bytes == len(frame) for e in inbox.trace if e.kind in ("receive", "poll")
            )
        finally:
            await connection.stop()


@pytest.mark.parametrize("choice", ALL, ids=IDS)
async def test_handshake_request_is_json_version_1_and_an_unanswered_handshake_times_out(
    choice: TransportChoice,
) -> None:
    service = FakeService(handshake_reply=None)
    async with service.running():
        connection, _ = connect(service.hub_url, transport=choice, handshake_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(HandshakeFailed, match=r"did not answer the handshake within 0\.3 s"):
            await connection.start()
        assert time.monotonic() - started < 3
        assert await service.next_record() == b'{"protocol":"json","version":1}'
        assert connection.state is ConnectionState.DISCONNECTED
    if choice is TransportChoice.WEBSOCKETS:
        assert service.ws_close_codes == [1000]  # the failed start closed its socket


async def test_handshake_error_is_reported_with_the_servers_text() -> None:
    service = FakeService(handshake_reply=b'{"error":"The protocol \'json\' is not supported."}\x1e')
    async with service.running():
        connection, _ = connect(service.hub_url)
        with pytest.raises(HandshakeFailed) as caught:
            await connection.start()
    assert str(caught.value) == "Server returned handshake error: The protocol 'json' is not supported."


@pytest.mark.parametrize("choice", ALL, ids=IDS)
async def test_close_message_with_error_ends_the_connection_without_reconnecting(choice: TransportChoice) -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice, reconnect_delays=(0, 0))
        await connection.start()
        service.push(records('{"type":7,"error":"Kicked by the admin."}'))
        error = await inbox.next_close()
        assert isinstance(error, ConnectionClosedError)
        assert str(error) == "Server returned an error on close: Kicked by the admin."
        assert connection.state is ConnectionState.DISCONNECTED
        await asyncio.sleep(0.2)
        assert service.negotiations == 1  # no reconnect attempt


async def test_close_message_allowing_reconnect_reconnects_with_a_fresh_negotiate() -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url, reconnect_delays=(0,))
        states: list[ConnectionState] = []
        connection.on_state_change(lambda _, new: states.append(new))
        await connection.start()
        first_id = connection.connection_id
        reconnected = asyncio.Event()
        connection.on_state_change(lambda old, new: reconnected.set() if old is ConnectionState.RECONNECTING else None)
        service.push(records('{"type":7,"error":"Service restarting.","allowReconnect":true}'))
        await asyncio.wait_for(reconnected.wait(), 5)
        assert connection.connection_id != first_id
        assert states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.RECONNECTING,
                          ConnectionState.CONNECTED]  # fmt: skip
        assert service.negotiations == 2 and connection.connection_id == "conn-2"
        service.push(records(ECHO_3))
        assert await inbox.next() == ("echo", ("c", "three"))
        await connection.stop()


async def test_stop_sends_a_close_message_then_a_websocket_close_frame_1000() -> None:
    service = FakeService()
    async with service.running():
        connection, _ = connect(service.hub_url)
        await connection.start()
        await connection.stop()
        sent = await service.records_until('"type":7')
        assert await service.closed_sockets() == [1000]
    assert sent[-1] == b'{"type":7}'


async def test_long_polling_stop_sends_delete_and_a_404_there_is_not_an_error() -> None:
    for status, note in ((202, "closed by the client"), (404, "404 on DELETE ignored")):
        service = FakeService(delete_status=status)
        async with service.running():
            connection, inbox = connect(service.hub_url, transport=TransportChoice.LONG_POLLING)
            await connection.start()
            await connection.stop()
        deletes = [r for r in service.requests if r.method == "DELETE"]
        assert len(deletes) == 1 and "id=token-1" in deletes[0].query and "Authorization" not in deletes[0].headers
        [traced] = [e for e in inbox.trace if e.method == "DELETE"]
        assert traced.status == status and note in traced.detail
        assert await inbox.next_close() is None


@pytest.mark.parametrize("choice", ALL[:2], ids=IDS[:2])
async def test_keep_alive_pings_when_nothing_was_sent(choice: TransportChoice) -> None:
    service = FakeService()
    async with service.running():
        connection, _ = connect(service.hub_url, transport=choice, keep_alive_interval=0.2)
        await connection.start()
        assert await service.next_record() == b'{"protocol":"json","version":1}'
        assert await service.next_record() == PING  # JS: a Ping right after the handshake
        await asyncio.sleep(1.0)
        pings = 0
        while not service.records.empty():
            assert service.records.get_nowait() == PING
            pings += 1
        assert 3 <= pings <= 7, pings  # one per 0.2 s of silence, not a flood
        # Sending resets the keep-alive: while messages flow, no Ping goes out.
        for n in range(6):
            await connection.send("echo", "k", str(n))
            await asyncio.sleep(0.05)
        sent = [service.records.get_nowait() for _ in range(service.records.qsize())]
        assert PING not in sent[1:], sent
        await connection.stop()


async def test_long_polling_sends_no_pings_and_has_no_server_timeout() -> None:
    service = FakeService(lp_hold=0.3)
    async with service.running():
        connection, inbox = connect(
            service.hub_url, transport=TransportChoice.LONG_POLLING, keep_alive_interval=0.1, server_timeout=0.3
        )
        await connection.start()
        await asyncio.sleep(1.2)  # quiet polls, four times the server timeout
        assert connection.state is ConnectionState.CONNECTED
        sent = [service.records.get_nowait() for _ in range(service.records.qsize())]
        assert sent == [b'{"protocol":"json","version":1}']
        assert [e for e in inbox.trace if e.kind == "ping"] == []
        await connection.stop()


@pytest.mark.parametrize("choice", ALL[:2], ids=IDS[:2])
async def test_a_silent_server_times_out(choice: TransportChoice) -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice, server_timeout=0.4)
        started = time.monotonic()
        await connection.start()
        error = await inbox.next_close(timeout=5)
        assert isinstance(error, ServerTimeout)
        assert str(error).startswith("Server timeout elapsed without receiving a message from the server.")
        assert 0.35 < time.monotonic() - started < 3
        assert connection.state is ConnectionState.DISCONNECTED


async def test_server_messages_reset_the_server_timeout() -> None:
    service = FakeService()
    async with service.running():
        connection, _ = connect(service.hub_url, server_timeout=0.4)
        await connection.start()
        for _ in range(8):  # 0.8 s of server pings every 0.1 s
            service.push(records('{"type":6}'))
            await asyncio.sleep(0.1)
        assert connection.state is ConnectionState.CONNECTED
        await connection.stop()


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"this is not json\x1e", "invalid data from the server: Message is not valid JSON"),
        (b'{"type":1,"target":"x","arguments":' + b'"' + b"a" * (1024 * 1024 + 10) + b'"]}\x1e',
         "invalid data from the server: The message exceeded the maximum message size of 1048576 bytes."),
    ],
    ids=["malformed", "oversized"],
)  # fmt: skip
async def test_bytes_that_break_the_protocol_end_the_connection_with_the_reason(data: bytes, text: str) -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url)
        await connection.start()
        service.push(data)
        error = await inbox.next_close()
        assert isinstance(error, TransportFailed) and str(error).startswith(text), error


async def test_a_message_of_an_unknown_type_is_skipped_as_the_js_client_does() -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url)
        await connection.start()
        service.push(b'{"type":99}\x1e' + records('{"type":1,"target":"broadcastMessage","arguments":["a","after"]}'))
        assert await inbox.next() == ("broadcastMessage", ("a", "after"))
        assert connection.state is ConnectionState.CONNECTED
        await connection.stop()


async def _answer_invocations(service: FakeService, answers: dict[str, str]) -> None:
    """Answer each Invocation with an invocationId by target: a Completion JSON with ``{id}`` filled in."""
    while True:
        record = await service.records.get()
        message = json.loads(record)
        if message.get("type") == 1 and "invocationId" in message and message["target"] in answers:
            service.push(records(answers[message["target"]].replace("{id}", message["invocationId"])))


@pytest.mark.parametrize("choice", ALL, ids=IDS)
async def test_invoke_returns_the_result_raises_the_error_and_times_out(choice: TransportChoice) -> None:
    service = FakeService()
    failed = "An unexpected error occurred invoking 'fail' on the server."
    answers = {
        "add": '{"type":3,"invocationId":"{id}","result":3}',
        "fail": json.dumps({"type": 3, "invocationId": "{id}", "error": failed}),
    }
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice)
        await connection.start()
        answering = asyncio.create_task(_answer_invocations(service, answers))
        try:
            assert await connection.invoke("add", 1, 2) == 3
            with pytest.raises(HubError, match=r"^An unexpected error occurred invoking 'fail' on the server\.$"):
                await connection.invoke("fail")
            with pytest.raises(InvocationTimeout, match=r"no completion for 'silent' within 0\.2 s"):
                await connection.invoke("silent", timeout=0.2)
            pending = asyncio.create_task(connection.invoke("silent"))
            await inbox.traced(lambda e: e.kind == "send" and "Invocation silent #3" in e.detail)  # sent, now waiting
            await connection.stop()
            with pytest.raises(SignalRClientError, match=r"^Invocation canceled: the connection was stopped\.$"):
                await pending
        finally:
            answering.cancel()


async def test_invocation_ids_count_up_as_strings() -> None:
    service = FakeService()
    async with service.running():
        connection, _ = connect(service.hub_url)
        await connection.start()
        for n in range(3):
            with pytest.raises(InvocationTimeout):
                await connection.invoke("noop", n, timeout=0.05)
        await connection.send("fire", "and-forget")
        sent = [json.loads(r) for r in (await service.records_until('"fire"'))[2:]]  # after handshake and ping
        await connection.stop()
    assert [m.get("invocationId") for m in sent] == ["0", "1", "2", None]
    assert sent[-1] == {"type": 1, "target": "fire", "arguments": ["and-forget"]}  # no invocationId at all


async def test_server_invocations_with_an_id_get_the_handlers_result() -> None:
    service = FakeService()
    async with service.running():
        connection = HubConnection(service.hub_url, reconnect_delays=None)

        async def get_name(prefix: str) -> str:
            await asyncio.sleep(0.01)
            return prefix + "alice"

        connection.on("getName", get_name)
        await connection.start()
        service.push(records('{"type":1,"invocationId":"s1","target":"GetName","arguments":["dr. "]}'))
        service.push(records('{"type":1,"invocationId":"s2","target":"unknownMethod","arguments":[]}'))
        answers: list[dict[str, object]] = []
        async with asyncio.timeout(5):
            while len(answers) < 2:
                message = json.loads(await service.records.get())
                if message.get("type") == 3:
                    answers.append(message)
        await connection.stop()
    assert {"type": 3, "invocationId": "s1", "result": "dr. alice"} in answers
    assert {"type": 3, "invocationId": "s2", "error": "Client didn't provide a result."} in answers


@pytest.mark.parametrize("choice", ALL[1:], ids=IDS[1:])
async def test_http_sends_go_one_post_at_a_time_and_keep_their_order(choice: TransportChoice) -> None:
    service = FakeService()
    async with service.running():
        connection, _ = connect(service.hub_url, transport=choice)
        await connection.start()
        await asyncio.gather(*(connection.send("n", i) for i in range(30)))
        sent = await service.records_until('"arguments":[29]')
        await connection.stop()
    numbers = [json.loads(r)["arguments"][0] for r in sent if b'"target":"n"' in r]
    assert numbers == list(range(30))
    posts = [r for r in service.requests if r.method == "POST" and r.path == "/client/"]
    assert len(posts) < 30  # records queued behind a POST in flight share the next one
    assert connection.last_rtt_ms is not None


async def test_server_ending_the_transport_is_a_loss_and_204_is_a_clean_close() -> None:
    for choice in ALL:
        service = FakeService()
        async with service.running():
            connection, inbox = connect(service.hub_url, transport=choice)
            await connection.start()
            service.end()
            assert await inbox.next_close() is None, choice  # closed by the server without an error
            assert connection.state is ConnectionState.DISCONNECTED
            assert [r for r in service.requests if r.method == "DELETE"] == []  # no DELETE after the server's 204


def ws_close_rows(inbox: Inbox) -> list[tuple[int | None, str]]:
    return [(e.status, e.detail) for e in inbox.trace if e.kind == "close" and e.method == "WS"]


async def test_websocket_stop_traces_the_code_it_sent_even_when_the_server_drops_instead_of_answering() -> None:
    # The server goes away without answering the client's close frame: aiohttp then knows only 1006 (no close
    # frame), but the client closed, with 1000, and that is what its row says (docs/protocol.md §3.5).
    service = FakeService(ws_drop_on_client_close=True)
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=TransportChoice.WEBSOCKETS)
        await connection.start()
        await connection.stop()
        assert await service.closed_sockets() == [1000]  # what the server received
    assert ws_close_rows(inbox) == [(1000, "closed by the client (1000); no close frame came back from the server")]


async def test_websocket_stop_with_a_clean_answer_traces_only_the_code_sent() -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=TransportChoice.WEBSOCKETS)
        await connection.start()
        await connection.stop()
        assert await service.closed_sockets() == [1000]
    assert ws_close_rows(inbox) == [(1000, "closed by the client (1000)")]


async def test_websocket_closed_by_the_server_traces_the_servers_code() -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=TransportChoice.WEBSOCKETS)
        await connection.start()
        service.end(1001, "going away")
        error = await inbox.next_close()
        await connection.stop()
    assert str(error) == "WebSocket closed with status code: 1001 (going away)."
    assert ws_close_rows(inbox) == [
        (1001, "closed by the server (1001): WebSocket closed with status code: 1001 (going away).")
    ]


async def test_websocket_close_row_agrees_with_itself_when_a_close_message_and_the_servers_close_race() -> None:
    # A Close message makes the client stop while the server's close frame (1001) is on its way: whichever side the
    # row credits, its status is the code that side sent, and there is exactly one row.
    for _ in range(5):
        service = FakeService()
        async with service.running():
            connection, inbox = connect(service.hub_url, transport=TransportChoice.WEBSOCKETS)
            await connection.start()
            service.push(records('{"type":7,"error":"The service is shutting down."}'))
            service.end(1001, "going away")
            await inbox.next_close()
            await connection.stop()
        rows = ws_close_rows(inbox)
        assert len(rows) == 1, rows
        status, detail = rows[0]
        assert (status, detail.split(")")[0] + ")") in (
            (1000, "closed by the client (1000)"),
            (1001, "closed by the server (1001)"),
        ), rows


async def test_sse_with_the_wrong_content_type_fails_to_connect() -> None:
    service = FakeService(sse_content_type="text/html")
    async with service.running():
        connection, _ = connect(service.hub_url, transport=TransportChoice.SERVER_SENT_EVENTS)
        with pytest.raises(TransportFailed, match="Content-Type 'text/html' instead of text/event-stream"):
            await connection.start()


async def test_sse_then_long_polling_falls_back_when_the_event_stream_is_refused() -> None:
    service = FakeService(sse_content_type="application/json")
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=TransportChoice.SSE_THEN_LONG_POLLING)
        await connection.start()
        assert connection.transport_name == "LongPolling"
        assert connection.connection_id == "conn-2"  # a fresh negotiate for the second transport
        await connection.stop()
    assert [(e.kind, e.method) for e in inbox.trace if e.kind == "connect"] == [("connect", "SSE"), ("connect", "GET")]


async def test_first_poll_must_answer_200() -> None:
    service = FakeService(first_poll_status=500)
    async with service.running():
        connection, _ = connect(service.hub_url, transport=TransportChoice.LONG_POLLING)
        with pytest.raises(TransportFailed, match=r"the first LongPolling poll to .* returned HTTP 500"):
            await connection.start()


async def test_a_server_answering_empty_polls_at_once_does_not_make_the_client_spin() -> None:
    service = FakeService(lp_instant_empty=True)
    async with service.running():
        connection, _ = connect(service.hub_url, transport=TransportChoice.LONG_POLLING, handshake_timeout=0.2)
        with pytest.raises(HandshakeFailed):  # the handshake reply never comes: polls are always empty
            await connection.start()
        # 0.2 s of handshake wait: a busy loop would have made hundreds of polls.
        assert service.polls <= 4, service.polls


async def test_stop_during_start_aborts_the_start() -> None:
    service = FakeService(negotiate_delay=5.0)
    async with service.running():
        connection, inbox = connect(service.hub_url)
        starting = asyncio.create_task(connection.start())
        await asyncio.sleep(0.2)
        await connection.stop()
        with pytest.raises(SignalRClientError, match=r"stopped during start"):
            await starting
        assert connection.state is ConnectionState.DISCONNECTED
    assert inbox.closed.empty()  # never connected: no on_close


async def test_a_failing_trace_callback_does_not_break_the_connection() -> None:
    calls = 0

    def broken(_: TraceEvent) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("trace view bug")

    service = FakeService()
    async with service.running():
        inbox = Inbox()
        connection = inbox.attach(HubConnection(service.hub_url, trace=broken, reconnect_delays=None))
        await connection.start()
        service.push(records(ECHO_3))
        assert await inbox.next() == ("echo", ("c", "three"))
        await connection.stop()
    assert calls > 5


@pytest.mark.parametrize(
    ("choice", "module", "limit"),
    [(TransportChoice.SERVER_SENT_EVENTS, "server_sent_events", "MAX_EVENT_SIZE"),
     (TransportChoice.LONG_POLLING, "long_polling", "MAX_POLL_BODY")],
    ids=["sse-event", "lp-body"],
)  # fmt: skip
async def test_oversized_events_and_poll_bodies_end_the_connection(
    choice: TransportChoice, module: str, limit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many small records in one event or poll body: each record is fine, the whole is bounded (memory)."""
    monkeypatch.setattr(f"signalr.client.transports.{module}.{limit}", 64 * 1024)
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url, transport=choice)
        await connection.start()
        service.push(records(*[BROADCAST_1] * 2000))  # ~130 KB
        error = await inbox.next_close()
        assert isinstance(error, TransportFailed)
        assert "65536" in str(error), error
        assert inbox.messages.empty()  # nothing of the oversized batch was dispatched


async def test_unknown_targets_and_failing_handlers_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    service = FakeService()
    async with service.running():
        connection, inbox = connect(service.hub_url)

        def broken(*_: object) -> None:
            raise RuntimeError("handler bug")

        connection.on("echo", broken)
        await connection.start()
        with caplog.at_level("DEBUG", logger="signalr.client.hub_connection"):
            service.push(records('{"type":1,"target":"NotRegistered","arguments":[1]}', ECHO_3, BROADCAST_1))
            assert await inbox.next() == ("echo", ("c", "three"))  # the other echo handler still ran
            assert await inbox.next() == ("broadcastMessage", ("a", "one"))  # and the loop went on
        await connection.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert "No client method with the name 'notregistered' found." in messages
    assert any(m == "A callback for the method 'echo' threw error" for m in messages)
