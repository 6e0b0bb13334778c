"""Collect hop events: a UDP socket on 127.0.0.1 that decodes datagrams into hops, keeps the last N and tells
subscribers.

chat-server hosts one (``--flow-port``), publishes its own hops into it with ``FlowPublisher.local(collector.add)``,
and streams them to the TUI and the web page. Anything that is not a hop from a loopback sender is dropped and
counted (``stats``); nothing a sender does stops the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from .hops import MAX_DATAGRAM, Hop, InvalidHop

__all__ = ["DEFAULT_CAPACITY", "FlowCollector", "HopSubscriber"]

log = logging.getLogger("flow")

DEFAULT_CAPACITY = 5000
# Bytes of socket receive buffer asked for (about a thousand hops).
RECEIVE_BUFFER = 1 << 20
HopSubscriber = Callable[[Hop], None]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, collector: FlowCollector) -> None:
        self._collector = collector

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self._collector.receive(data, addr)
        except Exception:  # a bug here must cost one datagram, never the socket
            self._collector.stats["invalid"] += 1
            log.exception("flow: a datagram could not be handled")

    def error_received(self, exc: Exception) -> None:
        self._collector.stats["socket_errors"] += 1


class FlowCollector:
    """Receives hops on ``udp://127.0.0.1:<port>`` (``port=0``: any free port, see :attr:`address` after
    :meth:`start`) and keeps the last ``capacity`` of them.

    Subscribers (``subscribe(callback)``, which returns the function that unsubscribes) are called in the event loop
    with each new hop, in arrival order; they must not block. A subscriber that raises is logged once and counted,
    and the others still get the hop. Call ``await start()`` once and ``close()`` when done.
    """

    def __init__(self, port: int = 0, *, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not 0 <= port <= 65535:
            raise ValueError(f"flow port must be 0-65535, got {port}")
        self._port = port
        self._hops: deque[Hop] = deque(maxlen=capacity)
        self._subscribers: list[HopSubscriber] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._subscriber_failed = False
        # received: hops accepted; invalid: not a hop; foreign: not from loopback; oversized: larger than a hop can be;
        # subscriber_errors: subscriber calls that raised; socket_errors: errors the socket reported.
        self.stats: dict[str, int] = {
            "received": 0,
            "invalid": 0,
            "foreign": 0,
            "oversized": 0,
            "subscriber_errors": 0,
            "socket_errors": 0,
        }

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)`` the collector listens on. Raises RuntimeError before :meth:`start`."""
        if self._transport is None:
            raise RuntimeError("FlowCollector.address before start()")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def dropped(self) -> int:
        """Datagrams dropped for any reason."""
        return self.stats["invalid"] + self.stats["foreign"] + self.stats["oversized"]

    async def start(self) -> None:
        """Bind the UDP socket on 127.0.0.1. Raises OSError when the port is taken."""
        if self._transport is not None:
            raise RuntimeError("FlowCollector already started")
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=("127.0.0.1", self._port)
        )
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Room for a burst (a broadcast relayed to many clients is a hop per frame); the kernel caps it.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    def close(self) -> None:
        """Close the socket (idempotent). Hops kept so far stay readable; subscribers are dropped."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._subscribers.clear()

    def receive(self, data: bytes, sender: Any) -> None:
        """Handle one datagram from ``sender`` (the socket calls it; tests may too): a hop from a loopback sender is
        added, anything else dropped and counted."""
        host = sender[0] if isinstance(sender, tuple) and sender else ""
        if not (isinstance(host, str) and host.startswith("127.")):
            self.stats["foreign"] += 1
            return
        if len(data) > MAX_DATAGRAM:
            self.stats["oversized"] += 1
            return
        try:
            hop = Hop.from_json(data)
        except InvalidHop as exc:
            self.stats["invalid"] += 1
            if self.stats["invalid"] == 1:
                log.warning("flow: dropped a datagram that is not a hop (%s); further ones are only counted", exc)
            return
        self.add(hop)

    def add(self, hop: Hop) -> None:
        """Keep ``hop`` and hand it to every subscriber (chat-server's own hops come in here)."""
        self.stats["received"] += 1
        self._hops.append(hop)
        for callback in tuple(self._subscribers):
            try:
                callback(hop)
            except Exception:
                self.stats["subscriber_errors"] += 1
                if not self._subscriber_failed:
                    self._subscriber_failed = True
                    log.exception("flow: a hop subscriber failed; further failures are only counted")

    def subscribe(self, callback: HopSubscriber) -> Callable[[], None]:
        """Call ``callback(hop)`` for every new hop; returns the function that stops it (safe to call twice)."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def hops(self, last: int | None = None) -> list[Hop]:
        """The hops kept, oldest first; with ``last``, only the last ``last`` of them."""
        if last is None:
            return list(self._hops)
        if last <= 0:
            return []
        return list(self._hops)[-last:]
