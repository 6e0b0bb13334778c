"""The official JavaScript Web PubSub client (``@azure/web-pubsub-client`` under Node) against ``webpubsub-emulator``,
directly and through ``apim-gateway --profile webpubsub``, in both JSON subprotocols.

Client access URLs are minted by the official service SDK (``azure-messaging-webpubsubservice``) from the emulator's
connection string, as an app server mints them; for the gateway only the URL's scheme and host change (the token's
audience stays the service's, as with APIM in front of Web PubSub). Server-side sends use the same SDK. So both ends of
every exchange are code nobody here wrote; the assertions are on what the Node client reports.
Subprotocols: https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-webpubsub-subprotocol and
https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-reliable-webpubsub-subprotocol
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient

from tests.support.processes import free_port
from tests.support.stack import Gateway, start_gateway
from tests.support.wps_emulator import start_webpubsub_emulator
from tests.support.wps_jspeer import AckFailed, WpsJsPeer
from tests.support.wps_server import start_webpubsub_chat_server

HUB = "chat"
CHAT_ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]
PROTOCOLS = ["json", "reliable"]
ROUTES = ["direct", "gateway"]


class Service:
    """The emulator, a gateway in front of it, and where a client goes on each route."""

    def __init__(self, emulator: Any, gateway: Gateway) -> None:
        self.emulator = emulator
        self.gateway = gateway

    def client_url(self, url: str, route: str) -> str:
        """``url`` (minted for the service) as a client on ``route`` uses it: through the gateway only its scheme and
        host change."""
        if route == "direct":
            return url
        parts = urlsplit(url)
        return urlunsplit(("ws", self.gateway.host, parts.path, parts.query, ""))


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with start_webpubsub_emulator() as emulator:
        gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub")
        try:
            yield Service(emulator, gateway)
        finally:
            gateway.stop()


@pytest.fixture
async def rest(service: Service) -> AsyncIterator[WebPubSubServiceClient]:
    """The official service SDK on the emulator's connection string (tokens and server-side sends)."""
    client = WebPubSubServiceClient.from_connection_string(service.emulator.connection_string, hub=HUB)
    async with client:
        yield client


@pytest.fixture
async def peers() -> AsyncIterator[list[WpsJsPeer]]:
    """Peers started by a test; all stopped at teardown."""
    started: list[WpsJsPeer] = []
    yield started
    for peer in started:
        await peer.stop()


async def start_peer(peers: list[WpsJsPeer], url: str | None, **kwargs: Any) -> WpsJsPeer:
    """A started peer whose first ``connected`` event (it started on it) is taken already."""
    peer = await WpsJsPeer.start(url, **kwargs)
    peers.append(peer)
    if peer.error is None:
        connected = await peer.next_event("connected")
        assert connected["connectionId"] == peer.connection_id
    return peer


