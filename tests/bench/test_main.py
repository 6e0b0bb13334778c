"""``python -m bench``, the runner of every benchmark module: its help and its errors, as a user sees them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.__main__ import modules
from tests.support.processes import REPO


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_module_and_exits_0(flag: str) -> None:
    result = run_bench(flag)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: python -m bench [-h] [name ...]\n")
    listed = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}
    for name in modules():
        assert name in listed, result.stdout
    # Each module is described by the first sentence of its docstring, not cut off mid-sentence.
    assert "The emulator's fan-out: REST broadcasts to K WebSocket clients" in result.stdout
    assert "python -m bench.<name> --help" in result.stdout
    assert listed["plots"].split(None, 1)[1] == "run nothing, only draw the plots from the last results"
    assert "no benchmark named" not in result.stdout


def test_help_wins_over_names_and_runs_nothing() -> None:
    result = run_bench("codec", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m bench")
    assert "== bench.codec" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], f"bench: no benchmark named nope (available: {', '.join(modules())})"),
        (["--budget", "3"], "bench: unknown option --budget (options of one module: python -m bench.<name> --help)"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_bench(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [message]
