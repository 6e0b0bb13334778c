"""Fixtures for the chat UI tests: an app wired to the in-memory fake hub (``tests.support.tui`` drives it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from signalr.client import TransportChoice
from tests.support.fixtures import js_peer  # noqa: F401  (pytest finds fixtures by name)

from .fake_client import FakeHub

HUB_URL = "http://127.0.0.1:5000/chat"
FIXED_TIME = datetime(2024, 5, 17, 12, 34, 56)


def fixed_clock() -> datetime:
    return FIXED_TIME


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def make_app(hub: FakeHub) -> Callable[..., Any]:
    """Build a ChatApp on the fake hub; keyword arguments override the defaults."""
    from chat.app import ChatApp

    def build(**overrides: Any) -> ChatApp:
        options: dict[str, Any] = {
            "url": HUB_URL,
            "transport": TransportChoice.WEBSOCKETS,
            "name": "alice",
            "connection_factory": hub.factory,
            "clock": fixed_clock,
            "default_name": "k3x9q2zt",
        }
        options.update(overrides)
        return ChatApp(**options)

    return build
