"""Chat names: the ASP.NET Chatroom sample's rules (``docs/protocol.md`` §5), as pure functions.

The sample asks ``Enter your name:`` with a random default and repeats with ``Invalid input. Enter your name:`` until
the name is acceptable. ``_SYSTEM_`` and ``_BROADCAST_`` are reserved sender names for centred lines, which is why a
user name may not start with ``_``; ``<`` and ``>`` are refused because the page renders names as HTML.
"""

from __future__ import annotations

import random

__all__ = [
    "BROADCAST_SENDER",
    "INVALID_PROMPT",
    "NAME_PROMPT",
    "SYSTEM_SENDER",
    "is_valid_name",
    "name_problem",
    "random_default_name",
]

NAME_PROMPT = "Enter your name:"
INVALID_PROMPT = "Invalid input. Enter your name:"
SYSTEM_SENDER = "_SYSTEM_"
BROADCAST_SENDER = "_BROADCAST_"

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def name_problem(name: str) -> str | None:
    """Why ``name`` is not acceptable (a short phrase for error lines), or ``None`` when it is.

    The rules are the sample's, unchanged: not empty, no leading ``_``, no ``<`` or ``>``. Whitespace is kept as typed.
    """
    if not name:
        return "the name must not be empty"
    if name.startswith("_"):
        return "the name must not start with '_' (reserved for _SYSTEM_ and _BROADCAST_ lines)"
    if "<" in name or ">" in name:
        return "the name must not contain '<' or '>'"
    return None


def is_valid_name(name: str) -> bool:
    """True when the sample would accept ``name``."""
    return name_problem(name) is None


def random_default_name(rng: random.Random | None = None) -> str:
    """A default like the sample's ``Math.random().toString(36).substring(2, 10)``: 8 base-36 digits.

    JavaScript occasionally yields fewer digits (a float with a short base-36 expansion); always giving 8 is the
    common case and never produces an invalid name.
    """
    source = rng if rng is not None else random.SystemRandom()
    return "".join(source.choice(_BASE36) for _ in range(8))
