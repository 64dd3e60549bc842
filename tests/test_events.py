"""Structured events: one per operation, with the documented fields."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from helpers import run_python, wait_until_blocked
from tracedsync import _hooks
from tracedsync._pairing import pairing_violations

COMMON_FIELDS = (
    "schema",
    "seq",
    "time_ns",
    "event",
    "level",
    "pid",
    "thread_id",
    "thread_name",
    "thread_token",
    "primitive_kind",
    "primitive_id",
    "primitive_name",
    "primitive_created",
    "primitive_instance",
    "file",
    "line",
    "function",
)


def _line() -> int:
    """The caller's line number."""
    return sys._getframe(1).f_lineno


def test_lock_events_carry_every_documented_field() -> None:
    lock = tracedsync.Lock(name="cache")
    with tracedsync.record() as trace:
        line = _line() + 1
        with lock:
            pass
    acquire, release = trace.events(primitive=lock)
    for event in (acquire, release):
        assert tuple(event)[: len(COMMON_FIELDS)] == COMMON_FIELDS
        assert event["schema"] == tracedsync.SCHEMA_VERSION == 1
        assert event["level"] == "debug"
        assert event["thread_id"] == threading.get_ident()
        assert event["thread_name"] == "MainThread"
        assert (event["primitive_kind"], event["primitive_name"]) == ("Lock", "cache")
        assert event["primitive_instance"] == "cache"  # a given name, its first instance
        assert event["primitive_id"] == id(lock)
        assert (event["file"], event["line"]) == (__file__, line)
        assert event["function"] == "test_lock_events_carry_every_documented_field"
    assert acquire["event"] == "lock.acquire"
    assert (acquire["outcome"], acquire["waited_ns"], acquire["blocking"]) == ("acquired", 0, True)
    assert release["event"] == "lock.release"
    assert release["outcome"] == "released"
    # Less the time tracedsync spent in this thread meanwhile (its sinks).
    assert 0 <= release["held_ns"] <= release["time_ns"] - acquire["time_ns"]
    assert acquire["seq"] < release["seq"]


def test_contended_acquire_is_visible_when_it_starts_and_when_it_ends() -> None:
    lock = tracedsync.Lock()
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold)
    with tracedsync.record() as trace:
        holder.start()
        taken.wait()
        assert lock.acquire(timeout=0.01) is False
        assert lock.acquire(blocking=False) is False
        waiter = threading.Thread(target=lambda: lock.acquire() and lock.release())
        waiter.start()
        wait_until_blocked(waiter.ident)
        blocked_seen = [e["event"] for e in trace.events("lock.", thread=waiter)]
        release.set()
        holder.join()
        waiter.join()
    # The waiter's wait was in the trace while it was still blocked.
    assert blocked_seen == ["lock.acquire.blocked"]
    mine = trace.events("lock.acquire", thread=threading.current_thread())
    assert [(e["outcome"], e["timeout"]) for e in mine] == [
        ("timed_out", 0.01),
        ("would_block", -1),
    ]
    assert mine[0]["waited_ns"] > 0
    blocked = trace.events("lock.acquire.blocked", thread=waiter)[0]
    assert blocked["holder_thread_id"] == holder.ident
    acquired = trace.events("lock.acquire", thread=waiter)[0]
    assert acquired["outcome"] == "acquired"
    # Less the time tracedsync spent in the waiter meanwhile (its sinks).
    assert 0 < acquired["waited_ns"] <= acquired["time_ns"] - blocked["time_ns"]
    holder_release = trace.events("lock.release", thread=holder)[0]
    assert holder_release["seq"] < acquired["seq"]
    trace.assert_pairing()


def test_rlock_events_report_depth_and_hold_time() -> None:
    lock = tracedsync.RLock()
    with tracedsync.record() as trace, lock, lock:
        pass
    assert [(e["event"], e["depth"]) for e in trace] == [
        ("rlock.acquire", 1),
        ("rlock.acquire", 2),
        ("rlock.release", 1),
        ("rlock.release", 0),
    ]
    assert trace.events()[2]["held_ns"] is None
    assert trace.events()[3]["held_ns"] > 0


