"""The pytest plugin, run on small suites with pytester.

Every inner run is a subprocess (a clean interpreter: the plugin's global
effects, patching and sinks, cannot leak into this suite), bounded both by
pytester's ``timeout`` and by pytest-timeout inside.  Threads in the inner
suites synchronise with events and barriers, never sleeps.
"""

from __future__ import annotations

import fnmatch
import sys
from typing import Any

import pytest

import _tracedsync_pytestplugin

#: Bound of one inner pytest run, in seconds.
RUN_TIMEOUT = 90
INNER_ARGS = ("-p", "no:cacheprovider", "--timeout=30", "-ra")

pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 30)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*INNER_ARGS, *args, timeout=RUN_TIMEOUT)


def failure_of(result: pytest.RunResult, test: str) -> str:
    """The failure section of one inner test, from its header to the next."""
    text = result.stdout.str()
    header = f" {test} "
    start = next(
        (index for index, line in enumerate(text.splitlines()) if header in line and "___" in line),
        None,
    )
    assert start is not None, f"no failure section for {test}:\n{text}"
    lines = text.splitlines()[start + 1 :]
    end = next(
        (i for i, line in enumerate(lines) if line.startswith(("___", "===", "---- "))), len(lines)
    )
    return "\n".join(lines[:end])


FAILURE_MODES = """
import threading

import pytest

import tracedsync


@pytest.fixture
def release_at_teardown():
    release = threading.Event()
    yield release
    release.set()


@pytest.mark.tracedsync
def test_deadlock():
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    both_hold = threading.Barrier(2, timeout=20)
    refused = []

    def worker(mine, theirs):
        with mine:
            both_hold.wait()
            try:
                with theirs:
                    pass
            except tracedsync.DeadlockError:
                refused.append(threading.current_thread().name)

    threads = [
        tracedsync.Thread(target=worker, args=(first, second), name="one"),
        tracedsync.Thread(target=worker, args=(second, first), name="two"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 1  # the test itself handled the deadlock


@pytest.mark.tracedsync
def test_inversion():
    accounts, audit = tracedsync.Lock(name="accounts"), tracedsync.Lock(name="audit")
    with accounts, audit:
        pass
    with audit, accounts:
        pass


@pytest.mark.tracedsync
def test_hierarchy():
    outer, inner = tracedsync.Lock(name="outer"), tracedsync.Lock(name="inner")
    tracedsync.declare_order(outer, inner)
    with inner, pytest.raises(tracedsync.LockOrderError):
        outer.acquire()


class Counter:
    value = tracedsync.guarded_by("_lock")

    def __init__(self):
        self._lock = tracedsync.Lock(name="counter")
        self.value = 0


@pytest.mark.tracedsync
def test_unguarded():
    counter = Counter()
    with pytest.raises(tracedsync.UnguardedAccessError):
        counter.value += 1


@pytest.mark.tracedsync
def test_lock_held():
    leaked = tracedsync.RLock(name="leaked")
    leaked.acquire()
    leaked.acquire()
    leaked.release()


# Made at import, before any test: no earlier lock's id is reused.
ACCOUNTS = [tracedsync.Lock() for _ in range(2)]  # one line, two instances


@pytest.mark.tracedsync
def test_lock_held_instance():
    with ACCOUNTS[0]:
        pass
    ACCOUNTS[1].acquire()


@pytest.mark.tracedsync(thread_grace=0.05)
def test_thread_alive(release_at_teardown):
    tracedsync.Thread(
        target=release_at_teardown.wait, args=(20,), name="lingerer", daemon=True
    ).start()


@pytest.mark.tracedsync
def test_thread_error():
    def fail():
        raise ValueError("boom in the worker")

    worker = tracedsync.Thread(target=fail, name="failing-worker")
    worker.start()
    worker.join()
"""

