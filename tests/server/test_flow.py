"""``chat-server`` on the flow stream: its own hops (negotiate, the service's message arriving, the hub's sends), the
flow id carried back to the service, and the collector it hosts (``--flow-port``) with ``GET /flow`` and
``/flow/info``. Real processes on 127.0.0.1: the emulators, the gateway and the server as the commands run them; the
hops are read where a user of the stream reads them (``GET /flow``) or caught as raw UDP datagrams."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from flow.collector import FlowCollector
from flow.hops import Hop
from flow.ids import flow_id
from server import flow as server_flow
from server.app import create_app
from server.config import ServiceMode, Settings, load_settings
from server.flow import MAX_STREAMS, QUEUE_LIMIT, handle_flow, handle_flow_info, is_loopback
from signalr import service_protocol as sp
from signalr.client import HubConnection
from signalr.client.transport_choice import TransportChoice
from signalr.upstream import signature_header
from tests.server.test_flow_support import WAIT, FlowReader, HeaderRecorder, HopCatcher, free_udp_port
from tests.server.test_server_connections import HANDSHAKE, Dialled, FakeService
from tests.support.processes import Process, free_port, script
from tests.support.stack import (
    SERVER_READY,
    _start_ready,
    start_chat_server,
    start_emulator,
    start_gateway,
    upstream_template,
)
from tests.support.wps_emulator import start_webpubsub_emulator
from tests.support.wps_server import start_webpubsub_chat_server
from webpubsub import events
from webpubsub.events import EventKind

KEY = "FlowServerKey0000DoNotPrint1111abcdefghijklmnop2222"


@pytest.fixture
async def catcher() -> AsyncIterator[HopCatcher]:
    hops = HopCatcher()
    await hops.start()
    yield hops
    hops.close()


def _of(hop: Hop, role: str, kind: str) -> bool:
    return hop.role == role and hop.kind == kind


# -- the whole path, read from GET /flow ------------------------------------------------------------------------------


async def test_serverless_hops_stream_on_get_flow(tmp_path: Path) -> None:
    """Serverless, through the gateway: chat-server collects its own hops and the gateway's (UDP) and streams them;
    one broadcast gives the redirect, the upstream invocation and the REST send, with one flow id and timings."""
    server_port, flow_port = free_port(), free_udp_port()
    emulator = start_emulator("--service-mode", "serverless", "--upstream", upstream_template(server_port))
    gateway = start_gateway(emulator.base, "--profile", "websocket", "--flow-to", f"127.0.0.1:{flow_port}")
    server = start_chat_server(
        emulator.connection_string_to(gateway.url),
        "--service-mode",
        "serverless",
        "--flow-port",
        str(flow_port),
        port=server_port,
        cwd=tmp_path,
    )
    try:
        # The ready line is unchanged; the log says where hops are collected.
        assert server.ready_line == f"Chat server listening on http://127.0.0.1:{server_port}/ (hub chat)"
        assert f"flow: collecting hop events on udp://127.0.0.1:{flow_port}" in server.process.stderr()
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "flow/info") as response:
                assert response.status == 200
                assert await response.json() == {"enabled": True, "udp": f"127.0.0.1:{flow_port}"}
            async with http.get(server.url) as response:
                assert 'data-flow="on"' in await response.text()
        async with FlowReader(server.url + "flow") as reader:
            assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
            client = HubConnection(server.hub_url, transport=TransportChoice.WEBSOCKETS)
            got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            client.on("broadcastMessage", lambda name, text: got.put_nowait((name, text)))
            await client.start()
            try:
                await client.invoke("broadcastMessage", "alice", "hello flow")
                assert await asyncio.wait_for(got.get(), 10) == ("alice", "hello flow")
                connection_id = client.connection_id
            finally:
                await client.stop()
            assert connection_id is not None
            flow = flow_id(connection_id, "0")

            redirect = await reader.wait_for(lambda h: _of(h, "app", "redirect"), "app redirect")
            assert (redirect.source, redirect.target, redirect.status) == ("app", "client", 200)
            assert f"redirect to {gateway.host}" in redirect.label and redirect.mode == "serverless"
            arrived = await reader.wait_for(lambda h: _of(h, "app", "upstream") and h.flow_id == flow, "upstream")
            assert (arrived.source, arrived.target, arrived.connection_id) == ("service", "app", connection_id)
            assert "broadcastMessage" in arrived.label and arrived.service == "signalr"
            # The connection's own events are set-up hops, not a message's.
            connected = await reader.wait_for(lambda h: _of(h, "app", "connect"), "connected event")
            assert "connections/connected 200" in connected.label and connected.connection_id == connection_id
            rest = await reader.wait_for(lambda h: _of(h, "app", "rest") and h.flow_id == flow, "REST send")
            assert (rest.source, rest.target, rest.status) == ("app", "service", 202)
            assert "/api/hubs/chat/:send" in rest.label and rest.duration_ms is not None and rest.duration_ms >= 0
            assert rest.started >= arrived.started
            # The gateway's hops reached the collector over UDP: the upgrade and the relayed invocation.
            upgrade = await reader.wait_for(lambda h: _of(h, "apim", "upgrade"), "gateway upgrade")
            assert (upgrade.status, upgrade.connection_id, upgrade.transport) == (101, connection_id, "WebSockets")
            await reader.wait_for(
                lambda h: _of(h, "apim", "relay") and h.target == "service" and h.connection_id == connection_id,
                "relayed invocation",
            )
        # A reader that comes later gets the latest hops first (the replay).
        async with FlowReader(server.url + "flow") as late:
            await late.wait_for(lambda h: h.flow_id == flow and h.kind == "rest", "replayed REST hop")
    finally:
        server.stop()
        gateway.stop()
        emulator.stop()


async def test_default_mode_hops_carry_the_flow_id(tmp_path: Path) -> None:
    """Default mode against the emulator: the invocation arrives over a server connection and the broadcast goes
    back as a service message, both reported with the message's flow id."""
    flow_port = free_udp_port()
    emulator = start_emulator("--service-mode", "default")
    server = start_chat_server(
        emulator.connection_string, "--service-mode", "default", "--flow-port", str(flow_port), cwd=tmp_path
    )
    try:
        server.wait_for_server_connections()
        async with FlowReader(server.url + "flow") as reader:
            client = HubConnection(server.hub_url, transport=TransportChoice.LONG_POLLING, protocol="messagepack")
            got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            client.on("broadcastMessage", lambda name, text: got.put_nowait((name, text)))
            await client.start()
            try:
                await client.invoke("broadcastMessage", "bob", "default hello")
                assert await asyncio.wait_for(got.get(), 10) == ("bob", "default hello")
                connection_id = client.connection_id
            finally:
                await client.stop()
            assert connection_id is not None
            flow = flow_id(connection_id, "0")
            arrived = await reader.wait_for(
                lambda h: _of(h, "app", "server-connection") and h.source == "service" and h.flow_id == flow,
                "invocation over a server connection",
            )
            assert arrived.connection_id == connection_id and arrived.mode == "default"
            opened = await reader.wait_for(
                lambda h: _of(h, "app", "connect") and h.connection_id == connection_id, "open"
            )
            assert opened.label == "OpenConnection (messagepack)" and opened.started < arrived.started
            sent = await reader.wait_for(
                lambda h: _of(h, "app", "server-connection") and "BroadcastData" in h.label and h.flow_id == flow,
                "BroadcastData",
            )
            assert sent.target == "service" and sent.bytes is not None and sent.bytes > 0
            assert "json" in sent.label and "messagepack" in sent.label
            await reader.wait_for(
                lambda h: _of(h, "app", "server-connection") and "completion" in h.label and h.flow_id == flow,
                "completion to the caller",
            )
    finally:
        server.stop()
        emulator.stop()


