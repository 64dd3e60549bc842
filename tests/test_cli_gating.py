"""The command line as CI uses it: ``--version``, ``--fail-on``, errors that
must be one line before the program starts, ``TRACEDSYNC=off``, a bad
``TRACEDSYNC_LOG_FILE`` and ``SIGTERM`` under ``run``.  Each in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import PATIENCE, process_sleeps_in_a_wait, wait_until
from test_run_cli import tracedsync_command, write
from tracedsync import _accel
from tracedsync._cli.main import FAIL_ON_EXIT_STATUS

pytestmark = pytest.mark.timeout(PATIENCE * 6)

#: A program with one lock-order inversion and no deadlock.
INVERSION = """
import threading
a = threading.Lock()
b = threading.Lock()
with a, b:
    pass
with b, a:
    pass
print("done")
"""


def test_version_names_the_implementation(tmp_path: Path) -> None:
    result = tracedsync_command("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("tracedsync ")
    assert f"({_accel.describe()}, Python " in result.stdout
    forced = tracedsync_command("--version", cwd=tmp_path, env={"TRACEDSYNC_IMPL": "python"})
    assert "(pure Python implementation, Python " in forced.stdout


def test_fail_on_gates_run_and_report_on_the_kinds_named(tmp_path: Path) -> None:
    write(tmp_path, "inversion.py", INVERSION)
    plain = tracedsync_command("run", "inversion.py", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    other = tracedsync_command("run", "--fail-on=deadlock,race", "inversion.py", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    gated = tracedsync_command(
        "run", "--fail-on", "inversion", "--trace", "t.jsonl", "inversion.py", cwd=tmp_path
    )
    assert gated.returncode == FAIL_ON_EXIT_STATUS, gated.stderr
    assert gated.stdout == "done\n"
    assert "tracedsync run: failing (--fail-on): 1 inversion" in gated.stderr
    report = tracedsync_command("report", "--fail-on=deadlock,inversion", "t.jsonl", cwd=tmp_path)
    assert report.returncode == FAIL_ON_EXIT_STATUS
    assert "tracedsync report: failing (--fail-on): 1 inversion" in report.stderr
    assert tracedsync_command("report", "--fail-on=race", "t.jsonl", cwd=tmp_path).returncode == 0
    unknown = tracedsync_command("run", "--fail-on=inversions", "inversion.py", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown kind inversions; use deadlock, inversion," in unknown.stderr


def test_the_programs_own_failure_status_wins_over_fail_on(tmp_path: Path) -> None:
    write(tmp_path, "fails.py", INVERSION + "raise SystemExit(5)\n")
    result = tracedsync_command("run", "--fail-on=inversion", "fails.py", cwd=tmp_path)
    assert result.returncode == 5


def test_a_missing_module_is_one_line_and_status_2(tmp_path: Path) -> None:
    for module in ("no.such.module", "json.no_such_module"):
        result = tracedsync_command("run", "-m", module, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("tracedsync run: error: "), lines
        assert "No module named" in lines[0]


@pytest.mark.parametrize("module", ["broken", "package.sub"])
def test_an_import_error_of_the_program_itself_is_its_own(tmp_path: Path, module: str) -> None:
    write(tmp_path, "broken.py", "import no_such_dependency_anywhere\n")
    (tmp_path / "package").mkdir()
    write(tmp_path / "package", "__init__.py", "import no_such_dependency_anywhere\n")
    write(tmp_path / "package", "sub.py", "")
    result = tracedsync_command("run", "-m", module, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "No module named 'no_such_dependency_anywhere'" in result.stderr
    assert "deadlocks: none" in result.stderr  # the program ran: summarised


def test_off_says_nothing_was_checked(tmp_path: Path) -> None:
    write(tmp_path, "inversion.py", INVERSION)
    result = tracedsync_command("run", "inversion.py", cwd=tmp_path, env={"TRACEDSYNC": "off"})
    assert result.returncode == 0
    assert result.stderr.strip() == "tracedsync: TRACEDSYNC=off: nothing was traced or checked"


#: What a program can see of tracedsync under ``run``: its OS threads, the
#: ``threading`` names, the modules imported before it started.
OBSERVER = """
import os, sys, threading, _thread
original_lock = type(_thread.allocate_lock())
print(len(os.listdir(f"/proc/{os.getpid()}/task")))
print(threading.Lock is original_lock or threading.Lock is _thread.allocate_lock)
print(sorted(sys.modules.keys() & {"asyncio", "concurrent.futures", "wrapt"}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs procfs")
def test_off_runs_the_program_as_python_does(tmp_path: Path) -> None:
    # Nothing patched, no watchdog thread, no module imported for patching:
    # a fork would otherwise happen in a multi-threaded process.
    write(tmp_path, "observer.py", OBSERVER)
    plain = subprocess.run(
        [sys.executable, "observer.py"], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    result = tracedsync_command("run", "observer.py", cwd=tmp_path, env={"TRACEDSYNC": "off"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == plain.stdout
    assert plain.stdout.splitlines()[:2] == ["1", "True"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs procfs")
def test_a_traced_program_finds_none_of_these_modules_imported_for_it(tmp_path: Path) -> None:
    # wrapt 2.x, which the patch used to import, imports asyncio and
    # concurrent.futures; a dataclass RunOptions imported dataclasses and
    # inspect.  (3.14's argparse, which the command line needs, imports
    # those two itself: then they are not tracedsync's to avoid.)
    names = {"asyncio", "concurrent.futures", "wrapt", "dataclasses", "inspect"}
    argparse_imports = subprocess.run(
        [
            sys.executable,
            "-c",
            "import argparse, json, sys; argparse.ArgumentParser(prog='x').parse_args([]);"
            f" print(json.dumps(sorted(sys.modules.keys() & {names!r})))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    names -= set(json.loads(argparse_imports.stdout))
    write(tmp_path, "observer.py", f"import sys\nprint(sorted(sys.modules.keys() & {names!r}))\n")
    result = tracedsync_command("run", "--no-summary", "observer.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


@pytest.mark.parametrize("option", ["--trace", "--timeline"])
def test_output_paths_are_checked_before_the_program_starts(tmp_path: Path, option: str) -> None:
    write(tmp_path, "inversion.py", INVERSION)
    (tmp_path / "adir").mkdir()
    for path, reason in (("missing/out.json", "no such directory"), ("adir", "is a directory")):
        result = tracedsync_command("run", option, path, "inversion.py", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stdout == ""  # the program never started
        assert result.stderr.splitlines() == [
            f"tracedsync run: error: {option} {path}: {reason}"
            + (f": {tmp_path / 'missing'}" if reason == "no such directory" else "")
        ]


def test_a_bad_log_file_variable_does_not_break_import(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import tracedsync; print('ran')"],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 3,
        env={**os.environ, "TRACEDSYNC_LOG_FILE": str(tmp_path / "no" / "dir" / "x.jsonl")},
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == "ran\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracedsync: TRACEDSYNC_LOG_FILE: cannot write")


#: Python installs its SIGINT handler (KeyboardInterrupt) only when SIGINT
#: is not ignored at start-up, and a background job of a shell without job
#: control (``cmd &`` in a script, as CI runs things) inherits it ignored:
#: the program asks for it explicitly, as a terminal's would have it.
WAITS_FOR_EVER = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
import threading
lock = threading.Lock()
with lock:
    pass
print("ready", flush=True)
threading.Event().wait()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 128 + signal.SIGINT)],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_writes_the_trace_timeline_and_summary_then_exits_with_its_status(
    tmp_path: Path, signum: int, status: int
) -> None:
    """SIGTERM kills the process as it would a plain Python program, after the
    summary; SIGINT is the program's KeyboardInterrupt, status 130."""
    write(tmp_path, "forever.py", WAITS_FOR_EVER)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracedsync",
            "run",
            "--hang-timeout=0",
            "--trace=t.jsonl",
            "--timeline=t.json",
            "forever.py",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        # Signal the program once it sleeps in its wait, not merely once it
        # said it is about to: see process_sleeps_in_a_wait.
        wait_until(lambda: process_sleeps_in_a_wait(process.pid), "the program waits")
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=PATIENCE * 3)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == status
    assert "deadlocks: none" in stderr
    assert "tracedsync: timeline written to t.json" in stderr
    assert (tmp_path / "t.json").stat().st_size > 0
    assert '"lock.acquire"' in (tmp_path / "t.jsonl").read_text()
