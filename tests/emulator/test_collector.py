"""The collector policy (emulator/collector.py): freeze as connections come, thaw and collect after two turnovers."""

from __future__ import annotations

import asyncio
import gc
import weakref

from emulator.collector import Collector, HeapFreezer
from tests.emulator.conftest import EmulatorFactory


class Recorder:
    """A stand-in for :mod:`gc` that writes down what the freezer asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def collector(self) -> Collector:
        return Collector(
            collect=lambda generation: self.calls.append(f"collect({generation})") or 0,
            freeze=lambda: self.calls.append("freeze"),
            unfreeze=lambda: self.calls.append("unfreeze"),
        )


def test_freezes_at_the_first_connection_then_each_time_the_connections_grew_by_a_step() -> None:
    recorder = Recorder()
    heap = HeapFreezer(100, recorder.collector())
    heap.tick(alive=0, gone=0)
    assert recorder.calls == []
    heap.tick(alive=1, gone=0)  # the service's own objects, with the first connection
    assert recorder.calls == ["collect(1)", "freeze"]
    heap.tick(alive=100, gone=0)
    assert recorder.calls == ["collect(1)", "freeze"]
    heap.tick(alive=101, gone=0)  # a young collection first, so no young garbage is frozen
    assert recorder.calls == ["collect(1)", "freeze"] * 2
    heap.tick(alive=200, gone=0)
    assert recorder.calls == ["collect(1)", "freeze"] * 2
    heap.tick(alive=201, gone=0)
    assert recorder.calls == ["collect(1)", "freeze"] * 3


def test_thaws_collects_and_freezes_again_once_twice_the_frozen_connections_are_gone() -> None:
    recorder = Recorder()
    heap = HeapFreezer(100, recorder.collector())
    heap.tick(alive=1000, gone=0)
    recorder.calls.clear()
    heap.tick(alive=1000, gone=1999)  # a churn below two turnovers: whatever cycles they left wait
    assert recorder.calls == []
    heap.tick(alive=500, gone=2000)
    assert recorder.calls == ["unfreeze", "collect(2)", "collect(1)", "freeze"]
    recorder.calls.clear()
    heap.tick(alive=500, gone=2999)  # counted again from the new freeze: 999 of 2 x 500
    assert recorder.calls == []
    heap.tick(alive=500, gone=3000)
    assert recorder.calls == ["unfreeze", "collect(2)", "collect(1)", "freeze"]


def test_departures_before_the_first_freeze_do_not_count() -> None:
    recorder = Recorder()
    heap = HeapFreezer(100, recorder.collector())
    heap.tick(alive=0, gone=5000)  # nothing open: nothing frozen, whatever came and went before
    heap.tick(alive=1, gone=5000)
    assert recorder.calls == ["collect(1)", "freeze"]
    heap.tick(alive=1, gone=5099)
    assert recorder.calls == ["collect(1)", "freeze"]


def test_a_small_service_thaws_after_a_step_of_departures_and_an_empty_one_stays_thawed() -> None:
    recorder = Recorder()
    heap = HeapFreezer(100, recorder.collector())
    heap.tick(alive=40, gone=0)
    recorder.calls.clear()
    heap.tick(alive=40, gone=99)
    assert recorder.calls == []
    heap.tick(alive=0, gone=100)
    assert recorder.calls == ["unfreeze", "collect(2)"]  # nothing is open: nothing to freeze again
    heap.tick(alive=0, gone=100)
    assert recorder.calls == ["unfreeze", "collect(2)"]


def test_step_zero_leaves_the_collector_alone() -> None:
    recorder = Recorder()
    heap = HeapFreezer(0, recorder.collector())
    heap.tick(alive=10**6, gone=0)
    heap.tick(alive=0, gone=10**6)
    assert recorder.calls == []


async def test_closed_connections_are_freed_although_they_were_frozen(start_emulator: EmulatorFactory) -> None:
    """Served for real: three WebSockets freeze the heap (a freeze every 3 connections); once they closed, one
    gracefully and two by dropping the TCP connection, their connections are freed by reference counting alone: no
    thaw (that waits for 6 departures) and no full collection."""
    emulator = await start_emulator(gc_freeze_step=3)
    assert emulator.running is not None
    try:
        sockets = [await emulator.open_ws() for _ in range(3)]
        hub = emulator.running.service.find_hub("chat")
        assert hub is not None
        refs = [weakref.ref(connection) for connection in hub.connections.values()]
        assert len(refs) == 3
        assert gc.get_freeze_count() > 0
        gc.disable()  # nothing but reference counting from here on
        await sockets[0][0].close()
        for ws, _ in sockets[1:]:
            transport = ws._response.connection.transport if ws._response.connection else None  # type: ignore[union-attr]
            assert transport is not None
            transport.abort()
        for _ in range(200):
            if all(ref() is None for ref in refs):
                break
            await asyncio.sleep(0.05)
        assert [ref() for ref in refs] == [None, None, None]
    finally:
        gc.enable()
        gc.unfreeze()
