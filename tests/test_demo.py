"""The README's demo command: ``python -m tracedsync demo``."""

from __future__ import annotations

import subprocess
import sys

from helpers import PATIENCE


def test_demo_runs_every_teaching_program_and_catches_the_deadlocks() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tracedsync", "demo"],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 3,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("slept") == 20
    assert "counter = 10000 (expected 10000)" in out
    assert "10 of 10 waiters woke up" in out
    assert "caught DeadlockError instead of a hang:" in out
    assert "first acquired at: src/tracedsync/_cli/demo.py:" in out
    assert "acquired twice: <locked tracedsync.RLock object 'teaching-rlock'" in out
    assert "the worker got: Lock 'worker-lock' re-acquired by thread 'worker'" in out
    assert out.rstrip().endswith(
        "All programs finished; none hung; every trace obeys the pairing rules."
    )
    # Each program's events, counted: 20 workers started, ran, exited, joined.
    assert "   20 x thread.start" in out and "   20 x thread.join" in out
    assert "20000 x rlock.acquire" in out  # 10 threads x 1000 x two levels
    assert "   10 x event.wait" in out and "    1 x event.set" in out
    assert "deadlock.self_reacquire" in out
    # One problem, one report: each self-deadlock is the DeadlockError the
    # demo prints, and tracedsync logs nothing besides it (no other thread
    # released the worker's lock, so no lock.self_reacquire note either).
    assert "self_reacquire" not in result.stderr
    assert "[warning" not in result.stderr and "[error" not in result.stderr


def test_cli_requires_a_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tracedsync"],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 3,
        check=False,
    )
    assert result.returncode == 2
    assert "COMMAND" in result.stderr
