"""The self re-acquire rule: a thread re-acquiring a Lock it holds."""

from __future__ import annotations

import threading
import time

import pytest

import tracedsync
from helpers import run_python, wait_until_blocked
from tracedsync._waits import waits

TEACHING_PROGRAM = """
import tracedsync
lock = tracedsync.Lock(name="teaching")
lock.acquire()
recording = tracedsync.record().__enter__()
try:
    lock.acquire()
except tracedsync.DeadlockError as error:
    print("events", ",".join(event["event"] for event in recording.events()))
    print("primitive", error.primitive)
    print("held_at", error.held_at)
    print("requested_at", error.requested_at)
    print(isinstance(error, RuntimeError))
    raise
"""


def test_teaching_program_raises_at_once_instead_of_hanging() -> None:
    result = run_python(TEACHING_PROGRAM)
    assert result.returncode == 1
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines()[:4])
    # Detection is immediate when no other thread exists: the error comes
    # before the thread ever blocks (no ``lock.blocked``, no timed wait).
    assert lines["events"] == "deadlock.self_reacquire", result.stdout
    assert lines["primitive"] == "teaching"
    assert lines["held_at"] == "<string>:4 (in <module>)"
    assert lines["requested_at"] == "<string>:7 (in <module>)"
    assert result.stdout.splitlines()[4] == "True"
    assert "tracedsync.DeadlockError: Lock 'teaching' re-acquired by thread 'MainThread'" in (
        result.stderr
    )
    assert "first acquired at: <string>:4 (in <module>)" in result.stderr
    assert "acquired again at: <string>:7 (in <module>)" in result.stderr
    # The report never points into tracedsync's own code.
    assert "tracedsync/_" not in result.stderr.split("DeadlockError:", 1)[1]


