"""``apim-gateway --flow-to``: the gateway's hops for each transport and for Web PubSub, caught as raw UDP datagrams
from real processes (the emulators, the app server, the gateway) while a real client chats through it; no secret in
any of them; and the parsers behind them (the relayed negotiate, Web PubSub's connected message) against hostile
input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from flow.hops import Hop
from gateway.flow import GatewayFlow, is_keepalive
from signalr.client import HubConnection
from signalr.client.transport_choice import TransportChoice
from signalr.negotiate import connect_url, negotiate_url
from tests.server.test_flow_support import HopCatcher
from tests.support.processes import Process, free_port, script
from tests.support.stack import start_chat_server, start_emulator, start_gateway, upstream_template
from tests.support.wps_emulator import start_webpubsub_emulator
from tests.support.wps_server import start_webpubsub_chat_server

SUBSCRIPTION_KEY = "FlowGatewaySubKey0123456789DoNotPrint"


@pytest.fixture
async def catcher() -> AsyncIterator[HopCatcher]:
    hops = HopCatcher()
    await hops.start()
    yield hops
    hops.close()


def _apim(hop: Hop, kind: str, target: str) -> bool:
    return hop.role == "apim" and hop.kind == kind and hop.target == target


@pytest.mark.parametrize(
    ("choice", "profile", "transport"),
    [
        (TransportChoice.WEBSOCKETS, "websocket", "WebSockets"),
        (TransportChoice.SERVER_SENT_EVENTS, "sse-lp", "ServerSentEvents"),
        (TransportChoice.LONG_POLLING, "sse-lp", "LongPolling"),
    ],
    ids=["websockets", "sse", "longpolling"],
)
async def test_signalr_relay_hops_per_transport(
    tmp_path: Path, catcher: HopCatcher, choice: TransportChoice, profile: str, transport: str
) -> None:
    server_port = free_port()
    # Pings every 0.3 s both ways, so that the test sees keep-alives are left out.
    fast = {"SIGNALR_EMULATOR_KEEPALIVE": "0.3"}
    emulator = start_emulator("--service-mode", "serverless", "--upstream", upstream_template(server_port), env=fast)
    gateway = start_gateway(emulator.base, "--profile", profile, "--flow-to", catcher.flow_to)
    server = start_chat_server(
        emulator.connection_string_to(gateway.url), "--service-mode", "serverless", port=server_port, cwd=tmp_path
    )
    try:
        client = HubConnection(server.hub_url, transport=choice, keep_alive_interval=0.3)
        got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        client.on("broadcastMessage", lambda name, text: got.put_nowait((name, text)))
        await client.start()
        try:
            await client.invoke("broadcastMessage", "zoltan", "through apim")
            assert await asyncio.wait_for(got.get(), 10) == ("zoltan", "through apim")
            connection_id = client.connection_id
            await asyncio.sleep(1.5)  # several pings each way
        finally:
            await client.stop()
        assert connection_id is not None

        negotiate = await catcher.wait_for(
            lambda h: _apim(h, "relay", "service") and h.label.startswith("POST /client/negotiate"), "negotiate"
        )
        assert negotiate.status == 200 and "(Host rewritten)" in negotiate.label and negotiate.service == "signalr"
        assert negotiate.duration_ms is not None and negotiate.flow_id is None

        def mine(hop: Hop) -> bool:
            return hop.connection_id == connection_id and hop.transport == transport

        if transport == "WebSockets":
            opened = await catcher.wait_for(lambda h: _apim(h, "upgrade", "service") and mine(h), "upgrade")
            assert opened.status == 101
            up = await catcher.wait_for(lambda h: _apim(h, "relay", "service") and mine(h), "message up")
            assert up.label.startswith("WebSocket text message") and up.bytes and up.duration_ms is not None
        else:
            opened = await catcher.wait_for(lambda h: _apim(h, "connect", "service") and mine(h), "connect")
            assert opened.status == 200
            up = await catcher.wait_for(
                lambda h: _apim(h, "relay", "service") and mine(h) and h.label.startswith("POST /client/"),
                "POST of the invocation",
            )
            assert up.status == 200
        down = await catcher.wait_for(
            lambda h: _apim(h, "relay", "client") and mine(h) and (h.bytes or 0) > 20, "the broadcast relayed down"
        )
        assert "↓" in down.label
        # The hub handshake and its answer are the connection's set-up, the Close message or the DELETE its end; up
        # went only the invocation, not the client's five or more pings; and no hop down is the service's Ping.
        handshakes = [h for h in catcher.hops() if h.kind == "connect" and mine(h) and "handshake" in h.label]
        assert sorted(h.target for h in handshakes) == ["client", "service"], [h.label for h in handshakes]
        ups = [h for h in catcher.hops() if _apim(h, "relay", "service") and mine(h) and "negotiate" not in h.label]
        assert len(ups) == 1, [h.label for h in ups]
        if transport != "ServerSentEvents":  # the SSE client ends by dropping its stream
            closes = [h for h in catcher.hops() if h.kind == "connect" and mine(h) and "close message" in h.label]
            assert len(closes) == 1, [h.label for h in catcher.hops() if mine(h)]
        if transport == "LongPolling":  # then its DELETE, which this profile has no operation for
            stop = await catcher.wait_for(lambda h: h.kind == "connect" and mine(h) and "DELETE" in h.label, "stop")
            assert stop.status == 404 and stop.target == "client"
        ping_sizes = {11, len(b'data: {"type":6}\x1e\r\n\r\n')}
        assert not [h for h in catcher.hops() if _apim(h, "relay", "client") and mine(h) and h.bytes in ping_sizes]
        # The gateway reads no message: its hops carry no flow id and no payload text.
        hops = catcher.hops()
        assert all(h.flow_id is None for h in hops)
        assert not any("through apim" in h.label or "zoltan" in h.label for h in hops)
    finally:
        server.stop()
        gateway.stop()
        emulator.stop()


async def test_webpubsub_relay_hops(tmp_path: Path, catcher: HopCatcher) -> None:
    """Web PubSub through the gateway with the official Python client: the upgrade and each message, attributed to
    the connection the service's connected message named; the access token appears in no hop."""
    from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
    from azure.messaging.webpubsubclient.models import WebPubSubDataType

    server_port = free_port()
    emulator = start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{server_port}/eventhandler")
    gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub", "--flow-to", catcher.flow_to)
    server = start_webpubsub_chat_server(
        emulator.connection_string + f"ClientEndpoint={gateway.url};", port=server_port, cwd=tmp_path
    )
    try:
        async with aiohttp.ClientSession() as http, http.get(server.negotiate_url + "?id=fay") as response:
            url = (await response.json())["url"]
        assert url.startswith(f"ws://{gateway.host}/client/hubs/chat?access_token=")
        token = url.partition("access_token=")[2].partition("&")[0]

        def chat() -> str:
            client = WebPubSubClient(credential=WebPubSubClientCredential(lambda: url))
            ids: list[str] = []
            client.subscribe("connected", lambda args: ids.append(args.connection_id))
            client.open()
            try:
                client.send_event(
                    "broadcastMessage", {"name": "fay", "message": "wps via apim"}, WebPubSubDataType.JSON
                )
            finally:
                client.close()
            return ids[0]

        connection_id = await asyncio.to_thread(chat)
        opened = await catcher.wait_for(lambda h: _apim(h, "upgrade", "service"), "upgrade")
        assert (opened.status, opened.service, opened.transport) == (101, "webpubsub", "WebSockets")
        assert opened.label.startswith("GET /client/hubs/chat 101")
        # The service's first message, "connected", named the connection: it is the connection's set-up.
        connected = await catcher.wait_for(lambda h: _apim(h, "connect", "client"), "connected message")
        assert connected.connection_id == connection_id and connected.label.startswith("WebSocket connected:")
        up = await catcher.wait_for(
            lambda h: _apim(h, "relay", "service") and h.connection_id == connection_id, "event relayed up"
        )
        assert up.bytes and "text" in up.label
        await catcher.wait_for(
            lambda h: _apim(h, "relay", "client") and h.connection_id == connection_id and (h.bytes or 0) > 20,
            "message relayed down",
        )
        assert token and not any(token.encode() in raw or token[:24].encode() in raw for raw in catcher.raw)
        assert not any(b"eyJ" in raw or b"wps via apim" in raw for raw in catcher.raw)
    finally:
        server.stop()
        gateway.stop()
        emulator.stop()