async def access_url(rest: WebPubSubServiceClient, user: str, roles: list[str] | None = None) -> str:
    token = await rest.get_client_access_token(user_id=user, roles=roles if roles is not None else CHAT_ROLES)
    url: str = token["url"]
    return url


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_groups_and_server_messages(
    service: Service, rest: WebPubSubServiceClient, peers: list[WpsJsPeer], protocol: str, route: str
) -> None:
    alice_url = service.client_url(await access_url(rest, "alice"), route)
    bob_url = service.client_url(await access_url(rest, "bob"), route)
    alice = await start_peer(peers, alice_url, protocol=protocol)
    bob = await start_peer(peers, bob_url, protocol=protocol)
    assert (alice.user_id, bob.user_id) == ("alice", "bob")
    assert alice.connection_id and bob.connection_id and alice.connection_id != bob.connection_id
    host = service.gateway.host if route == "gateway" else f"127.0.0.1:{service.emulator.port}"
    assert alice.url == f"ws://{host}/client/hubs/{HUB}?access_token=***"

    room = unique("room")
    assert (await alice.join_group(room))["isDuplicated"] is False
    await bob.join_group(room)

    # JSON to the group reaches both members, the sender too; the reliable subprotocol numbers every message.
    await alice.send_to_group(room, {"text": "hi", "n": 1})
    for peer in (alice, bob):
        got = await peer.next_event("group-message")
        assert (got["group"], got["fromUserId"], got["dataType"], got["data"]) == (
            room,
            "alice",
            "json",
            {"text": "hi", "n": 1},
        )
        if protocol == "reliable":
            assert isinstance(got["sequenceId"], int) and got["sequenceId"] >= 1
        else:
            assert got["sequenceId"] is None

    # noEcho: not back to the sender. Text and binary keep their type and bytes.
    await alice.send_to_group(room, "quiet", "text", no_echo=True)
    got = await bob.next_event("group-message")
    assert (got["dataType"], got["data"]) == ("text", "quiet")
    raw = base64.b64encode(b"\x00\xff binary \xfe").decode()
    await bob.send_to_group(room, raw, "binary")
    got = await alice.next_event("group-message")
    assert (got["fromUserId"], got["dataType"], got["data"]) == ("bob", "binary", raw)  # so no "quiet" came first
    assert (await bob.next_event("group-message"))["data"] == raw

    # The service SDK's sends: to all, to one user (text), to one connection.
    await rest.send_to_all({"from": "server"}, content_type="application/json")
    for peer in (alice, bob):
        got = await peer.next_event("server-message")
        assert (got["dataType"], got["data"]) == ("json", {"from": "server"})
    await rest.send_to_user("bob", "just bob", content_type="text/plain")
    await rest.send_to_connection(str(alice.connection_id), "just alice", content_type="text/plain")
    assert (await bob.next_event("server-message"))["data"] == "just bob"
    assert (await alice.next_event("server-message"))["data"] == "just alice"

    # After leaving, nothing more from the group; the next thing bob gets is the server's marker.
    await bob.leave_group(room)
    await alice.send_to_group(room, "bob left", "text")
    assert (await alice.next_event("group-message"))["data"] == "bob left"
    await rest.send_to_all("marker", content_type="text/plain")
    assert (await bob.next_event())["data"] == "marker"
    assert (await alice.next_event("server-message"))["data"] == "marker"
    assert alice.pending() == [] and bob.pending() == []

    if route == "gateway":
        line = await service.gateway.log_line(rf"/client/hubs/{HUB}\b")
        assert "access_token=***" in line or "access_token" not in line
        assert alice_url.split("access_token=")[1] not in service.gateway.stderr()


@pytest.mark.parametrize("route", ROUTES)
async def test_requests_without_the_roles_are_forbidden(
    service: Service, rest: WebPubSubServiceClient, peers: list[WpsJsPeer], route: str
) -> None:
    peer = await start_peer(peers, service.client_url(await access_url(rest, "norole", roles=[]), route))
    with pytest.raises(AckFailed) as joined:
        await peer.join_group("room")
    assert joined.value.name == "Forbidden"
    with pytest.raises(AckFailed) as sent:
        await peer.send_to_group("room", "hello", "text")
    assert sent.value.name == "Forbidden"
    # The connection stays: the service still reaches it.
    await rest.send_to_user("norole", "still here", content_type="text/plain")
    assert (await peer.next_event("server-message"))["data"] == "still here"


def token(key: str, audience: str, *, expires_in: float) -> str:
    now = int(time.time())
    claims = {"aud": audience, "iat": now - 60, "exp": int(now + expires_in), "sub": "mallory"}
    return jwt.encode(claims, key, algorithm="HS256")


