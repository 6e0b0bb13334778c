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

    ``max_event_size`` bounds the bytes buffered for one event; beyond it :class:`ValueError` is raised.
    """

    def __init__(self, max_event_size: int = 16 * 1024 * 1024) -> None:
        self.max_event_size = max_event_size
        self._buffer = bytearray()
        self._data: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        while True:
            index = self._buffer.find(b"\n")
            if index < 0:
                break
            line = bytes(self._buffer[:index])
            del self._buffer[: index + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                self._data = []
                self._size = 0
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
                self._size += len(value)
                # Checked per line too: a whole oversized event arriving in one chunk must not get through.
                if self._size > self.max_event_size:
                    self._data = []
                    self._size = 0
                    raise ValueError(f"SSE event exceeds {self.max_event_size} bytes")
        if self._size + len(self._buffer) > self.max_event_size:
            raise ValueError(f"SSE event exceeds {self.max_event_size} bytes")
        return events
