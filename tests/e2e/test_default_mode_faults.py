"""Default mode under faults, with real processes: the service is killed and restarted, the app server is killed,
the app server stops gracefully. What is asserted is what each side observes: bytes a client receives, the health
of the app server, the processes' own log lines and exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from signalr.client import ConnectionState, TransportChoice
from signalr.tokens import mint_token
from tests.client.inbox import StateLog, connect
from tests.support.processes import Process, free_port
from tests.support.stack import ChatServer, EmulatorProcess, start_chat_server, start_emulator

KEY = "DefaultModeFaultsKey0123456789abcdefghijklmnopq"
HANDSHAKE = '{"protocol":"json","version":1}\x1e'
DROPPED = (
    '{"type":7,"error":"Server connection dropped: the app server carrying this connection went away.",'
    '"allowReconnect":true}\x1e'
)
NO_SERVER = (
    "SignalR Service is now in 'Default' service mode. Current mode works as a proxy that routes client traffic to "
    "the connected app servers. However app servers are not connected."
)


@dataclass
class Pair:
    """An emulator in Default mode on a fixed port (so it can come back), and a chat-server dialling it."""

    port: int
    emulator: EmulatorProcess
    server: ChatServer

    @property
    def hub_url(self) -> str:
        return self.server.hub_url

    def start_emulator(self) -> None:
        self.emulator = start_emulator("--service-mode", "default", "--access-key", KEY, port=self.port)

    def kill(self, process: Process) -> None:
        process.signal(signal.SIGKILL)
        process.popen.wait(5)
        process.stop()


@pytest.fixture
def pair() -> Iterator[Pair]:
    port = free_port()
    emulator = start_emulator("--service-mode", "default", "--access-key", KEY, port=port)
    server = start_chat_server(emulator.connection_string, "--service-mode", "default", "--server-connections", "2")
    running = Pair(port, emulator, server)
    try:
        server.wait_for_server_connections()
        yield running
    finally:
        running.server.stop()
        running.emulator.stop()


async def _raw_client(pair: Pair, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket client that follows the redirect by hand, so the test sees every byte the service sends."""
    async with http.post(pair.hub_url + "/negotiate?negotiateVersion=1") as response:
        redirect = await response.json()
    url, token = redirect["url"], redirect["accessToken"]
    ws_url = url.replace("http://", "ws://", 1)
    ws = await http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"})
    await ws.send_str(HANDSHAKE)
    reply = await ws.receive(timeout=5)
    assert reply.data == "{}\x1e"
    return ws


async def test_service_killed_and_restarted(pair: Pair) -> None:
    """chat-server reconnects by itself; a client with automatic reconnect chats again through it."""
    connection, inbox = connect(
        pair.hub_url, transport=TransportChoice.WEBSOCKETS, reconnect_delays=(0, 0.5, 0.5, 1, 1, 2, 2, 2, 2)
    )
    log = StateLog(connection)
    await connection.start()
    try:
        await connection.send("echo", "f", "before")
        assert await inbox.next() == ("echo", ("f", "before (echo from server)"))

        pair.kill(pair.emulator.process)
        await log.wait_for(ConnectionState.RECONNECTING, timeout=10)
        await pair.server.process.stderr_line("the service closed the connection", timeout=5)
        # The first redial (after 1-2 s) finds nobody listening.
        await pair.server.process.stderr_line("cannot reach the service at http://127.0.0.1:", timeout=10)
        assert pair.server.health()["server_connections"]["connected"] == 0  # type: ignore[index]
        pair.start_emulator()
        # The app server redials with its backoff (1-2 s, 2-3 s, …), without being told.
        await asyncio.to_thread(pair.server.wait_for_server_connections, None, 20)
        await log.wait_for(ConnectionState.CONNECTED, timeout=20)
        await connection.send("broadcastMessage", "f", "after")
        assert await inbox.next(timeout=10) == ("broadcastMessage", ("f", "after"))
    finally:
        await connection.stop()
    log_text = pair.server.process.stderr()
    assert "connected to the service: 2/2 server connection(s) open" in log_text
    assert KEY not in log_text


async def test_app_server_killed_closes_its_clients(pair: Pair) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _raw_client(pair, http)
        pair.kill(pair.server.process)
        message = await ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.TEXT
        assert message.data == DROPPED
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await ws.close()
        # With no app server left, a new client's hub handshake gets the service's Default-mode error.
        token = mint_token(KEY, "http://127.0.0.1/client/?hub=chat")
        url = f"ws://127.0.0.1:{pair.port}/client/?hub=chat"
        async with http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as lonely:
            await lonely.send_str(HANDSHAKE)
            refused = await lonely.receive(timeout=5)
            assert refused.data == json.dumps({"error": NO_SERVER}, separators=(",", ":")) + "\x1e"
    assert "closed hub=chat" in pair.emulator.process.stderr()


async def test_sigterm_says_goodbye_to_the_service(pair: Pair) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await _raw_client(pair, http)
        pair.server.process.signal(signal.SIGTERM)
        assert await asyncio.to_thread(pair.server.process.popen.wait, 15) == 0
        message = await ws.receive(timeout=10)
        assert message.data == DROPPED
        await ws.close()
    emulator_log = await pair.emulator.process.stderr_line(r"closed hub=chat \(code 1000\)", timeout=5)
    assert emulator_log
    text = pair.emulator.process.stderr()
    assert text.count("takes no new clients (fin)") == 2
    assert text.count("(code 1000)") == 2


@pytest.mark.parametrize(
    ("emulator_mode", "key", "expected"),
    [
        ("serverless", KEY, "(403): the service is in Serverless mode (run chat-server --service-mode serverless"),
        ("default", "SomeOtherKey0123456789abcdefghijklmnopqrstuvw", "(401): the AccessKey in the connection string"),
    ],
    ids=["serverless-service", "wrong-key"],
)
async def test_a_service_that_refuses_is_explained_in_one_line(emulator_mode: str, key: str, expected: str) -> None:
    emulator = start_emulator("--service-mode", emulator_mode, "--access-key", KEY)
    connection_string = emulator.connection_string.replace(KEY, key)
    server = start_chat_server(connection_string, "--service-mode", "default", "--server-connections", "2")
    try:
        line = await server.process.stderr_line("refused the server connection", timeout=10)
        assert expected in line and "retrying in" in line
        assert server.health()["server_connections"]["connected"] == 0  # type: ignore[index]
    finally:
        server.stop()
        emulator.stop()
    text = server.process.stderr()
    assert key not in text and KEY not in text
    # One line per change, not one per connection and attempt.
    assert text.count("refused the server connection") == 1
