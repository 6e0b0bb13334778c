"""The handshake every connection opens with: JSON records whatever hub protocol they select (docs/protocol.md §4)."""

from __future__ import annotations

import pytest

from signalr.handshake import (
    HandshakeRequest,
    decode_handshake_request,
    decode_handshake_response,
    encode_handshake_request,
    encode_handshake_response,
    split_handshake,
)
from signalr.messages import MessageTooLarge, ProtocolError
from signalr.protocols import PROTOCOLS, protocol_named


def test_handshake_records() -> None:
    assert encode_handshake_request() == b'{"protocol":"json","version":1}\x1e'
    assert decode_handshake_request(b'{"protocol":"json","version":1}') == HandshakeRequest("json", 1)
    assert encode_handshake_response() == b"{}\x1e"
    assert encode_handshake_response("nope") == b'{"error":"nope"}\x1e'
    assert decode_handshake_response(b"{}") is None
    assert (
        decode_handshake_response(b'{"error":"The protocol \'x\' is not supported."}')
        == "The protocol 'x' is not supported."
    )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"[]", "Handshake request must be a JSON object."),
        (b'{"version":1}', "Missing required property 'protocol'."),
        (b'{"protocol":1,"version":1}', "Missing required property 'protocol'."),
        (b'{"protocol":"json"}', "Missing required property 'version'."),
        (b'{"protocol":"json","version":"1"}', "Missing required property 'version'."),
        (b'{"protocol":"json","version":true}', "Missing required property 'version'."),
        (b"\xff", "Message is not valid UTF-8."),
    ],
)
def test_bad_handshake_requests(record: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_handshake_request(record)
    assert str(caught.value) == message


def test_bad_handshake_response() -> None:
    with pytest.raises(ProtocolError, match=r"Handshake response must be a JSON object\."):
        decode_handshake_response(b"[]")
    with pytest.raises(ProtocolError, match="not valid JSON"):
        decode_handshake_response(b"{")


def test_handshake_request_names_any_protocol() -> None:
    assert encode_handshake_request("messagepack", 1) == b'{"protocol":"messagepack","version":1}\x1e'


def test_split_handshake_waits_for_the_separator_and_keeps_what_follows() -> None:
    assert split_handshake(b'{"protocol":"messagepack"', 100) is None
    # A binary protocol's first message may follow the handshake in the same buffer (trap 8).
    assert split_handshake(b"{}\x1e\x02\x91\x06", 100) == (b"{}", b"\x02\x91\x06")


@pytest.mark.parametrize("buffer", [b"{" + b" " * 20, b"{" + b" " * 20 + b"}\x1e"], ids=["incomplete", "complete"])
def test_split_handshake_refuses_an_oversized_record(buffer: bytes) -> None:
    with pytest.raises(MessageTooLarge, match="maximum message size of 16 bytes"):
        split_handshake(buffer, 16)


def test_registry_names_every_protocol_by_its_handshake_name() -> None:
    assert all(name == protocol.name for name, protocol in PROTOCOLS.items())
    assert protocol_named("json") is PROTOCOLS["json"]
    with pytest.raises(ValueError, match="unknown hub protocol 'xml': expected one of json"):
        protocol_named("xml")
