"""The flow id on the emulator's wires (in-process emulator, real sockets on 127.0.0.1): ``X-Flow-Id`` on upstream
POSTs and the tracing id of Default mode's ConnectionData only while flow is on, and hostile ids from the app server
(a bad ``X-Flow-Id`` header, the largest and smallest tracing ids) or bytes from the client that are not
whole records: the send is served as always and the hop simply carries no flow id."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from flow.collector import FlowCollector
from flow.hops import Hop, Role
from flow.ids import flow_id
from signalr.json_protocol import encode
from signalr.messages import Invocation
from signalr.service_protocol import BroadcastData, ConnectionData, Ext

from .conftest import Emulator, EmulatorFactory, UpstreamReceiver, records, ws_next_non_ping
from .fake_app_server import FakeAppServer

FAST: dict[str, Any] = {"server_ping_interval": 5.0, "server_handshake_timeout": 5.0, "server_timeout": 10.0}


@pytest.fixture
async def collector() -> Any:
    collector = FlowCollector()
    await collector.start()
    yield collector
    collector.close()


async def hops_of(collector: FlowCollector, kind: str, count: int, timeout: float = 5.0) -> list[Hop]:
    """The service's hops of ``kind`` once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [h for h in collector.hops() if h.role is Role.SERVICE and h.kind == kind]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"only {len(found)} {kind} hops: {collector.hops()}"
        await asyncio.sleep(0.02)


def invocation(target: str, invocation_id: str | None, *arguments: Any) -> str:
    return encode(Invocation(target, arguments, invocation_id=invocation_id)).decode()


@pytest.mark.parametrize("flow_on", [True, False], ids=["flow-on", "flow-off"])
async def test_the_upstream_post_carries_the_flow_id_only_while_flow_is_on(
    upstream_receiver: UpstreamReceiver, start_emulator: EmulatorFactory, collector: FlowCollector, flow_on: bool
) -> None:
    flow_to = collector.address if flow_on else None
    emulator = await start_emulator(**upstream_receiver.emulator_settings, flow_to=flow_to)
    ws, connection_id = await emulator.open_ws()
    await ws.send_str(invocation("broadcastMessage", "42", "a", "b"))
    await ws.send_str(invocation("broadcastMessage", None, "fire", "forget"))
    calls = [
        await upstream_receiver.wait_for(lambda c, n=n: c.json.get("arguments") == n, description=str(n))
        for n in (["a", "b"], ["fire", "forget"])
    ]
    with_id, without_id = calls
    if flow_on:
        assert with_id.headers["x-flow-id"] == flow_id(connection_id, "42")
        invoked = await hops_of(collector, "invoke", 2)
        assert [h.flow_id for h in invoked] == [flow_id(connection_id, "42"), None]
        posted = [h for h in await hops_of(collector, "upstream", 3) if "messages/" in h.label]
        assert [h.flow_id for h in posted] == [flow_id(connection_id, "42"), None]
        assert all(h.status == 200 and h.duration_ms is not None for h in posted)
    else:
        assert "x-flow-id" not in with_id.headers
        assert collector.stats["received"] == 0
    assert "x-flow-id" not in without_id.headers
    await ws.close()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0123456789abcdef", "0123456789abcdef"),
        ("0123456789ABCDEF", "0123456789abcdef"),
        ("0123456789abcdef0", None),  # 17 digits
        ("0123456789abcdeg", None),
        ("", None),
        ("../../../etc/passwd", None),
        ("x" * 4000, None),
        ("0123456789abcde\u00e9".encode().decode("latin-1"), None),
    ],
    ids=["valid", "upper", "long", "not-hex", "empty", "path", "huge", "non-ascii"],
)
async def test_a_hostile_x_flow_id_on_a_rest_send_is_ignored_and_the_send_served(
    start_emulator: EmulatorFactory, collector: FlowCollector, header: str, expected: str | None
) -> None:
    emulator = await start_emulator(flow_to=collector.address)
    ws, _ = await emulator.open_ws()
    path = "/api/hubs/chat/:send?api-version=2022-06-01"
    headers = {**emulator.auth(emulator.rest_token("/api/hubs/chat/:send")), "X-Flow-Id": header}
    async with emulator.session.post(
        emulator.base + path, json={"target": "t", "arguments": [1]}, headers=headers
    ) as response:
        assert response.status == 202
    assert await ws_next_non_ping(ws) == [{"type": 1, "target": "t", "arguments": [1]}]
    (rest,) = await hops_of(collector, "rest", 1)
    (fan_out,) = await hops_of(collector, "fan-out", 1)
    assert rest.flow_id == expected and fan_out.flow_id == expected
    assert rest.status == 202 and fan_out.count == 1 and "json 1" in fan_out.label
    await ws.close()


