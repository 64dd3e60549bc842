"""Exploring interleavings: run a test many times under the controlled
scheduler (:mod:`tracedsync._explore.scheduler`), one thread at a time, in orders a
strategy chooses (:mod:`tracedsync._explore.schedules`), and replay the one that failed.

Exactly one of the test's threads runs between two *scheduling points*: every
operation of every tracedsync primitive (the scheduler is a sink of
:mod:`tracedsync._hooks`, the choke point every operation already reports
to), every wait that would block, ``time.sleep`` and :func:`yield_point`.
Blocking is modelled, never real, and timed waits run in virtual time (a
timeout fires when nothing else can run); see :mod:`tracedsync._explore.scheduler`.

A run fails on a deadlock (no thread can run, some wait without timeout), an
exception in any thread (an ``AssertionError`` in the test included), more
than ``max_steps`` steps (a livelock), a thread that does not come back to
a scheduling point within ``stall_timeout`` seconds (it blocks on something
tracedsync does not see), or, under ``races=True``, a data race the race
detector (``tracedsync._races``) finds in the run.  The failure carries
the run's schedule as a token for :func:`replay`, and the interleaving as
readable steps.
"""

from __future__ import annotations

import inspect
import os
import sys
from _thread import allocate_lock, get_ident
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tracedsync._explore import scheduler as _scheduler
from tracedsync._explore.scheduler import Run, RunSettings, installed, one_run, yield_point
from tracedsync._explore.schedules import (
    DPORStrategy,
    ExhaustiveStrategy,
    ReplayStrategy,
    Strategy,
    encode_token,
    make_strategy,
)
from tracedsync._guards import PATIENCE_SECONDS
from tracedsync._sites import register_internal_module

__all__ = [
    "ExploreResult",
    "IncompleteExplorationError",
    "InterleavingError",
    "explore",
    "replay",
    "yield_point",
]

register_internal_module(__file__)

#: Held while an exploration runs: explorations cannot nest.
_exploring = allocate_lock()


class InterleavingError(AssertionError):
    """A run of :func:`explore` or :func:`replay` failed.

    ``kind`` is ``"deadlock"``, ``"exception"``, ``"assertion"``,
    ``"livelock"`` (step bound), ``"stall"`` (a thread left tracedsync's
    control), ``"race"`` (a data race, under ``races=True``) or
    ``"replay"`` (the replayed run diverged); ``token`` replays
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
    """What an exploration that found nothing did.

    Check ``complete`` (or pass ``require_complete=True``) before reading
    "nothing found" as "no interleaving fails": a search stopped by its
    budget says nothing about the schedules it did not reach.
    """

    runs: int
    strategy: str
    #: For the exhaustive strategy: every schedule within ``preemption_bound``
    #: ran (with no bound: every schedule; then ``complete`` too).
    exhausted: bool = False
    #: How many different interleavings (schedules) ran: every run, for the
    #: exhaustive search; for the randomised strategies, repeats counted once.
    interleavings: int = 0
    #: Every interleaving of the test ran: an exhaustive search that was
    #: neither stopped by its budget of runs nor cut by a preemption bound.
    complete: bool = False
    #: For the exhaustive search: the largest preemption bound all of whose
    #: interleavings ran (``None`` if not even every one without preemptions).
    completed_bound: int | None = None


class IncompleteExplorationError(AssertionError):
    """``explore(..., require_complete=True)`` found no failure, but did not
    run every interleaving (``result`` says how far it got)."""

    def __init__(self, message: str, result: ExploreResult) -> None:
        super().__init__(message)
        self.result = result


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
    test: Callable[[], object],
    failure: InterleavingError,
    settings: RunSettings,
    checks: _RaceChecks | None = None,
) -> InterleavingError:
    """A failing interleaving with fewer preemptions than ``failure``, if one
    is found within :data:`MINIMIZE_RUNS` runs per preemption; else ``failure``.

    One iterative search (bound 0, then 1 ...) up to one less than the
    failure's preemptions: the first failure it finds has the fewest."""
    if failure.preemptions == 0:
        return failure
    search = ExhaustiveStrategy(failure.preemptions - 1)
    for number in range(MINIMIZE_RUNS * failure.preemptions):
        run = _one_run(test, search, number, settings, checks)
        if run.failure is not None and run.failure[0] == failure.kind:
            return _failure(run, search)
        if search.exhausted:
            break
    return failure


def _defined(test: Callable[[], object]) -> Callable[..., object]:
    """The function the user wrote: ``test`` behind any ``__wrapped__``
    (the pytest marker's wrapper, decorators), for its file and module."""
    try:
        defined: Callable[..., object] = inspect.unwrap(test)
    except ValueError:  # a __wrapped__ cycle
        return test
    return defined


