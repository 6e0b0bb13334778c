"""Peers nobody here wrote against ``signalr-emulator`` run as a process: the official ``@microsoft/signalr`` client
(Node) over all three transports, ``signalrcore`` and ``pysignalr`` over WebSockets (protocol.md Appendix A)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from signalr.connection_string import parse_connection_string
from signalr.negotiate import build_redirect
from signalr.tokens import mint_token
from tests.support.fixtures import JsPeerFactory

from .conftest import EmulatorProcess, UpstreamCall, UpstreamReceiver, client_token

RunEmulator = Callable[..., EmulatorProcess]
TRANSPORT_NAMES = {"websockets": "WebSockets", "sse": "ServerSentEvents", "longpolling": "LongPolling"}


async def rest(emulator: EmulatorProcess, method: str, path: str, body: Any = None) -> int:
    """One REST call with a token for ``path``; returns the status."""
    token = mint_token(emulator.access_key, "http://127.0.0.1" + path)
    url = f"{emulator.base}{path}?api-version=2022-06-01"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        return response.status


def chat_hub(call: UpstreamCall) -> web.Response:
    """The Chatroom's ``echo`` as a serverless upstream: a Completion for invocations with an id (trap 16)."""
    if call.headers.get("x-asrs-category") != "messages":
        return web.Response()
    message = call.json
    if message["target"].lower() == "echo" and "invocationId" in message:
        name, text = message["arguments"]
        completion = {
            "type": 3,
            "invocationId": message["invocationId"],
            "result": f"{name}: {text} (echo from server)",
        }
        return web.Response(body=json.dumps(completion).encode() + b"\x1e", content_type="application/json")
    return web.Response()


@pytest.fixture
def emulator_process(run_emulator: RunEmulator, upstream_receiver: UpstreamReceiver) -> EmulatorProcess:
    upstream_receiver.responder = chat_hub
    return run_emulator(
        "--access-key",
        upstream_receiver.access_key,
        "--upstream",
        upstream_receiver.template,
        env={"SIGNALR_EMULATOR_KEEPALIVE": "0.5"},
    )


# --- the official JS client ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websockets", "sse", "longpolling"])
async def test_official_js_client_full_round_trip(
    emulator_process: EmulatorProcess, upstream_receiver: UpstreamReceiver, js_peer: JsPeerFactory, transport: str
) -> None:
    emulator = emulator_process
    token = client_token(emulator.access_key, **{"asrs.s.uid": "alice"})
    peer = await js_peer(f"{emulator.base}/client/?hub=chat", transport=transport, access_token=token)
    assert peer.transport == TRANSPORT_NAMES[transport]
    assert peer.connection_id

    connected = await upstream_receiver.event("connected", peer.connection_id)
    assert connected.signature_ok and connected.headers["x-asrs-user-id"] == "alice"

    # A REST broadcast reaches the client.
    assert (
        await rest(emulator, "POST", "/api/hubs/chat/:send", {"target": "broadcastMessage", "arguments": ["srv", "hi"]})
        == 202
    )
    assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["srv", "hi"])

    # A fire-and-forget send reaches the upstream, signed.
    await peer.send("broadcastMessage", "alice", "hello")
    sent = await upstream_receiver.event("broadcastMessage", peer.connection_id)
    assert sent.signature_ok
    assert sent.json == {"type": 1, "target": "broadcastMessage", "arguments": ["alice", "hello"]}

    # An invocation gets the upstream's Completion bytes as its result.
    assert await peer.invoke("echo", "alice", "ping") == "alice: ping (echo from server)"

    # REST send to the user and to the connection.
    assert (
        await rest(emulator, "POST", "/api/hubs/chat/users/alice/:send", {"target": "echo", "arguments": ["u", "1"]})
        == 202
    )
    assert await peer.next_message("echo") == ("echo", ["u", "1"])
    path = f"/api/hubs/chat/connections/{peer.connection_id}/:send"
    assert await rest(emulator, "POST", path, {"target": "echo", "arguments": ["c", "2"]}) == 202
    assert await peer.next_message("echo") == ("echo", ["c", "2"])

    started = time.monotonic()
    await peer.stop()
    disconnected = await upstream_receiver.event("disconnected", peer.connection_id, timeout=8)
    assert disconnected.signature_ok and disconnected.json["Type"] == 11
    # LongPolling's DELETE (and the other transports' close) end the connection at once, not after 5 s.
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("transport", ["websockets", "sse"])
async def test_service_pings_keep_the_js_client_within_its_server_timeout(
    emulator_process: EmulatorProcess, js_peer: JsPeerFactory, transport: str
) -> None:
    """With a 1.5 s server timeout in the client, only the emulator's pings (every 0.5 s here) keep it open."""
    emulator = emulator_process
    peer = await js_peer(
        f"{emulator.base}/client/?hub=chat",
        transport=transport,
        access_token=client_token(emulator.access_key),
        extra_args=["--server-timeout", "1500"],
    )
    await asyncio.sleep(3)
    assert not peer.closed
    assert (
        await rest(emulator, "POST", "/api/hubs/chat/:send", {"target": "broadcastMessage", "arguments": ["a", "b"]})
        == 202
    )
    assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["a", "b"])


