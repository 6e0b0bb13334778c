"""SseDecoder bounds every event, including one that arrives complete in a single chunk."""

from __future__ import annotations

import pytest

from signalr.sse import SseDecoder, encode_event


def test_a_complete_oversized_event_in_one_chunk_is_refused() -> None:
    decoder = SseDecoder(max_event_size=1000)
    with pytest.raises(ValueError, match="SSE event exceeds 1000 bytes"):
        decoder.feed(encode_event(b"x" * 1001))


def test_an_oversized_event_split_over_many_data_lines_is_refused() -> None:
    decoder = SseDecoder(max_event_size=1000)
    with pytest.raises(ValueError, match="SSE event exceeds 1000 bytes"):
        decoder.feed(encode_event(b"\n".join([b"y" * 100] * 11)))


def test_events_up_to_the_limit_pass() -> None:
    decoder = SseDecoder(max_event_size=1000)
    assert decoder.feed(encode_event(b"z" * 1000) + encode_event(b"ok")) == [b"z" * 1000, b"ok"]