def test_same_program_with_rlock_works() -> None:
    result = run_python(
        "import tracedsync\n"
        "lock = tracedsync.RLock()\n"
        "lock.acquire(); lock.acquire(); lock.release(); lock.release()\n"
        "print('ok', lock._is_owned())\n"
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok False\n", "")


def test_with_statement_reacquire_reports_the_with_lines() -> None:
    result = run_python(
        "import tracedsync\n"
        "lock = tracedsync.Lock()\n"
        "def inner():\n"
        "    with lock:\n"
        "        pass\n"
        "with lock:\n"
        "    inner()\n"
    )
    assert "tracedsync.DeadlockError: Lock 'Lock@<string>:2#1'" in result.stderr
    assert "first acquired at: <string>:6 (in <module>)" in result.stderr
    assert "acquired again at: <string>:4 (in inner)" in result.stderr


def _run_worker(target: object) -> tuple[tracedsync.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as error:
            errors.append(error)

    thread = tracedsync.Thread(target=body, name="worker")
    thread.start()
    return thread, errors


def test_worker_reacquire_while_main_joins_raises_in_worker() -> None:
    lock = tracedsync.Lock()

    def reacquire() -> None:
        lock.acquire()
        lock.acquire()

    thread, errors = _run_worker(reacquire)
    thread.join()  # would hang forever with threading.Lock
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, tracedsync.DeadlockError)
    assert error.thread_name == "worker"
    assert "every other thread is blocked forever or has exited" in str(error)
    assert not waits.snapshot()[1]
    assert lock.locked()  # the first acquire still holds it
    lock.release()


def test_two_workers_each_reacquiring_both_get_deadlock_error() -> None:
    locks = [tracedsync.Lock(), tracedsync.Lock()]
    ready = tracedsync.Barrier(2)

    def reacquire(lock: tracedsync.Lock) -> None:
        lock.acquire()
        ready.wait()
        lock.acquire()

    first, first_errors = _run_worker(lambda: reacquire(locks[0]))
    second, second_errors = _run_worker(lambda: reacquire(locks[1]))
    first.join()
    second.join()
    assert [type(e) for e in first_errors + second_errors] == [tracedsync.DeadlockError] * 2


def test_handoff_release_by_another_thread_is_not_a_deadlock() -> None:
    lock = tracedsync.Lock()
    outcome: list[bool] = []
    first_acquired = threading.Event()

    def reacquire() -> None:
        lock.acquire()
        first_acquired.set()
        outcome.append(lock.acquire())  # released by the main thread below

    thread, errors = _run_worker(reacquire)
    first_acquired.wait()
    wait_until_blocked(thread.ident)
    # Give the checker several rounds in which the main thread could release.
    assert not threading.Event().wait(0.3)
    assert thread.is_alive()
    lock.release()
    thread.join()
    assert (outcome, errors) == ([True], [])
    lock.release()


def test_other_thread_blocked_with_timeout_still_counts_as_able_to_release() -> None:
    lock = tracedsync.Lock()
    gate = tracedsync.Event()
    outcome: list[bool] = []

    def reacquire() -> None:
        lock.acquire()
        outcome.append(lock.acquire())

    def timed_waiter() -> None:
        while not gate.wait(timeout=0.05):
            pass
        lock.release()

    thread, errors = _run_worker(reacquire)
    wait_until_blocked(thread.ident)
    helper = tracedsync.Thread(target=timed_waiter)
    helper.start()
    assert not threading.Event().wait(0.3)
    gate.set()
    helper.join()
    thread.join()
    assert (outcome, errors) == ([True], [])


def test_other_threads_blocked_forever_make_the_reacquire_a_deadlock() -> None:
    lock = tracedsync.Lock()
    never = tracedsync.Event()
    waiter = tracedsync.Thread(target=never.wait, daemon=True)
    waiter.start()
    wait_until_blocked(waiter.ident)

    def reacquire() -> None:
        lock.acquire()
        lock.acquire()

    thread, errors = _run_worker(reacquire)
    thread.join()
    assert [type(e) for e in errors] == [tracedsync.DeadlockError]
    never.set()
    waiter.join()


def test_strict_mode_raises_at_once_even_with_other_threads() -> None:
    tracedsync.configure(strict=True)
    lock = tracedsync.Lock()
    lock.acquire()
    helper_stop = threading.Event()
    helper = threading.Thread(target=helper_stop.wait)
    helper.start()
    try:
        with pytest.raises(tracedsync.DeadlockError, match="strict mode"):
            lock.acquire()
        with pytest.raises(tracedsync.DeadlockError, match="strict mode"):
            lock.acquire(timeout=5)
        assert lock.acquire(blocking=False) is False
    finally:
        helper_stop.set()
        helper.join()
        lock.release()


def test_per_lock_strict_overrides_the_global_setting() -> None:
    strict_lock = tracedsync.Lock(strict=True)
    strict_lock.acquire()
    with pytest.raises(tracedsync.DeadlockError):
        strict_lock.acquire(timeout=5)
    tracedsync.configure(strict=True)
    lenient = tracedsync.Lock(strict=False)
    lenient.acquire()
    assert lenient.acquire(timeout=0.01) is False


def test_timeout_and_non_blocking_keep_stdlib_behaviour_and_warn(
    capfd: pytest.CaptureFixture[str],
) -> None:
    tracedsync.configure(log_level="warning")
    lock = tracedsync.Lock(name="guarded")
    lock.acquire()
    started = time.monotonic()
    assert lock.acquire(timeout=0.05) is False
    assert time.monotonic() - started >= 0.04
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0) is False
    lock.release()
    err = capfd.readouterr().err
    assert err.count("lock.self_reacquire") == 3
    assert "primitive_name=guarded" in err
    assert "waiting up to 0.05 s" in err
    assert "a non-blocking acquire returns False" in err


def test_warnings_are_silent_by_default(capfd: pytest.CaptureFixture[str]) -> None:
    lock = tracedsync.Lock()
    lock.acquire()
    assert lock.acquire(False) is False
    lock.release()
    assert capfd.readouterr() == ("", "")


def test_rlock_recursion_is_never_flagged(capfd: pytest.CaptureFixture[str]) -> None:
    tracedsync.configure(log_level="warning", strict=True)
    lock = tracedsync.RLock()
    with tracedsync.record() as trace:
        for _ in range(5):
            assert lock.acquire()
        assert lock.acquire(False)
        assert lock.acquire(timeout=0.01)
        for _ in range(7):
            lock.release()
    assert capfd.readouterr() == ("", "")
    assert trace.names() == ["rlock.acquire"] * 7 + ["rlock.release"] * 7
    assert [event["depth"] for event in trace] == [*range(1, 8), *range(6, -1, -1)]


def test_deadlock_error_is_its_one_report() -> None:
    # The raised error is the report: its traceback, and no log line saying
    # the same again (the event is still recorded: see the teaching test).
    result = run_python(TEACHING_PROGRAM)
    assert result.stderr.startswith("Traceback (most recent call last):"), result.stderr
    assert "[error" not in result.stderr
    assert result.stderr.count("re-acquired by thread") == 1
