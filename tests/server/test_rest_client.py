"""The REST client against real sockets: tokens, paths, timeouts, and retries only where nothing was sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from server.hub import SendToAll, SendToConnection, SendToGroup, SendToUser
from server.rest_client import RestError, ServiceRestClient
from signalr.connection_string import parse_connection_string
from tests.server.conftest import ACCESS_KEY
from tests.server.rest_recorder import RestRecorder
from tests.support.processes import free_port


@pytest.fixture
def recorder() -> Iterator[RestRecorder]:
    rec = RestRecorder(ACCESS_KEY).start()
    yield rec
    rec.stop()


@contextlib.asynccontextmanager
async def client_for(connection_string: str, timeout: float = 5.0) -> AsyncIterator[ServiceRestClient]:
    client = ServiceRestClient(parse_connection_string(connection_string), "Chat", timeout=timeout)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def test_every_action_has_its_path_body_and_a_valid_token(recorder: RestRecorder) -> None:
    async with client_for(recorder.connection_string()) as client:
        await client.send(SendToAll("t", ("a", 1)))
        await client.send(SendToConnection("c/1", "t", ()))
        await client.send(SendToUser("user@x", "t", (None,)))
        await client.send(SendToGroup("g 1", "t", ({"k": "v"},)))
        await client.send_to_all("t", ["x"], excluded=["c1", "c 2"])
    sends = recorder.sends
    assert [(s.path, s.query) for s in sends] == [
        ("/api/hubs/chat/:send", "api-version=2022-06-01"),
        ("/api/hubs/chat/connections/c%2F1/:send", "api-version=2022-06-01"),
        ("/api/hubs/chat/users/user%40x/:send", "api-version=2022-06-01"),
        ("/api/hubs/chat/groups/g%201/:send", "api-version=2022-06-01"),
        ("/api/hubs/chat/:send", "api-version=2022-06-01&excluded=c1&excluded=c%202"),
    ]
    assert [s.body for s in sends] == [
        {"target": "t", "arguments": ["a", 1]},
        {"target": "t", "arguments": []},
        {"target": "t", "arguments": [None]},
        {"target": "t", "arguments": [{"k": "v"}]},
        {"target": "t", "arguments": ["x"]},
    ]
    assert all(s.token_error is None for s in sends)
    assert sends[1].audience == "http://127.0.0.1/api/hubs/chat/connections/c%2F1/:send?api-version=2022-06-01"


async def test_tokens_are_cached_per_audience(recorder: RestRecorder) -> None:
    async with client_for(recorder.connection_string()) as client:
        await client.send_to_all("t", [])
        await client.send_to_all("t", [])
        await client.send_to_connection("c1", "t", [])
    first, second, other = recorder.sends
    assert first.token == second.token
    assert other.token != first.token


async def test_server_endpoint_receives_the_calls_but_aud_names_the_endpoint(recorder: RestRecorder) -> None:
    text = f"Endpoint=https://res.service.signalr.net;AccessKey={ACCESS_KEY};ServerEndpoint=http://127.0.0.1:{recorder.port};"
    async with client_for(text) as client:
        with pytest.raises(RestError, match="401"):
            await client.send_to_all("t", [])
    [send] = recorder.sends
    assert send.audience == "https://res.service.signalr.net/api/hubs/chat/:send?api-version=2022-06-01"
    # The recorder checks aud against its own URL, so it refuses this one: the service's host is not 127.0.0.1.
    assert send.token_error == "audience mismatch"


async def test_refusal_is_a_rest_error_with_the_service_message(recorder: RestRecorder) -> None:
    recorder.status = 400
    async with client_for(recorder.connection_string()) as client:
        with pytest.raises(RestError, match="returned 400: recorder answers 400") as info:
            await client.send_to_all("t", [])
    assert info.value.status == 400
    assert len(recorder.sends) == 1


async def test_wrong_key_is_a_401_rest_error(recorder: RestRecorder) -> None:
    text = recorder.connection_string().replace(ACCESS_KEY, "some-other-key-that-is-long-enough-for-hs256")
    async with client_for(text) as client:
        with pytest.raises(RestError, match="returned 401: invalid signature"):
            await client.send_to_all("t", [])


async def test_timeout_after_sending_is_not_retried(recorder: RestRecorder) -> None:
    recorder.delay = 1.0
    async with client_for(recorder.connection_string(), timeout=0.3) as client:
        with pytest.raises(RestError, match=r"no response within 0\.3 s"):
            await client.send_to_all("t", ["once"])
    await asyncio.sleep(1.0)
    assert len(recorder.sends) == 1  # a retry could have delivered the chat message twice


async def test_connection_dropped_after_sending_is_not_retried() -> None:
    accepted = 0

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client_for(f"Endpoint=http://127.0.0.1;Port={port};AccessKey={ACCESS_KEY};") as client:
            with pytest.raises(RestError, match="ServerDisconnectedError"):
                await client.send_to_all("t", [])
    finally:
        server.close()
        await server.wait_closed()
    assert accepted == 1


async def test_connect_error_is_retried_until_the_service_is_up(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    recorder = RestRecorder(ACCESS_KEY, port=port)
    async with client_for(recorder.connection_string().replace("Port=0", f"Port={port}")) as client:
        send = asyncio.create_task(client.send_to_all("t", ["late"]))
        # The service comes up only once the first attempt was refused (nothing listened yet).
        for _ in range(100):
            if "cannot connect" in caplog.text:
                break
            await asyncio.sleep(0.01)
        assert "cannot connect" in caplog.text and "retrying" in caplog.text
        await asyncio.to_thread(recorder.start)
        try:
            await asyncio.wait_for(send, 5)
            assert [s.body for s in recorder.sends] == [{"target": "t", "arguments": ["late"]}]
        finally:
            recorder.stop()


async def test_connect_error_gives_up_after_the_retries() -> None:
    port = free_port()
    async with client_for(f"Endpoint=http://127.0.0.1;Port={port};AccessKey={ACCESS_KEY};") as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RestError, match=f"cannot connect to http://127.0.0.1:{port}"):
            await client.send_to_all("t", [])
    assert asyncio.get_running_loop().time() - started >= 0.7  # two retries: 0.2 s + 0.5 s


async def test_send_before_start_is_a_clear_error() -> None:
    client = ServiceRestClient(parse_connection_string(f"Endpoint=http://x;AccessKey={ACCESS_KEY};"), "chat")
    with pytest.raises(RestError, match="not started"):
        await client.send_to_all("t", [])
