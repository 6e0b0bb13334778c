"""The chat's Textual app under test: wait for a condition while it runs, and read its message view as a user does.

async with app.run_test(size=(120, 36)) as pilot:
    await wait_until(pilot, lambda: seen(app, "alice JOINED"), what="the JOINED line")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chat.app import ChatApp

__all__ = ["log_text", "seen", "wait_until"]


async def wait_until(pilot: Any, predicate: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Let the app run until ``predicate()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await pilot.pause(0.02)
    await asyncio.sleep(0)


def log_text(app: ChatApp) -> str:
    """The message view's screen lines as one string, whitespace collapsed (so wrapped lines read as one)."""
    return " ".join(" ".join(app.chat_log.plain_lines).split())


def seen(app: ChatApp, text: str) -> bool:
    """True when ``text`` is on the message view (ignoring where lines wrap)."""
    return " ".join(text.split()) in log_text(app)
