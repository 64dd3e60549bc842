"""The data-race detector (``tracedsync run --races``, ``docs/races.md``).

Each scenario runs under a fresh :class:`RaceDetector` with ``threading``
patched.  Correctly synchronised scenarios must report nothing; racy ones
must report their race.  A racy scenario orders its two accesses in real
time with a raw ``_thread`` lock, which tracedsync does not see: the
accesses stay unordered in happens-before terms (the race is real), and
the test is deterministic.  Nothing sleeps; every wait has a timeout.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import gc
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

import tracedsync
from tracedsync._races import RaceDetector
from tracedsync._races.clocks import epoch, epoch_before, first_not_before, join
from tracedsync._races.shadow import Shadow

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 10.0

pytestmark = pytest.mark.timeout(60)


def races_in(scenario: Callable[[], None], **options: Any) -> list[dict[str, Any]]:
    """The races the detector reports while ``scenario`` runs."""
    detector = RaceDetector([HERE], **options)
    with tracedsync.patched():
        detector.start()
        try:
            scenario()
        finally:
            detector.stop()
    return detector.races


def sequenced() -> Any:
    """A raw lock, held: the second side acquires it, the first releases it."""
    turn = _thread.allocate_lock()
    turn.acquire()
    return turn


def run_threads(*targets: Callable[[], None]) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()


class Box:
    def __init__(self, value: Any = 0) -> None:
        self.value = value


# -- correct synchronisation: nothing reported --------------------------------


def test_queue_handoff_is_not_a_race() -> None:
    def scenario() -> None:
        inbox: queue.Queue[Box] = queue.Queue()
        outbox: queue.Queue[Box] = queue.Queue()

        def worker() -> None:
            box = inbox.get(timeout=WAIT)
            box.value += 1
            outbox.put(box)

        thread = threading.Thread(target=worker)
        thread.start()
        box = Box()
        box.value = 41
        inbox.put(box)
        done = outbox.get(timeout=WAIT)
        assert done.value == 42
        thread.join(WAIT)

    assert races_in(scenario) == []


def test_results_read_after_join_are_not_a_race() -> None:
    def scenario() -> None:
        results = Box([])

        def worker() -> None:
            results.value = [1, 2, 3]

        run_threads(worker)
        assert results.value == [1, 2, 3]

    assert races_in(scenario) == []


def test_result_read_after_future_result_is_not_a_race() -> None:
    def scenario() -> None:
        box = Box()

        def work() -> int:
            box.value = 42
            return 1

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(work).result(timeout=WAIT) == 1
            assert box.value == 42

    assert races_in(scenario) == []


def test_data_published_before_event_set_is_not_a_race() -> None:
    def scenario() -> None:
        box = Box()
        ready = threading.Event()

        def reader() -> None:
            assert ready.wait(WAIT)
            assert box.value == 7

        def writer() -> None:
            box.value = 7
            ready.set()

        run_threads(reader, writer)

    assert races_in(scenario) == []


def test_state_written_before_start_is_not_a_race() -> None:
    def scenario() -> None:
        box = Box()
        box.value = 5

        def worker() -> None:
            box.value += 1

        run_threads(worker)

    assert races_in(scenario) == []


def test_threading_local_is_not_a_race() -> None:
    def scenario() -> None:
        local = threading.local()
        turn = sequenced()

        def first() -> None:
            local.value = 1
            turn.release()

        def second() -> None:
            assert turn.acquire(timeout=WAIT)
            local.value = 2

        run_threads(first, second)

    assert races_in(scenario) == []


def test_phases_separated_by_a_barrier_are_not_a_race() -> None:
    def scenario() -> None:
        slots = [Box(), Box(), Box()]
        barrier = threading.Barrier(3, timeout=WAIT)
        totals = [Box(), Box(), Box()]

        def party(index: int) -> None:
            slots[index].value = index + 1  # phase 1: each writes its own
            barrier.wait()
            totals[index].value = sum(slot.value for slot in slots)  # phase 2: reads all
            barrier.wait()
            slots[index].value = 0  # phase 3: writes again, after every read

        run_threads(*(lambda index=index: party(index) for index in range(3)))
        assert [total.value for total in totals] == [6, 6, 6]

    assert races_in(scenario) == []


class Buffer:
    """A bounded buffer: a Condition over an RLock."""

    def __init__(self, size: int) -> None:
        self.items: list[int] = []
        self.size = size
        self.count = 0
        self.changed = threading.Condition(threading.RLock())

    def put(self, item: int) -> None:
        with self.changed:
            while self.count >= self.size:
                assert self.changed.wait(WAIT)
            self.items = [*self.items, item]
            self.count += 1
            self.changed.notify_all()

    def get(self) -> int:
        with self.changed:
            while self.count == 0:
                assert self.changed.wait(WAIT)
            first, *rest = self.items
            self.items = rest
            self.count -= 1
            self.changed.notify_all()
            return first


def test_condition_buffer_over_an_rlock_is_not_a_race() -> None:
    def scenario() -> None:
        buffer = Buffer(2)
        received: list[int] = []

        def producer() -> None:
            for item in range(20):
                buffer.put(item)

        def consumer() -> None:
            for _ in range(20):
                received.append(buffer.get())

        run_threads(producer, consumer)
        assert received == list(range(20))

    assert races_in(scenario) == []


class Config:
    def __init__(self, name: str) -> None:
        self.name = name
        self.retries = 3


def test_attributes_written_only_in_init_are_not_a_race() -> None:
    def scenario() -> None:
        config = Config("svc")
        seen = [Box(), Box()]

        def reader(index: int) -> None:
            seen[index].value = (config.name, config.retries)

        run_threads(lambda: reader(0), lambda: reader(1))

    assert races_in(scenario) == []


# -- races: each reported -----------------------------------------------------


def only_race(races: list[dict[str, Any]], location: str) -> dict[str, Any]:
    assert [race["location"] for race in races] == [location], races
    return races[0]


def test_unsynchronised_counter_is_reported() -> None:
    def scenario() -> None:
        counter = Box()
        turn = sequenced()

        def first() -> None:
            counter.value += 1
            turn.release()

        def second() -> None:
            assert turn.acquire(timeout=WAIT)
            counter.value += 1

        run_threads(first, second)

    race = only_race(races_in(scenario), "Box.value")
    earlier, later = race["accesses"]
    assert (earlier["access"], later["access"]) == ("write", "read")
    assert earlier["function"] == "first" and later["function"] == "second"
    assert earlier["file"].endswith("test_races.py")
    assert earlier["thread"] != later["thread"]
    assert "how to fix" in race["message"]
    assert "read-modify-write" not in race["message"] or earlier["line"] == later["line"]


class Lazy:
    def __init__(self) -> None:
        self.instance: object | None = None

    def get(self) -> object:
        if self.instance is None:
            self.instance = object()
        return self.instance


def test_lazy_initialisation_is_reported() -> None:
    def scenario() -> None:
        lazy = Lazy()
        turn = sequenced()

        def first() -> None:
            lazy.get()
            turn.release()

        def second() -> None:
            assert turn.acquire(timeout=WAIT)
            lazy.get()

        run_threads(first, second)

    race = only_race(races_in(scenario), "Lazy.instance")
    assert [access["function"] for access in race["accesses"]] == ["get", "get"]


def test_two_different_locks_for_one_attribute_are_reported() -> None:
    def scenario() -> None:
        box = Box()
        one = threading.Lock()
        other = threading.Lock()
        turn = sequenced()

        def first() -> None:
            with one:
                box.value = 1
            turn.release()

        def second() -> None:
            assert turn.acquire(timeout=WAIT)
            with other:
                box.value = 2

        run_threads(first, second)

    race = only_race(races_in(scenario), "Box.value")
    assert [len(access["locks"]) for access in race["accesses"]] == [1, 1]
    assert race["accesses"][0]["locks"] != race["accesses"][1]["locks"]
    assert "different locks" in race["message"]


total = 0


def test_global_updated_from_threads_is_reported() -> None:
    def scenario() -> None:
        turn = sequenced()

        def add() -> None:
            global total
            total += 1

        def first() -> None:
            add()
            turn.release()

        def second() -> None:
            assert turn.acquire(timeout=WAIT)
            add()

        run_threads(first, second)

    race = only_race(races_in(scenario), f"{__name__}.total")
    assert race["object_type"] == "module global"


def test_flag_used_instead_of_an_event_is_reported() -> None:
    def scenario() -> None:
        data = Box()
        flag = Box(False)
        turn = sequenced()

        def writer() -> None:
            data.value = 99
            flag.value = True
            turn.release()

        def reader() -> None:
            assert turn.acquire(timeout=WAIT)  # stands for spinning on the flag
            if flag.value:
                assert data.value == 99

        run_threads(writer, reader)

    races = races_in(scenario)
    assert len(races) == 2, races
    assert {race["location"] for race in races} == {"Box.value"}


def test_reader_skipping_the_writers_lock_is_reported() -> None:
    def scenario() -> None:
        box = Box()
        lock = threading.Lock()
        turn = sequenced()

        def writer() -> None:
            with lock:
                box.value = 1
            turn.release()

        def reader() -> None:
            assert turn.acquire(timeout=WAIT)
            assert box.value == 1

        run_threads(writer, reader)

    race = only_race(races_in(scenario), "Box.value")
    writer, reader = race["accesses"]
    assert writer["locks"] and not reader["locks"]
    assert "reader held nothing" in race["message"]
    assert "hold " in race["message"]


def test_sleep_used_instead_of_join_is_reported() -> None:
    def scenario() -> None:
        result = Box()
        turn = sequenced()

        def worker() -> None:
            result.value = 42
            turn.release()

        thread = threading.Thread(target=worker)
        thread.start()
        assert turn.acquire(timeout=WAIT)  # stands for time.sleep(...)
        assert result.value == 42
        thread.join(WAIT)

    race = only_race(races_in(scenario), "Box.value")
    assert [access["access"] for access in race["accesses"]] == ["write", "read"]


def test_each_race_is_reported_once() -> None:
    def scenario() -> None:
        counter = Box()
        turns = [sequenced() for _ in range(5)]

        def first() -> None:
            for turn in turns:
                counter.value += 1
                turn.release()

        def second() -> None:
            for turn in turns:
                assert turn.acquire(timeout=WAIT)
                counter.value += 1

        run_threads(first, second)

    assert len(races_in(scenario)) <= 2  # (write, read) and possibly (read, write)


# -- memory -------------------------------------------------------------------


def test_shadow_state_goes_with_its_object() -> None:
    shadow = Shadow()
    box = Box()
    assert shadow.attribute(box, "value") is not None
    assert shadow.count == 1
    del box
    gc.collect()
    assert shadow.attribute(Box(), "other") is not None
    assert shadow.count == 1


def test_location_cap_is_reported_once() -> None:
    def scenario() -> None:
        boxes = [Box() for _ in range(5)]
        for box in boxes:
            box.value = 1

    events: list[str] = []
    with tracedsync.record() as trace:
        races_in(scenario, limit=2)
    events = [event["event"] for event in trace.events() if event["event"].startswith("race.")]
    assert events == ["race.shadow_full"]


def test_clocks() -> None:
    mine = {1: 3}
    join(mine, {1: 2, 2: 5})
    assert mine == {1: 3, 2: 5}
    assert epoch_before(epoch(5, 2), mine)
    assert not epoch_before(epoch(6, 2), mine)
    assert first_not_before({2: 6}, mine) == 2
    assert first_not_before({2: 5, 1: 1}, mine) is None


# -- entry points -------------------------------------------------------------

RACY_PROGRAM = """\
import _thread
import threading

class Cache:
    def __init__(self):
        self.lock = threading.Lock()
        self.size = 0

cache = Cache()
turn = _thread.allocate_lock()
turn.acquire()

def writer():
    with cache.lock:
        cache.size = 10
    turn.release()

def reader():
    turn.acquire()
    print("size", cache.size)

threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_run_races_reports_in_the_summary(tmp_path: Any) -> None:
    script = tmp_path / "racy.py"
    script.write_text(RACY_PROGRAM)
    result = subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", "--races", str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "size 10" in result.stdout
    assert "data races: 1" in result.stderr
    assert "Data race on Cache.size" in result.stderr
    assert "reader held nothing" in result.stderr


def test_pytest_option_fails_a_racy_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner=RACY_PROGRAM.replace("threads = [", "def test_racy():\n    threads = [")
        .replace(
            "\nfor thread in threads:\n    thread.start()", "\n    for t in threads: t.start()"
        )
        .replace("\nfor thread in threads:\n    thread.join()", "\n    for t in threads: t.join()")
        + "\n\ndef test_fine():\n    box = Cache()\n    box.size = 1\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--timeout=30", "--tracedsync-races", timeout=90
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*[[]race[]] Data race on Cache.size*"])
