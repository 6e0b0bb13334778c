"""Raw query strings, split without re-encoding, sans-I/O.

A proxy must forward the query byte for byte (``docs/apim.md`` §4: ``asrs.op=%2Fchat``, the unencoded ``id``), and
the service copies the client's query into ``X-ASRS-Client-Query`` minus its secrets (``docs/protocol.md`` §6.3).
Both need each ``name=value`` part as received *and* its decoded name, which ``urllib.parse.parse_qsl`` (decoded
only, empty parts dropped) cannot give. :func:`split_query` gives both; callers decide how names compare
(exactly, or case-insensitively) and rebuild the query from ``raw`` parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

__all__ = ["QueryParameter", "split_query"]


@dataclass(frozen=True)
class QueryParameter:
    """One ``&``-separated part of a raw query string.

    raw: the part exactly as received; ``"&".join`` of every part's ``raw`` is the query again.
    raw_name: the part before its first ``=`` (the whole part when there is none), as received.
    name: ``raw_name`` decoded as a server reads it (``%XX`` as UTF-8, invalid bytes replaced; ``+`` as a space).
    value: the decoded part after the first ``=``; None when the part has no ``=`` (``flag``), ``""`` for ``k=``.
    """

    raw: str
    raw_name: str
    name: str
    value: str | None


def split_query(raw_query: str) -> list[QueryParameter]:
    """Every part of ``raw_query`` (without its ``?``), in order, empty parts included; ``[]`` for ``""``.

    Never raises: bad escapes stay as they are and invalid UTF-8 decodes to U+FFFD, as servers read them.
    """
    if not raw_query:
        return []
    parts = []
    for raw in raw_query.split("&"):
        raw_name, sep, raw_value = raw.partition("=")
        value = unquote_plus(raw_value) if sep else None
        parts.append(QueryParameter(raw, raw_name, unquote_plus(raw_name), value))
    return parts
