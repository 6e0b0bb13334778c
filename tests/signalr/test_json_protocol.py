"""The JSON hub protocol codec: exact wire bytes, every message type, framing, hostile input (docs/protocol.md §4)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalr.handshake import (
    decode_handshake_response,
)
from signalr.json_protocol import PING_RECORD, RecordReader, decode, encode, encode_many, load_json, split_records
from signalr.messages import (
    DEFAULT_MAX_MESSAGE_SIZE,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    MessageTooLarge,
    MessageType,
    Ping,
    ProtocolError,
    StreamInvocation,
    StreamItem,
)

WIRE: list[tuple[HubMessage, bytes]] = [
    # The Chatroom's wire form (§5): no invocationId.
    (
        Invocation("broadcastMessage", ("alice", "hi")),
        b'{"type":1,"target":"broadcastMessage","arguments":["alice","hi"]}',
    ),
    (
        Invocation("echo", ("a", "b"), invocation_id="0"),
        b'{"type":1,"invocationId":"0","target":"echo","arguments":["a","b"]}',
    ),
    (
        Invocation("upload", (), stream_ids=("1", "2")),
        b'{"type":1,"target":"upload","arguments":[],"streamIds":["1","2"]}',
    ),
    (StreamItem("7", {"n": 1}), b'{"type":2,"invocationId":"7","item":{"n":1}}'),
    (StreamItem("7", None), b'{"type":2,"invocationId":"7","item":null}'),
    (Completion.with_result("1", 42), b'{"type":3,"invocationId":"1","result":42}'),
    (Completion.with_result("1", None), b'{"type":3,"invocationId":"1","result":null}'),  # result null ≠ void
    (Completion("1"), b'{"type":3,"invocationId":"1"}'),
    (Completion.with_error("1", "boom"), b'{"type":3,"invocationId":"1","error":"boom"}'),
    (
        StreamInvocation("9", "counter", (10, 500)),
        b'{"type":4,"invocationId":"9","target":"counter","arguments":[10,500]}',
    ),
    (
        StreamInvocation("9", "s", (), ("3",)),
        b'{"type":4,"invocationId":"9","target":"s","arguments":[],"streamIds":["3"]}',
    ),
    (CancelInvocation("9"), b'{"type":5,"invocationId":"9"}'),
    (Ping(), b'{"type":6}'),
    (Close(), b'{"type":7}'),
    (
        Close("Server is going away", allow_reconnect=True),
        b'{"type":7,"error":"Server is going away","allowReconnect":true}',
    ),
]


@pytest.mark.parametrize(("message", "wire"), WIRE)
def test_encode_exact_bytes(message: HubMessage, wire: bytes) -> None:
    assert encode(message) == wire + b"\x1e"


@pytest.mark.parametrize(("message", "wire"), WIRE)
def test_decode_exact_bytes(message: HubMessage, wire: bytes) -> None:
    assert decode(wire) == message


def test_result_null_and_void_differ() -> None:
    null, void = decode(b'{"type":3,"invocationId":"1","result":null}'), decode(b'{"type":3,"invocationId":"1"}')
    assert isinstance(null, Completion) and isinstance(void, Completion)
    assert null.has_result and not void.has_result
    assert null != void


def test_ping_record_constant() -> None:
    assert PING_RECORD == b'{"type":6}\x1e'
    assert encode(Ping()) is PING_RECORD
    assert [t.value for t in MessageType] == [1, 2, 3, 4, 5, 6, 7]


def test_headers_are_encoded_and_decoded_but_not_compared() -> None:
    message = Invocation("x", (1,), headers={"k": "v"})
    assert encode(message) == b'{"type":1,"headers":{"k":"v"},"target":"x","arguments":[1]}\x1e'
    again = decode(encode(message)[:-1])
    assert isinstance(again, Invocation) and again.headers == {"k": "v"}
    # signalrcore leaks Authorization into headers (Appendix A): they never make two invocations differ.
    assert again == Invocation("x", (1,))


def test_non_ascii_is_utf8_not_escaped() -> None:
    assert encode(Invocation("m", ("héllo ✓ 😀",))) == '{"type":1,"target":"m","arguments":["héllo ✓ 😀"]}\x1e'.encode()


def test_lone_surrogate_from_a_peer_round_trips_escaped() -> None:
    # '"\\ud800"' is legal JSON but has no UTF-8 form; re-encoding it (e.g. for a broadcast) must not crash.
    message = decode(b'{"type":1,"target":"broadcastMessage","arguments":["a","\\ud800x"]}')
    wire = encode(message)
    assert wire == b'{"type":1,"target":"broadcastMessage","arguments":["a","\\ud800x"]}\x1e'
    assert decode(wire[:-1]) == message


def test_encode_refuses_values_json_cannot_carry() -> None:
    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError):
            encode(Invocation("m", (value,)))


def test_encode_many_concatenates_records() -> None:
    messages: list[HubMessage] = [Ping(), Invocation("a", ()), Close()]
    assert encode_many(messages) == b'{"type":6}\x1e{"type":1,"target":"a","arguments":[]}\x1e{"type":7}\x1e'
    assert encode_many([]) == b""


def test_unknown_fields_are_ignored() -> None:
    assert decode(b'{"type":6,"future":true}') == Ping()
    assert decode(b'{"type":1,"target":"t","arguments":[],"extra":{"x":1}}') == Invocation("t")


def test_null_optional_fields_count_as_absent() -> None:
    assert decode(b'{"type":1,"invocationId":null,"target":"t","arguments":[],"streamIds":null}') == Invocation("t")
    assert decode(b'{"type":7,"error":null,"allowReconnect":"yes"}') == Close()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"\xff\xfe", "Message is not valid UTF-8."),
        (b'{"type":1,"target":"\xc3"}', "Message is not valid UTF-8."),
        (b"", "Message is not valid JSON: Expecting value at position 0."),
        (b"{", "Message is not valid JSON: Expecting property name enclosed in double quotes at position 1."),
        (b'{"type":6} trailing', "Message is not valid JSON: Extra data at position 11."),
        (b"[]", "Message must be a JSON object."),
        (b'"text"', "Message must be a JSON object."),
        (b"{}", "Missing required property 'type'."),
        (b'{"type":null}', "Missing required property 'type'."),
        (b'{"type":"1"}', "Expected 'type' to be of type Integer."),
        (b'{"type":true}', "Expected 'type' to be of type Integer."),
        (b'{"type":1.0}', "Expected 'type' to be of type Integer."),
        (b'{"type":99}', "Unknown message type '99'."),
        (b'{"type":0}', "Unknown message type '0'."),
        (b'{"type":1,"arguments":[]}', "Missing required property 'target'."),
        (b'{"type":1,"target":5,"arguments":[]}', "Expected 'target' to be of type String."),
        (b'{"type":1,"target":"t"}', "Missing required property 'arguments'."),
        (b'{"type":1,"target":"t","arguments":{}}', "Expected 'arguments' to be of type Array."),
        (b'{"type":1,"target":"t","arguments":null}', "Expected 'arguments' to be of type Array."),
        (b'{"type":1,"invocationId":1,"target":"t","arguments":[]}', "Expected 'invocationId' to be of type String."),
        (b'{"type":1,"target":"t","arguments":[],"streamIds":[1]}', "Expected 'streamIds' to be an Array of String."),
        (b'{"type":1,"target":"t","arguments":[],"streamIds":"1"}', "Expected 'streamIds' to be an Array of String."),
        (b'{"type":2,"item":1}', "Missing required property 'invocationId'."),
        (b'{"type":3}', "Missing required property 'invocationId'."),
        (
            b'{"type":3,"invocationId":"1","result":1,"error":"x"}',
            "The 'error' and 'result' properties are mutually exclusive.",
        ),
        (b'{"type":3,"invocationId":"1","error":5}', "Expected 'error' to be of type String."),
        (b'{"type":4,"invocationId":"1","arguments":[]}', "Missing required property 'target'."),
        (b'{"type":4,"target":"t","arguments":[]}', "Missing required property 'invocationId'."),
        (b'{"type":5}', "Missing required property 'invocationId'."),
        (b'{"type":7,"error":5}', "Expected 'error' to be of type String."),
    ],
)
def test_decode_errors_are_protocol_errors_with_clear_messages(record: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(record)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("record", "message"),
    [
        # Hostile JSON must end as ProtocolError, not ValueError/RecursionError escaping `except ProtocolError`.
        (
            b'{"type":1,"target":"t","arguments":[' + b"9" * 5000 + b"]}",
            "Message is not valid JSON: a number has too many digits.",
        ),
        (b"[" * 100_000, "Message is not valid JSON: it is nested too deeply."),
        (b'{"type":1,"target":"t","arguments":[NaN]}', "Message is not valid JSON: NaN is not a JSON value."),
        (b'{"type":1,"target":"t","arguments":[Infinity]}', "Message is not valid JSON: Infinity is not a JSON value."),
        (
            b'{"type":1,"target":"t","arguments":[-Infinity]}',
            "Message is not valid JSON: -Infinity is not a JSON value.",
        ),
        (
            b'{"type":1,"target":"t","arguments":[1e400]}',
            "Message is not valid JSON: the number 1e400 is out of range.",
        ),
    ],
)
def test_hostile_json_is_a_protocol_error(record: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(record)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff", "Message is not valid UTF-8."),
        (b"", "Message is not valid JSON: Expecting value at position 0."),
        (b"[1,]", "Message is not valid JSON: Expecting value at position 3."),
        (b"[NaN]", "Message is not valid JSON: NaN is not a JSON value."),
        (b"-Infinity", "Message is not valid JSON: -Infinity is not a JSON value."),
        (b"1e999", "Message is not valid JSON: the number 1e999 is out of range."),
        (b"9" * 5000, "Message is not valid JSON: a number has too many digits."),
        (b"[" * 100_000 + b"]" * 100_000, "Message is not valid JSON: it is nested too deeply."),
        (b'{"a":1} x', "Message is not valid JSON: Extra data at position 8."),
    ],
)
def test_load_json_refuses_what_a_peer_could_not_parse(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        load_json(data)
    assert str(caught.value) == message


def test_load_json_is_public_and_returns_any_json_value() -> None:
    import signalr.json_protocol

    assert "load_json" in signalr.json_protocol.__all__
    assert load_json(b'{"target":"t","arguments":[1,1.5,"\xc3\xa9",null,[true]]}') == {
        "target": "t",
        "arguments": [1, 1.5, "\u00e9", None, [True]],
    }
    assert load_json(b" [] ") == [] and load_json(b'"s"') == "s" and load_json(b"0") == 0


def test_arguments_keep_json_types() -> None:
    message = decode(b'{"type":1,"target":"t","arguments":[1,1.5,true,null,"s",[1],{"a":[]}]}')
    assert isinstance(message, Invocation)
    assert message.arguments == (1, 1.5, True, None, "s", [1], {"a": []})


# -- RecordReader --------------------------------------------------------------------------------


def test_several_records_in_one_buffer() -> None:
    reader = RecordReader()
    assert reader.feed(b'{"type":6}\x1e{"type":7}\x1e') == [b'{"type":6}', b'{"type":7}']
    assert reader.pending == 0


def test_partial_records_byte_by_byte() -> None:
    stream = encode_many([Invocation("a", ("x",)), Ping(), Completion.with_result("1", [1, 2])])
    reader = RecordReader()
    records: list[bytes] = []
    for i in range(len(stream)):
        records += reader.feed(stream[i : i + 1])
    assert [decode(r) for r in records] == [Invocation("a", ("x",)), Ping(), Completion.with_result("1", [1, 2])]
    assert reader.pending == 0


def test_tail_waits_for_its_separator() -> None:
    reader = RecordReader()
    assert reader.feed(b'{"type":6}\x1e{"ty') == [b'{"type":6}']
    assert reader.pending == 4
    assert reader.feed(b"") == []
    assert reader.feed(b'pe":7}\x1e') == [b'{"type":7}']


def test_handshake_followed_by_records_in_one_buffer() -> None:
    records = RecordReader().feed(
        b'{}\x1e{"type":1,"target":"broadcastMessage","arguments":["_SYSTEM_","x JOINED"]}\x1e'
    )
    assert decode_handshake_response(records[0]) is None
    assert decode(records[1]) == Invocation("broadcastMessage", ("_SYSTEM_", "x JOINED"))


def test_empty_records_are_returned_for_the_caller_to_reject() -> None:
    records = RecordReader().feed(b"\x1e\x1e")
    assert records == [b"", b""]
    with pytest.raises(ProtocolError):
        decode(records[0])


def test_record_of_exactly_max_size_passes() -> None:
    reader = RecordReader(max_message_size=10)
    assert reader.feed(b"0123456789\x1e") == [b"0123456789"]


def test_oversized_complete_record() -> None:
    reader = RecordReader(max_message_size=10)
    with pytest.raises(MessageTooLarge) as caught:
        reader.feed(b"01234567890\x1e")
    assert str(caught.value) == "The message exceeded the maximum message size of 10 bytes."
    assert isinstance(caught.value, ProtocolError)


def test_oversized_partial_tail_is_refused_before_its_separator() -> None:
    reader = RecordReader(max_message_size=10)
    assert reader.feed(b"012345") == []
    with pytest.raises(MessageTooLarge):
        reader.feed(b"67890")  # 11 bytes waiting: no need to wait for the rest
    assert reader.pending == 0  # the buffer is dropped, not kept growing


def test_oversized_tail_after_good_records() -> None:
    reader = RecordReader(max_message_size=10)
    with pytest.raises(MessageTooLarge):
        reader.feed(b"ok\x1e" + b"x" * 11)
    assert reader.pending == 0


def test_default_max_message_size_is_1_mb() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 1024 * 1024
    reader = RecordReader()
    with pytest.raises(MessageTooLarge):
        reader.feed(b"x" * (1024 * 1024 + 1))


def test_split_records_needs_a_complete_buffer() -> None:
    assert split_records(b'{"type":6}\x1e{"type":7}\x1e') == [b'{"type":6}', b'{"type":7}']
    with pytest.raises(ProtocolError) as caught:
        split_records(b'{"type":6}\x1e{"type":7}')
    assert str(caught.value) == "Message is incomplete."
    with pytest.raises(ProtocolError):
        split_records(b"")


# -- properties --------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12
)
ids = st.text(min_size=1, max_size=8)
messages = st.one_of(
    st.builds(
        Invocation,
        target=st.text(min_size=1),
        arguments=st.lists(json_value, max_size=4).map(tuple),
        invocation_id=st.none() | ids,
        stream_ids=st.none() | st.lists(ids, min_size=1, max_size=3).map(tuple),
    ),
    st.builds(StreamItem, ids, json_value),
    st.builds(Completion.with_result, ids, json_value),
    st.builds(Completion.with_error, ids, st.text()),
    st.builds(Completion, ids),
    st.builds(StreamInvocation, ids, st.text(min_size=1), st.lists(json_value, max_size=3).map(tuple)),
    st.builds(CancelInvocation, ids),
    st.just(Ping()),
    st.builds(Close, st.none() | st.text(), st.none() | st.booleans()),
)


def _same(a: Any, b: Any) -> bool:
    # -0.0 == 0.0 and 1 == 1.0 hide type changes; compare the canonical encodings as well.
    return bool(a == b) and encode(a) == encode(b)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_round_trip_any_message(message: HubMessage) -> None:
    wire = encode(message)
    assert wire.endswith(b"\x1e") and wire.count(b"\x1e") == 1  # JSON escapes 0x1E inside strings
    assert _same(decode(wire[:-1]), message)


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, min_size=1, max_size=6), st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_any_split_of_a_stream_yields_the_same_messages(batch: list[HubMessage], cuts: list[int]) -> None:
    stream = encode_many(batch)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    reader = RecordReader()
    records: list[bytes] = []
    start = 0
    for point in [*points, len(stream)]:
        records += reader.feed(stream[start:point])
        start = point
    assert reader.pending == 0
    decoded = [decode(r) for r in records]
    assert len(decoded) == len(batch)
    assert all(_same(a, b) for a, b in zip(decoded, batch, strict=True))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_arbitrary_chunks_split_or_raise_message_too_large(chunks: list[bytes]) -> None:
    reader = RecordReader(max_message_size=32)
    try:
        for chunk in chunks:
            for record in reader.feed(chunk):
                assert len(record) <= 32 and b"\x1e" not in record
    except MessageTooLarge:
        assert reader.pending == 0


@pytest.mark.parametrize(
    "value",
    [b"raw", {1, 2}, object(), float("inf")],
    ids=["bytes", "set", "object", "infinity"],
)
def test_encode_of_a_value_json_cannot_carry_raises_value_error(value: Any) -> None:
    with pytest.raises(ValueError, match=r"JSON cannot carry this value|Out of range"):
        encode(Invocation("t", (value,)))


def test_encode_of_too_deep_nesting_raises_value_error() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        encode(Invocation("t", (deep,)))
