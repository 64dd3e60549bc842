"""The benchmark suite's smoke mode runs to completion and reports finite ratios.

It never judges speed: the smoke counts are far too small for that, and the
machine CI runs on is shared.  This only keeps ``benchmarks/`` from rotting.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [number for item in value.values() for number in _numbers(item)]
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    if isinstance(value, float):
        return [value]
    return []


@pytest.mark.timeout(300)
def test_smoke_run_reports_every_group_with_finite_figures(tmp_path: Path) -> None:
    output, raw = tmp_path / "performance.md", tmp_path / "results.json"
    output.write_text("# Performance\n\nProse that regeneration must keep.\n", encoding="utf-8")
    finished = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--output",
            str(output),
            "--json",
            str(raw),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stderr
    results = json.loads(raw.read_text(encoding="utf-8"))
    assert results["about"]["smoke"] is True
    operations = results["uncontended"]["operations"]
    assert set(operations) == {
        "lock_pair",
        "lock_with",
        "rlock_reentrant",
        "event_set_wait",
        "condition_round_trip",
        "semaphore_pair",
        "thread_start_join",
    }
    for per_mode in operations.values():
        assert set(per_mode) == {
            "off",
            "default",
            "recorded",
            "recorded_detectors",
            "jsonl",
            "structlog",
        }
        assert per_mode["off"]["same_type"] is True
    for per_workload in results["contended"]["intervals"].values():
        assert set(per_workload) == {"increments", "queue_pipeline", "executor_map"}
    race_workloads = results["races"]["workloads"]
    assert set(race_workloads) == {"pipeline", "cache"}
    for found in race_workloads.values():
        assert set(found["seconds"]) == {"plain", "run", "races"}
        assert all(seconds > 0 for seconds in found["seconds"].values())
    numbers = _numbers(results)
    assert numbers
    assert all(math.isfinite(number) for number in numbers)
    text = output.read_text(encoding="utf-8")
    assert text.startswith("# Performance\n\nProse that regeneration must keep.\n")
    assert "<!-- BEGIN GENERATED RESULTS" in text
    assert "### Targets" in text
    assert "### Data-race checking" in text
    assert "### Peer libraries" in text


@pytest.mark.timeout(300)
def test_startup_benchmark_smoke_runs_and_reports_finite_figures() -> None:
    """``benchmarks/startup.py`` (import, ``run`` start-up, the executor
    program): every command succeeds, no lock-order graph fills, and every
    figure is a positive finite number."""
    finished = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "startup.py"), "--smoke", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=280,
    )
    results = json.loads(finished.stdout[finished.stdout.index("\n{") :])
    assert set(results) >= {"import", "startup", "executor"}
    assert set(results["executor"]) >= {"plain", "run", "run_summary", "ratio_run"}
    numbers = _numbers(results)
    assert numbers
    assert all(math.isfinite(number) and number > 0 for number in numbers)
    assert "| `tracedsync run` |" in finished.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--only", "lock_pairs"], "unknown operation lock_pairs"),
        (["--subjects", "c_defaults"], "unknown subject c_defaults"),
        (["--counts", "500"], "--counts takes SHORT,LONG"),
    ],
)
def test_instruction_counts_refuse_options_they_do_not_know(
    arguments: list[str], complaint: str
) -> None:
    # It ignored them before: a misspelt option was silently dropped.
    finished = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "instructions.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert finished.returncode == 2
    assert complaint in finished.stderr
