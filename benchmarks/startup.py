"""Cost on real code (issue 14): ``import tracedsync``, ``tracedsync run``'s
start-up, and the executor program.

Every figure is a whole process, run in the same sitting and alternating
between the commands compared, with bytecode cached (the processes are run
without ``PYTHONDONTWRITEBYTECODE``, after a ``compileall`` of the checkout's
``src``); CPU time is the children's user + system time from
``resource.getrusage``, and the median over the repetitions is kept.

* ``import``: ``python -c pass``, ``python -c "import threading"`` and
  ``python -c "import tracedsync"``;
* ``startup``: ``python programs/empty.py`` and
  ``python -m tracedsync run --no-summary programs/empty.py``;
* ``executor``: ``programs/executor.py`` (``ThreadPoolExecutor`` +
  ``as_completed`` over 400 futures) plainly, under ``tracedsync run
  --no-summary`` and under ``tracedsync run`` (summary and contention table
  included); a run that fails or whose output mentions the lock-order graph
  being full is an error.

``python benchmarks/startup.py [--smoke] [--json]`` (Unix only: it reads
``resource``).
"""

from __future__ import annotations

import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROGRAMS = HERE / "programs"

__all__ = ["run"]


def _environment() -> dict[str, str]:
    """This checkout's tracedsync first; bytecode written and read."""
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    source = str(ROOT / "src")
    existing = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = source + (os.pathsep + existing if existing else "")
    return environment


def _once(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run; raises if it failed or the
    lock-order graph filled."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    finished = subprocess.run(
        command, check=False, capture_output=True, text=True, env=_environment(), cwd=ROOT
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = finished.stdout + finished.stderr
    if finished.returncode != 0 or "graph_full" in output or "graph is full" in output:
        raise RuntimeError(
            f"{' '.join(command)} exited with status {finished.returncode}: "
            + " | ".join(output.strip().splitlines()[-5:])
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def _compare(commands: dict[str, list[str]], repetitions: int) -> dict[str, Any]:
    """Each command ``repetitions`` times, alternating, after one warm-up each."""
    for command in commands.values():
        _once(command)
    runs: dict[str, list[tuple[float, float]]] = {key: [] for key in commands}
    for _ in range(repetitions):
        for key, command in commands.items():
            runs[key].append(_once(command))
    return {
        key: {
            "cpu": statistics.median(cpu for cpu, _ in found),
            "wall": statistics.median(wall for _, wall in found),
        }
        for key, found in runs.items()
    }


def run(smoke: bool = False) -> dict[str, Any]:
    """The three comparisons, medians in seconds, with the ratios."""
    compileall.compile_dir(str(ROOT / "src"), quiet=1)
    python = sys.executable
    repetitions = 1 if smoke else 9
    size = "50" if smoke else "400"
    tracedsync_run = [python, "-m", "tracedsync", "run"]
    results: dict[str, Any] = {"python": sys.version.split()[0], "repetitions": repetitions}
    results["import"] = _compare(
        {
            "pass": [python, "-c", "pass"],
            "threading": [python, "-c", "import threading"],
            "tracedsync": [python, "-c", "import tracedsync"],
        },
        repetitions,
    )
    empty = str(PROGRAMS / "empty.py")
    results["startup"] = _compare(
        {"plain": [python, empty], "run": [*tracedsync_run, "--no-summary", empty]},
        repetitions,
    )
    executor = str(PROGRAMS / "executor.py")
    results["executor"] = _compare(
        {
            "plain": [python, executor, size],
            "run": [*tracedsync_run, "--no-summary", executor, size],
            "run_summary": [*tracedsync_run, executor, size],
        },
        1 if smoke else 5,
    )
    results["executor"]["futures"] = int(size)
    plain = results["executor"]["plain"]["wall"]
    results["executor"]["ratio_run"] = results["executor"]["run"]["wall"] / plain
    results["executor"]["ratio_run_summary"] = results["executor"]["run_summary"]["wall"] / plain
    return results


def render(results: dict[str, Any]) -> list[str]:
    """Markdown tables."""

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms"

    found = results["import"]
    lines = [
        "| command | CPU (median) | wall (median) |",
        "|---|---|---|",
        *(
            f"| `python -c {label}` | {ms(found[key]['cpu'])} | {ms(found[key]['wall'])} |"
            for key, label in (
                ("pass", "pass"),
                ("threading", '"import threading"'),
                ("tracedsync", '"import tracedsync"'),
            )
        ),
        f"| `python empty.py` | {ms(results['startup']['plain']['cpu'])} "
        f"| {ms(results['startup']['plain']['wall'])} |",
        f"| `tracedsync run --no-summary empty.py` | {ms(results['startup']['run']['cpu'])} "
        f"| {ms(results['startup']['run']['wall'])} |",
        "",
        f"| executor ({results['executor']['futures']} futures) | CPU | wall | wall vs plain |",
        "|---|---|---|---|",
    ]
    executor = results["executor"]
    for key, label in (
        ("plain", "plain"),
        ("run", "`tracedsync run --no-summary`"),
        ("run_summary", "`tracedsync run`"),
    ):
        ratio = 1.0 if key == "plain" else executor[f"ratio_{key}"]
        lines.append(
            f"| {label} | {ms(executor[key]['cpu'])} | {ms(executor[key]['wall'])} | {ratio:.1f}x |"
        )
    return lines


if __name__ == "__main__":
    measured = run(smoke="--smoke" in sys.argv[1:])
    print("\n".join(render(measured)))
    if "--json" in sys.argv[1:]:
        print(json.dumps(measured, indent=2))
