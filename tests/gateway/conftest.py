"""Fixtures: the test backend and `apim-gateway` processes in front of it (one per variant, shared)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import Process
from tests.support.stack import GATEWAY_READY as READY  # noqa: F401  (the tests check ready lines with it)
from tests.support.stack import Gateway, start_gateway

PRIMARY_KEY = "primary-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECONDARY_KEY = "secondary-a1b2c3d4e5f60718293a4b5c6d7e8f90"


@dataclass
class Backend:
    process: Process
    url: str

    @property
    def authority(self) -> str:
        return self.url.removeprefix("http://")


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    process = Process([sys.executable, "-m", "tests.gateway.backend", "--port", "0"])
    line = process.readline(timeout=30)
    yield Backend(process, line.rsplit(" ", 1)[1])
    process.stop()


def _gateway(backend: Backend, *args: str) -> Iterator[Gateway]:
    gateway = start_gateway(backend.url, *args)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def ws_gateway(backend: Backend) -> Iterator[Gateway]:
    """The seed doc's `websocket` profile."""
    yield from _gateway(backend, "--profile", "websocket")


@pytest.fixture(scope="session")
def sse_gateway(backend: Backend) -> Iterator[Gateway]:
    """The seed doc's `sse-lp` profile, faithful (no DELETE)."""
    yield from _gateway(backend, "--profile", "sse-lp")


@pytest.fixture(scope="session")
def buffered_gateway(backend: Backend) -> Iterator[Gateway]:
    """`sse-lp` without the buffer-response="false" policy: APIM's default buffering."""
    yield from _gateway(backend, "--profile", "sse-lp", "--buffer-sse")


@pytest.fixture(scope="session")
def keyed_gateway(backend: Backend) -> Iterator[Gateway]:
    """`sse-lp` with subscription keys required, and the opt-in DELETE operation."""
    yield from _gateway(
        backend,
        "--profile",
        "sse-lp",
        "--with-delete",
        "--subscription-key",
        PRIMARY_KEY,
        "--subscription-key",
        SECONDARY_KEY,
    )


@pytest.fixture(scope="session")
def keyed_ws_gateway(backend: Backend) -> Iterator[Gateway]:
    """`websocket` with subscription keys required."""
    yield from _gateway(backend, "--profile", "websocket", "--subscription-key", PRIMARY_KEY)


@pytest.fixture(scope="session")
def timeout_gateway(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A custom YAML config: sse-lp whose `connect get` times out after 1 s."""
    config = Path(tmp_path_factory.mktemp("config")) / "short-timeout.yaml"
    config.write_text(
        """
profile: sse-lp-short-timeout
apis:
  - name: signalr
    type: http
    suffix: /client/
    service_url: https://{signalr}/client/
    operations:
      - {name: negotiate, method: POST, url_template: /negotiate}
      - {name: connect-get, method: GET, url_template: /,
         policies: {forward_request: {buffer_response: false, timeout_s: 1}}}
""",
        encoding="utf-8",
    )
    yield from _gateway(backend, "--config", str(config))


@pytest.fixture(scope="session")
def no_options_gateway(backend: Backend) -> Iterator[Gateway]:
    """`sse-lp` imported without its OPTIONS operations (--no-options)."""
    yield from _gateway(backend, "--profile", "sse-lp", "--no-options")


@pytest.fixture(scope="session")
def keep_host_gateway(backend: Backend) -> Iterator[Gateway]:
    """`sse-lp` forwarding the client's Host header (--keep-host)."""
    yield from _gateway(backend, "--profile", "sse-lp", "--keep-host")


@pytest.fixture(scope="session")
def keep_host_ws_gateway(backend: Backend) -> Iterator[Gateway]:
    """`websocket` forwarding the client's Host header (--keep-host), on the handshake too."""
    yield from _gateway(backend, "--profile", "websocket", "--keep-host")
