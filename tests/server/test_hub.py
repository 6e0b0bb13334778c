"""The Chat hub's dispatch, without sockets: upstream body bytes in, REST actions and the response body out.

MessagePack bodies are written here with the ``msgpack`` package, the arrays of the hub protocol spelled out, so the
test does not read its own codec's output back.
"""

from __future__ import annotations

import json
import os
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.hub import Caller, ChatHub, HubCall, InvalidMessage, SendToAll, SendToConnection, unexpected_error
from signalr.hub_protocol import HubProtocol
from signalr.protocols import PROTOCOLS

CALLER = Caller("conn-1", user_id=None)
JSON = PROTOCOLS["json"]


def dispatch(event: str, body: str | bytes, protocol: HubProtocol = JSON) -> HubCall:
    raw = body.encode() if isinstance(body, str) else body
    return ChatHub().dispatch(CALLER, event, raw, protocol)


def completion(call: HubCall, failure: str | None = None) -> dict[str, object]:
    body = call.response_body(JSON, failure)
    assert body.endswith(b"\x1e") and body.count(b"\x1e") == 1, body
    decoded = json.loads(body[:-1])
    assert isinstance(decoded, dict)
    return decoded


def test_broadcast_message_sends_to_all_and_answers_nothing_without_id() -> None:
    call = dispatch("broadcastMessage", '{"type":1,"target":"broadcastMessage","arguments":["alice","hi"]}')
    assert call.actions == (SendToAll("broadcastMessage", ("alice", "hi")),)
    assert call.error is None
    assert call.response_body(JSON) == b""


def test_echo_goes_to_the_caller_only_with_the_suffix() -> None:
    call = dispatch("echo", '{"type":1,"target":"echo","arguments":["alice","hi"]}')
    assert call.actions == (SendToConnection("conn-1", "echo", ("alice", "hi (echo from server)")),)


def test_empty_and_null_echo_come_back_as_the_bare_suffix() -> None:
    for message in ('""', "null"):
        call = dispatch("echo", f'{{"type":1,"target":"echo","arguments":["a",{message}]}}')
        assert call.actions == (SendToConnection("conn-1", "echo", ("a", " (echo from server)")),)


@pytest.mark.parametrize("target", ["BroadcastMessage", "BROADCASTMESSAGE", "broadcastmessage"])
def test_method_names_match_case_insensitively(target: str) -> None:
    call = dispatch(target, f'{{"type":1,"target":"{target}","arguments":["a","b"]}}')
    # The clients' handler name is always the canonical one, whatever casing the caller used.
    assert call.actions == (SendToAll("broadcastMessage", ("a", "b")),)


def test_invocation_with_id_gets_a_void_completion() -> None:
    call = dispatch(
        "broadcastMessage", '{"type":1,"invocationId":"7","target":"broadcastMessage","arguments":["a","b"]}'
    )
    assert completion(call) == {"type": 3, "invocationId": "7"}


def test_failed_send_turns_into_a_completion_error() -> None:
    call = dispatch("echo", '{"type":1,"invocationId":"8","target":"echo","arguments":["a","b"]}')
    assert completion(call, unexpected_error("echo")) == {
        "type": 3,
        "invocationId": "8",
        "error": "An unexpected error occurred invoking 'echo' on the server.",
    }


def test_failed_send_without_id_answers_nothing() -> None:
    call = dispatch("echo", '{"type":1,"target":"echo","arguments":["a","b"]}')
    assert call.response_body(JSON, unexpected_error("echo")) == b""


def test_unknown_method_with_id_gets_the_aspnet_error() -> None:
    call = dispatch("joinGroup", '{"type":1,"invocationId":"1","target":"joinGroup","arguments":["g"]}')
    assert call.actions == ()
    assert completion(call) == {"type": 3, "invocationId": "1", "error": "Unknown hub method 'joinGroup'"}


def test_unknown_method_without_id_sends_and_answers_nothing() -> None:
    call = dispatch("nope", '{"type":1,"target":"nope","arguments":[]}')
    assert call.actions == ()
    assert call.error == "Unknown hub method 'nope'"
    assert call.response_body(JSON) == b""


@pytest.mark.parametrize("arguments", ['["only-one"]', "[]", '["a","b","c"]'])
def test_wrong_argument_count_is_an_error_not_a_crash(arguments: str) -> None:
    call = dispatch(
        "broadcastMessage", f'{{"type":1,"invocationId":"2","target":"broadcastMessage","arguments":{arguments}}}'
    )
    count = len(json.loads(arguments))
    assert call.actions == ()
    assert completion(call)["error"] == (
        "Failed to invoke 'broadcastMessage' due to an error on the server. InvalidDataException: "
        f"Invocation provides {count} argument(s) but target expects 2."
    )


@pytest.mark.parametrize("bad", ["1", "true", '{"x":1}', '["x"]'])
def test_non_string_arguments_are_a_binding_error(bad: str) -> None:
    call = dispatch("echo", f'{{"type":1,"invocationId":"3","target":"echo","arguments":["a",{bad}]}}')
    assert call.actions == ()
    assert "Error binding arguments" in str(completion(call)["error"])


