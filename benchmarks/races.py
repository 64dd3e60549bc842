"""The cost of ``tracedsync run --races`` on two realistic, race-free programs.

The programs are in ``benchmarks/race_workloads/`` (``pipeline.py``: a
producer, four workers and a collector over ``queue.Queue`` with shared
statistics under a lock; ``cache.py``: eight threads looking keys up in an
``RLock``-guarded object cache, counting hits in per-thread objects).  Each is
run as a separate process, in the same sitting and alternating: plainly
(``python prog.py N``), under ``python -m tracedsync run --no-summary`` and
under ``python -m tracedsync run --races --fail-on race --no-summary``.  The
median wall time of each is kept, with the ratios races/plain and races/run.
A run that fails, or a race reported (exit status 87 from ``--fail-on race``,
or "Data race" on its stderr), is an error: the programs are correct.

``python benchmarks/races.py [--smoke]`` runs this group alone.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import measure

__all__ = ["CONFIGURATIONS", "WORKLOADS", "Workload", "run"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROGRAMS = HERE / "race_workloads"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    #: The program's size argument in a full run and in a smoke run.
    size: int
    smoke_size: int


WORKLOADS = [
    Workload(
        "pipeline",
        "producer, 4 workers and a collector over `queue.Queue`, statistics under a `Lock`",
        5_000,
        200,
    ),
    Workload(
        "cache",
        "8 threads looking keys up in an `RLock`-guarded cache, per-thread hit counters",
        3_000,
        100,
    ),
]

#: How each program is started: the arguments between the interpreter and the program.
CONFIGURATIONS: dict[str, list[str]] = {
    "plain": [],
    "run": ["-m", "tracedsync", "run", "--no-summary"],
    "races": ["-m", "tracedsync", "run", "--races", "--fail-on", "race", "--no-summary"],
}


def _environment() -> dict[str, str]:
    """The environment of the measured processes: this checkout's tracedsync first."""
    environment = dict(os.environ)
    source = str(ROOT / "src")
    existing = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = source + (os.pathsep + existing if existing else "")
    return environment


def _time_once(configuration: str, workload: Workload, size: int) -> float:
    """The wall time of one run in seconds; raises if it failed or reported a race."""
    command = [
        sys.executable,
        *CONFIGURATIONS[configuration],
        str(PROGRAMS / f"{workload.key}.py"),
        str(size),
    ]
    start = time.perf_counter()
    finished = subprocess.run(
        command, check=False, capture_output=True, text=True, env=_environment(), cwd=ROOT
    )
    elapsed = time.perf_counter() - start
    if finished.returncode != 0 or "Data race" in finished.stderr:
        raise RuntimeError(
            f"{workload.key} ({configuration}) exited with status {finished.returncode}"
            f"{' and reported a race' if 'Data race' in finished.stderr else ''}: "
            + " | ".join(finished.stderr.strip().splitlines()[-5:])
        )
    return elapsed


def run(budget: measure.Budget, progress: Callable[[str], None]) -> dict[str, Any]:
    """``{"workloads": {key: {"seconds": {config: median}, "ratio_plain", "ratio_run"}}}``."""
    repetitions = budget.repetitions
    results: dict[str, Any] = {
        "repetitions": repetitions,
        "python": sys.version.split()[0],
        "checked": "every run exited with status 0 and printed no data race",
        "commands": {key: " ".join(["python", *args]) for key, args in CONFIGURATIONS.items()},
        "workloads": {},
    }
    for workload in WORKLOADS:
        size = workload.smoke_size if budget.smoke else workload.size
        times: dict[str, list[float]] = {key: [] for key in CONFIGURATIONS}
        for repetition in range(repetitions):
            progress(f"races: {workload.key} ({size}), round {repetition + 1}/{repetitions}")
            for configuration in CONFIGURATIONS:
                times[configuration].append(_time_once(configuration, workload, size))
        medians = {key: statistics.median(values) for key, values in times.items()}
        results["workloads"][workload.key] = {
            "title": workload.title,
            "size": size,
            "seconds": medians,
            "all_seconds": times,
            "ratio_plain": measure.ratio(medians["races"], medians["plain"]),
            "ratio_run": measure.ratio(medians["races"], medians["run"]),
        }
    return results


def render(results: dict[str, Any]) -> list[str]:
    """The group's Markdown table (for :mod:`report`)."""
    lines = [
        "| workload | size | plain | `tracedsync run` | `run --races` | races vs plain "
        "| races vs run |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, found in results["workloads"].items():
        seconds = found["seconds"]
        lines.append(
            f"| {key} | {found['size']:,} | {seconds['plain']:.2f} s | {seconds['run']:.2f} s "
            f"| {seconds['races']:.2f} s | {found['ratio_plain']:.1f}x "
            f"| {found['ratio_run']:.1f}x |"
        )
    return lines


if __name__ == "__main__":
    import json

    smoke = "--smoke" in sys.argv[1:]
    budget = measure.Budget.quick() if smoke else measure.Budget.full()
    measured = run(budget, lambda message: print(f"[races] {message}", file=sys.stderr))
    print("\n".join(render(measured)))
    if "--json" in sys.argv[1:]:
        print(json.dumps(measured, indent=2))