async def test_no_secret_in_any_hop(tmp_path: Path, catcher: HopCatcher) -> None:
    """LongPolling by hand through a gateway that requires a subscription key (in the header, then in the query), with
    the app server's hops to the same catcher: no access token, connection token, subscription key, AccessKey or
    upstream signature in any raw datagram. Refusals are reported too (the gateway's own 401)."""
    server_port = free_port()
    emulator = start_emulator("--service-mode", "serverless", "--upstream", upstream_template(server_port))
    gateway = start_gateway(
        emulator.base, "--profile", "sse-lp", "--subscription-key", SUBSCRIPTION_KEY, "--flow-to", catcher.flow_to
    )
    server = start_chat_server(
        emulator.connection_string_to(gateway.url),
        "--service-mode",
        "serverless",
        "--flow-to",
        catcher.flow_to,
        port=server_port,
        cwd=tmp_path,
    )
    try:
        key_query = f"subscription-key={quote(SUBSCRIPTION_KEY)}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.hub_url}/negotiate?{key_query}") as response:
                redirect = await response.json()
            url, access_token = redirect["url"], redirect["accessToken"]
            assert key_query in url
            auth = {"Authorization": f"Bearer {access_token}"}
            async with http.post(URL(negotiate_url(url), encoded=True), headers=auth) as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
            connection_token = answer["connectionToken"]
            assert connection_token != answer["connectionId"]
            target = URL(connect_url(url, connection_token), encoded=True)
            async with http.get(target, headers=auth) as response:  # the first poll
                assert response.status == 200
            async with http.post(target, headers=auth, data=b'{"protocol":"json","version":1}\x1e') as response:
                assert response.status == 200
            invoke = {"type": 1, "invocationId": "0", "target": "broadcastMessage", "arguments": ["gus", "lp"]}
            async with http.post(target, headers=auth, data=json.dumps(invoke).encode() + b"\x1e") as response:
                assert response.status == 200
            received = b""
            async with asyncio.timeout(10):
                while b"broadcastMessage" not in received:
                    async with http.get(target, headers=auth) as response:
                        received += await response.read()
            # Without the key, the gateway answers itself: reported towards the client with its status.
            async with http.post(f"{gateway.url}/client/negotiate?hub=chat") as response:
                assert response.status == 401
        rest = await catcher.wait_for(lambda h: h.role == "app" and h.kind == "rest" and h.status == 202, "REST send")
        poll = await catcher.wait_for(
            lambda h: _apim(h, "relay", "client") and h.connection_id == answer["connectionId"] and bool(h.bytes),
            "poll carrying the broadcast",
        )
        assert poll.transport == "LongPolling"
        # The poll was sent (and held) before the message; its hop begins when the service answered it.
        assert poll.started > rest.started
        denied = await catcher.wait_for(lambda h: _apim(h, "relay", "client") and h.status == 401, "401 hop")
        assert "Access Denied" in denied.label
        secrets = [
            SUBSCRIPTION_KEY,
            access_token,
            access_token.split(".")[2],  # the signature part alone
            connection_token,
            emulator.access_key,
            "eyJ",
            "sha256=",
        ]
        assert len(catcher.raw) > 8
        for raw in catcher.raw:
            for secret in secrets:
                assert secret.encode() not in raw, (secret[:6], raw[:200])
    finally:
        server.stop()
        gateway.stop()
        emulator.stop()


