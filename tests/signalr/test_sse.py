"""Server-Sent Events framing for the SignalR transport (docs/protocol.md §3.6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalr.json_protocol import PING_RECORD, encode_many
from signalr.sse import SSE_PREAMBLE, SseDecoder, encode_event


def test_preamble() -> None:
    assert SSE_PREAMBLE == b":\r\n"


@pytest.mark.parametrize(
    ("payload", "wire"),
    [
        (PING_RECORD, b'data: {"type":6}\x1e\r\n\r\n'),
        (b"a\nb", b"data: a\r\ndata: b\r\n\r\n"),
        (b"a\r\nb", b"data: a\r\ndata: b\r\n\r\n"),  # one trailing \r per line trimmed
        (b"a\r\r\nb", b"data: a\r\r\ndata: b\r\n\r\n"),  # only one
        (b"a\n", b"data: a\r\ndata: \r\n\r\n"),
        (b"", b"data: \r\n\r\n"),
    ],
)
def test_encode_event(payload: bytes, wire: bytes) -> None:
    assert encode_event(payload) == wire


def test_decode_stream_with_preamble_and_several_records_per_event() -> None:
    records = encode_many([])  # empty
    batch = PING_RECORD + b'{"type":1,"target":"echo","arguments":["a","b"]}\x1e'
    stream = SSE_PREAMBLE + encode_event(b"{}\x1e") + encode_event(batch) + records
    assert SseDecoder().feed(stream) == [b"{}\x1e", batch]


def test_multi_line_payload_round_trip() -> None:
    assert SseDecoder().feed(encode_event(b"line1\nline2\n\nline4")) == [b"line1\nline2\n\nline4"]


def test_crlf_split_across_chunks() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [b"x"]


def test_lf_only_and_no_space_after_colon() -> None:
    assert SseDecoder().feed(b"data:x\ndata:  y\n\n") == [b"x\n y"]


def test_comments_other_fields_and_empty_events() -> None:
    decoder = SseDecoder()
    stream = b":\r\n: keep-alive\r\n\r\nevent: ping\r\nid: 7\r\nretry: 10\r\n\r\ndata\r\n\r\ndata: z\r\n\r\n\r\n"
    # A comment-only or field-only block dispatches nothing; a bare "data" line is an empty data line.
    assert decoder.feed(stream) == [b"", b"z"]


def test_byte_by_byte() -> None:
    payloads = [b"{}\x1e", b'{"type":6}\x1e', b"multi\nline"]
    stream = SSE_PREAMBLE + b"".join(encode_event(p) for p in payloads)
    decoder = SseDecoder()
    got: list[bytes] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == payloads


def test_incomplete_event_is_held() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r\n") == []
    assert decoder.feed(b"\r\n") == [b"a"]


def test_oversized_event_many_lines() -> None:
    decoder = SseDecoder(max_event_size=10)
    with pytest.raises(ValueError, match="SSE event exceeds 10 bytes"):
        decoder.feed(b"data: 123456\r\ndata: 789012\r\n")


def test_oversized_line_without_newline() -> None:
    decoder = SseDecoder(max_event_size=16)
    assert decoder.feed(b"data: 12345") == []  # 11 bytes buffered
    with pytest.raises(ValueError, match="SSE event exceeds 16 bytes"):
        decoder.feed(b"678901")  # 17 bytes and still no end of line


def test_event_at_the_limit_passes() -> None:
    assert SseDecoder(max_event_size=16).feed(encode_event(b"x" * 10)) == [b"x" * 10]


def test_a_complete_oversized_event_in_one_chunk_is_refused() -> None:
    decoder = SseDecoder(max_event_size=1000)
    with pytest.raises(ValueError, match="SSE event exceeds 1000 bytes"):
        decoder.feed(encode_event(b"x" * 1001))


def test_an_oversized_event_split_over_many_data_lines_is_refused() -> None:
    decoder = SseDecoder(max_event_size=1000)
    with pytest.raises(ValueError, match="SSE event exceeds 1000 bytes"):
        decoder.feed(encode_event(b"\n".join([b"y" * 100] * 11)))


def test_the_newlines_joining_data_lines_count_towards_the_limit() -> None:
    # 600 one-byte lines make a 1199-byte event; endless empty "data:" lines must not grow memory unbounded either.
    with pytest.raises(ValueError, match="SSE event exceeds 1000 bytes"):
        SseDecoder(max_event_size=1000).feed(b"data: a\n" * 600)
    decoder = SseDecoder(max_event_size=1000)
    with pytest.raises(ValueError, match="SSE event exceeds 1000 bytes"):
        for _ in range(100):
            decoder.feed(b"data:\n" * 1000)
    assert SseDecoder(max_event_size=1000).feed(b"data:\n" * 1001 + b"\n") == [b"\n" * 1000]


def test_events_up_to_the_limit_pass() -> None:
    decoder = SseDecoder(max_event_size=1000)
    assert decoder.feed(encode_event(b"z" * 1000) + encode_event(b"ok")) == [b"z" * 1000, b"ok"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(max_size=60).filter(lambda b: b"\r" not in b), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=1000), max_size=6),
)
def test_round_trip_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    stream = SSE_PREAMBLE + b"".join(encode_event(p) for p in payloads)
    decoder = SseDecoder()
    got: list[bytes] = []
    start = 0
    for point in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        got += decoder.feed(stream[start:point])
        start = point
    assert got == payloads


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_arbitrary_bytes_decode_or_raise_value_error(chunks: list[bytes]) -> None:
    decoder = SseDecoder(max_event_size=64)
    try:
        for chunk in chunks:
            for event in decoder.feed(chunk):
                assert len(event) <= 64 + 64  # data lines joined by "\n"
    except ValueError:
        pass
