"""Server-Sent Events and LongPolling on ``/client/``, and the POST/DELETE endpoints (protocol.md §3.6–§3.9)."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from signalr.sse import SseDecoder

from .conftest import HANDSHAKE, Emulator, EmulatorFactory, UpstreamReceiver, exists, records

NO_CACHE = {
    "Cache-Control": "no-cache, no-store",
    "Pragma": "no-cache",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}


class EventStream:
    """A raw SSE reader over an aiohttp response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.decoder = SseDecoder()
        self.pending: list[bytes] = []

    async def next_event(self, timeout: float = 5) -> bytes:
        async with asyncio.timeout(timeout):
            while not self.pending:
                chunk = await self.response.content.readany()
                if not chunk:
                    raise EOFError("event stream ended")
                self.pending += self.decoder.feed(chunk)
        return self.pending.pop(0)


async def open_sse(emulator: Emulator) -> tuple[aiohttp.ClientResponse, EventStream, str, str]:
    """A handshaken SSE connection: (response, reader, connect URL, connectionId)."""
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    response = await emulator.session.get(
        url + f"&access_token={emulator.client_token()}", headers={"Accept": "text/event-stream"}
    )
    assert response.status == 200
    stream = EventStream(response)
    async with emulator.session.post(url, data=HANDSHAKE, headers=emulator.auth(emulator.client_token())) as posted:
        assert posted.status == 200
    assert records(await stream.next_event()) == [{}]
    return response, stream, url, negotiated["connectionId"]


# --- Server-Sent Events ----------------------------------------------------------------------------------------


