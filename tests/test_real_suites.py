"""Defects found by running real test suites under tracedsync
(``benchmarks/real_suites.py``), one regression test each."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tracedsync import _hooks
from tracedsync._cli.summary import Summary


def _lock_records() -> list[Any]:
    """The live records of one acquire and release of a traced Lock."""
    records: list[Any] = []
    lock = tracedsync.Lock()
    _hooks.add_sink(records.append)
    try:
        with lock:
            pass
    finally:
        _hooks.remove_sink(records.append)
    assert [r[3] for r in records] == ["lock.acquire", "lock.release"]
    return records


@pytest.mark.timeout(60)
def test_summary_sink_is_exact_when_threads_deliver_at_once() -> None:
    # CPython's test_queue under `tracedsync run` (3.13): the summary sink,
    # called by many threads at once, raised KeyError (a release matched an
    # acquire that another thread's record had just removed) and was
    # disabled for the rest of the run; its counters lost increments.
    acquire, release = _lock_records()
    summary = Summary()
    threads_n, rounds = 4, 20_000
    start = threading.Barrier(threads_n)
    disabled: list[str] = []

    def deliver() -> None:
        start.wait()
        for _ in range(rounds):
            # what _hooks does for a sink: a sink that raises is dropped
            try:
                summary.add_record(acquire)
                summary.add_record(release)
            except Exception as exc:
                disabled.append(repr(exc))
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=deliver) for _ in range(threads_n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert disabled == []
    (stats,) = summary.locks.values()
    assert stats.acquired == threads_n * rounds
    assert summary.events == 2 * threads_n * rounds


def _unraisable_from_a_raw_thread() -> tuple[object, object, str]:
    """What sys.unraisablehook gets for a function that raises in a thread
    started by ``_thread.start_new_thread`` (test_thread's scenario)."""
    import _thread

    def task() -> None:
        started.release()
        raise ValueError("task failed")

    seen: list[Any] = []
    reported = threading.Event()

    def record(args: Any) -> None:
        seen.append(args)
        reported.set()

    started = _thread.allocate_lock()
    hook = sys.unraisablehook
    sys.unraisablehook = record
    try:
        started.acquire()
        _thread.start_new_thread(task, ())
        started.acquire()  # released by the task just before it raises
        assert reported.wait(30)
    finally:
        sys.unraisablehook = hook
    assert len(seen) == 1
    args = seen[0]
    culprit = "task" if args.object is task else args.object
    message = args.err_msg.replace(repr(task), "<task>")
    return culprit, message, str(args.exc_value)


@pytest.mark.timeout(60)
def test_raw_thread_exception_is_reported_as_thread_reports_it() -> None:
    # CPython's test_thread.test_unraisable_exception under `tracedsync run`:
    # the report named tracedsync's start wrapper instead of the function.
    plain = _unraisable_from_a_raw_thread()
    with tracedsync.patched():
        traced = _unraisable_from_a_raw_thread()
    assert traced == plain
    assert plain[2] == "task failed"


def _blocked_in_queue_get(q: Any) -> None:
    q.get()  # the user's line a report must name


@pytest.mark.timeout(60)
def test_a_wait_inside_the_stdlib_names_the_users_call() -> None:
    # A hang in queue.Queue.get was reported at queue.py:171 only; the
    # user's line that called get was never named.
    import queue

    from tracedsync._sites import describe_wait
    from tracedsync._waits import waits

    with tracedsync.patched():
        q: Any = queue.Queue()
    worker = threading.Thread(target=_blocked_in_queue_get, args=(q,))
    worker.start()
    try:
        wait = None
        for _ in range(3000):  # until the worker's wait is registered
            wait = waits.snapshot()[1].get(worker.ident)  # type: ignore[arg-type]
            if wait is not None:
                break
            threading.Event().wait(0.01)
        assert wait is not None
        site = describe_wait(worker.ident, wait.code, wait.offset)  # type: ignore[arg-type]
    finally:
        q.put(None)
        worker.join()
    assert site is not None
    where, _, caller = site.partition(", called from ")
    assert where.startswith("queue.py:") or "/queue.py:" in where, site
    assert caller.startswith("test_real_suites.py:") or "/test_real_suites.py:" in caller, site
    assert caller.endswith("(in _blocked_in_queue_get)"), site


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_real_suites_script_runs_a_suite_and_skips_what_is_missing(tmp_path: Path) -> None:
    pytest.importorskip("test.test_threading_local")
    finished = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "real_suites.py"),
            "--suite",
            "test_threading_local",
            "--suite",
            "readerwriterlock",
            "--src",
            str(tmp_path),
            "--markdown",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    out = finished.stdout
    assert "== readerwriterlock: SKIPPED:" in out, out + finished.stderr
    assert "== test_threading_local" in out
    assert "run: 0 difference(s), wall time" in out, out
    assert finished.returncode == 0, out + finished.stderr
    row = next(line for line in out.splitlines() if line.startswith("| test_threading_local"))
    assert "0 diff" in row


class _Payload:
    pass


@pytest.mark.timeout(60)
def test_liveness_checks_keep_no_frames_alive() -> None:
    # CPython's test_concurrent_futures (test_no_stale_references, and the
    # resource tracker's leaked semaphores) under `tracedsync run`: the
    # liveness check's sys._current_frames() dictionary formed a reference
    # cycle with the checking thread's frames, so every thread's frames and
    # locals it saw lived until the cyclic collector ran.
    import gc
    import weakref

    from tracedsync._waits import waits

    box = [_Payload()]
    collected = weakref.ref(box[0])
    ready, go = threading.Event(), threading.Event()

    def check_then_hold() -> None:
        payload = box.pop()  # only this frame refers to it now
        ready.set()
        go.wait()
        assert payload is not None

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        worker = threading.Thread(target=check_then_hold)
        worker.start()
        assert ready.wait(30)
        waits.others_can_progress(threading.get_ident())
        waits.others_exist(threading.get_ident())
        go.set()
        worker.join()
        assert collected() is None
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11),
    reason="only 3.11 can collect inside the call (3.10 allocates nothing tracked "
    "there; 3.12+ collects between bytecodes only)",
)
def test_the_collector_is_paused_while_reading_every_threads_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # filelock's 20-thread test under `tracedsync run` on 3.11: a collection
    # triggered inside sys._current_frames() waited for the thread-list
    # lock that call holds, with the GIL held: the whole process stopped.
    import gc

    from tracedsync._sites import current_frames

    seen: list[bool] = []
    original = sys._current_frames

    def spy() -> Any:
        seen.append(gc.isenabled())
        return original()

    monkeypatch.setattr(sys, "_current_frames", spy)
    assert gc.isenabled()
    frames = current_frames()
    assert frames is not None and threading.get_ident() in frames
    assert seen == [False]
    assert gc.isenabled()
