"""``signalr-emulator`` as a process: ready line, flags, startup errors, clean shutdown, secrets kept out of logs,
and a client that stops reading (dropped with bounded memory)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from signalr.tokens import mint_token
from tests.support.processes import script

from .conftest import HANDSHAKE, EmulatorProcess, client_token, records

RunEmulator = Callable[..., EmulatorProcess]


def rest_headers(access_key: str, path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(access_key, 'http://127.0.0.1' + path)}"}


async def negotiate(session: aiohttp.ClientSession, emulator: EmulatorProcess) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {client_token(emulator.access_key)}"}
    async with session.post(f"{emulator.base}/client/negotiate?hub=chat&negotiateVersion=1", headers=headers) as r:
        assert r.status == 200
        body: dict[str, str] = await r.json()
        return body


def run_once(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("signalr-emulator"), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- CLI -------------------------------------------------------------------------------------------------------


async def test_ready_line_is_the_connection_string_and_the_port_answers(run_emulator: RunEmulator) -> None:
    emulator = run_emulator()
    assert emulator.port > 0
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.base}/api/v1/health") as response:
        assert response.status == 200
    assert emulator.process.popen.poll() is None


def test_every_start_gets_a_fresh_key_unless_one_is_given(run_emulator: RunEmulator) -> None:
    first, second = run_emulator(), run_emulator()
    assert first.access_key != second.access_key
    assert len(first.access_key) >= 32
    fixed = run_emulator("--access-key", "my-fixed-key-for-tests-0123456789abcdef")
    assert fixed.access_key == "my-fixed-key-for-tests-0123456789abcdef"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "70000"], "invalid port 70000"),
        (["--port", "abc"], "invalid port 'abc'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--upstream", "ftp://x/{event}"], "must be an http(s) URL template"),
        (["--access-key", ""], "--access-key must be non-empty"),
        (["--max-buffer", "10"], "at least 64 bytes"),
    ],
)
def test_bad_flags_print_one_line_and_exit_2(args: list[str], expected: str) -> None:
    result = run_once("--port", "0", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("signalr-emulator: error: ")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # §6.2: only {hub}, {category} and {event} are placeholders; anything else would be posted literally.
        ("http://127.0.0.1:5000/upstream/{nope}", "unknown placeholder {nope}"),
        ("http://127.0.0.1:5000/upstream/{Hub}/{category}/{event}", "unknown placeholder {Hub}"),
        ("http://127.0.0.1:5000/{hub}/{}", "unknown placeholder {}"),
        ("http://127.0.0.1:5000/{hub}/{event", "'{' without a closing '}'"),
        ("http://127.0.0.1:5000/{hub}/event}", "'}' without an opening '{'"),
    ],
)
def test_upstream_template_with_an_unknown_placeholder_is_refused(template: str, expected: str) -> None:
    result = run_once("--port", "0", "--upstream", template)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"signalr-emulator: error: argument --upstream: invalid upstream {template!r}: {expected}; "
        "the placeholders are {hub}, {category} and {event} (see --help)"
    ]


def test_upstream_template_error_keeps_a_secret_out_of_the_message() -> None:
    result = run_once("--port", "0", "--upstream", "http://127.0.0.1:7071/api/{fn}?code=fn-secret")
    assert result.returncode == 2 and result.stdout == ""
    assert "unknown placeholder {fn}" in result.stderr and "fn-secret" not in result.stderr


def test_bad_environment_knob_is_one_line() -> None:
    result = subprocess.run(
        [script("signalr-emulator"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "SIGNALR_EMULATOR_KEEPALIVE": "soon"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "signalr-emulator: error: SIGNALR_EMULATOR_KEEPALIVE must be a number, not 'soon'"


def test_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_once("--port", str(port))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"signalr-emulator: error: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_every_transport_and_exits_0(run_emulator: RunEmulator, sig: signal.Signals) -> None:
    emulator = run_emulator()
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {client_token(emulator.access_key)}"}
        ws_neg = await negotiate(session, emulator)
        ws = await session.ws_connect(
            f"ws://127.0.0.1:{emulator.port}/client/?hub=chat&id={ws_neg['connectionToken']}", headers=auth
        )
        await ws.send_str(HANDSHAKE.decode())
        assert records((await ws.receive(timeout=5)).data) == [{}]
        lp_neg = await negotiate(session, emulator)
        lp_url = f"{emulator.base}/client/?hub=chat&id={lp_neg['connectionToken']}"
        async with session.get(lp_url, headers=auth) as first:
            assert first.status == 200
        async with session.post(lp_url, data=HANDSHAKE, headers=auth) as sent:
            assert sent.status == 200
        async with session.get(lp_url, headers=auth) as handshake:
            assert records(await handshake.read()) == [{}]
        poll = asyncio.create_task(session.get(lp_url, headers=auth))
        await asyncio.sleep(0.2)

        started = time.monotonic()
        emulator.process.signal(sig)
        closing = await ws.receive(timeout=5)
        assert records(closing.data) == [{"type": 7, "error": "The service is shutting down."}]
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        response = await asyncio.wait_for(poll, 5)
        assert response.status == 200
        assert records(await response.read()) == [{"type": 7, "error": "The service is shutting down."}]
        response.release()
        assert emulator.process.popen.wait(10) == 0
    assert time.monotonic() - started < 8
    assert "Traceback" not in emulator.process.stderr()


async def test_stderr_logs_carry_no_secrets(run_emulator: RunEmulator) -> None:
    emulator = run_emulator()
    token = client_token(emulator.access_key)
    async with aiohttp.ClientSession() as session:
        negotiated = await negotiate(session, emulator)
        url = f"ws://127.0.0.1:{emulator.port}/client/?hub=chat&id={negotiated['connectionToken']}&access_token={token}"
        ws = await session.ws_connect(url)
        await ws.send_str(HANDSHAKE.decode())
        await ws.receive(timeout=5)
        path = "/api/hubs/chat/:send"
        headers = rest_headers(emulator.access_key, path)
        async with session.post(
            f"{emulator.base}{path}?api-version=2022-06-01", json={"target": "t"}, headers=headers
        ) as r:
            assert r.status == 202
        async with session.post(f"{emulator.base}/client/negotiate?hub=chat&access_token={token}") as r:
            assert r.status == 401
        await ws.close()
    emulator.process.stop()
    log = emulator.process.stderr()
    assert "negotiate hub=chat" in log and "REST POST /api/hubs/chat/:send" in log and "401" in log
    for secret in (emulator.access_key, token, negotiated["connectionToken"]):
        assert secret not in log


# --- a client that stops reading ------------------------------------------------------------------------------


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    elif size < 65536:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _stalled_websocket(
    emulator: EmulatorProcess, connection_token: str
) -> tuple[socket.socket, asyncio.StreamWriter]:
    """A WebSocket client that completes the hub handshake and then never reads again (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", emulator.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /client/?hub=chat&id={connection_token} HTTP/1.1\r\nHost: 127.0.0.1:{emulator.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {client_token(emulator.access_key)}\r\n\r\n"
        ).encode()
    )
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert status.startswith(b"HTTP/1.1 101"), status
    writer.write(_masked_text_frame(HANDSHAKE))
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"\x81\x03{}\x1e"
    return sock, writer