async def test_webpubsub_hops(tmp_path: Path) -> None:
    """Web PubSub with the official Python client: negotiate, the event arriving at /eventhandler and the SDK's
    send_to_all (202 and its time) are on the stream."""
    from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
    from azure.messaging.webpubsubclient.models import WebPubSubDataType

    server_port, flow_port = free_port(), free_udp_port()
    emulator = start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{server_port}/eventhandler")
    server = start_webpubsub_chat_server(
        emulator.connection_string, "--flow-port", str(flow_port), port=server_port, cwd=tmp_path
    )
    try:
        async with FlowReader(server.url + "/flow") as reader, aiohttp.ClientSession() as http:
            async with http.get(server.negotiate_url + "?id=carol") as response:
                url = (await response.json())["url"]

            def chat() -> str:
                client = WebPubSubClient(credential=WebPubSubClientCredential(lambda: url))
                ids: list[str] = []
                client.subscribe("connected", lambda args: ids.append(args.connection_id))
                client.open()
                try:
                    data = {"name": "carol", "message": "wps hi"}
                    client.send_event("broadcastMessage", data, WebPubSubDataType.JSON)
                finally:
                    client.close()
                return ids[0]

            connection_id = await asyncio.to_thread(chat)
            redirect = await reader.wait_for(lambda h: _of(h, "app", "redirect"), "negotiate")
            assert redirect.service == "webpubsub" and f"127.0.0.1:{emulator.port}" in redirect.label
            assert "access_token" not in redirect.label
            event = await reader.wait_for(
                lambda h: _of(h, "app", "upstream") and "user event broadcastMessage" in h.label, "user event"
            )
            assert event.connection_id == connection_id and event.source == "service"
            send = await reader.wait_for(lambda h: _of(h, "app", "rest") and "send_to_all" in h.label, "SDK send")
            assert (send.status, send.target, send.flow_id) == (202, "service", event.flow_id)
            assert send.duration_ms is not None
            await reader.wait_for(
                lambda h: _of(h, "app", "connect") and "sys.connect" in h.label and h.status == 200, "connect event"
            )
    finally:
        server.stop()
        emulator.stop()