#: ``granularity`` values: what else than operations is a scheduling point.
GRANULARITIES = ("operations", "lines", "opcodes")


def explore(
    test: Callable[[], object],
    *,
    strategy: str | Strategy = "pct",
    runs: int | None = None,
    seed: int = 0,
    depth: int = 3,
    preemption_bound: int | None = None,
    max_steps: int = 10_000,
    stall_timeout: float = 5.0,
    minimize: bool = False,
    granularity: str = "operations",
    trace_files: Iterable[str] | None = None,
    require_complete: bool = False,
    races: bool = False,
    race_paths: Iterable[str] = (),
) -> ExploreResult:
    """Run ``test`` ``runs`` times under the controlled scheduler.

    ``test`` is a callable that starts threads (``tracedsync.Thread``, or
    ``threading.Thread`` under :func:`tracedsync.patch`) and synchronises them
    with tracedsync primitives; it runs in a thread of its own, controlled
    like the others.  ``strategy`` is ``"pct"`` (the default, with bug
    ``depth``), ``"random"``, ``"exhaustive"`` (iterative preemption
    bounding: every schedule with 0 preemptions, then 1, 2 ..., up to
    ``preemption_bound`` if one is given; it stops early once every schedule
    ran), ``"dpor"`` (every schedule up to the order of independent steps:
    dynamic partial-order reduction, one run per class of equivalent
    schedules) or a strategy object such as one drawn from
    :func:`tracedsync.schedules`.  Raises :class:`InterleavingError` for the
    first failing run; returns an :class:`ExploreResult` when none failed,
    which says how many interleavings ran and whether that was all of them.

    ``require_complete``: raise ``IncompleteExplorationError`` unless
    every interleaving ran (an exhaustive search, neither stopped by ``runs``
    nor cut by ``preemption_bound``): a passing test then proves the
    property for every schedule.  Only the exhaustive and DPOR searches can
    complete.

    ``minimize``: once a run fails, look for a failing interleaving with fewer
    preemptions (an exhaustive search with bound 0, 1, ... up to one less
    than the failure's, at most ``MINIMIZE_RUNS`` runs each) and report the
    simplest one found.

    ``races``: check every run for data races with the race detector
    (the one ``tracedsync run --races`` uses): a race is a failure of kind
    ``"race"``, reported at the second of its two accesses with the run's
    replay token, even when no assertion would have failed.  Accesses are
    checked in the files under the directory of the file that defines
    ``test`` and under ``race_paths``.  Each run is checked on its own
    (nothing is ordered across runs).  Replay with ``races=True`` too.
    Before Python 3.12 it cannot be combined with ``granularity="lines"``
    or ``"opcodes"`` (both need ``sys.settrace``).

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
    defined = _defined(test)
    if granularity != "operations":
        if trace_files is None:
            code = getattr(defined, "__code__", None)
            trace_files = () if code is None else (code.co_filename,)
        files = frozenset(trace_files)
    module = getattr(defined, "__module__", None)
    settings = RunSettings(
        max_steps,
        stall_timeout,
        files,
        granularity == "opcodes",
        frozenset({module}) if isinstance(module, str) else frozenset(),
    )
    chosen = make_strategy(strategy, seed=seed, depth=depth, preemption_bound=preemption_bound)
    if require_complete and not isinstance(chosen, (ExhaustiveStrategy, DPORStrategy)):
        raise ValueError(
            "require_complete=True needs strategy='exhaustive' or 'dpor': "
            f"{chosen.describe()} samples schedules and never completes a search"
        )
    if races and granularity != "operations" and sys.version_info < (3, 12):
        raise ValueError(
            f"races=True with granularity={granularity!r} needs Python 3.12 or later: "
            "before it both use sys.settrace"
        )
    total = chosen.default_runs if runs is None else runs
    if not _exploring.acquire(False):
        raise RuntimeError("tracedsync.explore() is already running (it cannot nest)")
    try:
        with installed(settings), _race_checks(test, races, race_paths) as checks:
            result = _explore_runs(test, chosen, total, settings, minimize, checks)
    finally:
        _exploring.release()
    if require_complete and not result.complete:
        raise IncompleteExplorationError(_incomplete(result, total), result)
    return result


def _incomplete(result: ExploreResult, total: int) -> str:
    done = result.completed_bound
    covered = (
        "not even every interleaving without preemptions"
        if done is None
        else f"every interleaving with at most {done} preemption{'s' if done != 1 else ''}"
    )
    why = (
        "the preemption bound cut the search"
        if result.exhausted
        else f"the budget of {total:,} runs ran out"
    )
    if result.strategy.startswith("dpor"):
        covered = "part of the interleavings (a depth-first search covers no whole class early)"
    return (
        f"the exploration found no failure but was not complete: {why} after "
        f"{result.interleavings:,} interleavings ({result.strategy}); it covered "
        f"{covered}.  Raise runs=, drop preemption_bound=, or make the test smaller."
    )


class _RaceChecks:
    """``explore(..., races=True)``: the race detector over every run.

    One detector (and one access capture) for the whole exploration,
    :meth:`~tracedsync._races.RaceDetector.reset` before each run.  A
    race found in a thread of the run fails the run at once (kind
    ``"race"``): the run's token then ends at the second access."""

    def __init__(self, roots: list[str]) -> None:
        from tracedsync._races import RaceDetector  # start-up cost: only with races=True

        self.detector = RaceDetector(roots, on_race=self._found)

    def _found(self, data: dict[str, object]) -> None:
        run = _scheduler._active
        if run is None or get_ident() not in run.by_ident:
            return  # not a thread of this run (one a stalled run left behind)
        message = str(data["message"])
        if run.guard.acquire(True, PATIENCE_SECONDS):
            try:
                run._abort("race", message)
            finally:
                run.guard.release()
        elif run.failure is None:
            # This thread holds the guard itself (a finalizer that ran inside
            # the scheduler): the run is not stopped, but it fails when it ends.
            run.failure = ("race", message)

    def before_run(self) -> None:
        self.detector.reset()


