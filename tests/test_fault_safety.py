"""tracedsync's own guards never hang a program that ``threading`` runs
(issue 17): not in a child forked while another thread held one, not when a
signal handler or a ``__del__`` uses traced primitives inside one, not in
another thread waiting for a guard held by such code.

"Inside a guard" is reproduced deterministically by holding the guard
itself, as the interrupted tracedsync code would at that moment.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import tracedsync
from tracedsync import _accel, _deadlock, _hierarchy, _hooks, _lockorder
from tracedsync._guards import PATIENCE_SECONDS
from tracedsync._waits import waits
from tracedsync._watchdog import watchdog

#: Every guard of tracedsync's shared state, by what it guards.
GUARDS: dict[str, Callable[[], Any]] = {
    "wait-for cycle check": lambda: _deadlock._check_guard,
    "lock-order graph": lambda: _lockorder.graph._guard,
    "declared orders": lambda: _hierarchy._guard,
    "wait registry": lambda: waits._guard,
    "sinks": lambda: _hooks._sinks_guard,
    "watchdog": lambda: watchdog._guard,
}


def _until(condition: Callable[[], bool]) -> None:
    """Wait (at most 10 s) for another thread to reach a state."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the other thread never got there"
        time.sleep(0.001)


def _use_every_guard() -> None:
    """What a forked child does next: every path that takes a guard."""
    outer, inner = tracedsync.Lock(name="outer"), tracedsync.Lock(name="inner")
    with outer, inner:  # lock-order graph
        pass
    tracedsync.declare_order(tracedsync.Lock(), tracedsync.Lock())  # declared orders
    with tracedsync.record() as trace:  # sinks
        contended = tracedsync.Lock()
        contended.acquire()
        worker = tracedsync.Thread(target=lambda: contended.acquire(timeout=-1))
        worker.start()
        _until(lambda: waits.get(worker.ident or 0) is not None)  # wait registry, cycle check
        contended.release()
        worker.join()
    assert trace.names()
    tracedsync.configure(wait_warning=30)  # watchdog
    tracedsync.configure(wait_warning=0)


def _wait_for_child(pid: int, seconds: float) -> int | None:
    """The child's exit status, or ``None`` (after killing it) if it hung."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", list(GUARDS))
def test_a_child_forked_while_another_thread_holds_a_guard_runs(name: str) -> None:
    guard = GUARDS[name]()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with guard:
            held.set()
            release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: only this thread exists
        status = 1
        try:
            _use_every_guard()
            status = 0
        finally:
            os._exit(status)
    release.set()
    thread.join()
    assert _wait_for_child(pid, 15) == 0, f"the child hung or failed after fork with {name} held"


def _holder_of(lock: tracedsync.Lock) -> tuple[threading.Thread, threading.Event]:
    """A thread holding ``lock`` until the main thread is registered waiting
    for it, then releasing it; returns the thread and its "has it" event."""
    has_it = threading.Event()
    main = threading.get_ident()

    def hold() -> None:
        with lock:
            has_it.set()
            _until(lambda: waits.get(main) is not None)

    return threading.Thread(target=hold), has_it


@pytest.mark.timeout(20)
def test_a_signal_handler_inside_the_cycle_check_may_wait_on_a_traced_lock() -> None:
    lock = tracedsync.Lock()
    holder, has_it = _holder_of(lock)
    holder.start()
    has_it.wait()
    acquired: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        acquired.append(lock.acquire())
        lock.release()

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with _deadlock._check_guard:  # this thread is inside a cycle check
            signal.raise_signal(signal.SIGUSR1)  # the handler runs here
    finally:
        signal.signal(signal.SIGUSR1, previous)
    holder.join()
    assert acquired == [True]


@pytest.mark.timeout(20)
def test_a_finalizer_inside_the_cycle_check_may_wait_on_a_traced_lock() -> None:
    lock = tracedsync.Lock()
    holder, has_it = _holder_of(lock)
    holder.start()
    has_it.wait()
    acquired: list[bool] = []

    class Resource:
        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            acquired.append(lock.acquire())
            lock.release()

    Resource()
    with _deadlock._check_guard:  # this thread is inside a cycle check
        gc.collect()  # the finalizer runs here
    holder.join()
    assert acquired == [True]


@pytest.mark.timeout(20)
def test_other_threads_do_not_wait_forever_for_a_guard_held_by_blocked_user_code() -> None:
    # The main thread is inside the cycle check and (as a signal handler
    # would) blocks there on `first`, held by a worker that must first get
    # `second` to release it.  The worker's contended acquire of `second`
    # waits for the check guard at most PATIENCE_SECONDS, then goes on
    # unchecked; with threading this program runs, so it must here.
    first, second = tracedsync.Lock(), tracedsync.Lock()
    has_first, second_held = threading.Event(), threading.Event()

    def worker() -> None:
        with first:
            has_first.set()
            second_held.wait()
            _until(lambda: waits.get(main) is not None)  # main blocks on `first`
            with second:
                pass

    def holder_of_second() -> None:
        with second:
            second_held.set()
            _until(lambda: waits.get(worker_thread.ident or 0) is not None)

    main = threading.get_ident()
    worker_thread = threading.Thread(target=worker)
    second_thread = threading.Thread(target=holder_of_second)
    worker_thread.start()
    has_first.wait()
    second_thread.start()
    started = time.monotonic()
    with _deadlock._check_guard, first:
        pass
    worker_thread.join()
    second_thread.join()
    assert time.monotonic() - started >= PATIENCE_SECONDS * 0.9


def test_a_forked_child_has_no_foreign_waits_or_starts() -> None:
    # Not a guard, but the same hazard: the registry must not describe
    # threads that do not exist in the child.
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, f"{len(waits.snapshot()[1])} {waits.starting}".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        assert answer.read() == "0 0"
    assert _wait_for_child(pid, 10) == 0


if sys.platform == "win32":  # pragma: no cover - signals and fork are POSIX here
    pytestmark = pytest.mark.skip("POSIX only")


def test_a_finalizer_run_inside_current_frames_never_calls_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CPython can collect garbage while sys._current_frames() holds its
    # thread-list lock; a __del__ waiting on a traced lock then asked for the
    # frames again and deadlocked inside CPython (seen with 32 threads).
    from tracedsync import _sites

    calls: list[int] = []
    real = sys._current_frames

    def frames_once() -> dict[int, Any]:
        calls.append(threading.get_ident())
        assert _sites.current_frames() is None  # what a nested caller gets
        me = threading.get_ident()
        assert waits.others_can_progress(me)[0]  # "cannot tell": the cautious answer
        assert waits.others_exist(me)
        return real()

    monkeypatch.setattr(sys, "_current_frames", frames_once)
    assert threading.get_ident() in (_sites.current_frames() or {})
    assert calls == [threading.get_ident()]


#: Run in a subprocess: before the fix, a collection ran while the
#: interpreter's thread list was locked, and the collector's callback (user
#: code, as a ``__del__``) starting a thread (which adds to that list)
#: deadlocked the whole process, signal handlers included, so only a timeout
#: from outside ends it.
_COLLECTION_INSIDE_THREAD_LIST = """
import _thread, gc, sys, threading
from tracedsync import _sites
from tracedsync._waits import waits

