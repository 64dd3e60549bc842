"""``explore(..., races=True)``: a data race in any explored run is a
failure carrying its replay token, even when no assertion fires; the
correctly synchronised programs of issue 16 are not reported under it."""

from __future__ import annotations

import queue
import re
import sys
import threading
from collections.abc import Callable
from types import FrameType

import pytest

import tracedsync
from tracedsync import InterleavingError
from tracedsync._races import RaceDetector
from tracedsync._races.accesses import Access

pytestmark = pytest.mark.timeout(120)


class Box:
    def __init__(self, value: object = 0) -> None:
        self.value = value


def anonymous(text: str) -> str:
    return re.sub(r"Thread-\d+", "Thread-N", text)


def run_all(*targets: Callable[[], None]) -> None:
    threads = [tracedsync.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def racy_counter() -> None:
    """Two unsynchronised increments; no assertion, so nothing else fails."""
    counter = Box()

    def increment() -> None:
        counter.value += 1

    run_all(increment, increment)


def test_racy_counter_passes_without_races() -> None:
    assert tracedsync.explore(racy_counter, strategy="random", runs=20).runs == 20


@pytest.mark.parametrize("strategy", ["random", "pct", "exhaustive"])
def test_racy_counter_is_a_race_failure_with_a_token_that_replays(strategy: str) -> None:
    with pytest.raises(InterleavingError) as found:
        tracedsync.explore(racy_counter, strategy=strategy, runs=20, races=True)
    failure = found.value
    assert failure.kind == "race"
    assert failure.run == 1  # happens-before needs no unlucky schedule
    assert "Data race on Box.value" in failure.detail
    assert "how to fix" in failure.detail
    assert f"replay it with tracedsync.replay(test, {failure.token!r})" in str(failure)

    with pytest.raises(InterleavingError) as replayed:
        tracedsync.replay(racy_counter, failure.token, races=True)
    assert replayed.value.kind == "race"
    assert replayed.value.token == failure.token
    # The same race, at the same two sites (threads are numbered per process).
    assert anonymous(replayed.value.detail) == anonymous(failure.detail)


def flag_under_a_lock() -> None:
    """Correct: the reader touches ``data`` only after seeing, under the
    lock, the flag the writer set after writing it."""
    lock = tracedsync.Lock()
    data = Box()
    flag = Box(False)

    def writer() -> None:
        data.value = 1
        with lock:
            flag.value = True

    def reader() -> None:
        with lock:
            seen = flag.value
        if seen:
            data.value = 2

    run_all(writer, reader)


def racy_on_one_path() -> None:
    """The reader reads ``data`` outside the lock only when it finds the
    flag unset: a race with the writer's locked write on the interleavings
    where the reader goes first, none on the others."""
    lock = tracedsync.Lock()
    data = Box()
    flag = Box(False)

    def writer() -> None:
        with lock:
            data.value = 1
            flag.value = True

    def reader() -> None:
        with lock:
            seen = flag.value
        if not seen:
            print(data.value)

    run_all(writer, reader)


def test_racy_on_one_path_passes_on_the_paths_without_the_race() -> None:
    # The default schedule (no preemption) runs the writer first: no race.
    assert tracedsync.explore(racy_on_one_path, strategy="exhaustive", runs=1, races=True).runs == 1


def test_a_race_on_some_paths_is_found_and_replayed() -> None:
    with pytest.raises(InterleavingError) as found:
        tracedsync.explore(racy_on_one_path, strategy="pct", runs=200, races=True)
    assert found.value.kind == "race"
    assert "Box.value" in found.value.detail
    with pytest.raises(InterleavingError) as replayed:
        tracedsync.replay(racy_on_one_path, found.value.token, races=True)
    assert replayed.value.kind == "race"


def test_replay_without_races_does_not_report_the_race() -> None:
    with pytest.raises(InterleavingError) as found:
        tracedsync.explore(racy_counter, runs=5, races=True)
    with pytest.raises(InterleavingError) as replayed:
        tracedsync.replay(racy_counter, found.value.token)
    # The token ends at the racing access: replayed without the detector,
    # the run goes on past it.
    assert replayed.value.kind == "replay"


def test_minimize_keeps_the_race() -> None:
    with pytest.raises(InterleavingError) as found:
        tracedsync.explore(racy_counter, strategy="random", runs=20, races=True, minimize=True)
    assert found.value.kind == "race"
    assert found.value.preemptions == 0


# -- issue 16 item 4: correct programs, not reported under explore -------------


def queue_handoff() -> None:
    with tracedsync.patched():
        inbox: queue.Queue[Box] = queue.Queue()
        outbox: queue.Queue[Box] = queue.Queue()

        def worker() -> None:
            box = inbox.get()
            box.value += 1
            outbox.put(box)

        thread = threading.Thread(target=worker)
    thread.start()
    box = Box()
    box.value = 41
    inbox.put(box)
    assert outbox.get().value == 42
    thread.join()


def read_after_join() -> None:
    results = Box([])

    def worker() -> None:
        results.value = [1, 2, 3]

    run_all(worker)
    assert results.value == [1, 2, 3]


def published_before_event_set() -> None:
    box = Box()
    ready = tracedsync.Event()

    def reader() -> None:
        ready.wait()
        assert box.value == 7

    def writer() -> None:
        box.value = 7
        ready.set()

    run_all(reader, writer)


def written_before_start() -> None:
    box = Box()
    box.value = 5

    def worker() -> None:
        box.value += 1

    run_all(worker)
    assert box.value == 6


def thread_local_state() -> None:
    with tracedsync.patched():
        local = threading.local()

    def worker() -> None:
        local.value = 1
        local.value += 1

    run_all(worker, worker)


def barrier_phases() -> None:
    slots = [Box(), Box()]
    totals = [Box(), Box()]
    barrier = tracedsync.Barrier(2)

    def party(index: int) -> None:
        slots[index].value = index + 1
        barrier.wait()
        totals[index].value = sum(slot.value for slot in slots)  # type: ignore[misc]
        barrier.wait()
        slots[index].value = 0

    run_all(lambda: party(0), lambda: party(1))
    assert [total.value for total in totals] == [3, 3]


class Buffer:
    """A bounded buffer: a Condition over an RLock."""

    def __init__(self, size: int) -> None:
        self.items: list[int] = []
        self.size = size
        self.count = 0
        self.changed = tracedsync.Condition(tracedsync.RLock())

    def put(self, item: int) -> None:
        with self.changed:
            while self.count >= self.size:
                self.changed.wait()
            self.items = [*self.items, item]
            self.count += 1
            self.changed.notify_all()

    def get(self) -> int:
        with self.changed:
            while self.count == 0:
                self.changed.wait()
            first, *rest = self.items
            self.items = rest
            self.count -= 1
            self.changed.notify_all()
            return first


def condition_buffer() -> None:
    buffer = Buffer(1)
    received: list[int] = []

    def producer() -> None:
        for item in range(3):
            buffer.put(item)

    def consumer() -> None:
        for _ in range(3):
            received.append(buffer.get())

    run_all(producer, consumer)
    assert received == [0, 1, 2]


class Config:
    def __init__(self, name: str) -> None:
        self.name = name
        self.retries = 3


def written_only_in_init() -> None:
    config = Config("svc")
    seen = [Box(), Box()]

    def reader(index: int) -> None:
        seen[index].value = (config.name, config.retries)

    run_all(lambda: reader(0), lambda: reader(1))


CORRECT = [
    queue_handoff,
    read_after_join,
    published_before_event_set,
    written_before_start,
    thread_local_state,
    barrier_phases,
    condition_buffer,
    written_only_in_init,
    flag_under_a_lock,
]


@pytest.mark.parametrize("program", CORRECT, ids=[program.__name__ for program in CORRECT])
def test_correct_programs_are_not_reported_under_explore(
    program: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    original = RaceDetector.access

    def access(self: RaceDetector, frame: FrameType, found: Access) -> bool:
        checked.append(found.name)
        return original(self, frame, found)

    monkeypatch.setattr(RaceDetector, "access", access)
    result = tracedsync.explore(program, strategy="pct", runs=30, races=True)
    assert result.runs == 30
    assert "value" in checked or "items" in checked  # the accesses were checked


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring: 3.12+")
def test_races_with_line_granularity() -> None:
    with pytest.raises(InterleavingError) as found:
        tracedsync.explore(racy_counter, runs=5, races=True, granularity="lines")
    assert found.value.kind == "race"
    assert "Box.value" in found.value.detail


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="before sys.monitoring")
def test_races_with_line_granularity_is_refused_before_3_12() -> None:
    with pytest.raises(ValueError, match=r"needs Python 3\.12"):
        tracedsync.explore(racy_counter, runs=5, races=True, granularity="lines")


last_run = 0


def writes_a_global_once() -> None:
    """One thread writes a module global per run: no race within a run,
    and runs are never ordered against each other, so none across them."""

    def worker() -> None:
        global last_run
        last_run += 1

    run_all(worker)


def test_state_outliving_a_run_is_not_reported_across_runs() -> None:
    assert tracedsync.explore(writes_a_global_once, runs=10, races=True).runs == 10
    assert last_run == 10


def test_one_race_detector_at_a_time() -> None:
    running = RaceDetector([])
    running.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            tracedsync.explore(racy_counter, runs=1, races=True)
    finally:
        running.stop()
    # and the exploration left nothing behind: it works once the other stops
    with pytest.raises(InterleavingError):
        tracedsync.explore(racy_counter, runs=1, races=True)


def test_the_pytest_marker_takes_races(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked="""
        import pytest
        import tracedsync

        class Box:
            value = 0

        def increments():
            box = Box()

            def increment():
                box.value += 1

            threads = [tracedsync.Thread(target=increment) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        @pytest.mark.tracedsync_explore(runs=5, races=True)
        def test_racy():
            increments()

        @pytest.mark.tracedsync_explore(runs=5)
        def test_same_without_races():
            increments()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--timeout=60", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*race in run 1*", "*Data race on Box.value*test_marked.py*"])


def test_a_race_found_while_the_thread_holds_the_schedulers_guard_fails_the_run_later() -> None:
    """A finalizer can run user code inside the scheduler, with its guard
    held by the same thread: reporting the race must not wait for that
    guard for ever, and the run still fails with it."""
    from _thread import get_ident

    from tracedsync._explore import scheduler as _scheduler
    from tracedsync._explore.runs import _RaceChecks
    from tracedsync._explore.schedules import make_strategy

    checks = _RaceChecks([])
    for held in (False, True):
        run = _scheduler.Run(make_strategy("random", seed=0, depth=3, preemption_bound=None), 0, 10)
        run.by_ident[get_ident()] = run.add_thread("me")
        _scheduler._active = run
        try:
            if held:
                run.guard.acquire()
            checks._found({"message": "Data race on X.y"})
        finally:
            _scheduler._active = None
            if held:
                run.guard.release()
        assert run.failure == ("race", "Data race on X.y")
        assert run.aborting is not held  # stopped at once only when the guard was free
