"""The hub connection state machines: the transition table in signalr/connection.py's docstring, row by row."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalr.connection import (
    ClientProtocol,
    ConnectionClosed,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    ServerProtocol,
    State,
)
from signalr.hub_protocol import TransferFormat
from signalr.json_protocol import encode, encode_many
from signalr.messages import Close, Completion, Invocation, Ping

HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
CHAT = Invocation("broadcastMessage", ("alice", "hi"))


def encode_handshake_error(error: str) -> bytes:
    return json.dumps({"error": error}, separators=(",", ":"), ensure_ascii=False).encode() + b"\x1e"


def open_server(max_message_size: int = 1024 * 1024) -> ServerProtocol:
    server = ServerProtocol(max_message_size)
    assert server.receive_data(HANDSHAKE) == [HandshakeCompleted("json", 1)]
    assert server.data_to_send() == b"{}\x1e"
    return server


def open_client() -> ClientProtocol:
    client = ClientProtocol()
    client.handshake()
    assert client.receive_data(b"{}\x1e") == [HandshakeCompleted()]
    assert client.state is State.OPEN
    return client


# -- server: HANDSHAKING --------------------------------------------------------------------------------


def test_valid_handshake_opens_and_queues_empty_reply() -> None:
    server = ServerProtocol()
    assert server.state is State.HANDSHAKING
    assert server.receive_data(HANDSHAKE) == [HandshakeCompleted("json", 1)]
    assert server.state is State.OPEN
    assert server.data_to_send() == b"{}\x1e"
    assert server.data_to_send() == b""  # drained


def test_handshake_version_0_is_accepted() -> None:
    # signalrcore sends version 0 (Appendix A); ASP.NET accepts versions up to its own.
    server = ServerProtocol()
    assert server.receive_data(b'{"protocol":"json","version":0}\x1e') == [HandshakeCompleted("json", 0)]


@pytest.mark.parametrize(
    ("request_bytes", "error"),
    [
        (
            b'{"protocol":"messagepack","version":2}\x1e',
            "The server does not support version 2 of the 'messagepack' protocol.",
        ),
        (b'{"protocol":"xml","version":1}\x1e', "The protocol 'xml' is not supported."),
        (b'{"protocol":"json","version":2}\x1e', "The server does not support version 2 of the 'json' protocol."),
        (b'{"protocol":"json"}\x1e', "Missing required property 'version'."),
        (b"not json\x1e", "Message is not valid JSON: Expecting value at position 0."),
        (b"[]\x1e", "Handshake request must be a JSON object."),
    ],
)
def test_invalid_handshake_fails_with_exact_error_and_closes(request_bytes: bytes, error: str) -> None:
    server = ServerProtocol()
    assert server.receive_data(request_bytes) == [HandshakeFailed(error)]
    assert server.state is State.CLOSED
    assert server.data_to_send() == encode_handshake_error(error)
    # After the failure nothing else is read, even records in the same buffer.
    assert server.receive_data(encode(CHAT)) == []


def test_records_after_failed_handshake_in_same_buffer_are_ignored() -> None:
    server = ServerProtocol()
    events = server.receive_data(b'{"protocol":"xml","version":1}\x1e' + encode(CHAT))
    assert events == [HandshakeFailed("The protocol 'xml' is not supported.")]


def test_handshake_split_byte_by_byte() -> None:
    server = ServerProtocol()
    events = []
    for i in range(len(HANDSHAKE)):
        events += server.receive_data(HANDSHAKE[i : i + 1])
    assert events == [HandshakeCompleted("json", 1)]


def test_handshake_followed_by_records_in_one_buffer() -> None:
    server = ServerProtocol()
    events = server.receive_data(HANDSHAKE + encode(CHAT) + encode(Ping()))
    assert events == [HandshakeCompleted("json", 1), MessageReceived(CHAT), MessageReceived(Ping())]


def test_oversized_handshake_closes_without_close_record() -> None:
    server = ServerProtocol(max_message_size=16)
    events = server.receive_data(HANDSHAKE)
    assert events == [ConnectionClosed("The message exceeded the maximum message size of 16 bytes.", by_peer=False)]
    assert server.state is State.CLOSED
    assert server.data_to_send() == b""  # a Close record is a hub message: not before the handshake


def test_send_before_open_is_refused() -> None:
    with pytest.raises(RuntimeError, match="cannot send while handshaking"):
        ServerProtocol().send(CHAT)


# -- server: OPEN --------------------------------------------------------------------------------


def test_valid_messages_stay_open() -> None:
    server = open_server()
    assert server.receive_data(encode_many([CHAT, Ping()])) == [MessageReceived(CHAT), MessageReceived(Ping())]
    assert server.state is State.OPEN
    assert server.data_to_send() == b""


def test_send_queues_encoded_message_while_open() -> None:
    server = open_server()
    server.send(CHAT)
    server.send_ping()
    assert server.data_to_send() == encode(CHAT) + b'{"type":6}\x1e'
    assert server.data_to_send() == b""


def test_send_of_unencodable_value_queues_nothing() -> None:
    server = open_server()
    with pytest.raises(ValueError):
        server.send(Invocation("t", (float("nan"),)))
    assert server.data_to_send() == b""


def test_ping_before_handshake_is_refused() -> None:
    with pytest.raises(RuntimeError, match="cannot ping while handshaking"):
        ServerProtocol().send_ping()


def test_unknown_message_type_is_skipped_by_client_as_js_does() -> None:
    client = open_client()
    assert client.receive_data(b'{"type":42}\x1e' + encode(CHAT)) == [MessageReceived(CHAT)]
    assert client.state is State.OPEN


def test_server_matches_the_protocol_name_regardless_of_case_as_aspnetcore() -> None:
    server = ServerProtocol()
    assert server.receive_data(b'{"protocol":"MessagePack","version":1}\x1e') == [HandshakeCompleted("messagepack", 1)]
    assert server.data_to_send() == b"{}\x1e"
    assert server.protocol is not None and server.protocol.name == "messagepack"


def test_server_refuses_a_protocol_it_does_not_know() -> None:
    server = ServerProtocol()
    assert server.receive_data(b'{"protocol":"xml","version":1}\x1e') == [
        HandshakeFailed("The protocol 'xml' is not supported.")
    ]
    assert server.data_to_send() == b'{"error":"The protocol \'xml\' is not supported."}\x1e'


def test_server_refuses_a_binary_protocol_on_a_text_transport() -> None:
    binary = SimpleNamespace(name="bin", version=1, transfer_format=TransferFormat.BINARY)
    server = ServerProtocol(protocols={"bin": binary}, transfer_formats=frozenset({TransferFormat.TEXT}))  # type: ignore[dict-item]
    error = (
        "Cannot use the 'bin' protocol on the current transport. The transport does not support 'Binary' transfer "
        "format."
    )
    assert server.receive_data(b'{"protocol":"bin","version":1}\x1e') == [HandshakeFailed(error)]
    assert server.state is State.CLOSED


def test_close_received_closes_by_peer_and_ignores_the_rest() -> None:
    server = open_server()
    events = server.receive_data(encode(CHAT) + encode(Close("client going away")) + encode(CHAT))
    assert events == [MessageReceived(CHAT), ConnectionClosed("client going away", by_peer=True)]
    assert server.state is State.CLOSED
    assert server.data_to_send() == b""  # the peer closed: no Close is sent back


def test_clean_close_received() -> None:
    server = open_server()
    assert server.receive_data(b'{"type":7}\x1e') == [ConnectionClosed(None, by_peer=True)]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"{}\x1e", "Missing required property 'type'."),
        (b'{"type":1,"target":"t"}\x1e', "Missing required property 'arguments'."),
        (b"\xff\x1e", "Message is not valid UTF-8."),
        (b'{"type":42}\x1e', "Unknown message type '42'."),
        (
            b'{"type":1,"target":"t","arguments":[' + b"1" * 5000 + b"]}\x1e",
            "Message is not valid JSON: a number has too many digits.",
        ),
        (b"[" * 50_000 + b"\x1e", "Message is not valid JSON: it is nested too deeply."),
    ],
)
def test_violation_closes_and_queues_close_record_with_reason(record: bytes, reason: str) -> None:
    server = open_server()
    events = server.receive_data(encode(CHAT) + record + encode(Ping()))
    # Messages before the bad record are delivered; nothing after it.
    assert events == [MessageReceived(CHAT), ConnectionClosed(reason, by_peer=False)]
    assert server.state is State.CLOSED
    assert server.data_to_send() == encode(Close(reason))


def test_oversized_record_closes_with_reason() -> None:
    server = open_server(max_message_size=64)
    events = server.receive_data(b'{"type":1,"target":"t","arguments":["' + b"x" * 100)
    reason = "The message exceeded the maximum message size of 64 bytes."
    assert events == [ConnectionClosed(reason, by_peer=False)]
    assert (
        server.data_to_send() == b'{"type":7,"error":"The message exceeded the maximum message size of 64 bytes."}\x1e'
    )


# -- any state: close() --------------------------------------------------------------------------------


def test_close_while_open_queues_close_once() -> None:
    server = open_server()
    server.close("Server is shutting down.")
    server.close("again")
    assert server.state is State.CLOSED
    assert server.data_to_send() == b'{"type":7,"error":"Server is shutting down."}\x1e'
    with pytest.raises(RuntimeError, match="cannot send while closed"):
        server.send(CHAT)


def test_close_without_error() -> None:
    server = open_server()
    server.close()
    assert server.data_to_send() == b'{"type":7}\x1e'


def test_close_while_handshaking_queues_nothing() -> None:
    server = ServerProtocol()
    server.close("timeout")
    assert server.state is State.CLOSED
    assert server.data_to_send() == b""


def test_closed_ignores_input() -> None:
    server = open_server()
    server.close()
    server.data_to_send()
    assert server.receive_data(encode(CHAT)) == []
    assert server.receive_data(b"garbage") == []
    assert server.data_to_send() == b""


# -- client --------------------------------------------------------------------------------


def test_client_handshake_request() -> None:
    client = ClientProtocol()
    client.handshake()
    assert client.data_to_send() == HANDSHAKE
    assert client.state is State.HANDSHAKING


def test_client_opens_on_empty_reply_and_reads_batched_records() -> None:
    client = ClientProtocol()
    events = client.receive_data(b"{}\x1e" + encode(CHAT) + encode(Completion.with_result("0", None)))
    assert events == [HandshakeCompleted(), MessageReceived(CHAT), MessageReceived(Completion.with_result("0", None))]
    assert client.state is State.OPEN


def test_client_handshake_error_reply() -> None:
    client = ClientProtocol()
    events = client.receive_data(b'{"error":"The protocol \'json\' is not supported."}\x1e')
    assert events == [HandshakeFailed("The protocol 'json' is not supported.")]
    assert client.state is State.CLOSED


def test_client_garbage_handshake_reply() -> None:
    client = ClientProtocol()
    assert client.receive_data(b"<html>\x1e") == [
        HandshakeFailed("Handshake response is invalid: Message is not valid JSON: Expecting value at position 0.")
    ]


def test_client_server_close_with_error() -> None:
    events = open_client().receive_data(encode(Close("No app server is currently connected to the Azure service.")))
    assert events == [ConnectionClosed("No app server is currently connected to the Azure service.", by_peer=True)]


# A Close message's allowReconnect reaches the client: the hub connection reconnects only when it is true.


def test_close_with_allow_reconnect_true_is_reported() -> None:
    events = open_client().receive_data(b'{"type":7,"error":"instance shutting down","allowReconnect":true}\x1e')
    assert events == [ConnectionClosed("instance shutting down", by_peer=True, allow_reconnect=True)]


def test_close_without_allow_reconnect_reports_none() -> None:
    events = open_client().receive_data(b'{"type":7}\x1e')
    assert events == [ConnectionClosed(None, by_peer=True, allow_reconnect=None)]
    assert events[0].allow_reconnect is None


def test_close_with_allow_reconnect_false_is_reported() -> None:
    events = open_client().receive_data(b'{"type":7,"error":"bye","allowReconnect":false}\x1e')
    assert events == [ConnectionClosed("bye", by_peer=True, allow_reconnect=False)]


def test_protocol_violation_has_no_allow_reconnect() -> None:
    events = open_client().receive_data(b"not json\x1e")
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed)
    assert events[0].by_peer is False and events[0].allow_reconnect is None


def test_client_and_server_in_memory() -> None:
    client, server = ClientProtocol(), ServerProtocol()
    client.handshake()
    assert server.receive_data(client.data_to_send()) == [HandshakeCompleted("json", 1)]
    assert client.receive_data(server.data_to_send()) == [HandshakeCompleted()]
    client.send(CHAT)
    assert server.receive_data(client.data_to_send()) == [MessageReceived(CHAT)]
    server.send(Invocation("echo", ("alice", "hi (echo from server)")))
    assert client.receive_data(server.data_to_send()) == [
        MessageReceived(Invocation("echo", ("alice", "hi (echo from server)")))
    ]
    client.close()
    assert server.receive_data(client.data_to_send()) == [ConnectionClosed(None, by_peer=True)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_server_survives_arbitrary_bytes(chunks: list[bytes]) -> None:
    server = ServerProtocol(max_message_size=256)
    for chunk in chunks:
        for event in server.receive_data(chunk):
            assert isinstance(event, HandshakeCompleted | HandshakeFailed | MessageReceived | ConnectionClosed)
    server.data_to_send()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_open_server_survives_arbitrary_bytes(chunks: list[bytes]) -> None:
    server = open_server(max_message_size=256)
    closed = False
    for chunk in chunks:
        for event in server.receive_data(chunk):
            assert not closed  # no event after the connection closed
            closed = isinstance(event, ConnectionClosed)
    if server.state is State.CLOSED and not closed:
        pytest.fail("closed without a ConnectionClosed event")
