"""The one-line record summaries the network trace shows for each frame, event, poll body or POST."""

from __future__ import annotations

import pytest

from signalr.client.trace import describe_records, is_only_pings

PING = b'{"type":6}\x1e'
ECHO = b'{"type":1,"target":"echo","arguments":["a","b"]}\x1e'


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "empty"),
        (PING, "Ping"),
        (PING + ECHO, "2 records: Ping, Invocation echo"),
        (PING * 6, "6 records: Ping, Ping, Ping, Ping, +2 more"),
        (b'{"type":1,"ta', "13 bytes of an incomplete record"),
        (PING + b'{"ty', "Ping, 4 bytes of an incomplete record"),
        (PING + PING + b'{"ty', "2 records: Ping, Ping, 4 bytes of an incomplete record"),
        (b"{}\x1e" + ECHO, "2 records: handshake response, Invocation echo"),
        (b"nonsense\x1e", "malformed record"),
    ],
    ids=["empty", "one", "two", "over-limit", "only-partial", "one-and-partial", "two-and-partial", "handshake", "bad"],
)
def test_describe_records(data: bytes, text: str) -> None:
    assert describe_records(data) == text


def test_only_pings_are_traced_as_pings() -> None:
    assert is_only_pings(PING) and is_only_pings(PING + PING)
    assert not is_only_pings(b"") and not is_only_pings(PING + ECHO) and not is_only_pings(PING + b'{"ty')