def test_condition_wait_notify_and_the_lock_it_releases() -> None:
    condition = tracedsync.Condition(name="ready")
    with tracedsync.record() as trace, condition:
        assert condition.wait(timeout=0.001) is False
        condition.notify()
        condition.notify_all()
    names = [e["event"] for e in trace if e["primitive_kind"] in {"Condition", "RLock"}]
    assert names == [
        "rlock.acquire",
        "condition.wait.blocked",
        "rlock.release",  # the wait releases the lock...
        "rlock.acquire",  # ...and takes it back
        "condition.wait",
        "condition.notify",
        "condition.notify_all",
        "rlock.release",
    ]
    released, restored = trace.events()[2], trace.events()[3]
    assert (released["depth"], released["levels"]) == (0, 1)
    assert (restored["depth"], restored["levels"]) == (1, 1)
    assert trace.events("condition.wait")[0]["outcome"] == "timed_out"
    assert trace.events("condition.notify")[0]["n"] == 1
    trace.assert_pairing()


def test_condition_wait_at_rlock_depth_two_keeps_the_pairing() -> None:
    condition = tracedsync.Condition()
    with tracedsync.record() as trace, condition, condition:
        condition.wait(timeout=0.001)
    released = trace.events("rlock.release")[0]
    assert (released["depth"], released["levels"]) == (0, 2)
    restored = trace.events("rlock.acquire")[2]
    assert (restored["depth"], restored["levels"]) == (2, 2)
    trace.assert_pairing()


def test_event_semaphore_barrier_and_thread_events() -> None:
    flag = tracedsync.Event()
    semaphore = tracedsync.BoundedSemaphore(1)
    barrier = tracedsync.Barrier(1)

    def fail() -> None:
        raise ValueError("boom")

    with tracedsync.record() as trace:
        flag.set()
        assert flag.wait()
        flag.clear()
        assert flag.wait(0.001) is False
        with semaphore:
            assert semaphore.acquire(timeout=0.001) is False
        with pytest.raises(ValueError, match="too many"):
            semaphore.release()
        assert barrier.wait() == 0
        barrier.reset()
        barrier.abort()
        thread = tracedsync.Thread(target=fail, name="failing")
        original_hook = threading.excepthook
        threading.excepthook = lambda args: None
        try:
            thread.start()
            thread.join()
        finally:
            threading.excepthook = original_hook
    summary = [(e["event"], e.get("outcome")) for e in trace]
    assert summary[:14] == [
        ("event.set", None),
        ("event.wait", "set"),
        ("event.clear", None),
        ("event.wait.blocked", None),
        ("event.wait", "timed_out"),
        ("semaphore.acquire", "acquired"),
        ("semaphore.acquire.blocked", None),
        ("semaphore.acquire", "timed_out"),
        ("semaphore.release", "released"),
        ("semaphore.release", "error"),
        ("barrier.wait.blocked", None),
        ("barrier.wait", "passed"),
        ("barrier.reset", None),
        ("barrier.abort", None),
    ]
    # The new thread runs concurrently with the main thread's join.
    assert summary[14] == ("thread.start", None)
    assert summary[-1] == ("thread.join", "joined")
    assert sorted(summary[15:-1]) == [
        ("thread.exit", "raised"),
        ("thread.join.blocked", None),
        ("thread.run", None),
    ]
    exit_event = trace.events("thread.exit")[0]
    assert exit_event["exception"] == "ValueError: boom"
    assert exit_event["thread_name"] == "failing"
    assert trace.events("thread.start")[0]["started_thread_id"] == thread.ident


