""" "Blocked forever" is a fact, not a timing guess (issue 17).

A wait that has been granted (the lock released to it, the condition
notified, the event set) counts as progress from the moment it is granted,
however long the operating system takes to run the woken thread.  Each test
delays the woken thread on purpose with a profile hook that sleeps right after
the thread's raw wait returned, the window in which tracedsync used to take it
for a thread blocked forever and kill a correct program with DeadlockError.
"""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tracedsync
from helpers import PATIENCE
from tracedsync._waits import note_foreign_start, waits

#: How long the woken thread is held back: ten times the stranded-wait check's
#: confirmation delay, so the old guess was always wrong here.
DELAY = 0.3


def _delay_after_blocking_acquire(raw_lock: Any) -> Callable[..., None]:
    """A profile function that sleeps once, right after the blocking acquire
    of ``raw_lock`` (a traced lock's raw lock) returned in this thread."""

    def hook(frame: Any, event: str, arg: Any) -> None:
        if (
            event == "c_return"
            and frame.f_code.co_name == "acquire_contended"
            and getattr(arg, "__self__", None) is raw_lock
        ):
            sys.setprofile(None)
            time.sleep(DELAY)

    return hook


def _until(condition: Callable[[], bool]) -> None:
    """Wait (at most 10 s) for another thread to reach a state."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the other thread never got there"
        time.sleep(0.001)


@pytest.mark.timeout(20)
def test_a_lock_granted_to_a_slow_waiter_is_progress() -> None:
    lock = tracedsync.Lock()
    lock.acquire()
    errors: list[BaseException] = []

    def worker() -> None:
        sys.setprofile(_delay_after_blocking_acquire(lock._lock))
        try:
            lock.acquire()
            lock.release()
        except BaseException as error:
            errors.append(error)

    thread = tracedsync.Thread(target=worker)
    thread.start()
    _until(lambda: waits.get(thread.ident or 0) is not None)
    lock.release()
    thread.join()  # the worker sleeps while registered: it is not blocked forever
    assert errors == []


def _delay_woken_condition_waiter() -> Callable[..., None]:
    """A profile function that sleeps right after a ``threading.Condition.wait``
    in this thread has been woken (its second raw ``acquire`` returned: the
    first takes the fresh waiter lock, the second blocks until notify())."""
    wait_code = threading.Condition.wait.__code__
    returns = 0

    def hook(frame: Any, event: str, arg: Any) -> None:
        nonlocal returns
        if event == "c_return" and frame.f_code is wait_code and arg.__name__ == "acquire":
            returns += 1
            if returns == 2:
                sys.setprofile(None)
                time.sleep(DELAY)

    return hook


@pytest.mark.timeout(20)
def test_a_notified_condition_waiter_is_progress() -> None:
    condition = tracedsync.Condition(tracedsync.Lock())
    ready = False
    errors: list[BaseException] = []

    def worker() -> None:
        sys.setprofile(_delay_woken_condition_waiter())
        try:
            with condition:
                while not ready:
                    condition.wait()
        except BaseException as error:
            errors.append(error)

    thread = tracedsync.Thread(target=worker)
    thread.start()
    _until(lambda: len(condition._waiters) == 1)  # type: ignore[attr-defined]
    with condition:
        ready = True
        condition.notify()
    thread.join()  # the worker sleeps while registered: it is not blocked forever
    assert errors == []


@pytest.mark.timeout(20)
def test_a_set_event_is_progress_for_its_slow_waiter() -> None:
    event = tracedsync.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        sys.setprofile(_delay_woken_condition_waiter())
        try:
            event.wait()
        except BaseException as error:
            errors.append(error)

    thread = tracedsync.Thread(target=worker)
    thread.start()
    _until(lambda: len(event._cond._waiters) == 1)  # type: ignore[attr-defined]
    event.set()
    event.clear()  # the waiter was woken: clearing does not put it back to sleep
    thread.join()
    assert errors == []


@pytest.mark.timeout(20)
def test_self_deadlock_is_detected_after_a_foreign_thread_touched_threading() -> None:
    # A thread started with _thread that called current_thread() leaves a
    # _DummyThread that threading.enumerate() still lists after it exited
    # (3.10, 3.11): it is not a thread that could release anything.
    done = _thread.allocate_lock()
    done.acquire()
    idents: list[int] = []

    def foreign() -> None:
        idents.append(threading.current_thread().ident or 0)
        done.release()

    _thread.start_new_thread(foreign, ())
    done.acquire()
    _until(lambda: idents[0] not in sys._current_frames())
    lock = tracedsync.Lock()
    lock.acquire()
    with pytest.raises(tracedsync.DeadlockError):
        lock.acquire()
    lock.release()


def test_a_foreign_thread_counts_from_the_moment_it_is_asked_for() -> None:
    # A thread started with _thread.start_new_thread runs no Python code, and
    # is not in sys._current_frames(), until the OS schedules it: a thread
    # re-acquiring its own lock meanwhile must wait for it, not raise.
    pending: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def start_later(function: Callable[..., object], args: tuple[Any, ...]) -> int:
        pending.append((function, args))
        return 0

    start = note_foreign_start(start_later)
    start(lambda: None, ())
    assert waits.starting == 1
    assert waits.others_exist(threading.get_ident())
    function, args = pending.pop()
    function(*args)  # the thread runs: from now on sys._current_frames() lists it
    assert waits.starting == 0


def test_patch_counts_foreign_thread_starts_and_unpatch_restores_them() -> None:
    original = _thread.start_new_thread
    with tracedsync.patched():
        assert _thread.start_new_thread is not original
        assert _thread.start_new_thread.__wrapped__ is original  # type: ignore[attr-defined]
        ran = _thread.allocate_lock()
        ran.acquire()
        _thread.start_new_thread(ran.release, ())
        ran.acquire()  # the thread ran: it no longer counts as starting
    assert _thread.start_new_thread is original
    _until(lambda: waits.starting == 0)


#: A wait found not granted, then granted by a thread that ends before the
#: "is this thread alone?" check: the check must see the grant (found by
#: CPython's test_logging on 3.14, a server thread setting its shut-down
#: event and exiting while the main thread entered ``shutdown()``'s wait).
GRANTED_THEN_ALONE = """
import signal, sys, threading
import tracedsync
from tracedsync import _blocking