# -- the flow id carried back -----------------------------------------------------------------------------------------


def _upstream_headers(connection_id: str, flow_header: str | None) -> dict[str, str]:
    headers = {
        "X-ASRS-Connection-Id": connection_id,
        "X-ASRS-Hub": "chat",
        "X-ASRS-Category": "messages",
        "X-ASRS-Event": "broadcastMessage",
        "X-ASRS-Signature": signature_header([KEY], connection_id),
        "Content-Type": "application/json",
    }
    if flow_header is not None:
        headers["X-Flow-Id"] = flow_header
    return headers


INVOKE = json.dumps({"type": 1, "invocationId": "7", "target": "broadcastMessage", "arguments": ["al", "x"]}).encode()


async def test_serverless_rest_send_carries_the_flow_id_only_with_flow_on(tmp_path: Path, catcher: HopCatcher) -> None:
    recorder = await HeaderRecorder().start()
    on = start_chat_server(
        recorder.connection_string(KEY), "--service-mode", "serverless", "--flow-to", catcher.flow_to, cwd=tmp_path
    )
    off = start_chat_server(recorder.connection_string(KEY), "--service-mode", "serverless", cwd=tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            passed = "00112233aabbccdd"
            async with http.post(on.url + "upstream", data=INVOKE, headers=_upstream_headers("c1", passed)) as r:
                assert r.status == 200
            [send] = await recorder.wait(1)
            assert send.path == "/api/hubs/chat/:send" and send.headers["X-Flow-Id"] == passed
            rest = await catcher.wait_for(lambda h: h.kind == "rest", "REST hop")
            assert (rest.flow_id, rest.status) == (passed, 202)
            # A header that is not a flow id is ignored: the server derives the id from the invocation.
            async with http.post(on.url + "upstream", data=INVOKE, headers=_upstream_headers("c2", "x" * 400)) as r:
                assert r.status == 200
            sends = await recorder.wait(2)
            assert sends[1].headers["X-Flow-Id"] == flow_id("c2", "7")
            # Flow off: nothing is added, whatever the service passed along.
            async with http.post(off.url + "upstream", data=INVOKE, headers=_upstream_headers("c3", passed)) as r:
                assert r.status == 200
            sends = await recorder.wait(3)
            assert "X-Flow-Id" not in sends[2].headers
            # A refused request is reported once answered, with its status (and the server still serves).
            bad = _upstream_headers("c4", None) | {"X-ASRS-Signature": "sha256=00"}
            async with http.post(on.url + "upstream", data=INVOKE, headers=bad) as r:
                assert r.status == 401
            refused = await catcher.wait_for(lambda h: h.kind == "upstream" and h.status == 401, "refused upstream")
            assert refused.flow_id is None
            # A refused negotiate (a key the service reads itself) is reported with its status, not as a redirect.
            async with http.post(on.url + "chat/negotiate?access_token=eyJhbGciOiJIUzI1NiJ9.e30.x") as r:
                assert r.status == 400
            negotiate = await catcher.wait_for(lambda h: h.kind == "negotiate", "refused negotiate")
            assert (negotiate.status, negotiate.label) == (400, "POST /chat/negotiate 400: no redirect")
            assert not any(b"eyJ" in raw for raw in catcher.raw)
    finally:
        on.stop()
        off.stop()
        await recorder.close()


async def test_webpubsub_sdk_send_carries_the_flow_id(tmp_path: Path, catcher: HopCatcher) -> None:
    recorder = await HeaderRecorder().start()
    server = start_webpubsub_chat_server(recorder.connection_string(KEY), "--flow-to", catcher.flow_to, cwd=tmp_path)
    try:
        headers = events.event_headers(
            hub="chat",
            kind=EventKind.USER,
            connection_id="wc1",
            access_keys=(KEY,),
            event_id="e1",
            time="2026-01-01T00:00:00Z",
            origin="127.0.0.1",
            event_name="broadcastMessage",
            user_id="dan",
            subprotocol="json.reliable.webpubsub.azure.v1",
            content_type="application/json",
        )
        body = json.dumps({"name": "dan", "message": "hey"}).encode()
        async with aiohttp.ClientSession() as http:
            passed = "fedcba9876543210"
            async with http.post(server.event_handler_url, data=body, headers=headers | {"X-Flow-Id": passed}) as r:
                assert r.status == 204
        [send] = await recorder.wait(1)
        assert send.path == "/api/hubs/chat/:send" and send.headers["X-Flow-Id"] == passed
        hop = await catcher.wait_for(lambda h: h.kind == "rest", "SDK send hop")
        assert (hop.flow_id, hop.status, hop.service, hop.mode) == (passed, 202, "webpubsub", None)
        arrived = await catcher.wait_for(lambda h: h.kind == "upstream", "event hop")
        assert (arrived.flow_id, arrived.connection_id) == (passed, "wc1")
    finally:
        server.stop()
        await recorder.close()


async def _dialled_server(fake: FakeService, service_port: int, tmp_path: Path, *flags: str) -> tuple[Process, Dialled]:
    connection_string = f"Endpoint=http://127.0.0.1;Port={service_port};AccessKey={KEY};Version=1.0;"
    argv = [script("chat-server"), "--port", "0", "--server-connections", "1", *flags]
    process, _ = _start_ready(
        argv, SERVER_READY, env={"Azure__SignalR__ConnectionString": connection_string}, cwd=tmp_path
    )
    dialled = await asyncio.wait_for(fake.dialled.get(), 10)
    return process, dialled


@pytest.mark.parametrize("flow_on", [True, False], ids=["flow-on", "flow-off"])
async def test_default_mode_service_messages_carry_the_tracing_id_only_with_flow_on(
    tmp_path: Path, catcher: HopCatcher, flow_on: bool
) -> None:
    """The tracing id of the client's ConnectionData comes back on the BroadcastData and the completion (flow on);
    with flow off the app server writes exactly what it wrote before (no tracing id)."""
    fake = FakeService()
    app = web.Application()
    app.router.add_get("/server/", fake.handle)
    service = TestServer(app, host="127.0.0.1")
    await service.start_server()
    assert service.port is not None
    flags = ("--flow-to", catcher.flow_to) if flow_on else ()
    process, dialled = await _dialled_server(fake, service.port, tmp_path, *flags)
    try:
        trace = int("0123456789abcdef", 16)
        await dialled.send(sp.OpenConnection("k1", (), {}, "?hub=chat", {3: "json"}))
        await dialled.send(sp.ConnectionData("k1", HANDSHAKE))
        await dialled.next(sp.ConnectionData)
        invoke = b'{"type":1,"invocationId":"1","target":"broadcastMessage","arguments":["k","hi"]}\x1e'
        await dialled.send(sp.ConnectionData("k1", invoke, {int(sp.Ext.TRACING_ID): trace}))
        broadcast = await dialled.next(sp.BroadcastData)
        completion = await dialled.next(sp.ConnectionData)
        # Two invocations in one ConnectionData: the service traced the first; the second gets its own id.
        second = invoke.replace(b'"invocationId":"1"', b'"invocationId":"2"')
        third = invoke.replace(b'"invocationId":"1"', b'"invocationId":"3"')
        await dialled.send(sp.ConnectionData("k1", second + third, {int(sp.Ext.TRACING_ID): trace + 1}))
        later = [await dialled.next(sp.BroadcastData) for _ in range(2)]
        if flow_on:
            assert broadcast.tracing_id == trace and completion.tracing_id == trace
            assert [b.tracing_id for b in later] == [trace + 1, int(flow_id("k1", "3"), 16)]
            hop = await catcher.wait_for(lambda h: "BroadcastData" in h.label, "BroadcastData hop")
            assert hop.flow_id == "0123456789abcdef" and hop.mode == "default"
        else:
            invocation = {int(sp.Ext.DATA_MESSAGE_TYPE): int(sp.DataMessageType.INVOCATION)}
            assert broadcast.ext == {} and completion.ext == invocation
            assert [b.ext for b in later] == [{}, {}]
            await asyncio.sleep(0.2)
            assert catcher.hops() == []
    finally:
        process.stop()
        await service.close()


# -- the stream's edges -----------------------------------------------------------------------------------------------


async def test_flow_is_404_when_off_and_the_page_says_so(tmp_path: Path) -> None:
    emulator = start_emulator("--service-mode", "serverless")
    server = start_chat_server(emulator.connection_string, "--service-mode", "serverless", cwd=tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("flow", "flow/info"):
                async with http.get(server.url + path) as response:
                    assert response.status == 404
                    assert "--flow-port" in await response.text()
            async with http.get(server.url) as response:
                assert 'data-flow="off"' in await response.text()
            async with http.get(server.url + "healthz") as response:
                assert response.status == 200
    finally:
        server.stop()
        emulator.stop()


def _settings() -> Settings:
    connection_string = f"Endpoint=http://127.0.0.1;Port=1;AccessKey={KEY};Version=1.0;"
    return load_settings(connection_string=connection_string, service_mode=ServiceMode.SERVERLESS)


@pytest.mark.parametrize("remote", ["203.0.113.9", "10.0.0.1", "::ffff:192.168.1.2", "2001:db8::1", "", "bogus"])
async def test_flow_refuses_a_peer_that_is_not_on_this_machine(remote: str) -> None:
    collector = FlowCollector(0)
    await collector.start()
    app = create_app(_settings(), collector=collector)
    try:
        for handler, path in ((handle_flow, "/flow"), (handle_flow_info, "/flow/info")):
            request = make_mocked_request("GET", path, app=app).clone(remote=remote)
            response = await handler(request)
            assert response.status == 403
    finally:
        collector.close()


@pytest.mark.parametrize(
    ("remote", "local"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True), ("fe80::1%eth0", False)],
)
def test_is_loopback(remote: str, local: bool) -> None:
    assert is_loopback(remote) is local


async def test_flow_port_errors_are_one_line(tmp_path: Path) -> None:
    emulator = start_emulator("--service-mode", "serverless")
    try:
        env = {"Azure__SignalR__ConnectionString": emulator.connection_string}
        both = Process(
            [script("chat-server"), "--flow-port", "0", "--flow-to", "127.0.0.1:9", "--service-mode", "serverless"],
            env=env,
            cwd=tmp_path,
        )
        assert both.popen.wait(20) == 2
        assert re.fullmatch(r"error: use --flow-port .* not both \(see chat-server --help\)\n", both.stderr())
        remote = Process([script("chat-server"), "--flow-to", "192.0.2.1:9"], env=env, cwd=tmp_path)
        assert remote.popen.wait(20) == 2 and "loopback" in remote.stderr()
        # A UDP port another process holds: one line, exit 1.
        holder = HopCatcher()
        await holder.start()
        try:
            taken = holder.address[1]
            busy = Process(
                [script("chat-server"), "--port", "0", "--flow-port", str(taken), "--service-mode", "serverless"],
                env=env,
                cwd=tmp_path,
            )
            assert busy.popen.wait(20) == 1
            assert busy.stderr().strip().splitlines()[-1] == (
                f"error: cannot listen on udp://127.0.0.1:{taken} for hop events: address in use"
            )
        finally:
            holder.close()
    finally:
        emulator.stop()


# -- the stream's limits, in process ----------------------------------------------------------------------------------


@pytest.fixture
async def flow_client() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], FlowCollector]]:
    collector = FlowCollector(0)
    await collector.start()
    client = TestClient(TestServer(create_app(_settings(), collector=collector), host="127.0.0.1"))
    await client.start_server()
    yield client, collector
    await client.close()


