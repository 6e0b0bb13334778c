"""Fixtures: the real emulator and app server (started once per session), gateways, in-process helper servers."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.client.servers import AppServer, RecordingProxy, serve
from tests.support.fixtures import js_peer  # noqa: F401  (pytest finds fixtures by name)
from tests.support.processes import Process, free_port, script

ACCESS_KEY = "client-tests-access-key-0123456789abcdefABCDEF"
SUBSCRIPTION_KEY = "sub-key-0123456789abcdef"


@dataclass
class Stack:
    """A running ``signalr-emulator`` whose upstream is a running ``chat-server`` (the Chatroom hub)."""

    emulator: Process
    server: Process
    connection_string: str
    emulator_url: str
    server_url: str

    @property
    def hub_url(self) -> str:
        return f"{self.server_url}/chat"

    def connection_string_to(self, client_endpoint: str) -> str:
        """The emulator's connection string with clients sent to ``client_endpoint`` (a gateway or a proxy)."""
        return f"{self.connection_string}ClientEndpoint={client_endpoint};"


def start_emulator(port: int, server_port: int, env: dict[str, str] | None = None) -> Process:
    upstream = f"http://127.0.0.1:{server_port}/upstream/{{hub}}/{{category}}/{{event}}"
    return Process(
        [script("signalr-emulator"), "--port", str(port), "--access-key", ACCESS_KEY, "--upstream", upstream], env=env
    )


def start_stack() -> Stack:
    server_port = free_port()
    emulator = start_emulator(0, server_port)
    try:
        connection_string = emulator.readline()
        port = connection_string.split("Port=")[1].split(";")[0]
        server = Process(
            [script("chat-server"), "--port", str(server_port)],
            env={"Azure__SignalR__ConnectionString": connection_string},
        )
        server.readline()
    except BaseException:
        emulator.stop()
        raise
    return Stack(emulator, server, connection_string, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{server_port}")


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = start_stack()
    yield running
    running.server.stop()
    running.emulator.stop()


@dataclass
class Gateway:
    """A running ``apim-gateway``; ``log()`` is its stderr (the access log)."""

    url: str
    process: Process

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def log(self) -> str:
        return self.process.stderr()

    async def log_line(self, pattern: str, timeout: float = 3.0) -> str:
        """The first access-log line matching ``pattern``; waits (bounded) since the gateway logs a relay at its end."""
        regex = re.compile(pattern)
        for _ in range(int(timeout / 0.05)):
            for line in self.log().splitlines():
                if regex.search(line):
                    return line
            await asyncio.sleep(0.05)
        raise AssertionError(f"no gateway log line matches {pattern!r}:\n{self.log()[-2000:]}")


def start_gateway(backend: str, profile: str, *flags: str) -> Gateway:
    process = Process([script("apim-gateway"), "--backend", backend, "--port", "0", "--profile", profile, *flags])
    try:
        line = process.readline()
    except BaseException:
        process.stop()
        raise
    return Gateway(line.split("listening on ")[1].split(" ")[0], process)


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway(stack: Stack) -> Iterator[GatewayFactory]:
    """``gateway(profile, *flags)`` starts an ``apim-gateway`` in front of the emulator."""
    started: list[Gateway] = []

    def start(profile: str, *flags: str) -> Gateway:
        started.append(start_gateway(stack.emulator_url, profile, *flags))
        return started[-1]

    yield start
    for running in started:
        running.process.stop()


@pytest.fixture(scope="session")
def gateway_ws(stack: Stack) -> Iterator[Gateway]:
    running = start_gateway(stack.emulator_url, "websocket")
    yield running
    running.process.stop()


@pytest.fixture(scope="session")
def gateway_sse_lp(stack: Stack) -> Iterator[Gateway]:
    running = start_gateway(stack.emulator_url, "sse-lp", "--with-delete")
    yield running
    running.process.stop()


AppServerFactory = Callable[[str], Awaitable[tuple[AppServer, str]]]


@pytest.fixture
async def app_server(stack: Stack) -> AsyncIterator[AppServerFactory]:
    """``await app_server(client_endpoint)`` → (server, hub URL): an app server redirecting to that endpoint."""
    async with contextlib.AsyncExitStack() as servers:

        async def start(client_endpoint: str) -> tuple[AppServer, str]:
            server = AppServer(stack.connection_string_to(client_endpoint))
            url = await servers.enter_async_context(serve(server.app))
            return server, f"{url}/chat"

        yield start


ProxyFactory = Callable[[str], Awaitable[tuple[RecordingProxy, str]]]


@pytest.fixture
async def recording_proxy() -> AsyncIterator[ProxyFactory]:
    """``await recording_proxy(backend)`` → (proxy, its URL)."""
    async with contextlib.AsyncExitStack() as servers:

        async def start(backend: str) -> tuple[RecordingProxy, str]:
            proxy = RecordingProxy(backend)
            return proxy, await servers.enter_async_context(serve(proxy.app))

        yield start
