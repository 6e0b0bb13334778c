"""The `apim-gateway` process contract: ready line, clean shutdown, clear errors without tracebacks."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from gateway.cli import main
from tests.gateway.conftest import Backend, start_gateway
from tests.support.processes import Process, free_port, script


def run_to_exit(*args: str) -> tuple[int, str, str]:
    """Run `apim-gateway` expecting it to exit by itself; returns (code, stdout, stderr)."""
    process = Process([script("apim-gateway"), *args])
    try:
        code = process.popen.wait(timeout=30)
        assert process.popen.stdout is not None
        out = process.popen.stdout.read().decode()
        return code, out, process.stderr()
    finally:
        process.stop()


def assert_one_clear_line(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("apim-gateway: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_port_in_use(backend: Backend) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_to_exit("--backend", backend.url, "--port", str(port))
    assert code != 0 and out == ""
    assert "Traceback" not in err
    assert f"apim-gateway: error: cannot listen on 127.0.0.1:{port}" in err


def test_invalid_config_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "merged.yaml"
    config.write_text(
        """
apis:
  - {name: ws, type: websocket, suffix: client, service_url: "wss://{signalr}/client/"}
  - name: http
    type: http
    suffix: client/
    service_url: https://{signalr}/client/
    operations: [{name: get, method: GET, url_template: /}]
"""
    )
    code, out, err = run_to_exit("--backend", "http://127.0.0.1:9", "--config", str(config), "--port", "0")
    assert code == 2 and out == ""
    assert_one_clear_line(err, "apis[1] (http).suffix", "'client'", "API 'ws'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--backend", "127.0.0.1:8888"], "--backend"),
        (
            ["--backend", "http://127.0.0.1:9", "--profile", "sse-lp", "--config", "x.yaml"],
            "either --profile or --config",
        ),
        (["--backend", "http://127.0.0.1:9", "--config", "does-not-exist.yaml"], "cannot read config"),
        (["--backend", "http://127.0.0.1:9", "--port", "70000"], "--port"),
    ],
)
def test_bad_arguments(args: list[str], fragment: str) -> None:
    code, out, err = run_to_exit(*args)
    assert code == 2 and out == ""
    assert_one_clear_line(err, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "--backend"),
        (["--backend", "http://127.0.0.1:9", "--port", "abc"], "--port"),
        (["--backend", "http://127.0.0.1:9", "--profile", "nope"], "--profile"),
        (["export", "--profile", "sse-lp"], "--format"),
        (["export", "--profile", "sse-lp", "--format", "nope"], "--format"),
    ],
)
def test_usage_errors_are_one_line_without_the_usage_dump(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_clear_line(err, fragment)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(backend: Backend, sig: signal.Signals) -> None:
    gateway = start_gateway(backend.url, "--profile", "sse-lp", "--with-delete")
    gateway.process.signal(sig)
    assert gateway.process.popen.wait(timeout=10) == 0
    assert gateway.process.stop() == 0
    err = gateway.stderr()
    assert "Traceback" not in err and "shutting down" in err


def test_stdout_is_only_the_ready_line(backend: Backend) -> None:
    gateway = start_gateway(backend.url, "--profile", "websocket", "--with-delete", "--buffer-sse")
    try:
        err = gateway.stderr()
        assert "--with-delete has no effect" in err and "--buffer-sse has no effect" in err
    finally:
        assert gateway.process.stop() == 0
    assert gateway.process.popen.stdout is not None and gateway.process.popen.stdout.closed


async def test_shutdown_closes_open_websockets_and_streams(backend: Backend) -> None:
    ws_gateway = start_gateway(backend.url, "--profile", "websocket")
    sse_gateway = start_gateway(backend.url, "--profile", "sse-lp")
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(URL(ws_gateway.url + "/client/?id=t1", encoded=True))
            await asyncio.wait_for(ws.receive(), 5)  # the backend's hello
            stream = await http.get(sse_gateway.url + "/client/?id=t1", headers={"Accept": "text/event-stream"})
            await asyncio.wait_for(stream.content.readuntil(b"data: event 0\r\n\r\n"), 5)
            started = time.monotonic()
            ws_gateway.process.signal(signal.SIGTERM)
            sse_gateway.process.signal(signal.SIGTERM)
            msg = await asyncio.wait_for(ws.receive(), 5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
            await ws.close()
            codes = await asyncio.gather(
                asyncio.to_thread(ws_gateway.process.popen.wait, 10),
                asyncio.to_thread(sse_gateway.process.popen.wait, 10),
            )
            assert codes == [0, 0]
            assert time.monotonic() - started < 5
            stream.close()
    finally:
        ws_gateway.process.stop()
        sse_gateway.process.stop()
    assert "Traceback" not in ws_gateway.stderr() + sse_gateway.stderr()


async def test_unreachable_backend_gives_apim_500() -> None:
    gateway = start_gateway(f"http://127.0.0.1:{free_port()}", "--profile", "sse-lp")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(gateway.url + "/client/negotiate?hub=chat&access_token=secret-tok") as response:
                assert response.status == 500
                body = await response.read()
                assert body.startswith(b'{ "statusCode": 500, "message": "Internal server error", "activityId": "')
        text = gateway.wait_for_log("backend unreachable")
        assert "Internal server error: backend unreachable (ClientConnectorError)" in text
        assert "secret-tok" not in text
    finally:
        assert gateway.process.stop() == 0
