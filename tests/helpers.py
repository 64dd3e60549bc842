"""Small synchronisation helpers for the tests: bounded, never sleep-as-sync."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from tracedsync._waits import waits

#: Upper bound for anything a test waits for; far above what any step needs.
PATIENCE = 20.0


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until it is true; fail (never hang) after PATIENCE.

    Used only where no event can be set, e.g. to see a thread *enter* a
    blocking call, which by definition cannot signal anything afterwards.
    """
    deadline = time.monotonic() + PATIENCE
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        pause.wait(0.001)


def wait_until_blocked(thread_ident: int | None) -> None:
    """Wait until the thread has registered a blocking wait with tracedsync."""
    assert thread_ident is not None
    wait_until(lambda: thread_ident in waits.snapshot()[1], f"thread {thread_ident} blocks")


def process_sleeps_in_a_wait(pid: int) -> bool:
    """Whether single-threaded process ``pid`` is asleep in the kernel, in a
    futex wait where the kernel says which (a lock or condition wait: the
    only way such a process sleeps once it has stopped reading and writing).

    A signal sent then interrupts the wait.  One sent a moment earlier,
    after CPython's last check for signals and before it parks in the lock
    wait, is recorded but wakes nothing: the process sleeps on, with the
    handler pending (CPython's own race, plain ``threading`` included).
    Without procfs (macOS) this cannot be known: ``True``.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
        with open(f"/proc/{pid}/wchan", encoding="ascii") as wchan:
            where = wchan.read().strip()
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")
    return state == "S" and (where in {"", "0"} or "futex" in where)


def run_python(code: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with this one's environment."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 3,
        env=full_env,
        check=False,
    )
