"""``python -m tracedsync demo``: the classic teaching programs, on tracedsync.

Each program is the textbook one with ``threading`` replaced by
``tracedsync``.  They behave exactly as they would with ``threading``, except
the one that would hang forever: re-acquiring a ``Lock`` you hold raises
:class:`~tracedsync.DeadlockError` instead.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import tracedsync
from tracedsync._typenames import TextIO

__all__ = ["run_demo"]


def _heading(out: TextIO, title: str) -> None:
    print(f"\n== {title}", file=out, flush=True)


def _sleeping_workers(out: TextIO) -> None:
    _heading(out, "20 worker threads that sleep and print")
    print_lock = tracedsync.Lock(name="print-lock")
    rng = random.Random(7)
    delays = [rng.uniform(0.001, 0.02) for _ in range(20)]

    def worker(number: int) -> None:
        time.sleep(delays[number])
        with print_lock:
            print(
                f"  worker {number:2d} slept {delays[number] * 1000:4.1f} ms", file=out, flush=True
            )

    threads = [tracedsync.Thread(target=worker, args=(n,), name=f"worker-{n}") for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _rlock_counter(out: TextIO) -> None:
    _heading(out, "10 threads incrementing a global counter under an RLock")
    counter = 0
    lock = tracedsync.RLock(name="counter-lock")

    def increment() -> None:
        nonlocal counter
        for _ in range(1000):
            with lock, lock:  # re-entry is what an RLock is for
                counter += 1

    threads = [tracedsync.Thread(target=increment) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"  counter = {counter} (expected 10000)", file=out, flush=True)


def _self_deadlock(out: TextIO) -> None:
    _heading(out, "lock = Lock(); lock.acquire(); lock.acquire()  (hangs forever with threading)")
    lock = tracedsync.Lock(name="teaching-lock")
    lock.acquire()
    try:
        lock.acquire()
    except tracedsync.DeadlockError as error:
        print("  caught DeadlockError instead of a hang:", file=out, flush=True)
        for line in str(error).splitlines():
            print(f"    {line}", file=out, flush=True)
    finally:
        lock.release()

    _heading(out, "the same with an RLock (works)")
    rlock = tracedsync.RLock(name="teaching-rlock")
    rlock.acquire()
    rlock.acquire()
    print(f"  acquired twice: {rlock!r}", file=out, flush=True)
    rlock.release()
    rlock.release()


def _event_waiters(out: TextIO) -> None:
    _heading(out, "10 threads blocked in event.wait() until the main thread calls event.set()")
    event = tracedsync.Event(name="go")
    everyone_waiting = tracedsync.Barrier(11, name="all-waiting")
    woken: list[str] = []
    woken_lock = tracedsync.Lock(name="woken-lock")

    def waiter() -> None:
        everyone_waiting.wait()
        event.wait()
        with woken_lock:
            woken.append(threading.current_thread().name)

    threads = [tracedsync.Thread(target=waiter) for _ in range(10)]
    for thread in threads:
        thread.start()
    everyone_waiting.wait()
    print("  main thread: event.set()", file=out, flush=True)
    event.set()
    for thread in threads:
        thread.join()
    print(f"  {len(woken)} of 10 waiters woke up", file=out, flush=True)


def _worker_self_deadlock(out: TextIO) -> None:
    _heading(out, "a worker re-acquires its own Lock while the main thread joins it")
    lock = tracedsync.Lock(name="worker-lock")
    outcome: list[str] = []

    def worker() -> None:
        with lock:
            try:
                lock.acquire()
            except tracedsync.DeadlockError as error:
                outcome.append(str(error).splitlines()[0])

    thread = tracedsync.Thread(target=worker, name="worker")
    thread.start()
    thread.join()  # with threading, this join would never return
    print(f"  the worker got: {outcome[0]}", file=out, flush=True)


def _show_events(out: TextIO, trace: tracedsync.Trace, first: int = 0) -> None:
    """Summarise a program's events: counts by name, then a few in full."""
    counts = Counter(event["event"] for event in trace)
    print(f"  -- {len(trace)} events recorded ({trace.dropped} dropped):", file=out, flush=True)
    for name, count in sorted(counts.items()):
        print(f"     {count:5d} x {name}", file=out, flush=True)
    for event in list(trace)[:first]:
        details = {
            key: event[key]
            for key in ("outcome", "depth", "waited_ns", "held_ns", "flag")
            if event.get(key) is not None
        }
        print(
            f"     seq={event['seq']} {event['thread_name']}: {event['event']} "
            f"{event['primitive_name']} line {event['line']} {details}",
            file=out,
            flush=True,
        )


def run_demo(out: TextIO) -> int:
    """Run every teaching program, writing what happens to ``out``."""
    print(
        "tracedsync demo: the classic threading teaching programs, on tracedsync.\n"
        "Each program's events are recorded with tracedsync.record(); tracedsync's own\n"
        "warnings and errors appear on stderr as structlog lines.",
        file=out,
        flush=True,
    )
    tracedsync.configure(log_level="warning")
    for program, shown in (
        (_sleeping_workers, 0),
        (_rlock_counter, 0),
        (_event_waiters, 6),
        (_self_deadlock, 4),
        (_worker_self_deadlock, 0),
    ):
        with tracedsync.record() as trace:
            program(out)
        _show_events(out, trace, shown)
        trace.assert_pairing()
    print(
        "\nAll programs finished; none hung; every trace obeys the pairing rules.",
        file=out,
        flush=True,
    )
    return 0
