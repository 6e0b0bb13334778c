"""``--loop auto|asyncio|uvloop`` (signalr.event_loop): which loop each choice runs on, and the usage error every
server command gives when uvloop is asked for but not installed."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from signalr.event_loop import (
    EventLoop,
    LoopUnavailableError,
    add_loop_argument,
    choose_loop,
    running_loop_name,
    system_error,
)
from tests.support.processes import script


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import uvloop`` fails in this process, as where it is not installed."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_asyncio_is_asyncios_own_loop() -> None:
    loop = choose_loop("asyncio")
    assert loop.name == "asyncio"
    ran_on = loop.run(_running_loop())
    assert type(ran_on).__module__.startswith("asyncio")
    assert ran_on.is_closed()


def test_uvloop_runs_on_uvloop_and_auto_picks_it_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    for choice in ("uvloop", "auto"):
        loop = choose_loop(choice)
        assert loop.name == "uvloop"
        ran_on = loop.run(_running_loop())
        assert isinstance(ran_on, uvloop.Loop)
        assert ran_on.is_closed()


@pytest.mark.usefixtures("no_uvloop")
def test_auto_without_uvloop_is_asyncio() -> None:
    loop = choose_loop("auto")
    assert loop.name == "asyncio"
    assert type(loop.run(_running_loop())).__module__.startswith("asyncio")


@pytest.mark.usefixtures("no_uvloop")
def test_uvloop_asked_for_but_missing_names_the_install_command() -> None:
    with pytest.raises(LoopUnavailableError, match=r"uvloop is not installed \(pip install uvloop\)"):
        choose_loop("uvloop")


def test_run_returns_the_result_and_raises_what_main_raises() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise KeyError("boom")

    loop = choose_loop("asyncio")
    assert loop.run(answer()) == 42
    with pytest.raises(KeyError, match="boom"):
        loop.run(fail())


def _parse(*args: str) -> EventLoop:
    parser = argparse.ArgumentParser(prog="server")
    add_loop_argument(parser)
    loop: EventLoop = parser.parse_args(list(args)).loop
    return loop


def test_the_option_defaults_to_auto() -> None:
    assert _parse() == choose_loop("auto")
    assert _parse("--loop", "asyncio").name == "asyncio"


def test_an_unknown_loop_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("--loop", "trio")
    assert exit_info.value.code == 2
    assert "argument --loop: invalid choice 'trio' (choose from auto, asyncio, uvloop)" in capsys.readouterr().err


# --- each server command, as a user runs it where uvloop is not installed --------------------------------------


def hide_uvloop(directory: Path) -> dict[str, str]:
    """Environment variables under which Python finds a ``uvloop`` (written to ``directory``) that fails to import,
    as if it were not installed."""
    package = directory / "uvloop"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError(\"No module named 'uvloop'\")\n", encoding="utf-8")
    return {"PYTHONPATH": str(directory)}


@pytest.fixture
def hidden_uvloop(tmp_path: Path) -> dict[str, str]:
    return hide_uvloop(tmp_path)


@pytest.mark.parametrize(
    ("command", "args", "prefix"),
    [
        ("signalr-emulator", ["--port", "0"], "signalr-emulator: error: "),
        ("webpubsub-emulator", ["--port", "0"], "webpubsub-emulator: error: "),
        ("apim-gateway", ["--backend", "http://127.0.0.1:9", "--port", "0"], "apim-gateway: error: "),
        ("chat-server", ["--port", "0"], "error: "),
    ],
)
def test_every_server_refuses_loop_uvloop_without_uvloop_in_one_line_exit_2(
    hidden_uvloop: dict[str, str], command: str, args: list[str], prefix: str
) -> None:
    result = subprocess.run(
        [script(command), *args, "--loop", "uvloop"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **hidden_uvloop},
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix + "argument --loop: uvloop is not installed (pip install uvloop)")


# --- what differs between the two loops --------------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_running_loop_name_is_the_loop_in_use(choice: str) -> None:
    if choice == "uvloop":
        pytest.importorskip("uvloop")

    async def name() -> str:
        return running_loop_name()

    assert choose_loop(choice).run(name()) == choice


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_a_udp_port_in_use_is_address_in_use_on_either_loop(choice: str) -> None:
    if choice == "uvloop":
        pytest.importorskip("uvloop")

    async def bind(port: int) -> OSError:
        loop = asyncio.get_running_loop()
        with pytest.raises(OSError) as raised:
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", port))
        return raised.value

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        error = choose_loop(choice).run(bind(taken.getsockname()[1]))
    assert system_error(error).errno == errno.EADDRINUSE


def test_system_error_leaves_an_error_with_errno_as_it_is() -> None:
    error = OSError(errno.EACCES, "Permission denied")
    error.__cause__ = OSError(errno.EADDRINUSE, "Address already in use")
    assert system_error(error) is error
