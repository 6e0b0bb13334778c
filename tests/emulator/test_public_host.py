"""``signalr-emulator --public-host NAME``: only requests whose Host names the service are served, as Azure's front end
does; the rest get a 404 saying the Host is not the service's. Observed over real sockets against the process."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable

import aiohttp
import pytest

from emulator.public_host import host_name, valid_public_host
from tests.support.processes import Process, script
from tests.support.stack import EmulatorProcess

from .conftest import client_token

RunEmulator = Callable[..., EmulatorProcess]
NEGOTIATE = "/client/negotiate?hub=chat&negotiateVersion=1"


def refusal(host: str, public_host: str = "127.0.0.1") -> bytes:
    return (
        f"The Host header {host} does not name this service ({public_host}). A proxy in front of the service must "
        "send the service's own host name in Host."
    ).encode()


async def post(emulator: EmulatorProcess, path: str, host: str, **headers: str) -> tuple[aiohttp.ClientResponse, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(emulator.base + path, headers={"Host": host, **headers}) as response,
    ):
        return response, await response.read()


async def raw_request(port: int, request: bytes) -> bytes:
    """Send ``request`` as written and read the answer until the server closes (HTTP/1.0)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:443", "127.0.0.1:80"])
async def test_the_public_host_is_served_on_any_port(run_emulator: RunEmulator, host: str) -> None:
    emulator = run_emulator("--public-host", "127.0.0.1")
    assert emulator.connection_string.startswith("Endpoint=http://127.0.0.1;")  # the ready line is unchanged
    token = client_token(emulator.access_key)
    response, body = await post(emulator, NEGOTIATE, host, Authorization=f"Bearer {token}")
    assert response.status == 200 and b"connectionId" in body
    unauthenticated, _ = await post(emulator, NEGOTIATE, host)
    assert unauthenticated.status == 401  # the route ran: the token is checked as always


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8080", "apim.example.net:443", "127.0.0.1.example", "127.0.0.2", "[::1]:8080"]
)
async def test_another_host_gets_404_saying_so(run_emulator: RunEmulator, host: str) -> None:
    emulator = run_emulator("--public-host", "127.0.0.1")
    token = client_token(emulator.access_key)
    response, body = await post(emulator, NEGOTIATE, host, Authorization=f"Bearer {token}", Origin="http://app.example")
    assert (response.status, body) == (404, refusal(repr(host)))
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


async def test_every_endpoint_checks_the_host(run_emulator: RunEmulator) -> None:
    emulator = run_emulator("--public-host", "127.0.0.1", "--service-mode", "default")
    wrong = {"Host": "apim.example.net"}
    token = client_token(emulator.access_key)
    async with aiohttp.ClientSession() as session:
        for method, path in (
            ("OPTIONS", NEGOTIATE),
            ("GET", "/client/?hub=chat&id=x"),
            ("POST", "/client/?hub=chat&id=x"),
            ("DELETE", "/client/?hub=chat&id=x"),
            ("GET", "/api/v1/health"),
            ("POST", "/api/v1/hubs/chat/:send?api-version=2022-11-01"),
            ("GET", "/server/?hub=chat"),
        ):
            async with session.request(method, emulator.base + path, headers=wrong) as response:
                assert response.status == 404, (method, path)
                assert await response.read() == refusal("'apim.example.net'"), (method, path)
        async with session.get(emulator.base + "/api/v1/health", headers={"Host": "127.0.0.1:1"}) as response:
            assert response.status == 200
        # A WebSocket handshake is refused before any upgrade.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                emulator.base + "/client/?hub=chat", headers={**wrong, "Authorization": f"Bearer {token}"}
            )
        assert refused.value.status == 404


async def test_a_request_without_host_is_refused(run_emulator: RunEmulator) -> None:
    emulator = run_emulator("--public-host", "127.0.0.1")
    answer = await raw_request(emulator.port, b"POST /client/negotiate?hub=chat HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 404 ") or head.startswith(b"HTTP/1.1 404 "), head
    assert body == refusal("none")


