"""End to end on Azure Web PubSub: the official ``azure-messaging-webpubsubclient`` (aio) connects with the URL from
``chat-server --service webpubsub``'s negotiate to ``webpubsub-emulator``, whose event handler is the chat server.

A ``broadcastMessage`` event reaches every client as a server message; an ``echo`` only its caller. Both protocols of
the official client (json and reliable json) are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from azure.messaging.webpubsubclient.aio import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OnConnectedArgs,
    OnServerDataMessageArgs,
    SendMessageError,
    WebPubSubDataType,
    WebPubSubProtocolType,
)

from tests.support.processes import free_port
from tests.support.stack import start_gateway
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator
from tests.support.wps_jspeer import WpsJsPeer
from tests.support.wps_server import WebPubSubChatServer, start_webpubsub_chat_server

TIMEOUT = 10.0


@dataclass
class Stack:
    emulator: WebPubSubEmulator
    server: WebPubSubChatServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The emulator must know the event handler's URL before the server (which needs its connection string) starts.
    port = free_port()
    emulator = start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{port}/eventhandler")
    try:
        server = start_webpubsub_chat_server(
            emulator.connection_string, port=port, cwd=tmp_path_factory.mktemp("wps-e2e")
        )
    except BaseException:
        emulator.stop()
        raise
    yield Stack(emulator, server)
    server.stop()
    emulator.stop()


async def _negotiate(server: WebPubSubChatServer, user: str, query: str = "") -> str:
    async with aiohttp.ClientSession() as session:
        url = f"{server.negotiate_url}?id={user}{query}"
        async with session.post(url, timeout=aiohttp.ClientTimeout(TIMEOUT)) as answer:
            assert answer.status == 200, await answer.text()
            body = await answer.json()
    assert body["service"] == "webpubsub"
    url: str = body["url"]
    return url


class Peer:
    """An official client and what it has seen."""

    def __init__(self, server: WebPubSubChatServer, user: str, protocol: WebPubSubProtocolType) -> None:
        async def url() -> str:
            return await _negotiate(server, user)

        self.client = WebPubSubClient(
            credential=WebPubSubClientCredential(url),
            protocol_type=protocol,
            reconnect_retry_total=0,
            message_retry_total=0,
        )
        self.messages: asyncio.Queue[OnServerDataMessageArgs] = asyncio.Queue()
        self.connected: asyncio.Future[OnConnectedArgs] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        async def on_message(args: OnServerDataMessageArgs) -> None:
            self.messages.put_nowait(args)

        async def on_connected(args: OnConnectedArgs) -> None:
            if not self.connected.done():
                self.connected.set_result(args)

        await self.client.subscribe(CallbackType.SERVER_MESSAGE, on_message)
        await self.client.subscribe(CallbackType.CONNECTED, on_connected)
        await asyncio.wait_for(self.client.open(), TIMEOUT)
        await asyncio.wait_for(asyncio.shield(self.connected), TIMEOUT)

    async def next_message(self) -> OnServerDataMessageArgs:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    async def send(self, event: str, name: str, message: str) -> None:
        data = {"name": name, "message": message}
        await asyncio.wait_for(self.client.send_event(event, data, WebPubSubDataType.JSON), TIMEOUT)


@contextlib.asynccontextmanager
async def peers(server: WebPubSubChatServer, protocol: WebPubSubProtocolType, *users: str) -> AsyncIterator[list[Peer]]:
    started: list[Peer] = []
    try:
        for user in users:
            peer = Peer(server, user, protocol)
            await peer.start()
            started.append(peer)
        yield started
    finally:
        for peer in started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.client.close(), TIMEOUT)


@pytest.mark.parametrize("protocol", [WebPubSubProtocolType.JSON_RELIABLE, WebPubSubProtocolType.JSON])
async def test_broadcast_reaches_everyone_and_echo_only_the_caller(
    stack: Stack, protocol: WebPubSubProtocolType
) -> None:
    async with peers(stack.server, protocol, "alice", "bob") as (alice, bob):
        assert alice.connected.result().user_id == "alice"
        assert bob.connected.result().user_id == "bob"

        await alice.send("broadcastMessage", "alice", "hello all")
        for peer in (alice, bob):
            message = await peer.next_message()
            assert message.data_type == WebPubSubDataType.JSON
            assert message.data == {"name": "alice", "message": "hello all", "target": "broadcastMessage"}

        await bob.send("echo", "bob", "just me")
        echo = await bob.next_message()
        assert echo.data == {"name": "bob", "message": "just me (echo from server)", "target": "echo"}

        # Alice did not get the echo: her next message is the broadcast sent after it.
        await bob.send("broadcastMessage", "bob", "after the echo")
        assert (await alice.next_message()).data["message"] == "after the echo"
        assert (await bob.next_message()).data["message"] == "after the echo"
        assert alice.messages.empty() and bob.messages.empty()


async def test_the_server_refuses_unknown_events_and_keeps_serving(stack: Stack) -> None:
    async with peers(stack.server, WebPubSubProtocolType.JSON_RELIABLE, "carol") as (carol,):
        with pytest.raises(SendMessageError) as failed:
            await carol.send("shout", "carol", "nobody handles this")
        # An ack with an error (not a timeout or a dropped connection): the service failed the caller's event.
        assert failed.value.error_detail is not None
        await asyncio.wait_for(
            stack.server.process.stderr_line(r"event refused \(400\): Unknown event 'shout'"), TIMEOUT
        )
    async with peers(stack.server, WebPubSubProtocolType.JSON_RELIABLE, "dave") as (dave,):
        await dave.send("echo", "dave", "still here")
        assert (await dave.next_message()).data["message"] == "still here (echo from server)"


async def test_no_secret_in_the_servers_log(stack: Stack) -> None:
    url = await _negotiate(stack.server, "erin")
    token = url.split("access_token=", 1)[1]
    async with peers(stack.server, WebPubSubProtocolType.JSON_RELIABLE, "erin") as (erin,):
        await erin.send("echo", "erin", "x")
        await erin.next_message()
    log = stack.server.stderr()
    assert "echo from " in log and "connected: " in log
    assert stack.emulator.access_key not in log
    assert token not in log and "eyJ" not in log
    assert json.dumps(stack.emulator.access_key)[1:-1] not in log


async def test_python_and_javascript_clients_chat_together(stack: Stack) -> None:
    """The npm ``@azure/web-pubsub-client`` (under Node, asking the server's negotiate itself) and the Python client in
    one room."""
    js = await WpsJsPeer.start(negotiate=f"{stack.server.negotiate_url}?id=jsuser", protocol="reliable")
    try:
        assert js.user_id == "jsuser"
        async with peers(stack.server, WebPubSubProtocolType.JSON_RELIABLE, "pyuser") as (py,):
            await js.send_event("broadcastMessage", {"name": "jsuser", "message": "from node"})
            expected = {"name": "jsuser", "message": "from node", "target": "broadcastMessage"}
            assert await js.next_data(timeout=TIMEOUT) == expected
            assert (await py.next_message()).data == expected

            await py.send("echo", "pyuser", "from python")
            assert (await py.next_message()).data["target"] == "echo"
            await js.send_event("echo", {"name": "jsuser", "message": "mine"})
            echo = await js.next_data(timeout=TIMEOUT)
            assert echo == {"name": "jsuser", "message": "mine (echo from server)", "target": "echo"}
            assert js.pending("server-message") == [] and py.messages.empty()
    finally:
        await js.stop()


async def test_clients_reach_the_service_through_the_gateway(tmp_path: Path) -> None:
    """``ClientEndpoint=`` the APIM gateway (``--profile webpubsub``): negotiate sends clients to the gateway, whose
    WebSocket API relays them to the service, which still accepts the token (its ``aud`` names the service)."""
    port = free_port()
    with start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{port}/eventhandler") as emulator:
        gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub")
        try:
            connection_string = emulator.connection_string_to(gateway.url)
            with start_webpubsub_chat_server(connection_string, port=port, cwd=tmp_path) as server:
                url = await _negotiate(server, "frank")
                assert url.startswith(f"ws://{gateway.host}/client/hubs/chat?access_token=")
                async with peers(server, WebPubSubProtocolType.JSON_RELIABLE, "frank", "grace") as (frank, grace):
                    await frank.send("broadcastMessage", "frank", "via APIM")
                    for peer in (frank, grace):
                        assert (await peer.next_message()).data["message"] == "via APIM"
                line = await gateway.log_line(r"GET /client/hubs/chat\?access_token=\*\*\* .*101", TIMEOUT)
                assert "eyJ" not in line
        finally:
            gateway.stop()


async def test_a_subscription_key_from_the_negotiate_query_passes_a_keyed_gateway(tmp_path: Path) -> None:
    """APIM with a subscription required: a client that cannot send headers (a browser; the official Python client)
    asks negotiate with ``?subscription-key=`` and the client access URL carries it through the gateway."""
    port = free_port()
    key = "wps-apim-key-0123"
    with start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{port}/eventhandler") as emulator:
        gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub", "--subscription-key", key)
        try:
            connection_string = emulator.connection_string_to(gateway.url)
            with start_webpubsub_chat_server(connection_string, port=port, cwd=tmp_path) as server:

                async def plain_url() -> str:
                    return await _negotiate(server, "ivan")

                refused = WebPubSubClient(credential=WebPubSubClientCredential(plain_url), reconnect_retry_total=0)
                with pytest.raises(Exception):  # noqa: B017 (the official client raises its own types)
                    await asyncio.wait_for(refused.open(), TIMEOUT)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(refused.close(), TIMEOUT)
                await gateway.log_line(r"GET /client/hubs/chat\?access_token=\*\*\* .*401", TIMEOUT)

                async def keyed_url() -> str:
                    return await _negotiate(server, "ivan", f"&subscription-key={key}")

                client = WebPubSubClient(credential=WebPubSubClientCredential(keyed_url), reconnect_retry_total=0)
                messages: asyncio.Queue[OnServerDataMessageArgs] = asyncio.Queue()

                async def on_message(args: OnServerDataMessageArgs) -> None:
                    messages.put_nowait(args)

                await client.subscribe(CallbackType.SERVER_MESSAGE, on_message)
                try:
                    await asyncio.wait_for(client.open(), TIMEOUT)
                    data = {"name": "ivan", "message": "keyed"}
                    await asyncio.wait_for(client.send_event("echo", data, WebPubSubDataType.JSON), TIMEOUT)
                    echoed = await asyncio.wait_for(messages.get(), TIMEOUT)
                    assert echoed.data["message"] == "keyed (echo from server)"
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.close(), TIMEOUT)
            assert key not in gateway.stderr()
        finally:
            gateway.stop()


async def test_concurrent_events_each_reach_the_right_clients(stack: Stack) -> None:
    """A bounded burst: 3 clients send 10 echoes and 3 broadcasts each, all at once; every client gets exactly its own
    echoes and every broadcast, none twice."""
    users = ("h1", "h2", "h3")
    async with peers(stack.server, WebPubSubProtocolType.JSON_RELIABLE, *users) as clients:
        sends = [
            peer.send("echo", user, f"{user}-echo-{i}")
            for peer, user in zip(clients, users, strict=True)
            for i in range(10)
        ] + [
            peer.send("broadcastMessage", user, f"{user}-all-{i}")
            for peer, user in zip(clients, users, strict=True)
            for i in range(3)
        ]
        await asyncio.wait_for(asyncio.gather(*sends), 3 * TIMEOUT)
        broadcasts = {f"{user}-all-{i}" for user in users for i in range(3)}
        for peer, user in zip(clients, users, strict=True):
            got = [(await peer.next_message()).data for _ in range(10 + len(broadcasts))]
            echoes = sorted(d["message"] for d in got if d["target"] == "echo")
            assert echoes == sorted(f"{user}-echo-{i} (echo from server)" for i in range(10))
            assert {d["message"] for d in got if d["target"] == "broadcastMessage"} == broadcasts
            assert len(got) == 10 + len(broadcasts)
        await asyncio.sleep(0.2)
        assert all(peer.messages.empty() for peer in clients)
