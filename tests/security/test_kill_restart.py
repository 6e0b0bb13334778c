"""kill -9 during a chat: each server of the stack (service, APIM gateway, app server) is killed while three clients
chat through the gateway, then started again on the same port. Every client must come back by itself; every message
sent after that must reach everyone; a message attempted during the outage must fail for its sender (reported), never
vanish. Both service modes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from signalr.client import ConnectionState, HubConnection, SignalRClientError, TransportChoice
from tests.client.inbox import Inbox, StateLog, connect
from tests.support.processes import Process, free_port
from tests.support.stack import (
    ChatServer,
    EmulatorProcess,
    Gateway,
    start_chat_server,
    start_emulator,
    start_gateway,
    upstream_template,
)

KEY = "KillRestartKey0123456789abcdefghijklmnopqrstuvw"
DELAYS = (0, 0.5, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2)  # about 20 s of attempts


@dataclass
class Ports:
    service: int
    gateway: int
    server: int


class Running:
    """The three servers on fixed ports, so each can be killed and started again where the clients expect it."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.ports = Ports(free_port(), free_port(), free_port())
        self.emulator = self.start_emulator()
        try:
            self.gateway = self.start_gateway()
            try:
                self.server = self.start_server()
            except BaseException:
                self.gateway.process.stop()
                raise
        except BaseException:
            self.emulator.process.stop()  # a failed start must not leave servers running
            raise

    def start_emulator(self) -> EmulatorProcess:
        extra = ["--upstream", upstream_template(self.ports.server)] if self.mode == "serverless" else []
        return start_emulator("--service-mode", self.mode, "--access-key", KEY, *extra, port=self.ports.service)

    def start_gateway(self) -> Gateway:
        return start_gateway(self.emulator.base, "--profile", "websocket", port=self.ports.gateway)

    def start_server(self) -> ChatServer:
        connection_string = self.emulator.connection_string_to(f"http://127.0.0.1:{self.ports.gateway}")
        server = start_chat_server(connection_string, "--service-mode", self.mode, port=self.ports.server)
        if self.mode == "default":
            try:
                server.wait_for_server_connections()
            except BaseException:
                server.process.stop()
                raise
        return server

    def process(self, name: str) -> Process:
        return {"service": self.emulator.process, "gateway": self.gateway.process, "app server": self.server.process}[
            name
        ]

    def kill(self, name: str) -> None:
        process = self.process(name)
        process.signal(signal.SIGKILL)
        process.popen.wait(5)
        process.stop()

    def restart(self, name: str) -> None:
        if name == "service":
            self.emulator = self.start_emulator()
        elif name == "gateway":
            self.gateway = self.start_gateway()
        else:
            self.server = self.start_server()

    def stop(self) -> None:
        for process in (self.server.process, self.gateway.process, self.emulator.process):
            process.stop()


@pytest.fixture(params=["default", "serverless"])
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    stack = Running(request.param)
    try:
        yield stack
    finally:
        stack.stop()


async def _everyone_gets(clients: list[tuple[HubConnection, Inbox]], sender: str, text: str) -> None:
    for _, inbox in clients:
        seen: list[Any] = []
        async with asyncio.timeout(10):
            while ("broadcastMessage", (sender, text)) not in seen:
                seen.append(await inbox.messages.get())


@pytest.mark.parametrize("victim", ["service", "gateway", "app server"])
async def test_every_client_comes_back_and_nothing_is_lost_silently(running: Running, victim: str) -> None:
    url = f"http://127.0.0.1:{running.ports.server}/chat"
    clients = [connect(url, transport=TransportChoice.WEBSOCKETS, reconnect_delays=DELAYS) for _ in range(3)]
    logs = [StateLog(connection) for connection, _ in clients]
    for connection, _ in clients:
        await connection.start()
    try:
        await clients[0][0].invoke("broadcastMessage", "c0", "before")
        await _everyone_gets(clients, "c0", "before")

        running.kill(victim)
        first = clients[0][0]
        # During the outage a message fails for its sender: an error it can show, not a silent drop.
        with pytest.raises(SignalRClientError):
            await first.invoke("broadcastMessage", "c0", "during", timeout=5)
        running.restart(victim)

        for (connection, _), log in zip(clients, logs, strict=True):
            if connection.state is not ConnectionState.CONNECTED:
                await log.wait_for(ConnectionState.CONNECTED, timeout=30)
        for index, (connection, _) in enumerate(clients):
            await connection.invoke("broadcastMessage", f"c{index}", "after")
        for index in range(len(clients)):
            await _everyone_gets(clients, f"c{index}", "after")
    finally:
        for connection, _ in clients:
            await connection.stop()
