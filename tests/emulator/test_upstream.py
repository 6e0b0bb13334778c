"""Upstream webhooks: events, headers, signatures, bodies and invocation results (protocol.md §6.2–§6.4)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from signalr.upstream import UpstreamTemplate
from tests.support.processes import free_port

from .conftest import (
    HANDSHAKE,
    Emulator,
    EmulatorFactory,
    UpstreamCall,
    UpstreamReceiver,
    assert_silent,
    records,
    ws_next_non_ping,
)


async def invoke(
    ws: aiohttp.ClientWebSocketResponse, invocation_id: str, target: str = "echo"
) -> list[dict[str, object]]:
    await ws.send_str(
        json.dumps({"type": 1, "invocationId": invocation_id, "target": target, "arguments": ["a", "b"]}) + "\x1e"
    )
    return await ws_next_non_ping(ws)


async def test_connected_event_headers_body_and_signature(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = emulator_with_upstream
    token = emulator.client_token(claims={"asrs.s.uid": "alice", "role": "admin"})
    negotiated = await emulator.negotiate(token=token)
    url = emulator.connect_url(negotiated["connectionToken"], extra="&asrs.op=%2Fchat&custom=1")
    # encoded=True: send the query byte for byte (yarl would otherwise turn %2F into /).
    ws = await emulator.session.ws_connect(URL(url.replace("http", "ws", 1) + f"&access_token={token}", encoded=True))
    await ws.send_str(HANDSHAKE.decode())
    call = await upstream_receiver.event("connected")
    assert call.path == "/upstream/chat/connections/connected"
    assert call.signature_ok
    assert call.headers["x-asrs-signature"].startswith("sha256=")
    assert call.headers["x-asrs-connection-id"] == negotiated["connectionId"]
    assert call.headers["x-asrs-hub"] == "chat"
    assert call.headers["x-asrs-category"] == "connections"
    assert call.headers["x-asrs-event"] == "connected"
    assert call.headers["x-asrs-user-id"] == "alice"
    assert call.headers["x-asrs-user-claims"] == "role: admin"
    # The client's query, without the connection token and the access token (both secrets).
    assert call.headers["x-asrs-client-query"] == "?hub=chat&asrs.op=%2Fchat&custom=1"
    assert call.headers["content-type"] == "application/json"
    assert call.body == b'{"type":10}'
    await ws.close()


async def test_client_query_drops_only_the_secrets_and_the_cache_buster_by_decoded_name(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = emulator_with_upstream
    token = emulator.client_token()
    negotiated = await emulator.negotiate(token=token)
    # %5F is "_" and acc%65ss_token is access_token once decoded (as the service reads them); the rest is kept raw.
    extra = "&&asrs.op=%2Fchat&%5F=1700000000000&flag&sp=a+b%20c&acc%65ss_token=t2&Id=x&=v"
    url = emulator.connect_url(negotiated["connectionToken"], extra=extra)
    ws = await emulator.session.ws_connect(
        URL(url.replace("http", "ws", 1), encoded=True), headers=emulator.auth(token)
    )
    await ws.send_str(HANDSHAKE.decode())
    call = await upstream_receiver.event("connected")
    assert call.headers["x-asrs-client-query"] == "?hub=chat&asrs.op=%2Fchat&flag&sp=a+b%20c&Id=x&=v"
    await ws.close()


async def test_anonymous_connection_has_no_user_id_header(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    ws, connection_id = await emulator_with_upstream.open_ws()
    call = await upstream_receiver.event("connected", connection_id)
    assert "x-asrs-user-id" not in call.headers
    await ws.close()


async def test_messages_event_carries_the_record_and_a_fire_and_forget_send_gets_no_reply(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    ws, connection_id = await emulator_with_upstream.open_ws()
    await ws.send_str('{"type":1,"target":"broadcastMessage","arguments":["alice","hi"]}\x1e')
    call = await upstream_receiver.event("broadcastMessage", connection_id)
    assert call.path == "/upstream/chat/messages/broadcastMessage"
    assert call.headers["x-asrs-category"] == "messages"
    assert call.signature_ok
    assert call.body == b'{"type":1,"target":"broadcastMessage","arguments":["alice","hi"]}'
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=0.3)  # trap 11: no Completion without an invocationId
    await ws.close()


async def test_event_keeps_the_clients_casing(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    """Trap 9: the upstream {event} is the target as the client sent it."""
    ws, connection_id = await emulator_with_upstream.open_ws()
    await ws.send_str('{"type":1,"target":"BroadcastMessage","arguments":[]}\x1e')
    call = await upstream_receiver.event("BroadcastMessage", connection_id)
    assert call.path.endswith("/messages/BroadcastMessage")
    await ws.close()


async def test_invocation_headers_are_not_forwarded(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    """signalrcore leaks its Authorization header into ``headers`` (Appendix A); it must not travel on."""
    ws, connection_id = await emulator_with_upstream.open_ws()
    leaked = {"Authorization": "Bearer secret-token-value"}
    record = {"type": 1, "headers": leaked, "target": "broadcastMessage", "arguments": ["a"]}
    await ws.send_str(json.dumps(record) + "\x1e")
    call = await upstream_receiver.event("broadcastMessage", connection_id)
    assert call.json == {"type": 1, "target": "broadcastMessage", "arguments": ["a"]}
    assert b"secret-token-value" not in call.body
    await ws.close()


async def test_upstream_200_body_is_written_raw_to_the_caller(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    def respond(call: UpstreamCall) -> web.Response:
        invocation_id = call.json.get("invocationId")
        body = f'{{"type":3,"invocationId":"{invocation_id}","result":"from upstream"}}\x1e'
        return web.Response(body=body.encode(), content_type="application/json")

    upstream_receiver.responder = respond
    ws, _ = await emulator_with_upstream.open_ws()
    await ws.send_str('{"type":1,"invocationId":"42","target":"echo","arguments":["a","b"]}\x1e')
    message = await ws.receive(timeout=5)
    assert message.data == '{"type":3,"invocationId":"42","result":"from upstream"}\x1e'
    call = await upstream_receiver.event("echo")
    assert call.json == {"type": 1, "invocationId": "42", "target": "echo", "arguments": ["a", "b"]}
    await ws.close()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"", {"type": 3, "invocationId": "1"}),
        (204, b"", {"type": 3, "invocationId": "1"}),
        (500, b"boom", {"type": 3, "invocationId": "1", "error": "Invocation failed, status code 500"}),
        (404, b"", {"type": 3, "invocationId": "1", "error": "Invocation failed, status code 404"}),
        (
            200,
            b'{"type":3,"invocationId":"1"}',
            {
                "type": 3,
                "invocationId": "1",
                "error": "Invocation failed, error: the upstream response is not a complete hub protocol message.",
            },
        ),
        (
            200,
            b"not json\x1e",
            {
                "type": 3,
                "invocationId": "1",
                "error": "Invocation failed, error: the upstream response is not a complete hub protocol message.",
            },
        ),
    ],
)
async def test_upstream_answers_become_completions(
    emulator_with_upstream: Emulator,
    upstream_receiver: UpstreamReceiver,
    status: int,
    body: bytes,
    expected: dict[str, object],
) -> None:
    upstream_receiver.responder = lambda call: web.Response(
        status=status, body=body if call.headers["x-asrs-category"] == "messages" else b""
    )
    ws, connection_id = await emulator_with_upstream.open_ws()
    assert await invoke(ws, "1") == [expected]
    # The connection survives whatever the upstream answered.
    assert (
        await emulator_with_upstream.rest("HEAD", f"/api/hubs/chat/connections/{connection_id}?api-version=2022-06-01")
    )[0] == 200
    await ws.close()


async def test_unreachable_upstream_gives_a_completion_error_and_the_service_lives_on(
    start_emulator: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    template = f"http://127.0.0.1:{free_port()}/upstream/{{hub}}/{{category}}/{{event}}?code=fn-secret"
    emulator = await start_emulator(upstreams=(UpstreamTemplate(template),))
    with caplog.at_level(logging.INFO, logger="emulator"):
        ws, _ = await emulator.open_ws()
        reply = await invoke(ws, "1")
        assert reply[0]["invocationId"] == "1"
        assert str(reply[0]["error"]).startswith("Invocation failed, error: ")
        assert "fn-secret" not in str(reply[0]["error"])
        # Still serving: a second connection and a broadcast work.
        other, _ = await emulator.open_ws()
        await emulator.broadcast("broadcastMessage", "still", "alive")
        assert await ws_next_non_ping(other) == [
            {"type": 1, "target": "broadcastMessage", "arguments": ["still", "alive"]}
        ]
    assert "fn-secret" not in caplog.text
    assert "upstream" in caplog.text and "failed" in caplog.text


async def test_slow_upstream_times_out(start_emulator: EmulatorFactory, upstream_receiver: UpstreamReceiver) -> None:
    async def slow(call: UpstreamCall) -> web.Response:
        if call.headers["x-asrs-category"] == "messages":
            await asyncio.sleep(1)
        return web.Response()

    upstream_receiver.responder = slow
    emulator = await start_emulator(upstream_timeout=0.3, **upstream_receiver.emulator_settings)
    ws, _ = await emulator.open_ws()
    assert await invoke(ws, "5") == [
        {"type": 3, "invocationId": "5", "error": "Invocation failed, error: the upstream did not answer within 0.3 s."}
    ]
    await ws.close()


async def _chunks_without_length() -> AsyncIterator[bytes]:
    for _ in range(10):
        yield b"x" * 500


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_too_large_upstream_response(
    start_emulator: EmulatorFactory, upstream_receiver: UpstreamReceiver, framing: str
) -> None:
    if framing == "chunked":  # no Content-Length: the emulator finds out by reading, and stops after the limit
        upstream_receiver.responder = lambda call: web.Response(body=_chunks_without_length())
    else:
        upstream_receiver.responder = lambda call: web.Response(body=b"x" * 5000)
    emulator = await start_emulator(max_upstream_response=1000, **upstream_receiver.emulator_settings)
    ws, _ = await emulator.open_ws()
    assert await invoke(ws, "9") == [
        {"type": 3, "invocationId": "9", "error": "Invocation failed, response too large."}
    ]
    await ws.close()


async def test_no_upstream_configured(emulator: Emulator) -> None:
    ws, _ = await emulator.open_ws()
    assert await invoke(ws, "3") == [
        {"type": 3, "invocationId": "3", "error": "No upstream is configured for hub 'chat'."}
    ]
    await ws.close()


async def test_no_matching_template_is_an_unknown_method(
    start_emulator: EmulatorFactory, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = await start_emulator(
        access_key=upstream_receiver.access_key,
        upstreams=(UpstreamTemplate(upstream_receiver.template, event_pattern="connected, disconnected, echo"),),
    )
    ws, _ = await emulator.open_ws()
    assert await invoke(ws, "4", target="nosuch") == [
        {"type": 3, "invocationId": "4", "error": "Unknown hub method 'nosuch'"}
    ]
    assert (await invoke(ws, "5", target="echo")) == [{"type": 3, "invocationId": "5"}]
    await ws.close()


async def test_stream_invocations_are_refused_with_a_completion(emulator_with_upstream: Emulator) -> None:
    ws, _ = await emulator_with_upstream.open_ws()
    await ws.send_str('{"type":4,"invocationId":"s","target":"counter","arguments":[]}\x1e')
    assert await ws_next_non_ping(ws) == [
        {"type": 3, "invocationId": "s", "error": "Streaming hub methods are not supported in serverless mode."}
    ]
    await ws.close()


async def test_events_of_one_connection_keep_their_order(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    async def jittery(call: UpstreamCall) -> web.Response:
        await asyncio.sleep(0.02 if call.body.endswith(b'["0"]}') else 0)
        return web.Response()

    upstream_receiver.responder = jittery
    ws, connection_id = await emulator_with_upstream.open_ws()
    frame = "".join(f'{{"type":1,"target":"m","arguments":["{i}"]}}\x1e' for i in range(10))
    await ws.send_str(frame)
    await ws.send_str('{"type":7}\x1e')
    await upstream_receiver.event("disconnected", connection_id)
    events = [c for c in upstream_receiver.calls if c.headers["x-asrs-connection-id"] == connection_id]
    names = [c.headers["x-asrs-event"] for c in events]
    assert names == ["connected"] + ["m"] * 10 + ["disconnected"]
    assert [c.json["arguments"][0] for c in events[1:-1]] == [str(i) for i in range(10)]


async def test_disconnected_body_carries_the_error(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    ws, connection_id = await emulator_with_upstream.open_ws()
    await ws.send_str('{"type":1}\x1e')
    call = await upstream_receiver.event("disconnected", connection_id)
    assert call.json == {"Type": 11, "Error": "Missing required property 'target'."}
    assert call.signature_ok


async def test_client_close_message_error_is_passed_on(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    ws, connection_id = await emulator_with_upstream.open_ws()
    await ws.send_str('{"type":7,"error":"client gave up"}\x1e')
    call = await upstream_receiver.event("disconnected", connection_id)
    assert call.json == {"Type": 11, "Error": "client gave up"}


async def test_failing_connected_event_is_only_logged(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    upstream_receiver.responder = lambda call: web.Response(status=503)
    with caplog.at_level(logging.INFO, logger="emulator"):
        ws, connection_id = await emulator_with_upstream.open_ws()
        await upstream_receiver.event("connected", connection_id)
        await emulator_with_upstream.broadcast("broadcastMessage", "x", "y")
        assert await ws_next_non_ping(ws) == [{"type": 1, "target": "broadcastMessage", "arguments": ["x", "y"]}]
    assert "-> 503" in caplog.text
    await ws.close()


async def test_many_pending_invocations_apply_backpressure_not_memory(
    start_emulator: EmulatorFactory, upstream_receiver: UpstreamReceiver
) -> None:
    """With the upstream stalled, the emulator reads a client until max_pending_upstream of its invocations wait for
    the upstream, then stops reading it (backpressure) instead of queueing more. A stream invocation shows what was
    read: the emulator refuses it itself, at once, when it reads it."""
    gate = asyncio.Event()

    async def stalled(call: UpstreamCall) -> web.Response:
        if call.headers["x-asrs-category"] == "messages":
            await gate.wait()
        return web.Response()

    def stream(invocation_id: str) -> str:
        return f'{{"type":4,"invocationId":"{invocation_id}","target":"counter","arguments":[]}}\x1e'

    def refused(invocation_id: str) -> list[dict[str, object]]:
        error = "Streaming hub methods are not supported in serverless mode."
        return [{"type": 3, "invocationId": invocation_id, "error": error}]

    async def send_invocations(numbers: range) -> None:
        for i in numbers:
            await ws.send_str(f'{{"type":1,"target":"m","arguments":["{i}"]}}\x1e')

    upstream_receiver.responder = stalled
    emulator = await start_emulator(max_pending_upstream=4, **upstream_receiver.emulator_settings)
    ws, _ = await emulator.open_ws()
    try:
        await send_invocations(range(4))
        await ws.send_str(stream("s1"))
        assert await ws_next_non_ping(ws) == refused("s1")  # four waiting: still read
        await send_invocations(range(4, 5))
        await ws.send_str(stream("s2"))
        await assert_silent(ws)  # the fifth waits for a slot: nothing after it is read
        await send_invocations(range(5, 20))
    finally:
        gate.set()  # a failed check must not leave the upstream stalled until the teardown times out
    assert await ws_next_non_ping(ws) == refused("s2")
    await upstream_receiver.wait_for(lambda c: c.body.endswith(b'["19"]}'), timeout=5, description="last message")
    await ws.close()


async def test_logs_carry_no_secrets(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = emulator_with_upstream
    with caplog.at_level(logging.DEBUG, logger="emulator"):
        token = emulator.client_token()
        negotiated = await emulator.negotiate(token=token)
        ws = await emulator.session.ws_connect(
            emulator.connect_url(negotiated["connectionToken"], extra=f"&access_token={token}").replace("http", "ws", 1)
        )
        await ws.send_str(HANDSHAKE.decode() + '{"type":1,"target":"broadcastMessage","arguments":["a"]}\x1e')
        await upstream_receiver.event("broadcastMessage")
        await emulator.broadcast("broadcastMessage", "x")
        status, _, _ = await emulator.rest("POST", "/api/hubs/chat/:send?api-version=2022-06-01", {"target": "x"})
        assert status == 202
        await emulator.rest("POST", "/api/hubs/chat/:send", {"target": "x"}, token="bad." + token)
        await ws.close()
        await upstream_receiver.event("disconnected")
    text = caplog.text
    assert "REST POST" in text and "connected hub=chat" in text
    for secret in (emulator.access_key, token, negotiated["connectionToken"]):
        assert secret not in text
    assert records(HANDSHAKE) == [{"protocol": "json", "version": 1}]