async def test_client_that_stops_reading_is_dropped_and_memory_stays_bounded(run_emulator: RunEmulator) -> None:
    emulator = run_emulator("--max-buffer", "65536")
    message = {"target": "broadcastMessage", "arguments": ["bulk", "x" * 16000]}
    path = "/api/hubs/chat/:send"
    rest = rest_headers(emulator.access_key, path)
    async with aiohttp.ClientSession() as session:
        slow_neg = await negotiate(session, emulator)
        sock, writer = await _stalled_websocket(emulator, slow_neg["connectionToken"])
        fast_neg = await negotiate(session, emulator)
        auth = {"Authorization": f"Bearer {client_token(emulator.access_key)}"}
        fast = await session.ws_connect(
            f"ws://127.0.0.1:{emulator.port}/client/?hub=chat&id={fast_neg['connectionToken']}", headers=auth
        )
        await fast.send_str(HANDSHAKE.decode())
        assert records((await fast.receive(timeout=5)).data) == [{}]
        received = 0
        progress = asyncio.Event()

        async def read_fast() -> None:
            nonlocal received
            async for frame in fast:
                received += sum(1 for r in records(frame.data) if r.get("type") == 1)
                progress.set()

        reader = asyncio.create_task(read_fast())
        baseline = rss_kib(emulator.process.pid)
        exists_url = f"{emulator.base}/api/hubs/chat/connections/{slow_neg['connectionId']}?api-version=2022-06-01"
        exists_headers = rest_headers(emulator.access_key, f"/api/hubs/chat/connections/{slow_neg['connectionId']}")
        sent = 0
        dropped = False
        for _ in range(600):  # at most 9.6 MB in 16 KB messages
            async with session.post(f"{emulator.base}{path}?api-version=2022-06-01", json=message, headers=rest) as r:
                assert r.status == 202
            sent += 1
            if sent % 20 == 0:
                async with session.head(exists_url, headers=exists_headers) as r:
                    if r.status == 404:
                        dropped = True
                        break
        assert dropped, f"slow client still connected after {sent} messages"
        # Dropped after little more than the kernel's socket buffers (4 MiB max here) plus the 64 KiB bound.
        assert sent * 16000 < 6 * 1024 * 1024
        growth = rss_kib(emulator.process.pid) - baseline
        assert growth < 16 * 1024, f"emulator grew by {growth} KiB"
        async with asyncio.timeout(10):
            while received < sent:
                progress.clear()
                await progress.wait()
        assert received == sent  # the healthy peer got every message
        reader.cancel()
        await fast.close()
        writer.close()
        sock.close()
    assert "send buffer exceeded 65536 bytes" in emulator.process.stderr()