#: Each failure mode: the inner test, and lines its report must contain.
EXPECTED_REPORTS: dict[str, list[str]] = {
    "test_deadlock": [
        "[[]deadlock] Found a deadlock: 2 threads wait for each other in a cycle (tracedsync).",
        "*thread '*' waits for Lock '*' at test_failure_modes.py:*",
    ],
    "test_inversion": [
        "[[]inversion] Possible deadlock: lock-order inversion*",
        "*thread 'MainThread' acquires Lock 'accounts' at test_failure_modes.py:*",
    ],
    "test_hierarchy": [
        "[[]hierarchy] Lock hierarchy violated: thread 'MainThread' acquires Lock 'outer' at "
        "test_failure_modes.py:* (in test_hierarchy)",
        "*while holding Lock 'inner', acquired at test_failure_modes.py:* (in test_hierarchy);",
        "*declare_order('outer', 'inner') at test_failure_modes.py:*",
    ],
    "test_unguarded": [
        "[[]unguarded] Unguarded access: thread 'MainThread' read Counter.value at "
        "test_failure_modes.py:* (in test_unguarded) without holding Lock 'counter'*",
    ],
    "test_lock_held": [
        "[[]lock_held] RLock 'leaked' is still held at the end of the test: acquired by thread "
        "'MainThread' at test_failure_modes.py:* (in test_lock_held) and never released.",
    ],
    "test_lock_held_instance": [
        "[[]lock_held] Lock 'Lock@test_failure_modes.py:*#2' is still held at the end of the "
        "test: acquired by thread 'MainThread' at test_failure_modes.py:* "
        "(in test_lock_held_instance) and never released.",
    ],
    "test_thread_alive": [
        "[[]thread_alive] Thread 'lingerer' (daemon), started by the test, is still alive "
        "0.05 s after it ended.",
    ],
    "test_thread_error": [
        "[[]thread_error] Thread 'failing-worker' died with an unhandled exception: "
        "ValueError: boom in the worker*",
    ],
}


def test_each_failure_mode_fails_the_test_with_a_readable_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_failure_modes=FAILURE_MODES)
    result = run(pytester, "--tracedsync-fail-on=lock_held,thread_alive")
    result.assert_outcomes(failed=len(EXPECTED_REPORTS))
    for test, expected in EXPECTED_REPORTS.items():
        section = failure_of(result, test)
        assert section.startswith("tracedsync: this test broke lock discipline ("), section
        for pattern in expected:
            assert any(fnmatch.fnmatch(line, pattern) for line in section.splitlines()), (
                f"{test}: no line matches {pattern!r} in:\n{section}"
            )
        assert "tracedsync/_" not in section, section  # user sites only
        assert "To accept a kind of problem in a test: @pytest.mark.tracedsync(allow=" in section


def test_allow_accepts_each_kind_by_marker_ini_and_command_line(
    pytester: pytest.Pytester,
) -> None:
    allowed = FAILURE_MODES.replace(
        "@pytest.mark.tracedsync\ndef test_inversion",
        '@pytest.mark.tracedsync(allow=["inversion"])\ndef test_inversion',
    )
    pytester.makepyfile(test_failure_modes=allowed)
    pytester.makeini(
        "[pytest]\ntracedsync_allow = lock_held\ntracedsync_fail_on = lock_held thread_alive\n"
    )
    result = run(pytester, "--tracedsync-allow=thread_error", "--tracedsync-allow", "hierarchy")
    result.assert_outcomes(passed=5, failed=3)
    failed = {line.split("::")[1].split()[0] for line in result.outlines if "FAILED" in line}
    assert failed == {"test_deadlock", "test_unguarded", "test_thread_alive"}


def test_a_failing_test_gets_the_report_as_an_extra_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, tracedsync

        @pytest.mark.tracedsync(fail_on=["lock_held"])
        def test_fails_and_leaks():
            tracedsync.Lock(name="kept").acquire()
            assert 1 == 2
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       assert 1 == 2",
            "*- tracedsync -*",
            "tracedsync: this test broke lock discipline (1 problem)",
            "[[]lock_held] Lock 'kept' is still held at the end of the test*",
        ]
    )