def test_thread_events_are_ordered_start_run_exit_join() -> None:
    with tracedsync.record() as trace:
        thread = tracedsync.Thread(target=lambda: None, name="quick")
        thread.start()
        thread.join()
    names = trace.names()
    assert names.index("thread.start") < names.index("thread.run") < names.index("thread.exit")
    assert names.index("thread.exit") < names.index("thread.join")
    assert {e["thread_name"] for e in trace.events("thread.run")} == {"quick"}


def test_many_threads_lose_no_event_and_keep_order() -> None:
    threads_count, operations = 32, 10_000
    locks = [tracedsync.Lock(name=f"lock-{n}") for n in range(4)]
    start = threading.Barrier(threads_count)

    def work(number: int) -> None:
        lock = locks[number % len(locks)]
        start.wait()
        for _ in range(operations // 2):
            lock.acquire()
            lock.release()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    with tracedsync.record() as trace:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert trace.dropped == 0
    events = [e for e in trace.events("lock.") if not e["event"].endswith(".blocked")]
    assert len(events) == threads_count * operations
    sequence = [e["seq"] for e in events]
    assert sequence == sorted(set(sequence))  # unique and strictly increasing
    per_thread: dict[int, list[str]] = {}
    for event in events:
        per_thread.setdefault(event["thread_token"], []).append(event["event"])
    assert len(per_thread) == threads_count
    for names in per_thread.values():
        assert names == ["lock.acquire", "lock.release"] * (operations // 2)
    assert Counter(e["primitive_name"] for e in events) == {
        f"lock-{n}": threads_count // 4 * operations for n in range(4)
    }
    trace.assert_pairing()


def test_recorder_is_bounded_and_counts_what_it_dropped() -> None:
    lock = tracedsync.Lock()
    with tracedsync.record(capacity=10) as trace:
        for _ in range(20):
            with lock:
                pass
    assert (len(trace), trace.dropped) == (10, 30)
    assert "dropped=30" in repr(trace)
    with pytest.raises(ValueError, match="capacity"):
        tracedsync.record(capacity=0)


def test_overlapping_bounded_traces_each_keep_their_capacity() -> None:
    # Every trace's sink is a plain list.append; the hook alone enforces each
    # capacity, so traces started at different points must not share a count.
    lock, event = tracedsync.Lock(), tracedsync.Event()
    with tracedsync.record(capacity=25) as outer:
        for _ in range(3):
            with lock:
                pass
        with tracedsync.record(capacity=4) as inner:
            for _ in range(5):
                event.set()
                with lock:
                    pass
        for _ in range(10):
            with lock:
                pass
    assert (len(inner), inner.dropped) == (4, 11)
    assert (len(outer), outer.dropped) == (25, 6 + 15 + 20 - 25)
    assert inner.names() == ["event.set", "lock.acquire", "lock.release", "event.set"]
    with tracedsync.record(capacity=3) as later, lock:  # a fresh trace starts empty
        pass
    assert (len(later), later.dropped) == (2, 0)


def test_trace_filters_and_jsonl_export(tmp_path: Path) -> None:
    first, second = tracedsync.Lock(name="first"), tracedsync.RLock(name="second")
    with tracedsync.record() as trace:
        with first:
            pass
        worker = tracedsync.Thread(target=lambda: second.acquire() and second.release(), name="w")
        worker.start()
        worker.join()
    assert [e["event"] for e in trace.events(primitive="first")] == ["lock.acquire", "lock.release"]
    assert len(trace.events(primitive=second)) == 2
    assert {e["primitive_name"] for e in trace.events(thread="w")} == {"second", "w"}
    assert trace.events(thread=worker) == trace.events(thread=worker.ident)
    assert [e["event"] for e in trace.events("rlock.")] == ["rlock.acquire", "rlock.release"]
    path = tmp_path / "trace.jsonl"
    assert trace.to_jsonl(path) == len(trace)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == list(trace)


def test_pairing_checker_reports_violations() -> None:
    def event(name: str, token: int, seq: int, depth: int | None = None) -> dict[str, Any]:
        kind = "RLock" if name.startswith("rlock") else "Lock"
        outcome = "acquired" if name.endswith("acquire") else "released"
        found = {
            "event": name,
            "primitive_kind": kind,
            "primitive_id": 1,
            "seq": seq,
            "primitive_name": "x",
            "thread_name": f"t{token}",
            "thread_token": token,
            "file": "f.py",
            "line": seq,
            "outcome": outcome,
        }
        if depth is not None:
            found["depth"] = depth
        return found

    assert pairing_violations([event("lock.acquire", 1, 1), event("lock.acquire", 2, 2)]) == [
        "seq 2 lock.acquire of 'x' by 't2' at f.py:2: acquired while already held"
    ]
    assert "released while not held" in pairing_violations([event("lock.release", 1, 1)])[0]
    # A Lock may be released by another thread: a handoff is not a violation.
    assert pairing_violations([event("lock.acquire", 1, 1), event("lock.release", 2, 2)]) == []
    rlock = [event("rlock.acquire", 1, 1, 1), event("rlock.release", 2, 2, 0)]
    assert "does not own it" in pairing_violations(rlock)[0]
    wrong_depth = [event("rlock.acquire", 1, 1, 1), event("rlock.acquire", 1, 2, 3)]
    assert "recorded depth 3, expected 2" in pairing_violations(wrong_depth)[0]
    with tracedsync.record() as trace:
        first_lock = tracedsync.Lock()
        first_lock.acquire()
        released_by_other = threading.Thread(target=first_lock.release)
        released_by_other.start()
        released_by_other.join()
    trace.assert_pairing()  # a real handoff passes
    with pytest.raises(AssertionError, match="released while not held"):
        broken = tracedsync.record()
        broken._records = [trace._records[-1]]  # a release without its acquire
        broken.assert_pairing()


def test_teaching_programs_produce_exactly_the_expected_events() -> None:
    print_lock = tracedsync.Lock(name="print")
    counter_lock = tracedsync.RLock(name="counter")
    go = tracedsync.Event(name="go")
    gate = threading.Barrier(11)
    counter = {"value": 0}

    def worker() -> None:
        with print_lock:
            pass

    def increment() -> None:
        for _ in range(100):
            with counter_lock:
                counter["value"] += 1

    def waiter() -> None:
        gate.wait()
        go.wait()

    with tracedsync.record() as trace:
        workers = [tracedsync.Thread(target=worker) for _ in range(20)]
        incrementers = [tracedsync.Thread(target=increment) for _ in range(10)]
        waiters = [tracedsync.Thread(target=waiter) for _ in range(10)]
        for thread in workers + incrementers + waiters:
            thread.start()
        gate.wait()
        go.set()
        for thread in workers + incrementers + waiters:
            thread.join()
    counts = Counter(
        e["event"]
        for e in trace
        if e["event"] != "lock.acquire.blocked" and e["event"] != "rlock.acquire.blocked"
    )
    assert counts["thread.start"] == counts["thread.run"] == counts["thread.exit"] == 40
    assert counts["thread.join"] == 40
    assert len(trace.events("lock.acquire", primitive=print_lock)) == 20
    assert len(trace.events("lock.release", primitive=print_lock)) == 20
    assert len(trace.events("rlock.acquire", primitive=counter_lock)) == 1000
    assert len(trace.events("rlock.release", primitive=counter_lock)) == 1000
    assert counts["event.set"] == 1
    waits = trace.events("event.wait", primitive=go)
    assert len(waits) == 10 and all(e["flag"] for e in waits)
    assert counter["value"] == 1000
    trace.assert_pairing()


def test_events_render_through_structlog_at_debug(capfd: pytest.CaptureFixture[str]) -> None:
    lock = tracedsync.Lock(name="shown")
    tracedsync.configure(log_level="debug")
    with lock:
        pass
    tracedsync.configure(log_level="error")
    with lock:
        pass
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 2
    assert "[debug    ] lock.acquire" in err[0] and "primitive_name=shown" in err[0]
    assert "lock.release" in err[1] and "site='tests/test_events.py:" in err[1]


def test_json_log_format(capfd: pytest.CaptureFixture[str]) -> None:
    lock = tracedsync.Lock(name="json")
    tracedsync.configure(log_level="debug", log_format="json")
    with lock:
        pass
    tracedsync.configure(log_level="error")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["lock.acquire", "lock.release"]
    assert all(line["level"] == "debug" and line["primitive_name"] == "json" for line in lines)
    assert lines[0]["schema"] == 1
    with pytest.raises(ValueError, match="log_format"):
        tracedsync.configure(log_format="xml")


APP_WITH_STRUCTLOG = """
import structlog, tracedsync
seen = []
def keep(logger, method, event_dict):
    seen.append((method, event_dict["event"], event_dict.get("primitive_name")))
    raise structlog.DropEvent
structlog.configure(processors=[keep])
lock = tracedsync.Lock(name="app-lock")
with lock:
    pass
print("before opt-in:", seen)
tracedsync.configure(log_level="debug")
with lock:
    pass
print("after opt-in:", seen)
"""


def test_an_application_that_configured_structlog_gets_events_through_its_processors() -> None:
    result = run_python(APP_WITH_STRUCTLOG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "before opt-in: []",
        "after opt-in: [('debug', 'lock.acquire', 'app-lock'), "
        "('debug', 'lock.release', 'app-lock')]",
    ]


def test_an_application_running_threads_prints_nothing_extra() -> None:
    program = """
import tracedsync
lock = tracedsync.RLock(); event = tracedsync.Event(); condition = tracedsync.Condition()
def work():
    with lock, lock:
        pass
    with condition:
        condition.notify_all()
    event.wait(0.001)
threads = [tracedsync.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("done")
"""
    result = run_python(program)
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")


OFF_SWITCH = """
import threading, tracedsync
pairs = [
    (tracedsync.Lock(), threading.Lock()),
    (tracedsync.RLock(name="x"), threading.RLock()),
    (tracedsync.Condition(), threading.Condition()),
    (tracedsync.Semaphore(2), threading.Semaphore(2)),
    (tracedsync.BoundedSemaphore(), threading.BoundedSemaphore()),
    (tracedsync.Event(), threading.Event()),
    (tracedsync.Barrier(2), threading.Barrier(2)),
    (tracedsync.Thread(target=print), threading.Thread(target=print)),
    (tracedsync.Timer(1, print), threading.Timer(1, print)),
]
print(all(type(ours) is type(theirs) for ours, theirs in pairs), tracedsync.is_enabled())
"""


def test_off_switch_from_the_environment_returns_plain_threading_objects() -> None:
    result = run_python(OFF_SWITCH, env={"TRACEDSYNC": "off"})
    assert (result.stdout, result.stderr) == ("True False\n", "")
    result = run_python(OFF_SWITCH)
    assert result.stdout == "False True\n"


def test_off_switch_call_affects_only_objects_created_afterwards() -> None:
    before = tracedsync.Lock()
    tracedsync.disable()
    try:
        plain = tracedsync.Lock()
        assert type(plain) is type(threading.Lock())
        assert type(tracedsync.Condition(plain)) is threading.Condition

        class MyThread(tracedsync.Thread):
            pass

        assert isinstance(MyThread(), tracedsync.Thread)  # subclasses stay traced
    finally:
        tracedsync.enable()
    assert isinstance(before, tracedsync.Lock)
    assert isinstance(tracedsync.Lock(), tracedsync.Lock)


def _jsonl_program(ending: str) -> str:
    return f"""
import sys, threading, tracedsync
lock = tracedsync.Lock(name="file-lock")
def work():
    for _ in range(3000):
        with lock:
            pass
threads = [tracedsync.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
{ending}
"""


@pytest.mark.parametrize(
    ("ending", "returncode"),
    [
        ("pass", 0),
        ("sys.exit(3)", 3),
        ("raise RuntimeError('main died')", 1),
        (
            "t = tracedsync.Thread(target=lambda: 1 / 0, name='crasher')\nt.start(); t.join()",
            0,
        ),
    ],
)
def test_jsonl_file_sink_loses_no_event(tmp_path: Path, ending: str, returncode: int) -> None:
    path = tmp_path / "trace.jsonl"
    result = run_python(_jsonl_program(ending), env={"TRACEDSYNC_LOG_FILE": str(path)})
    assert result.returncode == returncode, result.stderr
    events = [json.loads(line) for line in path.read_text().splitlines()]
    names = Counter(e["event"] for e in events)
    assert names["lock.acquire"] == names["lock.release"] == 4 * 3000
    assert names["thread.exit"] == (5 if "crasher" in ending else 4)
    # Every sequence number from the first to the last is in the file once:
    # no event of the process was lost or written twice.
    assert sorted(e["seq"] for e in events) == list(range(1, len(events) + 1))
    if "crasher" in ending:
        crashed = [e for e in events if e["event"] == "thread.exit" and e["outcome"] == "raised"]
        assert crashed[0]["exception"] == "ZeroDivisionError: division by zero"


def test_configure_log_file(tmp_path: Path) -> None:
    path = tmp_path / "configured.jsonl"
    program = (
        "import tracedsync\n"
        f"tracedsync.configure(log_file={str(path)!r})\n"
        "lock = tracedsync.Lock()\n"
        "with lock:\n"
        "    pass\n"
    )
    result = run_python(program)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == [
        "lock.acquire",
        "lock.release",
    ]


class _RunsItself:
    """CPython's test_threading.test_no_refcycle_through_target: the target
    and its arguments refer to the object that holds the thread."""

    def __init__(self, should_raise: bool) -> None:
        self.should_raise = should_raise
        self.thread = tracedsync.Thread(target=self._run, args=(self,), kwargs={"again": self})
        self.thread.start()

    def _run(self, other: Any, again: Any) -> None:
        if self.should_raise:
            raise SystemExit


@pytest.mark.timeout(30)
@pytest.mark.parametrize("observing", [False, True])
@pytest.mark.parametrize("should_raise", [False, True])
def test_no_reference_cycle_through_the_target(
    should_raise: bool, observing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest's own hook keeps the exception (and so the frames): use threading's.
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    with tracedsync.record() if observing else contextlib.nullcontext():
        cyclic = _RunsItself(should_raise)
        weak = weakref.ref(cyclic)
        cyclic.thread.join()
        del cyclic
    assert weak() is None, "the thread keeps its target's objects alive through a cycle"


@pytest.mark.timeout(30)
def test_a_thread_ending_with_systemexit_exited_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)

    def leave() -> None:
        raise SystemExit(3)

    with tracedsync.record() as trace:
        thread = tracedsync.Thread(target=leave, name="leaving")
        thread.start()
        thread.join()
    (exit_event,) = trace.events("thread.exit")
    assert exit_event["outcome"] == "exited"
    assert exit_event["exception"] == "SystemExit: 3"
    assert thread._tracedsync_exception is None


@pytest.mark.timeout(60)
def test_the_time_spent_per_thread_forgets_threads_that_have_ended() -> None:
    # Bounded memory: _hooks.spent has an entry per thread tracedsync
    # charged; thread idents are reused, but nothing bounds how many a
    # long-running program's threads have.  Once the dictionary is large,
    # the entries of threads that have ended go as a new thread first records.
    ended = range(-1, -2 - _hooks.SPENT_PRUNE_MINIMUM, -1)  # no thread has these
    _hooks.spent.update(dict.fromkeys(ended, 1))
    lock = tracedsync.Lock()
    recorded = threading.Event()

    def work() -> None:
        with lock:
            pass
        recorded.set()

    with tracedsync.record() as trace:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert recorded.is_set() and trace.events()
    assert not any(ident in _hooks.spent for ident in ended)
    assert len(_hooks.spent) < _hooks.SPENT_PRUNE_MINIMUM
