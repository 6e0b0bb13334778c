"""`chat` options: command line over environment over .env; bad options give one line and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chat.cli import DEFAULT_URL, ChatOptions, OptionError, parse_options
from signalr.client import TransportChoice
from tests.support.processes import script


def test_defaults() -> None:
    options = parse_options([], environ={})
    assert options == ChatOptions(DEFAULT_URL, TransportChoice.WEBSOCKETS, None, None)
    assert options.headers == {}


def test_command_line_wins_over_environment() -> None:
    env = {"CHAT_URL": "http://env:1/chat", "CHAT_TRANSPORT": "longpolling", "CHAT_NAME": "envname"}
    options = parse_options(["--url", "http://cli:2/chat", "--transport", "sse", "--name", "cli"], environ=env)
    assert (options.url, options.transport, options.name) == (
        "http://cli:2/chat",
        TransportChoice.SERVER_SENT_EVENTS,
        "cli",
    )
    options = parse_options([], environ=env)
    assert (options.url, options.transport, options.name) == (
        "http://env:1/chat",
        TransportChoice.LONG_POLLING,
        "envname",
    )


def test_subscription_key_becomes_a_header_and_is_not_in_repr() -> None:
    options = parse_options([], environ={"APIM_SUBSCRIPTION_KEY": "k-123-secret"})
    assert options.headers == {"Ocp-Apim-Subscription-Key": "k-123-secret"}
    assert "k-123-secret" not in repr(options)


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--url", "ftp://x/chat"], "--url must be an absolute http"),
        (["--url", "chat"], "--url must be an absolute http"),
        (["--url", "http://h:99999/chat"], "invalid port"),
        (["--url", "http://:5000/chat"], "--url must be an absolute http"),
        # urlsplit itself refuses an unclosed IPv6 bracket: one line, not a traceback.
        (["--url", "http://[::1/chat"], "--url must be an absolute http"),
        (["--transport", "carrier-pigeon"], "--transport must be one of websockets, sse, longpolling, sse-lp"),
        (["--name", "_SYSTEM_"], "--name: the name must not start with '_'"),
        (["--name", "<b>"], "--name: the name must not contain '<' or '>'"),
        (["--name", ""], "--name: the name must not be empty"),
        (["--subscription-key", " "], "--subscription-key must be a non-empty"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--url"], "expected one argument"),
    ],
)
def test_bad_options_raise_a_clear_error(argv: list[str], phrase: str) -> None:
    with pytest.raises(OptionError, match=None) as info:
        parse_options(argv, environ={})
    assert phrase in str(info.value)


def run_chat(*argv: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("chat"), *argv], capture_output=True, text=True, timeout=30, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )


def test_bad_option_process_prints_one_line_and_exits_2(tmp_path: object) -> None:
    result = run_chat("--transport", "nope", "--subscription-key", "TOPSECRETKEY", cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == ["chat: error: --transport must be one of websockets, sse, longpolling, sse-lp"]
    assert "Traceback" not in result.stderr and "TOPSECRETKEY" not in result.stderr


def test_malformed_url_process_prints_one_line_and_exits_2(tmp_path: object) -> None:
    result = run_chat("--url", "http://[::1/chat", cwd=str(tmp_path))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"chat: error: --url must be an absolute http:// or https:// URL of the hub, e.g. {DEFAULT_URL}"
    ]


def test_dotenv_in_the_current_directory_is_read(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / ".env").write_text("CHAT_TRANSPORT=smoke-signals\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder)}
    result = run_chat(env=env, cwd=str(folder))
    assert result.returncode == 2
    assert "--transport must be one of" in result.stderr
    # The command line still wins over .env.
    result = run_chat("--transport", "sse", "--name", "_x", env=env, cwd=str(folder))
    assert result.returncode == 2 and "--name" in result.stderr


def test_help_exits_0() -> None:
    result = subprocess.run([sys.executable, "-m", "chat.cli", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "--subscription-key" in result.stdout
