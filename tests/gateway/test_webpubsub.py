"""`apim-gateway --profile webpubsub` as a process: Azure Web PubSub's client endpoint behind APIM (docs/apim.md §9).

The backend here is a small Web PubSub-shaped WebSocket server run by the test (in a thread of its own): it answers
the handshake with the subprotocol it picks among the two JSON subprotocols the service speaks, then tells the client
how it saw the handshake (path, raw query, Host, offered and chosen subprotocol) in a server message, acks every
request with an ``ackId`` and returns ``sendToGroup`` data as a group message. The official Python Web PubSub client
(``azure-messaging-webpubsubclient``) is one of the peers: it refuses a handshake whose subprotocol did not come back.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import unquote, urlencode

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from azure.messaging.webpubsubclient import WebPubSubClient
from azure.messaging.webpubsubclient.models import CallbackType, WebPubSubDataType, WebPubSubProtocolType
from yarl import URL

from tests.gateway.conftest import PRIMARY_KEY
from tests.support.fixtures import JsPeerFactory, js_peer  # noqa: F401  (pytest finds fixtures by name)
from tests.support.processes import Process, script
from tests.support.stack import Gateway, start_gateway, start_stack

JSON = "json.webpubsub.azure.v1"
RELIABLE = "json.reliable.webpubsub.azure.v1"
NOT_FOUND = b'{ "statusCode": 404, "message": "Resource not found" }'
# A token-like value with characters a proxy might re-encode: it must arrive byte for byte.
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln%2B%2F%3D"
RECONNECTION_TOKEN = "r+tok/en=="


class WebPubSubBackend:
    """A Web PubSub-shaped backend on 127.0.0.1 (any free port), served from its own thread and event loop.

    ``handshakes`` lists how it saw each WebSocket handshake; ``requests`` counts every request it received.
    ``?refuse=<status>`` refuses the handshake with that status, as the service does for a bad token. A client event
    named ``drop`` is acknowledged, then the connection is cut without a close frame (a network drop); on a resumed
    connection it is only acknowledged.
    """

    def __init__(self) -> None:
        self.handshakes: list[dict[str, Any]] = []
        self.requests = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    @property
    def authority(self) -> str:
        return self.url.removeprefix("http://")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        hub = re.fullmatch(r"/client/hubs/(\w+)/?", request.rel_url.raw_path)
        if request.method != "GET" or hub is None or request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"backend": True, "path": request.rel_url.raw_path})
        refuse = request.query.get("refuse")
        if refuse:
            return web.Response(status=int(refuse), text="Unauthorized: the access token is not valid")
        ws = web.WebSocketResponse(protocols=(JSON, RELIABLE), max_msg_size=1 << 20)
        await ws.prepare(request)
        number = len(self.handshakes) + 1
        seen = {
            "path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "host": request.headers.get("Host"),
            "offered": request.headers.get("Sec-WebSocket-Protocol"),
            "protocol": ws.ws_protocol,
            "authorization": request.headers.get("Authorization"),
            "subscription_key": request.headers.get("Ocp-Apim-Subscription-Key"),
        }
        self.handshakes.append(seen)
        connected: dict[str, Any] = {"type": "system", "event": "connected", "userId": "u1"}
        connected["connectionId"] = f"conn-{number}"
        if ws.ws_protocol == RELIABLE:
            connected["reconnectionToken"] = RECONNECTION_TOKEN
        await ws.send_str(json.dumps(connected))
        await ws.send_str(json.dumps({"type": "message", "from": "server", "dataType": "json", "data": seen}))
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
                continue
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(msg.data)
            except ValueError:
                await ws.send_str(msg.data)  # plain WebSocket clients get an echo
                continue
            if not isinstance(frame, dict):
                continue
            if "ackId" in frame:
                await ws.send_str(json.dumps({"type": "ack", "ackId": frame["ackId"], "success": True}))
            if frame.get("type") == "sendToGroup":
                out = {"type": "message", "from": "group", "group": frame["group"], "fromUserId": "u1"}
                out.update(dataType=frame["dataType"], data=frame["data"])
                await ws.send_str(json.dumps(out))
            # A resumed connection is never dropped again: if the cut lost the ack (an abort can reset the socket
            # before it is sent), the client sends "drop" again after its recovery, and that one is only acknowledged.
            resumed = "awps_connection_id" in request.query
            if frame.get("type") == "event" and frame.get("event") == "drop" and not resumed:
                assert request.transport is not None
                request.transport.abort()
                break
        return ws


@pytest.fixture(scope="module")
def wps_backend() -> Iterator[WebPubSubBackend]:
    backend = WebPubSubBackend()
    backend.start()
    yield backend
    backend.stop()


def _gateway(backend: WebPubSubBackend, *args: str) -> Iterator[Gateway]:
    gateway = start_gateway(backend.url, *args)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def wps_gateway(wps_backend: WebPubSubBackend) -> Iterator[Gateway]:
    yield from _gateway(wps_backend, "--profile", "webpubsub")


@pytest.fixture(scope="module")
def keyed_wps_gateway(wps_backend: WebPubSubBackend) -> Iterator[Gateway]:
    yield from _gateway(wps_backend, "--profile", "webpubsub", "--subscription-key", PRIMARY_KEY)


@pytest.fixture(scope="module")
def other_hub_gateway(wps_backend: WebPubSubBackend) -> Iterator[Gateway]:
    yield from _gateway(wps_backend, "--profile", "webpubsub", "--hub", "lobby_2")


@pytest.fixture(scope="module")
def signalr_gateway(wps_backend: WebPubSubBackend) -> Iterator[Gateway]:
    """The SignalR guide's `websocket` profile, in front of the Web PubSub backend: the wrong profile."""
    yield from _gateway(wps_backend, "--profile", "websocket")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def url(gateway: Gateway, path_and_query: str) -> URL:
    return URL(gateway.url + path_and_query, encoded=True)


