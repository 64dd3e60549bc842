"""Small classic concurrency bugs, each a test that fails in some interleavings.

Ported from the literature's usual suspects (SCTBench's and JaConTeBe's
deadlocks and atomicity violations, textbook condition-variable mistakes).
Each is a zero-argument callable for :func:`tracedsync.explore`: it starts
threads with tracedsync primitives and fails, by an assertion or a deadlock,
only in the interleavings that expose the bug.  ``tracedsync.yield_point()``
marks the places where plain Python code between synchronisation operations
can be preempted (a no-op when not exploring).
"""

from __future__ import annotations

from collections.abc import Callable

import tracedsync
from tracedsync import yield_point


def _run_all(*targets: Callable[[], None]) -> None:
    threads = [tracedsync.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def lock_order_deadlock() -> None:
    """Two threads take two locks in opposite orders (no sleeps)."""
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")

    def forwards() -> None:
        with first, second:
            pass

    def backwards() -> None:
        with second, first:
            pass

    _run_all(forwards, backwards)


def lost_update() -> None:
    """``counter += 1`` as a read and a write, in two threads."""
    counter = [0]

    def increment() -> None:
        value = counter[0]
        yield_point()
        counter[0] = value + 1

    _run_all(increment, increment)
    assert counter[0] == 2, f"lost update: {counter[0]}"


def check_then_act() -> None:
    """A lazily created singleton checked outside the lock."""
    created: list[object] = []
    lock = tracedsync.Lock(name="create")
    instance: list[object] = []

    def get() -> None:
        if not instance:  # check...
            yield_point()
            with lock:  # ...then act, on a stale check
                made = object()
                created.append(made)
                instance.append(made)

    _run_all(get, get, get)
    assert len(created) == 1, f"created {len(created)} singletons"


def publication_before_initialisation() -> None:
    """An object is shared before its fields are set."""

    class Config:
        value: int | None = None

    shared: list[Config] = []
    published = tracedsync.Event(name="published")

    def writer() -> None:
        config = Config()
        shared.append(config)  # published too early
        published.set()
        yield_point()
        config.value = 42

    def reader() -> None:
        published.wait()
        assert shared[0].value == 42, "read a half-initialised object"

    _run_all(writer, reader)


def wait_without_predicate() -> None:
    """``cond.wait()`` without a predicate loop misses a notify that came first."""
    condition = tracedsync.Condition(name="ready")
    ready = [False]

    def waiter() -> None:
        with condition:
            condition.wait()  # should be: while not ready[0]: condition.wait()
        assert ready[0]

    def notifier() -> None:
        with condition:
            ready[0] = True
            condition.notify()

    _run_all(waiter, notifier)


def notify_instead_of_notify_all() -> None:
    """A one-slot buffer with one condition for both "not full" and "not
    empty": ``notify()`` can wake the wrong kind of waiter, and everyone sleeps."""
    condition = tracedsync.Condition(name="buffer")
    buffer: list[int] = []

    def producer() -> None:
        for item in range(2):
            with condition:
                while buffer:
                    condition.wait()
                buffer.append(item)
                condition.notify()  # should be notify_all()

    def consumer() -> None:
        for _ in range(2):
            with condition:
                while not buffer:
                    condition.wait()
                buffer.pop()
                condition.notify()

    _run_all(producer, producer, consumer, consumer)


def dining_philosophers() -> None:
    """Three philosophers, each picking up the left fork, then the right."""
    forks = [tracedsync.Lock(name=f"fork-{n}") for n in range(3)]

    def philosopher(seat: int) -> Callable[[], None]:
        def dine() -> None:
            with forks[seat], forks[(seat + 1) % 3]:
                pass

        return dine

    _run_all(*(philosopher(seat) for seat in range(3)))


def three_thread_order_violation() -> None:
    """Fails only when A runs before B and B before C, each at one point."""
    state = {"a": False, "b": False}

    def a() -> None:
        yield_point()
        state["a"] = True

    def b() -> None:
        yield_point()
        if state["a"]:
            state["b"] = True

    def c() -> None:
        yield_point()
        assert not state["b"], "A, then B, then C"

    _run_all(c, b, a)


#: Every bug, by name.
BUGS: dict[str, Callable[[], None]] = {
    "lock-order deadlock": lock_order_deadlock,
    "lost update": lost_update,
    "check-then-act": check_then_act,
    "publication before initialisation": publication_before_initialisation,
    "wait without predicate (missed notify)": wait_without_predicate,
    "notify instead of notify_all": notify_instead_of_notify_all,
    "dining philosophers": dining_philosophers,
    "3-thread order violation": three_thread_order_violation,
}
