"""MessagePack end to end through the local APIM gateway, in both service modes: the official JS client, one peer in
JSON and one in MessagePack, follows the app server's negotiate redirect to the gateway (the connection string's
``ClientEndpoint``) and chats through it to the service and the app server. The ``websocket`` profile carries
WebSockets, the ``sse-lp`` profile LongPolling (ServerSentEvents cannot carry a binary protocol).

The same chat without the gateway is in ``tests/server/test_e2e.py`` (Serverless) and
``tests/server/test_default_mode_e2e.py`` (Default).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.server.mixed_chat import mixed_chat
from tests.support.fixtures import JsPeerFactory
from tests.support.stack import Stack, start_stack

SUBSCRIPTION_KEY = "msgpack-e2e-subscription-key-0123456789"
ROUTES = {"websocket": ("websockets", "WebSockets"), "sse-lp": ("longpolling", "LongPolling")}


@pytest.fixture(
    scope="module",
    params=[(mode, profile) for mode in ("serverless", "default") for profile in ROUTES],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    mode, profile = request.param
    running = start_stack(
        cwd=tmp_path_factory.mktemp("msgpack"),
        service_mode=mode,
        gateway_args=("--profile", profile, "--subscription-key", SUBSCRIPTION_KEY),
    )
    yield running
    running.stop()


async def test_json_and_messagepack_clients_chat_through_the_gateway(stack: Stack, js_peer: JsPeerFactory) -> None:
    assert stack.gateway is not None
    transport, name = ROUTES[stack.gateway.profile]
    url = f"{stack.hub_url}?subscription-key={SUBSCRIPTION_KEY}"
    json_peer = await js_peer(url, transport=transport)
    msgpack_peer = await js_peer(url, transport=transport, protocol="messagepack")
    for peer in (json_peer, msgpack_peer):
        assert peer.transport == name
        assert peer.base_url is not None and peer.base_url.startswith(stack.gateway.url + "/client/?hub=chat&")
    await mixed_chat(json_peer, msgpack_peer, f"{stack.gateway.profile} via apim")
    # The gateway saw the client traffic and passed every request through (no refusal, no error).
    log = stack.gateway.wait_for_log("/client/")
    statuses = re.findall(r"gateway\.access: [A-Z]+ /client/\S* -> \S+ (\d{3})", log)
    assert statuses and all(status == "101" or status.startswith("2") for status in statuses), log


async def test_a_messagepack_client_alone_through_the_gateway(stack: Stack, js_peer: JsPeerFactory) -> None:
    """Two MessagePack clients and no JSON one: the payloads for them still reach them in MessagePack."""
    assert stack.gateway is not None
    transport, _ = ROUTES[stack.gateway.profile]
    url = f"{stack.hub_url}?subscription-key={SUBSCRIPTION_KEY}"
    first = await js_peer(url, transport=transport, protocol="messagepack")
    second = await js_peer(url, transport=transport, protocol="messagepack")
    await first.send("broadcastMessage", "one", "to both")
    for peer in (first, second):
        assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["one", "to both"])
    assert await second.invoke("echo", "two", "back") is None
    assert await second.next_message("echo") == ("echo", ["two", "back (echo from server)"])
    await second.send("broadcastMessage", "two", "marker")
    assert await first.next_message("broadcastMessage") == ("broadcastMessage", ["two", "marker"])
    assert first.pending_messages() == []
