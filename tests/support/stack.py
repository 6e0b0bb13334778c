"""The product's servers as real processes for tests: ``signalr-emulator``, ``apim-gateway`` and ``chat-server``.

Each ``start_*`` runs the console script on 127.0.0.1 (``--port 0`` unless ``port`` is given), reads its ready line,
checks it against the command contract (README.md and docs/*.md) and returns what the line says. A process that prints
something else, or nothing in time, is stopped, and the error carries its stderr. Stop each with ``stop()`` (by pid)::

    server_port = free_port()
    emulator = start_emulator("--upstream", upstream_template(server_port))
    server = start_chat_server(emulator.connection_string, port=server_port)
    ...
    server.stop()
    emulator.stop()

:func:`start_stack` does exactly that and returns both as a :class:`Stack`.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import Process, free_port, script

__all__ = [
    "EMULATOR_READY",
    "GATEWAY_READY",
    "SERVER_READY",
    "ChatServer",
    "EmulatorProcess",
    "Gateway",
    "Stack",
    "start_chat_server",
    "start_emulator",
    "start_gateway",
    "start_stack",
    "upstream_template",
]

EMULATOR_READY = re.compile(r"^Endpoint=http://127\.0\.0\.1;Port=(\d+);AccessKey=([^;]+);Version=1\.0;$")
GATEWAY_READY = re.compile(r"^APIM gateway listening on (http://127\.0\.0\.1:(\d+)) \(profile (\S+)\) -> (\S+)$")
SERVER_READY = re.compile(r"^Chat server listening on (http://127\.0\.0\.1:(\d+)/) \(hub (\S+)\)$")
_READY_TIMEOUT = 20.0


def upstream_template(server_port: int) -> str:
    """The upstream URL template the app server recommends, for a ``chat-server`` on ``server_port``."""
    return f"http://127.0.0.1:{server_port}/upstream/{{hub}}/{{category}}/{{event}}"


def _start_ready(
    argv: list[str], ready: re.Pattern[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[Process, re.Match[str]]:
    """Start ``argv`` and wait for its first stdout line; returns the process and the line matched by ``ready``.

    Raises (after stopping the process) TimeoutError or EOFError when no line comes, AssertionError for another line.
    """
    process = Process(argv, env=env, cwd=cwd)
    try:
        line = process.readline(_READY_TIMEOUT)
        match = ready.match(line)
        if match is None:
            raise AssertionError(
                f"unexpected ready line {line!r} from {Path(argv[0]).name}; stderr:\n{process.stderr()}"
            )
    except BaseException:
        process.stop()
        raise
    return process, match


@dataclass
class EmulatorProcess:
    """A running ``signalr-emulator`` and the connection string its ready line printed."""

    process: Process
    connection_string: str
    port: int
    access_key: str

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>``: append ``/client/…`` or ``/api/…``."""
        return f"http://127.0.0.1:{self.port}"

    def connection_string_to(self, client_endpoint: str) -> str:
        """The connection string with clients sent to ``client_endpoint`` (a gateway or a proxy)."""
        return f"{self.connection_string}ClientEndpoint={client_endpoint};"

    def stop(self) -> int:
        return self.process.stop()


def start_emulator(*args: str, port: int = 0, env: dict[str, str] | None = None) -> EmulatorProcess:
    """Start ``signalr-emulator --port <port> [args]``."""
    process, match = _start_ready([script("signalr-emulator"), "--port", str(port), *args], EMULATOR_READY, env=env)
    return EmulatorProcess(process, match.group(0), int(match.group(1)), match.group(2))


