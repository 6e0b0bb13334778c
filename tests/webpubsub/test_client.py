"""Our Web PubSub client (``webpubsub.client``) against ``webpubsub-emulator``, with tokens from the official service
SDK (``azure-messaging-webpubsubservice``) and the official Python client as the other peer.

Drops are made by a TCP proxy between client and emulator (``tcp_proxy.py``): it aborts the TCP connections on both
sides, as a network failure does, so neither side sends a close frame.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from azure.messaging.webpubsubclient.aio import WebPubSubClient as OfficialClient
from azure.messaging.webpubsubclient.aio import WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import CallbackType, WebPubSubDataType, WebPubSubProtocolType
from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient

from signalr.client.errors import Unauthorized
from signalr.tokens import mint_token
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator
from tests.support.wps_jspeer import WpsJsPeer
from tests.webpubsub.tcp_proxy import TcpProxy
from webpubsub.client import ClientState, ConnectFailed, SendError, TraceEvent, WebPubSubClient
from webpubsub.subprotocol import (
    JSON_SUBPROTOCOL,
    RELIABLE_JSON_SUBPROTOCOL,
    Connected,
    DataType,
    Disconnected,
    GroupMessage,
    ServerMessage,
)

ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]
PROTOCOLS = [JSON_SUBPROTOCOL, RELIABLE_JSON_SUBPROTOCOL]
WAIT = 10.0


@pytest.fixture(scope="module")
def emulator() -> Iterator[WebPubSubEmulator]:
    with start_webpubsub_emulator() as running:
        yield running


def connection_string(emulator: WebPubSubEmulator, port: int | None = None) -> str:
    """The emulator's connection string, or one whose endpoint is ``port`` (a proxy in front of it)."""
    if port is None:
        return emulator.connection_string
    return f"Endpoint=http://127.0.0.1;Port={port};AccessKey={emulator.access_key};Version=1.0;"


async def access_url(
    emulator: WebPubSubEmulator, user: str | None = "alice", roles: list[str] | None = None, port: int | None = None
) -> str:
    """A client access URL minted by the official service SDK."""
    async with WebPubSubServiceClient.from_connection_string(connection_string(emulator, port), hub="chat") as sdk:
        token = await sdk.get_client_access_token(user_id=user, roles=ROLES if roles is None else roles)
    url = token["url"]
    assert isinstance(url, str)
    return url


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Recorder:
    """Callbacks that record what a client saw, and its trace."""

    def __init__(self) -> None:
        self.group: list[GroupMessage] = []
        self.server: list[ServerMessage] = []
        self.connected: list[Connected] = []
        self.disconnected: list[Disconnected | None] = []
        self.stopped: list[BaseException | None] = []
        self.trace: list[TraceEvent] = []

    def client(self, url: str | Callable[[], Awaitable[str]], **options: Any) -> WebPubSubClient:
        return WebPubSubClient(
            url,
            trace=self.trace.append,
            on_group_message=self.group.append,
            on_server_message=self.server.append,
            on_connected=self.connected.append,
            on_disconnected=self.disconnected.append,
            on_stopped=self.stopped.append,
            **options,
        )

    def data(self) -> list[Any]:
        return [m.data for m in self.group]


@pytest.fixture
async def stopper() -> AsyncIterator[list[WebPubSubClient | OfficialClient]]:
    """Clients appended here are stopped after the test, whatever happens."""
    clients: list[WebPubSubClient | OfficialClient] = []
    yield clients
    for client in clients:
        if isinstance(client, WebPubSubClient):
            await client.stop()
        else:
            await client.close()


@pytest.fixture
async def proxy(emulator: WebPubSubEmulator) -> AsyncIterator[TcpProxy]:
    running = await TcpProxy.start(emulator.port)
    yield running
    await running.close()