def _hop(n: int) -> Hop:
    return Hop.make("service", "service", "others", "fan-out", f"fan-out {n}", count=n, service="signalr")


async def test_the_stream_replays_the_last_200_then_follows(
    flow_client: tuple[TestClient[web.Request, web.Application], FlowCollector],
) -> None:
    client, collector = flow_client
    for n in range(250):
        collector.add(_hop(n))
    async with client.get("/flow") as response:
        assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        counts: list[int] = []
        async with asyncio.timeout(WAIT):
            async for line in response.content:
                if line.startswith(b"data: "):
                    counts.append(json.loads(line[6:])["count"])
                    if len(counts) == 200:
                        collector.add(_hop(1000))
                    if len(counts) == 201:
                        break
    assert counts == [*range(50, 250), 1000]


async def test_a_reader_that_falls_behind_is_ended_and_others_go_on(
    flow_client: tuple[TestClient[web.Request, web.Application], FlowCollector],
) -> None:
    client, collector = flow_client
    async with client.get("/flow") as slow:
        await slow.content.readline()  # "retry: …": the stream is open and subscribed
        for n in range(QUEUE_LIMIT + 50):  # no await in between: the stream's queue overflows
            collector.add(_hop(n))
        async with asyncio.timeout(WAIT):
            body = await slow.content.read()
    assert body.endswith(b": this reader fell behind; reconnect for the latest hops\n\n")
    assert body.count(b"data: ") <= QUEUE_LIMIT
    async with client.get("/flow") as again:
        assert again.status == 200
        async with asyncio.timeout(WAIT):
            assert (await again.content.readline()).startswith(b"retry: ")