@dataclass
class Gateway:
    """A running ``apim-gateway`` and what its ready line said; its stderr is the access log."""

    process: Process
    url: str
    port: int
    profile: str
    backend: str
    ready_line: str

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, as a client's trace names it."""
        return self.url.removeprefix("http://")

    def stderr(self) -> str:
        return self.process.stderr()

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> str:
        """The stderr text once it contains ``needle``, or as it is after ``timeout`` (access lines are written after
        the response). Blocks: for tests whose peers run outside this event loop."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr()
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    async def log_line(self, pattern: str, timeout: float = 3.0) -> str:
        """The first access-log line matching ``pattern``; waits (bounded) since the gateway logs a relay at its end."""
        return await self.process.stderr_line(pattern, timeout)

    def stop(self) -> int:
        return self.process.stop()


def start_gateway(backend: str, *args: str, port: int = 0) -> Gateway:
    """Start ``apim-gateway --backend <backend> --port <port> [args]`` (``args`` choose the profile or config)."""
    argv = [script("apim-gateway"), "--backend", backend, "--port", str(port), *args]
    process, match = _start_ready(argv, GATEWAY_READY)
    return Gateway(process, match.group(1), int(match.group(2)), match.group(3), match.group(4), match.group(0))


@dataclass
class ChatServer:
    """A running ``chat-server`` and what its ready line said."""

    process: Process
    url: str
    """``http://127.0.0.1:<port>/``, with the slash: append ``chat``, ``healthz``, ``upstream``…"""
    port: int
    hub: str
    ready_line: str

    @property
    def hub_url(self) -> str:
        return self.url + self.hub

    def stop(self) -> int:
        return self.process.stop()

    def health(self) -> dict[str, object]:
        """``GET /healthz`` as JSON."""
        with urllib.request.urlopen(self.url + "healthz", timeout=5) as response:
            body: dict[str, object] = json.loads(response.read())
        return body

    def wait_for_server_connections(self, count: int | None = None, timeout: float = 20.0) -> None:
        """Default mode: block until ``count`` (default: all) server connections are open, as ``/healthz`` says."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.health().get("server_connections")
            assert isinstance(status, dict), "not a Default-mode chat-server"
            if status["connected"] >= (count if count is not None else status["wanted"]):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"server connections {status} after {timeout} s:\n{self.process.stderr()}")
            time.sleep(0.05)


def start_chat_server(connection_string: str, *args: str, port: int = 0, cwd: Path | None = None) -> ChatServer:
    """Start ``chat-server --port <port> [args]`` with ``connection_string`` in ``Azure__SignalR__ConnectionString``.

    ``cwd`` is where it looks for a ``.env`` (default: the repository).
    """
    env = {"Azure__SignalR__ConnectionString": connection_string}
    argv = [script("chat-server"), "--port", str(port), *args]
    process, match = _start_ready(argv, SERVER_READY, env=env, cwd=cwd)
    return ChatServer(process, match.group(1), int(match.group(2)), match.group(3), match.group(0))


@dataclass
class Stack:
    """The emulator with its upstream pointed at a ``chat-server`` (the Chatroom hub), both running; with a
    ``gateway``, the server's connection string names it as ``ClientEndpoint`` (clients reach the service through it).
    """

    emulator: EmulatorProcess
    server: ChatServer
    gateway: Gateway | None = None

    @property
    def emulator_url(self) -> str:
        return self.emulator.base

    @property
    def connection_string(self) -> str:
        """The emulator's connection string (without the ``ClientEndpoint`` the server may have been given)."""
        return self.emulator.connection_string

    @property
    def hub_url(self) -> str:
        return self.server.hub_url

    def connection_string_to(self, client_endpoint: str) -> str:
        return self.emulator.connection_string_to(client_endpoint)

    def stop(self) -> None:
        self.server.stop()
        if self.gateway is not None:
            self.gateway.stop()
        self.emulator.stop()


def start_stack(
    *emulator_args: str,
    cwd: Path | None = None,
    gateway_args: Sequence[str] | None = None,
    service_mode: str = "serverless",
) -> Stack:
    """The emulator (``emulator_args`` added) and ``chat-server`` (run in ``cwd``), both in ``service_mode``.

    Serverless: the emulator's upstream points at the server. Default: the server's server connections are all open
    when this returns. With ``gateway_args`` (``--profile …`` and more), an ``apim-gateway`` in front of the emulator
    too, as the server's ``ClientEndpoint``. Whatever started is stopped again when a later start fails.
    """
    server_port = free_port()
    mode_args = ["--service-mode", service_mode]
    if service_mode == "serverless":
        mode_args += ["--upstream", upstream_template(server_port)]
    emulator = start_emulator(*emulator_args, *mode_args)
    gateway: Gateway | None = None
    try:
        connection_string = emulator.connection_string
        if gateway_args is not None:
            gateway = start_gateway(emulator.base, *gateway_args)
            connection_string = emulator.connection_string_to(gateway.url)
        server = start_chat_server(connection_string, "--service-mode", service_mode, port=server_port, cwd=cwd)
        if service_mode == "default":
            try:
                server.wait_for_server_connections()
            except BaseException:
                server.stop()
                raise
    except BaseException:
        if gateway is not None:
            gateway.stop()
        emulator.stop()
        raise
    return Stack(emulator, server, gateway)
