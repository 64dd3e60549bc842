"""How many runs each strategy of ``tracedsync.explore`` needs to find each bug
of :mod:`bugs`, beside plain stress-running under real threads.

    python benchmarks/bug_finding/run.py                  # the full table
    python benchmarks/bug_finding/run.py --smoke          # a few seconds, for CI
    python benchmarks/bug_finding/run.py --output docs/bug-finding.md
    python benchmarks/bug_finding/run.py --peers-json peers.json ...   # see peers.py

For each bug and strategy: the runs until the first failing one, for seeds
0..N-1 (the exhaustive strategy is deterministic: one search), reported as
the median and how many seeds found it within the run limit.  The stress
baseline runs the same bug on real threads (tracedsync primitives, not
explored) until a run fails, hangs for a second, or the limit is reached.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import threading
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bugs import BUGS, CORRECT

import tracedsync

STRATEGIES = ("pct", "random", "exhaustive", "dpor")
#: Deterministic strategies: one search, no seeds.
SEARCHES = ("exhaustive", "dpor")
#: Bugs whose runs cost far more (100 threads): a smaller budget, said on the page.
EXPENSIVE = {"twostage, 100+1 threads (SCTBench)"}


def runs_to_find(bug: Callable[[], None], strategy: str, seed: int, limit: int) -> int | None:
    """The number of the first failing run, or ``None`` if none of ``limit`` failed."""
    try:
        tracedsync.explore(bug, strategy=strategy, runs=limit, seed=seed, depth=3)
    except tracedsync.InterleavingError as failure:
        return failure.run
    return None


def stress_runs_to_find(bug: Callable[[], None], limit: int, hang_after: float) -> int | None:
    """Run ``bug`` on real threads until it fails or hangs; ``None`` if it never did."""
    failures: list[BaseException] = []
    original_hook = threading.excepthook
    threading.excepthook = lambda arguments: failures.append(arguments.exc_value)  # type: ignore[assignment,arg-type,misc]
    try:
        for number in range(1, limit + 1):
            outcome: list[BaseException] = []

            def attempt(outcome: list[BaseException] = outcome) -> None:
                try:
                    bug()
                except BaseException as error:  # any failure counts
                    outcome.append(error)

            runner = threading.Thread(target=attempt, daemon=True)
            runner.start()
            runner.join(hang_after)
            if runner.is_alive() or outcome or failures:
                return number
    finally:
        threading.excepthook = original_hook
    return None


def _median(found: list[int | None], limit: int) -> str:
    hits = [value for value in found if value is not None]
    if not hits:
        return f"not found in {limit:,}"
    median = statistics.median(value if value is not None else limit + 1 for value in found)
    shown = f"> {limit:,}" if median > limit else f"{median:g}"
    return shown if len(found) == 1 else f"{shown} ({len(hits)}/{len(found)})"


def measure(
    seeds: int, limit: int, stress_limit: int, stress_repeats: int, expensive: tuple[int, int]
) -> list[list[str]]:
    tracedsync.configure(on_deadlock="warn", log_level="off")
    rows = []
    for name, bug in BUGS.items():
        row = [name]
        bug_seeds, bug_limit = expensive if name in EXPENSIVE else (seeds, limit)
        for strategy in STRATEGIES:
            used = 1 if strategy in SEARCHES else bug_seeds
            found = [runs_to_find(bug, strategy, seed, bug_limit) for seed in range(used)]
            row.append(_median(found, bug_limit))
        tracedsync.configure(on_deadlock="raise")
        stress = [stress_runs_to_find(bug, stress_limit, 1.0) for _ in range(stress_repeats)]
        tracedsync.configure(on_deadlock="warn")
        row.append(_median(stress, stress_limit))
        rows.append(row)
        print(" | ".join(row), flush=True)
    return rows


def check_correct(seeds: int, limit: int) -> list[list[str]]:
    """Every strategy on every correct program: what it reported (nothing,
    or the failures by kind), and for the searches whether they completed."""
    rows = []
    for name, program in CORRECT.items():
        row = [name]
        for strategy in STRATEGIES:
            failures: list[str] = []
            complete = ""
            for seed in range(1 if strategy in SEARCHES else seeds):
                try:
                    result = tracedsync.explore(program, strategy=strategy, runs=limit, seed=seed)
                except tracedsync.InterleavingError as failure:
                    failures.append(failure.kind)
                    continue
                if strategy in SEARCHES:
                    complete = (
                        f", complete after {result.interleavings:,} interleavings"
                        if result.complete
                        else f", {result.runs:,} runs, not complete"
                    )
            shown = ", ".join(sorted(set(failures))) if failures else "nothing"
            row.append(shown + complete)
        rows.append(row)
        print(" | ".join(row), flush=True)
    return rows


def peers_section(path: str | None) -> str:
    """The peers' table (see ``peers.py``), or why there is none."""
    if path is None:
        return "Not measured in this run (pass `--peers-json`, see `peers.py`)."
    import peers

    measured = json.loads(Path(path).read_text(encoding="utf-8"))
    return (
        f"Measured with CPython {measured.get('python', '?')} in the peers' own "
        "environment.\n\n" + peers.markdown(measured, list(BUGS))
    )


#: The results page, with ``str.format`` fields for the figures.
PAGE = (Path(__file__).parent / "page.md").read_text(encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1000, help="run limit per exploration")
    parser.add_argument("--stress-runs", type=int, default=1000)
    parser.add_argument("--stress-repeats", type=int, default=5)
    parser.add_argument(
        "--expensive",
        type=int,
        nargs=2,
        default=(5, 200),
        metavar=("SEEDS", "RUNS"),
        help="seeds and run limit for the 100-thread bug",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: checks it all runs")
    parser.add_argument("--correct-seeds", type=int, help="seeds on the correct programs")
    parser.add_argument("--correct-runs", type=int, help="run limit on the correct programs")
    parser.add_argument(
        "--peers-json",
        help="the output of peers.py (run with its own environment) to show beside ours",
    )
    parser.add_argument("--output", help="write the results page here (Markdown)")
    arguments = parser.parse_args()
    if arguments.smoke:
        arguments.seeds, arguments.runs = 2, 100
        arguments.stress_runs, arguments.stress_repeats = 5, 1
        arguments.expensive = (1, 20)
    started = datetime.datetime.now()
    rows = measure(
        arguments.seeds,
        arguments.runs,
        arguments.stress_runs,
        arguments.stress_repeats,
        tuple(arguments.expensive),
    )
    correct_seeds = arguments.correct_seeds or arguments.seeds
    correct_runs = arguments.correct_runs or arguments.runs
    correct = check_correct(correct_seeds, correct_runs)
    minutes = (datetime.datetime.now() - started).total_seconds() / 60
    if arguments.output:
        page = PAGE.format(
            explore="{func}`tracedsync.explore`",
            machine=f"{platform.system()} {platform.machine()}",
            cpus=os.cpu_count(),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            date=datetime.date.today().isoformat(),
            seeds=arguments.seeds,
            limit=arguments.runs,
            stress_limit=arguments.stress_runs,
            stress_repeats=arguments.stress_repeats,
            expensive_seeds=arguments.expensive[0],
            expensive_limit=arguments.expensive[1],
            minutes=f"{minutes:.0f}",
            rows="\n".join("| " + " | ".join(row) + " |" for row in rows),
            correct="\n".join("| " + " | ".join(row) + " |" for row in correct),
            peers=peers_section(arguments.peers_json),
            correct_seeds=correct_seeds,
            correct_limit=correct_runs,
        )
        Path(arguments.output).write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
