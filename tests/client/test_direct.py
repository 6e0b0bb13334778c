"""Every transport choice against the real emulator, negotiated through the real chat-server (its redirect)."""

from __future__ import annotations

import asyncio
import re

import pytest

from signalr.client import ConnectionState, HubError, NotConnected, TransportChoice
from tests.client.conftest import Stack
from tests.client.inbox import connect

EXPECTED_TRANSPORT = {
    TransportChoice.WEBSOCKETS: "WebSockets",
    TransportChoice.SERVER_SENT_EVENTS: "ServerSentEvents",
    TransportChoice.LONG_POLLING: "LongPolling",
    TransportChoice.SSE_THEN_LONG_POLLING: "ServerSentEvents",
}


@pytest.mark.parametrize("choice", list(TransportChoice), ids=lambda c: c.value)
async def test_echo_and_broadcast_on_every_transport(stack: Stack, choice: TransportChoice) -> None:
    alice, alice_inbox = connect(stack.hub_url, transport=choice)
    bob, bob_inbox = connect(stack.hub_url, transport=TransportChoice.WEBSOCKETS)
    states: list[tuple[ConnectionState, ConnectionState]] = []
    alice.on_state_change(lambda old, new: states.append((old, new)))
    await alice.start()
    await bob.start()
    try:
        assert alice.state is ConnectionState.CONNECTED
        assert alice.transport_name == EXPECTED_TRANSPORT[choice]
        assert alice.connection_id and alice.connection_id != bob.connection_id
        # Redirected by the app server to the service's client endpoint: /client/?hub=chat&asrs.op=%2Fchat…
        assert alice.connected_url is not None and alice.connected_url.startswith(
            f"{stack.emulator_url}/client/?hub=chat"
        )

        await alice.send("echo", "alice", "hello")
        assert await alice_inbox.next() == ("echo", ("alice", "hello (echo from server)"))

        await alice.send("broadcastMessage", "alice", "to everyone")
        assert await alice_inbox.next() == ("broadcastMessage", ("alice", "to everyone"))
        assert await bob_inbox.next() == ("broadcastMessage", ("alice", "to everyone"))
        assert alice_inbox.messages.empty() and bob_inbox.messages.empty()  # the echo went to alice only
    finally:
        await alice.stop()
        await bob.stop()
    assert states == [
        (ConnectionState.DISCONNECTED, ConnectionState.CONNECTING),
        (ConnectionState.CONNECTING, ConnectionState.CONNECTED),
        (ConnectionState.CONNECTED, ConnectionState.DISCONNECTING),
        (ConnectionState.DISCONNECTING, ConnectionState.DISCONNECTED),
    ]
    assert await alice_inbox.next_close() is None


@pytest.mark.parametrize("choice", [TransportChoice.WEBSOCKETS, TransportChoice.LONG_POLLING], ids=lambda c: c.value)
async def test_invoke_completes_with_void_and_unknown_method_is_a_hub_error(
    stack: Stack, choice: TransportChoice
) -> None:
    connection, inbox = connect(stack.hub_url, transport=choice)
    await connection.start()
    try:
        assert await connection.invoke("broadcastMessage", "carol", "with an id") is None
        assert await inbox.next() == ("broadcastMessage", ("carol", "with an id"))
        assert connection.last_rtt_ms is not None and connection.last_rtt_ms > 0
        with pytest.raises(HubError) as caught:
            await connection.invoke("NoSuchMethod", 1)
        assert str(caught.value) == "Unknown hub method 'NoSuchMethod'"  # the hub's own text, unchanged
    finally:
        await connection.stop()


async def test_send_before_start_and_after_stop_is_refused(stack: Stack) -> None:
    connection, _ = connect(stack.hub_url)
    refused = re.escape("Cannot send data if the connection is not in the 'Connected' State.")
    with pytest.raises(NotConnected, match=refused):
        await connection.send("echo", "a", "b")
    await connection.start()
    await connection.stop()
    await connection.stop()  # idempotent
    with pytest.raises(NotConnected):
        await connection.invoke("echo", "a", "b")
    assert connection.state is ConnectionState.DISCONNECTED
    assert connection.connection_id is None


async def test_handlers_match_case_insensitively_and_survive_exceptions(stack: Stack) -> None:
    connection, inbox = connect(stack.hub_url)
    seen: asyncio.Queue[str] = asyncio.Queue()

    def broken(*_: object) -> None:
        raise RuntimeError("handler bug")

    async def async_handler(name: str, message: str) -> None:
        seen.put_nowait(f"async {message}")

    connection.on("ECHO", broken)
    connection.on("Echo", async_handler)
    await connection.start()
    try:
        await connection.send("echo", "dave", "one")
        assert await inbox.next() == ("echo", ("dave", "one (echo from server)"))
        await connection.send("echo", "dave", "two")  # the receive loop survived the broken handler
        assert await inbox.next() == ("echo", ("dave", "two (echo from server)"))
        # Async handlers run as tasks: wait for them rather than assume they ran before the inbox saw the message.
        async with asyncio.timeout(5):
            assert [await seen.get(), await seen.get()] == [
                "async one (echo from server)",
                "async two (echo from server)",
            ]
        assert seen.empty()
    finally:
        await connection.stop()
