"""The one-line summaries the network trace shows for each frame, event, poll body or POST.

The tracer never parses bytes itself: it asks the connection's hub protocol to split and decode them, so the same
summaries come out for JSON and MessagePack, with the protocol's name and the frame's size in bytes.
"""

from __future__ import annotations

import pytest

from signalr.client.trace import TraceEvent, Tracer, describe_frame, only_pings
from signalr.hub_protocol import HubProtocol
from signalr.json_protocol import JSON
from signalr.messagepack_protocol import MESSAGEPACK
from signalr.messages import Close, Completion, Invocation, Ping

PING = b'{"type":6}\x1e'
ECHO = b'{"type":1,"target":"echo","arguments":["a","b"]}\x1e'
MP_PING = MESSAGEPACK.ping
MP_ECHO = MESSAGEPACK.encode(Invocation("echo", ("a", "b")))


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "empty"),
        (PING, "Ping"),
        (PING + ECHO, "2 messages: Ping, Invocation echo"),
        (PING * 6, "6 messages: Ping, Ping, Ping, Ping, +2 more"),
        (b'{"type":1,"ta', "13 bytes of an incomplete message"),
        (PING + b'{"ty', "Ping, 4 bytes of an incomplete message"),
        (PING + PING + b'{"ty', "2 messages: Ping, Ping, 4 bytes of an incomplete message"),
        (b"nonsense\x1e", "malformed message"),
        (b'{"type":99}\x1e' + PING, "2 messages: unknown message type 99, Ping"),
        (JSON.encode(Completion.with_result("7", None)), "Completion #7 (result)"),
        (JSON.encode(Close("bye")), "Close (bye)"),
    ],
    ids=[
        "empty",
        "one",
        "two",
        "over-limit",
        "only-partial",
        "one-and-partial",
        "two-and-partial",
        "bad",
        "unknown",
        "completion",
        "close",
    ],
)
def test_describe_json_frames(data: bytes, text: str) -> None:
    assert describe_frame(JSON, data) == f"json, {len(data)} bytes: {text}"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "empty"),
        (MP_PING, "Ping"),
        (MP_PING + MP_ECHO, "2 messages: Ping, Invocation echo"),
        (MP_PING * 6, "6 messages: Ping, Ping, Ping, Ping, +2 more"),
        (MP_ECHO[:-3], f"{len(MP_ECHO) - 3} bytes of an incomplete message"),
        (MP_PING + MP_ECHO[:5], "Ping, 5 bytes of an incomplete message"),
        (MP_PING + b"\x85", "Ping, 1 bytes of an incomplete message"),  # the tail is a length prefix, cut short
        (b"\x02\xc1\xc1", "malformed message"),  # 0xC1 is never used in MessagePack
        (MESSAGEPACK.frame(b"\x91\x63") + MP_PING, "2 messages: unknown message type 99, Ping"),
        (b"\xff\xff\xff\xff\xff\x01", "malformed frame (Messages over 2GB in size are not supported.)"),
        (MESSAGEPACK.encode(Completion.with_error("3", "no")), "Completion #3 (error)"),
        (MESSAGEPACK.encode(Close(None, allow_reconnect=True)), "Close"),
    ],
    ids=[
        "empty",
        "one",
        "two",
        "over-limit",
        "only-partial",
        "one-and-partial",
        "partial-prefix",
        "bad",
        "unknown",
        "hostile-prefix",
        "completion",
        "close",
    ],
)
def test_describe_messagepack_frames(data: bytes, text: str) -> None:
    assert describe_frame(MESSAGEPACK, data) == f"messagepack, {len(data)} bytes: {text}"


@pytest.mark.parametrize(("protocol", "ping", "other"), [(JSON, PING, ECHO), (MESSAGEPACK, MP_PING, MP_ECHO)])
def test_only_pings_compares_with_the_protocols_ping(protocol: HubProtocol, ping: bytes, other: bytes) -> None:
    assert only_pings(protocol, ping) and only_pings(protocol, ping * 3)
    assert not only_pings(protocol, b"") and not only_pings(protocol, ping + other)
    assert not only_pings(protocol, ping + ping[:-1]) and not only_pings(protocol, other)