async def test_too_many_streams_get_503(
    flow_client: tuple[TestClient[web.Request, web.Application], FlowCollector],
) -> None:
    client, _ = flow_client
    open_streams = []
    try:
        for _ in range(MAX_STREAMS):
            response = await client.get("/flow")
            assert response.status == 200
            await response.content.readline()
            open_streams.append(response)
        async with client.get("/flow") as refused:
            assert refused.status == 503 and "too many hop streams" in await refused.text()
        async with client.get("/healthz") as health:
            assert health.status == 200
    finally:
        for response in open_streams:
            response.close()


async def test_mermaid_bundle_is_served_or_explained(
    flow_client: tuple[TestClient[web.Request, web.Application], FlowCollector], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = flow_client
    if server_flow.MERMAID_JS.is_file():  # installed by `make node` (package.json)
        async with client.get("/lib/mermaid.min.js") as response:
            assert response.status == 200 and response.content_type == "application/javascript"
            assert (await response.read()) == server_flow.MERMAID_JS.read_bytes()
            etag = response.headers["ETag"]
        async with client.get("/lib/mermaid.min.js", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
    monkeypatch.setattr(server_flow, "MERMAID_JS", Path("/nonexistent/mermaid.min.js"))
    async with client.get("/lib/mermaid.min.js") as response:
        assert response.status == 404 and "make node" in await response.text()


async def test_open_streams_end_when_the_server_stops(tmp_path: Path) -> None:
    emulator = start_emulator("--service-mode", "serverless")
    server = start_chat_server(
        emulator.connection_string, "--service-mode", "serverless", "--flow-port", "0", cwd=tmp_path
    )
    try:
        async with FlowReader(server.url + "flow") as reader:
            started = asyncio.get_running_loop().time()
            assert await asyncio.to_thread(server.stop) == 0
            assert asyncio.get_running_loop().time() - started < 4
            assert reader.lines[:1] == [b"retry: 2000\n"]
    finally:
        server.stop()
        emulator.stop()
