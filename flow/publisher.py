"""Publish hop events: one UDP datagram per hop to a loopback address, off by default, free when off.

Every server CLI gets ``--flow-to 127.0.0.1:PORT`` (:func:`add_flow_argument`) and builds one
``FlowPublisher(args.flow_to)``. Hot paths do::

    if publisher.enabled:
        publisher.emit(Hop.make(...))

Disabled, that is one attribute read. Enabled, :meth:`FlowPublisher.emit` is one ``to_json`` and one non-blocking
``sendto``: no await, no task, no log line. A full socket buffer or an absent collector loses the hop (counted in
``errors``); a hop is never worth slowing a message down.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Callable

from .hops import Hop

__all__ = ["FlowPublisher", "add_flow_argument", "parse_flow_address"]


def parse_flow_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:PORT"`` → ``("127.0.0.1", PORT)``. Only an IPv4 loopback literal (127.0.0.0/8) and a port 1–65535
    are accepted: hop events never leave the machine. Raises ValueError with a clear text otherwise."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"flow address must be HOST:PORT with a loopback IP (e.g. 127.0.0.1:9999), got {text!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"flow address host must be a loopback IP literal such as 127.0.0.1, got {host!r}") from None
    if ip.version != 4 or not ip.is_loopback:
        raise ValueError(f"flow address must be a loopback IPv4 address (127.0.0.1), got {host}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"flow address port must be 1-65535, got {port_text!r}")
    return str(ip), int(port_text)


def _flow_address_arg(text: str) -> tuple[str, int]:
    try:
        return parse_flow_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_flow_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--flow-to HOST:PORT`` (dest ``flow_to``: a ``(host, port)`` tuple or None) to a CLI parser; a
    non-loopback address is a usage error (exit 2)."""
    parser.add_argument(
        "--flow-to",
        metavar="HOST:PORT",
        type=_flow_address_arg,
        default=None,
        help="publish hop events to this loopback UDP address; off by default",
    )


class FlowPublisher:
    """Sends hops as UDP datagrams to ``address``; ``FlowPublisher(None)`` is disabled and costs nothing.

    ``enabled`` is a plain attribute (read it, never set it): hot paths check it before building a hop. ``sent`` and
    ``errors`` count datagrams handed to the kernel and hops lost (socket errors, a hop too large). Call
    :meth:`close` when the server stops. :meth:`local` makes a publisher that hands hops to a function in the same
    process (chat-server publishing into its own collector).
    """

    __slots__ = ("_deliver", "_sock", "_target", "enabled", "errors", "sent")

    def __init__(self, address: tuple[str, int] | None) -> None:
        self.enabled = False
        self.sent = 0
        self.errors = 0
        self._target: tuple[str, int] = ("127.0.0.1", 0)
        self._sock: socket.socket | None = None
        self._deliver: Callable[[Hop], None] | None = None
        if address is not None:
            host, port = parse_flow_address(f"{address[0]}:{address[1]}")
            self._target = (host, port)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sock = sock
            self.enabled = True

    @classmethod
    def local(cls, deliver: Callable[[Hop], None]) -> FlowPublisher:
        """An enabled publisher whose hops go straight to ``deliver`` (e.g. ``FlowCollector.add``), no socket."""
        publisher = cls(None)
        publisher._deliver = deliver
        publisher.enabled = True
        return publisher

    @property
    def address(self) -> tuple[str, int] | None:
        """Where hops go, or None (disabled or local)."""
        return self._target if self._sock is not None else None

    def emit(self, hop: Hop) -> None:
        """Send one hop. Never raises, never blocks, never awaits; returns at once when disabled."""
        if not self.enabled:
            return
        sock = self._sock
        try:
            if sock is not None:
                sock.sendto(hop.to_json(), self._target)
            elif self._deliver is not None:
                self._deliver(hop)
            else:
                return
        except Exception:
            # OSError (buffer full, no route), InvalidHop (too large), or a local subscriber's bug: the hop is lost,
            # the caller's hot path goes on.
            self.errors += 1
        else:
            self.sent += 1

    def close(self) -> None:
        """Stop publishing (idempotent): ``enabled`` becomes False and the socket is closed."""
        self.enabled = False
        self._deliver = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