async def test_a_rest_send_no_recipient_can_carry_is_reported_400_without_fan_out(
    start_emulator: EmulatorFactory, collector: FlowCollector
) -> None:
    emulator = await start_emulator(flow_to=collector.address)
    ws, _ = await emulator.connect_ws()
    await ws.send_str('{"protocol":"messagepack","version":1}\x1e')
    await ws.receive(timeout=5)
    status, _, _ = await emulator.rest(
        "POST", "/api/hubs/chat/:send?api-version=2022-06-01", raw=b'{"target":"t","arguments":[1e400000]}'
    )
    assert status == 400  # not JSON the hub protocol accepts: refused before any send, so no hop at all
    status, _, _ = await emulator.rest(
        "POST", "/api/hubs/chat/:send?api-version=2022-06-01", {"target": "t", "arguments": [2**70]}
    )
    assert status == 400  # MessagePack cannot carry the integer: nobody got it
    (rest,) = await hops_of(collector, "rest", 1)
    assert rest.status == 400
    await asyncio.sleep(0.1)
    assert not [h for h in collector.hops() if h.kind == "fan-out"]
    await ws.close()


@pytest.mark.parametrize("flow_on", [True, False], ids=["flow-on", "flow-off"])
async def test_default_mode_connection_data_carries_the_flow_id_as_tracing_id_only_while_flow_is_on(
    start_emulator: EmulatorFactory, collector: FlowCollector, flow_on: bool
) -> None:
    emulator: Emulator = await start_emulator(
        service_mode="default", flow_to=collector.address if flow_on else None, **FAST
    )
    server = await FakeAppServer.connect(emulator)
    ws, connection_id = await emulator.connect_ws()
    await ws.send_str('{"protocol":"json","version":1}\x1e')
    await server.accept()
    assert records(await ws.receive_str(timeout=5)) == [{}]

    await ws.send_str(invocation("broadcastMessage", "7", "a", "b"))
    traced = await server.expect(ConnectionData)
    await ws.send_str(invocation("broadcastMessage", None, "c"))
    untraced = await server.expect(ConnectionData)
    # Not whole records, or records that are no invocation: passed on as they are, without a tracing id.
    await ws.send_str('{"type":1,"target":"x","arguments":[')
    partial = await server.expect(ConnectionData)
    await ws.send_str('{"type":99}\x1e')
    unknown = await server.expect(ConnectionData)

    assert traced.payload == invocation("broadcastMessage", "7", "a", "b").encode()
    if flow_on:
        assert traced.tracing_id == int(flow_id(connection_id, "7"), 16)
        (forwarded,) = await hops_of(collector, "server-connection", 1)
        assert forwarded.flow_id == flow_id(connection_id, "7") and forwarded.target.value == "app"
    else:
        assert traced.ext == {}
    assert untraced.ext == {} and partial.ext == {} and unknown.ext == {}
    assert partial.payload == b'{"type":1,"target":"x","arguments":['
    assert unknown.payload == b'{"type":99}\x1e'
    await ws.close()
    await server.close()


async def test_default_mode_hostile_tracing_ids_from_the_app_server_are_ignored_and_the_send_served(
    start_emulator: EmulatorFactory, collector: FlowCollector
) -> None:
    emulator = await start_emulator(service_mode="default", flow_to=collector.address, **FAST)
    server = await FakeAppServer.connect(emulator)
    ws, _ = await emulator.connect_ws()
    await ws.send_str('{"protocol":"json","version":1}\x1e')
    await server.accept()
    assert records(await ws.receive_str(timeout=5)) == [{}]
    # The service protocol's reader already refuses a tracing id that is not a uint64 (the server connection ends
    # with 1002, signalr/service_protocol.py); every uint64 is a flow id, none is one too.
    tracing_ids: list[Any] = [2**64 - 1, 0, None]
    for n, value in enumerate(tracing_ids):
        ext = {int(Ext.TRACING_ID): value} if value is not None else {}
        payload = encode(Invocation("t", (n,)))
        await server.send(BroadcastData((), {"json": payload}, ext))
        assert await ws_next_non_ping(ws) == [{"type": 1, "target": "t", "arguments": [n]}]
    fan_outs = await hops_of(collector, "fan-out", len(tracing_ids))
    assert [h.flow_id for h in fan_outs] == ["ffffffffffffffff", "0000000000000000", None]
    assert all(h.count == 1 and h.mode == "default" for h in fan_outs)
    received = [h for h in await hops_of(collector, "server-connection", 3) if h.source.value == "app"]
    assert [h.label for h in received] == ["BroadcastData from the app server"] * 3
    await ws.close()
    await server.close()


async def test_flow_on_long_polling_polls_that_carry_data_are_reported(
    start_emulator: EmulatorFactory, collector: FlowCollector, session: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(flow_to=collector.address)
    url, connection_id = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())
    poll = asyncio.create_task(session.get(url, headers=headers))
    await emulator.poll_held(connection_id)
    await emulator.broadcast("t", "x")
    response = await asyncio.wait_for(poll, 5)
    body = await response.read()
    assert records(body) == [{"type": 1, "target": "t", "arguments": ["x"]}]
    polls = [h for h in await hops_of(collector, "poll", 2) if h.connection_id == connection_id]
    # The handshake answer's poll and the broadcast's, each with its size.
    assert polls[-1].bytes == len(body) and polls[-1].transport == "LongPolling" and polls[-1].status == 200
    (connected,) = await hops_of(collector, "connect", 1)
    assert connected.connection_id == connection_id and connected.label.endswith("first poll")
