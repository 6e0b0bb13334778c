"""End to end: ``signalr-emulator`` (upstream → this server) and ``chat-server`` as processes, the official
``@microsoft/signalr`` client in Node as the peer, following the real negotiate redirect, over all three transports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.rest_client import ServiceRestClient
from signalr.connection_string import parse_connection_string
from signalr.upstream import sign_connection_id
from tests.server.mixed_chat import mixed_chat
from tests.support.fixtures import JsPeerFactory
from tests.support.jspeer import JsPeer
from tests.support.stack import Stack, start_stack

TRANSPORTS = {"websockets": "WebSockets", "sse": "ServerSentEvents", "longpolling": "LongPolling"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(cwd=tmp_path_factory.mktemp("e2e"))
    yield running
    running.stop()


async def barrier(sender: JsPeer, *receivers: JsPeer, tag: str) -> list[list[tuple[str, list[Any]]]]:
    """Broadcast a marker and wait until every receiver has it; returns what each had queued before it.

    Upstream events of one connection are handled in order, and each REST send completes before the next event, so
    anything an earlier call sent to a receiver arrives before the marker.
    """
    marker = ["_BARRIER_", tag]
    await sender.send("broadcastMessage", *marker)
    before: list[list[tuple[str, list[Any]]]] = []
    for receiver in receivers:
        taken: list[tuple[str, list[Any]]] = []
        while True:
            message = await receiver.next_message(timeout=10)
            if message == ("broadcastMessage", marker):
                break
            taken.append(message)
        before.append(taken)
    return before


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_two_clients_broadcast_and_echo(stack: Stack, js_peer: JsPeerFactory, transport: str) -> None:
    alice = await js_peer(stack.hub_url, transport=transport)
    bob = await js_peer(stack.hub_url, transport=transport)
    for peer in (alice, bob):
        # Connected through the redirect: the transport runs against the service, not the app server.
        assert peer.transport == TRANSPORTS[transport]
        assert peer.base_url is not None
        assert peer.base_url.startswith(f"{stack.emulator_url}/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&")

    text = f"hello over {transport} <b>&amp;</b> ✓"
    await alice.send("broadcastMessage", "alice", text)
    assert await alice.next_message("broadcastMessage") == ("broadcastMessage", ["alice", text])
    assert await bob.next_message("broadcastMessage") == ("broadcastMessage", ["alice", text])

    await bob.send("echo", "bob", "only for me")
    assert await bob.next_message("echo") == ("echo", ["bob", "only for me (echo from server)"])
    [alice_before, bob_before] = await barrier(bob, alice, bob, tag=transport)
    assert alice_before == []  # the echo never reached alice
    assert bob_before == []


@pytest.mark.parametrize("transport", ["websockets", "longpolling"])
async def test_json_and_messagepack_clients_chat_together(stack: Stack, js_peer: JsPeerFactory, transport: str) -> None:
    """The upstream gets each client's invocations in its protocol (JSON or MessagePack by content type) and answers
    a MessagePack invoke with a MessagePack Completion, which the service passes on unchanged."""
    json_peer = await js_peer(stack.hub_url, transport=transport)
    msgpack_peer = await js_peer(stack.hub_url, transport=transport, protocol="messagepack")
    for peer in (json_peer, msgpack_peer):
        assert peer.transport == TRANSPORTS[transport]
        assert peer.base_url is not None and peer.base_url.startswith(f"{stack.emulator_url}/client/?hub=chat&")
    await mixed_chat(json_peer, msgpack_peer, f"serverless {transport}")
    assert "upstream refused" not in stack.server.process.stderr()


async def test_invoke_gets_the_completion_from_the_upstream_response(stack: Stack, js_peer: JsPeerFactory) -> None:
    carol = await js_peer(stack.hub_url, transport="websockets")
    assert await carol.invoke("echo", "carol", "") is None
    assert await carol.next_message("echo") == ("echo", ["carol", " (echo from server)"])
    with pytest.raises(Exception, match="Unknown hub method 'joinGroup'"):
        await carol.invoke("joinGroup", "g")
    with pytest.raises(Exception, match=r"Invocation provides 1 argument\(s\) but target expects 2"):
        await carol.invoke("broadcastMessage", "only-one")
    # Still connected and served after the errors.
    await carol.send("broadcastMessage", "carol", "still here")
    assert await carol.next_message("broadcastMessage") == ("broadcastMessage", ["carol", "still here"])


async def test_forged_upstream_call_is_rejected_and_changes_nothing(stack: Stack, js_peer: JsPeerFactory) -> None:
    alice = await js_peer(stack.hub_url, transport="websockets")
    bob = await js_peer(stack.hub_url, transport="longpolling")
    forged = {"type": 1, "target": "broadcastMessage", "arguments": ["mallory", "forged"]}
    headers = {
        "X-ASRS-Connection-Id": alice.connection_id or "x",
        "X-ASRS-Hub": "chat",
        "X-ASRS-Category": "messages",
        "X-ASRS-Event": "broadcastMessage",
        "X-ASRS-Signature": sign_connection_id("not-the-access-key", alice.connection_id or "x"),
        "Content-Type": "application/json",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(stack.server.url + "upstream/chat/messages/broadcastMessage", headers=headers, json=forged) as resp,
    ):
        assert resp.status == 401
    [alice_before, bob_before] = await barrier(alice, alice, bob, tag="forged")
    assert alice_before == [] and bob_before == []


async def test_user_id_from_negotiate_makes_user_sends_work(stack: Stack, js_peer: JsPeerFactory) -> None:
    dave = await js_peer(stack.hub_url + "?userId=dave", transport="sse")
    erin = await js_peer(stack.hub_url, transport="sse")
    rest = ServiceRestClient(parse_connection_string(stack.connection_string), "chat")
    await rest.start()
    try:
        await rest.send_to_user("dave", "broadcastMessage", ["_SYSTEM_", "for dave only"])
    finally:
        await rest.close()
    assert await dave.next_message("broadcastMessage") == ("broadcastMessage", ["_SYSTEM_", "for dave only"])
    [erin_before] = await barrier(dave, erin, tag="user")
    assert erin_before == []


async def test_connection_events_reach_the_server_log(stack: Stack, js_peer: JsPeerFactory) -> None:
    frank = await js_peer(stack.hub_url + "?userId=frank", transport="websockets")
    connection_id = frank.connection_id
    await frank.stop()
    await stack.server.process.stderr_line(re.escape(f"disconnected: connection {connection_id}"))
    # With the ": " before it: "connected: connection …" alone is also the tail of the "disconnected: …" line.
    assert f": connected: connection {connection_id} (user frank)" in stack.server.process.stderr()


async def test_secrets_stay_out_of_both_logs(stack: Stack) -> None:
    key = parse_connection_string(stack.connection_string).access_key
    assert key
    for text in (stack.server.process.stderr(), stack.emulator.process.stderr()):
        assert key not in text
        assert "eyJ" not in text  # no access token either


async def test_subscription_key_in_the_hub_url_reaches_apim(tmp_path: Path, js_peer: JsPeerFactory) -> None:
    """Browsers cannot set headers on WebSockets: the key rides in the hub URL and the redirect copies it to APIM."""
    subscription_key = "sub-key-for-the-e2e-test-0123456789"
    # With a built-in profile, every API then requires a key.
    stack = start_stack(cwd=tmp_path, gateway_args=("--profile", "websocket", "--subscription-key", subscription_key))
    try:
        assert stack.gateway is not None
        peer = await js_peer(f"{stack.hub_url}?subscription-key={subscription_key}", transport="websockets")
        assert peer.base_url is not None and peer.base_url.startswith(stack.gateway.url + "/client/?hub=chat&")
        await peer.send("echo", "gina", "via apim")
        assert await peer.next_message("echo") == ("echo", ["gina", "via apim (echo from server)"])
        refused = await js_peer(stack.hub_url, transport="websockets", expect_start=False)
        assert refused.error is not None and "401" in refused.error
        assert subscription_key not in stack.server.process.stderr()
    finally:
        stack.stop()
