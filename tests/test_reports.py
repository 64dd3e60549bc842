"""Reports a person can act on: one report per finding, tracebacks that end
at the user's call, the user's first frame and each involved thread's stack,
and a wait in a thread alone reported at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

import tracedsync
from helpers import (
    PATIENCE,
    process_sleeps_in_a_wait,
    run_python,
    wait_until,
    wait_until_blocked,
)
from tracedsync import _accel
from tracedsync._cli.run import DEADLOCK_EXIT_STATUS

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
PACKAGE = os.path.dirname(tracedsync.__file__) + os.sep


def run_traced(tmp_path: Path, source: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``tracedsync run OPTIONS prog.py`` on ``source``, in ``tmp_path``."""
    (tmp_path / "prog.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", *options, "prog.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=PATIENCE * 3,
        check=False,
    )


# -- one problem, one report -----------------------------------------------------


def test_run_self_reacquire_in_a_worker_is_one_report(tmp_path: Path) -> None:
    # Before: a lock.self_reacquire warning, the deadlock.self_reacquire
    # error line, a traceback through tracedsync's frames, and a stale
    # "self re-acquires" summary entry beside the deadlock.
    result = run_traced(
        tmp_path,
        """
        import threading
        lock = threading.Lock()
        def work():
            with lock:
                with lock:
                    pass
        worker = threading.Thread(target=work, name="worker")
        worker.start()
        worker.join()
        """,
    )
    assert result.returncode == DEADLOCK_EXIT_STATUS, result.stderr
    err = result.stderr
    assert err.count("[error") == 1 and "[warning" not in err, err
    assert "deadlock.self_reacquire" in err
    assert "Traceback" not in err
    assert err.count("acquired again at: prog.py:6 (in work)") == 1
    assert "  deadlocks: 1" in err and "self re-acquires" not in err


def test_run_hang_is_one_report_with_every_stack(tmp_path: Path) -> None:
    # Before: the main thread's join was reported as a long wait, then the
    # lock wait as a long wait, then again as a hang.
    (tmp_path / "hidden.py").write_text((EXAMPLES / "hidden.py").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", "--hang-timeout", "1", "hidden.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=PATIENCE * 3,
        check=False,
    )
    assert result.returncode == DEADLOCK_EXIT_STATUS, result.stderr
    err = result.stderr
    assert err.count("[error") == 1 and "[warning" not in err, err
    assert "run.hang" in err and "long waits" not in err
    assert "Hang (--hang-timeout 1 s: a lock acquire blocked that long): thread 'two'" in err
    assert "'one': hidden.py:14 (in one)" in err  # every thread's stack, in the one report
    assert "  deadlocks: 1" in err


def _self_reacquire() -> None:
    lock = tracedsync.Lock(name="strict", strict=True)
    with lock:
        lock.acquire()


def _inversion() -> None:
    tracedsync.configure(on_inversion="raise")
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    with first, second:
        pass
    with second, first:
        pass


def _hierarchy() -> None:
    outer, inner = tracedsync.Lock(name="outer"), tracedsync.Lock(name="inner")
    tracedsync.declare_order(outer, inner)
    with inner, outer:
        pass


class _Account:
    balance = tracedsync.guarded_by("lock")

    def __init__(self) -> None:
        self.lock = tracedsync.Lock(name="account")
        with self.lock:
            self.balance = 0


def _unguarded() -> None:
    _Account().balance += 1


FINDINGS: dict[str, tuple[Callable[[], None], type[BaseException], str]] = {
    "self re-acquire": (_self_reacquire, tracedsync.DeadlockError, "deadlock.self_reacquire"),
    "inversion": (_inversion, tracedsync.LockOrderError, "lock_order.inversion"),
    "hierarchy": (_hierarchy, tracedsync.LockOrderError, "lock_order.hierarchy"),
    "guard": (_unguarded, tracedsync.UnguardedAccessError, "guard.violation"),
}


