"""Our client in MessagePack mode against the real emulator (both service modes), through the real APIM gateway, and
side by side with JSON clients and the official JS client in MessagePack mode: the same hub, every message arriving
in each client's own protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signalr.client import HubError, TransferFormatNotSupported, TransportChoice
from tests.client.conftest import ACCESS_KEY, AppServerFactory, Gateway, ProxyFactory, Stack
from tests.client.inbox import connect
from tests.support.fixtures import JsPeerFactory
from tests.support.stack import start_stack

PICKED = {
    TransportChoice.WEBSOCKETS: "WebSockets",
    TransportChoice.LONG_POLLING: "LongPolling",
    # ServerSentEvents cannot carry Binary: skipped for LongPolling without being tried.
    TransportChoice.SSE_THEN_LONG_POLLING: "LongPolling",
}


@pytest.fixture(scope="module")
def default_stack() -> Iterator[Stack]:
    """The emulator in Default mode, the chat-server holding server connections to it."""
    running = start_stack("--access-key", ACCESS_KEY, service_mode="default")
    yield running
    running.stop()


async def _chat_with_json_clients(hub_url: str, choice: TransportChoice) -> None:
    alice, alice_inbox = connect(hub_url, transport=choice, protocol="messagepack")
    bob, bob_inbox = connect(hub_url, transport=TransportChoice.WEBSOCKETS)
    carol, carol_inbox = connect(hub_url, transport=TransportChoice.SERVER_SENT_EVENTS)
    await alice.start()
    await bob.start()
    await carol.start()
    try:
        assert alice.transport_name == PICKED[choice]
        await alice.send("echo", "alice", "hello")
        assert await alice_inbox.next() == ("echo", ("alice", "hello (echo from server)"))

        await alice.send("broadcastMessage", "alice", "from messagepack")
        for inbox in (alice_inbox, bob_inbox, carol_inbox):
            assert await inbox.next() == ("broadcastMessage", ("alice", "from messagepack"))
        await bob.send("broadcastMessage", "bob", "from json")
        for inbox in (alice_inbox, bob_inbox, carol_inbox):
            assert await inbox.next() == ("broadcastMessage", ("bob", "from json"))

        assert await alice.invoke("broadcastMessage", "alice", "with an id") is None  # a void Completion
        for inbox in (alice_inbox, bob_inbox, carol_inbox):
            assert await inbox.next() == ("broadcastMessage", ("alice", "with an id"))
        with pytest.raises(HubError) as caught:
            await alice.invoke("NoSuchMethod", 1)
        assert str(caught.value) == "Unknown hub method 'NoSuchMethod'"
        assert alice_inbox.messages.empty() and bob_inbox.messages.empty() and carol_inbox.messages.empty()
        handshakes = [e.detail for e in alice_inbox.trace if e.kind == "handshake"]
        assert handshakes == ["handshake complete (messagepack, version 1)"]
        frames = [e.detail for e in alice_inbox.trace if e.kind in ("send", "receive", "poll") and e.detail]
        assert frames and all(d.startswith("messagepack, ") for d in frames), frames
    finally:
        await alice.stop()
        await bob.stop()
        await carol.stop()
    assert await alice_inbox.next_close() is None


@pytest.mark.parametrize("choice", list(PICKED), ids=lambda c: c.value)
async def test_messagepack_chats_with_json_clients_in_serverless_mode(stack: Stack, choice: TransportChoice) -> None:
    await _chat_with_json_clients(stack.hub_url, choice)


@pytest.mark.parametrize("choice", list(PICKED), ids=lambda c: c.value)
async def test_messagepack_chats_with_json_clients_in_default_mode(
    default_stack: Stack, choice: TransportChoice
) -> None:
    await _chat_with_json_clients(default_stack.hub_url, choice)


async def test_server_sent_events_with_messagepack_never_reaches_the_service(
    stack: Stack, app_server: AppServerFactory, recording_proxy: ProxyFactory
) -> None:
    proxy, proxy_url = await recording_proxy(stack.emulator_url)
    _, hub = await app_server(proxy_url)
    connection, _ = connect(hub, transport=TransportChoice.SERVER_SENT_EVENTS, protocol="messagepack")
    with pytest.raises(TransferFormatNotSupported, match=r"^'ServerSentEvents' does not support Binary\. "):
        await connection.start()
    assert proxy.requests == []


async def test_long_polling_bodies_reach_the_service_as_octet_stream(
    stack: Stack, app_server: AppServerFactory, recording_proxy: ProxyFactory
) -> None:
    proxy, proxy_url = await recording_proxy(stack.emulator_url)
    _, hub = await app_server(proxy_url)
    connection, inbox = connect(hub, transport=TransportChoice.LONG_POLLING, protocol="messagepack")
    await connection.start()
    await connection.send("echo", "lp", "binary")
    assert await inbox.next() == ("echo", ("lp", "binary (echo from server)"))
    await connection.stop()
    posts = [r for r in proxy.requests if r.method == "POST" and r.path == "/client/"]
    assert len(posts) >= 3  # handshake, the Invocation, the Close message
    assert {r.headers.get("Content-Type") for r in posts} == {"application/octet-stream"}


async def test_messagepack_through_the_websocket_profile(gateway_ws: Gateway, app_server: AppServerFactory) -> None:
    _, hub = await app_server(gateway_ws.url)
    connection, inbox = connect(hub, protocol="messagepack")
    await connection.start()
    try:
        assert connection.transport_name == "WebSockets"
        await connection.send("echo", "gw", "binary frames")
        assert await inbox.next() == ("echo", ("gw", "binary frames (echo from server)"))
    finally:
        await connection.stop()


async def test_messagepack_through_the_sse_lp_profile_uses_long_polling(
    gateway_sse_lp: Gateway, app_server: AppServerFactory
) -> None:
    _, hub = await app_server(gateway_sse_lp.url)
    connection, inbox = connect(hub, transport=TransportChoice.SSE_THEN_LONG_POLLING, protocol="messagepack")
    await connection.start()
    try:
        assert connection.transport_name == "LongPolling"
        await connection.send("echo", "gw", "binary polls")
        assert await inbox.next() == ("echo", ("gw", "binary polls (echo from server)"))
    finally:
        await connection.stop()
    assert not [e for e in inbox.trace if e.method == "SSE"]  # never tried


@pytest.mark.parametrize("transport", ["websockets", "longpolling"])
async def test_messagepack_with_the_official_js_client_in_messagepack_mode(
    stack: Stack, js_peer: JsPeerFactory, transport: str
) -> None:
    choice = TransportChoice(transport)
    connection, inbox = connect(stack.hub_url, transport=choice, protocol="messagepack")
    await connection.start()
    peer = await js_peer(stack.hub_url, transport=transport, protocol="messagepack")
    try:
        await peer.send("broadcastMessage", "js", "hi python")
        assert await inbox.next() == ("broadcastMessage", ("js", "hi python"))
        await connection.send("broadcastMessage", "py", "hi js")
        assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["js", "hi python"])
        assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["py", "hi js"])
        assert await inbox.next() == ("broadcastMessage", ("py", "hi js"))
    finally:
        await connection.stop()
