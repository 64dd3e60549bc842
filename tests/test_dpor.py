"""Partial-order reduction: ``explore(strategy="dpor")`` runs one
interleaving per Mazurkiewicz trace (orders of independent steps are one
interleaving), finds the bugs the exhaustive search finds, and says whether
it was complete."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest

import tracedsync
from test_explore import _five_workers, ab_ba, bounded_buffer_correct, lost_update


@pytest.fixture(autouse=True)
def _deadlocks_left_to_the_explorer() -> Iterator[None]:
    yield
    tracedsync.configure(on_deadlock="raise")


def _run_all(*targets: Callable[[], None]) -> None:
    threads = [tracedsync.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _own_locks(threads: int) -> Callable[[], None]:
    """``threads`` threads, each taking only its own lock, twice."""

    def test() -> None:
        locks = [tracedsync.Lock(name=f"own-{n}") for n in range(threads)]

        def body(lock: tracedsync.Lock) -> Callable[[], None]:
            def run() -> None:
                for _ in range(2):
                    with lock:
                        pass

            return run

        _run_all(*(body(lock) for lock in locks))

    return test


@pytest.mark.timeout(120)
@pytest.mark.parametrize("threads", [2, 4, 7])
def test_independent_threads_are_one_interleaving(threads: int) -> None:
    result = tracedsync.explore(_own_locks(threads), strategy="dpor", require_complete=True)
    assert result.runs == result.interleavings == 1
    assert result.complete and result.exhausted
    # Without the reduction, every order of the threads' lock operations is
    # explored: far more than k! runs.
    unreduced = tracedsync.explore(_own_locks(3), strategy="exhaustive", runs=500)
    assert unreduced.interleavings == 500 and not unreduced.complete


def _one_lock(threads: int, sections: int) -> Callable[[], None]:
    """``threads`` threads each taking one shared lock ``sections`` times."""

    def test() -> None:
        lock = tracedsync.Lock(name="shared")

        def run() -> None:
            for _ in range(sections):
                with lock:
                    pass

        _run_all(*(run for _ in range(threads)))

    return test


def _traces_of_one_lock(threads: int, sections: int) -> int:
    """The Mazurkiewicz traces: the orders of the critical sections, as a
    multinomial coefficient (every section conflicts with every other)."""
    return math.factorial(threads * sections) // math.factorial(sections) ** threads


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("threads", "sections"), [(2, 1), (3, 1), (2, 2), (3, 2), (4, 1)])
def test_interleavings_equal_the_mazurkiewicz_traces(threads: int, sections: int) -> None:
    result = tracedsync.explore(
        _one_lock(threads, sections), strategy="dpor", require_complete=True
    )
    assert result.interleavings == _traces_of_one_lock(threads, sections)


def test_independent_lock_does_not_multiply_the_traces() -> None:
    # Two threads on lock a (2 orders) and one on lock b (independent of
    # both): 2 traces, where the exhaustive search sees 3! orders and more.
    def test() -> None:
        a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")

        def on(lock: tracedsync.Lock) -> Callable[[], None]:
            def run() -> None:
                with lock:
                    pass

            return run

        _run_all(on(a), on(a), on(b))

    assert tracedsync.explore(test, strategy="dpor", require_complete=True).interleavings == 2


def _outcomes(program: Callable[[], tuple[object, ...]], **options: object) -> set[object]:
    seen: set[object] = set()
    tracedsync.explore(lambda: seen.add(program()), **options)  # type: ignore[arg-type]
    return seen


def _try_lock() -> tuple[object, ...]:
    """Two threads try a lock without blocking; a second lock keeps the log."""
    lock, log_lock = tracedsync.Lock(name="tried"), tracedsync.Lock(name="log")
    log: list[int] = []

    def attempt(number: int) -> Callable[[], None]:
        def run() -> None:
            if lock.acquire(blocking=False):
                with log_lock:
                    log.append(number)
                lock.release()
            else:
                with log_lock:
                    log.append(-number)

        return run

    _run_all(attempt(1), attempt(2))
    return tuple(log)


def _event_then_lock() -> tuple[object, ...]:
    event, lock = tracedsync.Event(name="go"), tracedsync.Lock(name="log")
    log: list[str] = []

    def waiter() -> None:
        event.wait()
        with lock:
            log.append("waiter")

    def setter() -> None:
        with lock:
            log.append("setter")
        event.set()

    def other() -> None:
        with lock:
            log.append("other")

    _run_all(waiter, setter, other)
    return tuple(log)


def _condition_queue() -> tuple[object, ...]:
    condition = tracedsync.Condition(tracedsync.Lock(name="queue"))
    items: list[int] = []
    log: list[tuple[str, int]] = []

    def producer(item: int) -> Callable[[], None]:
        def run() -> None:
            with condition:
                items.append(item)
                log.append(("put", item))
                condition.notify()

        return run

    def consumer() -> None:
        for _ in range(2):
            with condition:
                while not items:
                    condition.wait()
                log.append(("got", items.pop(0)))

    _run_all(consumer, producer(1), producer(2))
    return tuple(log)


PROGRAMS = {
    "try-lock": (
        _try_lock,
        {(1, 2), (2, 1), (1, -2), (-2, 1), (2, -1), (-1, 2)},
    ),
    "event then lock": (
        _event_then_lock,
        {
            ("setter", "waiter", "other"),
            ("setter", "other", "waiter"),
            ("other", "setter", "waiter"),
        },
    ),
    "condition queue": (_condition_queue, None),
}


@pytest.mark.timeout(300)  # 1,500 unreduced runs: slow on a loaded machine
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_outcome_of_the_unreduced_search_is_reached(name: str) -> None:
    program, expected = PROGRAMS[name]
    reduced = _outcomes(program, strategy="dpor", require_complete=True)
    unreduced = _outcomes(program, strategy="exhaustive", runs=1500)
    assert unreduced <= reduced
    if expected is not None:
        assert reduced == expected == unreduced


def _ordered_acquisitions() -> None:
    """Fails only when the third thread takes the lock first and the first
    thread takes it last: one of the 6 orders of three dependent steps."""
    lock = tracedsync.Lock(name="order")
    order: list[int] = []

    def take(number: int) -> Callable[[], None]:
        def run() -> None:
            with lock:
                order.append(number)

        return run

    _run_all(take(1), take(2), take(3))
    assert order != [3, 2, 1], "the one bad order"


@pytest.mark.parametrize(
    ("test", "kind"),
    [
        (ab_ba, "deadlock"),
        (lost_update, "assertion"),
        (_five_workers, "assertion"),
        (_ordered_acquisitions, "assertion"),
    ],
)
def test_bugs_needing_an_order_of_dependent_steps_are_found(
    test: Callable[[], None], kind: str
) -> None:
    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(test, strategy="dpor", runs=2000)
    assert caught.value.kind == kind
    assert caught.value.strategy.startswith("dpor")
    with pytest.raises(tracedsync.InterleavingError) as replayed:
        tracedsync.replay(test, caught.value.token)
    assert replayed.value.kind == kind


def test_completeness_is_reported_and_required() -> None:
    done = tracedsync.explore(bounded_buffer_correct, strategy="dpor", require_complete=True)
    assert done.complete and done.exhausted and done.completed_bound is None
    assert 1 < done.interleavings <= done.runs
    stopped = tracedsync.explore(bounded_buffer_correct, strategy="dpor", runs=3)
    assert stopped.runs == 3 and not stopped.complete and not stopped.exhausted
    with pytest.raises(tracedsync.IncompleteExplorationError, match="the budget of 3 runs"):
        tracedsync.explore(bounded_buffer_correct, strategy="dpor", runs=3, require_complete=True)
    with pytest.raises(ValueError, match="preemption_bound applies to strategy='exhaustive'"):
        tracedsync.explore(bounded_buffer_correct, strategy="dpor", preemption_bound=1)


def test_yield_points_are_dependent_on_everything() -> None:
    # Every step next to a yield point may touch anything: two threads each
    # passing one have every order of those steps explored.
    seen: set[tuple[str, ...]] = set()

    def test() -> None:
        log: list[str] = []

        def step(name: str) -> Callable[[], None]:
            def run() -> None:
                log.append(name + "-before")
                tracedsync.yield_point()
                log.append(name + "-after")

            return run

        _run_all(step("a"), step("b"))
        seen.add(tuple(log))

    result = tracedsync.explore(test, strategy="dpor", require_complete=True)
    assert len(seen) == 6 and result.interleavings >= 6
