"""Cost on real code (issue 14): what the lock-order graph keeps when a
program holds many locks of one class at once, and that holds and waits leave
tracedsync's own time out.  Facts, not timings: edge counts, and durations
compared with durations measured by the same clock around them."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tracedsync
from tracedsync import _hooks, _lockorder
from tracedsync._hooks import Record
from tracedsync._lockorder import graph


def _many(count: int) -> list[tracedsync.Lock]:
    return [tracedsync.Lock(name=f"cond-{n}") for n in range(count)]  # one creation site


def test_holding_n_locks_of_one_class_adds_n_minus_one_edges() -> None:
    # What as_completed does: every future's condition, in id order, then
    # released in set order.
    locks = _many(300)
    for lock in locks:
        lock.acquire()
    order = list(locks)
    random.Random(14).shuffle(order)
    for lock in order:
        lock.release()
    assert len(graph.edges) == len(locks) - 1
    assert not graph.full
    assert _lockorder.thread_state() == []


def test_the_path_through_the_innermost_still_finds_an_inversion() -> None:
    locks = _many(50)
    for lock in locks:
        lock.acquire()
    for lock in reversed(locks):
        lock.release()
    with tracedsync.record() as trace, locks[-1], locks[0]:
        pass
    found = trace.events("lock_order.inversion")
    assert len(found) == 1
    pairs = {(edge["before"], edge["after"]) for edge in found[0]["chain"]}
    assert ("cond-49", "cond-0") in pairs
    assert ("cond-0", "cond-1") in pairs  # the path cond-0 -> ... -> cond-49


def test_other_classes_give_one_edge_each_however_many_are_held() -> None:
    outer = _many(20)
    inner = tracedsync.Lock(name="inner")
    for lock in outer:
        lock.acquire()
    with inner:
        pass
    for lock in outer:  # outermost first: out of order every time
        lock.release()
    class_edges = [edge for edge in graph.edges if not isinstance(edge[0], int)]
    assert len(class_edges) == 1
    # The class edge is the outermost lock's (the one with no gate under it).
    assert graph.edges[class_edges[0]].before_name == "cond-0"
    assert graph.edges[class_edges[0]].gates == frozenset()


def test_releases_out_of_order_keep_later_orders_checked() -> None:
    first, second = _many(2)
    other = tracedsync.Lock(name="other")
    with tracedsync.record() as trace:
        first.acquire()
        second.acquire()
        other.acquire()
        first.release()  # out of order, next to a lock of its class
        other.release()
        second.release()
        with other, second:  # the opposite order of second -> other
            pass
    found = trace.events("lock_order.inversion")
    assert len(found) == 1
    assert _lockorder.thread_state() == []


class _SlowSink:
    """A sink that takes ``seconds`` on each record of ``event``: time that
    is tracedsync's (sinks are), not the program's."""

    def __init__(self, event: str, seconds: float) -> None:
        self.event = event
        self.seconds = seconds
        self.slept = 0.0
        self.records: list[Record] = []
        self.done = threading.Event()

    def __call__(self, record: Record) -> None:
        self.records.append(record)
        if record[3] == self.event:
            started = time.monotonic()
            time.sleep(self.seconds)
            self.slept += time.monotonic() - started
            self.done.set()


def _held_ns(sink: _SlowSink, name: str) -> int:
    for record in sink.records:
        if record[3].endswith(".release") and record[5][2] == name:
            return int(_hooks.record_data(record)["held_ns"])
    raise AssertionError(f"no release of {name}")


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_hold_leaves_tracedsyncs_time_out(kind: str) -> None:
    outer = getattr(tracedsync, kind)(name="outer")
    inner = tracedsync.Lock(name="inner")
    sink = _SlowSink("lock.acquire", 0.05)  # slow on inner's acquire event
    _hooks.add_sink(sink)
    try:
        started = time.monotonic_ns()
        with outer, inner:
            pass
        elapsed = time.monotonic_ns() - started
    finally:
        _hooks.remove_sink(sink)
    assert sink.slept >= 0.05
    assert _held_ns(sink, "outer") <= elapsed - int(sink.slept * 1e9)


def test_a_handed_off_lock_leaves_its_acquirers_tracedsync_time_out() -> None:
    gate = tracedsync.Lock(name="gate")
    other = tracedsync.Lock(name="other")
    sink = _SlowSink("lock.acquire", 0.05)
    _hooks.add_sink(sink)
    try:
        started = time.monotonic_ns()
        gate.acquire()
        with other:  # the acquirer's slow sink while it holds gate
            pass
        releaser = threading.Thread(target=gate.release)
        releaser.start()
        releaser.join()
        elapsed = time.monotonic_ns() - started
    finally:
        _hooks.remove_sink(sink)
    assert sink.slept >= 0.05
    assert _held_ns(sink, "gate") <= elapsed - int(sink.slept * 1e9)


def test_a_wait_leaves_the_waiters_tracedsync_time_out() -> None:
    lock = tracedsync.Lock(name="busy")
    sink = _SlowSink("lock.acquire.blocked", 0.05)  # the waiter's own event
    waited: list[int] = []
    lock.acquire()
    _hooks.add_sink(sink)
    try:
        started = time.monotonic_ns()

        def waiter() -> None:
            with lock:
                pass

        thread = threading.Thread(target=waiter)
        thread.start()
        assert sink.done.wait(30)  # the waiter has blocked and its sink has run
        lock.release()
        thread.join()
        elapsed = time.monotonic_ns() - started
    finally:
        _hooks.remove_sink(sink)
    for record in sink.records:
        if record[3] == "lock.acquire" and "waited_ns" in _hooks.record_data(record):
            waited.append(int(_hooks.record_data(record)["waited_ns"]))
    assert waited
    assert waited[0] <= elapsed - int(sink.slept * 1e9)


EXECUTOR = Path(__file__).resolve().parent.parent / "benchmarks" / "programs" / "executor.py"


def test_the_executor_program_runs_without_filling_the_graph(tmp_path: Path) -> None:
    """The issue's program: ThreadPoolExecutor + as_completed over 400 futures."""
    finished = subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", str(EXECUTOR), "400"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert "graph_full" not in finished.stderr
    assert "lock-order graph is full" not in finished.stderr
    assert "lock-order inversions: none" in finished.stderr