# -- the parsers behind the hops, against hostile input --------------------------------------------------------------


class _Publisher:
    enabled = True

    def __init__(self) -> None:
        self.hops: list[Hop] = []

    def emit(self, hop: Hop) -> None:
        self.hops.append(hop)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'{"connectionId": 5, "connectionToken": "t"}',
        b'{"connectionId": "' + b"x" * 500 + b'", "connectionToken": "t"}',
        b'{"connectionId": "a\\nb", "connectionToken": "t"}',
        b"[" * 100_000,
        b'{"connectionId": "c", "connectionToken": ["t"]}',
    ],
    ids=["empty", "text", "array", "number-id", "long-id", "control-id", "deep", "list-token"],
)
def test_a_hostile_negotiate_answer_teaches_nothing(body: bytes) -> None:
    flow = GatewayFlow(_Publisher(), "signalr", host_rewritten=True)
    flow.learn_negotiate(body)
    assert flow.connection("id=t", "LongPolling")[0] is None


def test_connection_ids_are_learned_by_token_and_bounded() -> None:
    flow = GatewayFlow(_Publisher(), "signalr", host_rewritten=True)
    flow.learn_negotiate(b'{"connectionId": "cid-1", "connectionToken": "tok-1", "negotiateVersion": 1}')
    flow.learn_negotiate(b'{"connectionId": "cid-0", "negotiateVersion": 0}')  # v0: the id is what `id=` carries
    assert flow.connection("hub=chat&id=tok-1", "LongPolling") == ("cid-1", "LongPolling", True)
    assert flow.connection("hub=chat&id=tok-1") == ("cid-1", "LongPolling", False)  # remembered for the POSTs
    assert flow.connection("id=cid-0")[0] == "cid-0"
    assert flow.connection("id=unknown")[0] is None and flow.connection("hub=chat")[0] is None
    for n in range(5000):
        flow.learn_negotiate(json.dumps({"connectionId": f"c{n}", "connectionToken": f"t{n}"}).encode())
    assert flow.connection("id=tok-1")[0] is None  # the oldest are forgotten
    assert flow.connection("id=t4999")[0] == "c4999"


