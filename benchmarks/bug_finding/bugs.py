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

import time
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


# -- ported from SCTBench (Thomson, Donaldson, Betts, PPoPP 2014 / TOPC 2016)
# and the JDK bug of the PCT paper; names as in SCTBench.


def account() -> None:
    """SCTBench ``CS.account_bad``: the checker's arithmetic is wrong, which
    shows only when it runs after both the deposit and the withdrawal."""
    lock = tracedsync.Lock(name="m")
    x, y, z = 1, 2, 4
    state = {"balance": x, "deposited": False, "withdrawn": False}

    def deposit() -> None:
        with lock:
            state["balance"] += y
            state["deposited"] = True

    def withdraw() -> None:
        with lock:
            state["balance"] -= z
            state["withdrawn"] = True

    def check() -> None:
        with lock:
            if state["deposited"] and state["withdrawn"]:
                assert state["balance"] == (x - y) - z, "account: wrong balance"

    _run_all(check, deposit, withdraw)


def carter01() -> None:
    """SCTBench ``CS.carter01_bad``: two classes of readers share lock ``l``,
    the first of each class taking it under ``m``; a deadlock."""
    m, l_lock = tracedsync.Lock(name="m"), tracedsync.Lock(name="l")
    count = {"A": 0, "B": 0}

    def user(kind: str) -> Callable[[], None]:
        def run() -> None:
            with m:
                count[kind] += 1
                if count[kind] == 1:
                    l_lock.acquire()
            with m:
                count[kind] -= 1
                if count[kind] == 0:
                    l_lock.release()

        return run

    _run_all(user("A"), user("B"), lambda: None, lambda: None)


def token_ring() -> None:
    """SCTBench ``CS.token_ring_bad``: three atomic copies around a ring, and
    a checker that expects them equal once all three ran."""
    atomic = tracedsync.Lock(name="atomic")
    x = {1: 1, 2: 2, 3: 1}
    flags: set[int] = set()

    def t1() -> None:
        with atomic:
            x[1] = (x[3] + 1) % 4
            flags.add(1)

    def t2() -> None:
        with atomic:
            x[2] = x[1]
            flags.add(2)

    def t3() -> None:
        with atomic:
            x[3] = x[2]
            flags.add(3)

    def t4() -> None:
        with atomic:
            if flags == {1, 2, 3}:
                assert x[1] == x[2] == x[3], f"token ring: {x}"

    _run_all(t1, t2, t3, t4)


def wronglock() -> None:
    """SCTBench ``CS.wronglock_bad`` (1 + 7 threads): one thread increments
    under ``dataLock``, seven under ``thisLock``: the wrong lock."""
    data_lock, this_lock = tracedsync.Lock(name="dataLock"), tracedsync.Lock(name="thisLock")
    data = [0]

    def func_a() -> None:
        with data_lock:
            before = data[0]
            yield_point()
            data[0] += 1
            yield_point()
            assert data[0] == before + 1, "wronglock: another thread wrote in between"

    def func_b() -> None:
        with this_lock:
            data[0] += 1

    _run_all(func_a, *(func_b for _ in range(7)))


def _twostage(first_stage_threads: int) -> None:
    """SCTBench ``CS.twostage_bad``: each stage is locked, but the two stages
    together are not atomic, and a reader between them sees stage 2 stale."""
    data1_lock, data2_lock = tracedsync.Lock(name="data1"), tracedsync.Lock(name="data2")
    value = {1: 0, 2: 0}

    def func_a() -> None:
        with data1_lock:
            value[1] = 1
        with data2_lock:
            value[2] = value[1] + 1

    def func_b() -> None:
        with data1_lock:
            if value[1] == 0:
                return
            first = value[1]
        with data2_lock:
            second = value[2]
        assert second == first + 1, f"twostage: {first}, {second}"

    _run_all(*(func_a for _ in range(first_stage_threads)), func_b)


def twostage() -> None:
    """SCTBench ``CS.twostage_bad``: one writer, one reader."""
    _twostage(1)


def twostage_100() -> None:
    """SCTBench ``CS.twostage_100_bad``: 100 writers, one reader (102 threads
    with the test's own)."""
    _twostage(100)


