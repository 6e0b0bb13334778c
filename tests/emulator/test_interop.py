"""Peers nobody here wrote against ``signalr-emulator`` run as a process: the official ``@microsoft/signalr`` client
(Node) over all three transports in JSON and over WebSockets and LongPolling in MessagePack
(``@microsoft/signalr-protocol-msgpack``), ``signalrcore`` and ``pysignalr`` over WebSockets in both protocols
(protocol.md Appendix A)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web

from signalr.connection_string import parse_connection_string
from signalr.hub_protocol import HubProtocol
from signalr.json_protocol import JSON
from signalr.messagepack_protocol import MESSAGEPACK
from signalr.messages import Completion, Invocation
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
    async with serve_app_server(emulator_process) as url:
        yield url


@contextlib.asynccontextmanager
async def serve_app_server(emulator: EmulatorProcess) -> AsyncIterator[str]:
    """A minimal app server's negotiate (``POST /chat/negotiate`` → redirect to ``emulator``) on the core's
    ``build_redirect``; yields its hub URL."""
    connection = parse_connection_string(
        f"Endpoint=http://127.0.0.1;Port={emulator.port};AccessKey={emulator.access_key};Version=1.0;"
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
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/chat"
    finally:
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


# --- MessagePack -----------------------------------------------------------------------------------------------


def invocation_of(call: UpstreamCall) -> tuple[Invocation, HubProtocol]:
    """The invocation an upstream call carries and its protocol, chosen by the body's media type as the Azure
    Functions extension does (``application/x-msgpack`` or ``application/json``)."""
    protocol: HubProtocol = MESSAGEPACK if call.headers.get("content-type") == "application/x-msgpack" else JSON
    message = protocol.decode(call.body)
    assert isinstance(message, Invocation), message
    return message, protocol


def polyglot_hub(emulator: EmulatorProcess) -> Callable[[UpstreamCall], Awaitable[web.Response]]:
    """The Chatroom as a serverless upstream for both protocols: ``broadcastMessage`` is broadcast to the hub over
    REST (so clients of either protocol see each other), ``echo`` answers with a Completion framed in the caller's
    protocol, with its media type (what the Functions extension answers)."""

    async def respond(call: UpstreamCall) -> web.Response:
        if call.headers.get("x-asrs-category") != "messages":
            return web.Response()
        message, protocol = invocation_of(call)
        if message.target == "broadcastMessage":
            body = {"target": "broadcastMessage", "arguments": list(message.arguments)}
            assert await rest(emulator, "POST", "/api/hubs/chat/:send", body) == 202
        elif message.target.lower() == "echo" and message.invocation_id:
            name, text = message.arguments
            completion = Completion.with_result(message.invocation_id, f"{name}: {text} (echo from server)")
            return web.Response(body=protocol.encode(completion), content_type=call.headers["content-type"])
        return web.Response()

    return respond


@pytest.fixture
def polyglot_emulator(run_emulator: RunEmulator, upstream_receiver: UpstreamReceiver) -> EmulatorProcess:
    emulator = run_emulator("--access-key", upstream_receiver.access_key, "--upstream", upstream_receiver.template)
    upstream_receiver.responder = polyglot_hub(emulator)
    return emulator


@pytest.mark.parametrize("transport", ["websockets", "longpolling"])
async def test_official_js_client_in_messagepack(
    polyglot_emulator: EmulatorProcess, upstream_receiver: UpstreamReceiver, js_peer: JsPeerFactory, transport: str
) -> None:
    emulator = polyglot_emulator
    token = client_token(emulator.access_key, **{"asrs.s.uid": "mia"})
    peer = await js_peer(
        f"{emulator.base}/client/?hub=chat", transport=transport, access_token=token, protocol="messagepack"
    )
    assert peer.transport == TRANSPORT_NAMES[transport] and peer.connection_id
    connected = await upstream_receiver.event("connected", peer.connection_id)
    assert connected.signature_ok

    # A send reaches the upstream as an unframed MessagePack invocation, which broadcasts it back over REST.
    await peer.send("broadcastMessage", "mia", "hello")
    sent = await upstream_receiver.event("broadcastMessage", peer.connection_id)
    assert sent.signature_ok and sent.headers["content-type"] == "application/x-msgpack"
    assert msgpack.unpackb(sent.body)[3:5] == ["broadcastMessage", ["mia", "hello"]]
    assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["mia", "hello"])

    # An invocation's Completion, answered in MessagePack, is its result.
    assert await peer.invoke("echo", "mia", "ping") == "mia: ping (echo from server)"

    # REST sends to the user, the connection and a group; values MessagePack types (maps, floats, null) arrive.
    assert (
        await rest(emulator, "POST", "/api/hubs/chat/users/mia/:send", {"target": "echo", "arguments": ["u", 1]}) == 202
    )
    assert await peer.next_message("echo") == ("echo", ["u", 1])
    path = f"/api/hubs/chat/connections/{peer.connection_id}/:send"
    assert await rest(emulator, "POST", path, {"target": "echo", "arguments": [{"k": [1.5, None]}, True]}) == 202
    assert await peer.next_message("echo") == ("echo", [{"k": [1.5, None]}, True])
    assert await rest(emulator, "PUT", f"/api/hubs/chat/groups/team/connections/{peer.connection_id}") == 200
    assert (
        await rest(emulator, "POST", "/api/hubs/chat/groups/team/:send", {"target": "echo", "arguments": ["g"]}) == 202
    )
    assert await peer.next_message("echo") == ("echo", ["g"])

    await peer.stop()
    disconnected = await upstream_receiver.event("disconnected", peer.connection_id, timeout=8)
    assert disconnected.json["Type"] == 11


async def test_js_client_in_messagepack_refuses_server_sent_events_before_connecting(
    polyglot_emulator: EmulatorProcess, upstream_receiver: UpstreamReceiver, js_peer: JsPeerFactory
) -> None:
    """The negotiate response says ServerSentEvents carries Text only, so the client fails without connecting."""
    emulator = polyglot_emulator
    peer = await js_peer(
        f"{emulator.base}/client/?hub=chat",
        transport="sse",
        access_token=client_token(emulator.access_key),
        protocol="messagepack",
        expect_start=False,
    )
    assert peer.error is not None
    assert "Unable to connect to the server with any of the available transports." in peer.error
    assert "'ServerSentEvents' does not support Binary." in peer.error
    await asyncio.sleep(0.3)
    assert not [c for c in upstream_receiver.calls if c.headers.get("x-asrs-event") == "connected"]


async def test_js_clients_of_both_protocols_see_each_others_broadcasts(
    polyglot_emulator: EmulatorProcess, js_peer: JsPeerFactory
) -> None:
    emulator = polyglot_emulator
    url = f"{emulator.base}/client/?hub=chat"
    json_peer = await js_peer(url, transport="sse", access_token=client_token(emulator.access_key))
    mp_peer = await js_peer(
        url, transport="longpolling", access_token=client_token(emulator.access_key), protocol="messagepack"
    )
    mp_ws = await js_peer(url, access_token=client_token(emulator.access_key), protocol="messagepack")
    await json_peer.send("broadcastMessage", "json", "to all")
    await mp_peer.send("broadcastMessage", "messagepack", "to all")
    for peer in (json_peer, mp_peer, mp_ws):
        got = {tuple(arguments) for _, arguments in await peer.messages_until(2)}
        assert got == {("json", "to all"), ("messagepack", "to all")}


async def test_signalrcore_in_messagepack_over_websockets(
    polyglot_emulator: EmulatorProcess, upstream_receiver: UpstreamReceiver
) -> None:
    """signalrcore's MessagePack works over WebSockets (over LongPolling it raises TypeError: Appendix A)."""
    from signalrcore.hub_connection_builder import HubConnectionBuilder
    from signalrcore.protocol.messagepack_protocol import MessagePackHubProtocol  # type: ignore[import-untyped]

    emulator = polyglot_emulator
    token = client_token(emulator.access_key)
    opened, received = threading.Event(), threading.Event()
    got: list[Any] = []
    hub = (
        HubConnectionBuilder()
        .with_url(f"{emulator.base}/client/?hub=chat", options={"access_token_factory": lambda: token})
        .with_hub_protocol(MessagePackHubProtocol())
        .build()
    )

    def on_broadcast(arguments: list[Any]) -> None:
        got.append(arguments)
        received.set()

    hub.on_open(opened.set)
    hub.on("broadcastMessage", on_broadcast)
    try:
        await asyncio.to_thread(hub.start)
        assert await asyncio.to_thread(opened.wait, 10)
        connected = await upstream_receiver.event("connected")
        await asyncio.to_thread(hub.send, "broadcastMessage", ["py", "msgpack"])
        call = await upstream_receiver.event("broadcastMessage", connected.headers["x-asrs-connection-id"])
        assert call.signature_ok and call.headers["content-type"] == "application/x-msgpack"
        message, _ = invocation_of(call)
        assert message.arguments == ("py", "msgpack")
        assert token not in call.body.decode(errors="replace")  # its leaked Authorization header stays here
        assert await asyncio.to_thread(received.wait, 10)
        assert got == [["py", "msgpack"]]
    finally:
        await asyncio.to_thread(hub.stop)


