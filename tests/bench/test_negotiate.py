"""``bench.negotiate`` still runs: both servers, one short round, the ratio table printed; and its load generator reads
answers however the bytes arrive. Nothing here judges speed."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.negotiate import _Connection
from tests.support.processes import REPO

BODY = b'{"connectionId":"abc"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCONTENT-LENGTH: 22\r\nDate: x\r\n\r\n" + BODY


def run_negotiate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.negotiate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_both_servers_run_and_the_table_shows_their_ratio(tmp_path: Path) -> None:
    out = tmp_path / "negotiate.json"
    result = run_negotiate("--budget", "10", "--rounds", "1", "--requests", "200", "--clients", "4", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "round 1 pyjwt:" in result.stdout and "round 1 emulator:" in result.stdout
    assert re.search(r"negotiate, 4 connections \(requests/s, ↑ better\) .* \d+\.\d+x", result.stdout), result.stdout
    summary = json.loads(out.read_text(encoding="utf-8"))
    rates = summary["negotiates_per_s"]
    assert len(rates["pyjwt"]) == len(rates["emulator"]) == 1 and rates["emulator"][0] > 0 and rates["ratio"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clients", "0"], "--clients must be 1..256"),
        (["--requests", "10"], "--requests 100..1000000"),
        (["--budget", "5"], "--budget must be between 10 and 300"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run_negotiate(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_an_answer_split_anywhere_is_read_whole_and_the_next_one_too() -> None:
    async def scenario() -> list[tuple[int, bytes]]:
        class Transport(asyncio.Transport):
            def write(self, data: bytes | bytearray | memoryview) -> None:
                pass

        connection = _Connection()
        connection.connection_made(Transport())
        answers: list[tuple[int, bytes]] = []
        for split in (1, len(ANSWER) - 20, len(ANSWER) - 1):
            pending = asyncio.ensure_future(connection.exchange(b"request"))
            await asyncio.sleep(0)
            connection.data_received(ANSWER[:split])
            await asyncio.sleep(0)
            assert not pending.done()
            connection.data_received(ANSWER[split:])
            answers.append(await pending)
        return answers

    assert asyncio.run(scenario()) == [(200, BODY)] * 3
