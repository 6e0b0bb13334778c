"""The hub connection's states, as the official client names them."""

from __future__ import annotations

from enum import Enum

__all__ = ["ConnectionState"]


class ConnectionState(Enum):
    """Lifecycle: DISCONNECTED → CONNECTING → CONNECTED ⇄ RECONNECTING; stop() passes through DISCONNECTING."""

    DISCONNECTED = "Disconnected"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    RECONNECTING = "Reconnecting"
    DISCONNECTING = "Disconnecting"
