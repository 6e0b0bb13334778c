"""``chat-server`` as a process: the ready line, every startup error, ``.env`` handling and clean shutdown."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.server.conftest import ACCESS_KEY
from tests.support.processes import script
from tests.support.stack import start_chat_server

GOOD = f"Endpoint=http://127.0.0.1;Port=1;AccessKey={ACCESS_KEY};Version=1.0;ClientEndpoint=http://gw.example:8080;"


def run_server(args: list[str], connection_string: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``chat-server`` expecting it to exit by itself (a startup error)."""
    env = dict(os.environ, Azure__SignalR__ConnectionString=connection_string, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [script("chat-server"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert result.stderr == line + "\n"
    assert "Traceback" not in result.stderr
    assert ACCESS_KEY not in result.stdout + result.stderr


def negotiate_url(base: str) -> str:
    request = urllib.request.Request(base + "chat/negotiate?negotiateVersion=1", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["url"])


def test_missing_connection_string(tmp_path: Path) -> None:
    result = run_server(["--port", "0"], "", tmp_path)
    assert_one_error_line(result, 2, "error: Azure__SignalR__ConnectionString is not set (environment or .env)")


def test_empty_value_in_dotenv_is_missing(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("Azure__SignalR__ConnectionString=\n")
    result = run_server(["--port", "0"], "", tmp_path)
    assert_one_error_line(result, 2, "error: Azure__SignalR__ConnectionString is not set (environment or .env)")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            f"AccessKey={ACCESS_KEY};",
            "error: invalid connection string: Connection string missing required properties endpoint.",
        ),
        (
            f"Endpoint=not a url;AccessKey={ACCESS_KEY};",
            "error: invalid connection string: Invalid value for endpoint property, it must be a valid URI.",
        ),
        (
            f"Endpoint=http://x;AccessKey={ACCESS_KEY};Port=abc;",
            "error: invalid connection string: Invalid value for port property, it must be an positive integer "
            "between (0, 65536).",
        ),
        (
            f"Endpoint=http://x;AccessKey={ACCESS_KEY};Version=x;",
            "error: invalid connection string: Version x is not supported.",
        ),
        (
            f"Endpoint=http://x;AccessKey={ACCESS_KEY};endpoint=http://y;",
            "error: invalid connection string: Duplicate properties found in connection string: endpoint.",
        ),
        ("Endpoint=http://x;Version=1.0;", "error: invalid connection string: accesskey is required."),
        (
            "Endpoint=https://x;AuthType=azure.msi;Version=1.0;",
            "error: invalid connection string: AuthType=azure.msi (Microsoft Entra ID) is not supported: chat-server "
            "supports only AccessKey auth; use the AccessKey connection string from the portal's Keys page.",
        ),
    ],
)
def test_malformed_connection_string(tmp_path: Path, text: str, line: str) -> None:
    assert_one_error_line(run_server(["--port", "0"], text, tmp_path), 2, line)


@pytest.mark.parametrize(
    ("auth_type", "extra"),
    [
        ("azure.msi", ""),
        ("Azure.MSI", ""),
        ("aad", ""),
        ("azure", ""),
        ("azure.app", "ClientId=c;TenantId=t;ClientSecret=s;"),
    ],
)
def test_entra_id_auth_type_is_refused_even_with_an_access_key(tmp_path: Path, auth_type: str, extra: str) -> None:
    # The .NET SDK authenticates with Entra ID whenever AuthType names it, AccessKey or not (protocol.md §1);
    # signing with the key instead would be a different server than the one the user configured.
    text = f"Endpoint=https://res.service.signalr.net;AccessKey={ACCESS_KEY};AuthType={auth_type};{extra}Version=1.0;"
    assert_one_error_line(
        run_server(["--port", "0"], text, tmp_path),
        2,
        f"error: invalid connection string: AuthType={auth_type} (Microsoft Entra ID) is not supported: chat-server "
        "supports only AccessKey auth; remove AuthType to sign with the AccessKey.",
    )


def test_malformed_connection_string_in_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"Azure__SignalR__ConnectionString=Endpoint=https://x;AccessKey={ACCESS_KEY};Port=0\n"
    )
    result = run_server(["--port", "0"], "", tmp_path)
    assert_one_error_line(
        result,
        2,
        "error: invalid connection string: Invalid value for port property, it must be an positive integer "
        "between (0, 65536).",
    )


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--hub", "bad hub"], "error: invalid hub name 'bad hub'"),
        (["--port", "http"], "error: argument --port: invalid int value: 'http'"),
        (["--port", "70000"], "error: invalid port 70000"),
        (["--token-lifetime", "5"], "error: invalid token lifetime 5"),
        (["--no-such-flag"], "error: unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_flags_are_one_line(tmp_path: Path, args: list[str], start: str) -> None:
    result = run_server(args, GOOD, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(start)
    assert result.stderr.count("\n") == 1
    assert ACCESS_KEY not in result.stderr


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_server(["--port", str(port)], GOOD, tmp_path)
    assert_one_error_line(result, 1, f"error: cannot listen on 127.0.0.1:{port}: address in use")


def test_ready_line_healthz_and_sigterm(tmp_path: Path) -> None:
    server = start_chat_server(GOOD, cwd=tmp_path)
    try:
        with urllib.request.urlopen(server.url + "healthz", timeout=10) as response:
            assert response.status == 200
            health = json.loads(response.read())
        # Default mode: the service at port 1 is unreachable, so no server connection is open (yet).
        assert health["status"] == "ok"
        assert (health["hub"], health["service_mode"]) == ("chat", "default")
        assert {k: health["server_connections"][k] for k in ("connected", "wanted")} == {"connected": 0, "wanted": 5}
        # The first dial's failure is logged when it fails, which can come after /healthz answered: wait for it.
        asyncio.run(server.process.stderr_line(r"cannot reach the service at http://127\.0\.0\.1:1\b", timeout=10))
    finally:
        code = server.stop()
    assert code == 0
    stderr = server.process.stderr()
    assert "shutting down" in stderr
    assert "cannot reach the service at http://127.0.0.1:1" in stderr
    assert ACCESS_KEY not in stderr
    assert "AccessKey=***" in stderr  # the redacted connection string is logged, never the key


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_the_event_loop_is_named_once_listening(tmp_path: Path, loop: str) -> None:
    server = start_chat_server(GOOD, "--service-mode", "serverless", "--loop", loop, cwd=tmp_path)
    try:
        with urllib.request.urlopen(server.url + "healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        assert server.stop() == 0
    expected = "asyncio" if loop == "asyncio" or importlib.util.find_spec("uvloop") is None else "uvloop"
    assert f"INFO server: event loop: {expected}\n" in server.process.stderr()


def test_serverless_mode_has_no_server_connections(tmp_path: Path) -> None:
    server = start_chat_server(GOOD, "--service-mode", "serverless", cwd=tmp_path)
    try:
        with urllib.request.urlopen(server.url + "healthz", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok", "hub": "chat", "service_mode": "serverless"}
    finally:
        assert server.stop() == 0
    assert "server connection" not in server.process.stderr()


@pytest.mark.parametrize("count", ["0", "65", "x"])
def test_bad_server_connection_count(tmp_path: Path, count: str) -> None:
    result = run_server(["--server-connections", count], GOOD, tmp_path)
    assert result.returncode == 2
    assert "server-connections" in result.stderr or "server connection count" in result.stderr


def test_sigint_is_a_clean_exit(tmp_path: Path) -> None:
    server = start_chat_server(GOOD, "--hub", "Room", cwd=tmp_path)
    assert server.hub == "Room"
    server.process.signal(signal.SIGINT)
    assert server.process.popen.wait(10) == 0
    assert "Traceback" not in server.process.stderr()
    server.stop()


def test_fixed_port_is_in_the_ready_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_chat_server(GOOD, port=port, cwd=tmp_path)
    try:
        assert server.port == port
        assert server.ready_line == f"Chat server listening on http://127.0.0.1:{port}/ (hub chat)"
    finally:
        server.stop()


def test_dotenv_in_the_current_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"Azure__SignalR__ConnectionString={GOOD}\n")
    server = start_chat_server("", cwd=tmp_path)
    try:
        assert negotiate_url(server.url).startswith("http://gw.example:8080/client/?hub=chat&")
    finally:
        server.stop()


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"Azure__SignalR__ConnectionString={GOOD}\n")
    from_env = GOOD.replace("gw.example:8080", "env.example")
    server = start_chat_server(from_env, cwd=tmp_path)
    try:
        assert negotiate_url(server.url).startswith("http://env.example/client/?hub=chat&")
    finally:
        server.stop()


def test_missing_browser_bundle_warns_and_the_page_still_loads(tmp_path: Path) -> None:
    server = start_chat_server(GOOD, "--signalr-js", str(tmp_path / "absent.js"), cwd=tmp_path)
    try:
        with urllib.request.urlopen(server.url, timeout=10) as page:
            assert page.status == 200
            html = page.read().decode()
        assert "The SignalR client library is missing" in html
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "lib/signalr.min.js", timeout=10)
        assert info.value.code == 404
        # Plain `make` runs the demo; `make node` is the target that installs the npm package with the bundle.
        assert info.value.read().decode() == "// @microsoft/signalr is not installed: run `make node`, then reload\n"
    finally:
        server.stop()
    assert "browser bundle is missing" in server.process.stderr()
    assert "run `make node`;" in server.process.stderr()


def test_the_messagepack_protocol_bundle_is_served_for_the_page(tmp_path: Path) -> None:
    server = start_chat_server(GOOD, cwd=tmp_path)
    try:
        with urllib.request.urlopen(server.url + "lib/signalr-protocol-msgpack.min.js", timeout=10) as bundle:
            assert bundle.status == 200
            assert bundle.headers["Content-Type"].startswith("application/javascript")
            assert b"MessagePackHubProtocol" in bundle.read()
    finally:
        server.stop()
