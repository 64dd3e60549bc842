"""Uncontended operations: each primitive against its ``threading`` equivalent, per mode."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import measure
import tracedsync
import workloads
from modes import MODES, Mode

__all__ = ["OPERATIONS", "Operation", "run"]


@dataclass(frozen=True)
class Operation:
    """One measured operation: how to build its loop from a primitive's constructor."""

    key: str
    title: str
    #: The constructor's name, in both ``threading`` and ``tracedsync``.
    constructor: str
    #: Builds the timed loop from the constructor.
    loop: Callable[[Callable[[], Any]], measure.Loop]
    #: Whether the loop's own empty-``for`` cost is taken off (single-thread
    #: loops); the multi-threaded ones are dominated by thread switches.
    subtract_loop: bool = True


OPERATIONS = [
    Operation("lock_pair", "Lock acquire/release", "Lock", lambda c: workloads.lock_pair_loop(c())),
    Operation("lock_with", "Lock `with` block", "Lock", lambda c: workloads.lock_with_loop(c())),
    Operation(
        "rlock_reentrant",
        "RLock reentrant acquire/release",
        "RLock",
        lambda c: workloads.rlock_reentrant_loop(c()),
    ),
    Operation(
        "event_set_wait", "Event set/wait", "Event", lambda c: workloads.event_set_wait_loop(c())
    ),
    Operation(
        "condition_round_trip",
        "Condition notify/wait round trip",
        "Condition",
        workloads.condition_round_trip_loop,
        subtract_loop=False,
    ),
    Operation(
        "semaphore_pair",
        "Semaphore acquire/release",
        "Semaphore",
        lambda c: workloads.semaphore_pair_loop(c()),
    ),
    Operation(
        "thread_start_join",
        "Thread start/join",
        "Thread",
        workloads.thread_start_join_loop,
        subtract_loop=False,
    ),
]


def _measure(operation: Operation, mode: Mode, budget: measure.Budget) -> dict[str, Any]:
    baseline_constructor = getattr(threading, operation.constructor)
    traced_constructor = getattr(tracedsync, operation.constructor)
    with mode.enter() as session:
        baseline = operation.loop(baseline_constructor)
        subject = operation.loop(traced_constructor)
        same_type = type(traced_constructor()) is type(baseline_constructor())
        comparison = measure.compare_per_operation(
            baseline,
            subject,
            budget,
            between_rounds=session.between_rounds,
            subtract_loop=operation.subtract_loop,
        )
    return {
        "baseline_ns": comparison.baseline_ns,
        "subject_ns": comparison.subject_ns,
        "ratio": comparison.ratio,
        "same_type": same_type,
    }


def _floor(budget: measure.Budget) -> dict[str, Any]:
    """The pass-through wrapper's Lock pair against ``threading.Lock``."""
    comparison = measure.compare_per_operation(
        workloads.lock_pair_loop(threading.Lock()),
        workloads.lock_pair_loop(workloads.PassThroughLock()),
        budget,
    )
    return {
        "baseline_ns": comparison.baseline_ns,
        "subject_ns": comparison.subject_ns,
        "ratio": comparison.ratio,
    }


def run(budget: measure.Budget, progress: Callable[[str], None]) -> dict[str, Any]:
    """Every operation in every mode: ``{"operations": {op: {mode: figures}}, "floor": ...}``."""
    results: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        results[operation.key] = {}
        for mode in MODES:
            progress(f"uncontended: {operation.title} / {mode.title}")
            results[operation.key][mode.key] = _measure(operation, mode, budget)
    progress("uncontended: pass-through floor")
    return {"operations": results, "floor": _floor(budget)}
