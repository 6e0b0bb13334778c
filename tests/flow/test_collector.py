"""flow.collector: a real UDP socket on 127.0.0.1 gathering hops from real publishers, and shrugging off the rest."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from flow.collector import FlowCollector
from flow.hops import Hop
from flow.ids import flow_id
from flow.publisher import FlowPublisher
from tests.support.processes import REPO


def hop(n: int = 0, kind: str = "invoke") -> Hop:
    return Hop.make("service", "client", "service", kind, f"broadcastMessage #{n}", flow_id=flow_id("c", str(n)))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` while the event loop reads datagrams; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out waiting for the collector")


@pytest.fixture
async def collector() -> AsyncIterator[FlowCollector]:
    c = FlowCollector()
    await c.start()
    yield c
    c.close()


@pytest.fixture
def raw_sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


async def test_binds_loopback_and_receives_published_hops(collector: FlowCollector) -> None:
    host, port = collector.address
    assert host == "127.0.0.1" and port > 0
    got: list[Hop] = []
    collector.subscribe(got.append)
    publisher = FlowPublisher(collector.address)
    sent = [hop(n) for n in range(20)]
    try:
        for h in sent:
            publisher.emit(h)
        await until(lambda: len(got) == 20)
    finally:
        publisher.close()
    assert got == sent
    assert collector.hops() == sent
    assert collector.hops(last=3) == sent[-3:]
    assert collector.hops(last=0) == []
    assert collector.stats["received"] == 20 and collector.dropped == 0


async def test_hostile_datagrams_are_dropped_and_counted(collector: FlowCollector, raw_sender: socket.socket) -> None:
    good = json.loads(hop().to_json())
    hostile = [
        b"",
        b"garbage \x00\xff\xfe",
        b"{",
        b"[]",
        b"null",
        b"\xef\xbb\xbf{}",
        b"[" * 3000,
        json.dumps({**good, "kind": "teleport"}).encode(),
        json.dumps({**good, "role": 7}).encode(),
        json.dumps({**good, "at": "yesterday"}).encode(),
        json.dumps({**good, "count": -5}).encode(),
        json.dumps({**good, "flow_id": "../../etc/passwd"}).encode(),
        json.dumps({**good, "extra": "x"}).encode(),
        json.dumps({**good, "label": "x" * 5000}).encode(),  # oversized as a whole
        b"x" * 60_000,
    ]
    for data in hostile:
        raw_sender.sendto(data, collector.address)
    raw_sender.sendto(hop(99).to_json(), collector.address)  # the collector keeps going
    await until(lambda: collector.stats["received"] == 1)
    await until(lambda: collector.dropped == len(hostile))
    assert collector.stats["oversized"] == 2
    assert collector.stats["invalid"] == len(hostile) - 2
    assert [h.label for h in collector.hops()] == ["broadcastMessage #99"]


async def test_a_flood_keeps_only_the_last_hops() -> None:
    collector = FlowCollector(capacity=50)
    await collector.start()
    publisher = FlowPublisher(collector.address)
    try:
        for n in range(300):
            publisher.emit(hop(n))
            if n % 50 == 49:
                await asyncio.sleep(0.01)  # let the loop read before the socket buffer fills
        await until(lambda: collector.stats["received"] >= 250, timeout=5)
        kept = collector.hops()
        assert len(kept) == 50
        assert kept[-1].label == "broadcastMessage #299"
    finally:
        publisher.close()
        collector.close()


def test_datagrams_from_non_loopback_senders_are_dropped() -> None:
    collector = FlowCollector()
    data = hop().to_json()
    for sender in (("10.0.0.7", 5000), ("192.168.1.2", 1), ("::1", 1, 0, 0), ("0.0.0.0", 1), None, ()):
        collector.receive(data, sender)
    assert collector.stats["foreign"] == 6
    assert collector.hops() == []
    collector.receive(data, ("127.0.0.1", 40000))
    assert len(collector.hops()) == 1


async def test_a_failing_subscriber_does_not_stop_the_others(collector: FlowCollector) -> None:
    got: list[Hop] = []

    def broken(_: Hop) -> None:
        raise RuntimeError("subscriber bug")

    collector.subscribe(broken)
    collector.subscribe(got.append)
    collector.add(hop(1))
    collector.add(hop(2))
    assert [h.label for h in got] == ["broadcastMessage #1", "broadcastMessage #2"]
    assert collector.stats["subscriber_errors"] == 2


async def test_unsubscribe(collector: FlowCollector) -> None:
    got: list[Hop] = []
    unsubscribe = collector.subscribe(got.append)
    collector.add(hop(1))
    unsubscribe()
    unsubscribe()
    collector.add(hop(2))
    assert len(got) == 1


async def test_local_publisher_feeds_the_collector_directly(collector: FlowCollector) -> None:
    publisher = FlowPublisher.local(collector.add)
    publisher.emit(hop(5))
    assert [h.label for h in collector.hops()] == ["broadcastMessage #5"]


async def test_a_taken_port_is_an_os_error(collector: FlowCollector) -> None:
    other = FlowCollector(collector.address[1])
    with pytest.raises(OSError):
        await other.start()


async def test_address_before_start_and_bad_arguments() -> None:
    with pytest.raises(RuntimeError):
        _ = FlowCollector().address
    with pytest.raises(ValueError):
        FlowCollector(capacity=0)
    with pytest.raises(ValueError):
        FlowCollector(70000)


async def test_hops_from_another_process(collector: FlowCollector) -> None:
    """A server process publishing with --flow-to's publisher: the collector gets every hop, in order."""
    host, port = collector.address
    script = (
        "import sys\n"
        "from flow.hops import Hop\n"
        "from flow.publisher import FlowPublisher\n"
        f"p = FlowPublisher(({host!r}, {port}))\n"
        "for n in range(50):\n"
        "    p.emit(Hop.make('service', 'service', 'others', 'fan-out', f'hop {n}', count=n))\n"
        "p.close()\n"
        "print(p.sent, p.errors)\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, cwd=REPO
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert out.split() == [b"50", b"0"]
    await until(lambda: collector.stats["received"] == 50)
    assert [h.count for h in collector.hops()] == list(range(50))


async def test_any_loopback_sender_is_accepted(collector: FlowCollector) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.2", 0))
        sender.sendto(hop(7).to_json(), collector.address)
        await until(lambda: collector.stats["received"] == 1)
    assert collector.stats["foreign"] == 0


async def test_a_flood_of_garbage_then_a_hop(collector: FlowCollector, raw_sender: socket.socket) -> None:
    rng = random.Random(16)
    for n in range(500):
        raw_sender.sendto(rng.randbytes(rng.randint(0, 600)), collector.address)
        if n % 100 == 99:
            await asyncio.sleep(0.01)
    raw_sender.sendto(hop(1).to_json(), collector.address)
    await until(lambda: collector.stats["received"] == 1)
    assert 450 <= collector.stats["invalid"] <= 500  # every datagram before the hop was read (a few may be lost)
