"""The handshake that opens every hub connection, sans-I/O (``docs/protocol.md`` §4).

It is JSON text terminated by ``0x1E`` whatever hub protocol it selects: the client sends
``{"protocol":"json","version":1}`` (or ``messagepack``), the server answers ``{}`` or ``{"error":"…"}``. Messages in
the selected protocol may follow the answer in the same buffer (trap 8).
"""

from __future__ import annotations

from dataclasses import dataclass

from .json_protocol import RECORD_SEPARATOR, dumps_record, load_json
from .messages import MessageTooLarge, ProtocolError

__all__ = [
    "HandshakeRequest",
    "decode_handshake_request",
    "decode_handshake_response",
    "encode_handshake_request",
    "encode_handshake_response",
    "split_handshake",
]


def split_handshake(buffer: bytes, max_size: int) -> tuple[bytes, bytes] | None:
    """``(record, rest)`` once ``buffer`` holds the whole handshake record (separator removed), else ``None``.

    Raises :class:`MessageTooLarge` when the record, complete or not, is longer than ``max_size``.
    """
    end = buffer.find(RECORD_SEPARATOR)
    if end > max_size or (end < 0 and len(buffer) > max_size):
        raise MessageTooLarge(f"The message exceeded the maximum message size of {max_size} bytes.")
    if end < 0:
        return None
    return buffer[:end], buffer[end + 1 :]


def _load_object(record: bytes, what: str) -> dict[str, object]:
    obj = load_json(record)
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object.")
    return obj


@dataclass(frozen=True)
class HandshakeRequest:
    """The client's first record: ``{"protocol":"json","version":1}``."""

    protocol: str
    version: int


def encode_handshake_request(protocol: str = "json", version: int = 1) -> bytes:
    return dumps_record({"protocol": protocol, "version": version})


def decode_handshake_request(record: bytes) -> HandshakeRequest:
    """Parse the handshake request; raises :class:`ProtocolError` with the reason to send back."""
    obj = _load_object(record, "Handshake request")
    protocol = obj.get("protocol")
    version = obj.get("version")
    if not isinstance(protocol, str):
        raise ProtocolError("Missing required property 'protocol'.")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError("Missing required property 'version'.")
    return HandshakeRequest(protocol, version)


def encode_handshake_response(error: str | None = None) -> bytes:
    """``{}`` on success, ``{"error":"…"}`` on failure, as one record."""
    return dumps_record({"error": error} if error is not None else {})


def decode_handshake_response(record: bytes) -> str | None:
    """The error of a handshake response, or ``None`` when the handshake succeeded."""
    obj = _load_object(record, "Handshake response")
    error = obj.get("error")
    return str(error) if error is not None else None
