"""The service protocol against the SDK's own byte vectors, plus framing and hostile input.

Vectors: ``service_protocol_vectors.json`` beside this file (sections A–C are the SDK's unit-test data, cited there).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalr import service_protocol as sp
from signalr.messagepack_protocol import split_messages
from signalr.messages import MessageTooLarge, ProtocolError

DATA = json.loads((Path(__file__).parent / "service_protocol_vectors.json").read_text("utf-8"))
VECTORS: list[dict[str, Any]] = DATA["vectors"]
BY_NAME = {f"{v['section']}/{v['name']}": v for v in VECTORS}


def _python(decoded: str) -> Any:
    """The vector's decoded form as Python objects (``bin[01 02]`` → bytes, ``null`` → None)."""
    words = {"null": "None", "true": "True", "false": "False"}

    def replace(match: re.Match[str]) -> str:
        if match.group("bin") is not None:
            return repr(bytes.fromhex(match.group("bin")))
        return words.get(match.group(0), match.group(0))  # strings are left as they are

    token = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|bin\[(?P<bin>[0-9a-f ]*)\]|\b(?:null|true|false)\b"
    return ast.literal_eval(re.sub(token, replace, decoded))


def _payload(vector: dict[str, Any]) -> bytes:
    if "payload" in vector:
        return bytes.fromhex(vector["payload"])
    [payload] = split_messages(bytes.fromhex(vector["framed"]))
    return payload


def _id(vector: dict[str, Any]) -> str:
    return f"{vector['section']}/{vector['name']}"