async def test_a_gateway_subscription_key_in_the_query(
    service: Service, rest: WebPubSubServiceClient, peers: list[WpsJsPeer]
) -> None:
    """APIM's subscription key as the ``subscription-key`` query (the JS client cannot set WebSocket headers): without
    it or with a wrong one the gateway refuses the upgrade (401), with it the client chats; the key is never logged."""
    key = "WpsNodeKey0000DoNotLog1111"
    gateway = start_gateway(service.emulator.endpoint, "--profile", "webpubsub", "--subscription-key", key)
    try:
        url = urlsplit(await access_url(rest, "alice"))
        base = urlunsplit(("ws", gateway.host, url.path, url.query, ""))
        for query in ("", "&subscription-key=wrong-key-0000"):
            refused = await start_peer(peers, base + query, expect_start=False)
            assert refused.error is not None and "401" in refused.error, refused.error
        peer = await start_peer(peers, f"{base}&subscription-key={key}")
        assert peer.url is not None and "subscription-key=***" in peer.url
        await rest.send_to_user("alice", "through the keyed gateway", content_type="text/plain")
        assert (await peer.next_event("server-message"))["data"] == "through the keyed gateway"
        await peer.stop()
        assert key not in peer.stderr()
        await gateway.log_line(r"subscription-key=\*\*\*")
        assert key not in gateway.stderr()
    finally:
        gateway.stop()


@pytest.mark.parametrize("route", ROUTES)
async def test_a_bad_token_is_refused_before_the_upgrade(
    service: Service, rest: WebPubSubServiceClient, peers: list[WpsJsPeer], route: str
) -> None:
    good = await access_url(rest, "alice")
    base = good.split("?")[0]
    audience = base.replace("ws://", "http://", 1)
    bad = {
        "expired": token(service.emulator.access_key, audience, expires_in=-30),
        "wrong key": token("another-key-" + "x" * 32, audience, expires_in=300),
        "garbage": "not-a-jwt",
    }
    for what, value in bad.items():
        peer = await start_peer(peers, service.client_url(f"{base}?access_token={value}", route), expect_start=False)
        assert peer.error is not None, what
        assert "401" in peer.error, (what, peer.error)
    no_token = await start_peer(peers, service.client_url(base, route), expect_start=False)
    assert no_token.error is not None and "401" in no_token.error
    # And it goes on serving.
    peer = await start_peer(peers, service.client_url(good, route))
    assert peer.user_id == "alice"


@pytest.mark.parametrize("route", ["direct", "gateway"])
async def test_a_reliable_connection_recovers_after_a_drop_without_loss_or_duplicates(
    service: Service, rest: WebPubSubServiceClient, peers: list[WpsJsPeer], route: str
) -> None:
    room = unique("reliable")
    alice = await start_peer(peers, service.client_url(await access_url(rest, "alice"), route), protocol="reliable")
    bob = await start_peer(peers, service.client_url(await access_url(rest, "bob"), route), protocol="json")
    await alice.join_group(room)
    await bob.join_group(room)
    await bob.send_to_group(room, 0)
    assert (await alice.next_event("group-message"))["data"] == 0

    alice.drop()  # as a network failure: no close frame
    for n in range(1, 6):
        await bob.send_to_group(room, n)
    got = [(await alice.next_event("group-message", timeout=20))["data"] for _ in range(5)]
    assert got == [1, 2, 3, 4, 5]
    # Recovered, not reconnected: the same connection (no second "connected"), still in the group.
    await bob.send_to_group(room, "after")
    assert (await alice.next_event("group-message"))["data"] == "after"
    assert [e["event"] for e in alice.history if e["event"] in ("connected", "disconnected")] == ["connected"]
    assert alice.pending("group-message") == []


@pytest.mark.parametrize("route", ROUTES)
async def test_a_json_connection_reconnects_as_a_new_connection_and_rejoins(
    service: Service, rest: WebPubSubServiceClient, peers: list[WpsJsPeer], route: str
) -> None:
    room = unique("plain")
    alice = await start_peer(peers, service.client_url(await access_url(rest, "alice"), route), protocol="json")
    bob = await start_peer(peers, service.client_url(await access_url(rest, "bob"), route), protocol="json")
    await alice.join_group(room)
    await bob.join_group(room)
    first = alice.connection_id

    alice.drop()
    assert (await alice.next_event("disconnected", timeout=10))["connectionId"] == first
    again = await alice.next_event("connected", timeout=20)
    assert again["connectionId"] != first and again["userId"] == "alice"
    # The client joined the group again on its new connection (autoRejoinGroups) before saying "connected".
    await bob.send_to_group(room, "welcome back")
    assert (await alice.next_event("group-message"))["data"] == "welcome back"


