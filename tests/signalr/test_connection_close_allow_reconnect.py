"""A Close message's ``allowReconnect`` reaches the client: the hub connection reconnects only when it is true."""

from __future__ import annotations

from signalr.connection import ClientProtocol, ConnectionClosed, State


def _open_client() -> ClientProtocol:
    client = ClientProtocol()
    client.handshake()
    client.receive_data(b"{}\x1e")
    assert client.state is State.OPEN
    return client


def test_close_with_allow_reconnect_true_is_reported() -> None:
    events = _open_client().receive_data(b'{"type":7,"error":"instance shutting down","allowReconnect":true}\x1e')
    assert events == [ConnectionClosed("instance shutting down", by_peer=True, allow_reconnect=True)]


def test_close_without_allow_reconnect_reports_none() -> None:
    events = _open_client().receive_data(b'{"type":7}\x1e')
    assert events == [ConnectionClosed(None, by_peer=True, allow_reconnect=None)]
    assert events[0].allow_reconnect is None


def test_close_with_allow_reconnect_false_is_reported() -> None:
    events = _open_client().receive_data(b'{"type":7,"error":"bye","allowReconnect":false}\x1e')
    assert events == [ConnectionClosed("bye", by_peer=True, allow_reconnect=False)]


def test_protocol_violation_has_no_allow_reconnect() -> None:
    events = _open_client().receive_data(b"not json\x1e")
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed)
    assert events[0].by_peer is False and events[0].allow_reconnect is None
