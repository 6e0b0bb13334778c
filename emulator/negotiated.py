"""A connection id that negotiate handed out and no transport has started yet.

Clients negotiate and then connect within moments, but an id that is never used is kept for the handshake timeout
(15 s, or the token's ``asrs.s.cht``), so a burst of negotiates, or a client that negotiates and goes away, must cost
little: a :class:`Negotiated` holds only what starting the connection needs (the transport's request brings the
identity, claims and query it runs with), about a third of a :class:`~emulator.connection.ClientConnection`, which the
service makes from it when the id is first used (``SignalRService.lookup``).
"""

from __future__ import annotations

__all__ = ["Negotiated"]


class Negotiated:
    """The id, token and owner of a negotiated connection, its hub, user and timers."""

    __slots__ = (
        "_timer_slot",
        "connection_id",
        "connection_token",
        "created_at",
        "handshake_timeout",
        "hub",
        "max_poll_interval",
        "owner",
        "user_id",
    )

    def __init__(
        self,
        *,
        connection_id: str,
        connection_token: str,
        hub: str,
        user_id: str | None,
        created_at: float,
        handshake_timeout: float,
        max_poll_interval: float,
    ) -> None:
        self.connection_id = connection_id
        self.connection_token = connection_token
        self.hub = hub
        self.user_id = user_id
        # Who negotiated (ClientIdentity.owner): later requests with this id's token must be the same owner.
        self.owner: str | None = None
        self.created_at = created_at
        self.handshake_timeout = handshake_timeout
        self.max_poll_interval = max_poll_interval
        self._timer_slot: int | None = None  # owned by the TimerWheel

    def __repr__(self) -> str:
        return f"<Negotiated hub={self.hub} id={self.connection_id}>"
