"""Shared pytest fixtures. Use them from a test package's ``conftest.py``::

from tests.support.fixtures import js_peer  # noqa: F401  (pytest finds fixtures by name)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.jspeer import JsPeer

JsPeerFactory = Callable[..., Awaitable[JsPeer]]


@pytest.fixture
async def js_peer() -> AsyncIterator[JsPeerFactory]:
    """A factory with :meth:`JsPeer.start`'s signature; every peer it started is stopped at teardown."""
    peers: list[JsPeer] = []

    async def start(url: str, **kwargs: Any) -> JsPeer:
        peer = await JsPeer.start(url, **kwargs)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        await peer.stop()
