"""The three servers as real processes on 127.0.0.1 with short connection limits: ``signalr-emulator`` in Default
mode, ``chat-server`` dialing it (its server connections are WebSockets the emulator serves), and two
``apim-gateway`` in front of the emulator, one per APIM profile."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.processes import Process
from tests.support.stack import EmulatorProcess, start_chat_server, start_emulator, start_gateway

# Short limits (defaults: 10, 30 and 30 s), so a test sees them act within a few seconds. The idle limit is longer
# than the head limit, as with the defaults: aiohttp also closes a connection that is still without a complete
# request when the idle limit is over, without an answer.
HEADER_S = 1.0
BODY_S = 1.0
IDLE_S = 2.0
LIMIT_FLAGS = ("--header-timeout", "1", "--body-timeout", "1", "--idle-timeout", "2")


@dataclass
class Served:
    name: str
    port: int
    process: Process


@dataclass
class Servers:
    emulator: EmulatorProcess
    by_name: dict[str, Served]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    started: list[Process] = []
    try:
        emulator = start_emulator("--service-mode", "default", *LIMIT_FLAGS)
        started.append(emulator.process)
        sse_gateway = start_gateway(emulator.base, "--profile", "sse-lp", *LIMIT_FLAGS)
        started.append(sse_gateway.process)
        ws_gateway = start_gateway(emulator.base, "--profile", "websocket", *LIMIT_FLAGS)
        started.append(ws_gateway.process)
        server = start_chat_server(
            emulator.connection_string, "--service-mode", "default", "--server-connections", "2", *LIMIT_FLAGS
        )
        started.append(server.process)
        server.wait_for_server_connections()
        yield Servers(
            emulator,
            {
                "signalr-emulator": Served("signalr-emulator", emulator.port, emulator.process),
                "apim-gateway": Served("apim-gateway", sse_gateway.port, sse_gateway.process),
                "apim-gateway-ws": Served("apim-gateway-ws", ws_gateway.port, ws_gateway.process),
                "chat-server": Served("chat-server", server.port, server.process),
            },
        )
    finally:
        for process in reversed(started):
            process.stop()