# ---------------------------------------------------------------------------------------------------------------------
# Connecting.


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connects_with_a_service_sdk_token(
    emulator: WebPubSubEmulator, protocol: str, stopper: list[Any]
) -> None:
    url = await access_url(emulator, "alice")
    seen = Recorder()
    client = seen.client(url, protocol=protocol)
    stopper.append(client)
    await client.start()
    assert client.is_connected and client.state is ClientState.CONNECTED
    assert client.user_id == "alice" and client.connection_id
    assert client.protocol == protocol
    assert client.connected_url.startswith(f"ws://127.0.0.1:{emulator.port}/client/hubs/chat?access_token=***")
    assert [c.connection_id for c in seen.connected] == [client.connection_id]
    connected = [e.detail for e in seen.trace if e.kind == "receive" and e.detail.startswith("connected")]
    # Only the reliable subprotocol hands out a reconnection token.
    assert ("with a reconnection token" in connected[0]) is (protocol == RELIABLE_JSON_SUBPROTOCOL)
    upgrade = [e for e in seen.trace if e.kind == "connect"]
    assert upgrade[0].status == 101 and protocol in upgrade[0].detail
    await client.stop()
    assert client.state is ClientState.STOPPED and not client.is_connected
    assert seen.stopped == [None]
    assert [e for e in seen.trace if e.kind == "close"][-1].status == 1000


async def test_groups_in_the_token_and_an_anonymous_user(emulator: WebPubSubEmulator, stopper: list[Any]) -> None:
    async with WebPubSubServiceClient.from_connection_string(emulator.connection_string, hub="chat") as sdk:
        token = await sdk.get_client_access_token(groups=["from-token"])
        anonymous = Recorder()
        client = anonymous.client(token["url"])
        stopper.append(client)
        await client.start()
        assert client.user_id is None and client.connection_id
        # A REST send reaches the group's members as a message from the server.
        await sdk.send_to_group("from-token", {"joined": "by the token"}, content_type="application/json")
    await wait_for(lambda: len(anonymous.server) == 1, "the server message to the group")
    assert (anonymous.server[0].data_type, anonymous.server[0].data) == (DataType.JSON, {"joined": "by the token"})
    assert anonymous.group == []


async def test_a_bad_token_is_refused_before_the_upgrade(emulator: WebPubSubEmulator) -> None:
    url = await access_url(emulator)
    forged = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    seen = Recorder()
    with pytest.raises(Unauthorized) as info:
        await seen.client(forged).start()
    assert "401" in str(info.value)
    assert [e.status for e in seen.trace if e.kind == "connect"] == [401]
    assert seen.stopped == []  # start() raised; the client never ran

    audience = f"http://127.0.0.1:{emulator.port}/client/hubs/chat"
    expired = mint_token(emulator.access_key, audience, lifetime=60, now=time.time() - 3600, claims={"sub": "alice"})
    client = WebPubSubClient(f"ws://127.0.0.1:{emulator.port}/client/hubs/chat?access_token={expired}")
    with pytest.raises(Unauthorized):
        await client.start()
    assert client.state is ClientState.STOPPED
    with pytest.raises(Unauthorized):  # and it can be started again (same answer)
        await client.start()


async def test_a_url_provider_that_fails_leaves_the_client_stopped(emulator: WebPubSubEmulator) -> None:
    async def provider() -> str:
        raise RuntimeError("negotiate failed")

    client = WebPubSubClient(provider)
    with pytest.raises(RuntimeError, match="negotiate failed"):
        await client.start()
    assert client.state is ClientState.STOPPED

    client = WebPubSubClient(f"http://127.0.0.1:{emulator.port}/not-a-hub")
    with pytest.raises(ConnectFailed, match="refused with HTTP 404"):
        await client.start()


