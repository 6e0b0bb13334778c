"""``chat --flow-url``: the app server's hop stream for the Flow view; a bad value is one clear error line."""

from __future__ import annotations

import pytest

from chat.cli import OptionError, main, parse_options


def test_flow_url_is_optional_and_passed_on() -> None:
    assert parse_options([], {}).flow_url is None
    options = parse_options(["--flow-url", "http://127.0.0.1:5000/flow"], {})
    assert options.flow_url == "http://127.0.0.1:5000/flow"


@pytest.mark.parametrize("bad", ["", "127.0.0.1:5000/flow", "ftp://127.0.0.1/flow", "http://", "http://[::1/flow"])
def test_a_flow_url_that_is_not_an_http_url_is_refused(bad: str) -> None:
    with pytest.raises(OptionError, match="--flow-url must be an absolute http:// URL"):
        parse_options(["--flow-url", bad], {})


def test_the_command_says_what_is_wrong_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--flow-url", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chat: error: --flow-url") and err.count("\n") == 1
