"""Server-Sent Events framing for the SignalR ServerSentEvents transport, sans-I/O (``docs/protocol.md`` §3.6).

The server opens the stream with the comment ``:\\r\\n``; each transport message becomes one event whose payload
lines are written as ``data: <line>\\r\\n`` followed by an empty line. Clients join an event's ``data`` lines with
``\\n`` and skip comments.
"""

from __future__ import annotations

__all__ = ["SSE_PREAMBLE", "SseDecoder", "encode_event"]

SSE_PREAMBLE = b":\r\n"


def encode_event(payload: bytes) -> bytes:
    """One SSE event carrying ``payload`` (split on ``\\n``, one trailing ``\\r`` per line trimmed)."""
    out = bytearray()
    for line in payload.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        out += b"data: " + line + b"\r\n"
    out += b"\r\n"
    return bytes(out)


class SseDecoder:
    """Incremental SSE parser: :meth:`feed` takes stream bytes and returns the payloads of completed events.

    ``max_event_size`` bounds one event: its data lines joined by ``\\n``, plus a line still waiting for its end.
    """

    def __init__(self, max_event_size: int = 16 * 1024 * 1024) -> None:
        self.max_event_size = max_event_size
        self._buffer = bytearray()
        self._data: list[bytes] = []
        self._size = 0  # of the event so far, "\n" joiners included

    def feed(self, chunk: bytes) -> list[bytes]:
        """The payloads of the events ``chunk`` completes (possibly none).

        Raises :class:`ValueError` when an event exceeds ``max_event_size``: the caller must drop the stream.
        """
        self._buffer += chunk
        events: list[bytes] = []
        while (index := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:index])
            del self._buffer[: index + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # a blank line ends the event; one without data dispatches nothing
                if self._data:
                    events.append(b"\n".join(self._data))
                self._data = []
                self._size = 0
            elif not line.startswith(b":"):  # a line starting with ":" is a comment
                name, _, value = line.partition(b":")
                if name == b"data":
                    self._add_data(value.removeprefix(b" "))
        self._check(self._size + len(self._buffer))
        return events

    def _add_data(self, value: bytes) -> None:
        # Checked per line: a whole oversized event in one chunk, or endless empty data lines, must not get through.
        self._size += len(value) + (1 if self._data else 0)
        self._data.append(value)
        self._check(self._size)

    def _check(self, size: int) -> None:
        if size > self.max_event_size:
            self._data = []
            self._size = 0
            raise ValueError(f"SSE event exceeds {self.max_event_size} bytes")
