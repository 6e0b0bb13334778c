"""Fixtures for the app server tests: a ``chat-server`` process factory and a REST recorder standing in for Azure."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signalr.connection_string import parse_connection_string
from tests.server.rest_recorder import RestRecorder
from tests.support.fixtures import js_peer  # noqa: F401  (pytest finds fixtures by name)
from tests.support.processes import Process, free_port, script

# Distinctive, so a test can prove it never appears in any output.
ACCESS_KEY = "SrvTestKey0000DoNotPrint1111abcdefghijklmnop2222"
READY = re.compile(r"^Chat server listening on (http://127\.0\.0\.1:(\d+)/) \(hub (\S+)\)$")


@dataclass
class ChatServer:
    """A running ``chat-server`` process and the URL from its ready line."""

    process: Process
    url: str
    port: int
    hub: str

    def stop(self) -> int:
        return self.process.stop()


def start_chat_server(
    connection_string: str, *args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None
) -> ChatServer:
    """Start ``chat-server --port 0`` (unless ``args`` sets a port) and wait for its ready line."""
    argv = [script("chat-server"), *args]
    if "--port" not in args:
        argv += ["--port", "0"]
    env = {"Azure__SignalR__ConnectionString": connection_string, **(extra_env or {})}
    process = Process(argv, env=env, cwd=cwd)
    try:
        line = process.readline(timeout=20)
    except (TimeoutError, EOFError):
        process.stop()
        raise
    match = READY.match(line)
    if match is None:
        process.stop()
        raise AssertionError(f"unexpected ready line {line!r}; stderr:\n{process.stderr()}")
    return ChatServer(process, match.group(1), int(match.group(2)), match.group(3))


def start_emulator(*args: str) -> tuple[Process, str, str]:
    """Start ``signalr-emulator --port 0``; returns the process, its URL and the connection string it printed."""
    emulator = Process([script("signalr-emulator"), "--port", "0", *args])
    try:
        connection_string = emulator.readline(timeout=20)
        endpoint = parse_connection_string(connection_string).endpoint
    except (TimeoutError, EOFError, ValueError):
        emulator.stop()
        raise
    return emulator, endpoint, connection_string


@dataclass
class Stack:
    """The emulator with its upstream pointed at a ``chat-server``, both running."""

    emulator: Process
    emulator_url: str
    connection_string: str
    server: ChatServer

    @property
    def hub_url(self) -> str:
        return self.server.url + "chat"

    def stop(self) -> None:
        self.server.stop()
        self.emulator.stop()


def start_stack(cwd: Path) -> Stack:
    """The emulator (upstream → the server's recommended template) and ``chat-server`` on ports picked here."""
    server_port = free_port()
    upstream = f"http://127.0.0.1:{server_port}/upstream/{{hub}}/{{category}}/{{event}}"
    emulator, emulator_url, connection_string = start_emulator("--upstream", upstream)
    try:
        server = start_chat_server(connection_string, "--port", str(server_port), cwd=cwd)
    except BaseException:
        emulator.stop()
        raise
    return Stack(emulator, emulator_url, connection_string, server)


@pytest.fixture(scope="module")
def recorder() -> Iterator[RestRecorder]:
    rec = RestRecorder(ACCESS_KEY).start()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def server(recorder: RestRecorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    """One ``chat-server`` whose REST calls go to :func:`recorder`; run from an empty directory (no ``.env``)."""
    srv = start_chat_server(recorder.connection_string(), cwd=tmp_path_factory.mktemp("srv"))
    yield srv
    srv.stop()


@pytest.fixture
def rest(recorder: RestRecorder) -> RestRecorder:
    """The recorder, emptied before the test."""
    recorder.clear()
    return recorder
