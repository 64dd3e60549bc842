"""Memory per live lock and per recorded event, measured with :mod:`tracemalloc`."""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import measure
import tracedsync

__all__ = ["run"]


def _allocated_per_item(make: Callable[[int], list[Any]], count: int) -> float:
    """Bytes still allocated per item after ``make(count)``, its container excluded."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = make(count)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    container = sys.getsizeof(items)
    del items
    return (after - before - container) / count


def _locks(constructor: Callable[[], Any], *, used: bool) -> Callable[[int], list[Any]]:
    def make(count: int) -> list[Any]:
        locks = [constructor() for _ in range(count)]
        if used:
            for lock in locks:
                with lock:
                    pass
        return locks

    return make


def _recorded_events(read: bool) -> Callable[[int], list[Any]]:
    """A recording of ``count`` events, read (its records made) or not: the
    C accelerator keeps its events' parts in chunks until a read."""

    def make(count: int) -> list[Any]:
        lock = tracedsync.Lock()
        with lock:  # the lock's one-time state (order key, weak reference) comes first
            pass
        trace = tracedsync.record(capacity=count).start()
        for _ in range(count // 2):
            lock.acquire()
            lock.release()
        trace.stop()
        if read:
            len(trace)
        return [trace]

    return make


def _breakdown() -> dict[str, int]:
    """``sys.getsizeof`` of what one used traced Lock holds on its own."""
    lock = tracedsync.Lock()
    with lock:
        pass
    parts = {
        "object (slots)": sys.getsizeof(lock),
        "raw _thread.lock": sys.getsizeof(lock._lock),
    }
    if lock._weak_self is not None:
        parts["weak reference (lock-order checker)"] = sys.getsizeof(lock._weak_self)
    key = lock._order_key
    if key is not None and key is not sys.intern(key):  # an interned key is shared per site
        parts["lock-order class key (str, one per lock)"] = sys.getsizeof(key)
    return parts


def run(budget: measure.Budget, progress: Callable[[str], None]) -> dict[str, Any]:
    """Bytes per live lock (fresh and after use) and per recorded event."""
    count = 500 if budget.smoke else 20_000
    progress("memory: locks")
    per_lock = {
        "threading.Lock": _allocated_per_item(_locks(threading.Lock, used=False), count),
        "tracedsync.Lock (new)": _allocated_per_item(_locks(tracedsync.Lock, used=False), count),
        "tracedsync.Lock (after one acquire/release)": _allocated_per_item(
            _locks(tracedsync.Lock, used=True), count
        ),
        "threading.RLock": _allocated_per_item(_locks(threading.RLock, used=False), count),
        "tracedsync.RLock (after one acquire/release)": _allocated_per_item(
            _locks(tracedsync.RLock, used=True), count
        ),
    }
    progress("memory: recorded events")
    events = 2 * count
    per_event = _allocated_per_item(_recorded_events(read=True), events)
    unread = _allocated_per_item(_recorded_events(read=False), events)
    return {
        "per_lock": per_lock,
        "breakdown": _breakdown(),
        "per_recorded_event": per_event,
        "per_recorded_event_unread": unread,
    }
