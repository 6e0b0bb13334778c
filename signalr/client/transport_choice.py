"""What the user picks: one transport, or ServerSentEvents with a LongPolling fallback.

WebSockets never falls back: an APIM instance serves either WebSockets (``websocket`` profile) or SSE/LongPolling
(``sse-lp`` profile) on ``client/``, never both (docs/apim.md §2), so a fallback from WebSockets would only hide a
misconfiguration. SSE → LongPolling works behind the ``sse-lp`` profile, since both use the same HTTP API.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from signalr.hub_protocol import TransferFormat
from signalr.negotiate import TransportType

from .transports import LongPollingTransport, ServerSentEventsTransport, Transport, WebSocketTransport

__all__ = ["TRANSPORT_CLASSES", "TransportChoice"]

TRANSPORT_CLASSES: Mapping[TransportType, type[Transport]] = {
    TransportType.WEBSOCKETS: WebSocketTransport,
    TransportType.SERVER_SENT_EVENTS: ServerSentEventsTransport,
    TransportType.LONG_POLLING: LongPollingTransport,
}
"""The client transport for each transport type; each class says which transfer formats it can carry."""


class TransportChoice(Enum):
    """CLI names are the values: ``websockets``, ``sse``, ``longpolling``, ``sse-lp``."""

    WEBSOCKETS = "websockets"
    SERVER_SENT_EVENTS = "sse"
    LONG_POLLING = "longpolling"
    SSE_THEN_LONG_POLLING = "sse-lp"

    @property
    def family(self) -> str:
        """The APIM profile that serves this choice: ``websocket`` or ``sse-lp``."""
        return "websocket" if self is TransportChoice.WEBSOCKETS else "sse-lp"

    @property
    def label(self) -> str:
        """Display text, e.g. ``ServerSentEvents → LongPolling``."""
        return _LABELS[self]

    @property
    def transports(self) -> tuple[TransportType, ...]:
        """The transports to try, in order."""
        return _ORDER[self]

    @property
    def transfer_formats(self) -> frozenset[TransferFormat]:
        """What at least one of this choice's transports can carry (ServerSentEvents alone: Text only)."""
        return frozenset().union(*(TRANSPORT_CLASSES[t].transfer_formats for t in self.transports))

    def carries(self, transfer_format: TransferFormat) -> bool:
        """Whether this choice can carry a protocol of ``transfer_format`` (MessagePack is Binary)."""
        return transfer_format in self.transfer_formats


_LABELS = {
    TransportChoice.WEBSOCKETS: "WebSockets",
    TransportChoice.SERVER_SENT_EVENTS: "ServerSentEvents",
    TransportChoice.LONG_POLLING: "LongPolling",
    TransportChoice.SSE_THEN_LONG_POLLING: "ServerSentEvents → LongPolling",
}
_ORDER = {
    TransportChoice.WEBSOCKETS: (TransportType.WEBSOCKETS,),
    TransportChoice.SERVER_SENT_EVENTS: (TransportType.SERVER_SENT_EVENTS,),
    TransportChoice.LONG_POLLING: (TransportType.LONG_POLLING,),
    TransportChoice.SSE_THEN_LONG_POLLING: (TransportType.SERVER_SENT_EVENTS, TransportType.LONG_POLLING),
}
