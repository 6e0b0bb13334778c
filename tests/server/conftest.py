"""Fixtures for the app server tests: a ``chat-server`` process factory and a REST recorder standing in for Azure."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server.rest_recorder import RestRecorder
from tests.support.fixtures import js_peer  # noqa: F401  (pytest finds fixtures by name)
from tests.support.processes import Process, script

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
