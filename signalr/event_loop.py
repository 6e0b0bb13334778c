"""The ``--loop auto|asyncio|uvloop`` option of the project's servers: which event loop runs them.

``uvloop`` (libuv under asyncio's API) makes the same server code faster; it is optional (``pip install uvloop``, or
the project's ``fast`` extra). ``auto``, the default, runs on uvloop when it is installed and on asyncio's own loop
otherwise; ``uvloop`` asks for it and is a usage error (exit 2, like any bad option) when it is missing; ``asyncio``
never uses it.

Use::

    add_loop_argument(parser)      # --loop; args.loop is an EventLoop, uvloop already checked
    args.loop.run(serve(...))      # instead of asyncio.run(serve(...))
    # once listening, in serve(): log.info("... event loop: %s", running_loop_name())

The two loops differ in a few details a server may meet: uvloop's transports are not instances of
``asyncio.Transport`` (test for the method, e.g. ``abort``, instead), and a socket it cannot bind for
``create_datagram_endpoint`` is an ``OSError`` without ``errno`` whose cause is the system's (:func:`system_error`).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "LOOP_CHOICES",
    "EventLoop",
    "LoopUnavailableError",
    "add_loop_argument",
    "choose_loop",
    "running_loop_name",
    "system_error",
]

LOOP_CHOICES = ("auto", "asyncio", "uvloop")
UVLOOP_INSTALL = "pip install uvloop"

T = TypeVar("T")


class LoopUnavailableError(Exception):
    """The event loop asked for is not installed; the message names the install command."""


@dataclass(frozen=True)
class EventLoop:
    """An event loop to run a server on: its name (``asyncio`` or ``uvloop``) and how to make one."""

    name: str
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None  # None: asyncio's default loop

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on a new loop of this kind and close it, as :func:`asyncio.run` does."""
        with asyncio.Runner(loop_factory=self.factory) as runner:
            return runner.run(main)


ASYNCIO = EventLoop("asyncio")


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: the kind of event loop running the caller, for a server's startup log."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def system_error(exc: OSError) -> OSError:
    """The system's error behind ``exc``: uvloop raises ``OSError("could not bind to local_addr ...")`` without an
    ``errno`` from the ``OSError`` of the failed bind; asyncio raises that one itself."""
    cause = exc.__cause__
    return cause if exc.errno is None and isinstance(cause, OSError) else exc


def choose_loop(choice: str) -> EventLoop:
    """The loop ``--loop choice`` means: ``auto`` is uvloop when it can be imported, else asyncio; ``uvloop`` raises
    :class:`LoopUnavailableError` when it cannot; ``asyncio`` is always asyncio's own. ValueError for other names."""
    if choice not in LOOP_CHOICES:
        raise ValueError(f"invalid choice {choice!r} (choose from {', '.join(LOOP_CHOICES)})")
    if choice == "asyncio":
        return ASYNCIO
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise LoopUnavailableError(f"uvloop is not installed ({UVLOOP_INSTALL}), or use --loop asyncio") from None
        return ASYNCIO
    return EventLoop("uvloop", uvloop.new_event_loop)


def _loop_argument(text: str) -> EventLoop:
    try:
        return choose_loop(text)
    except (ValueError, LoopUnavailableError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_loop_argument(parser: argparse.ArgumentParser) -> None:
    """``--loop auto|asyncio|uvloop`` (default ``auto``); the parsed value is an :class:`EventLoop`, and a missing
    uvloop is the parser's usage error (``argument --loop: uvloop is not installed (pip install uvloop) ...``)."""
    parser.add_argument(
        "--loop",
        type=_loop_argument,
        default="auto",
        metavar="{" + ",".join(LOOP_CHOICES) + "}",
        help="event loop: uvloop (faster; pip install uvloop), asyncio, or auto = uvloop when installed, else "
        "asyncio (default auto)",
    )