gate, ready = threading.Event(), threading.Barrier(9)

def parked():
    ready.wait()
    gate.wait()

threads = [threading.Thread(target=parked) for _ in range(8)]
for thread in threads:
    thread.start()
ready.wait()
reads = []

def callback(phase, info):
    if phase == "start":  # user code the collector runs, like a __del__
        reads.append(_thread.start_new_thread(len, ((),)))  # needs the thread list

thresholds = gc.get_threshold()
gc.callbacks.append(callback)
gc.set_threshold(1)  # collect at (nearly) every allocation
try:
    me = threading.get_ident()
    waits.others_can_progress(me)
    waits.others_exist(me)
    _sites.current_frames()
finally:
    gc.set_threshold(*thresholds)
    gc.callbacks.remove(callback)
gate.set()
for thread in threads:
    thread.join()
print("finished", bool(reads))
"""


@pytest.mark.timeout(120)
def test_no_collection_runs_while_tracedsync_reads_the_thread_list() -> None:
    # 3.11 collects at any allocation, and sys._current_frames() allocates a
    # frame object per thread while it holds the interpreter's thread-list
    # lock: a __del__ run there that waited on a traced lock hung the stress
    # program's gc scenario as soon as the lock's holder started a thread.
    import subprocess

    try:
        finished = subprocess.run(
            [sys.executable, "-c", _COLLECTION_INSIDE_THREAD_LIST],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the collector ran inside sys._current_frames(): the process hung")
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["finished", "True"]


@pytest.mark.xfail(
    sys.version_info >= (3, 12) and _accel.implementation() == "python",
    strict=False,
    reason="3.12+, pure Python: the argument tuple of the raw lock's own acquire(False)"
    " can still ask for a collection, which runs as that call returns (lock taken, owner"
    " not yet recorded); rare: the tuple is new only when no 1-tuple is free, and the"
    " methods free one just before (the primer), which another thread may take first"
    " (the C takes the raw lock without a tuple)",
)
@pytest.mark.timeout(60)
def test_no_collection_runs_between_taking_a_lock_and_returning() -> None:
    # With threading.Lock no Python code runs between taking the lock and
    # returning to the caller, so a __del__ can never find the lock taken by
    # its own thread there.  tracedsync allocated after the raw lock was taken
    # on a thread's first lock and a lock's first acquisition (3.11 collects
    # right there), and from 3.12 a collection asked for by the held-lock
    # entry ran as the raw acquire returned (lock taken, no owner yet).

    def work(current: list[Any]) -> None:
        for _ in range(10):
            lock = tracedsync.Lock()
            current[:] = [lock]
            for _ in range(5):
                with lock:
                    pass

    def check(lock: tracedsync.Lock) -> str | None:
        return f"{lock!r} owner={lock._owner}" if lock.locked() else None

    assert _finalizers_in_the_worker(work, check, threads=10) == []


def _finalizers_in_the_worker(
    work: Callable[[list[Any]], None], check: Callable[[Any], str | None], threads: int
) -> list[str]:
    """Run ``work(current)`` in ``threads`` fresh threads, one after the other,
    while the collector runs at (nearly) every allocation and every collection
    runs a finalizer; what ``check(current[0])`` said inside the worker."""
    current: list[Any] = []
    worker: list[int] = []
    inside: list[str] = []
    stop = [False]

    class Chain:
        """Garbage whose finalizer leaves new garbage: every collection runs one."""

        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            if current and worker and threading.get_ident() == worker[0]:
                seen = check(current[0])
                if seen is not None:
                    inside.append(seen)
            if not stop[0]:
                Chain()

    def run() -> None:
        worker[:] = [threading.get_ident()]
        work(current)

    thresholds = gc.get_threshold()
    Chain()
    gc.set_threshold(1)
    try:
        for _ in range(threads):  # each thread's first lock, too
            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
    finally:
        stop[0] = True
        gc.set_threshold(*thresholds)
        gc.collect()
    return inside


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(30)
def test_a_forked_child_records_into_its_own_copy_of_a_recording() -> None:
    # docs/recording.md, "Child processes": record() in a forked child keeps
    # recording there, into the child's copy; the parent never sees them.
    lock = tracedsync.Lock(name="forked.recording")
    read, write = os.pipe()
    with tracedsync.record() as trace:
        with lock:
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            pid = os.fork()
        if pid == 0:
            status = 1
            try:
                with lock:
                    pass
                mine = [event for event in trace if event["pid"] == os.getpid()]
                os.write(write, f"{len(mine)} {len(trace)}".encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        with os.fdopen(read) as answer:
            child_mine, child_total = map(int, answer.read().split())
        assert _wait_for_child(pid, 15) == 0
    assert child_mine >= 2  # the child's acquire and release, in its copy
    assert child_total >= child_mine + 2  # after the parent's events up to the fork
    assert all(event["pid"] == os.getpid() for event in trace)
    assert len(trace.events("lock.acquire", primitive=lock)) == 1  # the parent's only


@pytest.mark.timeout(60)
def test_no_collection_runs_between_taking_a_contended_lock_and_returning() -> None:
    # The contended path: the waiter is handed the lock, records itself as
    # owner, unregisters its wait and returns.  Unregistering was written
    # `waits.end(outer)` in a finally block, which CPython compiles to an
    # attribute load making a bound method: an allocation, so (3.11 at
    # once, 3.12+ when `end` starts) a collection and a __del__ that found
    # its own thread holding the lock (seen in the gc stress scenario).
    lock = tracedsync.Lock(name="contended.collection")
    waiter: list[int] = []
    inside: list[str] = []
    stop = [False]
    ballast: list[list[int]] = []

    class Chain:
        """Garbage whose finalizer leaves new garbage (every collection runs one)
        and live objects, so the next allocation anywhere collects again."""

        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            me = threading.get_ident()
            if waiter and me == waiter[0] and lock._owner == me:
                inside.append("the waiter holds the lock")
            if not stop[0]:
                Chain()
                ballast.extend([] for _ in range(8))

    def wait_for_it() -> None:
        waiter[:] = [threading.get_ident()]
        with lock:
            pass

    thresholds = gc.get_threshold()
    Chain()
    gc.set_threshold(1)
    try:
        for _ in range(20):
            lock.acquire()
            thread = threading.Thread(target=wait_for_it)
            thread.start()
            _until(lambda started=thread: waits.get(started.ident or 0) is not None)
            lock.release()
            thread.join()
            waiter.clear()
    finally:
        stop[0] = True
        gc.set_threshold(*thresholds)
        gc.collect()
    assert inside == []


@pytest.mark.xfail(
    sys.version_info >= (3, 12) and _accel.implementation() == "python",
    strict=False,
    reason="3.12+, pure Python: as for Lock, the raw lock's own acquire(False) argument"
    " tuple, in the Python _acquire_restore methods, made rare by the primer (the C ones"
    " take the raw lock without a tuple)",
)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["RLock", "Lock"])
def test_no_collection_finds_a_lock_a_condition_retakes_without_an_owner(kind: str) -> None:
    # threading.RLock records its owner in the C call that takes its lock, so
    # a __del__ taking it in the same thread always recurses.  The Python
    # _acquire_restore of RLock and Lock (a Condition wait taking its lock
    # back) looked up the user's site after taking the raw lock, an
    # allocation (3.11 collects right there), and such a __del__ then
    # waited for itself.
    depth = 2 if kind == "RLock" else 0  # an RLock's wait releases every level

    def work(current: list[Any]) -> None:
        for _ in range(10):
            lock = getattr(tracedsync, kind)()
            current[:] = [lock]
            condition = threading.Condition(lock)
            for _ in range(5):
                for _ in range(depth):
                    lock.acquire()
                with condition:
                    condition.wait(0)
                for _ in range(depth):
                    lock.release()

    def check(lock: Any) -> str | None:
        return repr(lock) if lock._lock.locked() and lock._owner is None else None

    assert _finalizers_in_the_worker(work, check, threads=5) == []