@pytest.fixture(scope="module")
def chat(service: Service) -> Iterator[dict[str, Any]]:
    """``chat-server --service webpubsub`` as the event handler of its own emulator, clients sent through a gateway."""
    server_port = free_port()
    with start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{server_port}/eventhandler") as emulator:
        gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub")
        try:
            server = start_webpubsub_chat_server(
                f"{emulator.connection_string}ClientEndpoint={gateway.url};", port=server_port
            )
            try:
                yield {"emulator": emulator, "gateway": gateway, "server": server}
            finally:
                server.stop()
        finally:
            gateway.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_chat_events_through_the_app_server(chat: dict[str, Any], peers: list[WpsJsPeer], protocol: str) -> None:
    negotiate = chat["server"].url.rstrip("/") + f"/{HUB}/negotiate"
    alice = await start_peer(peers, None, negotiate=negotiate + "?id=alice", protocol=protocol)
    bob = await start_peer(peers, None, negotiate=negotiate + "?id=bob", protocol=protocol)
    gateway: Gateway = chat["gateway"]
    assert alice.url is not None and alice.url.startswith(f"ws://{gateway.host}/client/hubs/{HUB}?")
    assert alice.user_id == "alice"

    # broadcastMessage reaches everyone, echo only the caller; both as the server's {name, message, target}.
    await alice.send_event("broadcastMessage", {"name": "alice", "message": "hello all"})
    for peer in (alice, bob):
        got = await peer.next_event("server-message")
        assert (got["dataType"], got["data"]) == (
            "json",
            {"name": "alice", "message": "hello all", "target": "broadcastMessage"},
        )
    await bob.send_event("echo", {"name": "bob", "message": "just me"})
    assert (await bob.next_data()) == {"name": "bob", "message": "just me (echo from server)", "target": "echo"}
    await bob.send_event("broadcastMessage", {"name": "bob", "message": "marker"})
    assert (await alice.next_data())["message"] == "marker"  # no echo of bob's came first
    assert (await bob.next_data())["message"] == "marker"
    assert alice.pending() == [] and bob.pending() == []
    await gateway.log_line(rf"/client/hubs/{HUB}\b")


async def test_the_peer_names_a_negotiate_answer_it_cannot_use(peers: list[WpsJsPeer]) -> None:
    """The peer's own negotiate step against answers that are not Web PubSub's: each start fails with what came."""

    async def answer(request: web.Request) -> web.Response:
        kind = request.query.get("kind")
        if kind == "error":
            return web.json_response({"error": "Invalid user id"}, status=400)
        if kind == "html":
            return web.Response(text="<html>not json</html>", content_type="text/html")
        # A SignalR app server's answer: a redirect to the service.
        return web.json_response({"url": "http://127.0.0.1:1/client/?hub=chat", "accessToken": "eyJhbGciOi.x.y"})

    app = web.Application()
    app.router.add_post("/chat/negotiate", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        base = f"http://127.0.0.1:{server.port}/chat/negotiate"
        expected = {
            "error": 'answered 400: {"error": "Invalid user id"}',
            "html": "answered with something that is not JSON: <html>not json</html>",
            "signalr": 'did not answer for Web PubSub: ["url","accessToken"]',
        }
        for kind, text in expected.items():
            peer = await start_peer(peers, None, negotiate=f"{base}?kind={kind}", expect_start=False)
            assert peer.error is not None and text in peer.error, (kind, peer.error)
            assert "eyJhbGciOi" not in peer.stderr()
