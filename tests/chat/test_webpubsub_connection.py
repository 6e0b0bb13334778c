"""The chat's Web PubSub connection: the adapter over the client (a stand-in here), the client access URLs from the
app server's negotiate (a real HTTP server on 127.0.0.1), and the connection that picks the service from the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from chat.service_connection import ServiceConnection, webpubsub_answer
from chat.webpubsub_connection import ClientAccessUrls, WebPubSubConnection
from signalr.client import ConnectionState, NegotiateFailed, SignalRClientError, TraceEvent
from signalr.negotiate import WebPubSubAnswer
from webpubsub.subprotocol import DataType, ServerMessage

from .fake_webpubsub import (
    TOKEN,
    AppServer,
    FakeSendError,
    FakeWebPubSub,
    client_access_url,
    negotiate_server,
    webpubsub_body,
)

KEY = "subscription-key-0123456789"


def access_url(n: int = 1) -> str:
    return client_access_url(n)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@dataclass
class Recorder:
    states: list[tuple[ConnectionState, ConnectionState]] = field(default_factory=list)
    closes: list[Exception | None] = field(default_factory=list)
    messages: list[tuple[str, Any, Any]] = field(default_factory=list)
    trace: list[TraceEvent] = field(default_factory=list)

    def attach(self, connection: Any) -> None:
        for target in ("broadcastMessage", "echo"):
            connection.on(target, partial(self.message, target))
        connection.on_state_change(lambda old, new: self.states.append((old, new)))
        connection.on_close(self.closes.append)

    def message(self, target: str, name: Any, text: Any) -> None:
        self.messages.append((target, name, text))


# -- WebPubSubConnection over the client --------------------------------------------------------------------------


async def test_start_invoke_receive_and_stop() -> None:
    service, seen = FakeWebPubSub(), Recorder()
    connection = WebPubSubConnection(access_url(), client_factory=service.factory)
    seen.attach(connection)
    assert connection.state is ConnectionState.DISCONNECTED and connection.transport_name is None
    await connection.start()
    assert connection.state is ConnectionState.CONNECTED
    assert seen.states == [
        (ConnectionState.DISCONNECTED, ConnectionState.CONNECTING),
        (ConnectionState.CONNECTING, ConnectionState.CONNECTED),
    ]
    assert connection.connection_id == "wps-1"
    assert connection.transport_name == "Web PubSub"
    assert connection.webpubsub_protocol == "json.reliable.webpubsub.azure.v1"
    assert connection.connected_url == "ws://127.0.0.1:9/client/hubs/chat"

    await connection.invoke("broadcastMessage", "alice", "hi")
    await connection.invoke("echo", "alice", "ping")
    # Each hub method is a user event with JSON {"name", "message"}, sent with an ack.
    assert service.events == [
        ("broadcastMessage", {"name": "alice", "message": "hi"}, DataType.JSON, True),
        ("echo", {"name": "alice", "message": "ping"}, DataType.JSON, True),
    ]
    assert connection.last_rtt_ms is not None
    await settle()
    assert seen.messages == [("broadcastMessage", "alice", "hi"), ("echo", "alice", "ping (echo from server)")]

    await connection.stop()
    await connection.stop()  # idempotent
    assert connection.state is ConnectionState.DISCONNECTED
    assert seen.closes == [None]
    assert connection.connection_id is None and connection.transport_name is None


async def test_only_chat_messages_reach_the_handlers() -> None:
    service, seen = FakeWebPubSub(), Recorder()
    connection = WebPubSubConnection(access_url(), client_factory=service.factory)
    seen.attach(connection)
    await connection.start()
    service.push({"name": "bob", "message": "hi", "target": "BroadcastMessage"})  # targets are case-insensitive
    service.push("just text", DataType.TEXT)
    service.push(b"\x00\x01", DataType.BINARY)
    service.push({"name": "bob", "message": "no target"})
    service.push({"name": "bob", "message": "x", "target": 7})
    service.push({"name": "bob", "message": "x", "target": "somethingElse"})
    service.push(["name", "message", "target"])
    service.push({"name": 7, "message": "x", "target": "echo"})
    service.push({"name": "bob", "message": {"text": "x"}, "target": "echo"})
    service.push({"message": "no name", "target": "echo"})
    service.push({"name": "bob", "message": "last", "target": "echo"})
    await settle()
    assert seen.messages == [("broadcastMessage", "bob", "hi"), ("echo", "bob", "last")]
    await connection.stop()


async def test_a_failed_ack_is_raised_and_a_send_needs_a_connection() -> None:
    service = FakeWebPubSub()
    connection = WebPubSubConnection(access_url(), client_factory=service.factory)
    with pytest.raises(SignalRClientError, match="'Connected' State"):
        await connection.invoke("broadcastMessage", "alice", "too early")
    await connection.start()
    service.ack_error = FakeSendError("BadRequest", "name and message must be strings")
    with pytest.raises(FakeSendError, match="BadRequest"):
        await connection.invoke("broadcastMessage", "alice", "refused")
    with pytest.raises(ValueError, match=r"takes \(name, message\)"):
        await connection.invoke("broadcastMessage", "only one")
    await connection.stop()


async def test_a_failed_start_is_raised_and_leaves_it_disconnected() -> None:
    service, seen = FakeWebPubSub(), Recorder()
    service.start_error = SignalRClientError("the service refused the token (401)")
    connection = WebPubSubConnection(access_url(), client_factory=service.factory)
    seen.attach(connection)
    with pytest.raises(SignalRClientError, match="401"):
        await connection.start()
    assert connection.state is ConnectionState.DISCONNECTED
    assert seen.closes == []  # on_close is for a connection that was up
    await connection.stop()


async def test_a_drop_reconnects_and_a_final_loss_closes() -> None:
    service, seen = FakeWebPubSub(), Recorder()
    connection = WebPubSubConnection(access_url(), client_factory=service.factory)
    seen.attach(connection)
    await connection.start()
    client = service.created[0]
    await client.drop()
    assert (ConnectionState.CONNECTED, ConnectionState.RECONNECTING) in seen.states
    assert seen.states[-1] == (ConnectionState.RECONNECTING, ConnectionState.CONNECTED)
    assert connection.connection_id == "wps-2"
    lost = ConnectionError("the service went away")
    client.give_up(lost)
    assert connection.state is ConnectionState.DISCONNECTED
    assert seen.closes == [lost]
    await connection.stop()
    assert seen.closes == [lost]


# -- ClientAccessUrls: a fresh URL from the app server --------------------------------------------------------------


@pytest.fixture
async def app_server() -> AsyncIterator[AppServer]:
    async with negotiate_server(lambda n: (200, webpubsub_body(n))) as server:
        yield server


async def test_the_first_url_is_the_answers_then_each_call_negotiates_again(app_server: AppServer) -> None:
    trace: list[TraceEvent] = []
    urls = ClientAccessUrls(
        app_server.url, access_url(0), headers={"Ocp-Apim-Subscription-Key": KEY}, trace=trace.append
    )
    assert await urls() == access_url(0)
    assert app_server.requests == []  # the answer's URL costs no request
    assert await urls() == access_url(1)
    assert await urls() == access_url(2)
    assert [r["path"] for r in app_server.requests] == ["/chat/negotiate?negotiateVersion=1"] * 2
    assert all(r["Ocp-Apim-Subscription-Key"] == KEY for r in app_server.requests)  # the user's headers go along
    assert urls.hub == "chat"
    assert [(e.kind, e.method, e.status) for e in trace] == [("negotiate", "POST", 200)] * 2
    assert "Web PubSub client access URL for hub chat" in trace[0].detail
    assert not any(TOKEN in repr(e) or KEY in repr(e) for e in trace)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, b"boom", "answered 500"),
        (200, b"not json", "Negotiate response is not valid JSON."),
        (200, b'{"url": "https://gw/client/?hub=chat", "accessToken": "t"}', "no longer answers for Azure Web PubSub"),
        (200, b'{"service": "webpubsub", "hub": "chat", "url": "http://h/x"}', "not an absolute ws:// or wss://"),
        (200, b'{"error": "Hub is down"}', "Hub is down"),
        (200, b'{"service": "webpubsub", "hub": "chat", "url": "' + b"a" * 70000 + b'"}', "larger than 65536"),
    ],
)
async def test_a_bad_answer_is_a_clear_error(app_server: AppServer, status: int, body: bytes, expected: str) -> None:
    trace: list[TraceEvent] = []
    app_server.answer = lambda n: (status, body)
    urls = ClientAccessUrls(app_server.url, None, trace=trace.append)
    with pytest.raises(SignalRClientError, match=expected):
        await urls()
    assert trace[-1].kind == "error"


async def test_an_unreachable_app_server_is_named() -> None:
    from tests.support.processes import free_port

    port = free_port()
    urls = ClientAccessUrls(f"http://127.0.0.1:{port}/chat", None, timeout=5)
    with pytest.raises(SignalRClientError, match=f"negotiate at 127.0.0.1:{port} failed"):
        await urls()


# -- ServiceConnection: SignalR first, Web PubSub on the answer -----------------------------------------------------


async def test_the_answer_survives_the_signalr_clients_own_error(app_server: AppServer) -> None:
    # The real HubConnection turns the answer into its NegotiateFailed; the answer stays findable behind it.
    from signalr.client import HubConnection

    connection = HubConnection(app_server.url)
    with pytest.raises(NegotiateFailed) as caught:
        await connection.start()
    answer = webpubsub_answer(caught.value)
    assert isinstance(answer, WebPubSubAnswer) and answer.url == access_url(1) and answer.hub == "chat"
    assert webpubsub_answer(ValueError("unrelated")) is None


async def test_service_connection_goes_on_over_web_pubsub(app_server: AppServer) -> None:
    service, seen = FakeWebPubSub(), Recorder()
    factory = partial(WebPubSubConnection, client_factory=service.factory)
    connection = ServiceConnection(
        app_server.url, headers={"Ocp-Apim-Subscription-Key": KEY}, trace=seen.trace.append, webpubsub_factory=factory
    )
    seen.attach(connection)
    await connection.start()
    assert connection.service == "webpubsub"
    assert connection.webpubsub_protocol == "json.reliable.webpubsub.azure.v1"
    assert connection.protocol is None
    assert connection.state is ConnectionState.CONNECTED and connection.transport_name == "Web PubSub"
    client = service.created[0]
    assert client.headers == {"Ocp-Apim-Subscription-Key": KEY}
    assert service.urls == [access_url(1)]  # the answer's URL, no second negotiate

    await connection.invoke("broadcastMessage", "alice", "hi")
    await settle()
    assert seen.messages == [("broadcastMessage", "alice", "hi")]
    # A reconnect asks the app server for a fresh URL.
    await client.drop()
    assert service.urls == [access_url(1), access_url(2)]
    assert connection.state is ConnectionState.CONNECTED

    kinds = [(e.kind, e.detail) for e in seen.trace]
    assert kinds[0][0] == "negotiate" and "answers for Azure Web PubSub" in kinds[0][1]
    assert kinds[1][0] == "redirect" and "on to its client access URL" in kinds[1][1]
    assert not any(kind == "error" for kind, _ in kinds)  # the SignalR client's failed start is not an error here
    assert not any(TOKEN in repr(e) for e in seen.trace)
    await connection.stop()
    assert connection.state is ConnectionState.DISCONNECTED
    assert seen.closes == [None]


async def test_service_connection_stays_signalr_on_another_failure(app_server: AppServer) -> None:
    app_server.answer = lambda n: (200, b'{"error": "Hub is down"}')
    service, seen = FakeWebPubSub(), Recorder()
    factory = partial(WebPubSubConnection, client_factory=service.factory)
    connection = ServiceConnection(app_server.url, trace=seen.trace.append, webpubsub_factory=factory)
    seen.attach(connection)
    with pytest.raises(NegotiateFailed, match="Hub is down"):
        await connection.start()
    assert connection.service is None and service.created == []
    assert connection.state is ConnectionState.DISCONNECTED
    assert seen.states[-1] == (ConnectionState.CONNECTING, ConnectionState.DISCONNECTED)
    assert any(e.kind == "error" and "Hub is down" in e.detail for e in seen.trace)


async def test_server_messages_reach_the_handlers_over_the_service_connection(app_server: AppServer) -> None:
    service, seen = FakeWebPubSub(), Recorder()
    factory = partial(WebPubSubConnection, client_factory=service.factory)
    connection = ServiceConnection(app_server.url, webpubsub_factory=factory)
    seen.attach(connection)
    await connection.start()
    service.created[0].receive(ServerMessage(DataType.JSON, {"target": "echo"}))
    service.created[0].receive(ServerMessage(DataType.JSON, {"target": "echo", "name": "n", "message": "m"}))
    await settle()
    assert seen.messages == [("echo", "n", "m")]
    await connection.stop()


async def test_a_recovery_shows_reconnecting_then_connected() -> None:
    service, seen = FakeWebPubSub(), Recorder()
    connection = WebPubSubConnection(access_url(), client_factory=service.factory, trace=seen.trace.append)
    seen.attach(connection)
    await connection.start()
    await service.created[0].recover()  # the client's "reconnect" step, no callback, then connected again
    assert (ConnectionState.CONNECTED, ConnectionState.RECONNECTING) in seen.states
    for _ in range(500):  # the adapter checks every 50 ms
        if connection.state is ConnectionState.CONNECTED:
            break
        await asyncio.sleep(0.01)
    assert connection.state is ConnectionState.CONNECTED
    assert connection.connection_id == "wps-1"  # the same connection, resumed
    assert any(e.kind == "reconnect" for e in seen.trace)
    await connection.stop()
