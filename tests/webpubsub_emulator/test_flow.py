"""webpubsub-emulator --flow-to: the service's hop events for one chat message, correlated by one flow id.

Real processes on 127.0.0.1: ``webpubsub-emulator`` (its event handler the chat server) and ``chat-server --service
webpubsub``, both publishing to a :class:`FlowCollector` the test binds; two official Python clients
(``azure-messaging-webpubsubclient``), the sender on ``json.webpubsub.azure.v1``, the listener on the reliable
subprotocol. The flow id is computed here from the sender's connection id and the ``ackId`` it gave its event; it
must be on the service's invoke, event handler POST, REST send and fan-out hops. Every raw datagram is checked for
secrets; without ``--flow-to`` the emulator opens no UDP socket.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.messaging.webpubsubclient.aio import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OnConnectedArgs,
    OnServerDataMessageArgs,
    WebPubSubDataType,
    WebPubSubProtocolType,
)

from flow.hops import Role
from flow.ids import flow_id
from tests.emulator.test_flow import RawCollector, has_udp_socket, service_hops, wait_for_hops
from tests.support.processes import free_port, script
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator
from tests.support.wps_server import WebPubSubChatServer, start_webpubsub_chat_server

pytestmark = pytest.mark.timeout(90)

TIMEOUT = 10.0
ACK_ID = 7


@dataclass
class WpsStack:
    emulator: WebPubSubEmulator
    server: WebPubSubChatServer

    def stop(self) -> None:
        self.server.stop()
        self.emulator.stop()


@pytest.fixture
async def collector() -> AsyncIterator[RawCollector]:
    collector = RawCollector()
    await collector.start()
    yield collector
    collector.close()


@pytest.fixture
def stack_factory() -> Iterator[Any]:
    started: list[WpsStack] = []

    def factory(flow_to: str | None) -> WpsStack:
        flow_args = ["--flow-to", flow_to] if flow_to else []
        port = free_port()
        emulator = start_webpubsub_emulator(*flow_args, event_handler=f"http://127.0.0.1:{port}/eventhandler")
        try:
            server = start_webpubsub_chat_server(
                emulator.connection_string, *flow_args, port=port, cwd=Path(tempfile.mkdtemp(prefix="wps-flow-"))
            )
        except BaseException:
            emulator.stop()
            raise
        stack = WpsStack(emulator, server)
        started.append(stack)
        return stack

    yield factory
    for stack in started:
        stack.stop()


class Peer:
    """An official Web PubSub client and what it has seen."""

    def __init__(self, server: WebPubSubChatServer, user: str, protocol: WebPubSubProtocolType) -> None:
        async def url() -> str:
            async with aiohttp.ClientSession() as session:
                negotiate = f"{server.negotiate_url}?id={user}"
                async with session.post(negotiate, timeout=aiohttp.ClientTimeout(TIMEOUT)) as answer:
                    assert answer.status == 200, await answer.text()
                    found: str = (await answer.json())["url"]
                    return found

        self.client = WebPubSubClient(
            credential=WebPubSubClientCredential(url),
            protocol_type=protocol,
            reconnect_retry_total=0,
            message_retry_total=0,
        )
        self.messages: asyncio.Queue[OnServerDataMessageArgs] = asyncio.Queue()
        self.connected: asyncio.Future[OnConnectedArgs] = asyncio.get_running_loop().create_future()

    async def start(self) -> str:
        """Open the client; returns its connection id."""

        async def on_message(args: OnServerDataMessageArgs) -> None:
            self.messages.put_nowait(args)

        async def on_connected(args: OnConnectedArgs) -> None:
            if not self.connected.done():
                self.connected.set_result(args)

        await self.client.subscribe(CallbackType.SERVER_MESSAGE, on_message)
        await self.client.subscribe(CallbackType.CONNECTED, on_connected)
        await asyncio.wait_for(self.client.open(), TIMEOUT)
        connected = await asyncio.wait_for(asyncio.shield(self.connected), TIMEOUT)
        return str(connected.connection_id)

    async def next_data(self) -> Any:
        return (await asyncio.wait_for(self.messages.get(), TIMEOUT)).data

    async def close(self) -> None:
        await asyncio.wait_for(self.client.close(), TIMEOUT)


async def test_one_event_gives_the_service_hops_with_one_flow_id(collector: RawCollector, stack_factory: Any) -> None:
    host, port = collector.address
    stack = stack_factory(f"{host}:{port}")
    listener = Peer(stack.server, "lena", WebPubSubProtocolType.JSON_RELIABLE)
    sender = Peer(stack.server, "sam", WebPubSubProtocolType.JSON)
    await listener.start()
    connection_id = await sender.start()
    try:
        payload = {"name": "sam", "message": "hello flow"}
        await asyncio.wait_for(
            sender.client.send_event("broadcastMessage", payload, WebPubSubDataType.JSON, ack_id=ACK_ID), TIMEOUT
        )
        expected = {**payload, "target": "broadcastMessage"}
        assert await listener.next_data() == expected
        assert await sender.next_data() == expected
        flow = flow_id(connection_id, ACK_ID)
        hops = await wait_for_hops(
            collector,
            lambda hops: bool(service_hops(hops, "fan-out", flow_id=flow) and service_hops(hops, "rest", flow_id=flow)),
        )
    finally:
        await sender.close()
        await listener.close()

    # The upgrade (101) and the connect / connected events of the sender's connection.
    (upgraded,) = service_hops(hops, "upgrade", connection_id=connection_id)
    assert upgraded.status == 101 and upgraded.service == "webpubsub" and upgraded.transport == "WebSockets"
    assert "json.webpubsub.azure.v1" in upgraded.label
    system = {h.label.split()[3]: h for h in service_hops(hops, "upstream", connection_id=connection_id, flow_id=None)}
    assert system["connect"].status == 200 and system["connect"].target.value == "app"
    assert "connected" in system

    # The event, with the flow id the test computes from the connection id and the ackId.
    (invoked,) = service_hops(hops, "invoke", flow_id=flow)
    assert invoked.connection_id == connection_id and "broadcastMessage" in invoked.label
    assert f"ackId {ACK_ID}" in invoked.label and (invoked.bytes or 0) > 0

    # The event handler POST carried it (X-Flow-Id): status and ms.
    (posted,) = service_hops(hops, "upstream", flow_id=flow)
    assert posted.source.value == "service" and posted.target.value == "app"
    assert posted.label == "POST event handler broadcastMessage 204"
    assert posted.status == 204 and posted.duration_ms is not None

    # The app server's SDK send came back with it (X-Flow-Id), and one fan-out reached both clients.
    (rest,) = service_hops(hops, "rest", flow_id=flow)
    assert rest.status == 202 and rest.label == "POST /api/hubs/chat/:send 202"
    (fan_out,) = service_hops(hops, "fan-out", flow_id=flow)
    assert fan_out.count == 2
    assert "json.reliable.webpubsub.azure.v1 1, json.webpubsub.azure.v1 1" in fan_out.label

    sequence = [upgraded, invoked, posted, rest, fan_out]
    assert [h.started for h in sequence] == sorted(h.started for h in sequence)
    # The app server read the flow id the service passed along.
    assert any(h.role is Role.APP and h.flow_id == flow for h in hops)

    # No secret in any datagram: not the AccessKey, no JWT, no reconnection token.
    assert collector.raw and collector.dropped == 0
    key = stack.emulator.access_key.encode()
    for datagram in collector.raw:
        assert key not in datagram
        assert b"eyJ" not in datagram
        assert b"reconnection" not in datagram.lower() and b"access_token" not in datagram


async def test_flow_off_sends_nothing_and_serves_as_before(collector: RawCollector, stack_factory: Any) -> None:
    stack = stack_factory(None)
    listener = Peer(stack.server, "lena", WebPubSubProtocolType.JSON)
    sender = Peer(stack.server, "sam", WebPubSubProtocolType.JSON)
    await listener.start()
    await sender.start()
    try:
        payload = {"name": "sam", "message": "no flow"}
        await asyncio.wait_for(sender.client.send_event("broadcastMessage", payload, WebPubSubDataType.JSON), TIMEOUT)
        assert await listener.next_data() == {**payload, "target": "broadcastMessage"}
    finally:
        await sender.close()
        await listener.close()
    assert not has_udp_socket(stack.emulator.process.pid)
    await asyncio.sleep(0.2)
    assert collector.raw == [] and collector.stats["received"] == 0


@pytest.mark.parametrize("address", ["10.0.0.1:9999", "localhost:9999", "[::1]:9999", "127.0.0.1:70000"])
def test_flow_to_refuses_anything_but_a_loopback_ip_and_port(address: str) -> None:
    done = subprocess.run(
        [script("webpubsub-emulator"), "--port", "0", "--flow-to", address], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "error: argument --flow-to:" in done.stderr and done.stderr.count("\n") == 1
