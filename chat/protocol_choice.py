"""The hub protocol the chat speaks: its display name, and which transports can carry it.

The chat never looks at protocol bytes: it asks the :class:`~signalr.hub_protocol.HubProtocol` for its
``transfer_format`` and the :class:`~signalr.client.TransportChoice` for what its transports carry
(``docs/protocol.md`` §3.3, §4.1: ServerSentEvents carries only the ``Text`` format; WebSockets and LongPolling carry
both). A transport choice is
usable when at least one of its transports carries the protocol, as in the official clients, which skip a transport
that cannot carry the requested format and try the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from signalr.client import TransportChoice
from signalr.hub_protocol import HubProtocol
from signalr.protocols import PROTOCOLS, protocol_named

__all__ = [
    "PROTOCOL_NAMES",
    "carries",
    "protocol_label",
    "protocol_named",
    "usable_transports",
    "why_not",
]

_LABELS: Mapping[str, str] = {"json": "JSON", "messagepack": "MessagePack"}

PROTOCOL_NAMES: tuple[str, ...] = tuple(sorted(PROTOCOLS, key=lambda name: (name != "json", name)))
"""The protocols the chat offers, by handshake name, JSON first (the default)."""


def _label(choice: TransportChoice) -> str:
    return choice.label


def protocol_label(protocol: HubProtocol) -> str:
    """How the chat names ``protocol`` on screen: ``JSON`` or ``MessagePack`` (else its handshake name)."""
    return _LABELS.get(protocol.name, protocol.name)


def carries(choice: TransportChoice, protocol: HubProtocol) -> bool:
    """True when at least one transport of ``choice`` can carry ``protocol`` (SSE alone cannot carry MessagePack)."""
    return choice.carries(protocol.transfer_format)


def usable_transports(protocol: HubProtocol) -> list[TransportChoice]:
    """The transport choices that can carry ``protocol``, in the selector's order."""
    return [choice for choice in TransportChoice if carries(choice, protocol)]


def why_not(
    choice: TransportChoice, protocol: HubProtocol, named: Callable[[TransportChoice], str] = _label
) -> str | None:
    """Why ``choice`` cannot carry ``protocol`` in words a user can act on, or ``None`` when it can.

    The transports to use instead are named by ``named``: their labels by default (a command line passes their
    option values).
    """
    if carries(choice, protocol):
        return None
    usable = [named(c) for c in usable_transports(protocol)]
    instead = f"{', '.join(usable[:-1])} or {usable[-1]}" if len(usable) > 1 else "".join(usable) or "another transport"
    kind = protocol.transfer_format.value.lower()
    carried = " and ".join(sorted(f.value.lower() for f in choice.transfer_formats))
    return f"{protocol_label(protocol)} is {kind} and {choice.label} carries only {carried}; use {instead}"