def _tracer(protocol: HubProtocol) -> tuple[Tracer, list[TraceEvent]]:
    events: list[TraceEvent] = []
    tracer = Tracer(events.append)
    tracer.begin(protocol)
    return tracer, events


@pytest.mark.parametrize("protocol", [JSON, MESSAGEPACK], ids=["json", "messagepack"])
def test_the_first_frame_each_way_is_the_json_handshake_then_the_protocols_messages(protocol: HubProtocol) -> None:
    tracer, events = _tracer(protocol)
    request = f'{{"protocol":"{protocol.name}","version":1}}\x1e'.encode()
    tracer.emit("send", url="http://h:1/client/", sent=request)
    reply = b"{}\x1e" + protocol.encode(Invocation("echo", ("x",))) + protocol.ping
    tracer.emit("receive", url="http://h:1/client/", received=reply)
    tracer.emit("send", url="http://h:1/client/", sent=protocol.ping)
    tracer.emit("send", url="http://h:1/client/", sent=protocol.encode(Invocation("echo", ("y",), invocation_id="0")))
    tracer.emit("receive", url="http://h:1/client/", received=protocol.ping)
    name = protocol.name
    assert [(e.kind, e.bytes, e.detail) for e in events] == [
        ("send", len(request), f"{name}, {len(request)} bytes: handshake request ({name} v1)"),
        ("receive", len(reply), f"{name}, {len(reply)} bytes: handshake response, 2 messages: Invocation echo, Ping"),
        ("ping", len(protocol.ping), f"{name}, {len(protocol.ping)} bytes: Ping"),
        ("send", events[3].bytes, f"{name}, {events[3].bytes} bytes: Invocation echo #0"),
        ("receive", len(protocol.ping), f"{name}, {len(protocol.ping)} bytes: Ping"),
    ]


def test_a_handshake_error_a_split_response_and_a_new_attempt() -> None:
    tracer, events = _tracer(MESSAGEPACK)
    tracer.emit("receive", received=b'{"err')
    tracer.emit("receive", received=b'or":"nope"}\x1e')
    tracer.begin(JSON)  # the next attempt: its first frames are handshakes again
    tracer.emit("send", sent=b'{"protocol":"json","version":1}\x1e' + PING)
    tracer.emit("receive", received=b"[]\x1e")
    assert [e.detail for e in events] == [
        "messagepack, 5 bytes: 5 bytes of the handshake response",
        "messagepack, 12 bytes: handshake error: nope",
        f"json, {32 + len(PING)} bytes: handshake request (json v1), Ping",
        "json, 3 bytes: malformed handshake response",
    ]


def test_a_handshake_that_never_ends_is_not_buffered_for_ever() -> None:
    tracer, events = _tracer(JSON)
    for _ in range(3):
        tracer.emit("receive", received=b"x" * 40_000)
    tracer.emit("receive", received=PING)
    assert [e.detail for e in events] == [
        "json, 40000 bytes: 40000 bytes of the handshake response",
        "json, 40000 bytes: malformed handshake response",
        "json, 40000 bytes: 40000 bytes of an incomplete message",  # from now on, frames of the protocol
        "json, 11 bytes: Ping",
    ]


def test_no_callback_means_nothing_is_decoded() -> None:
    tracer = Tracer(None)
    tracer.begin(MESSAGEPACK)
    tracer.emit("receive", received=b"\xff" * 10)  # would be malformed: never looked at
    assert tracer.protocol is MESSAGEPACK


def test_ping_is_never_a_received_kind_and_sizes_can_be_given() -> None:
    tracer, events = _tracer(JSON)
    tracer.emit("send", sent=b'{"protocol":"json","version":1}\x1e')
    tracer.emit("poll", received=b"{}\x1e")
    tracer.emit("poll", received=PING, size=99)
    tracer.emit("send", sent=JSON.encode(Ping()) * 2)
    assert [(e.kind, e.bytes) for e in events] == [("send", 32), ("poll", 3), ("poll", 99), ("ping", 22)]