def test_stream_invocation_is_refused_with_a_completion_error() -> None:
    call = dispatch("echo", '{"type":4,"invocationId":"4","target":"echo","arguments":["a","b"]}')
    assert call.actions == ()
    assert completion(call)["error"] == (
        "The client attempted to invoke the non-streaming 'echo' method with a streaming invocation."
    )


def test_client_streams_are_refused() -> None:
    call = dispatch("echo", '{"type":1,"invocationId":"5","target":"echo","arguments":["a","b"],"streamIds":["s1"]}')
    assert call.actions == ()
    assert completion(call)["error"] == "Client sent 1 stream(s), Hub method expects 0."


def test_one_trailing_record_separator_is_tolerated() -> None:
    call = dispatch("echo", b'{"type":1,"target":"echo","arguments":["a","b"]}\x1e')
    assert call.actions == (SendToConnection("conn-1", "echo", ("a", "b (echo from server)")),)


def test_headers_in_the_invocation_are_ignored() -> None:
    # signalrcore and pysignalr leak request headers (Authorization included) into `headers` (Appendix A).
    body = '{"type":1,"headers":{"Authorization":"Bearer x"},"target":"echo","arguments":["a","b"]}'
    assert dispatch("echo", body).actions == (SendToConnection("conn-1", "echo", ("a", "b (echo from server)")),)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"   ", "not valid JSON"),
        (b"\x1e", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "UTF-8"),
        (b"[1,2]", "JSON object"),
        (b'{"target":"echo","arguments":[]}', "'type'"),
        (b'{"type":"1","target":"echo","arguments":[]}', "Integer"),
        (b'{"type":1,"arguments":[]}', "'target'"),
        (b'{"type":1,"target":"echo"}', "'arguments'"),
        (b'{"type":1,"target":"echo","arguments":"ab"}', "Array"),
        (b'{"type":1,"target":5,"arguments":[]}', "String"),
        (b'{"type":6}', "Invocation"),
        (b'{"type":3,"invocationId":"1"}', "Invocation"),
        (b'{"type":99}', "Unknown message type"),
        (b'{"type":1,"target":"echo","arguments":["a","b"]}\x1e{"type":6}\x1e', "exactly one"),
        (b'{"type":1,"target":"echo","arguments":["a","b"]}\x1e\x1e', "exactly one"),
        (b'{"type":1,"target":"echo","arguments":["a","b"]}\x1e{"type":6}', "not valid JSON"),
    ],
)
def test_malformed_bodies_are_invalid_messages(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        dispatch("echo", body)


def test_event_header_must_name_the_invoked_target() -> None:
    # The signature covers only the connection id: a body whose target differs from the event is refused.
    with pytest.raises(InvalidMessage, match="does not match"):
        dispatch("echo", '{"type":1,"target":"broadcastMessage","arguments":["a","b"]}')


def test_huge_and_unicode_arguments_pass_through_unchanged() -> None:
    text = "héllo 👋 <b>&amp;</b> " * 1000
    call = dispatch("broadcastMessage", json.dumps({"type": 1, "target": "broadcastMessage", "arguments": ["ü", text]}))
    assert call.actions == (SendToAll("broadcastMessage", ("ü", text)),)


# -- MessagePack -------------------------------------------------------------------------------------------------

MESSAGEPACK = PROTOCOLS["messagepack"]


def packed(*items: Any) -> bytes:
    """One MessagePack hub message payload, without its length prefix (as the service sends it upstream)."""
    data: bytes = msgpack.packb(list(items), use_bin_type=True)
    return data


def varint(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out)


def unframed(body: bytes) -> list[Any]:
    """The one array of a length-prefixed MessagePack body; fails unless the prefix covers exactly the rest."""
    size, shift, offset = 0, 0, 0
    while True:
        byte = body[offset]
        size |= (byte & 0x7F) << shift
        offset, shift = offset + 1, shift + 7
        if not byte & 0x80:
            break
    assert size == len(body) - offset, body
    items = msgpack.unpackb(body[offset:], raw=False)
    assert isinstance(items, list)
    return items


def test_messagepack_invocation_is_dispatched_like_json() -> None:
    call = dispatch("echo", packed(1, {}, "9", "echo", ["alice", "hi ✓"]), MESSAGEPACK)
    assert call.actions == (SendToConnection("conn-1", "echo", ("alice", "hi ✓ (echo from server)")),)
    # A void Completion in the caller's protocol: [3, headers, id, 2 (void)], behind its length.
    assert unframed(call.response_body(MESSAGEPACK)) == [3, {}, "9", 2]


def test_messagepack_send_without_id_answers_nothing() -> None:
    call = dispatch("broadcastMessage", packed(1, {}, None, "broadcastMessage", ["a", None]), MESSAGEPACK)
    assert call.actions == (SendToAll("broadcastMessage", ("a", None)),)
    assert call.response_body(MESSAGEPACK) == b""


def test_messagepack_hub_errors_complete_with_an_error_result() -> None:
    call = dispatch("nope", packed(1, {}, "1", "nope", []), MESSAGEPACK)
    assert unframed(call.response_body(MESSAGEPACK)) == [3, {}, "1", 1, "Unknown hub method 'nope'"]
    call = dispatch("echo", packed(1, {}, "2", "echo", ["a", b"\x00bin"]), MESSAGEPACK)
    assert call.actions == ()
    [kind, _, invocation_id, result_kind, error] = unframed(call.response_body(MESSAGEPACK))
    assert (kind, invocation_id, result_kind) == (3, "2", 1)
    assert "Error binding arguments" in error


def test_messagepack_body_with_its_length_prefix_is_tolerated() -> None:
    payload = packed(1, {}, None, "echo", ["a", "b"])
    call = dispatch("echo", varint(len(payload)) + payload, MESSAGEPACK)
    assert call.actions == (SendToConnection("conn-1", "echo", ("a", "b (echo from server)")),)


def test_the_body_is_read_in_the_protocol_it_is_given_not_guessed() -> None:
    with pytest.raises(InvalidMessage):
        dispatch("echo", packed(1, {}, None, "echo", ["a", "b"]), JSON)
    with pytest.raises(InvalidMessage):
        dispatch("echo", '{"type":1,"target":"echo","arguments":["a","b"]}', MESSAGEPACK)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x95\x01\x80", id="cut-short"),
        pytest.param(packed(1, {}, None, "echo"), id="no-arguments"),
        pytest.param(packed(1, {}, None, 5, []), id="target-not-a-string"),
        pytest.param(packed(1, [], None, "echo", []), id="headers-not-a-map"),
        pytest.param(packed("1", {}, None, "echo", []), id="type-not-an-int"),
        pytest.param(packed(6), id="ping-not-invocation"),
        pytest.param(packed(3, {}, "1", 2), id="completion-not-invocation"),
        pytest.param(packed(99), id="unknown-type"),
        pytest.param(msgpack.packb({"type": 1}), id="map-not-array"),
        pytest.param(msgpack.packb(1), id="int-not-array"),
        pytest.param(b"\x91" * 100000 + b"\x01", id="deeply-nested"),
        pytest.param(b"\xdd\xff\xff\xff\xff", id="array-claims-4g-items"),
        pytest.param(b"\xdb\xff\xff\xff\xff", id="string-claims-4g-bytes"),
        pytest.param(packed(1, {}, None, "echo", ["a", "b"]) * 2, id="two-payloads"),
        pytest.param(varint(2) + packed(6), id="framed-ping"),
        pytest.param(b"\x05" + packed(6) + b"\x01\x06", id="prefix-claims-more"),
        pytest.param(packed(1, {}, None, "echo", ["a", "x"])[:-1] + b"\xff", id="bad-utf8-in-string"),
    ],
)
def test_malformed_messagepack_bodies_are_invalid_messages(body: bytes) -> None:
    with pytest.raises(InvalidMessage):
        dispatch("echo", body, MESSAGEPACK)


