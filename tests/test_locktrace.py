"""LockTrace and the ``locktrace`` fixture: queries and assertions about locks."""

from __future__ import annotations

import threading

import pytest

import tracedsync
from helpers import wait_until_blocked
from tracedsync import _lockorder
from tracedsync._lockorder import graph


@pytest.fixture(autouse=True)
def _fresh_graph() -> None:
    graph.clear()
    _lockorder.thread_state().clear()


def test_the_fixture_is_a_lock_trace_recording_this_test(
    locktrace: tracedsync.LockTrace,
) -> None:
    assert isinstance(locktrace, tracedsync.LockTrace)
    lock = tracedsync.Lock(name="mine")
    with lock:
        pass
    assert [event["event"] for event in locktrace.events(primitive=lock)] == [
        "lock.acquire",
        "lock.release",
    ]
    locktrace.assert_pairing()
    locktrace.clear()
    assert len(locktrace) == 0 and locktrace.events(primitive=lock) == []


def test_assert_acquired_before_follows_each_thread(locktrace: tracedsync.LockTrace) -> None:
    outer, inner = tracedsync.RLock(name="outer"), tracedsync.Lock(name="inner")
    unrelated = tracedsync.Lock(name="unrelated")
    go = threading.Event()

    def nested() -> None:
        go.wait(20)
        with outer, outer, inner:  # recursion of outer is not a new acquisition
            pass

    worker = tracedsync.Thread(target=nested, name="nester")
    worker.start()
    with inner:  # another thread holding inner alone is no inversion
        go.set()
    worker.join()
    with unrelated:
        pass
    locktrace.assert_acquired_before(outer, inner)
    locktrace.assert_acquired_before("outer", "inner")
    with pytest.raises(AssertionError, match="'inner' and 'unrelated' were never held together"):
        locktrace.assert_acquired_before(inner, unrelated)
    with pytest.raises(AssertionError) as caught:
        locktrace.assert_acquired_before(inner, outer)
    assert str(caught.value).startswith(
        "'inner' was acquired after 'outer': thread 'nester' acquired 'inner' at "
        "tests/test_locktrace.py:"
    )
    assert "while holding 'outer' (acquired at tests/test_locktrace.py:" in str(caught.value)


def test_a_lock_released_by_another_thread_is_no_longer_held(
    locktrace: tracedsync.LockTrace,
) -> None:
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    second.acquire()
    done = threading.Thread(target=second.release)
    done.start()
    done.join()
    with first:  # second was released by the other thread: no inversion
        pass
    with first, second:
        pass
    locktrace.assert_acquired_before(first, second)


def test_max_wait_and_max_hold_in_seconds(locktrace: tracedsync.LockTrace) -> None:
    lock = tracedsync.Lock(name="contended")
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with lock:
            holding.set()
            release.wait(20)

    thread = tracedsync.Thread(target=holder, name="holder")
    thread.start()
    holding.wait(20)
    waiter = tracedsync.Thread(target=lambda: lock.acquire() and lock.release(), name="waiter")
    waiter.start()
    # The waiter must be blocked before the holder lets go, or it did not wait.
    wait_until_blocked(waiter.ident)
    release.set()
    thread.join()
    waiter.join()
    blocked = [
        event for event in locktrace.acquisitions(lock, thread=waiter) if event["waited_ns"] > 0
    ]
    assert len(blocked) == 1
    assert locktrace.max_wait(lock) == blocked[0]["waited_ns"] / 1e9 > 0
    holds = [event["held_ns"] for event in locktrace.events("lock.release", primitive=lock)]
    assert locktrace.max_hold("contended") == max(holds) / 1e9 > 0
    assert locktrace.max_wait(waiter) > 0  # a join is a wait too
    with pytest.raises(AssertionError, match="no wait on 'idle' was recorded"):
        locktrace.max_wait(tracedsync.Lock(name="idle"))
    with pytest.raises(AssertionError, match="no release of 'idle' was recorded"):
        locktrace.max_hold("idle")


def test_findings_are_the_warnings_and_errors(locktrace: tracedsync.LockTrace) -> None:
    a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")
    with a, b:
        pass
    with b, a:
        pass
    assert [event["event"] for event in locktrace.findings()] == ["lock_order.inversion"]


def test_lock_trace_works_outside_pytest() -> None:
    lock = tracedsync.Lock(name="plain")
    with tracedsync.LockTrace(capacity=2) as trace:
        for _ in range(2):
            with lock:
                pass
    assert len(trace) == 2 and trace.dropped == 2
    assert repr(trace) == "<LockTrace events=2 dropped=2 capacity=2>"
