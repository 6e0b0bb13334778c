"""The service's timer wheel: a tick hands out only the connections with a timer due, each once, never early."""

from __future__ import annotations

import time
from typing import Any

from emulator.connection import ClientConnection, ClientRoute, InboundMessage, TimerWheel
from signalr.negotiate import TransportType

TICK = 0.5
KEEPALIVE = 15.0
CLIENT_TIMEOUT = 30.0


class _Listener:
    def connected(self, connection: ClientConnection) -> None:
        pass

    async def message(self, connection: ClientConnection, message: InboundMessage) -> None:
        pass

    def disconnected(self, connection: ClientConnection, error: str | None) -> None:
        pass

    def route(self, connection: ClientConnection) -> ClientRoute | str | None:
        return None


def _connection(timers: TimerWheel | None, *, handshake_timeout: float = 15.0, **extra: Any) -> ClientConnection:
    return ClientConnection(
        connection_id="c",
        connection_token="t",
        hub="chat",
        user_id=None,
        claims={},
        client_query="",
        listener=_Listener(),
        max_buffer_size=1 << 20,
        max_message_size=1 << 15,
        handshake_timeout=handshake_timeout,
        max_poll_interval=5.0,
        timers=timers,
        **extra,
    )


def test_a_new_connection_is_due_at_its_handshake_deadline_not_before() -> None:
    wheel = TimerWheel(TICK, KEEPALIVE, CLIENT_TIMEOUT)
    connection = _connection(wheel, handshake_timeout=15.0)
    now = time.monotonic()
    assert wheel.due(now + 14.0) == []
    assert wheel.due(now + 15.0 + TICK) == [connection]
    assert wheel.due(now + 100.0) == []  # handed out once; the service files it again
    assert len(wheel) == 0


def test_an_earlier_deadline_moves_the_connection_out_of_its_old_slot() -> None:
    wheel = TimerWheel(TICK, KEEPALIVE, CLIENT_TIMEOUT)
    connection = _connection(wheel, handshake_timeout=30.0)
    now = time.monotonic()
    wheel.schedule(connection, now + 60.0)  # later: ignored, it already waits for an earlier tick
    wheel.schedule(connection, now + 2.0)
    assert len(wheel) == 1  # not left behind in the 30 s slot, where it would stay referenced until then
    assert wheel.due(now + 2.0 + TICK) == [connection]
    assert len(wheel) == 0
    assert wheel.due(now + 61.0) == []


def test_attaching_long_polling_brings_the_poll_interval_deadline_forward() -> None:
    wheel = TimerWheel(TICK, KEEPALIVE, CLIENT_TIMEOUT)
    connection = _connection(wheel, handshake_timeout=30.0)
    connection.attach(TransportType.LONG_POLLING)
    now = time.monotonic()
    assert wheel.due(now + 5.0 + TICK) == [connection]  # max_poll_interval 5 s, not the 30 s handshake timeout


def test_a_past_deadline_is_due_at_the_next_tick_and_a_long_stall_loses_nothing() -> None:
    wheel = TimerWheel(TICK, KEEPALIVE, CLIENT_TIMEOUT)
    now = time.monotonic()
    first = _connection(None)
    second = _connection(None)
    wheel.schedule(first, now - 10.0)
    wheel.schedule(second, now + 500.0)
    assert wheel.due(now + 1000.0) == [first, second]


def test_next_check_follows_the_connection_state() -> None:
    connection = _connection(None)
    connection.attach(TransportType.WEBSOCKETS)
    now = time.monotonic()
    attached_at = connection.attached_at
    assert attached_at is not None
    assert connection.next_check(now, KEEPALIVE, CLIENT_TIMEOUT) == attached_at + 15.0  # the handshake timeout
    connection.close("bye")
    closed_at = connection.closed_at
    assert closed_at is not None
    assert connection.next_check(now, KEEPALIVE, CLIENT_TIMEOUT) == closed_at + 60.0  # forgotten by then at the latest
