"""The pytest plugin, run on small suites with pytester.

Every inner run is a subprocess (a clean interpreter: the plugin's global
effects, patching and sinks, cannot leak into this suite), bounded both by
pytester's ``timeout`` and by pytest-timeout inside.  Threads in the inner
suites synchronise with events and barriers, never sleeps.
"""

from __future__ import annotations

import fnmatch
import time

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
    result = run(pytester)
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
    pytester.makeini("[pytest]\ntracedsync_allow = lock_held\n")
    result = run(pytester, "--tracedsync-allow=thread_error", "--tracedsync-allow", "hierarchy")
    result.assert_outcomes(passed=4, failed=3)
    failed = {line.split("::")[1].split()[0] for line in result.outlines if "FAILED" in line}
    assert failed == {"test_deadlock", "test_unguarded", "test_thread_alive"}


def test_a_failing_test_gets_the_report_as_an_extra_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, tracedsync

        @pytest.mark.tracedsync
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
            "allow, patch, races",
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
    started = time.perf_counter()
    module.pytest_collection_modifyitems(pytestconfig, items)
    per_item = (time.perf_counter() - started) / len(items)
    assert per_item < 50e-6, f"{per_item * 1e6:.1f} µs per test"  # typically ~1 µs
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
