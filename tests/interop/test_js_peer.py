"""The JS peer harness against a minimal SignalR server built on the core's sans-I/O objects.

The server below is about the smallest thing the official client accepts: ``POST …/negotiate`` with a v1 reply, and a
connect endpoint for WebSockets, Server-Sent Events and LongPolling whose handshake and records go through
``signalr.connection.ServerProtocol`` (and ``signalr.sse`` for the event stream), in the hub protocol the client's
handshake picks (JSON, or MessagePack with ``protocol="messagepack"``).
So these tests check the harness (events, commands, errors, shutdown) and the core against a peer nobody here wrote.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from signalr.connection import (
    ConnectionClosed,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    ServerProtocol,
    State,
)
from signalr.hub_protocol import HubProtocol, TransferFormat
from signalr.messages import Completion, Invocation
from signalr.negotiate import NegotiateRedirect, requested_version, service_negotiate_response
from signalr.sse import SSE_PREAMBLE, encode_event
from signalr.tokens import TokenError, mint_token, verify_token
from tests.support.fixtures import JsPeerFactory
from tests.support.jspeer import PEER_SCRIPT, JsPeer, JsPeerError, node_executable
from tests.support.processes import free_port

ACCESS_KEY = "test-key-0123456789-not-a-secret"


@dataclass
class SeenRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class MiniHub:
    """What the mini server saw, for assertions."""

    requests: list[SeenRequest] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # connectionToken → connectionId
    received: list[Any] = field(default_factory=list)
    handshakes: list[Any] = field(default_factory=list)
    require_token: bool = False
    base: str = ""

    def record(self, request: web.Request) -> None:
        self.requests.append(
            SeenRequest(
                request.method,
                request.path,
                request.rel_url.raw_query_string,
                {k.lower(): v for k, v in request.headers.items()},
            )
        )

    def authorized(self, request: web.Request) -> bool:
        if not self.require_token:
            return True
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        try:
            verify_token(header[len("Bearer ") :], ACCESS_KEY, "http://127.0.0.1/client/?hub=chat")
        except TokenError:
            return False
        return True


def reply_to(message: Any, protocol: HubProtocol) -> bytes:
    """The mini hub: echo fire-and-forget invocations back to the caller, answer a few invocation targets; every
    answer in the caller's hub ``protocol``."""
    if not isinstance(message, Invocation):
        return b""
    if message.invocation_id is None:
        return protocol.encode(Invocation(message.target, message.arguments))
    if message.target == "add":
        return protocol.encode(Completion.with_result(message.invocation_id, sum(message.arguments)))
    if message.target == "void":
        return protocol.encode(Completion(message.invocation_id))
    if message.target == "burst":
        # Several records in one WebSocket frame (trap 8), the Completion last.
        count = int(message.arguments[0])
        pushes: list[Any] = [Invocation("broadcastMessage", ("burst", str(i))) for i in range(count)]
        return protocol.encode_many([*pushes, Completion.with_result(message.invocation_id, count)])
    return protocol.encode(Completion.with_error(message.invocation_id, f"Unknown hub method '{message.target}'"))


class Session:
    """One negotiated connection: the core's server state machine and, for SSE/LP, the bytes waiting to go out."""

    def __init__(self, hub: MiniHub) -> None:
        self.hub = hub
        self.protocol = ServerProtocol()
        self.outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the connection ended
        self.transport: str | None = None
        self.polls = 0

    def process(self, data: bytes) -> bytes:
        """Feed received bytes; returns what to send back (possibly several records, trap 8)."""
        out = bytearray()
        for event in self.protocol.receive_data(data):
            out += self.protocol.data_to_send()
            if isinstance(event, HandshakeCompleted | HandshakeFailed):
                self.hub.handshakes.append(event)
            chosen = self.protocol.protocol
            if isinstance(event, HandshakeCompleted) and chosen is not None:
                # A record in the same frame as the handshake reply (trap 8).
                out += chosen.encode(Invocation("broadcastMessage", ("_SYSTEM_", "welcome")))
            elif isinstance(event, MessageReceived) and chosen is not None:
                self.hub.received.append(event.message)
                message = event.message
                if isinstance(message, Invocation) and message.target == "closeMe":
                    self.protocol.close("bye")
                else:
                    out += reply_to(message, chosen)
            elif isinstance(event, ConnectionClosed):
                self.hub.received.append(event)
        out += self.protocol.data_to_send()
        return bytes(out)

    @property
    def closed(self) -> bool:
        return self.protocol.state is State.CLOSED

    @property
    def binary(self) -> bool:
        """The chosen hub protocol is binary (MessagePack): WebSocket frames must be binary."""
        chosen = self.protocol.protocol
        return chosen is not None and chosen.transfer_format is TransferFormat.BINARY


