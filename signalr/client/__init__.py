"""The asyncio SignalR client: ``HubConnection`` over WebSockets, ServerSentEvents or LongPolling (aiohttp), speaking
the JSON or the MessagePack hub protocol (``protocol="messagepack"``; WebSockets or LongPolling only).

Typical use::

    connection = HubConnection("http://127.0.0.1:5000/chat", transport=TransportChoice.WEBSOCKETS)
    connection.on("broadcastMessage", lambda name, message: print(f"{name}: {message}"))
    await connection.start()
    await connection.send("broadcastMessage", "alice", "hi")
    await connection.stop()
"""

from .connection_state import ConnectionState
from .errors import (
    ConnectionClosedError,
    GatewayRouteNotFound,
    HandshakeFailed,
    HubError,
    InvocationTimeout,
    NegotiateFailed,
    NotConnected,
    ServerTimeout,
    ServerUnreachable,
    SignalRClientError,
    SubscriptionKeyRejected,
    TransferFormatNotSupported,
    TransportFailed,
    Unauthorized,
)
from .hub_connection import HubConnection
from .trace import TraceEvent
from .transport_choice import TransportChoice

__all__ = [
    "ConnectionClosedError",
    "ConnectionState",
    "GatewayRouteNotFound",
    "HandshakeFailed",
    "HubConnection",
    "HubError",
    "InvocationTimeout",
    "NegotiateFailed",
    "NotConnected",
    "ServerTimeout",
    "ServerUnreachable",
    "SignalRClientError",
    "SubscriptionKeyRejected",
    "TraceEvent",
    "TransferFormatNotSupported",
    "TransportChoice",
    "TransportFailed",
    "Unauthorized",
]
