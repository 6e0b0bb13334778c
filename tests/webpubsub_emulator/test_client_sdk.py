"""The official ``azure-messaging-webpubsubclient`` 1.1 (aio and sync, json and reliable JSON subprotocols) against
the emulator: connect, groups, acks, roles, server messages, and a reliable reconnection that loses nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from azure.messaging.webpubsubclient import WebPubSubClient as SyncClient
from azure.messaging.webpubsubclient.aio import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    SendMessageError,
    WebPubSubDataType,
    WebPubSubProtocolType,
)

from tests.support.wps_emulator import WebPubSubEmulator

from .helpers import CuttableProxy, async_service, client_url, eventually, service

ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]
PROTOCOLS = [WebPubSubProtocolType.JSON, WebPubSubProtocolType.JSON_RELIABLE]


class Recorder:
    """Async callbacks for the aio client that record what arrives."""

    def __init__(self) -> None:
        self.connected: list[Any] = []
        self.group: list[tuple[str, Any, str | None]] = []
        self.server: list[Any] = []
        self.disconnected: list[Any] = []

    async def subscribe(self, client: WebPubSubClient) -> None:
        async def on_connected(args: Any) -> None:
            self.connected.append(args)

        async def on_group(args: Any) -> None:
            data = bytes(args.data) if isinstance(args.data, memoryview) else args.data
            self.group.append((args.group, data, args.from_user_id))

        async def on_server(args: Any) -> None:
            self.server.append(args.data)

        async def on_disconnected(args: Any) -> None:
            self.disconnected.append(args)

        await client.subscribe(CallbackType.CONNECTED, on_connected)
        await client.subscribe(CallbackType.GROUP_MESSAGE, on_group)
        await client.subscribe(CallbackType.SERVER_MESSAGE, on_server)
        await client.subscribe(CallbackType.DISCONNECTED, on_disconnected)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["json", "reliable"])
async def test_aio_client_groups_events_and_server_messages(
    emulator: WebPubSubEmulator, protocol: WebPubSubProtocolType
) -> None:
    alice = WebPubSubClient(
        client_url(emulator, user_id="alice", roles=ROLES), protocol_type=protocol, message_retry_total=0
    )
    bob = WebPubSubClient(client_url(emulator, user_id="bob", roles=ROLES), protocol_type=protocol)
    seen_alice, seen_bob = Recorder(), Recorder()
    await seen_alice.subscribe(alice)
    await seen_bob.subscribe(bob)
    async with alice, bob:
        await eventually(lambda: seen_alice.connected and seen_bob.connected)
        assert seen_alice.connected[0].user_id == "alice"
        await alice.join_group("room")
        await bob.join_group("room")
        await alice.send_to_group("room", {"text": "hi"}, WebPubSubDataType.JSON)
        await alice.send_to_group("room", "plain", WebPubSubDataType.TEXT, no_echo=True)
        await bob.send_to_group("room", memoryview(b"\x01\x02"), WebPubSubDataType.BINARY)
        await eventually(lambda: len(seen_bob.group) == 3 and len(seen_alice.group) == 2)
        assert seen_bob.group == [
            ("room", {"text": "hi"}, "alice"),
            ("room", "plain", "alice"),
            ("room", b"\x01\x02", "bob"),
        ]
        assert seen_alice.group == [("room", {"text": "hi"}, "alice"), ("room", b"\x01\x02", "bob")]
        await bob.leave_group("room")
        await alice.send_to_group("room", "after leave", WebPubSubDataType.TEXT)
        async with async_service(emulator) as rest:
            await rest.send_to_user("bob", {"direct": True})
        await eventually(lambda: seen_bob.server == [{"direct": True}] and len(seen_alice.group) == 3)
        assert len(seen_bob.group) == 3
        # No event handler: an event is not delivered, and the ack says so.
        with pytest.raises(SendMessageError) as error:
            await alice.send_event("nobody-listens", {"x": 1}, WebPubSubDataType.JSON)
        assert error.value.error_detail.name == "InvocationFailed"


async def test_aio_client_without_roles_is_forbidden(emulator: WebPubSubEmulator) -> None:
    url = client_url(emulator, user_id="mallory", roles=["webpubsub.sendToGroup.open"])
    client = WebPubSubClient(url, message_retry_total=0)
    async with client:
        with pytest.raises(SendMessageError) as error:
            await client.join_group("secret")
        assert error.value.error_detail.name == "Forbidden"
        with pytest.raises(SendMessageError) as error:
            await client.send_to_group("secret", "x", WebPubSubDataType.TEXT)
        assert error.value.error_detail.name == "Forbidden"
        await client.send_to_group("open", "allowed", WebPubSubDataType.TEXT)


async def test_groups_in_the_token_are_joined_on_connect(emulator: WebPubSubEmulator) -> None:
    client = WebPubSubClient(client_url(emulator, user_id="ivy", groups=["news", "sports"]))
    seen = Recorder()
    await seen.subscribe(client)
    async with client:
        await eventually(lambda: bool(seen.connected))
        rest = service(emulator)
        assert rest.group_exists("news") and rest.group_exists("sports")
        rest.send_to_group("sports", "goal", content_type="text/plain")
        await eventually(lambda: seen.server == ["goal"])


async def test_reliable_reconnection_loses_nothing(emulator: WebPubSubEmulator) -> None:
    proxy = CuttableProxy(emulator.port)
    url = proxy.url(client_url(emulator, user_id="rel", roles=ROLES))
    client = WebPubSubClient(url, protocol_type=WebPubSubProtocolType.JSON_RELIABLE)
    seen = Recorder()
    await seen.subscribe(client)
    try:
        async with client, async_service(emulator) as rest:
            await eventually(lambda: bool(seen.connected))
            connection_id = seen.connected[0].connection_id
            await client.join_group("log")
            for i in range(5):
                await rest.send_to_group("log", {"i": i})
            await eventually(lambda: len(seen.server) == 5)
            proxy.cut()
            for i in range(5, 15):  # while the client is away
                await rest.send_to_group("log", {"i": i})
            await eventually(lambda: len(seen.server) >= 15, timeout=20, what="the messages sent while away")
            for i in range(15, 20):
                await rest.send_to_group("log", {"i": i})
            await eventually(lambda: len(seen.server) >= 20)
            assert [m["i"] for m in seen.server] == list(range(20))
            assert proxy.accepted >= 2  # it did reconnect
            assert len(seen.connected) == 1  # resumed, not a new connection
            assert await rest.connection_exists(connection_id)
            assert seen.disconnected == []
    finally:
        proxy.close()


async def test_json_client_reconnects_as_a_new_connection(emulator: WebPubSubEmulator) -> None:
    proxy = CuttableProxy(emulator.port)
    rest = service(emulator)

    async def fresh_url() -> str:
        return proxy.url(client_url(emulator, user_id="plainjson"))

    client = WebPubSubClient(
        WebPubSubClientCredential(fresh_url),
        protocol_type=WebPubSubProtocolType.JSON,
        reconnect_retry_backoff_factor=0.1,
    )
    seen = Recorder()
    await seen.subscribe(client)
    try:
        async with client:
            await eventually(lambda: bool(seen.connected))
            first = seen.connected[0].connection_id
            proxy.cut()
            await eventually(lambda: len(seen.connected) == 2, timeout=20, what="a new connection")
            second = seen.connected[1].connection_id
            assert second != first
            await eventually(lambda: not rest.connection_exists(first), what="the old connection gone")
            assert rest.connection_exists(second)
    finally:
        proxy.close()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["json", "reliable"])
def test_sync_client(emulator: WebPubSubEmulator, protocol: WebPubSubProtocolType) -> None:
    url = client_url(emulator, user_id="sync", roles=ROLES)
    client = SyncClient(url, protocol_type=protocol, message_retry_total=0)
    got: list[Any] = []
    done = threading.Event()

    def on_group(args: Any) -> None:
        got.append(args.data)
        if len(got) == 2:
            done.set()

    client.subscribe(CallbackType.GROUP_MESSAGE, on_group)
    with client:
        client.join_group("sync-room")
        client.send_to_group("sync-room", {"n": 1}, WebPubSubDataType.JSON)
        client.send_to_group("sync-room", "two", WebPubSubDataType.TEXT)
        assert done.wait(10), got
        assert got == [{"n": 1}, "two"]
        with pytest.raises(SendMessageError) as error:
            client.send_event("nobody", "x", WebPubSubDataType.TEXT)
        assert error.value.error_detail.name == "InvocationFailed"
    deadline = time.monotonic() + 5
    while service(emulator).user_exists("sync") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not service(emulator).user_exists("sync")
    asyncio.run(asyncio.sleep(0))
