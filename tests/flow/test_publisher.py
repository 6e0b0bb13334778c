"""flow.publisher: one datagram per hop to a loopback address, nothing at all when off, never an exception."""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from flow.hops import Hop, Lifeline, Role
from flow.publisher import FlowPublisher, add_flow_argument, parse_flow_address


def hop(label: str = "POST /chat/negotiate 200") -> Hop:
    return Hop.make("app", "client", "app", "negotiate", label, status=200, duration_ms=3.5)


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_disabled_publisher_does_nothing_and_never_looks_at_the_hop() -> None:
    publisher = FlowPublisher(None)
    assert publisher.enabled is False
    assert publisher.address is None
    sentinel: Any = object()  # not a hop: a disabled emit must not even touch it
    publisher.emit(sentinel)
    assert (publisher.sent, publisher.errors) == (0, 0)


def test_enabled_publisher_sends_one_datagram_per_hop(receiver: socket.socket) -> None:
    address = receiver.getsockname()
    publisher = FlowPublisher(address)
    try:
        assert publisher.enabled is True
        assert publisher.address == address
        first, second = hop("one"), hop("two")
        publisher.emit(first)
        publisher.emit(second)
        got = [receiver.recvfrom(65536) for _ in range(2)]
        assert [Hop.from_json(data) for data, _ in got] == [first, second]
        assert got[0][0] == first.to_json()
        assert all(sender[0] == "127.0.0.1" for _, sender in got)
        assert (publisher.sent, publisher.errors) == (2, 0)
    finally:
        publisher.close()


def test_emit_without_a_collector_never_raises() -> None:
    publisher = FlowPublisher(("127.0.0.1", free_udp_port()))
    try:
        for _ in range(200):
            publisher.emit(hop())
        assert publisher.sent + publisher.errors == 200
    finally:
        publisher.close()


def test_emit_counts_a_hop_too_large_for_a_datagram(receiver: socket.socket) -> None:
    publisher = FlowPublisher(receiver.getsockname())
    try:
        huge = Hop(
            at=1.0, role=Role.APP, source=Lifeline.APP, target=Lifeline.SERVICE, kind="rest", label="x",
            connection_id="c" * 5000,
        )  # fmt: skip
        publisher.emit(huge)
        assert (publisher.sent, publisher.errors) == (0, 1)
    finally:
        publisher.close()


def test_emit_logs_nothing(receiver: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    publisher = FlowPublisher(receiver.getsockname())
    try:
        for _ in range(10):
            publisher.emit(hop())
    finally:
        publisher.close()
    assert caplog.records == []


def test_closed_publisher_is_disabled(receiver: socket.socket) -> None:
    publisher = FlowPublisher(receiver.getsockname())
    publisher.close()
    publisher.close()
    assert publisher.enabled is False
    publisher.emit(hop())
    assert publisher.sent == 0


def test_local_publisher_delivers_in_process_and_survives_a_failing_sink() -> None:
    got: list[Hop] = []
    publisher = FlowPublisher.local(got.append)
    assert publisher.enabled and publisher.address is None
    one = hop()
    publisher.emit(one)
    assert got == [one]

    def broken(_: Hop) -> None:
        raise RuntimeError("subscriber bug")

    failing = FlowPublisher.local(broken)
    failing.emit(one)
    assert (failing.sent, failing.errors) == (0, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9999", ("127.0.0.1", 9999)),
        ("127.0.0.5:1", ("127.0.0.5", 1)),
        (" 127.0.0.1:65535 ", ("127.0.0.1", 65535)),
    ],
)
def test_parse_flow_address_accepts_loopback(text: str, expected: tuple[str, int]) -> None:
    assert parse_flow_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost:9999", "loopback IP literal"),
        ("0.0.0.0:9999", "loopback"),
        ("10.0.0.1:9999", "loopback"),
        ("192.168.1.1:9999", "loopback"),
        ("[::1]:9999", "loopback IP literal"),
        ("::1:9999", "loopback IPv4"),
        ("127.0.0.1", "HOST:PORT"),
        (":9999", "HOST:PORT"),
        ("127.0.0.1:0", "port"),
        ("127.0.0.1:65536", "port"),
        ("127.0.0.1:-1", "port"),
        ("127.0.0.1:http", "port"),
        ("", "HOST:PORT"),
    ],
)
def test_parse_flow_address_refuses_anything_else(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_flow_address(text)


def test_publisher_refuses_a_non_loopback_address() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FlowPublisher(("10.1.2.3", 9999))


def test_flow_argument(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="some-server")
    add_flow_argument(parser)
    assert parser.parse_args([]).flow_to is None
    assert parser.parse_args(["--flow-to", "127.0.0.1:4000"]).flow_to == ("127.0.0.1", 4000)
    assert "publish hop events to this loopback UDP address; off by default" in " ".join(parser.format_help().split())
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--flow-to", "8.8.8.8:53"])
    assert exc.value.code == 2
    assert "loopback" in capsys.readouterr().err