# ---------------------------------------------------------------------------------------------------------------------
# Groups, acks, roles.


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_group_messages_with_acks_in_every_data_type(
    emulator: WebPubSubEmulator, protocol: str, stopper: list[Any]
) -> None:
    alice, bob = Recorder(), Recorder()
    a = alice.client(await access_url(emulator, "alice"), protocol=protocol)
    b = bob.client(await access_url(emulator, "bob"), protocol=protocol)
    stopper += [a, b]
    await a.start()
    await b.start()
    assert await a.join_group("room") == 1
    assert await b.join_group("room") == 1
    ack_ids = [
        await a.send_to_group("room", {"name": "alice", "message": "hi"}),
        await a.send_to_group("room", "plain text", DataType.TEXT),
        await a.send_to_group("room", bytes(range(256)), DataType.BINARY),
        await a.send_to_group("room", "not to myself", DataType.TEXT, no_echo=True),
    ]
    assert ack_ids == [2, 3, 4, 5]
    await wait_for(lambda: len(bob.group) == 4, "bob's four messages")
    assert bob.data() == [{"name": "alice", "message": "hi"}, "plain text", bytes(range(256)), "not to myself"]
    assert [m.data_type for m in bob.group] == [DataType.JSON, DataType.TEXT, DataType.BINARY, DataType.TEXT]
    assert {(m.group, m.from_user_id) for m in bob.group} == {("room", "alice")}
    sequence_ids = [m.sequence_id for m in bob.group]
    if protocol == RELIABLE_JSON_SUBPROTOCOL:
        assert sequence_ids == sorted(sequence_ids) and None not in sequence_ids
    else:
        assert sequence_ids == [None] * 4
    await wait_for(lambda: len(alice.group) == 3, "alice's echoes")
    assert "not to myself" not in alice.data()  # noEcho

    # After leaving, nothing more arrives; after joining again, it does.
    await b.leave_group("room")
    await a.send_to_group("room", "while bob is out", DataType.TEXT)
    await b.join_group("room")
    await a.send_to_group("room", "bob is back", DataType.TEXT)
    await wait_for(lambda: len(bob.group) == 5, "the message after re-joining")
    assert bob.data()[4] == "bob is back" and "while bob is out" not in bob.data()
    if protocol == RELIABLE_JSON_SUBPROTOCOL:
        await wait_for(
            lambda: any(e.detail.startswith("sequenceAck") for e in bob.trace if e.kind == "send"), "a sequenceAck"
        )
        acked = [int(e.detail.split()[1]) for e in bob.trace if e.kind == "send" and e.detail.startswith("sequenceAck")]
        assert set(acked) <= {m.sequence_id for m in bob.group}
    else:
        assert not any(e.detail.startswith("sequenceAck") for e in bob.trace)


async def test_forbidden_without_the_role(emulator: WebPubSubEmulator, stopper: list[Any]) -> None:
    client = WebPubSubClient(await access_url(emulator, "mallory", roles=["webpubsub.joinLeaveGroup.allowed"]))
    stopper.append(client)
    await client.start()
    await client.join_group("allowed")
    with pytest.raises(SendError) as join:
        await client.join_group("other")
    assert join.value.name == "Forbidden" and join.value.ack_id == 2
    with pytest.raises(SendError) as send:
        await client.send_to_group("allowed", "x", DataType.TEXT)
    assert send.value.name == "Forbidden"
    assert client.is_connected  # a refused request does not end the connection
    await client.leave_group("allowed")


async def test_requests_without_ack(emulator: WebPubSubEmulator, stopper: list[Any]) -> None:
    seen = Recorder()
    client = seen.client(await access_url(emulator))
    stopper.append(client)
    await client.start()
    assert await client.join_group("quiet", ack=False) is None
    assert await client.send_to_group("quiet", "fire and forget", DataType.TEXT, ack=False) is None
    await wait_for(lambda: seen.data() == ["fire and forget"], "the unacknowledged message")
    sent = [e.detail for e in seen.trace if e.kind == "send"]
    assert sent[:2] == ["joinGroup quiet", "sendToGroup quiet (text)"]


