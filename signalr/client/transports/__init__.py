"""The three SignalR transports over aiohttp, behind one small :class:`Transport` protocol."""

from .base import HttpSender, OnClose, OnReceive, Transport
from .long_polling import LongPollingTransport
from .server_sent_events import ServerSentEventsTransport
from .websocket import WebSocketTransport

__all__ = [
    "HttpSender",
    "LongPollingTransport",
    "OnClose",
    "OnReceive",
    "ServerSentEventsTransport",
    "Transport",
    "WebSocketTransport",
]
