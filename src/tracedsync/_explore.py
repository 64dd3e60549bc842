"""Exploring interleavings: run a test many times under the controlled
scheduler (:mod:`tracedsync._scheduler`), one thread at a time, in orders a
strategy chooses (:mod:`tracedsync._schedules`), and replay the one that failed.

Exactly one of the test's threads runs between two *scheduling points*: every
operation of every tracedsync primitive (the scheduler is a sink of
:mod:`tracedsync._hooks`, the choke point every operation already reports
to), every wait that would block, ``time.sleep`` and :func:`yield_point`.
Blocking is modelled, never real, and timed waits run in virtual time (a
timeout fires when nothing else can run); see :mod:`tracedsync._scheduler`.

A run fails on a deadlock (no thread can run, some wait without timeout), an
exception in any thread (an ``AssertionError`` in the test included), more
than ``max_steps`` steps (a livelock), or a thread that does not come back to
a scheduling point within ``stall_timeout`` seconds (it blocks on something
tracedsync does not see).  The failure carries the run's schedule as a token
for :func:`replay`, and the interleaving as readable steps.
"""

from __future__ import annotations

from _thread import allocate_lock
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tracedsync._scheduler import Run, RunSettings, installed, one_run, yield_point
from tracedsync._schedules import (
    ExhaustiveStrategy,
    ReplayStrategy,
    Strategy,
    encode_token,
    make_strategy,
)
from tracedsync._sites import register_internal_module

__all__ = ["ExploreResult", "InterleavingError", "explore", "replay", "yield_point"]

register_internal_module(__file__)

#: Held while an exploration runs: explorations cannot nest.
_exploring = allocate_lock()


