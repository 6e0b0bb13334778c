"""signalr-emulator --flow-to: the service's hop events for one chat message, correlated by one flow id.

Real processes on 127.0.0.1: ``signalr-emulator`` and ``chat-server`` (both publishing to a :class:`FlowCollector`
the test binds), two ``HubConnection`` clients (the sender on each transport and protocol, a listener on WebSockets
JSON). The flow id is computed here from what the sender used (its connection id and the invocation id of its first
``invoke``) and must be on the service's invoke, upstream / server-connection, REST / service message and fan-out
hops. Every raw datagram is checked for secrets; without ``--flow-to`` the emulator opens no UDP socket at all.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from flow.collector import FlowCollector
from flow.hops import Hop, Role
from flow.ids import flow_id
from signalr.client import TransportChoice
from tests.client.inbox import connect
from tests.support.processes import free_port, script
from tests.support.stack import (
    ChatServer,
    EmulatorProcess,
    start_chat_server,
    start_emulator,
    upstream_template,
)

pytestmark = pytest.mark.timeout(90)

CASES = [
    ("serverless", TransportChoice.WEBSOCKETS, "json"),
    ("serverless", TransportChoice.WEBSOCKETS, "messagepack"),
    ("serverless", TransportChoice.SERVER_SENT_EVENTS, "json"),
    ("serverless", TransportChoice.LONG_POLLING, "json"),
    ("serverless", TransportChoice.LONG_POLLING, "messagepack"),
    ("default", TransportChoice.WEBSOCKETS, "json"),
    ("default", TransportChoice.WEBSOCKETS, "messagepack"),
    ("default", TransportChoice.SERVER_SENT_EVENTS, "json"),
    ("default", TransportChoice.LONG_POLLING, "json"),
    ("default", TransportChoice.LONG_POLLING, "messagepack"),
]
TRANSPORT_NAMES = {
    TransportChoice.WEBSOCKETS: "WebSockets",
    TransportChoice.SERVER_SENT_EVENTS: "ServerSentEvents",
    TransportChoice.LONG_POLLING: "LongPolling",
}


class RawCollector(FlowCollector):
    """A FlowCollector that also keeps every raw datagram (to look for secrets in what went over the wire)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    def receive(self, data: bytes, sender: Any) -> None:
        self.raw.append(data)
        super().receive(data, sender)


@dataclass
class FlowStack:
    emulator: EmulatorProcess
    server: ChatServer

    def stop(self) -> None:
        self.server.stop()
        self.emulator.stop()


def start_flow_stack(mode: str, flow_to: str | None) -> FlowStack:
    """The emulator and chat-server in ``mode``, both publishing to ``flow_to`` (None: flow off)."""
    flow_args = ["--flow-to", flow_to] if flow_to else []
    server_port = free_port()
    mode_args = ["--service-mode", mode]
    upstream = ["--upstream", upstream_template(server_port)] if mode == "serverless" else []
    emulator = start_emulator(*mode_args, *upstream, *flow_args)
    try:
        server = start_chat_server(emulator.connection_string, *mode_args, *flow_args, port=server_port)
        try:
            if mode == "default":
                server.wait_for_server_connections()
        except BaseException:
            server.stop()
            raise
    except BaseException:
        emulator.stop()
        raise
    return FlowStack(emulator, server)


@pytest.fixture
async def collector() -> Any:
    collector = RawCollector()
    await collector.start()
    yield collector
    collector.close()


@pytest.fixture
def stack_factory() -> Iterator[Any]:
    started: list[FlowStack] = []

    def factory(mode: str, flow_to: str | None) -> FlowStack:
        stack = start_flow_stack(mode, flow_to)
        started.append(stack)
        return stack

    yield factory
    for stack in started:
        stack.stop()


