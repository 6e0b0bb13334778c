"""Default mode end to end: ``signalr-emulator --service-mode default`` and ``chat-server`` (which dials it) as
processes, with peers nobody here wrote: the official ``@microsoft/signalr`` client in Node over all three
transports, ``signalrcore`` and ``pysignalr``. Every message goes client → service → server connection → the Chat
hub → service message → clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalr.tokens import mint_token
from tests.server.mixed_chat import mixed_chat
from tests.support.fixtures import JsPeerFactory
from tests.support.stack import Stack, start_stack

TRANSPORTS = {"websockets": "WebSockets", "sse": "ServerSentEvents", "longpolling": "LongPolling"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(service_mode="default", cwd=tmp_path_factory.mktemp("default-mode"))
    yield running
    running.stop()


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_two_clients_broadcast_and_echo(stack: Stack, js_peer: JsPeerFactory, transport: str) -> None:
    alice = await js_peer(stack.hub_url, transport=transport)
    bob = await js_peer(stack.hub_url, transport=transport)
    for peer in (alice, bob):
        assert peer.transport == TRANSPORTS[transport]
        assert peer.base_url is not None and peer.base_url.startswith(f"{stack.emulator_url}/client/?hub=chat&")
    await alice.send("broadcastMessage", "alice", f"hello over {transport}")
    for peer in (alice, bob):
        assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["alice", f"hello over {transport}"])
    await bob.send("echo", "bob", "just me")
    assert await bob.next_message("echo") == ("echo", ["bob", "just me (echo from server)"])
    await alice.send("broadcastMessage", "alice", "marker")
    assert await bob.next_message("broadcastMessage") == ("broadcastMessage", ["alice", "marker"])
    assert ("echo", ["bob", "just me (echo from server)"]) not in alice.pending_messages()


@pytest.mark.parametrize("transport", ["websockets", "longpolling"])
async def test_json_and_messagepack_clients_chat_together(stack: Stack, js_peer: JsPeerFactory, transport: str) -> None:
    """A MessagePack client carried through the service: its handshake, messages and completions in MessagePack,
    the hub's sends written for both protocols, each client receiving its own."""
    json_peer = await js_peer(stack.hub_url, transport=transport)
    msgpack_peer = await js_peer(stack.hub_url + "?userId=mp", transport=transport, protocol="messagepack")
    for peer in (json_peer, msgpack_peer):
        assert peer.transport == TRANSPORTS[transport]
        assert peer.base_url is not None and peer.base_url.startswith(f"{stack.emulator_url}/client/?hub=chat&")
    await stack.server.process.stderr_line(
        f"connected: {msgpack_peer.connection_id} \\(user mp\\), protocol messagepack"
    )
    await mixed_chat(json_peer, msgpack_peer, f"default {transport}")


async def test_invoke_completions_and_hub_errors(stack: Stack, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(stack.hub_url, transport="websockets")
    assert await peer.invoke("BroadcastMessage", "p", "case-insensitive") is None
    assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["p", "case-insensitive"])
    with pytest.raises(Exception, match="Unknown hub method 'nope'"):
        await peer.invoke("nope")
    with pytest.raises(Exception, match="Invocation provides 1 argument"):
        await peer.invoke("echo", "only one")


async def test_user_id_from_negotiate_reaches_the_hub(stack: Stack, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(stack.hub_url + "?userId=carol", transport="websockets")
    assert peer.connection_id
    line = await stack.server.process.stderr_line(f"connected: {peer.connection_id} \\(user carol\\)", timeout=5)
    assert line


async def test_signalrcore_connects_to_the_service_directly(stack: Stack) -> None:
    """signalrcore cannot follow the redirect over a gateway, but with a token it talks to the service, whose
    server connection carries its messages to the hub."""
    from signalrcore.hub_connection_builder import HubConnectionBuilder
    from signalrcore.protocol.json_hub_protocol import JsonHubProtocol

    token = mint_token(stack.emulator.access_key, "http://127.0.0.1/client/?hub=chat")
    opened, received = threading.Event(), threading.Event()
    got: list[Any] = []
    hub = (
        HubConnectionBuilder()
        .with_url(f"{stack.emulator_url}/client/?hub=chat", options={"access_token_factory": lambda: token})
        .with_hub_protocol(JsonHubProtocol())
        .build()
    )
    hub.on_open(opened.set)
    hub.on("broadcastMessage", lambda arguments: (got.append(arguments), received.set()))
    try:
        await asyncio.to_thread(hub.start)
        assert await asyncio.to_thread(opened.wait, 10)
        await asyncio.to_thread(hub.send, "broadcastMessage", ["core", "hi"])
        assert await asyncio.to_thread(received.wait, 10)
        assert got == [["core", "hi"]]
    finally:
        await asyncio.to_thread(hub.stop)


async def test_pysignalr_through_the_app_server_redirect(stack: Stack) -> None:
    from pysignalr.client import SignalRClient

    client = SignalRClient(stack.hub_url)
    opened = asyncio.Event()
    messages: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def on_open() -> None:
        opened.set()

    async def on_echo(arguments: list[Any]) -> None:
        await messages.put(arguments)

    client.on_open(on_open)
    client.on("echo", on_echo)
    runner = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        await client.send("echo", ["py", "signalr"])
        assert await asyncio.wait_for(messages.get(), 10) == ["py", "signalr (echo from server)"]
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_secrets_stay_out_of_both_logs(stack: Stack, tmp_path: Path) -> None:
    for text in (stack.server.process.stderr(), stack.emulator.process.stderr()):
        assert stack.emulator.access_key not in text
        assert "Bearer ey" not in text and "access_token=ey" not in text
