"""The hub protocol codec against the standard library doing the same work without the protocol's checks.

Measured in one process, best of several runs, so the ratios hold on a busy machine better than absolute numbers:

- encode: ``signalr.json_protocol.encode`` of a broadcastMessage Invocation vs ``json.dumps`` of the same dict +
  ``0x1E``;
- decode: ``signalr.json_protocol.decode`` of one record vs ``json.loads`` of it;
- split: ``RecordReader.feed`` over 1 MB of batched records, whole and in 4 KB chunks, vs ``bytes.split``;
- pipeline: split + decode of the 1 MB vs ``bytes.split`` + ``json.loads``;
- the same five rows for MessagePack, named ``mp …`` (``signalr.messagepack_protocol``): encode vs ``msgpack.packb``
  of the same array + a bare VarInt prefix, decode vs ``msgpack.unpackb``, split vs a bare loop reading VarInt
  prefixes without checks.

Run ``python -m bench.codec`` (``--budget`` seconds, default 12; the whole run stays under it plus one measurement).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from signalr import messagepack_protocol
from signalr.json_protocol import RECORD_SEPARATOR, RecordReader, decode, encode
from signalr.messages import Invocation

MEGABYTE = 1024 * 1024
CHUNK = 4096


@dataclass(frozen=True)
class Result:
    name: str
    ours: float  # seconds per operation
    baseline: float
    unit: str  # what one operation is
    size: int = 0  # bytes per operation, for throughput

    def line(self) -> str:
        ratio = self.ours / self.baseline if self.baseline else float("inf")
        if self.size:
            ours = f"{self.size / self.ours / MEGABYTE:8.1f} MB/s"
            base = f"{self.size / self.baseline / MEGABYTE:8.1f} MB/s"
        else:
            ours = f"{self.ours * 1e6:8.2f} µs/{self.unit}"
            base = f"{self.baseline * 1e6:8.2f} µs/{self.unit}"
        return f"{self.name:<30} ours {ours}   baseline {base}   time ours/baseline {ratio:5.2f}x"


def best_time(operation: Callable[[], object], *, seconds: float, repeats: int = 5) -> float:
    """Seconds per call: the best of ``repeats`` runs, each of as many calls as fit in ``seconds / repeats``."""
    start = time.perf_counter()
    operation()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(seconds / repeats / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            operation()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def chat_messages(count: int) -> list[Invocation]:
    """Chatroom traffic (§5): broadcastMessage with a name and a short text, some of it non-ASCII."""
    return [
        Invocation("broadcastMessage", (f"user{i % 10}", f"message number {i}: héllo wörld ✓")) for i in range(count)
    ]


def as_dict(message: Invocation) -> dict[str, object]:
    return {"type": 1, "target": message.target, "arguments": list(message.arguments)}


def batched_megabyte() -> bytes:
    """About 1 MB of back-to-back records, as a busy LongPolling response or SSE stream carries them (trap 8)."""
    record = encode(chat_messages(1)[0])
    return record * (MEGABYTE // len(record))


def varint(length: int) -> bytes:
    """The bare VarInt prefix of the baseline: no 2 GiB check."""
    out = bytearray()
    while length > 0x7F:
        out.append(length & 0x7F | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out)


def bare_split(data: bytes) -> list[bytes]:
    """The baseline splitter: VarInt prefixes read without any check (length, 5 bytes, a buffer cut short)."""
    out = []
    offset = 0
    end = len(data)
    while offset < end:
        length = shift = 0
        while True:
            byte = data[offset]
            offset += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        out.append(data[offset : offset + length])
        offset += length
    return out


def batched_megabyte_messagepack() -> bytes:
    """About 1 MB of back-to-back MessagePack messages, as one busy WebSocket frame or LongPolling body holds them."""
    framed = messagepack_protocol.encode(chat_messages(1)[0])
    return framed * (MEGABYTE // len(framed))


MEASUREMENTS = 20  # best_time calls in run(): two per row


def run(budget: float) -> list[Result]:
    each = budget / MEASUREMENTS
    message = chat_messages(1)[0]
    plain = as_dict(message)
    record = encode(message)[:-1]
    stream = batched_megabyte()
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

    def dumps() -> bytes:
        return json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode() + RECORD_SEPARATOR

    def split_whole() -> list[bytes]:
        return RecordReader().feed(stream)

    def split_chunks() -> int:
        reader = RecordReader()
        return sum(len(reader.feed(chunk)) for chunk in chunks)

    def split_plain() -> list[bytes]:
        return stream.split(RECORD_SEPARATOR)[:-1]

    def pipeline_ours() -> int:
        reader = RecordReader()
        return len([decode(r) for chunk in chunks for r in reader.feed(chunk)])

    def pipeline_plain() -> int:
        return len([json.loads(r) for r in stream.split(RECORD_SEPARATOR)[:-1]])

    array = [1, {}, None, message.target, list(message.arguments), []]
    payload = messagepack_protocol.encode_payload(message)
    mp_stream = batched_megabyte_messagepack()
    mp_chunks = [mp_stream[i : i + CHUNK] for i in range(0, len(mp_stream), CHUNK)]

    def mp_pack() -> bytes:
        packed: bytes = msgpack.packb(array, use_bin_type=True)
        return varint(len(packed)) + packed

    def mp_split_whole() -> list[bytes]:
        return messagepack_protocol.LengthPrefixedReader().feed(mp_stream)

    def mp_split_chunks() -> int:
        reader = messagepack_protocol.LengthPrefixedReader()
        return sum(len(reader.feed(chunk)) for chunk in mp_chunks)

    def mp_pipeline_ours() -> int:
        reader = messagepack_protocol.LengthPrefixedReader()
        return len([messagepack_protocol.decode(p) for chunk in mp_chunks for p in reader.feed(chunk)])

    def mp_pipeline_plain() -> int:
        return len([msgpack.unpackb(p) for p in bare_split(mp_stream)])

    return [
        Result(
            "encode broadcastMessage",
            best_time(lambda: encode(message), seconds=each),
            best_time(dumps, seconds=each),
            "msg",
        ),
        Result(
            "decode broadcastMessage",
            best_time(lambda: decode(record), seconds=each),
            best_time(lambda: json.loads(record), seconds=each),
            "msg",
        ),
        Result(
            "split 1 MB, one buffer",
            best_time(split_whole, seconds=each),
            best_time(split_plain, seconds=each),
            "MB",
            len(stream),
        ),
        Result(
            "split 1 MB, 4 KB chunks",
            best_time(split_chunks, seconds=each),
            best_time(split_plain, seconds=each),
            "MB",
            len(stream),
        ),
        Result(
            "split+decode 1 MB, 4 KB chunks",
            best_time(pipeline_ours, seconds=each, repeats=3),
            best_time(pipeline_plain, seconds=each, repeats=3),
            "MB",
            len(stream),
        ),
        Result(
            "mp encode broadcastMessage",
            best_time(lambda: messagepack_protocol.encode(message), seconds=each),
            best_time(mp_pack, seconds=each),
            "msg",
        ),
        Result(
            "mp decode broadcastMessage",
            best_time(lambda: messagepack_protocol.decode(payload), seconds=each),
            best_time(lambda: msgpack.unpackb(payload), seconds=each),
            "msg",
        ),
        Result(
            "mp split 1 MB, one buffer",
            best_time(mp_split_whole, seconds=each),
            best_time(lambda: bare_split(mp_stream), seconds=each),
            "MB",
            len(mp_stream),
        ),
        Result(
            "mp split 1 MB, 4 KB chunks",
            best_time(mp_split_chunks, seconds=each),
            best_time(lambda: bare_split(mp_stream), seconds=each),
            "MB",
            len(mp_stream),
        ),
        Result(
            "mp split+decode 1 MB, 4 KB",
            best_time(mp_pipeline_ours, seconds=each, repeats=3),
            best_time(mp_pipeline_plain, seconds=each, repeats=3),
            "MB",
            len(mp_stream),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=12.0, help="seconds to spend measuring (default 12)")
    args = parser.parse_args(argv)
    if not 0 < args.budget <= 60:
        parser.error("--budget must be between 0 and 60 seconds")
    started = time.perf_counter()
    records = len(batched_megabyte()) // len(encode(chat_messages(1)[0]))
    print(
        f"one broadcastMessage record: {len(encode(chat_messages(1)[0]))} bytes; 1 MB stream: {records} records",
        flush=True,
    )
    framed = len(messagepack_protocol.encode(chat_messages(1)[0]))
    print(
        f"one broadcastMessage in MessagePack: {framed} bytes; 1 MB stream: "
        f"{len(batched_megabyte_messagepack()) // framed} messages",
        flush=True,
    )
    for result in run(args.budget):
        print(result.line(), flush=True)
    print(f"measured in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