# ---------------------------------------------------------------------------------------------------------------------
# The official Python client as the other peer.


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_exchanges_group_messages_with_the_official_client(
    emulator: WebPubSubEmulator, protocol: str, stopper: list[Any]
) -> None:
    ours = Recorder()
    client = ours.client(await access_url(emulator, "ours"), protocol=protocol)
    stopper.append(client)
    official_protocol = (
        WebPubSubProtocolType.JSON_RELIABLE if protocol == RELIABLE_JSON_SUBPROTOCOL else WebPubSubProtocolType.JSON
    )
    official_url = await access_url(emulator, "official")

    async def official_url_provider() -> str:
        return official_url

    official = OfficialClient(
        credential=WebPubSubClientCredential(official_url_provider), protocol_type=official_protocol
    )
    stopper.append(official)
    received: list[tuple[str, Any, str | None]] = []

    async def on_group_message(args: Any) -> None:
        data = bytes(args.data) if args.data_type == WebPubSubDataType.BINARY else args.data
        received.append((args.group, data, args.from_user_id))

    await official.subscribe(CallbackType.GROUP_MESSAGE, on_group_message)
    await official.open()
    await client.start()
    await official.join_group("mixed")
    await client.join_group("mixed")

    await client.send_to_group("mixed", {"from": "ours"}, no_echo=True)
    await client.send_to_group("mixed", "ours as text", DataType.TEXT, no_echo=True)
    await client.send_to_group("mixed", b"\x00ours\xff", DataType.BINARY, no_echo=True)
    await official.send_to_group("mixed", {"from": "official"}, WebPubSubDataType.JSON, no_echo=True)
    await official.send_to_group("mixed", "official as text", WebPubSubDataType.TEXT, no_echo=True)
    await official.send_to_group("mixed", memoryview(b"\x01bin"), WebPubSubDataType.BINARY, no_echo=True)

    await wait_for(lambda: len(received) == 3 and len(ours.group) == 3, "both sides' three messages")
    assert received == [
        ("mixed", {"from": "ours"}, "ours"),
        ("mixed", "ours as text", "ours"),
        ("mixed", b"\x00ours\xff", "ours"),
    ]
    assert [(m.group, m.data, m.from_user_id) for m in ours.group] == [
        ("mixed", {"from": "official"}, "official"),
        ("mixed", "official as text", "official"),
        ("mixed", b"\x01bin", "official"),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_exchanges_group_messages_with_the_official_js_client(
    emulator: WebPubSubEmulator, protocol: str, stopper: list[Any]
) -> None:
    ours = Recorder()
    client = ours.client(await access_url(emulator, "ours"), protocol=protocol)
    stopper.append(client)
    js_protocol = "reliable" if protocol == RELIABLE_JSON_SUBPROTOCOL else "json"
    peer = await WpsJsPeer.start(url=await access_url(emulator, "js"), protocol=js_protocol)
    try:
        await client.start()
        await peer.join_group("both")
        await client.join_group("both")
        await client.send_to_group("both", {"from": "python"}, no_echo=True)
        await client.send_to_group("both", b"\x00py\xff", DataType.BINARY, no_echo=True)
        await peer.send_to_group("both", "from node", "text", no_echo=True)
        first = await peer.next_event("group-message")
        second = await peer.next_event("group-message")
        assert (first["group"], first["fromUserId"], first["dataType"], first["data"]) == (
            "both",
            "ours",
            "json",
            {"from": "python"},
        )
        assert (second["dataType"], second["data"]) == ("binary", "AHB5/w==")
        await wait_for(lambda: len(ours.group) == 1, "the JS client's message")
        message = ours.group[0]
        assert (message.group, message.from_user_id, message.data_type, message.data) == (
            "both",
            "js",
            DataType.TEXT,
            "from node",
        )
    finally:
        await peer.stop()


# ---------------------------------------------------------------------------------------------------------------------
# Headers, trace.


async def test_headers_go_on_the_upgrade_and_secrets_stay_out_of_the_trace(
    emulator: WebPubSubEmulator, proxy: TcpProxy, stopper: list[Any]
) -> None:
    url = await access_url(emulator, "alice", port=proxy.port)
    token = url.split("access_token=", 1)[1]
    seen = Recorder()
    client = seen.client(url, headers={"Ocp-Apim-Subscription-Key": "sub-key-123", "X-Custom": "custom value"})
    stopper.append(client)
    await client.start()
    await client.join_group("trace")
    await client.send_to_group("trace", "visible?", DataType.TEXT)
    await wait_for(lambda: len(seen.group) == 1, "the echo")
    proxy.cut()
    await wait_for(lambda: proxy.accepted == 2 and client.is_connected, "the recovery")
    await client.stop()

    first, recovery = bytes(proxy.requests[0]), bytes(proxy.requests[1])
    for request in (first, recovery):
        head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        assert "\r\nOcp-Apim-Subscription-Key: sub-key-123\r\n" in head
        assert "\r\nX-Custom: custom value\r\n" in head
        assert f"\r\nSec-WebSocket-Protocol: {RELIABLE_JSON_SUBPROTOCOL}\r\n" in head
    line = recovery.split(b"\r\n", 1)[0].decode("latin-1")
    match = re.search(r"awps_reconnection_token=([^& ]+)", line)
    assert (
        match is not None and f"access_token={token}" in line and f"awps_connection_id={client.connection_id}" in line
    )
    reconnection_token = match.group(1)

    text = "\n".join(repr(e) for e in seen.trace)
    for secret in (token, token[:20], reconnection_token, "sub-key-123"):
        assert secret not in text
    assert "visible?" not in text  # data is summarised, never shown
    kinds = [e.kind for e in seen.trace]
    assert {"connect", "send", "receive", "close", "reconnect"} <= set(kinds)
    reconnect = next(e for e in seen.trace if e.kind == "reconnect")
    assert "awps_reconnection_token=***" in reconnect.url and "access_token=***" in reconnect.url
    assert reconnect.host == f"127.0.0.1:{proxy.port}"


# ---------------------------------------------------------------------------------------------------------------------
# Dropped connections.


async def test_a_reliable_connection_resumes_and_gets_every_message_exactly_once_in_order(
    emulator: WebPubSubEmulator, proxy: TcpProxy, stopper: list[Any]
) -> None:
    """Mid-stream, the subscriber's TCP connection is cut and reconnects are refused for a while; the publisher
    keeps publishing, and so does the subscriber (its requests wait for the recovery). After the recovery every
    message has arrived once, in order, on the same connection id."""
    subscriber = Recorder()
    sub = subscriber.client(await access_url(emulator, "sub", port=proxy.port), recovery_interval=0.2)
    publisher = Recorder()
    pub = publisher.client(await access_url(emulator, "pub"))
    stopper += [sub, pub]
    await sub.start()
    await pub.start()
    connection_id = sub.connection_id
    await sub.join_group("stream")
    await pub.join_group("stream")

    total = 300
    cut_at, reopen_at = 100, 200

    in_flight: list[asyncio.Task[int | None]] = []

    async def publish() -> None:
        for n in range(total):
            await pub.send_to_group("stream", n, no_echo=True)
            if n == cut_at:
                # A request of the subscriber reaches the service but its ack is lost with the connection: it is
                # sent again after the recovery with the same ackId, and the service answers Duplicate.
                proxy.discard_replies = True
                send = sub.send_to_group("stream", "in flight", DataType.TEXT, no_echo=True, timeout=20.0)
                in_flight.append(asyncio.create_task(send))
                await wait_for(lambda: "in flight" in publisher.data(), "the request at the service")
                proxy.refuse = True
                assert proxy.cut() == 1
                proxy.discard_replies = False
            if n == reopen_at:
                proxy.refuse = False

    async def subscriber_sends() -> None:
        # Sent while the subscriber is cut off: acknowledged after the recovery, delivered once.
        await wait_for(lambda: proxy.refuse, "the cut")
        for n in range(3):
            await sub.send_to_group("stream", f"from sub {n}", DataType.TEXT, no_echo=True, timeout=20.0)

    await asyncio.wait_for(asyncio.gather(publish(), subscriber_sends()), 60.0)
    await wait_for(lambda: len(subscriber.group) >= total, "every published message", timeout=30.0)
    await wait_for(lambda: len(publisher.group) >= 4, "the subscriber's messages", timeout=30.0)
    in_flight_ack = await asyncio.wait_for(in_flight[0], 20.0)
    await asyncio.sleep(0.5)  # anything duplicated would arrive by now

    assert subscriber.data() == list(range(total))
    sequence_ids = [m.sequence_id for m in subscriber.group]
    assert all(b is not None and a is not None and b > a for a, b in itertools.pairwise(sequence_ids))
    assert publisher.data() == ["in flight", "from sub 0", "from sub 1", "from sub 2"]
    sent_again = [e for e in subscriber.trace if e.kind == "send" and e.detail.startswith("sendToGroup stream")]
    assert [e.detail for e in sent_again].count(f"sendToGroup stream #{in_flight_ack} (text, noEcho)") == 2
    assert any(e.detail.startswith(f"ack #{in_flight_ack} Duplicate") for e in subscriber.trace)
    assert sub.connection_id == connection_id and sub.is_connected
    assert proxy.refused >= 1 and proxy.accepted >= 2
    assert subscriber.disconnected == [] and len(subscriber.connected) == 1  # a recovery, not a new connection
    reconnects = [e for e in subscriber.trace if e.kind == "reconnect"]
    assert reconnects and all("recovering connection" in e.detail for e in reconnects)


async def test_a_plain_json_connection_is_replaced_from_the_url_provider(
    emulator: WebPubSubEmulator, proxy: TcpProxy, stopper: list[Any]
) -> None:
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return await access_url(emulator, "plain", port=proxy.port)

    seen = Recorder()
    client = seen.client(provider, protocol=JSON_SUBPROTOCOL, reconnect_delay=0.2)
    publisher = WebPubSubClient(await access_url(emulator, "pub"))
    stopper += [client, publisher]
    await client.start()
    await publisher.start()
    first_id = client.connection_id
    await client.join_group("plain")
    await publisher.send_to_group("plain", "before", DataType.TEXT)
    await wait_for(lambda: seen.data() == ["before"], "the first message")

    proxy.cut()
    await wait_for(lambda: len(seen.connected) == 2 and client.is_connected, "the new connection")
    assert calls == 2
    assert client.connection_id != first_id
    assert seen.disconnected == [None]
    assert [c.connection_id for c in seen.connected] == [first_id, client.connection_id]
    # The group is joined again on the new connection.
    await wait_for(lambda: any(e.detail == "ack #2 ok" for e in seen.trace), "the re-join ack")
    await publisher.send_to_group("plain", "after", DataType.TEXT)
    await wait_for(lambda: seen.data() == ["before", "after"], "the message on the new connection")
    assert not any("recovering" in e.detail for e in seen.trace if e.kind == "reconnect")


async def test_gives_up_when_the_service_is_gone(
    emulator: WebPubSubEmulator, proxy: TcpProxy, stopper: list[Any]
) -> None:
    seen = Recorder()
    client = seen.client(
        await access_url(emulator, port=proxy.port),
        recovery_timeout=1.0,
        recovery_interval=0.2,
        reconnect_delay=0.1,
        max_reconnect_attempts=2,
    )
    stopper.append(client)
    await client.start()
    pending = asyncio.create_task(client.send_to_group("g", "never", DataType.TEXT, timeout=20.0))
    proxy.refuse = True  # from now on nothing answers at the service's address
    proxy.cut()
    await wait_for(lambda: seen.stopped != [], "the client to give up", timeout=15.0)
    assert client.state is ClientState.STOPPED
    assert "2 reconnect attempts failed" in str(seen.stopped[0])
    assert seen.disconnected == [None]
    recoveries = [e for e in seen.trace if e.kind == "reconnect" and "recovering" in e.detail]
    assert 2 <= len(recoveries) <= 7  # every 0.2 s for 1 s, then new connections: 2 attempts
    assert len([e for e in seen.trace if e.kind == "reconnect" and "URL provider" in e.detail]) == 2
    with pytest.raises(SendError):
        await asyncio.wait_for(pending, 5.0)
