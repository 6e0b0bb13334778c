"""Fixtures for whole-product tests: the ``chat-demo`` process, JS peers and headless browsers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.browser import browser  # noqa: F401  (pytest finds fixtures by name)
from tests.support.fixtures import js_peer  # noqa: F401
from tests.support.processes import Process, script

DemoFactory = Callable[..., tuple[Process, dict[str, Any]]]


@pytest.fixture
def chat_demo() -> Iterator[DemoFactory]:
    """Start ``chat-demo --no-tui [args]``; returns the process and its JSON line. Stopped at teardown."""
    started: list[Process] = []

    def start(*args: str) -> tuple[Process, dict[str, Any]]:
        process = Process([script("chat-demo"), "--no-tui", *args])
        started.append(process)
        return process, json.loads(process.readline(timeout=60))

    yield start
    for process in started:
        process.stop()
