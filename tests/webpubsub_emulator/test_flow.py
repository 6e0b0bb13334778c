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
from aiohttp import web
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

from .helpers import RawClient, async_service, client_url, eventually

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


@dataclass
class HandlerCall:
    event: str
    headers: dict[str, str]


@pytest.fixture
async def event_handler() -> AsyncIterator[tuple[str, list[HandlerCall]]]:
    """An event handler stand-in (abuse protection allowed, every event answered 200 without a body) that records
    each POST's event name and headers."""
    calls: list[HandlerCall] = []

    async def options(request: web.Request) -> web.Response:
        return web.Response(status=200, headers={"WebHook-Allowed-Origin": "*"})

    async def post(request: web.Request) -> web.Response:
        await request.read()
        calls.append(HandlerCall(request.match_info["event"], {k.lower(): v for k, v in request.headers.items()}))
        return web.Response(status=200 if request.match_info["event"] == "connect" else 204)

    app = web.Application()
    app.router.add_route("OPTIONS", "/eventhandler/{event}", options)
    app.router.add_route("POST", "/eventhandler/{event}", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/eventhandler/{{event}}", calls
    await runner.cleanup()


@pytest.mark.parametrize("flow_on", [True, False], ids=["flow-on", "flow-off"])
async def test_the_event_handler_post_carries_the_flow_id_only_for_an_event_with_an_ack_id(
    collector: RawCollector, event_handler: tuple[str, list[HandlerCall]], flow_on: bool
) -> None:
    template, calls = event_handler
    host, port = collector.address
    flow_args = ["--flow-to", f"{host}:{port}"] if flow_on else []
    with start_webpubsub_emulator(*flow_args, event_handler=template) as emulator:
        client = await RawClient.connect(
            client_url(emulator, roles=["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"])
        )
        try:
            await client.send({"type": "event", "event": "one", "dataType": "text", "data": "a", "ackId": 3})
            await client.ack(3)
            await client.send({"type": "event", "event": "two", "dataType": "text", "data": "b"})
            await eventually(lambda: any(c.event == "two" for c in calls), what="the event without ackId")
            await client.send({"type": "joinGroup", "group": "g", "ackId": 4})
            await client.ack(4)
            await client.send({"type": "sendToGroup", "group": "g", "dataType": "text", "data": "c", "ackId": 5})
            await client.ack(5)
        finally:
            await client.close()
        one = next(c for c in calls if c.event == "one")
        two = next(c for c in calls if c.event == "two")
        if not flow_on:
            assert "x-flow-id" not in one.headers and "x-flow-id" not in two.headers
            await asyncio.sleep(0.2)
            assert collector.raw == []
            return
        connection_id = client.connection_id
        assert one.headers["x-flow-id"] == flow_id(connection_id, 3)
        assert "x-flow-id" not in two.headers
        hops = await wait_for_hops(collector, lambda hops: len(service_hops(hops, "fan-out")) == 1)
        invoked = service_hops(hops, "invoke", connection_id=connection_id)
        assert [(h.flow_id, h.label) for h in invoked] == [
            (flow_id(connection_id, 3), "event one ackId 3"),
            (None, "event two (no ackId)"),
            (flow_id(connection_id, 5), "sendToGroup g ackId 5"),
        ]
        (fan_out,) = service_hops(hops, "fan-out")
        assert fan_out.flow_id == flow_id(connection_id, 5) and fan_out.count == 1
        assert fan_out.label.startswith("group g → 1 connection (json.webpubsub.azure.v1 1)")
        posted = {h.label: h for h in service_hops(hops, "upstream", connection_id=connection_id)}
        assert posted["POST event handler one 204"].flow_id == flow_id(connection_id, 3)
        assert posted["POST event handler two 204"].flow_id is None
        assert posted["POST event handler connect 200"].duration_ms is not None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fedcba9876543210", "fedcba9876543210"),
        ("FEDCBA9876543210", "fedcba9876543210"),
        ("fedcba98765432100", None),
        ("not a flow id", None),
        ("", None),
        ("f" * 3000, None),
    ],
    ids=["valid", "upper", "long", "words", "empty", "huge"],
)
async def test_a_hostile_x_flow_id_on_a_rest_send_is_ignored_and_the_send_served(
    collector: RawCollector, header: str, expected: str | None
) -> None:
    host, port = collector.address
    with start_webpubsub_emulator("--flow-to", f"{host}:{port}") as emulator:
        client = await RawClient.connect(client_url(emulator))
        try:
            async with async_service(emulator) as sdk:
                await sdk.send_to_all({"n": 1}, content_type="application/json", headers={"X-Flow-Id": header})
            message = await client.wait_for(lambda m: m.get("type") == "message")
            assert message["data"] == {"n": 1}
        finally:
            await client.close()
        hops = await wait_for_hops(collector, lambda hops: bool(service_hops(hops, "fan-out")))
    (rest,) = service_hops(hops, "rest")
    (fan_out,) = service_hops(hops, "fan-out")
    assert rest.flow_id == expected and fan_out.flow_id == expected
    assert rest.status == 202 and rest.label == "POST /api/hubs/chat/:send 202" and fan_out.count == 1