async def test_sse_headers_and_preamble_then_one_event_per_message(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"], extra=f"&access_token={emulator.client_token()}")
    async with emulator.session.get(url, headers={"Accept": "text/event-stream"}) as response:
        assert response.status == 200
        for name, value in {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache,no-store",
            "Pragma": "no-cache",
            "Content-Encoding": "identity",
        }.items():
            assert response.headers[name] == value
        # The preamble arrives at once, before the client has sent anything (it is flushed, not buffered).
        assert await asyncio.wait_for(response.content.readexactly(3), 2) == b":\r\n"
        headers = emulator.auth(emulator.client_token())
        async with emulator.session.post(url.split("&access_token")[0], data=HANDSHAKE, headers=headers) as posted:
            assert posted.status == 200
        handshake_event = b"data: {}\x1e\r\n\r\n"
        assert await asyncio.wait_for(response.content.readexactly(len(handshake_event)), 2) == handshake_event
        await emulator.broadcast("broadcastMessage", "alice", "hi")
        event = b'data: {"type":1,"target":"broadcastMessage","arguments":["alice","hi"]}\x1e\r\n\r\n'
        assert await asyncio.wait_for(response.content.readexactly(len(event)), 2) == event


async def test_sse_bearer_header_works_too(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = {"Accept": "text/event-stream", **emulator.auth(emulator.client_token())}
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 200


async def test_sse_without_token_is_401(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    async with emulator.session.get(url, headers={"Accept": "text/event-stream"}) as response:
        assert response.status == 401


async def test_second_event_stream_on_one_id_is_409(emulator: Emulator) -> None:
    response, _, url, _ = await open_sse(emulator)
    async with emulator.session.get(
        url + f"&access_token={emulator.client_token()}", headers={"Accept": "text/event-stream"}
    ) as second:
        assert second.status == 409
    response.close()


async def test_sse_client_disconnect_closes_the_connection(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = emulator_with_upstream
    response, _, _, connection_id = await open_sse(emulator)
    assert await exists(emulator, connection_id) == 200
    response.close()  # the SSE client stops by dropping the TCP connection (§3.6)
    call = await upstream_receiver.event("disconnected", connection_id)
    assert call.json == {"Type": 11}
    assert await exists(emulator, connection_id) == 404


async def test_sse_over_http_1_0_gets_its_events_without_chunk_framing(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    token = emulator.client_token()
    host, port = emulator.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /client/?hub=chat&id={negotiated['connectionToken']} HTTP/1.0\r\n"
        f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.0 200") and b"transfer-encoding" not in head.lower()
    url = emulator.connect_url(negotiated["connectionToken"])
    async with emulator.session.post(url, data=HANDSHAKE, headers=emulator.auth(token)) as posted:
        assert posted.status == 200
    await emulator.broadcast("broadcastMessage", "plain", "1")
    record = b'{"type":1,"target":"broadcastMessage","arguments":["plain","1"]}\x1e'
    expected = b":\r\ndata: {}\x1e\r\n\r\ndata: " + record + b"\r\n\r\n"
    assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected
    writer.close()


async def test_sse_client_that_stops_reading_is_dropped_and_the_others_get_everything(
    start_emulator: EmulatorFactory,
) -> None:
    emulator = await start_emulator(max_buffer_size=65536)
    _, healthy, _, _ = await open_sse(emulator)
    negotiated = await emulator.negotiate()
    token = emulator.client_token()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = emulator.base.removeprefix("http://").split(":")
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(
        f"GET /client/?hub=chat&id={negotiated['connectionToken']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    url = emulator.connect_url(negotiated["connectionToken"])
    async with emulator.session.post(url, data=HANDSHAKE, headers=emulator.auth(token)) as posted:
        assert posted.status == 200
    sent = 0
    for _ in range(600):  # at most 9.6 MB in 16 KB messages; the stalled client never reads again
        await emulator.broadcast("broadcastMessage", "bulk", "x" * 16000)
        sent += 1
        if sent % 20 == 0 and await exists(emulator, negotiated["connectionId"]) == 404:
            break
    assert await exists(emulator, negotiated["connectionId"]) == 404, f"still connected after {sent} messages"
    for n in range(sent):
        assert records(await healthy.next_event())[0]["arguments"] == ["bulk", "x" * 16000], n
    writer.close()
    sock.close()


async def test_sse_ends_after_close_message(emulator: Emulator) -> None:
    response, stream, _, connection_id = await open_sse(emulator)
    status, _, _ = await emulator.rest("DELETE", f"/api/v1/hubs/chat/connections/{connection_id}?reason=bye")
    assert status == 200
    assert records(await stream.next_event()) == [{"type": 7, "error": "bye"}]
    with pytest.raises(EOFError):
        await stream.next_event()
    response.close()


# --- LongPolling -----------------------------------------------------------------------------------------------


async def test_first_poll_is_200_empty_octet_stream_at_once(emulator: Emulator) -> None:
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"], extra=f"&_={int(time.time() * 1000)}")
    started = time.monotonic()
    async with emulator.session.get(url, headers=emulator.auth(emulator.client_token())) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Length"] == "0"
        for name, value in NO_CACHE.items():
            assert response.headers[name] == value
        assert await response.read() == b""
    assert time.monotonic() - started < 1


async def test_poll_is_held_until_data_and_batches_all_queued_records(emulator: Emulator) -> None:
    url, _ = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())

    async def poll() -> bytes:
        async with emulator.session.get(url, headers=headers) as response:
            assert response.status == 200
            return await response.read()

    pending = asyncio.create_task(poll())
    await asyncio.sleep(0.3)
    assert not pending.done()  # held: nothing to deliver yet
    await emulator.broadcast("broadcastMessage", "a", "1")
    assert records(await asyncio.wait_for(pending, 5)) == [
        {"type": 1, "target": "broadcastMessage", "arguments": ["a", "1"]}
    ]
    # Records queued between polls come back together in one response.
    await emulator.broadcast("broadcastMessage", "b", "2")
    await emulator.broadcast("broadcastMessage", "c", "3")
    assert [r["arguments"] for r in records(await poll())] == [["b", "2"], ["c", "3"]]


async def test_poll_timeout_answers_200_empty(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(poll_timeout=0.3)
    url, _ = await emulator.open_lp()
    async with emulator.session.get(url, headers=emulator.auth(emulator.client_token())) as response:
        assert response.status == 200
        assert await response.read() == b""


async def test_held_polls_of_several_connections_each_time_out_after_one_got_data(
    start_emulator: EmulatorFactory,
) -> None:
    emulator = await start_emulator(poll_timeout=0.4)
    headers = emulator.auth(emulator.client_token())
    (first_url, first_id), (second_url, second_id) = [await emulator.open_lp() for _ in range(2)]

    async def poll(url: str) -> tuple[int, bytes]:
        async with emulator.session.get(url, headers=headers) as response:
            return response.status, await response.read()

    first = asyncio.create_task(poll(first_url))
    await emulator.poll_held(first_id)
    second = asyncio.create_task(poll(second_url))
    await emulator.poll_held(second_id)
    path = f"/api/hubs/chat/connections/{first_id}/:send?api-version=2022-06-01"
    status, _, _ = await emulator.rest("POST", path, {"target": "direct", "arguments": ["first only"]})
    assert status == 202
    status, body = await asyncio.wait_for(first, 5)
    assert status == 200 and records(body)[0]["arguments"] == ["first only"]
    # The other poll still ends at its timeout, and so does the answered connection's next poll.
    assert await asyncio.wait_for(second, 5) == (200, b"")
    assert await asyncio.wait_for(poll(first_url), 5) == (200, b"")


async def test_new_poll_supersedes_the_pending_one_with_204(emulator: Emulator) -> None:
    url, connection_id = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())

    async def poll() -> tuple[int, bytes]:
        async with emulator.session.get(url, headers=headers) as response:
            return response.status, await response.read()

    first = asyncio.create_task(poll())
    await emulator.poll_held(connection_id)  # the second poll must arrive after the first
    assert not first.done()
    second = asyncio.create_task(poll())
    assert await asyncio.wait_for(first, 5) == (204, b"")
    await emulator.broadcast("broadcastMessage", "new", "poll")
    status, body = await asyncio.wait_for(second, 5)
    assert status == 200
    assert records(body)[0]["arguments"] == ["new", "poll"]


async def test_delete_is_202_text_plain_and_the_pending_poll_ends_204(
    emulator_with_upstream: Emulator, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = emulator_with_upstream
    url, connection_id = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())
    pending = asyncio.create_task(emulator.session.get(url, headers=headers))
    await emulator.poll_held(connection_id)  # the DELETE must find the poll pending
    async with emulator.session.delete(url, headers=headers) as response:
        assert response.status == 202
        assert response.headers["Content-Type"].startswith("text/plain")
    poll = await asyncio.wait_for(pending, 5)
    assert poll.status == 204
    poll.release()
    assert (await upstream_receiver.event("disconnected", connection_id)).json == {"Type": 11}
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 404
        assert await response.text() == "No Connection with that ID"


async def test_no_poll_within_max_interval_drops_the_connection(
    start_emulator: EmulatorFactory, upstream_receiver: UpstreamReceiver
) -> None:
    emulator = await start_emulator(max_poll_interval=0.4, **upstream_receiver.emulator_settings)
    _, connection_id = await emulator.open_lp()
    call = await upstream_receiver.event("disconnected", connection_id, timeout=5)
    assert call.json == {"Type": 11, "Error": "No poll within the maximum poll interval."}
    assert await exists(emulator, connection_id) == 404


async def test_polling_keeps_the_connection_beyond_the_max_interval(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(max_poll_interval=0.4, poll_timeout=0.2)
    url, connection_id = await emulator.open_lp()
    for _ in range(5):  # 1 s of back-to-back polls, 2.5 times the interval
        async with emulator.session.get(url, headers=emulator.auth(emulator.client_token())) as response:
            assert response.status == 200
    assert await exists(emulator, connection_id) == 200


async def test_long_polling_gets_no_pings(start_emulator: EmulatorFactory) -> None:
    """Trap 12: no pings and no client timeout on LongPolling."""
    emulator = await start_emulator(keepalive_interval=0.1, client_timeout=0.2, poll_timeout=0.8)
    url, connection_id = await emulator.open_lp()
    async with emulator.session.get(url, headers=emulator.auth(emulator.client_token())) as response:
        assert response.status == 200
        assert await response.read() == b""
    assert await exists(emulator, connection_id) == 200


async def test_server_close_delivers_close_message_then_204(emulator: Emulator) -> None:
    url, connection_id = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())
    status, _, _ = await emulator.rest("DELETE", f"/api/v1/hubs/chat/connections/{connection_id}?reason=bye")
    assert status == 200
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 200
        assert records(await response.read()) == [{"type": 7, "error": "bye"}]
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 204
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 404


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_query_token_is_refused_on_poll_send_and_delete(emulator: Emulator, method: str) -> None:
    """Trap 13: only a WebSocket upgrade or an SSE GET may carry ``access_token``."""
    url, _ = await emulator.open_lp()
    async with emulator.session.request(method, url + f"&access_token={emulator.client_token()}") as response:
        assert response.status == 401


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_missing_id_is_400_connection_id_required(emulator: Emulator, method: str) -> None:
    headers = emulator.auth(emulator.client_token())
    async with emulator.session.request(method, f"{emulator.base}/client/?hub=chat", headers=headers) as response:
        assert response.status == 400
        assert await response.text() == "Connection ID required"


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_unknown_id_is_404_no_connection_with_that_id(emulator: Emulator, method: str) -> None:
    headers = emulator.auth(emulator.client_token())
    async with emulator.session.request(method, emulator.connect_url("unknown"), headers=headers) as response:
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("text/plain")
        assert await response.text() == "No Connection with that ID"


async def test_event_stream_on_a_long_polling_connection_is_400(emulator: Emulator) -> None:
    url, _ = await emulator.open_lp()
    async with emulator.session.get(
        url + f"&access_token={emulator.client_token()}", headers={"Accept": "text/event-stream"}
    ) as response:
        assert response.status == 400
        assert await response.text() == "Cannot change transports mid-connection"


# --- POST send -------------------------------------------------------------------------------------------------


async def test_post_body_with_several_records_dispatches_all(emulator: Emulator) -> None:
    """Trap 8: several records in one POST body; each invocation with an id gets its Completion."""
    url, _ = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())
    body = (
        b'{"type":1,"invocationId":"1","target":"a","arguments":[]}\x1e{"type":6}\x1e'
        b'{"type":1,"invocationId":"2","target":"b","arguments":[]}\x1e'
    )
    async with emulator.session.post(url, data=body, headers=headers) as response:
        assert response.status == 200
    got: list[dict[str, object]] = []
    while len(got) < 2:
        async with emulator.session.get(url, headers=headers) as response:
            got += records(await response.read())
    assert [r["invocationId"] for r in got] == ["1", "2"]


async def test_post_with_a_record_split_across_bodies_is_reassembled(emulator: Emulator) -> None:
    url, _ = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())
    for part in (b'{"type":1,"invocationId":"9","tar', b'get":"a","arguments":[]}\x1e'):
        async with emulator.session.post(url, data=part, headers=headers) as response:
            assert response.status == 200
    async with emulator.session.get(url, headers=headers) as response:
        assert records(await response.read())[0]["invocationId"] == "9"


async def test_malformed_post_closes_only_that_connection_with_a_reason(emulator: Emulator) -> None:
    url, bad_id = await emulator.open_lp()
    _, good_id = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())
    async with emulator.session.post(url, data=b'{"type":"x"}\x1e', headers=headers) as response:
        assert response.status == 200
    async with emulator.session.get(url, headers=headers) as response:
        assert records(await response.read()) == [{"type": 7, "error": "Expected 'type' to be of type Integer."}]
    assert await exists(emulator, bad_id) == 404
    assert await exists(emulator, good_id) == 200


async def test_post_to_a_closed_connection_is_an_empty_404(emulator: Emulator) -> None:
    url, connection_id = await emulator.open_lp()
    status, _, _ = await emulator.rest("DELETE", f"/api/v1/hubs/chat/connections/{connection_id}")
    assert status == 200
    async with emulator.session.post(url, data=b'{"type":6}\x1e', headers=emulator.auth(emulator.client_token())) as r:
        assert r.status == 404
        assert await r.read() == b""


async def test_oversized_record_in_a_post_closes_the_connection(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(max_message_size=1000)
    url, connection_id = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())
    async with emulator.session.post(url, data=b"x" * 5000, headers=headers) as response:
        assert response.status == 200
    async with emulator.session.get(url, headers=headers) as response:
        assert records(await response.read()) == [
            {"type": 7, "error": "The message exceeded the maximum message size of 1000 bytes."}
        ]
    assert await exists(emulator, connection_id) == 404


async def test_a_handshake_posted_before_the_first_poll_keeps_the_connection_whole(emulator: Emulator) -> None:
    """A client that POSTs its handshake before its first poll: the first poll starts the transport without
    forgetting that handshake, so the reply and later broadcasts reach it (they were lost before)."""
    negotiated = await emulator.negotiate()
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = emulator.auth(emulator.client_token())
    async with emulator.session.post(url, data=HANDSHAKE, headers=headers) as response:
        assert response.status == 200
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 200  # the first poll: answered at once
    await emulator.broadcast("broadcastMessage", "a", "1")
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 200
        assert records(await response.read()) == [
            {},
            {"type": 1, "target": "broadcastMessage", "arguments": ["a", "1"]},
        ]