def test_the_file_holds_the_sdk_vectors() -> None:
    sdk = [v for v in VECTORS if v["section"] in "ABC"]
    assert len(sdk) == 125
    assert len({_id(v) for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=_id)
def test_vector_data_is_the_decoded_form(vector: dict[str, Any]) -> None:
    """Each payload is the MessagePack array its ``decoded`` column says (a check of the data file itself)."""
    assert msgpack.unpackb(_payload(vector), strict_map_key=False) == _python(vector["decoded"])


@pytest.mark.parametrize("vector", VECTORS, ids=_id)
def test_vector_round_trips_byte_exact(vector: dict[str, Any]) -> None:
    payload = _payload(vector)
    message = sp.decode(payload)
    assert message is not None
    assert int(message.TYPE) == _python(vector["decoded"])[0]
    # Parsing the framed form through the stream reader gives the same message.
    assert sp.ServiceMessageReader().feed(sp.frame(payload)) == [message]
    written_as = vector.get("written_as")
    if written_as is None:
        assert sp.payload_bytes(message) == payload
        assert sp.encode(message) == sp.frame(payload)
    elif written_as == "-":
        # A short layout without a full counterpart among the vectors: written in the full layout, same content.
        assert sp.decode(sp.payload_bytes(message)) == message
        assert len(msgpack.unpackb(sp.payload_bytes(message), strict_map_key=False)) > len(_python(vector["decoded"]))
    else:
        counterpart = _payload(BY_NAME[written_as])
        assert sp.payload_bytes(message) == counterpart
        assert sp.decode(counterpart) == message


def test_flow_control_writes_int32_whatever_the_value() -> None:
    message = sp.ConnectionFlowControl("conn1", connection_type=1, operation=1)
    assert sp.payload_bytes(message).hex() == "9527a5636f6e6e31d200000001d20000000180"
    # Plain msgpack would write the small form (0x01): this is the one place the SDK does not.
    assert msgpack.packb([39, "conn1", 1, 1, {}]) != sp.payload_bytes(message)


@pytest.mark.parametrize(
    ("items", "error"), [([39, "c", 3, 1, {}], "connection_type"), ([39, "c", 1, 5, {}], "operation")]
)
def test_flow_control_refuses_unknown_values(items: list[Any], error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        sp.decode(msgpack.packb(items))


def test_fields_read_from_the_vectors() -> None:
    open_connection = sp.decode(_payload(BY_NAME["A/OpenConnection_WithProtocol"]))
    assert isinstance(open_connection, sp.OpenConnection)
    assert open_connection.protocol == "json"
    data = sp.decode(_payload(BY_NAME["A/ConnectionData_WithTypeAndPartial"]))
    assert isinstance(data, sp.ConnectionData)
    assert data.data_message_type is sp.DataMessageType.INVOCATION
    assert data.is_partial
    assert data.payload == bytes(range(1, 8))
    traced = sp.decode(_payload(BY_NAME["A/BroadcastWithTracingId"]))
    assert isinstance(traced, sp.BroadcastData)
    assert traced.tracing_id == 1234
    assert traced.payloads == {"json": bytes([4, 5, 6, 7, 1, 2, 3]), "messagepack": bytes([5, 6, 7, 1, 2, 3, 4])}
    query = sp.decode(_payload(BY_NAME["B/GroupMemberQueryMessage"]))
    assert query == sp.GroupMemberQuery(ext={1: 1234}, group="group", ack_id=1, max=10, continuation_token="token")
    headers = sp.decode(_payload(BY_NAME["A/OpenConnectionWithHeaders"]))
    assert isinstance(headers, sp.OpenConnection)
    assert headers.headers["header-key-2"] == ("heaer-value-2a", "header-value-2b")


def test_ping_pairs() -> None:
    ping = sp.decode(msgpack.packb([3, "status", "1", "echo", "x"]))
    assert isinstance(ping, sp.Ping)
    assert ping.get("status") == "1"
    assert ping.get("echo") == "x"
    assert ping.get("servers") is None
    assert sp.encode(sp.Ping()) == bytes.fromhex("029103")


def test_claims_keep_repeated_claim_types() -> None:
    """The SDK writes one map entry per Claim, so a role claim may repeat; nothing is lost either way."""
    message = sp.OpenConnection("c1", claims=(("role", "a"), ("role", "b"), ("nameid", "u")))
    payload = sp.payload_bytes(message)
    assert payload.count(b"\xa4role") == 2
    assert sp.decode(payload) == message


# --- framing ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "prefix"),
    [(0, "00"), (127, "7f"), (128, "8001"), (147, "9301"), (300, "ac02"), (16384, "808001"), (70000, "f0a204")],
)
def test_varint_prefix(length: int, prefix: str) -> None:
    framed = sp.frame(b"x" * length)
    assert framed[: len(prefix) // 2].hex() == prefix
    assert split_messages(framed) == [b"x" * length]


def test_varint_limits() -> None:
    """The SDK's BinaryMessageParser: "Messages over 2GB in size are not supported." (the hub protocol's framing)."""
    reader = sp.ServiceMessageReader(max_frame_size=2**31 - 1)
    assert reader.feed(bytes.fromhex("ffff")) == [] and reader.pending == 2  # incomplete prefix
    for too_long in ("ffffffff08", "ffffffffff01"):
        with pytest.raises(ProtocolError, match="2GB"):
            sp.ServiceMessageReader(max_frame_size=2**31 - 1).feed(bytes.fromhex(too_long))


def test_large_payload_uses_a_three_byte_prefix() -> None:
    """The SDK's WriteAndParseLargeData: ConnectionData with 70,000 bytes round-trips."""
    message = sp.ConnectionData("abc", b"a" * 70000)
    data = sp.encode(message)
    assert data[:3] == sp.frame(b"x" * (len(data) - 3))[:3] and split_messages(data)[0] == data[3:]
    assert sp.ServiceMessageReader().feed(data) == [message]


def test_messages_split_and_concatenated_across_chunks() -> None:
    messages: list[sp.ServiceMessage] = [
        sp.Ping(("status", "1")),
        sp.ConnectionData("c1", b'{"protocol":"json","version":1}\x1e'),
        sp.BroadcastData((), {"json": b"x" * 300}),
        sp.Ack(7, sp.AckStatus.OK),
    ]
    stream = sp.encode_many(messages)
    for chunk_size in (1, 2, 3, 7, 64, len(stream)):
        reader = sp.ServiceMessageReader()
        received: list[sp.ServiceMessage] = []
        for start in range(0, len(stream), chunk_size):
            received += reader.feed(stream[start : start + chunk_size])
        assert received == messages
        assert reader.pending == 0


def test_oversized_prefix_is_refused_before_buffering() -> None:
    reader = sp.ServiceMessageReader(max_frame_size=1000)
    with pytest.raises(MessageTooLarge, match="maximum message size of 1000 bytes"):
        reader.feed(bytes.fromhex("e907"))  # announces 1001 bytes; nothing of the body has arrived
    assert sp.ServiceMessageReader(max_frame_size=1000).feed(sp.frame(msgpack.packb([3, "x" * 990]))) != []


def test_unknown_types_are_skipped() -> None:
    stream = sp.frame(msgpack.packb([41, "refresh", {}])) + sp.frame(msgpack.packb([99])) + sp.encode(sp.Ping())
    assert sp.ServiceMessageReader().feed(stream) == [sp.Ping()]


def test_extra_trailing_items_are_ignored() -> None:
    """The SDK's ParseMessageWithExtraData."""
    message = sp.decode(msgpack.packb([4, "id", {}, "ex"]))
    assert message == sp.OpenConnection("id")
    assert sp.decode(msgpack.packb([4, "id", {}, {}, "?k=v", {}, "ex", 1])) == sp.OpenConnection(
        "id", query_string="?k=v"
    )


def test_unknown_ext_keys_are_kept_but_do_not_break_reading() -> None:
    message = sp.decode(msgpack.packb([6, "c", b"x", {1: 5, 99: [1, 2]}]))
    assert isinstance(message, sp.ConnectionData)
    assert message.tracing_id == 5


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ([4], "needs at least 3 items"),
        ([4, 5, {}], "connection_id must be a string"),
        ([6, "c", "not bytes"], "payload must be binary"),
        ([7, "c", {}], "array of strings"),
        ([10, [], {"json": "text"}], "protocol name to binary"),
        ([4, "c", {"k": 1}], "string to string"),
        ([4, "c", {}, {"h": "v"}, ""], "string array|array of strings"),
        ([6, "c", b"x", {"1": 5}], "key must be an integer"),
        ([6, "c", b"x", {1: -1}], "unsigned"),
        ([6, "c", b"x", {6: 1}], "boolean"),
        ([1, True], "integer"),
        ([20, 1, 1.5, ""], "integer"),
        ([39, "c", 2**31, 1, {}], "32-bit"),
    ],
)
def test_malformed_fields_are_protocol_errors(items: list[Any], error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        sp.decode(msgpack.packb(items))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        b"\x91",
        b"\x90",
        b"\xa3abc",
        b"\x91\xc0",
        b"\x91\xc3",
        b"\x92\x03\xa2\xff\xfe",
        b"\x92\x03\x01\x02",
    ],
    ids=["empty", "never-used", "truncated", "empty-array", "not-array", "nil-type", "bool-type", "bad-utf8", "extra"],
)
def test_malformed_payloads_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        sp.decode(payload)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_protocol_error(data: bytes) -> None:
    reader = sp.ServiceMessageReader(max_frame_size=4096)
    try:
        for message in reader.feed(data):
            assert isinstance(message, sp.ServiceMessage)
    except ProtocolError:
        pass


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.integers(0, 9) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=600, deadline=None)
@given(st.integers(1, 42), st.lists(_values, max_size=8))
def test_arbitrary_arrays_parse_or_raise_protocol_error(message_type: int, items: list[Any]) -> None:
    """Well-formed MessagePack with the wrong shapes: a message or a ProtocolError, never another exception."""
    payload = msgpack.packb([message_type, *items], use_bin_type=True)
    try:
        message = sp.decode(payload)
    except ProtocolError:
        return
    if message is not None:
        # Whatever parsed can be written again and reads back the same.
        assert sp.decode(sp.payload_bytes(message)) == message