CLEAN_SUITE = '''
import queue
import threading

import pytest

import tracedsync


@pytest.fixture
def server():
    """A fixture's thread and lock, alive across the test: not the test's own."""
    stop = threading.Event()
    guard = tracedsync.Lock(name="server-guard")
    guard.acquire()
    thread = tracedsync.Thread(target=stop.wait, name="server")
    thread.start()
    yield
    stop.set()
    thread.join()
    guard.release()


def test_workers_share_a_queue(server):
    lock = tracedsync.Lock(name="total")
    totals = []
    jobs = queue.Queue()
    for number in range(20):
        jobs.put(number)

    def work():
        while True:
            try:
                number = jobs.get_nowait()
            except queue.Empty:
                return
            with lock:
                totals.append(number)

    threads = [tracedsync.Thread(target=work, name=f"worker-{n}") for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(totals) == list(range(20))


def test_condition_handoff():
    ready = tracedsync.Condition(name="ready")
    items = []

    def produce():
        with ready:
            items.append(1)
            ready.notify()

    with ready:
        producer = tracedsync.Thread(target=produce, name="producer")
        producer.start()
        assert ready.wait_for(lambda: items, timeout=20)
    producer.join()


def test_thread_finishing_within_the_grace_period():
    go = threading.Event()
    thread = tracedsync.Thread(target=go.wait, args=(20,), name="finisher")
    thread.start()
    go.set()  # not joined: it ends on its own, within the grace period


def test_tracing_state(pytestconfig):
    from tracedsync import _hooks

    traced = pytestconfig.getoption("tracedsync")
    assert bool(_hooks._sinks) == bool(traced)
'''


LIBRARY_THREADS = """
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import tracedsync

#: A library's executor, started lazily by the first test that uses it and
#: shut down at exit (as filelock's, watchdog's and prometheus-client's).
_pool = None
_stop = threading.Event()


def pool():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="library-pool")
    return _pool


@pytest.fixture(scope="session", autouse=True)
def shut_down_at_the_end():
    yield
    _stop.set()
    if _pool is not None:
        _pool.shutdown(wait=True)


def test_starts_the_pool():
    assert pool().submit(sum, [1, 2]).result(timeout=20) == 3


def test_reuses_the_pool():
    assert pool().submit(sum, [3, 4]).result(timeout=20) == 7


def test_starts_an_observer():
    tracedsync.Thread(target=_stop.wait, name="observer", daemon=True).start()


def test_leaves_a_lock_held():
    tracedsync.Lock(name="kept").acquire()


def test_breaks_the_lock_order():
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    with first, second:
        pass
    with second, first:
        pass
"""


def test_threads_and_locks_left_behind_are_reported_not_failed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_library=LIBRARY_THREADS)
    result = run(pytester, "--tracedsync", "--tracedsync-thread-grace=0.05", "-rP")
    result.assert_outcomes(passed=4, failed=1)
    assert failure_of(result, "test_breaks_the_lock_order").startswith(
        "tracedsync: this test broke lock discipline (1 problem)"
    )
    result.stdout.fnmatch_lines(
        [
            "*- tracedsync (reported) -*",
            "tracedsync: reported, not failing this test (1 problem)",
            "[[]thread_alive] Thread 'library-pool_0', started by the test, is still "
            "alive 0.05 s after it ended.",
            "*= tracedsync: reported, not failing =*",
            "test_library.py::test_starts_the_pool: thread_alive",
            "test_library.py::test_starts_an_observer: thread_alive",
            "test_library.py::test_leaves_a_lock_held: lock_held",
            "3 tests with problems reported only (lock_held in 1, thread_alive in 2)*",
        ],
        consecutive=False,
    )
    # The pool's thread was alive when the next test started: not its own.
    assert "test_reuses_the_pool: " not in result.stdout.str()


def test_fail_on_makes_reported_kinds_fail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_library=LIBRARY_THREADS)
    pytester.makeini("[pytest]\ntracedsync_fail_on = lock_held\n")
    result = run(pytester, "--tracedsync", "--tracedsync-thread-grace=0.05")
    result.assert_outcomes(passed=3, failed=2)
    result = run(
        pytester,
        "--tracedsync",
        "--tracedsync-thread-grace=0.05",
        "--tracedsync-fail-on=thread_alive",
    )
    result.assert_outcomes(passed=1, failed=4)
    result = run(pytester, "--tracedsync", "--tracedsync-fail-on=leaks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tracedsync_fail_on: unknown kind leaks; use deadlock, *"])


