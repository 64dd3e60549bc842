"""Contended workloads: wall-time ratios to ``threading`` and to the pure-Python floor.

Each workload runs with ``threading``'s primitives, with the pass-through
wrapper (:class:`workloads.PassThroughLock`, the floor of any pure-Python
lock), and with tracedsync in several modes, at CPython's default switch
interval and at a short one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import measure
import tracedsync
import workloads
from modes import MODES, Mode

__all__ = ["Sizes", "run"]

#: The tracedsync modes measured under contention (the per-event sinks are
#: measured uncontended and in :mod:`sinks`).
CONTENDED_MODES = ("off", "default", "recorded_detectors")


@dataclass(frozen=True)
class Sizes:
    threads: int
    increments: int
    producers: int
    items: int
    workers: int
    tasks: int

    @classmethod
    def for_budget(cls, budget: measure.Budget) -> Sizes:
        if budget.smoke:
            return cls(threads=4, increments=300, producers=2, items=100, workers=4, tasks=100)
        return cls(threads=4, increments=50_000, producers=2, items=10_000, workers=4, tasks=10_000)


def traced_stdlib() -> AbstractContextManager[None]:
    """The stdlib built from tracedsync's locks and conditions.

    Not ``tracedsync.patched()``, which would also trace the workers'
    ``Thread``, ``Event`` and ``Semaphore`` objects: the pass-through floor
    replaces only the locks, and like must be compared with like.
    """
    return workloads.stdlib_built_from(
        Lock=tracedsync.Lock, RLock=tracedsync.RLock, Condition=tracedsync.Condition
    )


def floor_stdlib() -> AbstractContextManager[None]:
    """The stdlib built from the pass-through wrappers."""
    return workloads.stdlib_built_from(
        Lock=workloads.PassThroughLock, RLock=workloads.PassThroughRLock
    )


@dataclass(frozen=True)
class Subject:
    """One implementation measured under contention."""

    key: str
    title: str
    make_lock: Callable[[], Any]
    build_stdlib: Callable[[], AbstractContextManager[Any]]
    mode: Mode | None = None


def _subjects() -> list[Subject]:
    subjects = [
        Subject("threading", "threading", threading.Lock, workloads.stdlib_built_from),
        Subject("floor", "pass-through wrapper (floor)", workloads.PassThroughLock, floor_stdlib),
    ]
    for mode in MODES:
        if mode.key in CONTENDED_MODES:
            # With the off switch tracedsync's constructors return threading's
            # own objects: patching threading with them would change nothing
            # (and tracedsync.Lock() would find itself in threading.Lock).
            build = traced_stdlib if mode.traced else workloads.stdlib_built_from
            subjects.append(
                Subject(mode.key, f"tracedsync: {mode.title}", tracedsync.Lock, build, mode)
            )
    return subjects


@contextmanager
def _within(mode: Mode | None) -> Any:
    if mode is None:
        yield
    else:
        with mode.enter():
            yield


def _workloads(subject: Subject, sizes: Sizes) -> dict[str, Callable[[], int]]:
    def increments() -> int:
        with _within(subject.mode):
            return workloads.increments(subject.make_lock(), sizes.threads, sizes.increments)

    def pipeline() -> int:
        with _within(subject.mode):
            return workloads.queue_pipeline(subject.build_stdlib, sizes.producers, sizes.items)

    def executor() -> int:
        with _within(subject.mode):
            return workloads.executor_map(subject.build_stdlib, sizes.workers, sizes.tasks)

    return {"increments": increments, "queue_pipeline": pipeline, "executor_map": executor}


WORKLOAD_TITLES = {
    "increments": "{threads} threads x {increments:,} increments under one lock",
    "queue_pipeline": (
        "`queue.Queue(64)`: {producers} producers x {items:,} items, {producers} consumers"
    ),
    "executor_map": "`ThreadPoolExecutor({workers}).map` over {tasks:,} tasks",
}


def run(budget: measure.Budget, progress: Callable[[str], None]) -> dict[str, Any]:
    """``{"sizes", "subjects", "intervals": {interval: {workload: {subject: figures}}}}``."""
    sizes = Sizes.for_budget(budget)
    subjects = _subjects()
    intervals: dict[str, Any] = {}
    for interval in (workloads.DEFAULT_SWITCH_INTERVAL, workloads.SHORT_SWITCH_INTERVAL):
        per_workload: dict[str, Any] = {}
        with workloads.switch_interval(interval):
            for workload in WORKLOAD_TITLES:
                progress(f"contended: {workload} at switch interval {interval * 1000:g} ms")
                timed = {s.key: _workloads(s, sizes)[workload] for s in subjects}
                best = measure.compare_wall_times(timed, budget.repetitions)
                per_workload[workload] = {
                    key: {
                        "wall_ns": wall_ns,
                        "ratio_threading": measure.ratio(wall_ns, best["threading"]),
                        "ratio_floor": measure.ratio(wall_ns, best["floor"]),
                    }
                    for key, wall_ns in best.items()
                }
        intervals[f"{interval:g}"] = per_workload
    return {
        "sizes": sizes.__dict__,
        "subjects": {s.key: s.title for s in subjects},
        "titles": {key: title.format(**sizes.__dict__) for key, title in WORKLOAD_TITLES.items()},
        "intervals": intervals,
    }