# -- fuzz: any body, either protocol: a HubCall or InvalidMessage, and the answer always encodes --------------------

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)
_invocation_like = st.tuples(
    st.sampled_from([1, 4, 3, 6, 7, 99, "1", None]),
    st.one_of(st.just({}), _values),
    st.one_of(st.none(), st.text(max_size=4), _values),
    st.one_of(st.sampled_from(["echo", "Echo", "broadcastMessage", "nope"]), _values),
    st.one_of(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=3), _values),
).map(list)


def _dispatch_either(body: bytes, protocol: HubProtocol) -> None:
    try:
        call = ChatHub().dispatch(CALLER, "echo", body, protocol)
    except InvalidMessage as exc:
        assert str(exc)
        return
    if call.invocation_id is not None:
        for answer in (JSON, MESSAGEPACK):
            # Whatever the hub made of it, the Completion encodes as one complete message of the caller's protocol.
            assert len(answer.split(call.response_body(answer, unexpected_error("echo")))) == 1


@FUZZ
@given(st.binary(max_size=256), st.sampled_from(["json", "messagepack"]))
def test_fuzz_any_bytes(body: bytes, name: str) -> None:
    _dispatch_either(body, PROTOCOLS[name])


@FUZZ
@given(_invocation_like)
def test_fuzz_messagepack_invocation_shapes(items: list[Any]) -> None:
    body: bytes = msgpack.packb(items, use_bin_type=True)
    _dispatch_either(body, MESSAGEPACK)


@FUZZ
@given(_invocation_like.filter(lambda items: not any(isinstance(v, bytes) for v in items)))
def test_fuzz_json_invocation_shapes(items: list[Any]) -> None:
    kind, _, invocation_id, target, arguments = items
    try:
        body = json.dumps({"type": kind, "invocationId": invocation_id, "target": target, "arguments": arguments})
    except (TypeError, ValueError):
        return  # a value JSON cannot carry (bytes inside a list or map)
    _dispatch_either(body.encode(), JSON)