HANDOFF_SUITE = """
import threading

import pytest

import tracedsync


class RWLockRead:
    # readerwriterlock.RWLockRead: the last reader releases what the first took.
    def __init__(self):
        self.readers = 0
        self.resource = threading.Lock()
        self.count_lock = threading.Lock()

    def acquire_read(self):
        with self.count_lock:
            self.readers += 1
            if self.readers == 1:
                self.resource.acquire()

    def release_read(self):
        with self.count_lock:
            self.readers -= 1
            if self.readers == 0:
                self.resource.release()


@pytest.mark.parametrize("round", range(3))
def test_readers_overlap(round):
    rw = RWLockRead()
    first_in, last_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        rw.acquire_read()
        first_in.set()
        assert last_in.wait(20)
        rw.release_read()
        first_out.set()

    def last():
        assert first_in.wait(20)
        rw.acquire_read()
        last_in.set()
        assert first_out.wait(20)
        rw.release_read()

    threads = [threading.Thread(target=first), threading.Thread(target=last)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)


def test_a_reader_is_still_in_at_the_end():
    # A lock of the class found to be a handoff lock above: a signal, not held.
    rw = RWLockRead()
    reader = threading.Thread(target=rw.acquire_read)
    reader.start()
    reader.join(20)
"""


def test_handoff_locks_make_no_inversion_nor_held_lock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_handoff=HANDOFF_SUITE)
    result = run(pytester, "--tracedsync", "--tracedsync-fail-on=lock_held,thread_alive")
    result.assert_outcomes(passed=4)
    assert "tracedsync: reported" not in result.stdout.str()


@pytest.mark.parametrize("flag", [[], ["--tracedsync"]], ids=["without-flag", "with-flag"])
def test_a_clean_suite_passes_untouched(pytester: pytest.Pytester, flag: list[str]) -> None:
    pytester.makepyfile(test_clean=CLEAN_SUITE)
    result = run(pytester, "-v", *flag)
    result.assert_outcomes(passed=4)
    if flag:
        result.stdout.fnmatch_lines(["tracedsync: tracing every test*"])
    else:
        assert "tracedsync:" not in result.stdout.str()


def test_the_flag_and_the_ini_option_trace_unmarked_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import tracedsync

        def test_unmarked_inversion():
            a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")
            with a, b:
                pass
            with b, a:
                pass
        """
    )
    run(pytester).assert_outcomes(passed=1)
    flagged = run(pytester, "--tracedsync")
    flagged.assert_outcomes(failed=1)
    flagged.stdout.fnmatch_lines(["[[]inversion] Possible deadlock*"])
    flagged.stdout.fnmatch_lines(["tracedsync: tracing every test, threading patched"])
    pytester.makeini("[pytest]\ntracedsync = true\n")
    run(pytester).assert_outcomes(failed=1)


PATCH_STATE_CONFTEST = """
import tracedsync


def pytest_unconfigure(config):
    print("patched after the run:", tracedsync.is_patched())
"""


def test_whole_run_and_per_test_patching_go_through_tracedsync_patch(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(PATCH_STATE_CONFTEST)
    pytester.makepyfile(
        """
        import threading
        import pytest
        import tracedsync

        def patched():
            return tracedsync.is_patched() and isinstance(threading.Lock(), tracedsync.Lock)

        @pytest.mark.tracedsync
        def test_marked():
            assert patched()

        @pytest.mark.tracedsync(patch=False)
        def test_marked_unpatched():
            assert not patched()

        def test_unmarked():
            assert not patched()
        """
    )
    result = run(pytester, "-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["patched after the run: False"])
    whole = run(pytester, "-s", "--tracedsync", "-k", "test_marked and not unpatched")
    whole.assert_outcomes(passed=1, deselected=2)
    whole.stdout.fnmatch_lines(
        ["tracedsync: tracing every test, threading patched", "patched after the run: False"]
    )


def test_bad_options_are_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.tracedsync(alow=["inversion"])
        def test_typo():
            pass

        @pytest.mark.tracedsync(allow=["deadlocks"])
        def test_unknown_kind():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*TypeError: @pytest.mark.tracedsync: unknown option alow; use thread_grace, "
            "allow, patch, races, fail_on",
            "*ValueError: @pytest.mark.tracedsync(allow=...): unknown kind deadlocks; use *",
        ]
    )
    usage = run(pytester, "--tracedsync-allow=everything")
    assert usage.ret == pytest.ExitCode.USAGE_ERROR
    usage.stderr.fnmatch_lines(["*tracedsync_allow: unknown kind everything; use deadlock, *"])


INACTIVE_SUITE = """
import sys
import threading
import _thread