async def test_the_refusal_is_logged_once_without_secrets(run_emulator: RunEmulator) -> None:
    emulator = run_emulator("--public-host", "127.0.0.1")
    token = client_token(emulator.access_key)
    response, _ = await post(emulator, f"/client/?hub=chat&id=conn-token&access_token={token}", "gw.example:8080")
    assert response.status == 404
    line = await emulator.process.stderr_line(r"refused POST /client/")
    assert re.search(
        r"WARNING emulator: refused POST /client/\?hub=chat&id=~\w+&access_token=\S+: Host 'gw.example:8080' is "
        r"not this service's host name 127\.0\.0\.1 \(--public-host\)$",
        line,
    ), line
    assert token not in emulator.process.stderr() and token[:20] not in emulator.process.stderr()
    assert "conn-token" not in emulator.process.stderr()
    assert "serving only Host 127.0.0.1 (--public-host)" in emulator.process.stderr()


async def test_name_case_and_a_final_dot_do_not_matter_and_the_connection_string_names_it() -> None:
    process = Process([script("signalr-emulator"), "--port", "0", "--public-host", "LocalHost"])
    try:
        line = process.readline(20)
        match = re.match(r"^Endpoint=http://LocalHost;Port=(\d+);AccessKey=([^;]+);Version=1\.0;$", line)
        assert match is not None, line
        emulator = EmulatorProcess(process, line, int(match.group(1)), match.group(2))
        for host in ("localhost", "LOCALHOST:8080", "localhost.:1"):
            response, _ = await post(emulator, NEGOTIATE, host)
            assert response.status == 401, host  # served (no token)
        refused, body = await post(emulator, NEGOTIATE, "127.0.0.1")
        assert (refused.status, body) == (404, refusal("'127.0.0.1'", "LocalHost"))
    finally:
        process.stop()


async def test_ipv6_public_host() -> None:
    process = Process([script("signalr-emulator"), "--port", "0", "--public-host", "[::1]"])
    try:
        line = process.readline(20)
        match = re.match(r"^Endpoint=http://\[::1\];Port=(\d+);AccessKey=([^;]+);Version=1\.0;$", line)
        assert match is not None, line
        emulator = EmulatorProcess(process, line, int(match.group(1)), match.group(2))
        assert (await post(emulator, NEGOTIATE, "[::1]:8080"))[0].status == 401
        assert (await post(emulator, NEGOTIATE, "[::2]:8080"))[0].status == 404
    finally:
        process.stop()


async def test_without_the_flag_every_host_is_served(run_emulator: RunEmulator) -> None:
    emulator = run_emulator()
    for host in ("apim.example.net", "localhost:1", "x"):
        response, _ = await post(emulator, NEGOTIATE, host)
        assert response.status == 401, host
    assert "--public-host" not in emulator.process.stderr()


@pytest.mark.parametrize("name", ["http://127.0.0.1", "127.0.0.1:8888", "a b", "", "host/path", "[::1", "-", "a..b/"])
def test_a_bad_public_host_is_refused(name: str) -> None:
    result = subprocess.run(
        [script("signalr-emulator"), "--port", "0", f"--public-host={name}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("signalr-emulator: error: --public-host must be a host name or IP address"), lines


def test_host_name_and_validation() -> None:
    assert host_name("Example.COM:8080") == "example.com"
    assert host_name("example.com.") == "example.com"
    assert host_name("[::1]:443") == "[::1]"
    assert host_name("[::1") == "[::1"
    assert host_name("a:b:c") == "a:b:c"  # not a name with a port: compared whole, so never equal to a valid name
    assert host_name(" 127.0.0.1 ") == "127.0.0.1"
    for good in ("localhost", "127.0.0.1", "res.service.signalr.net", "[::1]", "[2001:db8::1]", "a"):
        assert valid_public_host(good), good
    for bad in ("", "-a", "a b", "a:1", "http://a", "a/b", "[::1", "::1", "a_b", "x" * 300):
        assert not valid_public_host(bad), bad
