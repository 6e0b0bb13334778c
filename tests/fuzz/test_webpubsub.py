"""Fuzz targets for the Web PubSub JSON subprotocol codec (``webpubsub.subprotocol``).

The rule each target checks: decoding answers with a message (or ``None`` for a kind a client skips) or raises
:class:`~webpubsub.subprotocol.InvalidMessage`, never another exception; whatever decodes encodes again to a frame
that decodes to the same message. Budget as in ``test_parsers.py``: ``FUZZ_EXAMPLES`` (default 150).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webpubsub.subprotocol import (
    MAX_ID,
    Ack,
    AckError,
    Connected,
    DataType,
    Disconnected,
    GroupMessage,
    InvalidMessage,
    JoinGroup,
    LeaveGroup,
    PingRequest,
    Pong,
    Request,
    Response,
    SendEvent,
    SendToGroup,
    SequenceAck,
    ServerMessage,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

BUDGET = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_interesting = st.sampled_from(
    ['"', "\\", "{", "}", "[", "]", ":", ",", "type", "ackId", "data", "base64", "\udcff", "\x00", "1e999", "NaN"]
)
_text = st.lists(st.one_of(st.text(max_size=8), _interesting), max_size=24).map("".join)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)
_field_values = st.one_of(
    _json_values,
    st.sampled_from(["json", "text", "binary", "protobuf", "group", "server", "connected", "disconnected", "AP8="]),
    st.integers(min_value=-1, max_value=MAX_ID + 1),
)
_keys = st.sampled_from(
    [
        "type",
        "group",
        "event",
        "ackId",
        "noEcho",
        "dataType",
        "data",
        "sequenceId",
        "success",
        "error",
        "from",
        "fromUserId",
        "userId",
        "connectionId",
        "reconnectionToken",
        "message",
    ]
)
_types = st.sampled_from(
    ["joinGroup", "leaveGroup", "sendToGroup", "event", "sequenceAck", "ping", "ack", "message", "system", "pong"]
)
# Objects that look like messages: a known type and fields of every shape.
_message_like = st.builds(
    lambda kind, fields: {"type": kind, **fields}, _types, st.dictionaries(_keys, _field_values, max_size=7)
)


def _check(frame: str | bytes) -> None:
    try:
        request = decode_request(frame)
    except InvalidMessage:
        pass
    else:
        assert decode_request(encode_request(request)) == request
    try:
        response = decode_response(frame)
    except InvalidMessage:
        pass
    else:
        if response is not None:
            assert decode_response(encode_response(response)) == response


@BUDGET
@given(_text | st.binary(max_size=300))
def test_any_frame(frame: str | bytes) -> None:
    _check(frame)


@BUDGET
@given(_message_like)
def test_message_like_objects(obj: dict[str, Any]) -> None:
    _check(json.dumps(obj))
    _check(json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@BUDGET
@given(_message_like, st.lists(st.tuples(st.integers(0, 400), _interesting), min_size=1, max_size=4))
def test_mutated_messages(obj: dict[str, Any], edits: list[tuple[int, str]]) -> None:
    text = json.dumps(obj)
    for position, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at:]
    _check(text)


_ids = st.integers(min_value=0, max_value=MAX_ID)
_names = st.text(min_size=1, max_size=12)
_data = st.one_of(
    st.tuples(st.just(DataType.JSON), _json_values),
    st.tuples(st.just(DataType.TEXT), st.text(max_size=20)),
    st.tuples(st.just(DataType.BINARY), st.binary(max_size=20)),
)
_requests: st.SearchStrategy[Request] = st.one_of(
    st.builds(JoinGroup, _names, st.none() | _ids),
    st.builds(LeaveGroup, _names, st.none() | _ids),
    st.builds(lambda g, d, a, n: SendToGroup(g, d[0], d[1], a, n), _names, _data, st.none() | _ids, st.booleans()),
    st.builds(lambda e, d, a: SendEvent(e, d[0], d[1], a), _names, _data, st.none() | _ids),
    st.builds(SequenceAck, _ids),
    st.just(PingRequest()),
)
_responses: st.SearchStrategy[Response] = st.one_of(
    st.builds(Ack, _ids, st.booleans(), st.none() | st.builds(AckError, st.text(max_size=10), st.text(max_size=10))),
    st.builds(
        lambda g, d, u, s: GroupMessage(g, d[0], d[1], u, s),
        _names,
        _data,
        st.none() | st.text(max_size=8),
        st.none() | _ids,
    ),
    st.builds(lambda d, s: ServerMessage(d[0], d[1], s), _data, st.none() | _ids),
    st.builds(Connected, st.none() | st.text(max_size=8), _names, st.none() | st.text(max_size=20)),
    st.builds(Disconnected, st.none() | st.text(max_size=20)),
    st.just(Pong()),
)


@BUDGET
@given(_requests)
def test_every_request_round_trips(request: Request) -> None:
    wire = encode_request(request)
    wire.encode("utf-8")  # every frame the codec writes is valid UTF-8
    decoded = decode_request(wire)
    assert decoded == request
    assert encode_request(decoded) == wire


@BUDGET
@given(_responses)
def test_every_response_round_trips(response: Response) -> None:
    wire = encode_response(response)
    wire.encode("utf-8")
    decoded = decode_response(wire)
    assert decoded == response
    assert decoded is not None and encode_response(decoded) == wire
