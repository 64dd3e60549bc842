"""An exception arriving while a thread is blocked (KeyboardInterrupt in the
main thread) leaves every primitive and tracedsync's bookkeeping consistent."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tracedsync
from helpers import PATIENCE, wait_until_blocked
from tracedsync._waits import waits

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


@pytest.fixture(autouse=True)
def _default_sigint_handler() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_main_once_blocked() -> threading.Thread:
    """Send SIGINT to the main thread as soon as it blocks in tracedsync."""
    main_ident = threading.main_thread().ident
    assert main_ident == threading.get_ident(), "run these tests in the main thread"

    def interrupt() -> None:
        wait_until_blocked(main_ident)
        signal.pthread_kill(main_ident, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt, daemon=True)
    interrupter.start()
    return interrupter


def _held_elsewhere(lock: Any) -> tuple[threading.Thread, threading.Event]:
    """Hold ``lock`` in another thread until the returned event is set."""
    taken = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait()
    return holder, release


@pytest.mark.parametrize("make_lock", [tracedsync.Lock, tracedsync.RLock])
@pytest.mark.parametrize("timeout", [-1, PATIENCE])
def test_interrupted_acquire_is_not_recorded_and_others_can_acquire(
    make_lock: Callable[[], Any], timeout: float
) -> None:
    lock = make_lock()
    holder, release = _held_elsewhere(lock)
    interrupter = _interrupt_main_once_blocked()
    with pytest.raises(KeyboardInterrupt):
        lock.acquire(timeout=timeout)
    interrupter.join()
    assert threading.get_ident() not in waits.snapshot()[1]
    assert lock._owner == holder.ident  # the holder is still the holder
    release.set()
    holder.join()
    assert not lock.locked() if isinstance(lock, tracedsync.Lock) else not lock._is_owned()
    other_got_it: list[bool] = []
    other = threading.Thread(target=lambda: other_got_it.append(lock.acquire(timeout=PATIENCE)))
    other.start()
    other.join()
    assert other_got_it == [True]
    assert lock._owner == other.ident


def _blocking_calls() -> list[tuple[str, Callable[[], Callable[[], object]]]]:
    def event_wait() -> Callable[[], object]:
        return tracedsync.Event().wait

    def condition_wait() -> Callable[[], object]:
        condition = tracedsync.Condition()

        def wait() -> object:
            with condition:
                try:
                    return condition.wait()
                finally:
                    # The interrupted wait re-acquired the lock before raising.
                    assert condition._is_owned()  # type: ignore[attr-defined]

        return wait

    def semaphore_acquire() -> Callable[[], object]:
        return tracedsync.Semaphore(0).acquire

    def barrier_wait() -> Callable[[], object]:
        return tracedsync.Barrier(2).wait

    def join() -> Callable[[], object]:
        stop = threading.Event()
        thread = tracedsync.Thread(target=stop.wait, daemon=True)
        thread.start()
        join.stop = stop  # type: ignore[attr-defined]
        return thread.join

    return [
        ("event", event_wait),
        ("condition", condition_wait),
        ("semaphore", semaphore_acquire),
        ("barrier", barrier_wait),
        ("join", join),
    ]


@pytest.mark.parametrize(("kind", "make_call"), _blocking_calls())
def test_interrupted_wait_leaves_no_registration(
    kind: str, make_call: Callable[[], Callable[[], object]]
) -> None:
    call = make_call()
    interrupter = _interrupt_main_once_blocked()
    with pytest.raises(KeyboardInterrupt):
        call()
    interrupter.join()
    assert threading.get_ident() not in waits.snapshot()[1], kind
    stop = getattr(make_call, "stop", None)
    if stop is not None:
        stop.set()
