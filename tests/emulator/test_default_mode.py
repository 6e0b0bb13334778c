"""Default and Classic mode: app servers' server connections on ``/server/`` and clients routed through them.

A fake app server (``fake_app_server.py``) speaks the service protocol over a real WebSocket; clients are our own
``HubConnection`` on all three transports, or raw sockets where the exact bytes matter."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from emulator.app import serve
from emulator.server_connections import NO_SERVER_ERROR, SERVER_DROPPED_ERROR
from emulator.server_endpoint import SERVERLESS_REFUSAL
from emulator.settings import EmulatorSettings, SettingsError, new_access_key
from signalr.client import HandshakeFailed, HubConnection, TransportChoice
from signalr.json_protocol import encode
from signalr.messages import Invocation
from signalr.service_protocol import (
    Ack,
    BroadcastData,
    CheckConnectionExistenceWithAck,
    CheckGroupExistenceWithAck,
    CheckUserExistenceWithAck,
    CheckUserInGroupWithAck,
    CloseConnection,
    ConnectionData,
    GroupBroadcastData,
    HandshakeRequest,
    HandshakeResponse,
    JoinGroupWithAck,
    LeaveGroupWithAck,
    MultiConnectionData,
    OpenConnection,
    Ping,
    UserData,
    UserJoinGroupWithAck,
)
from tests.client.inbox import Inbox, connect
from tests.support.stack import EmulatorProcess

from .conftest import HANDSHAKE, Emulator, EmulatorFactory, UpstreamReceiver, records, ws_records
from .fake_app_server import FakeAppServer, server_token, server_url, upgrade_status

TRANSPORTS = [TransportChoice.WEBSOCKETS, TransportChoice.SERVER_SENT_EVENTS, TransportChoice.LONG_POLLING]
IDS = ["ws", "sse", "lp"]
FAST: dict[str, Any] = {"server_ping_interval": 5.0, "server_handshake_timeout": 5.0, "server_timeout": 10.0}


def invocation(target: str, *arguments: Any) -> bytes:
    return encode(Invocation(target, arguments))


@pytest.fixture
async def default_emulator(start_emulator: EmulatorFactory) -> Emulator:
    return await start_emulator(service_mode="default", **FAST)


@pytest.fixture
async def clients() -> AsyncIterator[list[HubConnection]]:
    """HubConnections to stop at the end of the test."""
    started: list[HubConnection] = []
    yield started
    for connection in started:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.stop(), 5)


async def start_client(
    emulator: Emulator,
    server: FakeAppServer | None,
    clients: list[HubConnection],
    *,
    transport: TransportChoice = TransportChoice.WEBSOCKETS,
    claims: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[HubConnection, Inbox, OpenConnection | None]:
    """Start a HubConnection; when ``server`` is given it accepts the client (OpenConnection + handshake answer)."""
    token = emulator.client_token(claims=claims)
    connection, inbox = connect(
        f"{emulator.base}/client/?hub=chat{query}", transport=transport, access_token=token, headers=headers
    )
    clients.append(connection)
    starting = asyncio.create_task(connection.start())
    opened = None
    try:
        if server is not None:
            opened = await server.accept()
        await asyncio.wait_for(asyncio.shield(starting), 5)
    finally:
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
    return connection, inbox, opened


# --- the server endpoint -------------------------------------------------------------------------------------------


async def test_handshake_answer_is_the_exact_service_protocol_bytes(default_emulator: Emulator) -> None:
    server = await FakeAppServer.connect(default_emulator, handshake=False)
    await server.send(HandshakeRequest(version=1, connection_type=0, target="", migration_level=0))
    response = await server.expect(HandshakeResponse)
    assert response.error == "" and response.connection_id is not None
    server_id = response.connection_id.encode()
    assert len(server_id) == 36  # a uuid
    # [2, "", {}, "<id>"]: fixarray 4, type 2, empty string, empty map, str8 of 36 bytes; VarInt length 42.
    assert server.raw[0].startswith(b"\x2a\x94\x02\xa0\x80\xd9\x24" + server_id)
    await server.close()


@pytest.mark.parametrize(
    ("case", "challenge"),
    [
        ("no token", "Bearer"),
        ("wrong key", 'Bearer error="invalid_token", error_description="The signature is invalid"'),
        ("client aud", 'Bearer error="invalid_token", error_description="The audience is invalid"'),
        ("other hub", 'Bearer error="invalid_token", error_description="The audience is invalid"'),
    ],
)
async def test_server_connection_without_a_valid_token_is_401(
    default_emulator: Emulator, case: str, challenge: str
) -> None:
    tokens = {
        "no token": None,
        "wrong key": server_token(default_emulator, key=new_access_key()),
        "client aud": server_token(default_emulator, aud="http://127.0.0.1/client/?hub=chat"),
        "other hub": server_token(default_emulator, hub="other"),
    }
    token = tokens[case]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, response_headers = await upgrade_status(default_emulator, server_url(default_emulator), headers)
    assert status == 401
    assert response_headers["WWW-Authenticate"] == challenge


async def test_server_token_audience_ignores_hub_case_host_and_trailing_slash(default_emulator: Emulator) -> None:
    token = server_token(default_emulator, aud="https://localhost/server?hub=CHAT")
    ws = await default_emulator.session.ws_connect(
        server_url(default_emulator, "Chat").replace("http", "ws", 1), headers={"Authorization": f"Bearer {token}"}
    )
    server = FakeAppServer(ws)
    await server.send(HandshakeRequest())
    assert (await server.expect(HandshakeResponse)).error == ""
    await server.close()


async def test_serverless_mode_refuses_server_connections_with_403(emulator: Emulator) -> None:
    headers = {"Authorization": f"Bearer {server_token(emulator)}"}
    status, text, _ = await upgrade_status(emulator, server_url(emulator), headers)
    assert (status, text) == (403, SERVERLESS_REFUSAL)


async def test_missing_hub_is_400_and_a_plain_get_is_400(default_emulator: Emulator) -> None:
    headers = {"Authorization": f"Bearer {server_token(default_emulator)}"}
    status, text, _ = await upgrade_status(default_emulator, server_url(default_emulator, None), headers)
    assert (status, text) == (400, "The 'hub' query parameter is required.")
    async with default_emulator.session.get(server_url(default_emulator), headers=headers) as response:
        assert response.status == 400


@pytest.mark.parametrize(
    ("send", "reason"),
    [
        (lambda ws: ws.send_bytes(b"\x03\x91\xc1\xc1"), "invalid service message"),
        (lambda ws: ws.send_str("hello"), "text frames are not part of the service protocol"),
    ],
    ids=["garbage", "text"],
)
async def test_bad_frames_close_only_that_server_connection(
    default_emulator: Emulator, send: Callable[[aiohttp.ClientWebSocketResponse], Any], reason: str
) -> None:
    bad = await FakeAppServer.connect(default_emulator)
    good = await FakeAppServer.connect(default_emulator)
    await send(bad.ws)
    code, text = await bad.closed()
    assert code == 1002 and text.startswith(reason)
    await good.send(Ping(("echo", "still-here")))
    assert await good.expect(Ping) == Ping(("echo", "still-here"))
    await good.close()


async def test_a_server_that_never_handshakes_is_closed_after_the_timeout(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(service_mode="default", server_handshake_timeout=0.3)
    server = await FakeAppServer.connect(emulator, handshake=False)
    started = time.monotonic()
    code, text = await server.closed(timeout=3)
    assert code == 1008 and text == "Handshake was not completed in time."
    assert 0.25 <= time.monotonic() - started < 2.5


async def test_a_first_message_other_than_the_handshake_closes(default_emulator: Emulator) -> None:
    server = await FakeAppServer.connect(default_emulator, handshake=False)
    await server.send(Ping())
    code, _ = await server.closed()
    assert code == 1002


async def test_unsupported_protocol_version_gets_an_error_answer_then_close(default_emulator: Emulator) -> None:
    server = await FakeAppServer.connect(default_emulator, handshake=False)
    await server.send(HandshakeRequest(version=2))
    response = await server.expect(HandshakeResponse)
    assert response.error == "Version 2 of the service protocol is not supported; use version 1."
    assert response.connection_id is None
    code, _ = await server.closed()
    assert code == 1002


async def test_pings_every_interval_and_a_silent_server_is_closed(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(service_mode="default", server_ping_interval=0.2, server_timeout=1.0)
    server = await FakeAppServer.connect(emulator)
    arrivals = []
    for _ in range(3):
        assert await server.receive(timeout=2) == Ping()
        arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(0.12 <= gap < 0.6 for gap in gaps), gaps
    # The fake server has sent nothing since its handshake: the silence timeout closes it.
    code, text = await server.closed(timeout=3)
    assert code == 1000 and text == "No message from the app server within 1 s."


async def test_pings_from_the_server_keep_it_alive(start_emulator: EmulatorFactory) -> None:
    emulator = await start_emulator(service_mode="default", server_ping_interval=0.1, server_timeout=0.6)
    server = await FakeAppServer.connect(emulator)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        await server.send(Ping(("status", "0")))
        await asyncio.sleep(0.1)
    assert not server.ws.closed
    await server.close()


async def test_echo_ping_is_answered_and_fin_stops_new_clients(
    default_emulator: Emulator, clients: list[HubConnection]
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    await server.send(Ping(("echo", "1234")))
    assert await server.expect(Ping) == Ping(("echo", "1234"))
    first, first_inbox, _ = await start_client(default_emulator, server, clients)
    await server.send(Ping(("shutdown", "fin:0")))
    assert await server.expect(Ping) == Ping(("shutdown", "finack"))
    # No new client goes to a server connection that said fin; this one was the only one.
    with pytest.raises(HandshakeFailed, match="However app servers are not connected"):
        await start_client(default_emulator, None, clients)
    # The client it already carries stays.
    assert first.connection_id is not None
    await server.send(ConnectionData(first.connection_id, invocation("broadcastMessage", "still", "here")))
    assert await first_inbox.next() == ("broadcastMessage", ("still", "here"))


async def test_a_weak_server_connection_carries_no_clients(
    default_emulator: Emulator, clients: list[HubConnection]
) -> None:
    weak = await FakeAppServer.connect(default_emulator, connection_type=2)
    with pytest.raises(HandshakeFailed, match="However app servers are not connected"):
        await start_client(default_emulator, None, clients)
    await weak.close()


# --- routing clients -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS, ids=IDS)
async def test_open_connection_carries_claims_headers_query_and_the_handshake(
    default_emulator: Emulator, clients: list[HubConnection], transport: TransportChoice
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    claims = {"asrs.s.uid": "alice", "role": ["a", "b"], "level": 3}
    connection, _, opened = await start_client(
        default_emulator,
        server,
        clients,
        transport=transport,
        claims=claims,
        headers={"X-Test": "yes"},
        query="&room=blue",
    )
    assert opened is not None
    assert opened.connection_id == connection.connection_id
    pairs = list(opened.claims)
    assert ("asrs.s.uid", "alice") in pairs
    assert [value for name, value in pairs if name == "role"] == ["a", "b"]
    assert ("level", "3") in pairs
    assert {name for name, _ in pairs} >= {"aud", "exp", "iat", "nbf"}
    headers = {name.lower(): values for name, values in opened.headers.items()}
    assert headers["x-test"] == ("yes",)
    assert "authorization" not in headers and "cookie" not in headers
    assert opened.query_string == "?hub=chat&room=blue"
    assert opened.ext == {3: "json"}
    assert opened.protocol == "json"


@pytest.mark.parametrize("transport", TRANSPORTS, ids=IDS)
async def test_invocations_travel_as_connection_data_and_answers_come_back(
    default_emulator: Emulator, clients: list[HubConnection], transport: TransportChoice
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    connection, inbox, opened = await start_client(default_emulator, server, clients, transport=transport)
    assert opened is not None
    cid = opened.connection_id
    answer = asyncio.create_task(connection.invoke("echo", "hi"))
    data = await server.expect(ConnectionData)
    assert data == ConnectionData(cid, b'{"type":1,"invocationId":"0","target":"echo","arguments":["hi"]}\x1e')
    await server.send(ConnectionData(cid, b'{"type":3,"invocationId":"0","result":"hi!"}\x1e'))
    assert await asyncio.wait_for(answer, 5) == "hi!"
    await server.send(ConnectionData(cid, invocation("broadcastMessage", "server", "push")))
    assert await inbox.next() == ("broadcastMessage", ("server", "push"))


async def test_the_handshake_and_what_follows_it_in_one_frame_arrive_as_one_connection_data(
    default_emulator: Emulator,
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    ws, cid = await default_emulator.connect_ws()
    frame = HANDSHAKE + b'{"type":1,"target":"echo","arguments":["x"]}\x1e'
    await ws.send_str(frame.decode())
    opened = await server.expect(OpenConnection)
    assert opened.connection_id == cid
    assert await server.expect(ConnectionData) == ConnectionData(cid, frame)
    # The emulator does not answer the handshake itself: the app server does, and its bytes arrive as sent.
    await server.send(ConnectionData(cid, b'{}\x1e{"type":6}\x1e'))
    assert await ws_records(ws) == [{}, {"type": 6}]
    await ws.close()


async def test_an_app_server_handshake_error_reaches_the_client_which_is_closed(
    default_emulator: Emulator,
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    ws, cid = await default_emulator.connect_ws()
    await ws.send_str(HANDSHAKE.decode())
    await server.expect(OpenConnection)
    await server.expect(ConnectionData)
    await server.send(ConnectionData(cid, b'{"error":"nope"}\x1e'))
    assert await ws_records(ws) == [{"error": "nope"}]
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    closed = await server.expect(CloseConnection)
    assert closed.connection_id == cid and closed.error == "nope"


async def test_default_mode_without_an_app_server_refuses_the_handshake(
    default_emulator: Emulator, clients: list[HubConnection]
) -> None:
    ws, _ = await default_emulator.connect_ws()
    await ws.send_str(HANDSHAKE.decode())
    message = await ws.receive(timeout=5)
    assert message.data == '{"error":"' + NO_SERVER_ERROR + '"}\x1e'
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    with pytest.raises(HandshakeFailed) as caught:
        await start_client(default_emulator, None, clients, transport=TransportChoice.LONG_POLLING)
    assert NO_SERVER_ERROR in str(caught.value)


async def test_an_unknown_protocol_gets_the_same_error_as_in_serverless_mode(default_emulator: Emulator) -> None:
    server = await FakeAppServer.connect(default_emulator)
    ws, _ = await default_emulator.connect_ws()
    await ws.send_str('{"protocol":"xml","version":1}\x1e')
    assert await ws_records(ws) == [{"error": "The protocol 'xml' is not supported."}]
    with pytest.raises(TimeoutError):
        await server.expect(OpenConnection, timeout=0.3)


async def test_classic_mode_serves_clients_itself_without_a_server_and_routes_them_with_one(
    upstream_receiver: UpstreamReceiver, start_emulator: EmulatorFactory, clients: list[HubConnection]
) -> None:
    emulator = await start_emulator(service_mode="classic", **FAST, **upstream_receiver.emulator_settings)
    local, local_id = await emulator.open_ws()  # answered by the emulator: {}
    await upstream_receiver.event("connected", local_id)
    server = await FakeAppServer.connect(emulator)
    routed, inbox, opened = await start_client(emulator, server, clients)
    assert opened is not None and opened.connection_id == routed.connection_id
    # The app server reaches every member of the hub, served locally or not; the upstream hears nothing of routed.
    await server.send(BroadcastData((), {"json": invocation("broadcastMessage", "all", "1")}))
    assert await inbox.next() == ("broadcastMessage", ("all", "1"))
    assert records((await local.receive(timeout=5)).data) == [
        {"type": 1, "target": "broadcastMessage", "arguments": ["all", "1"]}
    ]
    assert all(call.headers.get("x-asrs-connection-id") != routed.connection_id for call in upstream_receiver.calls)
    await local.close()


async def test_messages_groups_users_and_acks_reach_the_right_clients(
    default_emulator: Emulator, clients: list[HubConnection]
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    alice, alice_inbox, _ = await start_client(default_emulator, server, clients, claims={"asrs.s.uid": "alice"})
    bob, bob_inbox, _ = await start_client(
        default_emulator, server, clients, claims={"asrs.s.uid": "bob"}, transport=TransportChoice.LONG_POLLING
    )
    a, b = alice.connection_id, bob.connection_id
    assert a and b

    def payloads(*arguments: str, key: str = "json") -> dict[str, bytes]:
        return {key: invocation("broadcastMessage", *arguments), "messagepack": b"\x90"}

    await server.send(JoinGroupWithAck(a, "room", 1), JoinGroupWithAck("nobody", "room", 2))
    assert await server.expect(Ack) == Ack(1, 1)
    assert await server.expect(Ack) == Ack(2, 2)
    await server.send(GroupBroadcastData("room", (), payloads("group", "1")))
    assert await alice_inbox.next() == ("broadcastMessage", ("group", "1"))
    await server.send(UserData("bob", payloads("user", "2", key="JSON")))  # protocol keys match in any case
    assert await bob_inbox.next() == ("broadcastMessage", ("user", "2"))
    await server.send(BroadcastData((a,), payloads("all-but-alice", "3")))
    assert await bob_inbox.next() == ("broadcastMessage", ("all-but-alice", "3"))
    await server.send(
        UserJoinGroupWithAck("bob", "room", 3),
        CheckUserInGroupWithAck("bob", "room", 4),
        CheckGroupExistenceWithAck("room", 5),
        CheckGroupExistenceWithAck("empty", 6),
        CheckUserExistenceWithAck("carol", 7),
        CheckConnectionExistenceWithAck(b, 8),
        LeaveGroupWithAck(a, "room", 9),
    )
    assert [await server.expect(Ack) for _ in range(7)] == [
        Ack(3, 1),
        Ack(4, 1),
        Ack(5, 1),
        Ack(6, 2),
        Ack(7, 2),
        Ack(8, 1),
        Ack(9, 1),
    ]
    # bob is in "room" as a user, alice left it: only bob gets the group message; excluded_users spares bob.
    await server.send(GroupBroadcastData("room", (), payloads("group", "4"), excluded_users=("bob",)))
    await server.send(GroupBroadcastData("room", (), payloads("group", "5")))
    await server.send(MultiConnectionData((a, b, "unknown"), payloads("both", "6")))
    assert await bob_inbox.next() == ("broadcastMessage", ("group", "5"))
    assert await bob_inbox.next() == ("broadcastMessage", ("both", "6"))
    assert await alice_inbox.next() == ("broadcastMessage", ("both", "6"))
    assert alice_inbox.messages.empty() and bob_inbox.messages.empty()


async def test_one_payload_object_is_shared_by_every_recipient(
    default_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    sockets, ids = [], []
    for _ in range(2):
        ws, cid = await default_emulator.connect_ws()
        await ws.send_str(HANDSHAKE.decode())
        await server.accept()
        assert await ws_records(ws) == [{}]
        sockets.append(ws)
        ids.append(cid)
    assert default_emulator.running is not None
    hub = default_emulator.running.service.find_hub("chat")
    assert hub is not None
    queued: list[bytes] = []
    for cid in ids:
        connection = hub.connections[cid]
        original = connection.send

        def spy(record: bytes, original: Callable[[bytes], bool] = original) -> bool:
            queued.append(record)
            return original(record)

        monkeypatch.setattr(connection, "send", spy)
    await server.send(BroadcastData((), {"json": invocation("broadcastMessage", "x", "y")}))
    for ws in sockets:
        assert await ws_records(ws) == [{"type": 1, "target": "broadcastMessage", "arguments": ["x", "y"]}]
    assert len(queued) == 2 and queued[0] is queued[1]
    for ws in sockets:
        await ws.close()


@pytest.mark.parametrize("transport", TRANSPORTS, ids=IDS)
async def test_close_connection_from_the_server_ends_the_client_after_its_data(
    default_emulator: Emulator, clients: list[HubConnection], transport: TransportChoice
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    _, inbox, opened = await start_client(default_emulator, server, clients, transport=transport)
    assert opened is not None
    cid = opened.connection_id
    await server.send(
        ConnectionData(cid, invocation("broadcastMessage", "last", "words") + b'{"type":7,"error":"kicked"}\x1e'),
        CloseConnection(cid, "kicked"),
    )
    assert await inbox.next() == ("broadcastMessage", ("last", "words"))
    error = await inbox.next_close()
    assert error is not None and "kicked" in str(error)
    # No CloseConnection comes back for a client the server closed itself.
    with pytest.raises(TimeoutError):
        await server.expect(CloseConnection, timeout=0.5)


@pytest.mark.parametrize("transport", TRANSPORTS, ids=IDS)
async def test_a_client_that_stops_is_announced_with_close_connection(
    default_emulator: Emulator, clients: list[HubConnection], transport: TransportChoice
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    connection, _, opened = await start_client(default_emulator, server, clients, transport=transport)
    assert opened is not None
    await connection.stop()
    data = await server.expect(ConnectionData)
    assert data.payload == b'{"type":7}\x1e'
    closed = await server.expect(CloseConnection)
    assert closed.connection_id == opened.connection_id and closed.error == ""


async def test_a_dropped_server_connection_closes_its_clients_with_a_close_message(
    default_emulator: Emulator,
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    ws, _ = await default_emulator.connect_ws()
    await ws.send_str(HANDSHAKE.decode())
    await server.accept()
    assert await ws_records(ws) == [{}]
    await server.close()
    message = await ws.receive(timeout=5)
    assert message.data == (
        '{"type":7,"error":"Server connection dropped: the app server carrying this connection went away.",'
        '"allowReconnect":true}\x1e'
    )
    assert SERVER_DROPPED_ERROR in message.data
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1000


async def test_clients_go_to_the_least_busy_server_connection_and_stay_there(
    default_emulator: Emulator, clients: list[HubConnection]
) -> None:
    first = await FakeAppServer.connect(default_emulator, server_id="server-1")
    second = await FakeAppServer.connect(default_emulator, server_id="server-2")
    one, _, _ = await start_client(default_emulator, first, clients)  # a tie: the first server connection
    two, _, _ = await start_client(default_emulator, second, clients)  # the one with fewer clients
    await one.send("echo", "sticky")
    assert (await first.expect(ConnectionData)).connection_id == one.connection_id
    two_id = two.connection_id
    await two.stop()
    assert (await second.expect(ConnectionData)).payload == b'{"type":7}\x1e'
    assert (await second.expect(CloseConnection)).connection_id == two_id
    three, _, _ = await start_client(default_emulator, second, clients)  # second is empty again
    await three.send("echo", "here")
    data = await second.expect(ConnectionData)
    assert data.connection_id == three.connection_id
    with pytest.raises(TimeoutError):
        await first.expect(OpenConnection, timeout=0.3)


async def test_rest_broadcast_and_existence_reach_routed_clients(
    default_emulator: Emulator, clients: list[HubConnection]
) -> None:
    server = await FakeAppServer.connect(default_emulator)
    connection, inbox, _ = await start_client(default_emulator, server, clients, transport=TransportChoice.LONG_POLLING)
    await default_emulator.broadcast("broadcastMessage", "rest", "hello")
    assert await inbox.next() == ("broadcastMessage", ("rest", "hello"))
    path = f"/api/hubs/chat/connections/{connection.connection_id}?api-version=2022-06-01"
    status, _, _ = await default_emulator.rest("HEAD", path)
    assert status == 200


async def test_shutdown_closes_clients_then_server_connections_with_1000(session: aiohttp.ClientSession) -> None:
    settings = replace(EmulatorSettings(host="127.0.0.1", port=0), service_mode="default", **FAST)
    stack = contextlib.AsyncExitStack()
    running = await stack.enter_async_context(serve(settings))
    try:
        emulator = Emulator(running.url, settings.access_key, session, running)
        server = await FakeAppServer.connect(emulator)
        ws, cid = await emulator.connect_ws()
        await ws.send_str(HANDSHAKE.decode())
        await server.accept()
        assert await ws_records(ws) == [{}]
        stopping = asyncio.create_task(stack.aclose())
        assert records((await ws.receive(timeout=5)).data) == [{"type": 7, "error": "The service is shutting down."}]
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        closed = await server.expect(CloseConnection)
        assert (closed.connection_id, closed.error) == (cid, "The service is shutting down.")
        code, _ = await server.closed()
        assert code == 1000
        await asyncio.wait_for(stopping, 10)
    finally:
        await stack.aclose()


# --- settings and the command line ---------------------------------------------------------------------------------


def test_server_timers_default_to_the_services_and_have_environment_knobs() -> None:
    settings = EmulatorSettings()
    assert settings.service_mode == "serverless"
    assert (settings.server_ping_interval, settings.server_handshake_timeout, settings.server_timeout) == (5, 15, 30)
    assert settings.max_service_message_size == 1024 * 1024
    tuned = settings.from_env(
        {
            "SIGNALR_EMULATOR_SERVER_PING_INTERVAL": "0.5",
            "SIGNALR_EMULATOR_SERVER_HANDSHAKE_TIMEOUT": "1",
            "SIGNALR_EMULATOR_SERVER_TIMEOUT": "2",
            "SIGNALR_EMULATOR_MAX_SERVICE_MESSAGE": "4096",
        }
    )
    assert (tuned.server_ping_interval, tuned.server_handshake_timeout, tuned.server_timeout) == (0.5, 1, 2)
    assert tuned.max_service_message_size == 4096
    with pytest.raises(SettingsError, match="--service-mode must be one of serverless, default, classic"):
        replace(settings, service_mode="proxy").validate()


async def test_the_command_line_serves_default_mode_and_logs_it(
    run_emulator: Callable[..., EmulatorProcess], session: aiohttp.ClientSession
) -> None:
    process = run_emulator("--service-mode", "default", "--access-key", "key-for-default-mode-tests-0123456789")
    await process.process.stderr_line(r"mode: default")
    emulator = Emulator(process.base, process.access_key, session)
    server = await FakeAppServer.connect(emulator)
    await server.send(Ping(("echo", "cli")))
    assert await server.expect(Ping) == Ping(("echo", "cli"))
    await server.close()
