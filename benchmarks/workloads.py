"""The measured operations, for any implementation of the primitives.

Standard library only (the peer libraries' environment imports it too).  Each
``*_loop`` function takes the primitive (or its factory) under test and
returns a timed loop: ``loop(n)`` performs the operation ``n`` times and
returns the elapsed nanoseconds.  The contended workloads return their wall
time in nanoseconds.
"""

from __future__ import annotations

import queue
import sys
import threading
from _thread import RLock as RawRLock
from _thread import allocate_lock
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from time import perf_counter_ns
from types import TracebackType
from typing import Any
from unittest import mock

#: CPython's default switch interval (``sys.getswitchinterval()`` at startup).
DEFAULT_SWITCH_INTERVAL = 0.005
#: The short interval at which the contended workloads are measured too.
SHORT_SWITCH_INTERVAL = 0.0005


# -- the floor: the cheapest possible pure-Python lock ------------------------
class PassThroughLock:
    """A lock written in Python that does nothing but delegate to a raw lock.

    Any pure-Python lock costs at least this much: one Python frame per call,
    and, when contended, a Python frame inside the critical section that
    invites GIL switches while the lock is held.  The benchmarks report the
    traced primitives' contended cost against this floor as well as against
    ``threading``.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = allocate_lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._lock.release()


class PassThroughRLock(PassThroughLock):
    """The reentrant floor, with the private protocol ``threading.Condition`` uses."""

    __slots__ = ()

    def __init__(self) -> None:
        self._lock = RawRLock()  # type: ignore[assignment]

    def _is_owned(self) -> bool:
        return self._lock._is_owned()  # type: ignore[attr-defined,no-any-return]

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]


# -- uncontended operations ---------------------------------------------------
def lock_pair_loop(lock: Any) -> Callable[[int], int]:
    """``lock.acquire(); lock.release()``, uncontended."""

    def loop(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            lock.acquire()
            lock.release()
        return perf_counter_ns() - start

    return loop


def lock_with_loop(lock: Any) -> Callable[[int], int]:
    """``with lock: pass``, uncontended."""

    def loop(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            with lock:
                pass
        return perf_counter_ns() - start

    return loop


def rlock_reentrant_loop(rlock: Any) -> Callable[[int], int]:
    """``acquire(); release()`` of an RLock the thread already holds."""

    def loop(n: int) -> int:
        rlock.acquire()
        try:
            start = perf_counter_ns()
            for _ in range(n):
                rlock.acquire()
                rlock.release()
            return perf_counter_ns() - start
        finally:
            rlock.release()

    return loop


def event_set_wait_loop(event: Any) -> Callable[[int], int]:
    """``event.set(); event.wait()`` (the wait returns at once)."""

    def loop(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            event.set()
            event.wait()
        return perf_counter_ns() - start

    return loop


def semaphore_pair_loop(semaphore: Any) -> Callable[[int], int]:
    """``semaphore.acquire(); semaphore.release()``, uncontended."""

    def loop(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            semaphore.acquire()
            semaphore.release()
        return perf_counter_ns() - start

    return loop


def condition_round_trip_loop(make_condition: Callable[[], Any]) -> Callable[[int], int]:
    """A notify/wait ping-pong between two threads; one operation is one round trip.

    The partner is a plain ``threading.Thread``: only the condition is measured.
    """

    def loop(n: int) -> int:
        condition = make_condition()
        turn = [0]  # 1: the partner's turn, 0: ours

        def partner() -> None:
            with condition:
                for _ in range(n):
                    while turn[0] != 1:
                        condition.wait()
                    turn[0] = 0
                    condition.notify()

        thread = threading.Thread(target=partner, daemon=True)
        thread.start()
        start = perf_counter_ns()
        with condition:
            for _ in range(n):
                turn[0] = 1
                condition.notify()
                while turn[0] != 0:
                    condition.wait()
        elapsed = perf_counter_ns() - start
        thread.join()
        return elapsed

    return loop


def _nothing() -> None:
    pass


def thread_start_join_loop(thread_class: Any) -> Callable[[int], int]:
    """``Thread(target=...).start(); .join()``: one operation is one thread's life."""

    def loop(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            thread = thread_class(target=_nothing)
            thread.start()
            thread.join()
        return perf_counter_ns() - start

    return loop


# -- contended workloads ------------------------------------------------------
@contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """Run the block at ``sys.setswitchinterval(seconds)``."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _run_threads(targets: list[Callable[[], None]]) -> int:
    """Start a plain thread per target, join them all; the wall time in ns."""
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    start = perf_counter_ns()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return perf_counter_ns() - start


def increments(lock: Any, threads: int, per_thread: int) -> int:
    """``threads`` threads each add 1 to a shared counter ``per_thread`` times
    under ``with lock:``; the wall time in ns.  Checks the total."""
    counter = [0]

    def work() -> None:
        for _ in range(per_thread):
            with lock:
                counter[0] += 1

    elapsed = _run_threads([work] * threads)
    if counter[0] != threads * per_thread:
        raise AssertionError(f"lost increments: {counter[0]} != {threads * per_thread}")
    return elapsed


def increments_explicit(lock: Any, threads: int, per_thread: int) -> int:
    """:func:`increments` with ``acquire()``/``release()`` calls, for locks
    that are not context managers."""
    counter = [0]

    def work() -> None:
        for _ in range(per_thread):
            lock.acquire()
            counter[0] += 1
            lock.release()

    elapsed = _run_threads([work] * threads)
    if counter[0] != threads * per_thread:
        raise AssertionError(f"lost increments: {counter[0]} != {threads * per_thread}")
    return elapsed


@contextmanager
def stdlib_built_from(**classes: Any) -> Iterator[None]:
    """Make the stdlib build its primitives from ``classes`` (``Lock=...``,
    ``RLock=...``, ``Condition=...``) for the duration of the block.

    ``queue`` and ``concurrent.futures`` look ``threading.Lock`` and friends
    up when they create an object, so patching the ``threading`` module's
    attributes makes every queue, future and executor created in the block
    use them.  No classes: the stdlib as it is.
    """
    with ExitStack() as stack:
        for name, replacement in classes.items():
            stack.enter_context(mock.patch.object(threading, name, replacement))
        yield


def queue_pipeline(build: Callable[[], Any], producers: int, items: int) -> int:
    """``producers`` producers put ``items`` items each into a bounded
    ``queue.Queue`` that as many consumers drain; the wall time in ns.

    ``build`` is a context manager factory under which the queue is created
    (see :func:`stdlib_built_from`).
    """
    with build():
        channel: queue.Queue[int | None] = queue.Queue(maxsize=64)
    received = [0] * producers

    def produce() -> None:
        for item in range(items):
            channel.put(item)
        channel.put(None)

    def consume(index: int) -> Callable[[], None]:
        def run() -> None:
            while channel.get() is not None:
                received[index] += 1

        return run

    elapsed = _run_threads([produce] * producers + [consume(i) for i in range(producers)])
    if sum(received) != producers * items:
        raise AssertionError(f"lost items: {sum(received)} != {producers * items}")
    return elapsed


def _square(value: int) -> int:
    return value * value


def executor_map(build: Callable[[], Any], workers: int, items: int) -> int:
    """``ThreadPoolExecutor(workers).map`` over ``items`` tiny tasks; the wall
    time in ns, executor start and shutdown included."""
    with build():
        start = perf_counter_ns()
        with ThreadPoolExecutor(max_workers=workers) as executor:
            results = list(executor.map(_square, range(items)))
        elapsed = perf_counter_ns() - start
    if len(results) != items:
        raise AssertionError("lost results")
    return elapsed