@contextmanager
def _race_checks(
    test: Callable[[], object], races: bool, race_paths: Iterable[str]
) -> Iterator[_RaceChecks | None]:
    if not races:
        yield None
        return
    code = getattr(_defined(test), "__code__", None)
    home = os.path.dirname(os.path.abspath(code.co_filename)) if code is not None else os.getcwd()
    checks = _RaceChecks([home, *race_paths])
    checks.detector.start()
    try:
        yield checks
    finally:
        checks.detector.stop()


def _one_run(
    test: Callable[[], object],
    strategy: Strategy,
    number: int,
    settings: RunSettings,
    checks: _RaceChecks | None,
) -> Run:
    if checks is not None:
        checks.before_run()
    return one_run(test, strategy, number, settings)


def _digest(data: bytes) -> bytes:
    """A 16-byte digest of a run's choices (hashlib is imported on first use:
    it loads OpenSSL, a large part of ``import tracedsync``'s cost)."""
    import hashlib  # start-up cost: it loads OpenSSL

    return hashlib.blake2b(data, digest_size=16).digest()


def _explore_runs(
    test: Callable[[], object],
    chosen: Strategy,
    total: int,
    settings: RunSettings,
    minimize: bool,
    checks: _RaceChecks | None = None,
) -> ExploreResult:
    done = 0
    seen: set[bytes] = set()
    for number in range(total):
        run = _one_run(test, chosen, number, settings, checks)
        done += 1
        if run.failure is not None and run.failure[0] == "redundant":
            pass  # partial-order reduction: equivalent to a run made before
        elif run.failure is not None:
            failure = _failure(run, chosen)
            if minimize and run.failure[0] not in {"stall", "replay"}:
                failure = _simplest(test, failure, settings, checks)
            raise failure
        seen.add(_digest(array("I", run.choices).tobytes()))
        if isinstance(chosen, (ExhaustiveStrategy, DPORStrategy)) and chosen.exhausted:
            break
    if isinstance(chosen, ExhaustiveStrategy):
        bound = chosen.completed_bound
        return ExploreResult(
            done,
            chosen.describe(),
            exhausted=chosen.exhausted,
            interleavings=done,
            complete=chosen.complete,
            completed_bound=None if bound < 0 else bound,
        )
    if isinstance(chosen, DPORStrategy):
        return ExploreResult(
            done,
            chosen.describe(),
            exhausted=chosen.exhausted,
            interleavings=chosen.interleavings,
            complete=chosen.complete,
        )
    return ExploreResult(done, chosen.describe(), interleavings=len(seen))


def replay(
    test: Callable[[], object],
    token: str,
    *,
    max_steps: int = 10_000,
    stall_timeout: float = 5.0,
    granularity: str = "operations",
    trace_files: Iterable[str] | None = None,
    races: bool = False,
    race_paths: Iterable[str] = (),
) -> ExploreResult:
    """Run ``test`` once, in exactly the interleaving ``token`` recorded
    (``InterleavingError.token``); raises :class:`InterleavingError` when
    it fails, as it will if the test is deterministic apart from scheduling.
    Pass the ``granularity``, ``trace_files``, ``races`` and ``race_paths``
    the exploration used."""
    return explore(
        test,
        strategy=ReplayStrategy(token),
        runs=1,
        max_steps=max_steps,
        stall_timeout=stall_timeout,
        granularity=granularity,
        trace_files=trace_files,
        races=races,
        race_paths=race_paths,
    )


# Shown as the package's: ``tracedsync.InterleavingError`` is its public name.
InterleavingError.__module__ = "tracedsync"
