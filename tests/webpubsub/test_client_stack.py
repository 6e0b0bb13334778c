"""Our Web PubSub client on the whole local stack: ``webpubsub-emulator`` whose event handler is ``chat-server
--service webpubsub``, behind ``apim-gateway --profile webpubsub`` that requires a subscription key. The client gets
its URL from the chat server's negotiate (``ClientEndpoint`` = the gateway) and sends the key as
``Ocp-Apim-Subscription-Key`` on the WebSocket upgrade, which the official client cannot do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from signalr.client.errors import SubscriptionKeyRejected
from tests.support.processes import free_port
from tests.support.stack import Gateway, start_gateway
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator
from tests.support.wps_server import WebPubSubChatServer, start_webpubsub_chat_server
from webpubsub.client import SendError, TraceEvent, WebPubSubClient
from webpubsub.subprotocol import (
    ERROR_INVOCATION_FAILED,
    JSON_SUBPROTOCOL,
    RELIABLE_JSON_SUBPROTOCOL,
    DataType,
    ServerMessage,
)

KEY = "stack-subscription-key-0123456789"
WAIT = 10.0


@dataclass
class Stack:
    emulator: WebPubSubEmulator
    gateway: Gateway
    server: WebPubSubChatServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = free_port()  # the emulator needs the event handler's URL before the server exists
    emulator = start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{port}/eventhandler")
    gateway: Gateway | None = None
    try:
        gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub", "--subscription-key", KEY)
        server = start_webpubsub_chat_server(
            emulator.connection_string_to(gateway.url), port=port, cwd=Path(tmp_path_factory.mktemp("wps-client"))
        )
    except BaseException:
        if gateway is not None:
            gateway.stop()
        emulator.stop()
        raise
    yield Stack(emulator, gateway, server)
    server.stop()
    gateway.stop()
    emulator.stop()


def negotiator(stack: Stack, user: str) -> Callable[[], Awaitable[str]]:
    """A URL provider: ``POST /chat/negotiate?id=<user>`` on the chat server, as the chat app does."""

    async def negotiate() -> str:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{stack.server.negotiate_url}?id={user}", timeout=aiohttp.ClientTimeout(total=WAIT)
            ) as answer:
                assert answer.status == 200, await answer.text()
                body = await answer.json()
        assert body["service"] == "webpubsub" and body["hub"] == "chat"
        url: str = body["url"]
        return url

    return negotiate


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def clients() -> AsyncIterator[list[WebPubSubClient]]:
    made: list[WebPubSubClient] = []
    yield made
    for client in made:
        await client.stop()


@pytest.mark.parametrize("protocol", [RELIABLE_JSON_SUBPROTOCOL, JSON_SUBPROTOCOL])
async def test_chat_events_through_the_gateway_with_a_subscription_key(
    stack: Stack, protocol: str, clients: list[WebPubSubClient]
) -> None:
    inbox: dict[str, list[ServerMessage]] = {"alice": [], "bob": []}
    trace: list[TraceEvent] = []
    for user in ("alice", "bob"):
        client = WebPubSubClient(
            negotiator(stack, user),
            protocol=protocol,
            headers={"Ocp-Apim-Subscription-Key": KEY},
            on_server_message=inbox[user].append,
            trace=trace.append if user == "alice" else None,
        )
        clients.append(client)
        await client.start()
    alice, bob = clients
    assert (alice.user_id, bob.user_id) == ("alice", "bob")
    assert alice.connected_url.startswith(f"ws://{stack.gateway.host}/client/hubs/chat?access_token=***")

    await alice.send_event("broadcastMessage", {"name": "alice", "message": "hello all"})
    await wait_for(lambda: len(inbox["alice"]) == 1 and len(inbox["bob"]) == 1, "the broadcast at both")
    for user in ("alice", "bob"):
        message = inbox[user][0]
        assert message.data_type is DataType.JSON
        assert message.data == {"name": "alice", "message": "hello all", "target": "broadcastMessage"}

    await bob.send_event("echo", {"name": "bob", "message": "just me"})
    await wait_for(lambda: len(inbox["bob"]) == 2, "the echo")
    assert inbox["bob"][1].data == {"name": "bob", "message": "just me (echo from server)", "target": "echo"}
    await asyncio.sleep(0.3)
    assert len(inbox["alice"]) == 1  # the echo went to its caller only

    # The event handler refuses bad data with 400: the event's ack is InvocationFailed (concept-ack).
    with pytest.raises(SendError) as refused:
        await alice.send_event("broadcastMessage", "not an object", DataType.TEXT)
    assert refused.value.name == ERROR_INVOCATION_FAILED and refused.value.ack_id is not None

    text = "\n".join(repr(e) for e in trace)
    assert KEY not in text and "hello all" not in text
    access_lines = stack.gateway.wait_for_log("101")
    assert KEY not in access_lines


async def test_without_the_subscription_key_the_gateway_refuses(stack: Stack) -> None:
    client = WebPubSubClient(negotiator(stack, "carol"))
    with pytest.raises(SubscriptionKeyRejected) as info:
        await client.start()
    assert "Ocp-Apim-Subscription-Key" in str(info.value)
    wrong = WebPubSubClient(negotiator(stack, "carol"), headers={"Ocp-Apim-Subscription-Key": "wrong"})
    with pytest.raises(SubscriptionKeyRejected):
        await wrong.start()
