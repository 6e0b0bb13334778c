"""Fuzz targets: every parser that reads bytes or text from the network or the user, fed generated input.

The rule each target checks: the parser answers with its own documented error (or a value), never another exception.
Each target has a fixed budget of generated examples: ``FUZZ_EXAMPLES`` (default 150, what ``make test`` runs);
``make fuzz`` runs the same targets with a much larger budget.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.profiles import sse_lp_profile, websocket_profile
from gateway.routing import NoRoute, Route, backend_url, route
from server.negotiate import NegotiateRejected, user_id_from
from signalr import messagepack_protocol, service_protocol
from signalr.connection_string import ConnectionStringError, parse_connection_string
from signalr.handshake import decode_handshake_request, decode_handshake_response
from signalr.json_protocol import RecordReader, decode, load_json
from signalr.messages import ProtocolError
from signalr.negotiate import NegotiateError, parse_negotiate_response, requested_version
from signalr.query import split_query
from signalr.redact import redact_text, redact_url
from signalr.sse import SseDecoder
from signalr.tokens import TokenError, mint_token, verify_token
from signalr.upstream import sign_connection_id, verify_signature

BUDGET = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY = "FuzzKey0123456789abcdefghijklmnopqrstuvwxyzABCD"
AUD = "http://localhost/client/?hub=chat"

# Text that leans towards what the parsers look for, plus arbitrary code points (surrogates included).
_interesting = st.sampled_from(
    ["=", ";", "&", "?", "%", "%2F", "\x1e", "{", "}", "[", "]", '"', ":", ",", "\\", "\n", "\r", " ", "\x00", "\udcff"]
)
_text = st.lists(st.one_of(st.text(max_size=8), _interesting), max_size=24).map("".join)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)


@BUDGET
@given(_text)
def test_connection_string(text: str) -> None:
    try:
        parsed = parse_connection_string(text)
    except ConnectionStringError as exc:
        assert "AccessKey" not in str(exc) or "accesskey" in str(exc).lower()
        return
    assert parsed.endpoint.startswith(("http://", "https://"))


@BUDGET
@given(st.one_of(_text, st.lists(_text, min_size=3, max_size=3).map(".".join)))
def test_token_text(token: str) -> None:
    try:
        verify_token(token, KEY, AUD)
    except TokenError:
        pass


def _segment(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@BUDGET
@given(
    st.dictionaries(st.text(max_size=6), _json_values, max_size=5), st.dictionaries(st.text(max_size=6), _json_values)
)
def test_token_with_hostile_header_and_claims(header: dict[str, Any], claims: dict[str, Any]) -> None:
    """Well-formed JWT structure with arbitrary header and claim values (alg, exp, nbf, aud of any type)."""
    signed = mint_token(KEY, AUD).split(".")[2]
    for token in (
        f"{_segment(header)}.{_segment(claims)}.{signed}",
        f"{_segment({'alg': 'HS256'})}.{_segment(claims)}.x",
    ):
        try:
            verify_token(token, KEY, AUD)
        except TokenError:
            pass


@BUDGET
@given(st.one_of(st.none(), _text), _text)
def test_upstream_signature(header: str | None, connection_id: str) -> None:
    assert isinstance(verify_signature(header, [KEY], connection_id), bool)
    if connection_id.isprintable() and connection_id.isascii():
        assert verify_signature(sign_connection_id(KEY, connection_id), [KEY], connection_id)


@BUDGET
@given(st.binary(max_size=300) | _text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_hub_protocol_records(data: bytes) -> None:
    reader = RecordReader(1024)
    try:
        records = reader.feed(data)
    except ProtocolError:
        return
    for record in records:
        for parse in (decode, decode_handshake_request, decode_handshake_response, load_json):
            try:
                parse(record)
            except ProtocolError:
                pass


@BUDGET
@given(_json_values)
def test_hub_protocol_messages_from_any_json(value: Any) -> None:
    try:
        record = json.dumps(value).encode()
    except ValueError:
        return
    try:
        decode(record)
    except ProtocolError:
        pass


# MessagePack values of every family, extension types and timestamps included, for arrays that look like messages.
_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=13))
    | st.builds(msgpack.Timestamp, st.integers(-(2**63), 2**63 - 1), st.integers(0, 999_999_999)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(-(2**63), 2**63 - 1), inner, max_size=3)
    ),
    max_leaves=12,
)
_message_arrays = st.tuples(st.integers(-1, 10), st.lists(_msgpack_values, max_size=6)).map(lambda t: [t[0], *t[1]])


@BUDGET
@given(st.binary(max_size=300) | st.lists(st.binary(max_size=40), max_size=8).map(b"".join))
def test_messagepack_stream(data: bytes) -> None:
    reader = messagepack_protocol.LengthPrefixedReader(1024)
    try:
        payloads = reader.feed(data)
    except ProtocolError:
        assert reader.pending == 0
        return
    for payload in payloads:
        try:
            messagepack_protocol.decode(payload)
        except ProtocolError:
            pass
    try:
        messagepack_protocol.split_messages(data)
    except ProtocolError:
        pass


@BUDGET
@given(_message_arrays | _msgpack_values)
def test_messagepack_messages_from_any_value(value: Any) -> None:
    payload = msgpack.packb(value, use_bin_type=True)
    try:
        messagepack_protocol.decode(payload)
    except ProtocolError:
        pass


@BUDGET
@given(_message_arrays, st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4))
def test_messagepack_mutated_messages(value: list[Any], edits: list[tuple[int, int]]) -> None:
    data = bytearray(msgpack.packb(value, use_bin_type=True))
    for position, byte in edits:
        data[position % len(data)] = byte
    try:
        messagepack_protocol.decode(bytes(data))
    except ProtocolError:
        pass


@BUDGET
@given(st.binary(max_size=400))
def test_service_protocol_stream(data: bytes) -> None:
    try:
        for message in service_protocol.ServiceMessageReader(4096).feed(data):
            assert service_protocol.decode(service_protocol.payload_bytes(message)) == message
    except ProtocolError:
        pass


@BUDGET
@given(
    st.one_of(
        _text.map(lambda t: t.encode("utf-8", "surrogatepass")), _json_values.map(lambda v: json.dumps(v).encode())
    )
)
def test_negotiate_response(body: bytes) -> None:
    try:
        parse_negotiate_response(body)
    except NegotiateError:
        pass


@BUDGET
@given(_text)
def test_negotiate_version_and_user_id(query: str) -> None:
    try:
        version = requested_version(query)
    except NegotiateError:
        pass
    else:
        assert version in (0, 1)
    try:
        user = user_id_from(query, {})
    except NegotiateRejected as exc:
        assert exc.status == 400
    else:
        assert user is None or (user.isascii() and user.isprintable() and "\n" not in user)


@BUDGET
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_sse_decoder(chunks: list[bytes]) -> None:
    decoder = SseDecoder(max_event_size=200)
    try:
        for chunk in chunks:
            for event in decoder.feed(chunk):
                assert isinstance(event, bytes)
    except ValueError:
        pass


@BUDGET
@given(_text)
def test_query_split_and_redaction(text: str) -> None:
    parts = split_query(text)
    assert all(isinstance(p.raw, str) for p in parts)
    once = redact_text(text)
    assert redact_text(once) == once  # redaction is stable: a redacted line never changes again
    assert redact_url(redact_url(text)) == redact_url(text)


_methods = st.sampled_from(["GET", "POST", "OPTIONS", "DELETE", "PUT", "HEAD", "get", "PATCH"]) | st.text(max_size=6)
_paths = st.lists(
    st.one_of(st.sampled_from(["/", "client", "negotiate", "..", ".", "%2e%2e", "//", "%2F"]), _text)
).map("".join)


@BUDGET
@given(_methods, _paths, st.booleans(), _text)
def test_gateway_routing(method: str, path: str, upgrade: bool, query: str) -> None:
    for model in (websocket_profile(), sse_lp_profile()):
        result = route(model, method, path, upgrade=upgrade)
        assert isinstance(result, Route | NoRoute)
        if isinstance(result, Route):
            url = backend_url("http://127.0.0.1:8888", result.remainder, query)
            assert url.startswith("http://127.0.0.1:8888/")
