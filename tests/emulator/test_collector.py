"""The collector policy (emulator/collector.py): freeze as connections come, thaw and collect once half have gone."""

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


def test_freezes_each_time_the_connections_grew_by_a_step_after_a_young_collection() -> None:
    recorder = Recorder()
    heap = HeapFreezer(100, recorder.collector())
    heap.tick(alive=99, gone=0)
    assert recorder.calls == []
    heap.tick(alive=100, gone=0)
    assert recorder.calls == ["collect(1)", "freeze"]
    heap.tick(alive=150, gone=0)
    heap.tick(alive=199, gone=0)
    assert recorder.calls == ["collect(1)", "freeze"]
    heap.tick(alive=200, gone=0)
    assert recorder.calls == ["collect(1)", "freeze"] * 2


def test_thaws_collects_and_freezes_again_once_half_of_the_frozen_connections_are_gone() -> None:
    recorder = Recorder()
    heap = HeapFreezer(100, recorder.collector())
    heap.tick(alive=1000, gone=0)
    recorder.calls.clear()
    heap.tick(alive=600, gone=400)  # a churn below half: the frozen garbage waits
    assert recorder.calls == []
    heap.tick(alive=500, gone=500)
    assert recorder.calls == ["unfreeze", "collect(2)", "collect(1)", "freeze"]
    recorder.calls.clear()
    heap.tick(alive=300, gone=700)  # counted again from the new freeze: 200 of 500 is not half
    assert recorder.calls == []
    heap.tick(alive=250, gone=750)
    assert recorder.calls == ["unfreeze", "collect(2)", "collect(1)", "freeze"]


def test_departures_before_the_first_freeze_do_not_count() -> None:
    recorder = Recorder()
    heap = HeapFreezer(100, recorder.collector())
    heap.tick(alive=50, gone=5000)  # a busy service that never held a step of connections: nothing frozen
    heap.tick(alive=100, gone=5000)
    assert recorder.calls == ["collect(1)", "freeze"]
    heap.tick(alive=100, gone=5050)  # 50 of the frozen 100 gone: fewer than a step
    assert recorder.calls == ["collect(1)", "freeze"]


def test_a_small_service_never_thaws_for_less_than_a_step_and_stays_thawed() -> None:
    recorder = Recorder()
    heap = HeapFreezer(100, recorder.collector())
    heap.tick(alive=100, gone=0)
    recorder.calls.clear()
    heap.tick(alive=40, gone=60)  # more than half gone, fewer than a step
    assert recorder.calls == []
    heap.tick(alive=0, gone=100)
    assert recorder.calls == ["unfreeze", "collect(2)"]  # nothing worth freezing is left
    heap.tick(alive=99, gone=100)
    assert recorder.calls == ["unfreeze", "collect(2)"]


def test_step_zero_leaves_the_collector_alone() -> None:
    recorder = Recorder()
    heap = HeapFreezer(0, recorder.collector())
    heap.tick(alive=10**6, gone=0)
    heap.tick(alive=0, gone=10**6)
    assert recorder.calls == []


async def test_closed_connections_are_freed_although_they_were_frozen(start_emulator: EmulatorFactory) -> None:
    """Served for real: three WebSockets freeze the heap; once they closed, their connections (cyclic garbage in the
    permanent generation) are freed by the thaw, not kept."""
    # A 0.1 s timer tick (a quarter of the shortest timer) and a freeze every 3 connections.
    emulator = await start_emulator(gc_freeze_step=3, max_poll_interval=0.4)
    assert emulator.running is not None
    try:
        sockets = [await emulator.open_ws() for _ in range(3)]
        hub = emulator.running.service.find_hub("chat")
        assert hub is not None
        refs = [weakref.ref(connection) for connection in hub.connections.values()]
        assert len(refs) == 3
        for _ in range(50):
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 0
        for ws, _ in sockets:
            await ws.close()
        for _ in range(100):
            if all(ref() is None for ref in refs):
                break
            await asyncio.sleep(0.05)
        assert [ref() for ref in refs] == [None, None, None]
    finally:
        gc.unfreeze()
