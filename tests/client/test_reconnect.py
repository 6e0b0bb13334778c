"""Automatic reconnect against the real processes: the emulator is killed and restarted on the same port."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from signalr.client import ConnectionState, ServerUnreachable, TransportChoice
from tests.client.conftest import start_emulator
from tests.client.inbox import StateLog, connect
from tests.support.processes import Process, free_port, script


@dataclass
class Restartable:
    """An emulator on a fixed port behind its own chat-server, so killing it leaves the session stack alone."""

    port: int
    server_port: int
    emulator: Process
    server: Process

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/chat"

    def kill(self) -> None:
        self.emulator.signal(signal.SIGKILL)
        self.emulator.popen.wait(5)
        self.emulator.stop()

    def restart(self) -> None:
        self.emulator = start_emulator(self.port, self.server_port)
        self.emulator.readline()

    def negotiations(self) -> int:
        return self.server.stderr().count("POST /chat/negotiate")


@pytest.fixture
def restartable() -> Iterator[Restartable]:
    port, server_port = free_port(), free_port()
    emulator = start_emulator(port, server_port)
    connection_string = emulator.readline()
    server = Process(
        [script("chat-server"), "--port", str(server_port), "--service-mode", "serverless"],
        env={"Azure__SignalR__ConnectionString": connection_string},
    )
    server.readline()
    running = Restartable(port, server_port, emulator, server)
    yield running
    running.server.stop()
    running.emulator.stop()


@pytest.mark.parametrize("choice", [TransportChoice.WEBSOCKETS, TransportChoice.LONG_POLLING], ids=["ws", "lp"])
async def test_reconnects_after_the_emulator_is_killed_and_restarted(
    restartable: Restartable, choice: TransportChoice
) -> None:
    connection, inbox = connect(restartable.hub_url, transport=choice, reconnect_delays=(0, 0.5, 0.5, 1, 1, 2, 2))
    log = StateLog(connection)
    states = log.states
    await connection.start()
    try:
        first_id = connection.connection_id
        await connection.send("echo", "r", "before")
        assert await inbox.next() == ("echo", ("r", "before (echo from server)"))

        restartable.kill()
        await log.wait_for(ConnectionState.RECONNECTING, timeout=10)
        restartable.restart()
        await log.wait_for(ConnectionState.CONNECTED, timeout=15)

        assert connection.connection_id and connection.connection_id != first_id
        await connection.send("echo", "r", "after")
        assert await inbox.next() == ("echo", ("r", "after (echo from server)"))
        # Every attempt renegotiated from the app server (the original URL), not from the old redirect URL.
        attempts = [e for e in inbox.trace if e.kind == "reconnect" and e.detail.startswith("attempt")]
        assert restartable.negotiations() == 1 + len(attempts)
        assert any(e.kind == "reconnect" and e.detail.startswith("reconnected after") for e in inbox.trace)
    finally:
        await connection.stop()
    assert states[:3] == [ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.RECONNECTING]
    assert states[-3:] == [ConnectionState.CONNECTED, ConnectionState.DISCONNECTING, ConnectionState.DISCONNECTED]
    assert await inbox.next_close() is None  # one on_close, from stop(), not from the loss


async def test_reconnect_gives_up_and_reports_the_last_error(restartable: Restartable) -> None:
    connection, inbox = connect(restartable.hub_url, reconnect_delays=(0, 0.2, 0.2))
    await connection.start()
    restartable.kill()
    error = await inbox.next_close(timeout=10)
    assert isinstance(error, ServerUnreachable)
    assert str(error).startswith(f"cannot reach 127.0.0.1:{restartable.port} (connection refused)")
    assert connection.state is ConnectionState.DISCONNECTED
    assert [e.detail for e in inbox.trace if e.kind == "reconnect"][-1] == "gave up after 3 attempts"
    await connection.stop()  # nothing left to stop


async def test_stop_while_reconnecting_ends_the_attempts(restartable: Restartable) -> None:
    connection, inbox = connect(restartable.hub_url, reconnect_delays=(0, 30))
    log = StateLog(connection)
    await connection.start()
    restartable.kill()
    await log.wait_for(ConnectionState.RECONNECTING, timeout=10)
    await inbox.traced(lambda e: e.detail.startswith("reconnect attempt 1 failed"))  # now waiting 30 s for the second
    await asyncio.wait_for(connection.stop(), 5)
    assert connection.state is ConnectionState.DISCONNECTED
    assert await inbox.next_close() is None
