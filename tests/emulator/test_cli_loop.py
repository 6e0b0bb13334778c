"""``signalr-emulator --loop``: the same service on asyncio's loop and on uvloop, the loop named in its startup log."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.signalr.test_event_loop import hide_uvloop

from .conftest import HANDSHAKE, EmulatorProcess, client_token, records
from .test_process import negotiate, rest_headers

RunEmulator = Callable[..., EmulatorProcess]

LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"),
    ),
]


@pytest.mark.parametrize("loop", LOOPS)
async def test_a_broadcast_reaches_a_websocket_client_on_either_loop(run_emulator: RunEmulator, loop: str) -> None:
    emulator = run_emulator("--loop", loop)
    await emulator.process.stderr_line(rf"listening on .*event loop: {loop}\)")
    async with aiohttp.ClientSession() as session:
        negotiated = await negotiate(session, emulator)
        ws = await session.ws_connect(
            f"ws://127.0.0.1:{emulator.port}/client/?hub=chat&id={negotiated['connectionToken']}",
            headers={"Authorization": f"Bearer {client_token(emulator.access_key)}"},
        )
        await ws.send_str(HANDSHAKE.decode())
        assert records((await ws.receive(timeout=5)).data) == [{}]
        path = "/api/hubs/chat/:send"
        async with session.post(
            f"{emulator.base}{path}?api-version=2022-06-01",
            json={"target": "broadcastMessage", "arguments": ["bench", loop]},
            headers=rest_headers(emulator.access_key, path),
        ) as response:
            assert response.status == 202
        assert records((await ws.receive(timeout=5)).data) == [
            {"type": 1, "target": "broadcastMessage", "arguments": ["bench", loop]}
        ]
        await ws.close()
    assert emulator.process.stop() == 0
    assert "Traceback" not in emulator.process.stderr()


async def test_auto_runs_on_asyncio_where_uvloop_is_not_installed(run_emulator: RunEmulator, tmp_path: Path) -> None:
    emulator = run_emulator(env=hide_uvloop(tmp_path))
    await emulator.process.stderr_line(r"listening on .*event loop: asyncio\)")
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.base}/api/v1/health") as response:
        assert response.status == 200
