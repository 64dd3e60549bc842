"""The controlled scheduler: explore, replay, strategies, Hypothesis schedules."""

from __future__ import annotations

import _thread
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from time import monotonic, perf_counter_ns, sleep

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

import tracedsync
from tracedsync._explore.schedules import (
    ChoiceSchedule,
    ExhaustiveStrategy,
    PCTStrategy,
    Strategy,
    decode_token,
    encode_token,
)

STRATEGIES = ("random", "pct", "exhaustive")


def ab_ba() -> None:
    """Two threads take two locks in opposite orders: no sleeps, no yields."""
    a = tracedsync.Lock(name="a")
    b = tracedsync.Lock(name="b")

    def one() -> None:
        with a, b:
            pass

    def two() -> None:
        with b, a:
            pass

    threads = [tracedsync.Thread(target=one, name="one"), tracedsync.Thread(target=two, name="two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def lost_update() -> None:
    """``count += 1`` split by a yield point, in two threads."""
    state = {"count": 0}

    def increment() -> None:
        value = state["count"]
        tracedsync.yield_point()
        state["count"] = value + 1

    threads = [tracedsync.Thread(target=increment) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["count"] == 2, f"lost update: count is {state['count']}"


def bounded_buffer_correct() -> None:
    """A producer and a consumer with a condition and a predicate loop."""
    condition = tracedsync.Condition(tracedsync.Lock())
    items: list[int] = []
    consumed: list[int] = []

    def producer() -> None:
        for item in range(3):
            with condition:
                while len(items) >= 1:
                    condition.wait()
                items.append(item)
                condition.notify_all()

    def consumer() -> None:
        while len(consumed) < 3:
            with condition:
                while not items:
                    condition.wait()
                consumed.append(items.pop())
                condition.notify_all()

    threads = [tracedsync.Thread(target=producer), tracedsync.Thread(target=consumer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert consumed == [0, 1, 2]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("on_deadlock", ["raise", "warn"])
def test_every_strategy_finds_an_ab_ba_deadlock_within_100_runs(
    strategy: str, on_deadlock: str
) -> None:
    tracedsync.configure(on_deadlock=on_deadlock)
    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(ab_ba, strategy=strategy, runs=100, seed=1)
    failure = caught.value
    assert failure.kind == "deadlock"
    assert failure.run <= 100
    if on_deadlock == "warn":  # found by the scheduler: nobody can run
        assert "no thread can run" in failure.detail
        assert "waits for Lock 'a', held by thread" in failure.detail
        assert "waits for Lock 'b', held by thread" in failure.detail
    else:  # found by the cycle detector, raised in the thread closing it
        assert "Found a deadlock: 2 threads wait for each other" in failure.detail
    assert any("lock.acquire a" in step for step in failure.steps)
    assert "tracedsync.replay(test, 'ts1." in str(failure)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_finds_a_lost_update(strategy: str) -> None:
    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(lost_update, strategy=strategy, runs=100)
    assert caught.value.kind == "assertion"
    assert "lost update: count is 1" in caught.value.detail
    assert any("yield_point" in step for step in caught.value.steps)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_replay_reproduces_the_failing_interleaving_every_time(strategy: str) -> None:
    tracedsync.configure(on_deadlock="warn")
    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(ab_ba, strategy=strategy, runs=100, seed=3)
    for _ in range(5):
        with pytest.raises(tracedsync.InterleavingError) as replayed:
            tracedsync.replay(ab_ba, caught.value.token)
        assert replayed.value.kind == "deadlock"
        assert replayed.value.steps == caught.value.steps
        assert replayed.value.token == caught.value.token


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_correct_program_explored_500_times_reports_nothing(strategy: str) -> None:
    result = tracedsync.explore(bounded_buffer_correct, strategy=strategy, runs=500)
    assert result.runs == 500 or result.exhausted


def test_exhaustive_search_ends_when_every_schedule_ran() -> None:
    def two_threads_one_lock() -> None:
        lock = tracedsync.Lock()
        thread = tracedsync.Thread(target=lambda: lock.acquire() and lock.release())
        thread.start()
        with lock:
            pass
        thread.join()

    result = tracedsync.explore(
        two_threads_one_lock, strategy="exhaustive", runs=10_000, require_complete=True
    )
    assert result.exhausted and result.complete and 1 < result.runs < 10_000
    assert result.interleavings == result.runs and result.completed_bound is not None
    capped = tracedsync.explore(
        two_threads_one_lock, strategy="exhaustive", runs=10_000, preemption_bound=0
    )
    assert capped.exhausted and capped.runs < result.runs  # fewer preemptions, fewer schedules
    assert not capped.complete and capped.completed_bound == 0


def test_timed_waits_run_in_virtual_time() -> None:
    def waits_for_nothing() -> None:
        never = tracedsync.Event()
        done = tracedsync.Semaphore(0)

        def waiter() -> None:
            assert never.wait(timeout=3600) is False  # times out: nothing else can run
            done.release()

        thread = tracedsync.Thread(target=waiter)
        thread.start()
        assert done.acquire(timeout=7200)
        thread.join()
        time.sleep(3600)  # a scheduling point, not a real sleep

    started = time.monotonic()
    tracedsync.explore(waits_for_nothing, strategy="random", runs=20)
    assert time.monotonic() - started < 60  # nothing waited for real


def test_stdlib_queue_and_patched_threading_are_controlled() -> None:
    def pipeline() -> None:
        with tracedsync.patched():
            work: queue.Queue[int | None] = queue.Queue(maxsize=1)
            received: list[int] = []

            def produce() -> None:
                for item in range(4):
                    work.put(item)
                work.put(None)

            def consume() -> None:
                while (item := work.get()) is not None:
                    received.append(item)

            threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert received == [0, 1, 2, 3]

    result = tracedsync.explore(pipeline, strategy="pct", runs=50)
    assert result.runs == 50


def test_an_exception_in_a_thread_fails_the_run() -> None:
    def raises() -> None:
        thread = tracedsync.Thread(target=lambda: 1 / 0, name="divider")
        thread.start()
        thread.join()

    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(raises, runs=5)
    assert caught.value.kind == "exception" and caught.value.run == 1
    assert "thread #1 'divider' raised" in caught.value.detail
    assert "ZeroDivisionError" in caught.value.detail


def test_a_livelock_hits_the_step_bound() -> None:
    def spins() -> None:
        stop: list[bool] = []

        def spin() -> None:
            while not stop:
                tracedsync.yield_point()

        thread = tracedsync.Thread(target=spin)
        thread.start()
        thread.join()

    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(spins, runs=3, max_steps=300)
    assert caught.value.kind == "livelock"
    assert "more than 300 steps" in caught.value.detail


def test_blocking_outside_tracedsync_is_reported_not_a_hang() -> None:
    untraced = _thread.allocate_lock()
    untraced.acquire()

    def blocks_for_real() -> None:
        untraced.acquire(True, 30)  # tracedsync cannot see this wait

    started = time.monotonic()
    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(blocks_for_real, runs=1, stall_timeout=0.5)
    untraced.release()
    assert caught.value.kind == "stall"
    assert "did not come back to a scheduling point within 0.5 s" in caught.value.detail
    assert "test_explore.py" in caught.value.detail  # where it is stuck
    assert time.monotonic() - started < 20


def test_explore_cannot_nest() -> None:
    def nested() -> None:
        tracedsync.explore(lambda: None, runs=1)

    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(nested, runs=1)
    assert "cannot nest" in caught.value.detail


def test_tokens_round_trip_and_reject_garbage() -> None:
    choices = [0, 1, 2, 1, 0, 0, 3] * 50
    assert decode_token(encode_token(choices)) == choices
    with pytest.raises(ValueError, match="not a tracedsync schedule token"):
        decode_token("abc")
    with pytest.raises(ValueError, match="damaged"):
        decode_token("ts1.!!!")
    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.replay(ab_ba, encode_token([0]))
    assert caught.value.kind == "replay"


@settings(max_examples=200, derandomize=True, suppress_health_check=list(HealthCheck))
@given(schedule=tracedsync.schedules())
def _lost_update_under(schedule: ChoiceSchedule) -> None:
    tracedsync.explore(lost_update, strategy=schedule)


def test_hypothesis_finds_and_shrinks_to_the_fewest_preemptions() -> None:
    def fails(deviations: list[tuple[int, int]]) -> bool:
        try:
            tracedsync.explore(lost_update, strategy=ChoiceSchedule(deviations))
        except tracedsync.InterleavingError:
            return True
        return False

    minimal = find(
        st.lists(st.tuples(st.integers(0, 200), st.integers(1, 7)), max_size=20),
        fails,
        settings=settings(max_examples=500, derandomize=True, database=None),
    )

    class Counting(ChoiceSchedule):
        preemptions = 0

        def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
            chosen = super().choose(candidates, current, step)
            self.preemptions += current in candidates and chosen != current
            return chosen

    counting = Counting(minimal)
    with pytest.raises(tracedsync.InterleavingError):
        tracedsync.explore(lost_update, strategy=counting)
    # One preemption is enough: a switch right after one thread's read.
    assert len(minimal) == 1 and counting.preemptions == 1, minimal
    with pytest.raises(tracedsync.InterleavingError):
        _lost_update_under()


def test_the_default_schedule_never_preempts() -> None:
    assert tracedsync.explore(lost_update, strategy=ChoiceSchedule()).runs == 1


def test_exploring_leaves_no_trace_in_the_process() -> None:
    allocate = threading._allocate_lock  # type: ignore[attr-defined]
    sleep = time.sleep
    tracedsync.explore(bounded_buffer_correct, runs=3)
    assert threading._allocate_lock is allocate  # type: ignore[attr-defined]
    assert time.sleep is sleep
    from tracedsync import _hooks

    assert not _hooks._sinks


def test_minimize_reports_a_failure_with_the_fewest_preemptions() -> None:
    with pytest.raises(tracedsync.InterleavingError) as plain:
        tracedsync.explore(lost_update, strategy="random", runs=200, seed=5)
    with pytest.raises(tracedsync.InterleavingError) as simplest:
        tracedsync.explore(lost_update, strategy="random", runs=200, seed=5, minimize=True)
    assert simplest.value.kind == "assertion"
    assert simplest.value.preemptions == 1 <= plain.value.preemptions
    with pytest.raises(tracedsync.InterleavingError):
        tracedsync.replay(lost_update, simplest.value.token)


def test_pytest_marker_explores_and_shows_the_simplest_interleaving(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        import tracedsync

        @pytest.fixture
        def workers():
            return 2  # fixtures are set up once; the test body runs once per run

        @pytest.mark.tracedsync_explore(runs=200, strategy="random")
        def test_racy(workers):
            counter = [0]

            def increment():
                value = counter[0]
                tracedsync.yield_point()
                counter[0] = value + 1

            threads = [tracedsync.Thread(target=increment) for _ in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert counter[0] == workers

        @pytest.mark.tracedsync_explore(runs=50)
        def test_locked():
            lock = tracedsync.Lock()
            counter = [0]

            def increment():
                with lock:
                    value = counter[0]
                    tracedsync.yield_point()
                    counter[0] = value + 1

            threads = [tracedsync.Thread(target=increment) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert counter[0] == 2
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--timeout=60", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*InterleavingError: assertion in run *, 1 preemption:*",
            "*yield_point*",
            "*replay it with tracedsync.replay(test, 'ts1.*",
        ]
    )


def test_the_marker_traces_the_tests_own_file_at_a_finer_granularity(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_counter="""
        import pytest
        import tracedsync

        class Counter:
            def __init__(self):
                self.count = 0

            def increment(self):
                self.count += 1

        @pytest.mark.tracedsync_explore(strategy="exhaustive", granularity="opcodes")
        def test_atomic():
            counter = Counter()
            threads = [tracedsync.Thread(target=counter.increment) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert counter.count == 2
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--timeout=60", timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*opcode at test_counter.py:*"])


class _GuardedCounter:
    value: int = tracedsync.guarded_by("lock")

    def __init__(self) -> None:
        self.lock = tracedsync.Lock(name="counter")
        self.value = 0

    def increment(self) -> None:
        with self.lock:
            current = self.value
        with self.lock:  # the lock is dropped between the read and the write
            self.value = current + 1


def test_guarded_attribute_accesses_are_scheduling_points() -> None:
    def two_increments() -> None:
        counter = _GuardedCounter()
        threads = [tracedsync.Thread(target=counter.increment) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with counter.lock:
            assert counter.value == 2, f"lost an update: {counter.value}"

    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(two_increments, strategy="exhaustive", runs=1000)
    assert caught.value.kind == "assertion"
    assert any("guarded read value" in step for step in caught.value.steps)
    assert any("guarded write value" in step for step in caught.value.steps)


class _PlainCounter:
    def __init__(self) -> None:
        self.count = 0

    def increment(self) -> None:
        self.count += 1  # one line, three bytecodes: a read, an add, a write


def plain_increments() -> None:
    counter = _PlainCounter()
    threads = [tracedsync.Thread(target=counter.increment) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.count == 2, f"lost an update: {counter.count}"


def test_opcode_granularity_finds_a_race_inside_one_statement() -> None:
    # At the default granularity the statement is atomic: nothing to find.
    assert tracedsync.explore(plain_increments, strategy="exhaustive", runs=500).exhausted
    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(
            plain_increments, strategy="exhaustive", runs=2000, granularity="opcodes"
        )
    assert caught.value.kind == "assertion"
    assert any("opcode at" in step and "in increment" in step for step in caught.value.steps)
    with pytest.raises(tracedsync.InterleavingError):
        tracedsync.replay(plain_increments, caught.value.token, granularity="opcodes")


def test_line_granularity_switches_between_lines_of_the_test_file() -> None:
    def check_then_set() -> None:
        state: dict[str, int] = {}

        def claim(owner: int) -> None:
            if "owner" not in state:
                state["owner"] = owner
                state["claims"] = state.get("claims", 0) + 1

        threads = [tracedsync.Thread(target=claim, args=(n,)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert state["claims"] == 1, "two threads both claimed"

    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(check_then_set, strategy="random", runs=500, granularity="lines")
    assert "two threads both claimed" in caught.value.detail
    with pytest.raises(ValueError, match="granularity"):
        tracedsync.explore(check_then_set, granularity="statements")


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_a_seed_makes_an_exploration_repeat_exactly(strategy: str) -> None:
    tracedsync.configure(on_deadlock="warn")
    found = []
    for _ in range(2):
        with pytest.raises(tracedsync.InterleavingError) as caught:
            tracedsync.explore(ab_ba, strategy=strategy, runs=100, seed=11)
        found.append((caught.value.run, caught.value.token))
    assert found[0] == found[1]


# -- PCT as published ------------------------------------------------------------


def _a_b_a_b() -> None:
    """Fails only in the order a1, b1, a2, b2: A is preempted, B runs and is
    preempted, A resumes.  Three ordering constraints (a1 < b1 < a2 < b2):
    a bug of depth 3, needing PCT's two change points."""
    log: list[str] = []

    def worker(name: str) -> None:
        log.append(name + "1")
        # Four steps between the appends, as four points (one point passed
        # again in a loop would be a spin, which lets the other thread run).
        tracedsync.yield_point()
        tracedsync.yield_point()
        tracedsync.yield_point()
        tracedsync.yield_point()
        log.append(name + "2")

    threads = [tracedsync.Thread(target=worker, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log != ["a1", "b1", "a2", "b2"], "A, then B, then A again"


class _Length(Strategy):
    """Runs the default schedule and remembers the run's length."""

    steps = 0

    def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
        return candidates[0]

    def end_run(self, steps: int) -> bool:
        self.steps = steps + 1  # the test thread's first step needs no choice
        return True


def _binomial_tail(trials: int, rate: float, at_least: int) -> float:
    """P(X >= at_least) for X ~ Binomial(trials, rate)."""
    below = sum(
        math.comb(trials, hits) * rate**hits * (1 - rate) ** (trials - hits)
        for hits in range(at_least)
    )
    return max(0.0, 1.0 - below)


@pytest.mark.timeout(120)
def test_pct_finds_a_depth_3_bug_at_least_as_often_as_its_guarantee() -> None:
    length = _Length()
    tracedsync.explore(_a_b_a_b, strategy=length)
    threads, steps, depth = 3, length.steps, 3  # the test's thread, A and B
    guarantee = 1 / (threads * steps ** (depth - 1))
    seeds = 1000  # a fixed list: the outcome is deterministic, it cannot flake
    found = 0
    for seed in range(seeds):
        try:  # one run per seed, each with k = the run's length
            tracedsync.explore(_a_b_a_b, strategy=PCTStrategy(seed, depth, steps), runs=1)
        except tracedsync.InterleavingError as failure:
            assert "A, then B, then A again" in failure.detail
            found += 1
    # Measured: 27 of 1,000 (about 29 times the guarantee, 0.00092 for k=19).
    # Ordering the change points by time, as tracedsync did, found none: the
    # thread demoted later always ended above the one demoted earlier.
    assert found / seeds >= guarantee, (found, guarantee)
    # Were the rate only the guarantee, this many finds would be a fluke.
    assert _binomial_tail(seeds, guarantee, found) < 1e-9, (found, guarantee)


def test_pct_priorities_follow_the_paper() -> None:
    depth = 4
    time_ordered = 0
    for seed in range(40):
        pct = PCTStrategy(seed, depth=depth, steps=30)
        pct.start_run(0)
        points = list(pct._change_points.items())  # (step, i) in the order drawn
        assert sorted(i for _, i in points) == list(range(1, depth))
        time_ordered += [i for _, i in sorted(points)] == list(range(1, depth))
        for ordinal in range(5):  # initial priorities: d .. d+n-1, each once
            pct.priority(ordinal)
        assert sorted(map(pct.priority, range(5))) == list(range(depth, depth + 5))
        # At the i-th drawn point the thread that ran that step gets priority i,
        # below every initial priority, and nothing else changes.
        for step, index in points:
            pct.choose([0, 1, 2, 3, 4], 2, step - 1)
            assert pct.priority(2) == index < depth
            assert max([0, 1, 3, 4], key=pct.priority) == pct.choose([0, 1, 3, 4], None, 999)
    # The i-th point in *draw* order, not in time order: with 3 points, time
    # order and draw order agree in about 1 seed in 6.
    assert 0 < time_ordered < 20


# -- fairness -------------------------------------------------------------------


def _spin_wait(spin: str) -> Callable[[], None]:
    """A correct spin-wait: the consumer spins (in the way ``spin`` names)
    until the producer, which takes a few steps first, sets a flag."""

    def test() -> None:
        data: list[int] = []
        flag: list[bool] = []
        busy = tracedsync.Lock(name="busy")

        def producer() -> None:
            for item in range(3):
                with busy:
                    data.append(item)
            flag.append(True)

        def consumer() -> None:
            if spin == "acquire(blocking=False)":
                # Waits for the producer to let go of the lock it holds.
                while not busy.acquire(blocking=False):
                    pass
                busy.release()
                return
            while not flag:
                if spin == "time.sleep(0)":
                    time.sleep(0)
                elif spin == "os.sched_yield()":
                    os.sched_yield()
                else:
                    tracedsync.yield_point()
            assert data == [0, 1, 2]

        threads = [tracedsync.Thread(target=consumer), tracedsync.Thread(target=producer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return test


SPINS = ("time.sleep(0)", "yield_point()", "os.sched_yield()", "acquire(blocking=False)")


@pytest.mark.parametrize("spin", SPINS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_correct_spin_wait_is_never_reported_as_a_livelock(strategy: str, spin: str) -> None:
    # Before fairness: exhaustive failed run 1 with 0 preemptions, PCT (depth
    # 2) in 10 of 10 seeds, each running the spinner until max_steps.
    for seed in range(3):
        result = tracedsync.explore(
            _spin_wait(spin), strategy=strategy, runs=150, seed=seed, max_steps=2000, depth=2
        )
        assert result.runs == 150 or result.exhausted


def test_a_spinning_thread_lets_a_timed_wait_time_out() -> None:
    def delayed_flag() -> None:
        flag: list[bool] = []

        def producer() -> None:
            assert tracedsync.Event().wait(timeout=30) is False  # a delay
            flag.append(True)

        thread = tracedsync.Thread(target=producer)
        thread.start()
        while not flag:  # virtual time passes while every runnable thread spins
            time.sleep(0)
        thread.join()

    for strategy in STRATEGIES:
        tracedsync.explore(delayed_flag, strategy=strategy, runs=50)


def test_a_real_livelock_is_still_reported_under_every_strategy() -> None:
    def waits_for_each_other() -> None:
        done = {"a": False, "b": False}

        def worker(me: str, other: str) -> None:
            while not done[other]:  # each waits for the other to finish first
                time.sleep(0)
            done[me] = True

        threads = [
            tracedsync.Thread(target=worker, args=("a", "b"), name="a"),
            tracedsync.Thread(target=worker, args=("b", "a"), name="b"),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    for strategy in STRATEGIES:
        with pytest.raises(tracedsync.InterleavingError) as caught:
            tracedsync.explore(waits_for_each_other, strategy=strategy, runs=5, max_steps=500)
        assert caught.value.kind == "livelock" and caught.value.run == 1
        assert "only spins" in caught.value.detail
        assert "no fair schedule lets them progress" in caught.value.detail


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fairness_still_finds_a_bug_behind_a_spin_wait(strategy: str) -> None:
    def flag_before_data() -> None:
        data: list[int] = []
        flag: list[bool] = []

        def producer() -> None:
            flag.append(True)  # the bug: published before the data
            tracedsync.yield_point()
            data.append(1)

        thread = tracedsync.Thread(target=producer)
        thread.start()
        while not flag:
            time.sleep(0)
        assert data == [1], "saw the flag before the data"
        thread.join()

    with pytest.raises(tracedsync.InterleavingError) as caught:
        tracedsync.explore(flag_before_data, strategy=strategy, runs=200)
    assert "saw the flag before the data" in caught.value.detail


# -- completeness and iterative preemption bounding -----------------------------


def test_a_search_stopped_by_its_budget_says_so() -> None:
    stopped = tracedsync.explore(bounded_buffer_correct, strategy="exhaustive", runs=20)
    assert stopped.runs == stopped.interleavings == 20
    assert not stopped.exhausted and not stopped.complete
    with pytest.raises(tracedsync.IncompleteExplorationError) as caught:
        tracedsync.explore(
            bounded_buffer_correct, strategy="exhaustive", runs=20, require_complete=True
        )
    assert caught.value.result.interleavings == 20
    assert "the budget of 20 runs ran out after 20 interleavings" in str(caught.value)
    with pytest.raises(tracedsync.IncompleteExplorationError, match="preemption bound cut"):
        tracedsync.explore(
            bounded_buffer_correct,
            strategy="exhaustive",
            preemption_bound=0,
            require_complete=True,
        )
    with pytest.raises(ValueError, match="require_complete=True needs strategy='exhaustive'"):
        tracedsync.explore(bounded_buffer_correct, strategy="pct", require_complete=True)
    sampled = tracedsync.explore(bounded_buffer_correct, strategy="random", runs=50)
    assert not sampled.complete and 1 < sampled.interleavings <= 50  # repeats counted once


def _five_workers() -> None:
    """A lost update needing one preemption (the careless worker between its
    read and its write), behind four careful workers that start each other:
    many places for a second preemption, few free choices."""
    lock = tracedsync.Lock(name="count")
    state = {"count": 0}

    def careful(number: int) -> None:
        for _ in range(2):
            with lock:
                state["count"] += 1
        if number < 3:
            following = tracedsync.Thread(target=careful, args=(number + 1,))
            following.start()
            following.join()

    def careless() -> None:
        value = state["count"]  # read outside the lock...
        tracedsync.yield_point()
        with lock:  # ...written back under it
            state["count"] = value + 1

    threads = [tracedsync.Thread(target=careless), tracedsync.Thread(target=careful, args=(0,))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["count"] == 9, f"lost update: {state['count']}"


def test_iterative_preemption_bounding_finds_a_one_preemption_bug_first() -> None:
    # The depth-first search with a fixed bound of 2 that tracedsync had did
    # not find this in 2,000 runs: it went through the second preemptions
    # deep in the careful workers first.  Bound 0, then 1, finds it at run 310.
    for cap in (None, 2):
        with pytest.raises(tracedsync.InterleavingError) as caught:
            tracedsync.explore(
                _five_workers, strategy="exhaustive", runs=2000, preemption_bound=cap
            )
        assert caught.value.preemptions == 1 and caught.value.run <= 500
        assert "at bound 1" in caught.value.strategy
        assert "lost update: " in caught.value.detail


@pytest.mark.timeout(300)  # about 6,000 complete runs: over a minute on a loaded 3.10
def test_iterative_bounding_runs_each_schedule_once() -> None:
    seen: list[tuple[int, ...]] = []

    class Recording(ExhaustiveStrategy):
        def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
            chosen = super().choose(candidates, current, step)
            seen[-1] += (chosen,)
            return chosen

        def start_run(self, run: int) -> None:
            super().start_run(run)
            seen.append(())

    result = tracedsync.explore(locked_increments, strategy=Recording(), runs=10_000)
    assert result.complete and len(seen) == len(set(seen)) == result.runs
    sizes = []
    for bound in range(4):
        seen.clear()
        capped = tracedsync.explore(
            locked_increments, strategy=Recording(bound), runs=10_000, require_complete=False
        )
        assert capped.exhausted and len(seen) == len(set(seen)) == capped.runs
        sizes.append(capped.runs)
    # Each bound adds the schedules with exactly that many preemptions, up
    # to all of them.
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] <= result.runs


def locked_increments() -> None:
    """Two threads incrementing under a lock: no failure, few schedules."""
    lock = tracedsync.Lock()
    state = {"count": 0}

    def increment() -> None:
        with lock:
            state["count"] += 1

    threads = [tracedsync.Thread(target=increment) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["count"] == 2


# -- virtual clocks ------------------------------------------------------------

CLOCKS = ("monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "time", "time_ns")


@pytest.mark.parametrize("clock", CLOCKS)
def test_clocks_read_virtual_time_while_exploring(clock: str) -> None:
    scale = 1_000_000_000 if clock.endswith("_ns") else 1
    readings: list[float] = []

    def waits() -> None:
        read = getattr(time, clock)
        started = read()
        time.sleep(600)  # ten virtual minutes
        slept = read()
        assert tracedsync.Event().wait(timeout=3600) is False  # an hour, timing out
        readings.extend([slept - started, read() - slept])

    before = getattr(time, clock)()
    tracedsync.explore(waits, strategy="random", runs=3)
    # Every run (floats: the real reading at the start plus virtual seconds).
    assert readings == pytest.approx([600 * scale, 3600 * scale] * 3, abs=1e-6)
    after = getattr(time, clock)()
    assert after - before < 60 * scale  # and nothing waited for real


def test_names_bound_by_from_time_import_read_virtual_time_too() -> None:
    real = (monotonic, perf_counter_ns, sleep)
    seen: list[object] = []

    def waits() -> None:
        started, started_ns = monotonic(), perf_counter_ns()
        seen.append(globals()["monotonic"])
        sleep(90)  # this module's own ``sleep``: virtual too
        seen.extend([monotonic() - started, perf_counter_ns() - started_ns])

    tracedsync.explore(waits, strategy="pct", runs=1)
    assert seen[0] is not real[0]  # rebound during the exploration
    assert seen[1:] == [pytest.approx(90.0, abs=1e-6), 90_000_000_000]
    assert (monotonic, perf_counter_ns, sleep) == real  # and restored after
    assert time.monotonic is real[0] and time.sleep is real[2]
