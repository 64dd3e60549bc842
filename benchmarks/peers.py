"""The peer libraries ``locklib`` and ``threadle``, measured against ``threading``.

Run by ``run.py`` with the interpreter of a separate virtual environment
where the peers are installed (``benchmarks/.venv-peers``), so they never
become tracedsync's dependencies: ``python peers.py [--smoke]`` prints one
JSON object.  Standard library only apart from the peers themselves; a peer
that is not installed, or has no equivalent of an operation, is reported as
such instead of measured.

Nearest equivalents (read from their sources):

* ``locklib.SmartLock`` / ``SmartRLock``: locks with wait-for cycle
  detection (a global graph under a global lock); ``acquire()`` takes no
  arguments, so ``threading.Condition``, ``queue`` and ``concurrent.futures``
  cannot use them.  ``locklib.LockTraceWrapper(threading.Lock())`` records
  acquire/release events in memory (its recording mode).
* ``threadle.TrackedLock(name)``: a ``Lock`` wrapper updating a global
  tracker (owner, waiters) under a global lock; ``threadle.start_tracing()``
  also records timeline events (its recording mode).  No ``RLock``, and not a
  context manager (``with`` fails), so the contended increments use
  ``acquire()``/``release()`` and ``queue``/``concurrent.futures`` cannot use it.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

import measure
import workloads


def _locklib() -> dict[str, Callable[[], Any]] | str:
    try:
        import locklib
    except ImportError:
        return "not installed"
    return {
        "SmartLock": locklib.SmartLock,
        "SmartRLock": locklib.SmartRLock,
        "LockTraceWrapper": lambda: locklib.LockTraceWrapper(threading.Lock()),
    }


_names = itertools.count()


def _threadle() -> dict[str, Callable[[], Any]] | str:
    try:
        import threadle
    except ImportError:
        return "not installed"
    return {"TrackedLock": lambda: threadle.TrackedLock(f"lock-{next(_names)}")}


def _uncontended(budget: measure.Budget) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def measure_row(library: str, subject: str, operation: str, loop: Any, baseline: Any) -> None:
        comparison = measure.compare_per_operation(baseline, loop, budget)
        rows.append(
            {
                "library": library,
                "subject": subject,
                "operation": operation,
                "subject_ns": comparison.subject_ns,
                "baseline_ns": comparison.baseline_ns,
                "ratio": comparison.ratio,
            }
        )

    locklib = _locklib()
    if isinstance(locklib, str):
        rows.append({"library": "locklib", "missing": locklib})
    else:
        measure_row(
            "locklib",
            "SmartLock",
            "lock_pair",
            workloads.lock_pair_loop(locklib["SmartLock"]()),
            workloads.lock_pair_loop(threading.Lock()),
        )
        measure_row(
            "locklib",
            "SmartRLock",
            "rlock_reentrant",
            workloads.rlock_reentrant_loop(locklib["SmartRLock"]()),
            workloads.rlock_reentrant_loop(threading.RLock()),
        )
        measure_row(
            "locklib",
            "LockTraceWrapper (records events)",
            "lock_pair",
            workloads.lock_pair_loop(locklib["LockTraceWrapper"]()),
            workloads.lock_pair_loop(threading.Lock()),
        )
    threadle = _threadle()
    if isinstance(threadle, str):
        rows.append({"library": "threadle", "missing": threadle})
    else:
        import threadle as module

        measure_row(
            "threadle",
            "TrackedLock",
            "lock_pair",
            workloads.lock_pair_loop(threadle["TrackedLock"]()),
            workloads.lock_pair_loop(threading.Lock()),
        )
        module.start_tracing()
        try:
            measure_row(
                "threadle",
                "TrackedLock + start_tracing() (records events)",
                "lock_pair",
                workloads.lock_pair_loop(threadle["TrackedLock"]()),
                workloads.lock_pair_loop(threading.Lock()),
            )
        finally:
            module.stop_tracing()
            module.clear_events()
    return rows


def _contended(budget: measure.Budget, threads: int, per_thread: int) -> dict[str, Any]:
    subjects: dict[str, Callable[[], int]] = {
        "threading": lambda: workloads.increments(threading.Lock(), threads, per_thread),
        "floor": lambda: workloads.increments(workloads.PassThroughLock(), threads, per_thread),
    }
    locklib = _locklib()
    if not isinstance(locklib, str):
        smart = locklib["SmartLock"]
        subjects["locklib SmartLock"] = lambda: workloads.increments(smart(), threads, per_thread)
    threadle = _threadle()
    if not isinstance(threadle, str):
        tracked = threadle["TrackedLock"]
        subjects["threadle TrackedLock"] = lambda: workloads.increments_explicit(
            tracked(), threads, per_thread
        )
    intervals: dict[str, Any] = {}
    for interval in (workloads.DEFAULT_SWITCH_INTERVAL, workloads.SHORT_SWITCH_INTERVAL):
        with workloads.switch_interval(interval):
            best = measure.compare_wall_times(subjects, budget.repetitions)
        intervals[f"{interval:g}"] = {
            key: {
                "wall_ns": wall_ns,
                "ratio_threading": measure.ratio(wall_ns, best["threading"]),
                "ratio_floor": measure.ratio(wall_ns, best["floor"]),
            }
            for key, wall_ns in best.items()
            if key not in ("threading", "floor")
        }
    return intervals


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("locklib", "threadle"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def run(budget: measure.Budget, threads: int, per_thread: int) -> dict[str, Any]:
    """Everything this module measures, as one JSON-ready dictionary."""
    return {
        "python": sys.version.split()[0],
        "versions": _versions(),
        "uncontended": _uncontended(budget),
        "contended": _contended(budget, threads, per_thread),
        "not_applicable": {
            "queue_pipeline": "neither peer's lock works inside threading.Condition "
            "(locklib: acquire() takes no arguments; threadle: not a context manager)",
            "executor_map": "same reason: futures wait on a threading.Condition",
            "event, condition, semaphore, thread": "neither peer has an equivalent",
        },
    }


def main() -> None:
    smoke = "--smoke" in sys.argv[1:]
    budget = measure.Budget.quick() if smoke else measure.Budget.full()
    per_thread = 300 if smoke else 50_000
    json.dump(run(budget, 4, per_thread), sys.stdout)


if __name__ == "__main__":
    main()
