"""Fixtures: the real emulator and app server (started once per session), gateways, in-process helper servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tests.client.servers import AppServer, RecordingProxy, serve
from tests.support.fixtures import js_peer  # noqa: F401  (pytest finds fixtures by name)
from tests.support.processes import Process, script
from tests.support.stack import Gateway, Stack, start_gateway, start_stack, upstream_template

ACCESS_KEY = "client-tests-access-key-0123456789abcdefABCDEF"
SUBSCRIPTION_KEY = "sub-key-0123456789abcdef"


def start_emulator(port: int, server_port: int) -> Process:
    """``signalr-emulator`` on ``port`` with :data:`ACCESS_KEY`, upstream → a ``chat-server`` on ``server_port``.

    Its ready line is left for the caller to read (a test restarts it on the same port).
    """
    argv = [script("signalr-emulator"), "--port", str(port), "--access-key", ACCESS_KEY]
    return Process([*argv, "--upstream", upstream_template(server_port)])


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = start_stack("--access-key", ACCESS_KEY)
    yield running
    running.stop()


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway(stack: Stack) -> Iterator[GatewayFactory]:
    """``gateway(profile, *flags)`` starts an ``apim-gateway`` in front of the emulator."""
    started: list[Gateway] = []

    def start(profile: str, *flags: str) -> Gateway:
        started.append(start_gateway(stack.emulator_url, "--profile", profile, *flags))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def gateway_ws(stack: Stack) -> Iterator[Gateway]:
    running = start_gateway(stack.emulator_url, "--profile", "websocket")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def gateway_sse_lp(stack: Stack) -> Iterator[Gateway]:
    running = start_gateway(stack.emulator_url, "--profile", "sse-lp", "--with-delete")
    yield running
    running.stop()


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