def reorder() -> None:
    """SCTBench ``CS.reorder_5_bad``: four setters write ``a`` then ``b``; a
    checker that reads between the two writes sees a mixed state."""
    state = {"a": 0, "b": 0}

    def setter() -> None:
        state["a"] = 1
        yield_point()
        state["b"] = -1

    def checker() -> None:
        a = state["a"]
        yield_point()
        b = state["b"]
        assert (a, b) in ((0, 0), (1, -1)), f"reorder: a={a}, b={b}"

    _run_all(*(setter for _ in range(4)), checker)


class _StringBuffer:
    """``java.lang.StringBuffer`` of JDK 1.4: every method synchronised on
    the buffer, and ``append(StringBuffer)`` reads the other's length and its
    characters under two separate locks of the other buffer."""

    def __init__(self, text: str, name: str) -> None:
        self.lock = tracedsync.RLock(name=name)
        self.chars = list(text)

    def length(self) -> int:
        with self.lock:
            return len(self.chars)

    def get_chars(self, end: int) -> list[str]:
        with self.lock:
            if end > len(self.chars):
                raise IndexError("StringIndexOutOfBoundsException")
            return self.chars[:end]

    def append(self, other: _StringBuffer) -> None:
        with self.lock:
            length = other.length()
            self.chars.extend(other.get_chars(length))

    def erase(self) -> None:
        with self.lock:
            self.chars.clear()


def stringbuffer() -> None:
    """JDK 1.4 ``StringBuffer.append(StringBuffer)`` (SCTBench
    ``CB.stringbuffer-jdk1.4``; the atomicity violation of Flanagan and
    Freund): the other buffer shrinks between its length and its copy."""
    buffer, other = _StringBuffer("", "buffer"), _StringBuffer("abc", "other")
    _run_all(lambda: buffer.append(other), other.erase)


# -- correct programs: every strategy must report nothing (no false livelock)


def spin_wait() -> None:
    """A consumer spins with ``time.sleep(0)`` until a producer sets a flag."""
    ready = [False]
    lock = tracedsync.Lock(name="ready")

    def producer() -> None:
        with lock:
            ready[0] = True

    def consumer() -> None:
        while True:
            with lock:
                if ready[0]:
                    return
            time.sleep(0)

    _run_all(consumer, producer)


def bounded_buffer() -> None:
    """A one-slot buffer with a condition and predicate loops, notify_all."""
    condition = tracedsync.Condition(tracedsync.Lock(name="buffer"))
    items: list[int] = []
    consumed: list[int] = []

    def producer() -> None:
        for item in range(3):
            with condition:
                while items:
                    condition.wait()
                items.append(item)
                condition.notify_all()

    def consumer() -> None:
        for _ in range(3):
            with condition:
                while not items:
                    condition.wait()
                consumed.append(items.pop())
                condition.notify_all()

    _run_all(producer, consumer)
    assert consumed == [0, 1, 2]


def twostage_fixed() -> None:
    """``CS.twostage`` with both stages under one lock: correct."""
    lock = tracedsync.Lock(name="stages")
    value = {1: 0, 2: 0}

    def func_a() -> None:
        with lock:
            value[1] = 1
            value[2] = value[1] + 1

    def func_b() -> None:
        with lock:
            if value[1]:
                assert value[2] == value[1] + 1

    _run_all(func_a, func_a, func_b)


def spinning_try_lock() -> None:
    """Two threads retry ``acquire(blocking=False)`` until they get a lock
    the other holds for a while: correct, and spins."""
    lock = tracedsync.Lock(name="tried")
    done = [0]

    def worker() -> None:
        while not lock.acquire(blocking=False):
            pass
        try:
            done[0] += 1
        finally:
            lock.release()

    _run_all(worker, worker)
    assert done[0] == 2


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
    "account (SCTBench)": account,
    "carter01 (SCTBench)": carter01,
    "token ring (SCTBench)": token_ring,
    "wronglock, 1+7 threads (SCTBench)": wronglock,
    "twostage (SCTBench)": twostage,
    "twostage, 100+1 threads (SCTBench)": twostage_100,
    "reorder, 4+1 threads (SCTBench)": reorder,
    "StringBuffer, JDK 1.4 (SCTBench, PCT paper)": stringbuffer,
}

#: Correct programs: no strategy may report a failure (no false livelock).
CORRECT: dict[str, Callable[[], None]] = {
    "spin-wait with sleep(0)": spin_wait,
    "spinning non-blocking acquire": spinning_try_lock,
    "bounded buffer (condition)": bounded_buffer,
    "twostage, fixed": twostage_fixed,
}
