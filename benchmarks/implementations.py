"""The C accelerator and the pure-Python implementation of ``Lock``, side by side.

Both are measured in one process, switching ``Lock``'s methods with
:func:`tracedsync._accel.select` between measurements: the uncontended pair
and ``with`` block against ``threading.Lock`` in the modes the targets name,
the contended increments against ``threading`` and the pass-through
floor at both switch intervals, and the JSON Lines sink's events per second
(whose batches the C accelerator encodes).  Where the accelerator is not built only the
pure-Python figures exist, and the section says why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import measure
import sinks
import tracedsync
import workloads
from contended import Sizes
from modes import MODES
from tracedsync import _accel
from uncontended import OPERATIONS, _measure

__all__ = ["IMPLEMENTATION_MODES", "run"]

#: The modes compared (keys of :data:`modes.MODES`).
IMPLEMENTATION_MODES = ("default", "recorded_detectors", "jsonl")
#: The operations compared (keys of :data:`uncontended.OPERATIONS`).
IMPLEMENTATION_OPERATIONS = ("lock_pair", "lock_with")


def _increments(sizes: Sizes, budget: measure.Budget) -> dict[str, Any]:
    """The increments workload with the defaults: wall time ratios, per interval."""
    subjects: dict[str, Callable[[], int]] = {
        "threading": lambda: workloads.increments(
            threading.Lock(), sizes.threads, sizes.increments
        ),
        "floor": lambda: workloads.increments(
            workloads.PassThroughLock(), sizes.threads, sizes.increments
        ),
        "tracedsync": lambda: workloads.increments(
            tracedsync.Lock(), sizes.threads, sizes.increments
        ),
    }
    figures: dict[str, Any] = {}
    for interval in (workloads.DEFAULT_SWITCH_INTERVAL, workloads.SHORT_SWITCH_INTERVAL):
        with workloads.switch_interval(interval):
            best = measure.compare_wall_times(subjects, budget.repetitions)
        figures[f"{interval:g}"] = {
            "ratio_threading": measure.ratio(best["tracedsync"], best["threading"]),
            "ratio_floor": measure.ratio(best["tracedsync"], best["floor"]),
        }
    return figures


def run(budget: measure.Budget, progress: Callable[[str], None]) -> dict[str, Any]:
    """``{"implementations": {impl: {"uncontended": {op: {mode: ratio}}, "increments": ...}}}``."""
    names = ["c", "python"] if _accel.available() else ["python"]
    previous = _accel.implementation()
    records = sinks.sample_records(2_000 if budget.smoke else 200_000)
    modes = [mode for mode in MODES if mode.key in IMPLEMENTATION_MODES]
    operations = [op for op in OPERATIONS if op.key in IMPLEMENTATION_OPERATIONS]
    sizes = Sizes.for_budget(budget)
    results: dict[str, Any] = {
        "note": None if _accel.available() else f"C accelerator not measured: {_accel.reason()}",
        "modes": {mode.key: mode.title for mode in modes},
        "operations": {op.key: op.title for op in operations},
        "implementations": {},
    }
    try:
        for name in names:
            _accel.select(name)
            figures: dict[str, Any] = {"uncontended": {}}
            for operation in operations:
                for mode in modes:
                    progress(f"implementations: {name}, {operation.title} / {mode.title}")
                    measured = _measure(operation, mode, budget)
                    figures["uncontended"].setdefault(operation.key, {})[mode.key] = measured[
                        "ratio"
                    ]
            progress(f"implementations: {name}, contended increments")
            figures["increments"] = _increments(sizes, budget)
            progress(f"implementations: {name}, JSON Lines sink")
            figures["json_lines_events_per_s"] = sinks.json_lines_rate(records, budget.rounds)
            results["implementations"][name] = figures
    finally:
        _accel.select(previous)
    return results
