"""``tracedsync run`` traces the Python processes the program starts
(issue 14, part 6): ``multiprocessing`` children of every start method,
``subprocess`` Pythons and their children, each into its own trace, merged
by ``run``'s summary, ``report`` and ``timeline``."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers import PATIENCE
from tracedsync._cli.run import DEADLOCK_EXIT_STATUS

#: A child that takes and releases a lock ``pairs`` times, then (``deadlock``)
#: runs into an AB/BA deadlock between two threads; its events must reach its
#: own trace, and its deadlock the parent's summary.
MULTIPROCESSING = """
import multiprocessing, sys, threading

def child(pairs, deadlock):
    lock = threading.Lock()
    for _ in range(pairs):
        with lock:
            pass
    if not deadlock:
        return
    a, b = threading.Lock(), threading.Lock()
    both_hold_one = threading.Barrier(2)

    def one():
        with a:
            both_hold_one.wait()
            with b:
                pass

    def two():
        with b:
            both_hold_one.wait()
            with a:
                pass

    threads = [threading.Thread(target=one, name="one"), threading.Thread(target=two, name="two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    for deadlock in sys.argv[2:]:
        process = context.Process(target=child, args=(300, deadlock == "deadlock"))
        process.start()
        process.join(60)
        print(process.pid, process.exitcode, flush=True)
"""

METHODS = [
    pytest.param(
        method,
        marks=pytest.mark.skipif(
            method not in multiprocessing.get_all_start_methods(), reason=f"no {method} here"
        ),
    )
    for method in ("fork", "spawn", "forkserver")
]


def tracedsync_run(
    *arguments: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracedsync", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=PATIENCE * 3,
        env={**os.environ, **(env or {})},
        check=False,
    )


def events_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def child_trace(directory: Path, pid: int) -> Path:
    return directory / f"t.pid-{pid}.jsonl"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_a_deadlock_in_a_multiprocessing_child_is_reported(tmp_path: Path, method: str) -> None:
    (tmp_path / "parent.py").write_text(MULTIPROCESSING)
    stale = child_trace(tmp_path, 1)
    stale.write_text("an earlier run's child\n")
    ends = ["deadlock"] if method != "fork" else ["exit", "deadlock"]
    result = tracedsync_run("run", "--trace", "t.jsonl", "parent.py", method, *ends, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    children = [
        (int(pid), int(code)) for pid, code in zip(*[iter(result.stdout.split())] * 2, strict=True)
    ]
    deadlocked_pid, status = children[-1]
    assert status == DEADLOCK_EXIT_STATUS, result.stderr
    # Reported as it happened, on the child's stderr (here the run's) ...
    assert "Found a deadlock: 2 threads wait for each other in a cycle" in result.stderr
    assert f"child process {deadlocked_pid} stopped (exit status 86)" in result.stderr
    # ... and in the run's summary, naming the process.
    assert "deadlocks: none" not in result.stderr
    assert f"    [process {deadlocked_pid}] Found a deadlock: 2 threads" in result.stderr
    assert not stale.exists()
    # Each process its own trace; the parent's holds none of a child's events.
    parent_pids = {event["pid"] for event in events_of(tmp_path / "t.jsonl")}
    assert not parent_pids & {pid for pid, _ in children}
    for pid, _ in children:
        events = events_of(child_trace(tmp_path, pid))
        assert {event["pid"] for event in events} == {pid}
        counts = Counter(event["event"] for event in events)
        # Every event of the child up to its end, the last batch included.
        assert counts["lock.release"] >= 300
        seqs = sorted(event["seq"] for event in events)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert "deadlock.cycle" in {event["event"] for event in events}
    if method == "fork":  # the child that ended normally (os._exit) wrote its last batch
        normal = events_of(child_trace(tmp_path, children[0][0]))
        assert Counter(event["event"] for event in normal) == {
            "lock.acquire": 300,
            "lock.release": 300,
        }


SUBPROCESSES = """
import os, subprocess, sys, threading

def python(code, **options):
    return subprocess.run([sys.executable, "-c", code], check=False, **options).returncode

lock = threading.Lock()
with lock:
    pass
# A self re-acquire in a subprocess Python, its stderr captured by the program.
captured = subprocess.run(
    [sys.executable, "-c", "import threading\\nl = threading.Lock()\\nl.acquire()\\nl.acquire()"],
    capture_output=True, text=True, check=False,
)
print("self-deadlock", captured.returncode, "re-acquired" in captured.stderr,
      "_blocking.py" in captured.stderr)
# Another interpreter of the same environment, which starts a grandchild.
sibling = os.path.join(os.path.dirname(sys.executable), "python3")
interpreter = sibling if os.path.exists(sibling) else sys.executable
grandchild = (
    "import subprocess, sys, threading; e = threading.Event(); e.set(); "
    "print('grandchild', subprocess.run([sys.executable, '-c', "
    "'import os, threading; s = threading.Semaphore(); s.acquire(); s.release(); "
    "print(\\\\'pid\\\\', os.getpid())']).returncode)"
)
print("child", subprocess.run([interpreter, "-c", grandchild], check=False).returncode)
# Not traced: TRACEDSYNC=off.
off = "import os, threading; l = threading.Lock(); l.acquire(); print('off', os.getpid())"
python(off, env={**os.environ, "TRACEDSYNC": "off"})
"""


@pytest.mark.timeout(120)
def test_subprocess_pythons_are_traced_and_merged_by_report_and_timeline(tmp_path: Path) -> None:
    (tmp_path / "parent.py").write_text(textwrap.dedent(SUBPROCESSES))
    result = tracedsync_run(
        "run",
        "--trace",
        "t.jsonl",
        "--timeline",
        "run-timeline.json",
        "--fail-on",
        "deadlock",
        "parent.py",
        cwd=tmp_path,
    )
    assert result.returncode == 87, result.stderr  # --fail-on counts the children's findings
    lines = result.stdout.splitlines()
    # Reported on the child's own stderr, its traceback without tracedsync's frames.
    assert "self-deadlock 86 True False" in lines
    assert "grandchild 0" in lines and "child 0" in lines
    grandchild_pid = int(next(line.split()[1] for line in lines if line.startswith("pid ")))
    off_pid = int(next(line.split()[1] for line in lines if line.startswith("off ")))
    traces = sorted(path.name for path in tmp_path.glob("t.pid-*.jsonl"))
    assert len(traces) == 3, traces  # the child, the sibling interpreter, the grandchild
    assert f"t.pid-{off_pid}.jsonl" not in traces
    semaphore = events_of(child_trace(tmp_path, grandchild_pid))
    assert "semaphore.acquire" in {event["event"] for event in semaphore}
    # The run's summary counts every process and the child's deadlock.
    assert "events from 4 threads in 4 processes" in result.stderr
    assert "deadlocks: 1" in result.stderr
    assert "] Lock 'Lock@<string>:2#1' re-acquired by thread 'MainThread'" in result.stderr

    report = tracedsync_run("report", "t.jsonl", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "in 4 processes" in report.stdout
    assert "  deadlocks: 1\n    [process " in report.stdout
    assert "Lock@<string>:2" in report.stdout and "Semaphore@<string>:1" in report.stdout

    converted = tracedsync_run("timeline", "t.jsonl", "-o", "timeline.json", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    for name in ("timeline.json", "run-timeline.json"):
        timeline = json.loads((tmp_path / name).read_text())["traceEvents"]
        processes = {
            event["pid"]
            for event in timeline
            if event.get("name") == "process_name" and event["args"]["name"].startswith("threads")
        }
        assert len(processes) == 4 and grandchild_pid in processes  # a track per process
        assert min(event["ts"] for event in timeline if "ts" in event) >= 0


@pytest.mark.timeout(60)
def test_a_childs_own_sitecustomize_still_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import threading\nMARK = 'customised'\n")
    (tmp_path / "parent.py").write_text(
        "import subprocess, sys\n"
        "code = 'import sitecustomize, sys, threading; print(sitecustomize.MARK, "
        'any("_child_hook" in entry for entry in sys.path)); threading.Lock().acquire()\'\n'
        "subprocess.run([sys.executable, '-c', code], check=True)\n"
    )
    result = tracedsync_run(
        "run", "--trace", "t.jsonl", "parent.py", cwd=tmp_path, env={"PYTHONPATH": str(site)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["customised False"]
    (child,) = tmp_path.glob("t.pid-*.jsonl")
    assert "lock.acquire" in {event["event"] for event in events_of(child)}


@pytest.mark.timeout(60)
def test_nothing_changes_without_children_or_without_run(tmp_path: Path) -> None:
    """A guard: the children's temporary directory is removed; a plain
    ``import tracedsync`` passes nothing to children."""
    (tmp_path / "alone.py").write_text(
        "import os, threading\n"
        "with threading.Lock():\n"
        "    print(os.environ.get('TRACEDSYNC_RUN') is not None)\n"
    )
    # A temporary directory of the run's own: another run on the machine (a
    # parallel test session) may have its own in the system's at the time.
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    program = tmp_path / "program"
    program.mkdir()
    (tmp_path / "alone.py").rename(program / "alone.py")
    result = tracedsync_run(
        "run", "--timeline", "tl.json", "alone.py", cwd=program, env={"TMPDIR": str(temporary)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n"
    assert sorted(path.name for path in program.iterdir()) == ["alone.py", "tl.json"]
    assert list(temporary.iterdir()) == []
    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, tracedsync; tracedsync.patch(); "
            "print(os.environ.get('TRACEDSYNC_RUN'), os.environ.get('PYTHONPATH'))",
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        check=False,
    )
    assert plain.stdout == "None None\n", plain.stderr


#: Whether a forked child keeps ``run``'s SIGTERM handler, and so writes its
#: last events when terminated: not on 3.14+, where the handler often never
#: ran in it (see ``run._default_sigterm_in_forked_child``).
FORK_CHILDREN_KEEP_THE_HANDLER = sys.version_info < (3, 14)

TERMINATED = """
import multiprocessing, threading

def child(ready):
    lock = threading.Lock()
    for _ in range(300):
        with lock:
            pass
    ready.set()
    threading.Event().wait()  # until terminated

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    process = context.Process(target=child, args=(ready,))
    process.start()
    assert ready.wait(60)
    process.terminate()
    process.join(60)
    print(process.pid, process.exitcode)
"""


@pytest.mark.timeout(60)
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_terminated_child_writes_its_last_events(tmp_path: Path) -> None:
    (tmp_path / "parent.py").write_text(TERMINATED)
    result = tracedsync_run("run", "--trace", "t.jsonl", "parent.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pid, status = map(int, result.stdout.split())
    assert status == -15  # it still dies of the SIGTERM
    if FORK_CHILDREN_KEEP_THE_HANDLER:
        counts = Counter(event["event"] for event in events_of(child_trace(tmp_path, pid)))
        assert counts["lock.acquire"] == counts["lock.release"] == 300


@pytest.mark.timeout(60)
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_terminated_child_blocked_where_tracedsync_cannot_see_dies_of_it(
    tmp_path: Path,
) -> None:
    """The child inherits ``run``'s SIGTERM handler; blocked in a raw
    ``_thread`` lock (no traced wait to interrupt), it still runs it and
    dies (on 3.14+, where it often did not, it has no handler and dies of
    the signal: 27 of 40 such children survived on 3.15 before)."""
    blocked_raw = "import _thread; raw = _thread.allocate_lock(); raw.acquire(); raw.acquire()"
    program = TERMINATED.replace("threading.Event().wait()", blocked_raw)
    assert program != TERMINATED
    (tmp_path / "parent.py").write_text(program)
    result = tracedsync_run("run", "--trace", "t.jsonl", "parent.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pid, status = map(int, result.stdout.split())
    assert status == -15
    if FORK_CHILDREN_KEEP_THE_HANDLER:
        counts = Counter(event["event"] for event in events_of(child_trace(tmp_path, pid)))
        assert counts["lock.acquire"] == counts["lock.release"] == 300


TERMINATED_AT_ONCE = """
import multiprocessing, os, sys, time

if __name__ == "__main__":
    # One CPU for the run and its children: a child just forked runs after
    # its parent, so terminate() reaches it before its interpreter is ready.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    survived = []
    for method in sys.argv[1:]:
        context = multiprocessing.get_context(method)
        for attempt in range(10):
            process = context.Process(target=time.sleep, args=(60,))
            process.start()
            process.terminate()
            process.join(5)
            if process.exitcode != -15:
                survived.append((method, attempt, process.exitcode))
                process.kill()
                process.join()
    print(survived)
"""


@pytest.mark.timeout(120)
def test_a_child_terminated_as_soon_as_it_is_forked_dies_of_it(tmp_path: Path) -> None:
    """``run``'s SIGTERM handler is inherited; CPython drops a signal that
    reaches a child before its interpreter re-initialised after the fork,
    so without care a pool worker killed at once ran on (4 of 10
    ``forkserver`` children before the fix; CPython 3.10's
    ``test_killed_child`` failed under ``run``)."""
    methods = [m for m in ("fork", "forkserver") if m in multiprocessing.get_all_start_methods()]
    if not methods:
        pytest.skip("no fork")
    (tmp_path / "parent.py").write_text(TERMINATED_AT_ONCE)
    result = tracedsync_run("run", "--no-summary", "parent.py", *methods, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n", result.stdout


@pytest.mark.timeout(60)
def test_a_child_running_tracedsync_run_is_a_run_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "inner.py").write_text(
        "import threading\n"
        "lock = threading.Lock()\n"
        "def twice():\n"
        "    with lock:\n"
        "        lock.acquire()\n"
        "worker = threading.Thread(target=twice)\n"
        "worker.start()\n"
        "worker.join()\n"
    )
    (tmp_path / "outer.py").write_text(
        "import subprocess, sys\n"
        "inner = [sys.executable, '-m', 'tracedsync', 'run', '--trace', 'inner.jsonl']\n"
        "inner.append('inner.py')\n"
        "done = subprocess.run(inner, capture_output=True, text=True, check=False)\n"
        "print(done.returncode)\n"
        "sys.stderr.write(done.stderr)\n"
    )
    result = tracedsync_run("run", "--trace", "t.jsonl", "outer.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{DEADLOCK_EXIT_STATUS}\n"
    # The inner run's own summary, then the outer's, which the inner run's
    # events are not part of.
    inner, _, outer = result.stderr.partition("tracedsync: trace written to inner.jsonl")
    assert "  deadlocks: 1\n" in inner and "child process" not in inner
    assert "deadlocks: none" in outer
    assert not list(tmp_path.glob("t.pid-*.jsonl"))


@pytest.mark.timeout(10)
def test_child_trace_names_never_reuse_a_file(tmp_path: Path) -> None:
    from tracedsync._cli.children import child_trace as name_of
    from tracedsync._cli.children import child_traces, run_traces

    trace = str(tmp_path / "t.jsonl")
    first = name_of(trace, 42)
    assert first == str(tmp_path / "t.pid-42.jsonl")
    Path(first).write_text('{"time_ns": 5}\n')
    second = name_of(trace, 42)  # a later process with the same pid
    assert second == str(tmp_path / "t.pid-42-2.jsonl")
    Path(second).write_text('{"time_ns": 3}\n')
    for other in ("t.pid-x.jsonl", "t.pid-7.json", "u.pid-7.jsonl", "t.jsonl"):
        (tmp_path / other).write_text('{"time_ns": 1}\n')
    assert child_traces(trace) == [first, second]
    assert run_traces(trace) == [trace, second, first]  # by first event


@pytest.mark.timeout(60)
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_under_tracedsync_off_a_forked_child_traces_and_prints_nothing(tmp_path: Path) -> None:
    (tmp_path / "parent.py").write_text(TERMINATED)
    result = tracedsync_run(
        "run", "--trace", "t.jsonl", "parent.py", cwd=tmp_path, env={"TRACEDSYNC": "off"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "-15"
    assert result.stderr.count("TRACEDSYNC=off: nothing was traced or checked") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["parent.py", "t.jsonl"]