def make_app(hub: MiniHub) -> web.Application:
    sessions: dict[str, Session] = {}

    async def negotiate(request: web.Request) -> web.Response:
        hub.record(request)
        if not hub.authorized(request):
            return web.Response(status=401)
        connection_id, token = str(uuid.uuid4()), str(uuid.uuid4())
        hub.tokens[token] = connection_id
        sessions[token] = Session(hub)
        body = service_negotiate_response(connection_id, token, requested_version(request.query_string))
        return web.Response(body=body, content_type="application/json")

    async def redirect(request: web.Request) -> web.Response:
        hub.record(request)
        token = mint_token(ACCESS_KEY, "http://127.0.0.1/client/?hub=chat")
        body = NegotiateRedirect(f"{hub.base}/hub?hub=chat&asrs.op=%2Fchat", token).to_json()
        return web.Response(body=body, content_type="application/json")

    async def not_found(request: web.Request) -> web.Response:
        hub.record(request)
        return web.Response(status=404, text="nope")

    async def error_field(request: web.Request) -> web.Response:
        hub.record(request)
        return web.json_response({"error": "The hub is closed for maintenance."})

    async def connect(request: web.Request) -> web.StreamResponse:
        hub.record(request)
        if not hub.authorized(request):
            return web.Response(status=401)
        session = sessions.get(request.query.get("id", ""))
        if session is None:
            return web.Response(status=404, text="No Connection with that ID")
        if request.method == "POST":  # SSE/LP send (§3.8)
            reply = session.process(await request.read())
            if reply:
                session.outgoing.put_nowait(reply)
            if session.closed:
                session.outgoing.put_nowait(None)
            return web.Response(status=200)
        if request.method == "DELETE":  # LP stop (§3.9); the -nodelete hub plays APIM without a DELETE operation
            if request.path.endswith("-nodelete"):
                return web.Response(status=404)
            session.outgoing.put_nowait(None)
            return web.Response(status=202, text="")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await websocket(request, session)
        if request.headers.get("Accept") == "text/event-stream":
            return await server_sent_events(request, session)
        return await long_poll(session)

    async def websocket(request: web.Request, session: Session) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session.transport = "WebSockets"
        async for frame in ws:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            reply = session.process(frame.data.encode() if isinstance(frame.data, str) else frame.data)
            if reply:
                await (ws.send_bytes(reply) if session.binary else ws.send_str(reply.decode()))
            if session.closed:
                await ws.close()
                break
        return ws

    async def server_sent_events(request: web.Request, session: Session) -> web.StreamResponse:
        session.transport = "ServerSentEvents"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(SSE_PREAMBLE)
        while (data := await session.outgoing.get()) is not None:
            await response.write(encode_event(data))
        return response

    async def long_poll(session: Session) -> web.Response:
        session.transport = "LongPolling"
        session.polls += 1
        if session.polls == 1:  # the first poll answers at once (§3.7)
            return web.Response(status=200, content_type="application/octet-stream")
        try:
            data = await asyncio.wait_for(session.outgoing.get(), 2)
        except TimeoutError:
            return web.Response(status=200, content_type="application/octet-stream")  # "poll again"
        if data is None:
            return web.Response(status=204)
        # Everything queued goes out in one response: several records per body (trap 8).
        while not session.outgoing.empty():
            more = session.outgoing.get_nowait()
            if more is None:
                session.outgoing.put_nowait(None)
                break
            data += more
        return web.Response(status=200, body=data, content_type="application/octet-stream")

    app = web.Application()
    for name in ("hub", "hub-nodelete"):
        app.router.add_post(f"/{name}/negotiate", negotiate)
        app.router.add_route("*", f"/{name}", connect)
    app.router.add_post("/redirect/negotiate", redirect)
    app.router.add_post("/missing/negotiate", not_found)
    app.router.add_post("/error/negotiate", error_field)
    return app