class InterleavingError(AssertionError):
    """A run of :func:`explore` or :func:`replay` failed.

    ``kind`` is ``"deadlock"``, ``"exception"``, ``"assertion"``,
    ``"livelock"`` (step bound), ``"stall"`` (a thread left tracedsync's
    control) or ``"replay"`` (the replayed run diverged); ``token`` replays
    the run (:func:`replay`); ``steps`` is the interleaving, one line per
    step; ``run`` counts from 1.
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        token: str,
        steps: list[str],
        run: int,
        strategy: str,
        preemptions: int,
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.token = token
        self.steps = steps
        self.run = run
        self.strategy = strategy
        self.preemptions = preemptions
        shown = "\n".join(f"  {line}" for line in steps)
        super().__init__(
            f"{kind} in run {run} ({strategy}), {preemptions} preemption"
            f"{'s' if preemptions != 1 else ''}:\n{detail}\n"
            f"interleaving ({len(steps)} steps; the failure is at or just before the end):\n"
            f"{shown}\nreplay it with tracedsync.replay(test, {token!r})"
        )


@dataclass(frozen=True)
class ExploreResult:
    """What an exploration that found nothing did."""

    runs: int
    strategy: str
    #: For the exhaustive strategy: every schedule within the bound was run.
    exhausted: bool = False


def _failure(run: Run, strategy: Strategy) -> InterleavingError:
    assert run.failure is not None
    kind, detail = run.failure
    return InterleavingError(
        kind,
        detail,
        encode_token(run.choices),
        run.readable_steps(),
        run.number + 1,
        strategy.describe(),
        run.preemptions,
    )


#: Runs per preemption bound when :func:`explore` minimises a failure.
MINIMIZE_RUNS = 2000


def _simplest(
    test: Callable[[], object], failure: InterleavingError, settings: RunSettings
) -> InterleavingError:
    """A failing interleaving with fewer preemptions than ``failure``, if one
    is found within :data:`MINIMIZE_RUNS` runs per bound; else ``failure``."""
    for bound in range(failure.preemptions):
        search = ExhaustiveStrategy(bound)
        for number in range(MINIMIZE_RUNS):
            run = one_run(test, search, number, settings)
            if run.failure is not None and run.failure[0] == failure.kind:
                return _failure(run, search)
            if search.exhausted:
                break
    return failure


#: ``granularity`` values: what else than operations is a scheduling point.
GRANULARITIES = ("operations", "lines", "opcodes")


def explore(
    test: Callable[[], object],
    *,
    strategy: str | Strategy = "pct",
    runs: int | None = None,
    seed: int = 0,
    depth: int = 3,
    preemption_bound: int = 2,
    max_steps: int = 10_000,
    stall_timeout: float = 5.0,
    minimize: bool = False,
    granularity: str = "operations",
    trace_files: Iterable[str] | None = None,
) -> ExploreResult:
    """Run ``test`` ``runs`` times under the controlled scheduler.

    ``test`` is a callable that starts threads (``tracedsync.Thread``, or
    ``threading.Thread`` under :func:`tracedsync.patch`) and synchronises them
    with tracedsync primitives; it runs in a thread of its own, controlled
    like the others.  ``strategy`` is ``"random"``, ``"pct"`` (with bug
    ``depth``), ``"exhaustive"`` (at most ``preemption_bound`` preemptions per
    run; it stops early once every schedule ran) or a strategy object such as
    one drawn from :func:`tracedsync.schedules`.  Raises
    :class:`InterleavingError` for the first failing run; returns an
    :class:`ExploreResult` when none failed.

    ``minimize``: once a run fails, look for a failing interleaving with fewer
    preemptions (an exhaustive search with bound 0, 1, ... up to one less
    than the failure's, at most ``MINIMIZE_RUNS`` runs each) and report the
    simplest one found.

    ``granularity``: ``"operations"`` (the default) switches only at
    synchronisation operations, ``time.sleep``, guarded attribute accesses
    and :func:`yield_point`; ``"lines"`` also before every line, and
    ``"opcodes"`` before every bytecode instruction, of the code in
    ``trace_files`` (by default the file that defines ``test``), so races
    inside plain Python statements are found without yield points.  It uses
    ``sys.settrace``: slow, meant for small tests.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    files: frozenset[str] = frozenset()
    if granularity != "operations":
        if trace_files is None:
            code = getattr(test, "__code__", None)
            trace_files = () if code is None else (code.co_filename,)
        files = frozenset(trace_files)
    settings = RunSettings(max_steps, stall_timeout, files, granularity == "opcodes")
    chosen = make_strategy(strategy, seed=seed, depth=depth, preemption_bound=preemption_bound)
    total = chosen.default_runs if runs is None else runs
    if not _exploring.acquire(False):
        raise RuntimeError("tracedsync.explore() is already running (it cannot nest)")
    try:
        with installed(settings):
            return _explore_runs(test, chosen, total, settings, minimize)
    finally:
        _exploring.release()


def _explore_runs(
    test: Callable[[], object],
    chosen: Strategy,
    total: int,
    settings: RunSettings,
    minimize: bool,
) -> ExploreResult:
    done = 0
    for number in range(total):
        run = one_run(test, chosen, number, settings)
        done += 1
        if run.failure is not None:
            failure = _failure(run, chosen)
            if minimize and run.failure[0] not in {"stall", "replay"}:
                failure = _simplest(test, failure, settings)
            raise failure
        if isinstance(chosen, ExhaustiveStrategy) and chosen.exhausted:
            break
    exhausted = isinstance(chosen, ExhaustiveStrategy) and chosen.exhausted
    return ExploreResult(done, chosen.describe(), exhausted)


def replay(
    test: Callable[[], object],
    token: str,
    *,
    max_steps: int = 10_000,
    stall_timeout: float = 5.0,
    granularity: str = "operations",
    trace_files: Iterable[str] | None = None,
) -> ExploreResult:
    """Run ``test`` once, in exactly the interleaving ``token`` recorded
    (``InterleavingError.token``); raises :class:`InterleavingError` when
    it fails, as it will if the test is deterministic apart from scheduling.
    Pass the ``granularity`` and ``trace_files`` the exploration used."""
    return explore(
        test,
        strategy=ReplayStrategy(token),
        runs=1,
        max_steps=max_steps,
        stall_timeout=stall_timeout,
        granularity=granularity,
        trace_files=trace_files,
    )
