"""Timing helpers shared by every benchmark group.

Standard library only: the peer libraries' virtual environment imports this
module too.  The headline figures are *ratios* between a subject and its
baseline measured in the same process, in interleaved rounds, so that the
machine's noise (other jobs on a 2-core box) hits both alike; each side keeps
its best (minimum) round, the least disturbed one.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns

__all__ = ["Budget", "Comparison", "compare_per_operation", "compare_wall_times", "ratio"]

#: A timed loop: runs its operation ``n`` times, returns the elapsed nanoseconds.
Loop = Callable[[int], int]


@dataclass(frozen=True)
class Budget:
    """How long to measure: a full run, or a smoke run that only proves the code runs."""

    smoke: bool
    #: Interleaved rounds per comparison; the minimum of each side is kept.
    rounds: int
    #: Target duration of one round of the slower side, in seconds.
    round_seconds: float
    #: Repetitions of each multi-threaded wall-time workload.
    repetitions: int

    @classmethod
    def full(cls) -> Budget:
        return cls(smoke=False, rounds=5, round_seconds=0.05, repetitions=3)

    @classmethod
    def quick(cls) -> Budget:
        return cls(smoke=True, rounds=2, round_seconds=0.001, repetitions=1)


@dataclass(frozen=True)
class Comparison:
    """One subject against its baseline: nanoseconds per operation and their ratio."""

    baseline_ns: float
    subject_ns: float

    @property
    def ratio(self) -> float:
        return ratio(self.subject_ns, self.baseline_ns)


def ratio(subject: float, baseline: float) -> float:
    """``subject / baseline``, ``nan`` when the baseline measured nothing."""
    return subject / baseline if baseline > 0 else math.nan


def _empty_loop(n: int) -> int:
    start = perf_counter_ns()
    for _ in range(n):
        pass
    return perf_counter_ns() - start


def _iterations_for(loop: Loop, seconds: float, limit: int = 10_000_000) -> int:
    """How many operations of ``loop`` take about ``seconds`` (doubling from 1)."""
    n = 1
    while n < limit:
        elapsed = loop(n)
        if elapsed >= seconds * 1e9 / 4:
            return max(1, min(limit, int(n * seconds * 1e9 / max(elapsed, 1))))
        n *= 2
    return limit


def compare_per_operation(
    baseline: Loop,
    subject: Loop,
    budget: Budget,
    *,
    between_rounds: Callable[[], None] | None = None,
    subtract_loop: bool = True,
) -> Comparison:
    """Time ``baseline`` and ``subject`` in interleaved rounds, best round of each.

    The iteration count is calibrated on the subject (usually the slower) so a
    round lasts about ``budget.round_seconds``.  With ``subtract_loop`` the
    cost of an empty ``for`` loop of the same length is taken off both sides,
    so the ratio compares the operations and not the loop around them.
    ``between_rounds`` runs before each subject round, untimed (a recording
    mode starts a fresh trace there, so memory stays bounded).
    """
    n = _iterations_for(subject, budget.round_seconds)
    best_baseline = best_subject = best_empty = math.inf
    for _ in range(budget.rounds):
        gc.collect()
        best_empty = min(best_empty, _empty_loop(n) if subtract_loop else 0)
        best_baseline = min(best_baseline, baseline(n))
        if between_rounds is not None:
            between_rounds()
        gc.collect()
        best_subject = min(best_subject, subject(n))
    if min(best_baseline, best_subject) <= best_empty:
        best_empty = 0  # too short to tell the loop from the operation: keep it in
    return Comparison(
        baseline_ns=(best_baseline - best_empty) / n,
        subject_ns=(best_subject - best_empty) / n,
    )


def compare_wall_times(
    workloads: dict[str, Callable[[], int]], repetitions: int
) -> dict[str, float]:
    """Run every workload ``repetitions`` times, interleaved; best wall time (ns) of each."""
    best = dict.fromkeys(workloads, math.inf)
    for _ in range(repetitions):
        for name, workload in workloads.items():
            gc.collect()
            best[name] = min(best[name], workload())
    return best
