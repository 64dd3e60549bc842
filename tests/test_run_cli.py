"""``tracedsync run``, ``report`` and ``timeline`` on real programs, in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import PATIENCE, wait_until
from tracedsync._cli.run import DEADLOCK_EXIT_STATUS
from tracedsync._cli.timeline import LOCKS_PROCESS_OFFSET

#: The example programs of the documentation.
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"

AB_BA = """
import threading
a = threading.Lock()
b = threading.Lock()
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
print("finished")
"""

SELF_REACQUIRE = """
import threading
lock = threading.Lock()
with lock:
    print("acquired once", flush=True)
    with lock:
        print("never printed")
"""

THREAD_RAISES = """
import threading

def work():
    raise ValueError("boom in a thread")

worker = threading.Thread(target=work, name="worker")
worker.start()
worker.join()
print("main carried on")
"""

QUEUE_PIPELINE = """
import queue
import threading

work = queue.Queue(maxsize=2)
done = []
results_lock = threading.Lock()

def producer():
    for item in range(300):
        work.put(item)
    for _ in range(2):
        work.put(None)

def consumer():
    while (item := work.get()) is not None:
        with results_lock:
            done.append(item)

threads = [threading.Thread(target=producer, name="producer")]
threads += [threading.Thread(target=consumer, name=f"consumer-{n}") for n in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("consumed", len(done), sum(done))
"""

EXECUTOR = """
import concurrent.futures
import threading

total_lock = threading.Lock()
total = 0

def add(value):
    global total
    with total_lock:
        total += value
    return value * value

with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    squares = list(pool.map(add, range(100)))
print("total", total, "squares", sum(squares))
"""

ARGUMENTS = """
import sys
print("argv", sys.argv[1:])
print("path0", sys.path[0])
print("main", __name__)
sys.exit(3)
"""

CONTENDED = """
import threading
import time

from tracedsync._waits import waits

lock = threading.Lock()
holding = threading.Event()
main = threading.get_ident()

def holder():
    with lock:
        holding.set()
        while getattr(waits.get(main), "primitive", None) is not lock:  # main blocks on it
            time.sleep(0.001)
        threading.Event().set()  # an instant event inside the hold

thread = threading.Thread(target=holder, name="holder")
thread.start()
holding.wait()
with lock:  # blocks until the holder, which waits for this, releases it
    pass
thread.join()
"""


def tracedsync_command(
    *arguments: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m tracedsync ARGUMENTS`` in ``cwd``, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "tracedsync", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=PATIENCE * 3,
        env={**os.environ, **(env or {})},
        check=False,
    )


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def trace_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_ab_ba_deadlock_is_reported_and_exits_with_the_deadlock_status(tmp_path: Path) -> None:
    write(tmp_path, "abba.py", AB_BA)
    started = time.monotonic()
    result = tracedsync_command("run", "--trace", "t.jsonl", "abba.py", cwd=tmp_path)
    assert time.monotonic() - started < PATIENCE
    assert result.returncode == DEADLOCK_EXIT_STATUS, result.stderr
    assert "finished" not in result.stdout
    assert "Found a deadlock: 2 threads wait for each other in a cycle" in result.stderr
    assert "thread 'one' waits for Lock 'Lock@abba.py:4#1' at abba.py:10 (in one)" in result.stderr
    assert "  deadlocks: 1" in result.stderr
    assert "Lock@abba.py:3#1  abba.py:3" in result.stderr  # the contention table
    events = trace_events(tmp_path / "t.jsonl")
    assert "deadlock.cycle" in {event["event"] for event in events}  # flushed before exiting


def test_continue_mode_reports_and_lets_the_threads_stay_blocked(tmp_path: Path) -> None:
    source = AB_BA.replace('name="one")', 'name="one", daemon=True)')
    source = source.replace('name="two")', 'name="two", daemon=True)')
    source = source.replace("    thread.join()", "    thread.join(timeout=0.5)")
    write(tmp_path, "abba.py", source.replace("finished", "main gave up waiting"))
    result = tracedsync_command("run", "--on-deadlock", "continue", "abba.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "main gave up waiting" in result.stdout
    assert "Found a deadlock: 2 threads wait for each other in a cycle" in result.stderr
    assert "  deadlocks: 1" in result.stderr and "DeadlockError" not in result.stderr


def test_raise_mode_raises_in_the_thread_closing_the_cycle(tmp_path: Path) -> None:
    write(tmp_path, "abba.py", AB_BA)
    result = tracedsync_command("run", "--on-deadlock", "raise", "abba.py", cwd=tmp_path)
    # raise: DeadlockError in the thread closing the cycle, which dies; the
    # other thread then gets its lock and the program finishes.
    assert result.returncode == 0, result.stderr
    assert "finished" in result.stdout
    assert "tracedsync.DeadlockError" in result.stderr
    assert "  deadlocks: 1" in result.stderr and "threads that raised: 1" in result.stderr


def test_single_thread_self_reacquire_exits_with_the_deadlock_status(tmp_path: Path) -> None:
    write(tmp_path, "teach.py", SELF_REACQUIRE)
    result = tracedsync_command("run", "teach.py", cwd=tmp_path)
    assert result.returncode == DEADLOCK_EXIT_STATUS, result.stderr
    assert result.stdout == "acquired once\n"
    # One report (the finding, as the other deadlocks are), no traceback of
    # the same, and one summary line.
    assert "acquired again at: teach.py:6 (in <module>)" in result.stderr
    assert "Traceback" not in result.stderr
    assert "no other thread exists that could release it" in result.stderr
    assert result.stderr.count("acquired again at") == 1
    assert "  deadlocks: 1" in result.stderr


def test_a_hang_on_a_lock_tracedsync_cannot_see_ends_after_the_hang_timeout(
    tmp_path: Path,
) -> None:
    # The program docs/tracing-programs.md shows, run as the page says.
    shutil.copy(EXAMPLES / "hidden.py", tmp_path / "hidden.py")
    result = tracedsync_command("run", "--hang-timeout", "1", "hidden.py", cwd=tmp_path)
    assert result.returncode == DEADLOCK_EXIT_STATUS, result.stderr
    assert "Hang (--hang-timeout 1 s: a lock acquire blocked that long)" in result.stderr
    assert "it is held by thread 'one', acquired at hidden.py:12 (in one)" in result.stderr
    assert "'one': hidden.py:14 (in one)" in result.stderr  # every thread's stack


def test_every_thread_blocked_on_events_is_a_hang(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.py",
        """
        import threading
        never = threading.Event()
        worker = threading.Thread(target=never.wait, name="waiter")
        worker.start()
        never.wait()
        """,
    )
    result = tracedsync_command("run", "--hang-timeout", "0.5", "events.py", cwd=tmp_path)
    assert result.returncode == DEADLOCK_EXIT_STATUS, result.stderr
    assert "every thread is blocked in a wait without timeout" in result.stderr


def test_a_long_wait_while_another_thread_works_is_reported_not_fatal(tmp_path: Path) -> None:
    write(
        tmp_path,
        "idle.py",
        """
        import threading
        import time
        go = threading.Event()
        seen = []
        worker = threading.Thread(target=lambda: seen.append(go.wait()), name="idle")
        worker.start()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            pass  # main is busy, not blocked: the idle worker is not a hang
        go.set()
        worker.join()
        print("idle worker woke:", seen)
        """,
    )
    result = tracedsync_command("run", "--hang-timeout", "0.5", "idle.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "idle worker woke: [True]" in result.stdout
    assert "Long wait: thread 'idle' has waited" in result.stderr
    assert "long waits: 1" in result.stderr


def test_an_exception_in_a_thread_is_summarised(tmp_path: Path) -> None:
    write(tmp_path, "raises.py", THREAD_RAISES)
    result = tracedsync_command("run", "raises.py", cwd=tmp_path)
    assert result.returncode == 0
    assert "main carried on" in result.stdout
    assert "ValueError: boom in a thread" in result.stderr  # threading's own report
    assert "threads that raised: 1" in result.stderr
    assert "thread 'worker' raised ValueError: boom in a thread" in result.stderr


def test_a_thread_ending_with_systemexit_is_not_summarised_as_raised(tmp_path: Path) -> None:
    source = THREAD_RAISES.replace('raise ValueError("boom in a thread")', "raise SystemExit(0)")
    write(tmp_path, "leaves.py", source)
    result = tracedsync_command("run", "leaves.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "main carried on" in result.stdout
    assert "threads that raised" not in result.stderr
    assert "SystemExit" not in result.stderr  # threading is quiet about it too


def test_queue_producers_and_consumers_are_traced(tmp_path: Path) -> None:
    write(tmp_path, "pipeline.py", QUEUE_PIPELINE)
    result = tracedsync_command(
        "run", "--trace", "t.jsonl", "--timeline", "t.json", "pipeline.py", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "consumed 300 44850" in result.stdout
    assert "  deadlocks: none" in result.stderr
    queue_row = next(line for line in result.stderr.splitlines() if "queue.py:" in line)
    assert int(queue_row.split()[2].replace(",", "")) >= 600  # every put and get
    events = trace_events(tmp_path / "t.jsonl")
    names = {event["event"] for event in events}
    assert {"condition.wait", "condition.notify", "thread.start", "lock.acquire"} <= names
    timeline = json.loads((tmp_path / "t.json").read_text())
    assert_valid_timeline(timeline)
    threads = {
        event["args"]["name"]
        for event in timeline["traceEvents"]
        if event["ph"] == "M" and event["name"] == "thread_name" and event["pid"] < 1 << 30
    }
    assert {"producer", "consumer-0", "consumer-1", "MainThread"} <= threads


def test_thread_pool_executor_is_traced(tmp_path: Path) -> None:
    write(tmp_path, "pool.py", EXECUTOR)
    result = tracedsync_command("run", "--trace", "t.jsonl", "pool.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "total 4950 squares 328350" in result.stdout
    # The run's own table shows the 10 locks with the most waiting, which may
    # all be the executor's; the saved trace's full table has every lock.
    report = tracedsync_command("report", "--top", "1000", "t.jsonl", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    table = (report.stdout + report.stderr).split("contention", 1)[1]
    pool_row = next(line for line in table.splitlines() if "Lock@pool.py:5" in line)
    assert pool_row.split()[2] == "100"  # one acquisition per task
    threads = {event["thread_name"] for event in trace_events(tmp_path / "t.jsonl")}
    assert any(name.startswith("ThreadPoolExecutor-") for name in threads)


def test_arguments_path_and_exit_status_pass_through(tmp_path: Path) -> None:
    script_dir = tmp_path / "app"
    script_dir.mkdir()
    write(script_dir, "args.py", ARGUMENTS)
    result = tracedsync_command(
        "run", "app/args.py", "--trace", "not-ours", "-m", "x", cwd=tmp_path
    )
    assert result.returncode == 3
    assert "argv ['--trace', 'not-ours', '-m', 'x']" in result.stdout
    assert f"path0 {script_dir}" in result.stdout
    assert "main __main__" in result.stdout
    assert not (tmp_path / "not-ours").exists()


def test_run_a_module_with_dash_m(tmp_path: Path) -> None:
    package = tmp_path / "tool"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package, "__main__.py", ARGUMENTS)
    result = tracedsync_command("run", "-m", "tool", "--flag", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "argv ['--flag']" in result.stdout
    assert "main __main__" in result.stdout


def test_report_reprints_the_summary_of_a_saved_trace(tmp_path: Path) -> None:
    write(tmp_path, "abba.py", AB_BA)
    tracedsync_command("run", "--trace", "t.jsonl", "abba.py", cwd=tmp_path)
    result = tracedsync_command("report", "t.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  deadlocks: 1" in result.stdout
    # report shows the whole finding, run only its first line
    assert "held by thread 'two', acquired at abba.py:14 (in two)" in result.stdout
    assert "Lock@abba.py:3#1  abba.py:3" in result.stdout


def test_timeline_has_waits_holds_instants_and_flows(tmp_path: Path) -> None:
    write(tmp_path, "contended.py", CONTENDED)
    result = tracedsync_command("run", "--trace", "t.jsonl", "contended.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    converted = tracedsync_command("timeline", "t.jsonl", "-o", "out.json", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    timeline = json.loads((tmp_path / "out.json").read_text())
    assert_valid_timeline(timeline)
    events = timeline["traceEvents"]
    waits = [e for e in events if e["ph"] == "X" and e["name"].startswith("wait Lock")]
    holds = [e for e in events if e["ph"] == "X" and e["name"] == "held by 'holder'"]
    assert waits and holds
    assert all(hold["pid"] >= LOCKS_PROCESS_OFFSET for hold in holds)
    assert any(e["ph"] == "i" and e["name"].startswith("event.set") for e in events)
    (start,) = [e for e in events if e["ph"] == "s"]
    (finish,) = [e for e in events if e["ph"] == "f" and e["id"] == start["id"]]
    # from inside the holder's hold, to the main thread's wait it ended
    hold = holds[0]
    assert hold["ts"] <= start["ts"] <= hold["ts"] + hold["dur"]
    (wait,) = [w for w in waits if w["ts"] <= finish["ts"] <= w["ts"] + w["dur"]]
    assert (wait["pid"], wait["tid"]) == (finish["pid"], finish["tid"])


def test_a_deadlocked_wait_shows_as_unfinished_in_the_timeline(tmp_path: Path) -> None:
    write(tmp_path, "abba.py", AB_BA)
    result = tracedsync_command("run", "--timeline", "t.json", "abba.py", cwd=tmp_path)
    assert result.returncode == DEADLOCK_EXIT_STATUS
    timeline = json.loads((tmp_path / "t.json").read_text())
    assert_valid_timeline(timeline)
    events = timeline["traceEvents"]
    assert any(e["ph"] == "X" and e["name"].endswith("(never ended)") for e in events)
    assert any(e["ph"] == "i" and e["name"].startswith("deadlock.cycle") for e in events)


def assert_valid_timeline(timeline: dict[str, Any]) -> None:
    """The structure Chrome Trace Event Format readers (Perfetto) require."""
    assert set(timeline) == {"displayTimeUnit", "traceEvents"}
    for event in timeline["traceEvents"]:
        assert event["ph"] in {"M", "X", "i", "s", "f"}
        assert isinstance(event["pid"], int)
        if event["ph"] != "M" or event["name"].startswith("thread"):
            assert isinstance(event["tid"], int)
        if event["ph"] == "X":
            assert event["ts"] >= 0 and event["dur"] > 0
        if event["ph"] in {"s", "f"}:
            assert isinstance(event["id"], int)


@pytest.mark.parametrize(
    ("content", "messages"),
    [
        (
            '{"seq": 1}\nnot json\n',
            [
                "t.jsonl:1: not a tracedsync event (no 'schema' field)",
                "t.jsonl:2: not valid JSON (Expecting value)",
            ],
        ),
        ("", ["t.jsonl: the trace is empty: no events"]),
        ("\n\n", ["t.jsonl: the trace is empty (only blank lines): no events"]),
    ],
)
def test_report_of_files_without_events(tmp_path: Path, content: str, messages: list[str]) -> None:
    (tmp_path / "t.jsonl").write_text(content)
    result = tracedsync_command("report", "t.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"tracedsync report: error: {m}" for m in messages]


def test_malformed_and_truncated_traces_give_one_line_naming_the_line(tmp_path: Path) -> None:
    write(tmp_path, "pool.py", EXECUTOR)
    tracedsync_command("run", "--trace", "t.jsonl", "pool.py", cwd=tmp_path)
    lines = (tmp_path / "t.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "bad.jsonl").write_text("".join(lines[:5]) + "{oops\n" + "".join(lines[5:]))
    (tmp_path / "cut.jsonl").write_text("".join(lines[:9]) + lines[9][:20])
    for command in (("report",), ("timeline", "-o", "out.json")):
        bad = tracedsync_command(command[0], "bad.jsonl", *command[1:], cwd=tmp_path)
        assert bad.returncode == 2
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
        assert f"tracedsync {command[0]}: error: bad.jsonl:6: not valid JSON" in bad.stderr
        cut = tracedsync_command(command[0], "cut.jsonl", *command[1:], cwd=tmp_path)
        assert cut.returncode == 2
        assert f"tracedsync {command[0]}: error: cut.jsonl:10: truncated" in cut.stderr
    missing = tracedsync_command("report", "missing.jsonl", cwd=tmp_path)
    assert missing.returncode == 2
    assert "missing.jsonl: cannot read the trace: No such file or directory" in missing.stderr


def test_missing_script_is_a_clear_error(tmp_path: Path) -> None:
    result = tracedsync_command("run", "nowhere.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "tracedsync run: no such file: nowhere.py"
    nothing = tracedsync_command("run", cwd=tmp_path)
    assert nothing.returncode == 2 and "give a script to run" in nothing.stderr


def test_an_uncaught_exception_in_main_exits_1_with_the_programs_traceback(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        "fails.py",
        """
        def main():
            raise KeyError("missing")

        main()
        """,
    )
    result = tracedsync_command("run", "fails.py", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert 'File "fails.py", line 5, in <module>' in result.stderr
    assert "KeyError: 'missing'" in result.stderr
    assert "runpy" not in result.stderr and "tracedsync/" not in result.stderr
    assert "tracedsync: 0 events" in result.stderr  # the summary still comes


def test_the_console_script_runs_programs_too(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("tracedsync")
    if not script.exists():  # pragma: no cover - the test venvs install it
        pytest.skip("the tracedsync console script is not installed next to this Python")
    write(tmp_path, "args.py", ARGUMENTS)
    result = subprocess.run(
        [str(script), "run", "args.py", "one", "--two"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=PATIENCE * 3,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "argv ['one', '--two']" in result.stdout
    assert f"path0 {tmp_path}" in result.stdout


def test_the_documented_explore_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "explore_counter.py", tmp_path / "counter.py")
    result = subprocess.run(
        [sys.executable, "counter.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=PATIENCE * 3,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "assertion in run 14 (exhaustive (iterative preemption bounding up to 1, at bound 1)), "
        "1 preemption:"
    )
    assert "AssertionError: lost an update: value is 1" in result.stdout
    assert "#1 'worker-1': yield_point at counter.py:12 (in increment)" in result.stdout
    assert result.stdout.rstrip().endswith("replayed: assertion True")


def _wheel_like_distribution(site: Path) -> None:
    """What a wheel install of tracedsync looks like to pytest: a distribution
    with a ``pytest11`` entry point whose files include ``tracedsync/__init__.py``
    (the editable install of the test environment lists no package files)."""
    info = site / "tracedsync_wheel-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tracedsync-wheel\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pytest11]\nwheel_like = wheel_like_plugin\n")
    (info / "RECORD").write_text(
        "tracedsync/__init__.py,,\n_tracedsync_pytestplugin.py,,\n"
        "tracedsync_wheel-0.1.dist-info/RECORD,,\n"
    )
    (site / "wheel_like_plugin.py").write_text('"""A pytest11 plugin that does nothing."""\n')


@pytest.mark.timeout(90)
def test_run_pytest_on_a_suite_that_makes_warnings_errors(tmp_path: Path) -> None:
    _wheel_like_distribution(tmp_path / "site")
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    write(project, "test_one.py", "def test_one():\n    assert 1 + 1 == 2\n")
    result = tracedsync_command(
        "run",
        "--no-summary",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        cwd=project,
        env={"PYTHONPATH": str(tmp_path / "site")},
    )
    assert "PytestAssertRewriteWarning" not in result.stderr + result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


DEADLOCKING_TEST = """
import multiprocessing
import threading
import time

def test_deadlocks(tmp_path_factory):
    child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(600,))
    child.start()
    with open({pid_file!r}, "w") as pid_file:
        pid_file.write(str(child.pid))
    a = threading.Lock()
    b = threading.Lock()
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
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(90)
def test_a_deadlock_under_run_pytest_is_reported_despite_capture(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    write(tmp_path, "test_deadlock.py", DEADLOCKING_TEST.format(pid_file=str(pid_file)))
    result = tracedsync_command(
        "run", "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_deadlock.py", cwd=tmp_path
    )
    child = int(pid_file.read_text())
    try:
        assert result.returncode == DEADLOCK_EXIT_STATUS, result.stdout + result.stderr
        # pytest captured fd 2 when the finding came; the report is not lost with it.
        assert "Found a deadlock: 2 threads wait for each other in a cycle" in result.stderr
        assert "  deadlocks: 1" in result.stderr  # the summary
        wait_until(lambda: not _alive(child), "the multiprocessing child is terminated")
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.timeout(30)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # fake_exit
def test_a_second_finding_waits_for_the_first_ones_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from tracedsync._cli import run as _run

    session = _run._Session(_run.RunOptions(target="program.py"))
    in_finish, finish_may_end = threading.Event(), threading.Event()
    steps: list[str] = []

    def slow_finish() -> None:
        steps.append("finish started")
        in_finish.set()
        assert finish_may_end.wait(PATIENCE)
        steps.append("finish ended")

    def fake_exit(status: int) -> None:
        steps.append(f"exit {status}")
        raise SystemExit  # ends the calling thread quietly

    monkeypatch.setattr(session, "finish", slow_finish)
    monkeypatch.setattr(_run.os, "_exit", fake_exit)
    first = threading.Thread(target=session.exit_for_deadlock, daemon=True)
    second = threading.Thread(target=session.exit_for_deadlock, daemon=True)
    first.start()
    assert in_finish.wait(PATIENCE)
    second.start()
    wait_until(  # the second is blocked in exit_for_deadlock, not past it
        lambda: (
            sys._current_frames().get(second.ident or 0, None) is not None
            and sys._current_frames()[second.ident or 0].f_code.co_name == "exit_for_deadlock"
        ),
        "the second finding's thread waits",
    )
    finish_may_end.set()
    first.join(PATIENCE)
    assert steps == ["finish started", "finish ended", f"exit {_run.DEADLOCK_EXIT_STATUS}"]
    assert second.is_alive()  # still waiting: the first one's exit ends the process
    # Let it go: a thread left blocked outside tracedsync would count as a
    # thread that can still make progress for every later test of the suite.
    session._exiting.release()
    second.join(PATIENCE)
    assert not second.is_alive()
