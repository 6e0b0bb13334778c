"""What the user picks: one transport, or ServerSentEvents with a LongPolling fallback.

WebSockets never falls back: an APIM instance serves either WebSockets (``websocket`` profile) or SSE/LongPolling
(``sse-lp`` profile) on ``client/``, never both (docs/apim.md §2), so a fallback from WebSockets would only hide a
misconfiguration. SSE → LongPolling works behind the ``sse-lp`` profile, since both use the same HTTP API.
"""

from __future__ import annotations

from enum import Enum

from signalr.negotiate import TransportType

__all__ = ["TransportChoice"]


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