@pytest.mark.parametrize(
    ("first", "learned"),
    [
        ('{"type":"system","event":"connected","userId":"u","connectionId":"wc-1","reconnectionToken":"r"}', "wc-1"),
        ('{"type":"system","event":"disconnected","connectionId":"wc-1"}', None),
        ('{"type":"system","event":"connected","connectionId":7}', None),
        ('{"type":"system","event":"connected","connectionId":"' + "y" * 300 + '"}', None),
        ("{" * 5000, None),
        ("[]", None),
        ("not json", None),
    ],
    ids=["connected", "other-event", "number-id", "long-id", "oversized", "array", "text"],
)
def test_webpubsub_connection_id_from_the_first_message_only(first: str, learned: str | None) -> None:
    publisher = _Publisher()
    relay = GatewayFlow(publisher, "webpubsub", host_rewritten=True).relay(None)
    relay.message(False, first)
    relay.message(False, '{"type":"system","event":"connected","connectionId":"later"}')
    assert relay.connection_id == learned
    assert "reconnectionToken" not in "".join(h.label for h in publisher.hops)


@pytest.mark.parametrize(
    ("data", "keepalive"),
    [
        (b'{"type":6}\x1e', True),
        (b"\x02\x91\x06", True),
        (b'data: {"type":6}\x1e\r\n\r\n', True),
        (b":\r\n", True),
        (b'{"type":6}\x1e{"type":6}\x1e', False),
        (b'{"type":1,"target":"x","arguments":[]}\x1e', False),
        (b"", False),
    ],
)
def test_http_keepalives(data: bytes, keepalive: bool) -> None:
    assert is_keepalive(data) is keepalive


def test_keepalives_are_not_reported_and_the_handshake_is_set_up() -> None:
    publisher = _Publisher()
    relay = GatewayFlow(publisher, "signalr", host_rewritten=False).relay("c1")
    for message in ('{"type":6}\x1e', b"\x02\x91\x06", '{"type":"ping"}', '{"type":"sequenceAck","sequenceId":3}'):
        relay.message(True, message)
        relay.message(False, message)
    assert publisher.hops == []
    relay.message(True, '{"protocol":"json","version":1}\x1e')
    relay.message(False, "{}\x1e")
    assert [(h.kind, h.label) for h in publisher.hops] == [
        ("connect", "WebSocket handshake: 32 bytes ↑"),
        ("connect", "WebSocket handshake answer: 3 bytes ↓"),
    ]
    publisher.hops.clear()
    relay.message(True, '{"type":1,"target":"broadcastMessage","arguments":["a","b"]}\x1e')
    relay.message(False, b"\x10\x95\x01\x80\xc0\xa4echo\x92")
    up, down = publisher.hops
    assert up.kind == down.kind == "relay"
    assert (up.target, up.bytes, up.connection_id) == ("service", 61, "c1")
    assert (down.target, down.bytes, down.label) == ("client", 11, "WebSocket binary message: 11 bytes ↓")
    assert "broadcastMessage" not in up.label


# -- the command line -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["10.0.0.1:9999", "localhost:9999", "127.0.0.1", "127.0.0.1:0", "[::1]:9999"])
def test_flow_to_must_be_a_loopback_address(address: str) -> None:
    process = Process([script("apim-gateway"), "--backend", "http://127.0.0.1:9", "--flow-to", address])
    assert process.popen.wait(20) == 2
    lines = process.stderr().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("apim-gateway: error: argument --flow-to: flow address")


async def test_the_ready_line_is_unchanged_and_the_log_says_where_hops_go(catcher: HopCatcher) -> None:
    gateway = start_gateway("http://127.0.0.1:9", "--profile", "websocket", "--flow-to", catcher.flow_to)
    try:
        assert (
            gateway.ready_line == f"APIM gateway listening on {gateway.url} (profile websocket) -> http://127.0.0.1:9"
        )
        assert f"flow: publishing hop events to udp://{catcher.flow_to}" in gateway.stderr()
        # A backend that cannot be reached: the gateway's own 500, reported towards the client.
        async with aiohttp.ClientSession() as http, http.post(f"{gateway.url}/client/negotiate?hub=chat") as response:
            assert response.status == 500
        failed = await catcher.wait_for(lambda h: _apim(h, "relay", "client") and h.status == 500, "500 hop")
        assert failed.label.startswith("POST /client/negotiate 500: Internal server error")
    finally:
        gateway.stop()