@pytest.fixture
async def polyglot_app_server(polyglot_emulator: EmulatorProcess) -> AsyncIterator[str]:
    async with serve_app_server(polyglot_emulator) as url:
        yield url


async def test_pysignalr_in_messagepack_over_websockets(
    polyglot_emulator: EmulatorProcess, upstream_receiver: UpstreamReceiver, polyglot_app_server: str
) -> None:
    """pysignalr (WebSockets only) with its MessagePack protocol, after the app server's redirect."""
    from pysignalr.client import SignalRClient
    from pysignalr.protocol.messagepack import MessagepackProtocol

    client = SignalRClient(polyglot_app_server, protocol=MessagepackProtocol())
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
        status = await rest(
            polyglot_emulator, "POST", "/api/hubs/chat/:send", {"target": "broadcastMessage", "arguments": ["x", 1]}
        )
        assert status == 202
        assert await asyncio.wait_for(messages.get(), 10) == ["x", 1]
        arguments: list[Any] = ["pysignalr", "msgpack"]
        await client.send("broadcastMessage", arguments)
        call = await upstream_receiver.event("broadcastMessage", connected.headers["x-asrs-connection-id"])
        assert call.headers["content-type"] == "application/x-msgpack"
        assert invocation_of(call)[0].arguments == ("pysignalr", "msgpack")
        assert await asyncio.wait_for(messages.get(), 10) == ["pysignalr", "msgpack"]
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