@pytest.mark.parametrize("transport", ["websockets", "sse", "longpolling"])
async def test_js_client_sees_the_close_reason(
    emulator_process: EmulatorProcess, js_peer: JsPeerFactory, transport: str
) -> None:
    emulator = emulator_process
    peer = await js_peer(
        f"{emulator.base}/client/?hub=chat", transport=transport, access_token=client_token(emulator.access_key)
    )
    path = f"/api/hubs/chat/connections/{peer.connection_id}"
    token = mint_token(emulator.access_key, "http://127.0.0.1" + path)
    async with (
        aiohttp.ClientSession() as session,
        session.delete(
            f"{emulator.base}{path}?api-version=2022-06-01&reason=kicked", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 200
    error = await peer.wait_closed()
    assert error == "Server returned an error on close: kicked"


async def test_js_client_with_a_bad_token_reports_401(
    emulator_process: EmulatorProcess, js_peer: JsPeerFactory
) -> None:
    peer = await js_peer(
        f"{emulator_process.base}/client/?hub=chat",
        access_token=client_token("not-the-emulator-key-0123456789-abcdefghijkl"),
        expect_start=False,
    )
    assert peer.error is not None and "401" in peer.error


async def test_js_client_invoking_an_unknown_method_gets_the_upstream_error(
    run_emulator: RunEmulator, upstream_receiver: UpstreamReceiver, js_peer: JsPeerFactory
) -> None:
    upstream_receiver.responder = lambda call: web.Response(status=404)
    emulator = run_emulator("--access-key", upstream_receiver.access_key, "--upstream", upstream_receiver.template)
    peer = await js_peer(f"{emulator.base}/client/?hub=chat", access_token=client_token(emulator.access_key))
    with pytest.raises(Exception, match="Invocation failed, status code 404"):
        await peer.invoke("nosuch")


# --- Python peers ----------------------------------------------------------------------------------------------


@pytest.fixture
async def app_server(emulator_process: EmulatorProcess) -> AsyncIterator[str]:
    """A minimal app server's negotiate (``POST /chat/negotiate`` → redirect) on the core's ``build_redirect``."""
    connection = parse_connection_string(
        f"Endpoint=http://127.0.0.1;Port={emulator_process.port};AccessKey={emulator_process.access_key};Version=1.0;"
    )

    async def negotiate(request: web.Request) -> web.Response:
        redirect = build_redirect(connection, "chat", request_path=request.path, request_query=request.query_string)
        return web.Response(body=redirect.to_json(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/chat/negotiate", negotiate)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/chat"
    await runner.cleanup()


async def test_signalrcore_over_websockets(
    emulator_process: EmulatorProcess, upstream_receiver: UpstreamReceiver
) -> None:
    """signalrcore negotiates v0 with the service directly, then talks over a WebSocket (its supported path)."""
    from signalrcore.hub_connection_builder import HubConnectionBuilder
    from signalrcore.protocol.json_hub_protocol import JsonHubProtocol

    emulator = emulator_process
    token = client_token(emulator.access_key)
    opened, received = threading.Event(), threading.Event()
    got: list[Any] = []
    hub = (
        HubConnectionBuilder()
        .with_url(f"{emulator.base}/client/?hub=chat", options={"access_token_factory": lambda: token})
        .with_hub_protocol(JsonHubProtocol())  # it would silently pick MessagePack otherwise (Appendix A)
        .build()
    )
    hub.on_open(opened.set)
    hub.on("broadcastMessage", lambda arguments: (got.append(arguments), received.set()))
    try:
        await asyncio.to_thread(hub.start)
        assert await asyncio.to_thread(opened.wait, 10)
        connected = await upstream_receiver.event("connected")
        assert connected.signature_ok
        assert (
            await rest(
                emulator, "POST", "/api/hubs/chat/:send", {"target": "broadcastMessage", "arguments": ["s", "c"]}
            )
            == 202
        )
        assert await asyncio.to_thread(received.wait, 10)
        assert got == [["s", "c"]]
        await asyncio.to_thread(hub.send, "broadcastMessage", ["py", "hi"])
        call = await upstream_receiver.event("broadcastMessage", connected.headers["x-asrs-connection-id"])
        assert call.signature_ok
        body = call.json
        assert body["arguments"] == ["py", "hi"] and "headers" not in body  # its leaked Authorization stays here
        assert token not in call.body.decode()
    finally:
        await asyncio.to_thread(hub.stop)


async def test_pysignalr_over_websockets_through_an_app_server_redirect(
    emulator_process: EmulatorProcess, upstream_receiver: UpstreamReceiver, app_server: str
) -> None:
    """pysignalr follows the app server's redirect one hop and opens an id-less WebSocket with the Azure token."""
    from pysignalr.client import SignalRClient

    client = SignalRClient(app_server)
    opened = asyncio.Event()
    messages: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def on_open() -> None:
        opened.set()

    async def on_broadcast(arguments: list[Any]) -> None:
        await messages.put(arguments)

    client.on_open(on_open)
    client.on("broadcastMessage", on_broadcast)
    runner = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        connected = await upstream_receiver.event("connected")
        assert connected.signature_ok
        status = await rest(
            emulator_process, "POST", "/api/hubs/chat/:send", {"target": "broadcastMessage", "arguments": ["x", "y"]}
        )
        assert status == 202
        assert await asyncio.wait_for(messages.get(), 10) == ["x", "y"]
        await client.send("broadcastMessage", ["pysignalr", "hello"])
        call = await upstream_receiver.event("broadcastMessage", connected.headers["x-asrs-connection-id"])
        assert call.signature_ok
        assert call.json == {"type": 1, "target": "broadcastMessage", "arguments": ["pysignalr", "hello"]}
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