@pytest.fixture
async def mini() -> AsyncIterator[MiniHub]:
    hub = MiniHub()
    server = TestServer(make_app(hub), host="127.0.0.1", port=0)
    await server.start_server()
    hub.base = str(server.make_url("")).rstrip("/")
    try:
        yield hub
    finally:
        await server.close()


async def test_start_reports_connection_and_receives_record_batched_with_handshake(
    mini: MiniHub, js_peer: JsPeerFactory
) -> None:
    peer = await js_peer(f"{mini.base}/hub")
    assert peer.transport == "WebSockets"
    assert peer.connection_id in mini.tokens.values()
    assert peer.base_url == f"{mini.base}/hub"
    assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["_SYSTEM_", "welcome"])
    assert [type(h).__name__ for h in mini.handshakes] == ["HandshakeCompleted"]
    # The client asked for negotiate v1 and connected with the connectionToken, not the connectionId (trap 6).
    negotiate, upgrade = mini.requests
    assert negotiate.method == "POST" and "negotiateVersion=1" in negotiate.query
    token = dict(part.split("=", 1) for part in upgrade.query.split("&"))["id"]
    assert token in mini.tokens and token != peer.connection_id


async def test_send_echo_invoke_and_ordering(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(f"{mini.base}/hub")
    await peer.next_message("broadcastMessage")
    await peer.send("echo", "alice", "héllo ✓")
    await peer.send("broadcastMessage", "alice", "second")
    assert await peer.messages_until(2) == [("echo", ["alice", "héllo ✓"]), ("broadcastMessage", ["alice", "second"])]
    assert await peer.invoke("add", 2, 3) == 5
    assert await peer.invoke("void") is None
    with pytest.raises(JsPeerError, match="Unknown hub method 'nothere'"):
        await peer.invoke("nothere")
    # The JS client's send() is fire-and-forget: no invocationId on the wire (trap 11).
    sent = [m for m in mini.received if isinstance(m, Invocation) and m.target == "echo"]
    assert sent == [Invocation("echo", ("alice", "héllo ✓"))]
    assert sent[0].invocation_id is None


async def test_several_records_in_one_frame_all_dispatched(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(f"{mini.base}/hub", on=("broadcastMessage",))
    await peer.next_message("broadcastMessage")
    assert await peer.invoke("burst", 5) == 5
    got = await peer.messages_until(5, timeout=5)
    assert got == [("broadcastMessage", ["burst", str(i)]) for i in range(5)]


async def test_next_message_filters_by_target_and_times_out(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(f"{mini.base}/hub")
    await peer.send("echo", "bob", "one")
    # The welcome broadcast stays queued while an echo is taken first.
    assert await peer.next_message("echo") == ("echo", ["bob", "one"])
    assert peer.pending_messages() == [("broadcastMessage", ["_SYSTEM_", "welcome"])]
    with pytest.raises(TimeoutError, match="no echo message"):
        await peer.next_message("echo", timeout=0.3)


async def test_redirect_is_followed_with_bearer_token_and_custom_header(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    mini.require_token = True
    peer = await js_peer(f"{mini.base}/redirect", headers={"X-Test-Header": "kept"})
    assert peer.base_url == f"{mini.base}/hub?hub=chat&asrs.op=%2Fchat"
    first, second, upgrade = mini.requests
    assert first.path == "/redirect/negotiate"
    assert second.path == "/hub/negotiate"
    # The redirect URL's query is kept and negotiateVersion added once (traps 5 and 7).
    assert second.query == "hub=chat&asrs.op=%2Fchat&negotiateVersion=1"
    for request in (second, upgrade):
        assert request.headers["authorization"].startswith("Bearer ey")
        assert request.headers["x-test-header"] == "kept"
    # Under Node the client names itself in User-Agent; X-SignalR-User-Agent is the browser's header.
    assert upgrade.headers["user-agent"].startswith("Microsoft SignalR/10.")
    # Node's client sends the token as a header on the upgrade, never in the query (trap 13).
    assert "access_token" not in upgrade.query


async def test_access_token_option_sends_bearer_on_negotiate(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    mini.require_token = True
    token = mint_token(ACCESS_KEY, "http://127.0.0.1/client/?hub=chat")
    await js_peer(f"{mini.base}/hub", access_token=token)
    assert mini.requests[0].headers["authorization"] == f"Bearer {token}"


async def test_rejected_token_fails_start_with_status(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    mini.require_token = True
    bad = mint_token("another-key-that-is-not-the-access-key", "http://127.0.0.1/client/?hub=chat")
    peer = await js_peer(f"{mini.base}/hub", access_token=bad, expect_start=False)
    assert peer.error is not None and "401" in peer.error
    assert peer.returncode == 1
    assert bad not in peer.error


async def test_start_failure_raises_with_client_error_and_stderr(mini: MiniHub) -> None:
    with pytest.raises(JsPeerError) as caught:
        await JsPeer.start(f"{mini.base}/missing", timeout=10)
    text = str(caught.value)
    assert "Failed to complete negotiation with the server" in text
    assert "404" in text
    assert "stderr:" in text and "[Error]" in text  # the client's own log, at trace level


async def test_negotiate_error_field_is_the_start_error(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(f"{mini.base}/error", expect_start=False)
    assert peer.error == "The hub is closed for maintenance."


async def test_unreachable_server_fails_start(js_peer: JsPeerFactory) -> None:
    peer = await js_peer(f"http://127.0.0.1:{free_port()}/hub", expect_start=False, timeout=15)
    assert peer.error is not None and "Failed to complete negotiation" in peer.error


async def test_server_close_with_error_reaches_onclose_and_send_then_fails(
    mini: MiniHub, js_peer: JsPeerFactory
) -> None:
    peer = await js_peer(f"{mini.base}/hub")
    await peer.send("closeMe")
    assert await peer.wait_closed() == "Server returned an error on close: bye"
    with pytest.raises(
        JsPeerError, match=re.escape("Cannot send data if the connection is not in the 'Connected' State.")
    ):
        await peer.send("broadcastMessage", "alice", "late")
    await peer.stop()
    assert peer.returncode == 0


async def test_stop_closes_cleanly_and_is_idempotent(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(f"{mini.base}/hub", log_level="trace")
    await peer.stop()
    await peer.stop()
    assert peer.returncode == 0
    assert await peer.wait_closed(timeout=1) is None
    # The trace log survives stop and carries the client's own lines.
    assert "HttpConnection connected successfully" in peer.stderr()
    # HubConnection.stop() sends a Close record before closing the socket; the core reads it as a clean close.
    for _ in range(50):
        if any(isinstance(m, ConnectionClosed) for m in mini.received):
            break
        await asyncio.sleep(0.05)
    assert ConnectionClosed(None, by_peer=True) in mini.received
    with pytest.raises(JsPeerError, match="not running"):
        await peer.send("echo", "x", "y")


async def test_peer_killed_by_pid_when_it_ignores_stop(mini: MiniHub) -> None:
    peer = await JsPeer.start(f"{mini.base}/hub")
    # SIGSTOP makes the process deaf to the stop command; stop() must still end it by pid.
    os.kill(peer.pid, signal.SIGSTOP)
    await peer.stop(timeout=0.5)
    assert peer.returncode == -signal.SIGKILL


async def test_bad_cli_usage_exits_2_with_one_line() -> None:
    process = await asyncio.create_subprocess_exec(
        node_executable(),
        str(PEER_SCRIPT),
        "--url",
        "http://127.0.0.1:1/hub",
        "--transport",
        "carrier-pigeon",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 2
    assert out == b""
    assert err.decode().strip() == "peer.mjs: --transport must be one of websockets, sse, longpolling, auto"


@pytest.mark.parametrize(("transport", "name"), [("sse", "ServerSentEvents"), ("longpolling", "LongPolling")])
async def test_http_transports_carry_messages_both_ways(
    mini: MiniHub, js_peer: JsPeerFactory, transport: str, name: str
) -> None:
    peer = await js_peer(f"{mini.base}/hub", transport=transport)
    assert peer.transport == name
    assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["_SYSTEM_", "welcome"])
    await peer.send("echo", "alice", "line1\nline2")  # a multi-line SSE payload on the way back
    assert await peer.next_message("echo") == ("echo", ["alice", "line1\nline2"])
    assert await peer.invoke("burst", 3) == 3
    assert await peer.messages_until(3) == [("broadcastMessage", ["burst", str(i)]) for i in range(3)]
    await peer.stop()
    assert await peer.wait_closed(timeout=1) is None


async def test_auto_transport_picks_websockets_first(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(f"{mini.base}/hub", transport="auto")
    assert peer.transport == "WebSockets"


async def test_longpolling_stop_sends_delete(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    peer = await js_peer(f"{mini.base}/hub", transport="longpolling")
    await peer.stop()
    assert [r.method for r in mini.requests if r.method == "DELETE"] == ["DELETE"]
    assert "(LongPolling transport) DELETE request accepted." in peer.stderr()


async def test_longpolling_delete_404_is_benign_and_logged_at_trace(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    # APIM's sse-lp profile has no DELETE operation (apim.md §6): the JS client logs it and closes cleanly.
    peer = await js_peer(f"{mini.base}/hub-nodelete", transport="longpolling")
    await peer.stop()
    assert await peer.wait_closed(timeout=1) is None
    assert peer.returncode == 0
    assert "A 404 response was returned from sending a DELETE request." in peer.stderr()


@pytest.mark.parametrize(("transport", "name"), [("websockets", "WebSockets"), ("longpolling", "LongPolling")])
async def test_messagepack_peer_carries_messages_both_ways(
    mini: MiniHub, js_peer: JsPeerFactory, transport: str, name: str
) -> None:
    peer = await js_peer(f"{mini.base}/hub", transport=transport, protocol="messagepack")
    assert peer.transport == name
    assert mini.handshakes == [HandshakeCompleted("messagepack", 1)]
    assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["_SYSTEM_", "welcome"])
    await peer.send("echo", "alice", {"nested": [1, 2.5, None, True]})
    assert await peer.next_message("echo") == ("echo", ["alice", {"nested": [1, 2.5, None, True]}])
    assert await peer.invoke("add", 2, 3) == 5
    assert await peer.invoke("void") is None
    with pytest.raises(JsPeerError, match="Unknown hub method 'nothere'"):
        await peer.invoke("nothere")
    assert await peer.invoke("burst", 3) == 3
    assert await peer.messages_until(3) == [("broadcastMessage", ["burst", str(i)]) for i in range(3)]
    # The client's send() is fire-and-forget in MessagePack too: no invocationId (trap 11).
    sent = [m for m in mini.received if isinstance(m, Invocation) and m.target == "echo"]
    assert sent == [Invocation("echo", ("alice", {"nested": [1, 2.5, None, True]}))]
    await peer.stop()
    assert await peer.wait_closed(timeout=1) is None


async def test_messagepack_peer_cannot_use_server_sent_events(mini: MiniHub, js_peer: JsPeerFactory) -> None:
    """The negotiate response lists ServerSentEvents with Text only: the client fails before it connects."""
    peer = await js_peer(f"{mini.base}/hub", transport="sse", protocol="messagepack", expect_start=False)
    assert peer.error is not None and "'ServerSentEvents' does not support Binary." in peer.error
    assert [r.method for r in mini.requests] == ["POST"]  # the negotiate, and no connect