def test_plugin_is_inactive(pytestconfig):
    assert "_tracedsync_pytestplugin" in sys.modules  # the entry point was loaded
    loaded = [name for name in sys.modules if name.split(".")[0] == "tracedsync"]
    assert loaded == []  # ... and imported nothing of tracedsync
    assert not pytestconfig.pluginmanager.has_plugin("tracedsync-checks")
    assert type(threading.Lock()) is _thread.LockType  # threading is not patched
    assert type(threading.RLock()) is _thread.RLock
"""


def test_an_unused_plugin_imports_nothing_and_registers_nothing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_inactive=INACTIVE_SUITE)
    run(pytester).assert_outcomes(passed=1)


def test_an_unused_plugin_has_no_per_test_hooks_and_a_negligible_scan(
    pytester: pytest.Pytester, pytestconfig: pytest.Config
) -> None:
    module = _tracedsync_pytestplugin
    hooks = {name for name in dir(module) if name.startswith("pytest_")}
    assert hooks == {"pytest_addoption", "pytest_configure", "pytest_collection_modifyitems"}
    # The one thing it does per run: look for a marker on each collected item.
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(2000))
        def test_many(n):
            pass
        """
    )
    items, _ = pytester.inline_genitems("-p", "no:cacheprovider")
    assert len(items) == 2000
    # Counted, not timed: per unmarked item, two marker lookups and no other
    # call of the plugin's own (a wall-clock bound fails on a loaded machine).
    lookups = 0
    own_calls = 0

    def count(frame: Any, event: str, argument: object) -> None:
        nonlocal lookups, own_calls
        if event != "call":
            return
        if frame.f_code.co_name == "get_closest_marker":
            lookups += 1
        elif frame.f_code.co_filename == module.__file__:
            own_calls += 1

    sys.setprofile(count)
    try:
        module.pytest_collection_modifyitems(pytestconfig, items)
    finally:
        sys.setprofile(None)
    assert (lookups, own_calls) == (2 * len(items), 1)  # 1: the hook itself
    assert not pytestconfig.pluginmanager.has_plugin(_tracedsync_pytestplugin.PLUGIN_NAME)


def test_locktrace_fixture_in_an_untraced_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import tracedsync

        def test_order(locktrace, pytestconfig):
            a, b = tracedsync.Lock(name="a"), tracedsync.RLock(name="b")
            with a, b, b:
                pass
            locktrace.assert_acquired_before(a, b)
            locktrace.assert_pairing()
            assert locktrace.max_wait("a") == 0.0
            assert not pytestconfig.pluginmanager.has_plugin("tracedsync-checks")

        def test_wrong_order(locktrace):
            a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")
            with b, a:
                pass
            locktrace.assert_acquired_before(a, b)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *AssertionError: 'a' was acquired after 'b': thread 'MainThread' acquired 'a' "
            "at test_locktrace_fixture_in_an_untraced_suite.py:* (in test_wrong_order) while "
            "holding 'b' (acquired at *"
        ]
    )


def test_fixture_and_explore_marker_without_the_flag(pytester: pytest.Pytester) -> None:
    """Without --tracedsync, threading is not patched: the fixture refuses a
    plain lock in one line, and the explore marker works on its own."""
    pytester.makepyfile(
        """
        import threading

        import pytest

        import tracedsync

        def test_plain_lock(locktrace):
            lock = threading.Lock()
            with lock:
                pass
            locktrace.max_hold(lock)

        @pytest.mark.tracedsync_explore(runs=5)
        def test_explored():
            lock = tracedsync.Lock(name="explored")
            done = []
            def take():
                with lock:
                    done.append(True)

            worker = tracedsync.Thread(target=take)
            worker.start()
            worker.join()
            assert len(done) == 1
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *TypeError: <unlocked _thread.lock object at *> is not a tracedsync primitive, so "
            "nothing about it is recorded: create it with tracedsync (tracedsync.Lock()...), or "
            "let threading make traced ones (pytest --tracedsync, @pytest.mark.tracedsync or "
            "tracedsync.patch())"
        ]
    )
    assert "AttributeError" not in result.stdout.str()