async def wait_for_hops(collector: FlowCollector, predicate: Any, timeout: float = 10.0) -> list[Hop]:
    """Every hop collected so far once ``predicate(hops)`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        hops = collector.hops()
        if predicate(hops):
            return hops
        if time.monotonic() > deadline:
            kinds = [(h.role.value, h.kind, h.flow_id) for h in hops]
            raise AssertionError(f"hops never matched; got {kinds}")
        await asyncio.sleep(0.05)


def service_hops(hops: list[Hop], kind: str, **fields: Any) -> list[Hop]:
    return [
        h
        for h in hops
        if h.role is Role.SERVICE and h.kind == kind and all(getattr(h, k) == v for k, v in fields.items())
    ]


@pytest.mark.parametrize(
    ("mode", "transport", "protocol"), CASES, ids=[f"{m}-{t.name.lower()}-{p}" for m, t, p in CASES]
)
async def test_one_broadcast_gives_the_service_hops_with_one_flow_id(
    collector: RawCollector, stack_factory: Any, mode: str, transport: TransportChoice, protocol: str
) -> None:
    host, port = collector.address
    stack = stack_factory(mode, f"{host}:{port}")
    listener, listener_inbox = connect(stack.server.hub_url)
    sender, sender_inbox = connect(stack.server.hub_url, transport=transport, protocol=protocol)
    async with listener, sender:
        connection_id = sender.connection_id
        assert connection_id
        await sender.invoke("broadcastMessage", "alice", "hello flow")  # the first invoke: invocation id "0"
        assert await listener_inbox.next(10) == ("broadcastMessage", ("alice", "hello flow"))
        assert await sender_inbox.next(10) == ("broadcastMessage", ("alice", "hello flow"))
        flow = flow_id(connection_id, "0")
        carried = "upstream" if mode == "serverless" else "server-connection"
        sent_back = "rest" if mode == "serverless" else "server-connection"

        def complete(hops: list[Hop]) -> bool:
            back = [h for h in service_hops(hops, sent_back, flow_id=flow) if h.source.value == "app"]
            done = bool(service_hops(hops, "fan-out", flow_id=flow)) and len(back) == (1 if mode == "serverless" else 2)
            if transport is TransportChoice.LONG_POLLING:
                done = done and bool(service_hops(hops, "poll", connection_id=connection_id))
            return done

        hops = await wait_for_hops(collector, complete)

    transport_name = TRANSPORT_NAMES[transport]
    # Connection set-up: negotiate answered, then the transport's connect (101 upgrade, SSE stream, first poll).
    (negotiated,) = service_hops(hops, "negotiate", connection_id=connection_id)
    assert negotiated.status == 200 and negotiated.source.value == "client"
    connect_kind = "upgrade" if transport is TransportChoice.WEBSOCKETS else "connect"
    (connected,) = service_hops(hops, connect_kind, connection_id=connection_id)
    assert connected.transport == transport_name
    assert connected.status == (101 if transport is TransportChoice.WEBSOCKETS else 200)

    # The invocation, minted with the flow id the test computes.
    (invoked,) = service_hops(hops, "invoke", flow_id=flow)
    assert invoked.connection_id == connection_id and invoked.transport == transport_name
    assert invoked.mode == mode and invoked.service == "signalr"
    assert "broadcastMessage" in invoked.label and protocol in invoked.label

    # Carried to the app server: the upstream POST (status, ms) or the ConnectionData over a server connection.
    (out,) = [h for h in service_hops(hops, carried, flow_id=flow) if h.source.value == "service"]
    assert out.target.value == "app"
    if mode == "serverless":
        assert out.status == 200 and out.duration_ms is not None and out.duration_ms >= 0
        assert "messages/broadcastMessage" in out.label
    else:
        assert out.mode == "default" and "ConnectionData" in out.label

    # The app server's send came back with the same flow id (X-Flow-Id on the REST call, the tracing id on the
    # server connection's BroadcastData), and the service fanned it out once to both clients.
    backs = [h for h in service_hops(hops, sent_back, flow_id=flow) if h.source.value == "app"]
    if mode == "serverless":
        (back,) = backs
        assert back.status == 202 and back.label.startswith("POST /api/") and ":send" in back.label
    else:
        # BroadcastData for everyone, then the invocation's Completion to the caller (ConnectionData), both traced.
        assert sorted(h.label.split()[0] for h in backs) == ["BroadcastData", "ConnectionData"]
        (back,) = [h for h in backs if h.label.startswith("BroadcastData")]
    (fan_out,) = service_hops(hops, "fan-out", flow_id=flow)
    assert fan_out.count == 2 and fan_out.target.value == "others"
    expected_note = "json 2" if protocol == "json" else "json 1, messagepack 1"
    assert expected_note in fan_out.label
    assert fan_out.mode == mode

    # In the order they began (an upstream POST begins before the REST call made while answering it ends it).
    sequence = [negotiated, connected, invoked, out, back, fan_out]
    assert [h.started for h in sequence] == sorted(h.started for h in sequence)
    if transport is TransportChoice.LONG_POLLING:
        polls = service_hops(hops, "poll", connection_id=connection_id)
        assert polls and all(p.transport == "LongPolling" and (p.bytes or 0) > 0 for p in polls)

    # The app server's own hops carry the same flow id: it read the one the service passed along.
    assert any(h.role is Role.APP and h.flow_id == flow for h in hops)

    # No secret in any datagram: not the AccessKey, no JWT, no connection token.
    assert collector.raw and collector.dropped == 0
    key = stack.emulator.access_key.encode()
    for datagram in collector.raw:
        assert key not in datagram
        assert b"eyJ" not in datagram
        assert b"access_token" not in datagram


def udp_socket_inodes() -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                inodes.update(line.split()[9] for line in f if line.strip())
        except OSError:
            continue
    return inodes


def has_udp_socket(pid: int) -> bool:
    udp = udp_socket_inodes()
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in udp:
            return True
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("mode", ["serverless", "default"])
async def test_flow_off_sends_nothing_and_serves_as_before(
    collector: RawCollector, stack_factory: Any, mode: str
) -> None:
    stack = stack_factory(mode, None)
    listener, listener_inbox = connect(stack.server.hub_url)
    sender, sender_inbox = connect(stack.server.hub_url, transport=TransportChoice.LONG_POLLING)
    async with listener, sender:
        await sender.invoke("broadcastMessage", "bob", "no flow")
        assert await listener_inbox.next(10) == ("broadcastMessage", ("bob", "no flow"))
        assert await sender_inbox.next(10) == ("broadcastMessage", ("bob", "no flow"))
    # Not one hop published: the emulator has no UDP socket to publish with, and the collector heard nothing.
    assert not has_udp_socket(stack.emulator.process.pid)
    await asyncio.sleep(0.2)
    assert collector.raw == [] and collector.stats["received"] == 0


@pytest.mark.parametrize("address", ["10.0.0.1:9999", "localhost:9999", "127.0.0.1:0", "127.0.0.1"])
def test_flow_to_refuses_anything_but_a_loopback_ip_and_port(address: str) -> None:
    done = subprocess.run(
        [script("signalr-emulator"), "--port", "0", "--flow-to", address], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("signalr-emulator: error: argument --flow-to:") and done.stderr.count("\n") == 1