def client_url(gateway: Gateway, query: str = f"access_token={TOKEN}") -> str:
    """The client access URL with its scheme and host swapped for the gateway's: what the app server hands out."""
    return f"ws://{gateway.host}/client/hubs/chat?{query}"


def ws_url(gateway: Gateway, query: str = f"access_token={TOKEN}") -> URL:
    """`client_url` for aiohttp, sent exactly as written (yarl would otherwise re-quote the query)."""
    return URL(client_url(gateway, query), encoded=True)


async def handshake(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """How the backend saw the handshake: the data of its first server message (after ``connected``)."""
    async with asyncio.timeout(5):
        while True:
            msg = await ws.receive()
            assert msg.type is WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            if frame.get("type") == "message" and frame.get("from") == "server":
                return dict(frame["data"])


# -- the WebSocket API: handshake, subprotocol, query, messages ------------------------------------------------------


@pytest.mark.parametrize("protocol", [JSON, RELIABLE])
async def test_client_access_url_through_the_gateway(
    wps_gateway: Gateway, wps_backend: WebPubSubBackend, http: aiohttp.ClientSession, protocol: str
) -> None:
    assert wps_gateway.profile == "webpubsub"
    async with http.ws_connect(ws_url(wps_gateway), protocols=(protocol,)) as ws:
        assert ws.protocol == protocol  # the backend's choice came back through the gateway
        seen = await handshake(ws)
        assert seen["offered"] == protocol and seen["protocol"] == protocol
        # The service's own path, without a "/" the client never sent; the query byte for byte; the service's Host.
        assert seen["path"] == "/client/hubs/chat"
        assert seen["query"] == f"access_token={TOKEN}"
        assert seen["host"] == wps_backend.authority
        await ws.send_str(json.dumps({"type": "joinGroup", "group": "room", "ackId": 1}))
        await ws.send_str(
            json.dumps({"type": "sendToGroup", "group": "room", "ackId": 2, "dataType": "text", "data": "héllo ✓"})
        )
        got = [json.loads((await asyncio.wait_for(ws.receive(), 5)).data) for _ in range(3)]
        assert got == [
            {"type": "ack", "ackId": 1, "success": True},
            {"type": "ack", "ackId": 2, "success": True},
            {
                "type": "message",
                "from": "group",
                "group": "room",
                "fromUserId": "u1",
                "dataType": "text",
                "data": "héllo ✓",
            },
        ]
    text = wps_gateway.wait_for_log("websocket closed")
    assert "-> webpubsub-client/onHandshake 101 (WebSocket relayed)" in text
    assert TOKEN not in text and "eyJ" not in text


async def test_the_backends_choice_of_subprotocol_is_what_the_client_gets(
    wps_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    # Offered first is one the service does not speak: the gateway must pass the whole list on and return the
    # backend's pick, not the client's first offer.
    offered = ("custom.unknown.v1", RELIABLE, JSON)
    async with http.ws_connect(ws_url(wps_gateway), protocols=offered) as ws:
        seen = await handshake(ws)
        assert [p.strip() for p in seen["offered"].split(",")] == list(offered)  # all of them, in order
        assert seen["protocol"] == RELIABLE
        assert ws.protocol == RELIABLE


async def test_a_subprotocol_list_over_two_header_lines(wps_gateway: Gateway) -> None:
    """RFC 6455 §11.3.4: several Sec-WebSocket-Protocol lines are one list; the backend's pick from the second line
    must come back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", wps_gateway.port)
    try:
        writer.write(
            (
                f"GET /client/hubs/chat?access_token={TOKEN} HTTP/1.1\r\nHost: {wps_gateway.host}\r\n"
                "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Protocol: custom.unknown.v1\r\nSec-WebSocket-Protocol: {JSON}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101 ")
    assert [line for line in lines if line.lower().startswith("sec-websocket-protocol:")] == [
        f"Sec-WebSocket-Protocol: {JSON}"
    ]


async def test_a_plain_websocket_without_subprotocol(wps_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(wps_gateway)) as ws:
        assert ws.protocol is None
        seen = await handshake(ws)
        assert seen["offered"] is None and seen["protocol"] is None
        await ws.send_str("not json")
        assert (await asyncio.wait_for(ws.receive(), 5)).data == "not json"
        await ws.send_bytes(b"\x00\xff" * 1000)
        assert (await asyncio.wait_for(ws.receive(), 5)).data == b"\x00\xff" * 1000


async def test_reconnect_query_and_bearer_header_pass_verbatim(
    wps_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    query = f"access_token={TOKEN}&awps_connection_id=conn%2F1&awps_reconnection_token=r%2Btok%2Fen%3D%3D&x=a+b"
    async with http.ws_connect(ws_url(wps_gateway, query), protocols=(RELIABLE,)) as ws:
        seen = await handshake(ws)
        assert seen["query"] == query
    async with http.ws_connect(
        ws_url(wps_gateway, ""), protocols=(JSON,), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as ws:
        seen = await handshake(ws)
        assert seen["authorization"] == f"Bearer {TOKEN}"  # the token may ride in the header instead
        assert seen["query"] == ""
    text = wps_gateway.wait_for_log("awps_reconnection_token=***")
    assert "awps_reconnection_token=***" in text
    assert "r%2Btok" not in text and TOKEN not in text


async def test_a_trailing_slash_is_forwarded_as_sent(wps_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(url(wps_gateway, f"/client/hubs/chat/?access_token={TOKEN}")) as ws:
        assert (await handshake(ws))["path"] == "/client/hubs/chat/"


async def test_a_refused_handshake_comes_back_unchanged(wps_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(ws_url(wps_gateway, "access_token=expired&refuse=401"), protocols=(JSON,))
    assert info.value.status == 401
    async with http.get(
        url(wps_gateway, "/client/hubs/chat?refuse=401"),
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": JSON,
        },
    ) as response:
        assert response.status == 401
        assert await response.read() == b"Unauthorized: the access token is not valid"
        assert "Sec-WebSocket-Protocol" not in response.headers


# -- everything else is APIM's 404, and never reaches the service --------------------------------------------------

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/client/negotiate?hub=chat&negotiateVersion=1", {}),  # SignalR negotiate
        ("GET", "/client/?hub=chat&id=abc", UPGRADE),  # SignalR WebSocket
        ("GET", "/client/?hub=chat&id=abc", {"Accept": "text/event-stream"}),  # SignalR Server-Sent Events
        ("POST", "/client/?hub=chat&id=abc", {}),  # SignalR LongPolling send
        ("GET", "/client/?hub=chat", UPGRADE),  # Web PubSub's other client path, not an API here
        ("POST", "/chat/negotiate", {}),  # the app server's negotiate is not behind APIM
        ("GET", f"/client/hubs/chat?access_token={TOKEN}", {}),  # no Upgrade
        ("OPTIONS", "/client/hubs/chat", {"Origin": "http://127.0.0.1:5000"}),
        ("POST", "/client/hubs/chat", {}),
        ("GET", "/client/hubs/chat/sub", UPGRADE),
        ("GET", "/client/hubs/other?access_token=x", UPGRADE),  # another hub
        ("GET", "/client/hubs", UPGRADE),
        ("GET", "/", {}),
    ],
)
async def test_everything_else_is_apims_404(
    wps_gateway: Gateway,
    wps_backend: WebPubSubBackend,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    before = wps_backend.requests
    async with http.request(method, url(wps_gateway, path), headers=headers) as response:
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("application/json")
        assert await response.read() == NOT_FOUND
    assert wps_backend.requests == before


async def test_the_404_notes_name_the_profile_a_client_needs(wps_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(url(wps_gateway, "/client/negotiate?hub=wrongprofile")) as response:
        assert response.status == 404
    line = await wps_gateway.log_line(r"/client/negotiate\?hub=wrongprofile")
    assert "a SignalR client needs --profile websocket or sse-lp" in line
    async with http.get(url(wps_gateway, "/client/hubs/elsewhere"), headers=UPGRADE) as response:
        assert response.status == 404
    line = await wps_gateway.log_line(r"/client/hubs/elsewhere ")
    assert "the webpubsub profile serves one hub (--hub chooses it)" in line


async def test_subscription_key(keyed_wps_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for headers in ({}, {"Ocp-Apim-Subscription-Key": "not-the-key"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(ws_url(keyed_wps_gateway), protocols=(JSON,), headers=headers)
        assert info.value.status == 401  # before any upgrade
    async with http.ws_connect(
        ws_url(keyed_wps_gateway), protocols=(JSON,), headers={"Ocp-Apim-Subscription-Key": PRIMARY_KEY}
    ) as ws:
        seen = await handshake(ws)
        assert seen["subscription_key"] == PRIMARY_KEY and ws.protocol == JSON
    # Browsers cannot put headers on a WebSocket: the key rides in the query, forwarded like the rest of it.
    query = f"access_token={TOKEN}&subscription-key={PRIMARY_KEY}"
    async with http.ws_connect(ws_url(keyed_wps_gateway, query), protocols=(RELIABLE,)) as ws:
        assert (await handshake(ws))["query"] == query
    text = keyed_wps_gateway.wait_for_log("websocket closed")
    assert PRIMARY_KEY not in text


async def test_another_hub(
    other_hub_gateway: Gateway, wps_backend: WebPubSubBackend, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(url(other_hub_gateway, "/client/hubs/lobby_2?access_token=t"), protocols=(JSON,)) as ws:
        assert (await handshake(ws))["path"] == "/client/hubs/lobby_2"
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(ws_url(other_hub_gateway), protocols=(JSON,))
    assert info.value.status == 404
    assert "API webpubsub-client (websocket) /client/hubs/lobby_2 -> ws://" in other_hub_gateway.stderr()
    assert wps_backend.authority + "/client/hubs/lobby_2" in other_hub_gateway.stderr()


async def test_a_web_pubsub_client_against_a_signalr_profile_gets_404(
    signalr_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(ws_url(signalr_gateway), protocols=(RELIABLE,))
    assert info.value.status == 404
    line = await signalr_gateway.log_line(r"GET /client/hubs/chat\?")
    assert "a Web PubSub client needs --profile webpubsub" in line


# -- the official Python Web PubSub client through the gateway ----------------------------------------------------


def _wait(condition: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("protocol_type", [WebPubSubProtocolType.JSON, WebPubSubProtocolType.JSON_RELIABLE])
def test_official_client_joins_sends_and_receives(
    wps_gateway: Gateway, wps_backend: WebPubSubBackend, protocol_type: WebPubSubProtocolType
) -> None:
    """websocket-client, under the official client, refuses a handshake whose subprotocol did not come back."""
    client = WebPubSubClient(client_url(wps_gateway), protocol_type=protocol_type, start_timeout=10, ack_timeout=10)
    received: list[Any] = []
    client.subscribe(CallbackType.GROUP_MESSAGE, lambda e: received.append((e.group, e.data_type, e.data)))
    start = len(wps_backend.handshakes)
    with client:
        client.join_group("room")
        client.send_to_group("room", {"name": "ann", "message": "hi"}, WebPubSubDataType.JSON)
        _wait(lambda: received, "the group message")
    assert received == [("room", "json", {"name": "ann", "message": "hi"})]
    expected = RELIABLE if protocol_type == WebPubSubProtocolType.JSON_RELIABLE else JSON
    assert wps_backend.handshakes[start]["protocol"] == expected


def test_official_client_recovers_through_the_gateway(wps_gateway: Gateway, wps_backend: WebPubSubBackend) -> None:
    """After a drop, the reliable client reconnects with awps_connection_id and awps_reconnection_token: both must
    reach the service unchanged."""
    client = WebPubSubClient(client_url(wps_gateway), start_timeout=10, ack_timeout=10)
    start = len(wps_backend.handshakes)
    with client:
        _wait(lambda: len(wps_backend.handshakes) > start, "the first handshake")
        client.send_event("drop", "now", WebPubSubDataType.TEXT)
        _wait(lambda: len(wps_backend.handshakes) > start + 1, "the recovery handshake", timeout=15)
    first, recovery = wps_backend.handshakes[start], wps_backend.handshakes[start + 1]
    assert first["query"] == f"access_token={TOKEN}"
    # The client builds the recovery URL with urlencode; the service gets exactly that.
    connection_id = f"conn-{start + 1}"
    assert recovery["query"] == urlencode(
        {
            "access_token": unquote(TOKEN),
            "awps_connection_id": connection_id,
            "awps_reconnection_token": RECONNECTION_TOKEN,
        }
    )
    assert recovery["protocol"] == RELIABLE
    text = wps_gateway.wait_for_log("awps_connection_id=" + connection_id)
    assert "awps_reconnection_token=***" in text and "r%2Btok" not in text


# -- a SignalR client against the webpubsub profile ---------------------------------------------------------------


async def test_a_signalr_client_against_the_webpubsub_profile_gets_apims_404(
    tmp_path: Any,
    js_peer: JsPeerFactory,  # noqa: F811
) -> None:
    """The app server (SignalR) hands out a redirect to the gateway, whose webpubsub profile has no SignalR API."""
    stack = start_stack(cwd=tmp_path, gateway_args=("--profile", "webpubsub"))
    try:
        assert stack.gateway is not None
        peer = await js_peer(stack.hub_url, transport="websockets", expect_start=False)
        assert peer.error is not None and "404" in peer.error
        line = await stack.gateway.log_line(r"POST /client/negotiate\?hub=chat")
        assert "404" in line and "a SignalR client needs --profile websocket or sse-lp" in line
    finally:
        stack.stop()


# -- the command line ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--profile", "webpubsub", "--hub", "9lives"), "--hub: '9lives' is not a Web PubSub hub name"),
        (("--profile", "webpubsub", "--hub", "a/b"), "--hub: 'a/b' is not a Web PubSub hub name"),
        (("--profile", "webpubsub", "--hub", "x" * 129), "is not a Web PubSub hub name"),
        (("--profile", "websocket", "--hub", "chat"), "--hub applies to the webpubsub profile only"),
    ],
)
def test_bad_hub_exits_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    process = Process([script("apim-gateway"), "--backend", "http://127.0.0.1:9", "--port", "0", *args])
    code = process.popen.wait(30)
    err = process.stderr()
    process.stop()
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


# -- hostile and oversized input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/client/hubs/chat%2F..%2Fadmin", 404),
        ("/client/hubs/chat/%2e%2e", 404),
        ("/client/hubs/chat/..", 404),
        ("/client/hubs/ch%00at", 404),
        ("/client/hubs/chat%3Fx=1", 404),
        ("//client/hubs/chat", 404),
        ("/client/hubs/" + "c" * 10_000, 400),  # over the request line limit: refused before routing
    ],
)
async def test_hostile_paths_never_reach_the_service(
    wps_gateway: Gateway, wps_backend: WebPubSubBackend, http: aiohttp.ClientSession, path: str, status: int
) -> None:
    before = wps_backend.requests
    async with http.get(url(wps_gateway, f"{path}?access_token={TOKEN}"), headers=UPGRADE) as response:
        assert response.status == status
        if status == 404:
            assert await response.read() == NOT_FOUND
    assert wps_backend.requests == before
    async with http.ws_connect(ws_url(wps_gateway), protocols=(JSON,)) as ws:  # still serving
        assert (await handshake(ws))["path"] == "/client/hubs/chat"


async def test_a_frame_over_the_limit_closes_the_sender_with_1009(
    wps_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """1 MiB by default: Web PubSub itself takes frames up to 1 MB
    (https://learn.microsoft.com/azure/azure-web-pubsub/concept-service-internals#client-message-limit)."""
    async with http.ws_connect(ws_url(wps_gateway), protocols=(JSON,), max_msg_size=0) as ws:
        await handshake(ws)
        await ws.send_str("x" * (1024 * 1024 + 1))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1009), msg
    await wps_gateway.log_line("client sent a message over the size limit: closed with 1009")
    async with http.ws_connect(ws_url(wps_gateway), protocols=(JSON,)) as ws:
        assert (await handshake(ws))["protocol"] == JSON