@pytest.mark.parametrize("finding", sorted(FINDINGS))
def test_a_raised_finding_is_its_one_report(
    finding: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # The exception is the report: the event is recorded (traces, the run
    # summary, the pytest plugin) but not also logged.
    trigger, error_type, event = FINDINGS[finding]
    tracedsync.configure(log_level="warning")
    capfd.readouterr()
    with tracedsync.record() as trace, pytest.raises(error_type) as raised:
        trigger()
    assert event in trace.names()
    assert raised.value.report is not None  # type: ignore[attr-defined]
    assert capfd.readouterr().err == ""


# -- tracebacks end at the user's call ---------------------------------------------


def _internal_frames(error: BaseException) -> list[str]:
    return [
        f"{os.path.basename(frame.filename)} (in {frame.name})"
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename.startswith(PACKAGE)
    ]


@pytest.mark.usefixtures("restore_implementation")
@pytest.mark.parametrize("implementation", ["python", "c"])
@pytest.mark.parametrize("finding", ["self re-acquire", "inversion", "hierarchy"])
def test_a_lock_finding_traceback_ends_at_the_user_call(implementation: str, finding: str) -> None:
    if implementation == "c" and not _accel.available():
        pytest.skip(f"no C accelerator: {_accel.reason()}")
    _accel.select(implementation)
    trigger, error_type, _ = FINDINGS[finding]
    with pytest.raises(error_type) as raised:
        trigger()
    # Pure Python: the public method re-raises with a fresh traceback (one
    # frame, hidden from pytest by __tracebackhide__); C: none at all.
    expected = ["_lock.py (in acquire)"] if implementation == "python" else []
    assert _internal_frames(raised.value) == expected
    last = traceback.extract_tb(raised.value.__traceback__)[-1 - len(expected)]
    assert last.filename == __file__
    if expected:
        assert raised.value.__traceback__ is not None
        innermost = raised.value.__traceback__
        while innermost.tb_next is not None:
            innermost = innermost.tb_next
        assert innermost.tb_frame.f_locals.get("__tracebackhide__") is True


def test_a_guard_traceback_ends_at_the_user_access() -> None:
    with pytest.raises(tracedsync.UnguardedAccessError) as raised:
        _unguarded()
    assert _internal_frames(raised.value) == ["_guarded.py (in __get__)"]


# -- the user's frames and every thread's stack --------------------------------------


def test_a_cycle_report_shows_each_thread_stack(capfd: pytest.CaptureFixture[str]) -> None:
    tracedsync.configure(log_level="warning")
    capfd.readouterr()
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    both_hold_one = tracedsync.Barrier(2)
    errors: list[BaseException] = []

    def take_second() -> None:
        with second:
            pass

    def one() -> None:
        with first:
            both_hold_one.wait()
            take_second()

    def take_first() -> None:
        with first:
            pass

    def two() -> None:
        with second:
            both_hold_one.wait()
            take_first()

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except tracedsync.DeadlockError as error:
                errors.append(error)

        return run

    threads = [
        tracedsync.Thread(target=guarded(one), name="one"),
        tracedsync.Thread(target=guarded(two), name="two"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 1
    assert capfd.readouterr().err == ""  # the raised error is the one report
    report = errors[0].report  # type: ignore[attr-defined]
    here = os.path.relpath(__file__)
    stacks = {entry["thread"]: entry["stack"] for entry in report.details["cycle"]}
    assert [site.split(" (in ")[1] for site in stacks["one"]] == ["take_second)", "one)", "run)"]
    assert [site.split(" (in ")[1] for site in stacks["two"]] == ["take_first)", "two)", "run)"]
    assert all(site.startswith(here + ":") for stack in stacks.values() for site in stack)
    assert report.message.count("      stack: ") == 2
    assert f"stack: {' <- '.join(stacks['one'])}" in report.message


def test_a_stranded_report_names_the_user_call_of_a_stdlib_wait(tmp_path: Path) -> None:
    result = run_traced(
        tmp_path,
        """
        import queue
        import threading
        import time
        import tracedsync._waits

        jobs = queue.Queue()
        state = threading.Lock()

        def consume():
            with state:
                jobs.get()

        consumer = threading.Thread(target=consume, name="consumer")
        consumer.start()
        deadline = time.monotonic() + 30
        while tracedsync._waits.waits.get(consumer.ident) is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        with state:
            pass
        """,
    )
    assert result.returncode == DEADLOCK_EXIT_STATUS, result.stderr
    err = result.stderr
    assert "deadlock.stranded" in err and err.count("[error") == 1
    assert (
        "Thread 'MainThread' waits for Lock 'Lock@prog.py:8#1' at prog.py:20 (in <module>)" in err
    )
    assert "(in get), called from prog.py:12 (in consume)" in err
    get_site = err.split("thread 'consumer' waits for Condition")[1].split(" at ")[1].split(",")[0]
    assert get_site.endswith("(in get)") and "queue.py:" in get_site
    assert f"stack: {get_site} <- prog.py:12 (in consume)" in err
    assert "  stack: prog.py:20 (in <module>)\n" in err


# -- a wait in a thread alone -----------------------------------------------------------

LONE_WAITS = {
    "event": "tracedsync.Event().wait()",
    "semaphore": "tracedsync.Semaphore(0).acquire()",
    "condition": "condition = tracedsync.Condition()\nwith condition:\n    condition.wait()",
    "barrier": "tracedsync.Barrier(2).wait()",
}


@pytest.mark.parametrize("kind", sorted(LONE_WAITS))
def test_a_wait_in_a_thread_alone_is_refused_at_once(kind: str) -> None:
    # Nothing could ever end it: no other thread exists (none starting), and
    # no signal handler is installed.  Before: it blocked forever.
    source = f"""
import os, signal, traceback, tracedsync
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C can no longer end the wait
try:
{textwrap.indent(LONE_WAITS[kind], "    ")}
except tracedsync.DeadlockError as error:
    frames = traceback.extract_tb(error.__traceback__)
    print("refused", [os.path.basename(f.filename) for f in frames])
    print(error.report.message.splitlines()[0])
"""
    started = time.monotonic()
    result = run_python(source)
    assert time.monotonic() - started < PATIENCE
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "refused ['<string>', '_sync.py']", result.stdout
    assert "no other thread exists that could end the wait" in lines[1]
    assert "at <string>:" in lines[1]


def test_waits_that_can_end_in_a_thread_alone_are_not_refused() -> None:
    result = run_python(
        "import tracedsync\n"
        "event = tracedsync.Event(); event.set(); print(event.wait())\n"
        "print(tracedsync.Barrier(1).wait())\n"
        "print(tracedsync.Semaphore(1).acquire())\n"
        "print(tracedsync.Event().wait(0.01))\n"
    )
    assert (result.returncode, result.stdout) == (0, "True\n0\nTrue\nFalse\n"), result.stderr


def test_run_reports_a_lone_queue_get_at_once(tmp_path: Path) -> None:
    # Before: reported as a hang only after the watchdog's --hang-timeout.
    started = time.monotonic()
    result = run_traced(
        tmp_path,
        """
        import queue
        import signal

        def main():
            jobs = queue.Queue()
            jobs.get()

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        main()
        """,
        "--hang-timeout",
        "60",
    )
    assert time.monotonic() - started < PATIENCE
    assert result.returncode == DEADLOCK_EXIT_STATUS, result.stderr
    err = result.stderr
    assert "deadlock.stranded" in err and err.count("[error") == 1
    assert "(in get), called from prog.py:7 (in main)" in err
    assert "no other thread exists that could end the wait" in err
    assert "(in get) <- prog.py:7 (in main) <- prog.py:10 (in <module>)" in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_lone_wait_for_ctrl_c_is_not_refused() -> None:
    # With Python's default SIGINT handler a lone wait ends with
    # KeyboardInterrupt: a program may wait for Ctrl-C on purpose, as
    # threading lets it, so the wait is not refused.  Python installs that
    # handler only if SIGINT is not ignored at start-up, and a background job
    # of a shell without job control (``cmd &`` in a script) inherits it
    # ignored: the program is exec'd with SIGINT at its default, as from a
    # terminal (a preexec_fn would run Python in a child forked from this
    # multi-threaded process).
    program = "import tracedsync\nprint('ready', flush=True)\ntracedsync.Event().wait()"
    exec_with_default_sigint = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
        "os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", exec_with_default_sigint, program],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        wait_until(lambda: process_sleeps_in_a_wait(process.pid), "the program waits")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=PATIENCE)
    finally:
        process.kill()
        process.wait()
    assert "KeyboardInterrupt" in stderr
    assert "DeadlockError" not in stderr


def test_a_lone_queue_get_that_a_signal_handler_ends_is_not_reported(tmp_path: Path) -> None:
    # A signal handler runs in the waiting main thread and can put to the
    # queue: the wait is not stranded while one is installed.
    if not hasattr(__import__("signal"), "setitimer"):
        pytest.skip("no setitimer on this platform")
    result = run_traced(
        tmp_path,
        """
        import queue
        import signal

        jobs = queue.Queue()
        signal.signal(signal.SIGALRM, lambda signum, frame: jobs.put(42))
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        print("got", jobs.get())
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "got 42\n"
    assert "deadlocks: none" in result.stderr


def test_a_self_reacquire_another_thread_ends_is_noted_once_after_the_wait() -> None:
    # Not a deadlock: one note, once the lock was released, with the site it
    # was held at before the wait (before: a note when the wait began).
    lock = tracedsync.Lock(name="handoff")
    me = threading.get_ident()

    def release() -> None:
        wait_until_blocked(me)
        lock.release()

    helper = threading.Thread(target=release)
    with tracedsync.record() as trace:
        lock.acquire()
        held_line = sys._getframe().f_lineno - 1
        helper.start()
        assert lock.acquire()
        requested_line = sys._getframe().f_lineno - 1
        helper.join()
    lock.release()
    names = trace.names()
    assert names.count("lock.self_reacquire") == 1
    assert names.index("lock.acquire.blocked") < names.index("lock.self_reacquire")
    note = next(event for event in trace if event["event"] == "lock.self_reacquire")
    here = os.path.relpath(__file__)
    assert note["detail"] == "another thread released it"
    assert note["held_at"] == f"{here}:{held_line} (in {sys._getframe().f_code.co_name})"
    assert note["requested_at"] == f"{here}:{requested_line} (in {sys._getframe().f_code.co_name})"
    assert "deadlock.self_reacquire" not in names


def test_a_self_reacquire_goes_through_the_deadlock_policy() -> None:
    # A callback receives the report; strict mode refuses whatever the policy.
    seen: list[tracedsync.Report] = []
    tracedsync.configure(on_deadlock=seen.append)
    lock = tracedsync.Lock(name="strict", strict=True)
    with lock, pytest.raises(tracedsync.DeadlockError) as raised:
        lock.acquire()
    assert len(seen) == 1 and raised.value.report is seen[0]  # type: ignore[attr-defined]
    assert seen[0].kind == "deadlock"
    assert seen[0].details["reason"] == "strict mode refuses every blocking self re-acquire"
