"""What an explored run of many short threads costs, beside running the same
program on real threads.

    python benchmarks/bug_finding/scale.py [--threads 100] [--runs 15]

The program: ``--threads`` threads each take one shared lock, increment a
counter and pass a yield point; the test's thread starts and joins them.
Prints, for real threads and for explored runs (PCT and random), the median
wall time of a run, the process CPU time per run, and per scheduling step
(the steps of one explored run; they are the same in every run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import tracedsync
from tracedsync._explore import runs as _explore


def program(threads: int) -> Callable[[], None]:
    def test() -> None:
        lock = tracedsync.Lock(name="count")
        count = [0]

        def body() -> None:
            with lock:
                count[0] += 1
            tracedsync.yield_point()

        started = [tracedsync.Thread(target=body) for _ in range(threads)]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()
        assert count[0] == threads

    return test


def real(test: Callable[[], None], runs: int) -> tuple[float, float]:
    walls = []
    cpu = time.process_time()
    for _ in range(runs):
        began = time.perf_counter()
        test()
        walls.append(time.perf_counter() - began)
    return statistics.median(walls), (time.process_time() - cpu) / runs


def explored(test: Callable[[], None], runs: int, strategy: str) -> tuple[float, float, int]:
    steps: list[int] = []
    original = _explore.one_run  # type: ignore[attr-defined]

    def counting(*arguments: object) -> object:
        run = original(*arguments)  # type: ignore[arg-type]
        steps.append(len(run.choices))
        return run

    _explore.one_run = counting  # type: ignore[attr-defined,assignment]
    try:
        cpu, began = time.process_time(), time.perf_counter()
        tracedsync.explore(test, strategy=strategy, runs=runs)
        wall = (time.perf_counter() - began) / runs
        return wall, (time.process_time() - cpu) / runs, max(steps)
    finally:
        _explore.one_run = original  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    arguments = parser.parse_args()
    tracedsync.configure(log_level="off")
    test = program(arguments.threads)
    wall, cpu = real(test, arguments.runs)
    print(f"{arguments.threads} threads, {arguments.runs} runs each")
    print(f"real threads: {wall * 1e3:.1f} ms per run (median), {cpu * 1e3:.1f} ms CPU")
    for strategy in ("pct", "random"):
        run_wall, run_cpu, steps = explored(test, arguments.runs, strategy)
        print(
            f"explored ({strategy}): {run_wall * 1e3:.1f} ms per run "
            f"({run_wall / wall:.2f}x real), {run_cpu * 1e3:.1f} ms CPU; {steps} steps, "
            f"{run_wall / steps * 1e6:.0f} us wall and {run_cpu / steps * 1e6:.0f} us CPU per step"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
