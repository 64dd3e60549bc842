"""Records the C accelerator keeps back in per-thread buffers (``_eventbuffers.c``).

While every sink is a recording's, the C paths of ``Lock`` and ``RLock`` keep
their events' parts in a buffer of the thread's and hand them on later, as
chunks.  What a reader sees must not change: every event that happened before
a read is in it, a recording gets exactly the events of its own time, and the
buffers of ended threads are forgotten.  These tests hold on both
implementations (pure Python publishes at once); the checks that events were
really kept back apply where C is active.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

import tracedsync
from tracedsync import _accel, _hooks

C_ACTIVE = _accel.implementation() == "c"


def _held_back(trace: tracedsync.Trace) -> bool:
    """Whether some of trace's records have not reached its list yet (C only)."""
    return len(trace._records) < len(trace)


class _Worker:
    """A thread that runs ``work`` each time it is asked, and stays alive
    (with its buffer) until it is told to end."""

    def __init__(self) -> None:
        self._asked = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._work: Callable[[], None] = lambda: None
        self._ending = False
        self._thread = threading.Thread(target=self._run, name="buffer-worker")
        self._thread.start()

    def _run(self) -> None:
        while True:
            assert self._asked.acquire(timeout=30)
            if self._ending:
                return
            self._work()
            self._done.release()

    def run(self, work: Callable[[], None]) -> None:
        self._work = work
        self._asked.release()
        assert self._done.acquire(timeout=30)

    def end(self) -> None:
        self._ending = True
        self._asked.release()
        self._thread.join(30)


@pytest.fixture
def worker() -> Iterator[_Worker]:
    running = _Worker()
    try:
        yield running
    finally:
        running.end()


def _lock_pairs(lock: tracedsync.Lock, count: int) -> Callable[[], None]:
    def work() -> None:
        for _ in range(count):
            with lock:
                pass

    return work


def test_a_read_has_the_events_a_running_thread_kept_back(worker: _Worker) -> None:
    lock = tracedsync.Lock(name="kept")
    with lock:  # its identity exists: its events can be kept back
        pass
    with tracedsync.record() as trace:
        worker.run(_lock_pairs(lock, 5))
        raw = len(trace._records)
        events = trace.events(primitive=lock)
        assert [event["event"] for event in events] == ["lock.acquire", "lock.release"] * 5
        assert {event["thread_name"] for event in events} == {"buffer-worker"}
        if C_ACTIVE:
            assert raw < 10  # they were kept back until read
    assert [event["seq"] for event in trace] == sorted(event["seq"] for event in trace)


def test_stopping_a_recording_hands_it_what_other_threads_kept_back(worker: _Worker) -> None:
    lock = tracedsync.Lock(name="stopped")
    with lock:
        pass
    trace = tracedsync.record().start()
    worker.run(_lock_pairs(lock, 3))
    trace.stop()
    received = list(trace._records)  # as stop() left them, before any read
    assert _hooks.expand_chunks(received) == 6
    assert trace.names() == ["lock.acquire", "lock.release"] * 3


def test_a_recording_started_later_gets_none_of_the_events_kept_back_before(
    worker: _Worker,
) -> None:
    # The worker's buffer holds events for the first recording's sinks when
    # the second starts: they are the first's alone, and what follows is both's.
    lock = tracedsync.RLock(name="later")
    with lock:
        pass
    with tracedsync.record() as first:
        worker.run(_lock_pairs(lock, 2))  # type: ignore[arg-type]
        with tracedsync.record() as second:
            worker.run(_lock_pairs(lock, 1))  # type: ignore[arg-type]
            if C_ACTIVE:
                assert _held_back(first)
        worker.run(_lock_pairs(lock, 1))  # type: ignore[arg-type]
    assert first.names() == ["rlock.acquire", "rlock.release"] * 4
    assert second.names() == ["rlock.acquire", "rlock.release"]
    later = [event["seq"] for event in first][4:6]
    assert [event["seq"] for event in second] == later


def test_clearing_a_lock_trace_forgets_the_events_kept_back_too(worker: _Worker) -> None:
    lock = tracedsync.Lock(name="cleared")
    with lock:
        pass
    with tracedsync.LockTrace() as trace:
        worker.run(_lock_pairs(lock, 4))
        if C_ACTIVE:
            assert len(trace._records) < 8
        trace.clear()
        assert len(trace) == 0
        worker.run(_lock_pairs(lock, 1))
    assert trace.names() == ["lock.acquire", "lock.release"]


def test_a_bounded_recording_keeps_its_capacity_with_events_kept_back(worker: _Worker) -> None:
    lock = tracedsync.Lock(name="bounded")
    with lock:
        pass
    with tracedsync.record(capacity=50) as trace:
        worker.run(_lock_pairs(lock, 20))  # 40 events, kept back
        worker.run(_lock_pairs(lock, 20))  # 40 more: the room check counts the first 40
    assert len(trace) == 50
    assert trace.dropped == 30


@pytest.mark.skipif(not C_ACTIVE, reason="the buffers are the C accelerator's")
def test_the_buffers_of_ended_threads_are_forgotten() -> None:
    from tracedsync import _speedups  # type: ignore[attr-defined]

    lock = tracedsync.Lock(name="many threads")
    with lock:
        pass
    with tracedsync.record() as trace:
        for _ in range(150):
            thread = threading.Thread(target=_lock_pairs(lock, 2))
            thread.start()
            thread.join()
        assert len(trace.events(primitive=lock)) == 150 * 4
    # A new buffer prunes once there are 64 (or twice what was kept): never
    # one per thread that ever recorded.
    assert _speedups.event_buffers() <= 64 + threading.active_count()


@pytest.mark.skipif(not C_ACTIVE, reason="the C accelerator's sequence")
def test_the_c_sequence_numbers_events_from_python_and_from_c_alike() -> None:
    sequence = _hooks.sequence
    assert type(sequence).__name__ == "Sequence"
    first = next(sequence)
    assert next(sequence) == first + 1
    lock, event = tracedsync.Lock(), tracedsync.Event()
    with lock:
        pass
    with tracedsync.record() as trace, lock:
        event.set()  # published by Python, between two C events
    numbers = [record["seq"] for record in trace]
    assert trace.names() == ["lock.acquire", "event.set", "lock.release"]
    assert numbers == sorted(numbers)
    assert numbers[0] > first + 1
    assert len(set(numbers)) == 3


@pytest.mark.skipif(not C_ACTIVE, reason="chunks are the C accelerator's")
def test_a_chunk_arriving_during_a_read_is_left_for_the_next_read(
    worker: _Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread's full buffer may reach the list between the read's expansion
    # of the chunks and its copy of the records: the read takes the settled
    # records only (before, sorting met the chunk: TypeError).
    lock = tracedsync.Lock(name="during a read")
    with lock:
        pass
    expand = _hooks.expand_chunks

    def expand_then_a_chunk_arrives(records: list[object], start: int = 0) -> int:
        settled = expand(records, start)
        worker.run(_lock_pairs(lock, 40))  # 80 events: a full buffer reaches the list
        return settled

    with tracedsync.record() as trace:
        worker.run(_lock_pairs(lock, 5))
        monkeypatch.setattr(_hooks, "expand_chunks", expand_then_a_chunk_arrives)
        first = trace.names()
        monkeypatch.setattr(_hooks, "expand_chunks", expand)
        assert first == ["lock.acquire", "lock.release"] * 5
        assert trace.names() == ["lock.acquire", "lock.release"] * 45
