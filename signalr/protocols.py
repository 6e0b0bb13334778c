"""The hub protocols this library speaks, by handshake name."""

from __future__ import annotations

from collections.abc import Mapping

from .hub_protocol import HubProtocol
from .json_protocol import JSON
from .messagepack_protocol import MESSAGEPACK

__all__ = ["PROTOCOLS", "protocol_named"]

PROTOCOLS: Mapping[str, HubProtocol] = {JSON.name: JSON, MESSAGEPACK.name: MESSAGEPACK}


def protocol_named(name: str) -> HubProtocol:
    """The protocol a user or handshake names; raises :class:`ValueError` listing the known names."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown hub protocol {name!r}: expected one of {', '.join(sorted(PROTOCOLS))}") from None