signal.signal(signal.SIGINT, signal.SIG_IGN)  # no handler could end the wait
kind = sys.argv[1]
primitive = tracedsync.Event() if kind == "event" else tracedsync.Semaphore(0)
grant = primitive.set if kind == "event" else primitive.release
real_check_alone = _blocking.check_alone

def grant_in_a_thread_that_ends_then_check(waited_on, frame):
    granting = threading.Thread(target=grant)
    granting.start()
    granting.join()
    real_check_alone(waited_on, frame)

_blocking.check_alone = grant_in_a_thread_that_ends_then_check
result = primitive.wait() if kind == "event" else primitive.acquire()
print("waited", result)
"""


@pytest.mark.parametrize("kind", ["event", "semaphore"])
def test_a_wait_granted_by_a_thread_that_then_ended_is_not_stranded(kind: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", GRANTED_THEN_ALONE, kind],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "waited True\n"
    assert "DeadlockError" not in result.stderr


def _run_inside_first_join(monkeypatch: pytest.MonkeyPatch, handler: Callable[[], None]) -> None:
    """Make the calling thread's next ``join()`` run ``handler`` after it has
    registered its wait, as a signal handler or a ``__del__`` run by the
    garbage collector would: user code the thread did not call, run while
    tracedsync lists the thread as blocked in the join."""
    original = waits.others_can_progress
    joiner = threading.get_ident()
    ran = []

    def others_can_progress(me: int | None) -> tuple[bool, int]:
        if threading.get_ident() == joiner and not ran:
            ran.append(True)
            assert waits.get(joiner) is not None  # registered: "blocked in the join"
            handler()
        return original(me)

    monkeypatch.setattr(waits, "others_can_progress", others_can_progress)


def _hold_while_worker_waits(
    lock: Any, go: Any, worker: Callable[[], Any], errors: list[Any]
) -> Callable[[], None]:
    """A handler that takes ``lock``, lets the worker try it (``go``, a raw
    lock), and releases it once the worker waits for it (or failed), after
    ``DELAY``: long enough for the stranded-wait check to decide."""

    def handler() -> None:
        with lock:
            go.release()
            _until(
                lambda: errors or getattr(waits.get(worker().ident or 0), "primitive", None) is lock
            )
            time.sleep(DELAY)

    return handler


def _takes_lock_when_let_go(
    lock: Any, then: Callable[[], object] = int
) -> tuple[Any, list[BaseException], Callable[[], None]]:
    """A thread body that takes ``lock`` once its ``go`` (a raw lock, given
    back) is released, keeps what it raised in ``errors``, then calls ``then``."""
    go = _thread.allocate_lock()
    go.acquire()
    errors: list[BaseException] = []

    def work() -> None:
        go.acquire()
        try:
            with lock:
                pass
        except BaseException as error:
            errors.append(error)
        then()

    return go, errors, work


@pytest.mark.timeout(20)
def test_a_thread_running_a_handler_inside_its_join_closes_no_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The joiner is listed as blocked in ``join(worker)`` while a handler run
    inside that join holds the lock the worker asks for: "worker waits for
    the joiner, the joiner for the worker" read from the registry is no cycle,
    since the joiner is running (the CI failure of the ``gc`` stress scenario
    on 3.15, where a ``__del__`` run by the collector inside ``join()`` took
    the workers' lock)."""
    lock = tracedsync.Lock()
    go, errors, work = _takes_lock_when_let_go(lock)
    thread = tracedsync.Thread(target=work)
    _run_inside_first_join(monkeypatch, _hold_while_worker_waits(lock, go, lambda: thread, errors))
    thread.start()
    thread.join()
    assert errors == []


@pytest.mark.timeout(20)
def test_a_thread_running_a_handler_inside_its_wait_is_not_blocked_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same with no cycle: the joiner waits for a thread blocked on an
    event, so from the worker every other thread looks blocked forever while
    the handler holds its lock; the joiner is running, so the worker is not
    stranded."""
    lock = tracedsync.Lock()
    event = tracedsync.Event()
    go, errors, work = _takes_lock_when_let_go(lock, then=event.set)
    waiter = tracedsync.Thread(target=event.wait)
    waiter.start()
    _until(lambda: waits.get(waiter.ident or 0) is not None)
    worker = tracedsync.Thread(target=work)
    worker.start()
    _run_inside_first_join(monkeypatch, _hold_while_worker_waits(lock, go, lambda: worker, errors))
    waiter.join()
    worker.join()
    assert errors == []
