"""The controlled scheduler's runtime: one thread at a time, switching only at
scheduling points, blocking modelled (:mod:`tracedsync._explore.runs` runs
explorations on it).

A thread whose ``Lock`` is taken, or whose condition, event, semaphore,
barrier or join wait would block, is marked blocked and leaves its turn to
the strategy's next choice; it becomes a candidate again once what it waits
for is free.  ``threading``'s own conditions (inside ``Event``,
``Semaphore``, ``Barrier``, ``queue.Queue``...) all block on a waiter lock
from ``threading._allocate_lock``, which is a :class:`ModelLock` while
exploring, so they are modelled without being re-implemented.

The primitives reach it only through the explorer interface
(:mod:`tracedsync._control`), where :func:`installed` puts it for an
exploration: :func:`controlling` says whether the calling thread is one of
the run's, and :func:`acquire_lock`, :func:`starting`, :func:`join` model
what would otherwise block in the operating system.  The scheduling points are
every event of :mod:`tracedsync._hooks` (this module's :func:`_sink`), every
modelled wait, ``time.sleep`` and :func:`yield_point`.  :func:`installed`
puts the process-wide pieces in place for an exploration: the sink, the model
locks behind every ``threading.Condition`` (``threading._allocate_lock``) and
the virtual ``time.sleep``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from _thread import allocate_lock, get_ident
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import monotonic
from types import CodeType
from typing import Any

from tracedsync import _control, _hooks
from tracedsync._errors import DeadlockError
from tracedsync._explore.schedules import (
    ACQUIRE,
    ANY_OBJECT,
    RELEASE,
    WRITE,
    RedundantRunError,
    ReplayDivergedError,
    Strategy,
)
from tracedsync._hooks import Record
from tracedsync._sites import describe_offset, describe_site, register_internal_module, user_frame

__all__ = [
    "ModelLock",
    "Run",
    "RunSettings",
    "acquire_lock",
    "block",
    "controlling",
    "installed",
    "join",
    "one_run",
    "point_at_caller",
    "start_unmodelled",
    "starting",
    "yield_point",
]

register_internal_module(__file__)

RUNNABLE, BLOCKED, FINISHED = "runnable", "blocked", "finished"
#: What a scheduling point is, for fairness (see ``Run.point``): an
#: ordinary step; a yield ("let others run": ``time.sleep``,
#: ``os.sched_yield``); a possible spin (``yield_point``, a failed
#: non-blocking acquire), a yield when the thread comes back to the same one
#: without another thread having run in between.
STEP, YIELD, SPIN = 0, 1, 2
#: Steps of a failing run kept for its report (the last ones).
STEPS_SHOWN = 400


@dataclass(frozen=True)
class RunSettings:
    """How every run of one exploration runs."""

    #: More steps than this fail the run as a livelock.
    max_steps: int = 10_000
    #: Seconds a thread may stay away from scheduling points before the run
    #: fails as a stall.
    stall_timeout: float = 5.0
    #: Files whose every line (or opcode) is a scheduling point too.
    traced_files: frozenset[str] = frozenset()
    trace_opcodes: bool = False
    #: Modules (by name) whose globals bound to ``time.monotonic``,
    #: ``time.sleep``... (``from time import monotonic``) are rebound to the
    #: virtual ones for the exploration: the test's own.
    rebound_modules: frozenset[str] = frozenset()


class _Aborted(BaseException):
    """Unwinds a thread of a run that is being stopped (never reaches the user)."""


class _Managed:
    """One thread of a run, as the scheduler sees it."""

    __slots__ = (
        "deadline",
        "free",
        "gate",
        "ident",
        "key",
        "name",
        "ordinal",
        "owed",
        "ready",
        "spin_mark",
        "spin_site",
        "spinning",
        "state",
        "timed_out",
        "waits_for",
        "wake",
        "yielded",
    )

    def __init__(self, ordinal: int, name: str) -> None:
        self.ordinal = ordinal
        self.name = name
        self.gate = allocate_lock()
        self.gate.acquire()  # closed: the thread waits here for its turn
        self.state = RUNNABLE
        self.ready: Callable[[], bool] | None = None
        self.deadline: float | None = None
        self.timed_out = False
        self.waits_for: Any = None
        self.ident: int | None = None
        #: The id of its ``threading.Thread`` (what its start and join events
        #: name), for the steps' footprints; ``None`` for the test's thread.
        self.key: int | None = None
        #: Set while the thread runs code that must block for real (starting a
        #: thread waits for it to boot), outside the model.
        self.free = False
        #: Fairness (see ``Run.point``): when the thread last yielded (a
        #: sequence number, ``None`` once it ran again), and the threads that
        #: were eligible then and must each take a step before it runs again.
        self.yielded: int | None = None
        self.owed: set[int] = set()
        #: Its last scheduling point was a yield: it is only spinning.
        self.spinning = False
        #: The site of its last yield-ish point and :attr:`Run.handoffs` then,
        #: to tell a spin (back at the same site, nobody else ran) from a pass.
        self.spin_site: tuple[CodeType | None, int] | None = None
        self.spin_mark = -1
        #: While in ``time.sleep``: the virtual time it wakes up at.
        self.wake: float | None = None

    def label(self) -> str:
        return f"#{self.ordinal} {self.name!r}"


class Run:
    """One run: its threads, whose turn it is, and the choices made."""

    def __init__(
        self,
        strategy: Strategy,
        number: int,
        max_steps: int,
        traced_files: frozenset[str] = frozenset(),
        trace_opcodes: bool = False,
    ) -> None:
        self.strategy = strategy
        self.number = number
        self.max_steps = max_steps
        #: Files whose every line (or opcode) is a scheduling point.
        self.traced_files = traced_files
        self.trace_opcodes = trace_opcodes
        self.guard = allocate_lock()
        self.threads: list[_Managed] = []
        #: The threads that have not finished, in creation order.
        self._live: list[_Managed] = []
        #: How many threads owe a step to others (yielded, see ``_yield``):
        #: while none do, fairness has nothing to check.
        self._owing = 0
        self.by_ident: dict[int, _Managed] = {}
        self.current: _Managed | None = None
        self.choices: list[int] = []
        #: Switches away from a thread that could have gone on.
        self.preemptions = 0
        self.steps: deque[tuple[int, str, str, CodeType | None, int]] = deque(maxlen=STEPS_SHOWN)
        self.moves = 0  # progress counter, for the stall check
        #: Virtual time, in seconds since the run began.
        self.clock = 0.0
        #: How many times the turn went to another thread.
        self.handoffs = 0
        self._yields = 0
        self.alive = 0
        self._signalled = False
        self.failure: tuple[str, str] | None = None
        self.aborting = False
        self.done = allocate_lock()
        self.done.acquire()
        #: Footprints of the steps, for a strategy that wants them
        #: (``tracks_steps``: partial-order reduction): the objects the
        #: running step touched (run-wide numbers, in first-touch order), the
        #: threads it started, whether no choice led to it, and the threads
        #: whose next step may touch anything (they stopped at a yield point).
        self.tracking = strategy.tracks_steps
        self._touched: dict[int, int] = {}
        self._numbers: dict[int, int] = {}
        self._started: list[int] = []
        self._forced = True
        self._anything_next: set[int] = set()
        self._anything_after = False

    # -- threads ---------------------------------------------------------------

    def add_thread(self, name: str) -> _Managed:
        with self.guard:
            managed = _Managed(len(self.threads), name)
            self.threads.append(managed)
            self._live.append(managed)
            self.alive += 1
            return managed

    def enter(self, managed: _Managed) -> None:
        """In the new thread: wait for its first turn."""
        managed.ident = get_ident()
        with self.guard:
            self.by_ident[managed.ident] = managed
        self._wait_turn(managed)

    def touch(self, key: int, mode: int) -> None:
        """The running step uses the object ``key`` (an ``id``, or
        :data:`ANY_OBJECT`) as ``mode`` says (guard held, or the turn ours)."""
        if key != ANY_OBJECT:
            number = self._numbers.get(key)
            if number is None:
                number = self._numbers[key] = len(self._numbers)
            key = number
        before = self._touched.get(key)
        self._touched[key] = mode if before is None or before == mode else WRITE

    def _observe(self, me: _Managed) -> None:
        """``me``'s step ended: tell the strategy what it touched."""
        ordinal = me.ordinal
        if ordinal in self._anything_next:
            self._anything_next.discard(ordinal)
            self._touched[ANY_OBJECT] = WRITE
        if self._anything_after:
            self._anything_after = False
            self._anything_next.add(ordinal)
        touched, started = self._touched, self._started
        self._touched, self._started = {}, []
        self.strategy.observe(ordinal, touched, self._forced, started)

    def _wait_turn(self, managed: _Managed) -> None:
        managed.gate.acquire()
        if self.aborting:
            raise _Aborted

    def finish(self, managed: _Managed) -> None:
        """The thread's code ended (or unwound): hand the turn on, never wait."""
        with self.guard:
            managed.state = FINISHED
            self._live.remove(managed)
            if managed.owed:
                managed.owed = set()
                self._owing -= 1
            self.by_ident.pop(managed.ident or 0, None)
            self.alive -= 1
            if self.tracking and managed.key is not None:
                self.touch(managed.key, RELEASE)  # what a join waits for
            if not self.aborting and self.current is managed:
                following = self._pick(managed)
                if following is not None:
                    self.current = following
                    self.handoffs += 1
                    following.gate.release()
            if self.alive == 0:
                self._signal_done()

    def _signal_done(self) -> None:
        if not self._signalled:
            self._signalled = True
            self.done.release()

    def fail(self, kind: str, detail: str) -> None:
        with self.guard:
            self._abort(kind, detail)

    def _abort(self, kind: str, detail: str) -> None:
        """Stop the run (guard held): every waiting thread unwinds."""
        if self.failure is None:
            self.failure = (kind, detail)
        if self.aborting:
            return
        self.aborting = True
        me = get_ident()
        for managed in self.threads:
            # A gate already open (a turn just given) must not be released twice.
            if managed.state != FINISHED and managed.ident != me and managed.gate.locked():
                managed.gate.release()
        if self.alive == 0:
            self._signal_done()

    # -- scheduling ------------------------------------------------------------

    def _candidates(self, me: _Managed | None) -> list[int]:
        """The threads that can run now, ``me`` first: runnable ones, blocked
        ones whose wait can end, and timed waits whose deadline the virtual
        clock passed (a sleeping thread woke up later than it)."""
        clock = self.clock
        ready = [
            managed.ordinal
            for managed in self._live
            if managed.state == RUNNABLE
            or (
                managed.state == BLOCKED
                and (
                    (managed.ready is not None and managed.ready())
                    or (managed.deadline is not None and managed.deadline < clock)
                )
            )
        ]
        if me is not None and me.ordinal in ready:
            ready.remove(me.ordinal)
            ready.insert(0, me.ordinal)
        return ready

    def _eligible(self, candidates: list[int]) -> list[int]:
        """The candidates fairness lets run: not those that yielded while
        others, which can still run, have not taken a step since."""
        if not self._owing:
            return candidates
        present = set(candidates)
        threads = self.threads
        return [ordinal for ordinal in candidates if not threads[ordinal].owed & present]

    def _yield(self, me: _Managed) -> None:
        """``me`` lets the others run: each thread eligible now must take a
        step (or stop being able to run) before ``me`` runs again."""
        self._yields += 1
        me.yielded = self._yields
        others = [ordinal for ordinal in self._candidates(None) if ordinal != me.ordinal]
        had = bool(me.owed)
        me.owed = set(self._eligible(others))
        self._owing += bool(me.owed) - had

    def _next_timed(self, candidates: list[int]) -> _Managed | None:
        """When every thread that can run only spins, virtual time passes:
        the thread with the earliest timed wait or sleep still pending, if any."""
        clock = self.clock
        timed = [m for m in self.threads if m.state == BLOCKED and m.deadline is not None]
        sleeping = [self.threads[o] for o in candidates if (self.threads[o].wake or clock) > clock]
        if not timed and not sleeping:
            return None
        return min(
            timed + sleeping,
            key=lambda m: (m.deadline if m.state == BLOCKED else m.wake) or 0.0,
        )

    def _offered(self, candidates: list[int]) -> list[int] | _Managed:
        """The candidates the strategy may choose among, fairly; or the
        thread whose timeout fires (or sleep ends) because every thread that
        can run only spins."""
        threads = self.threads
        if all(threads[ordinal].spinning for ordinal in candidates):
            timed = self._next_timed(candidates)
            if timed is not None:
                if timed.state == BLOCKED:
                    return timed
                return [timed.ordinal]
        eligible = self._eligible(candidates)
        if eligible:
            return eligible
        # Every one yielded to another that yielded: round robin, the one
        # that yielded first goes.
        return [min(candidates, key=lambda ordinal: threads[ordinal].yielded or 0)]

    def _time_out(self, following: _Managed) -> _Managed:
        """``following``'s timed wait ends by its timeout: the clock jumps to it."""
        self.clock = max(self.clock, following.deadline or 0.0)
        following.state, following.timed_out = RUNNABLE, True
        self._forced = True
        self._ran(following)
        return following

    def _ran(self, following: _Managed) -> None:
        """``following`` takes the next step: the yields waiting for it are served."""
        following.yielded = None
        if not self._owing:
            return
        ordinal = following.ordinal
        for managed in self._live:
            owed = managed.owed
            if ordinal in owed:
                owed.discard(ordinal)
                if not owed:
                    self._owing -= 1

    def _livelock(self, candidates: list[int]) -> str:
        detail = (
            f"the run took more than {self.max_steps} steps (max_steps): "
            "threads keep running without finishing"
        )
        if all(self.threads[ordinal].spinning for ordinal in candidates):
            names = ", ".join(self.threads[ordinal].label() for ordinal in candidates)
            detail += (
                f"; every thread that can run ({names}) only spins (sleeps, yields or "
                "retries a non-blocking acquire) and each was given its turn fairly, "
                "so no fair schedule lets them progress"
            )
        return detail

    def _pick(self, me: _Managed | None) -> _Managed | None:
        """The thread to run next (guard held); ``None`` after aborting the run
        (deadlock, step bound) or when every thread finished."""
        if self.tracking and me is not None and not self.aborting:
            try:
                self._observe(me)
            except ReplayDivergedError as error:
                self._abort("replay", str(error))
                return None
        candidates = self._candidates(me)
        if candidates:
            if len(self.choices) >= self.max_steps:
                self._abort("livelock", self._livelock(candidates))
                return None
            offered = self._offered(candidates)
            if isinstance(offered, _Managed):
                return self._time_out(offered)
            current = me.ordinal if me is not None and me.state != FINISHED else None
            try:
                chosen = self.strategy.choose(offered, current, len(self.choices))
            except ReplayDivergedError as error:
                self._abort("replay", str(error))
                return None
            except RedundantRunError as error:
                self._abort("redundant", str(error))
                return None
            self._forced = False
            self.choices.append(chosen)
            if current is not None and chosen != current and current in offered:
                self.preemptions += 1
            following = self.threads[chosen]
            if following.state == BLOCKED:  # its wait ended, or its deadline passed
                following.timed_out = following.ready is None or not following.ready()
            else:
                following.timed_out = False
            following.state = RUNNABLE
            self._ran(following)
            return following
        timed = [m for m in self.threads if m.state == BLOCKED and m.deadline is not None]
        if timed:
            return self._time_out(min(timed, key=lambda m: (m.deadline or 0.0, m.ordinal)))
        if any(managed.state != FINISHED for managed in self.threads):
            self._abort("deadlock", self._describe_deadlock())
        return None

    def _switch(self, me: _Managed, following: _Managed | None) -> None:
        """Give the turn to ``following`` and wait for ours (guard held; released here)."""
        if following is None:  # the run was aborted
            self.guard.release()
            raise _Aborted
        if following is me:
            self.guard.release()
            return
        self.current = following
        self.handoffs += 1
        following.gate.release()
        self.guard.release()
        self._wait_turn(me)

    def point(
        self,
        me: _Managed,
        event: str,
        name: str,
        code: CodeType | None,
        offset: int,
        kind: int = STEP,
        key: int | None = None,
        mode: int = WRITE,
    ) -> None:
        """A scheduling point of the running thread ``me``, after a step that
        used the object ``key`` (``id`` of a primitive, :data:`ANY_OBJECT`
        for anything: then the thread's next step may touch anything too;
        ``None``: nothing) as ``mode`` says.

        Fairness: a *yield* (``kind`` :data:`YIELD`, or :data:`SPIN` when the
        thread is back at the same site with no other thread having run since)
        lets the others run.  ``me`` runs again only after every thread that
        could have run instead has taken a step or stopped being able to run,
        as fair schedulers do (loom's ``yield_now``, Coyote's and Shuttle's
        fair scheduling).  So a spin-wait whose condition another thread will
        make true is never an endless loop, and a run hits ``max_steps`` only
        when no fair schedule makes progress.  When every thread that can run
        only spins, virtual time passes: the earliest timed wait times out,
        or the earliest sleep ends.
        """
        self.guard.acquire()
        if self.aborting:
            self.guard.release()
            raise _Aborted
        self.moves += 1
        self.steps.append((me.ordinal, event, name, code, offset))
        if key is not None and self.tracking:
            self.touch(key, mode)
            if key == ANY_OBJECT:
                self._anything_after = True
        if kind == STEP:
            me.spinning = False
        else:
            spins = True
            if kind == SPIN:
                site = (code, offset)
                spins = me.spin_site == site and me.spin_mark == self.handoffs
                me.spin_site, me.spin_mark = site, self.handoffs
            me.spinning = spins
            if spins:
                self._yield(me)
        self._switch(me, self._pick(me))

    def block(
        self, me: _Managed, primitive: Any, ready: Callable[[], bool], timeout: float
    ) -> bool:
        """Wait, modelled, until ``ready()``; ``False`` if the (virtual) timeout fired."""
        self.guard.acquire()
        if self.aborting:
            self.guard.release()
            raise _Aborted
        self.moves += 1
        me.state, me.ready, me.waits_for = BLOCKED, ready, primitive
        me.spinning = False
        me.deadline = self.clock + timeout if timeout >= 0 else None
        self.steps.append((me.ordinal, "blocks on", _describe(primitive), None, 0))
        self._switch(me, self._pick(me))
        me.ready = me.waits_for = None
        me.deadline = None
        return not me.timed_out

    def _describe_deadlock(self) -> str:
        lines = ["no thread can run: every live thread waits without a timeout"]
        for managed in self.threads:
            if managed.state == BLOCKED:
                what = managed.waits_for
                line = f"  thread {managed.label()} waits for {_describe(what)}"
                owner = getattr(what, "_owner", None)
                holder = next((m for m in self.threads if m.ident == owner), None)
                if holder is not None:
                    line += f", held by thread {holder.label()}"
                lines.append(line)
        return "\n".join(lines)

    def readable_steps(self) -> list[str]:
        names = {managed.ordinal: managed.label() for managed in self.threads}
        lines = []
        for ordinal, event, name, code, offset in self.steps:
            site = describe_offset(code, offset) if code is not None else None
            where = f" at {site}" if site else ""
            what = f"{event} {name}" if name else event
            lines.append(f"{names.get(ordinal, ordinal)}: {what}{where}")
        return lines


def _describe(primitive: Any) -> str:
    if isinstance(primitive, ModelLock):
        return "a condition's notify (or another threading-internal lock)"
    if isinstance(primitive, threading.Thread):
        return f"thread {primitive.name!r} to finish"
    kind = getattr(primitive, "_kind", type(primitive).__name__)
    name = getattr(primitive, "name", None)
    return f"{kind} {name!r}" if name is not None else kind


# -- the process-wide state while exploring -------------------------------------

_active: Run | None = None


def controlling() -> _Managed | None:
    """The calling thread's scheduler entry, if a run controls it now."""
    run = _active
    if run is None:
        return None
    managed = run.by_ident.get(get_ident())
    return None if managed is None or managed.free else managed


def block(primitive: Any, ready: Callable[[], bool], timeout: float) -> bool:
    """For the primitives: wait, modelled, until ``ready()`` (see :meth:`Run.block`)."""
    run = _active
    managed = controlling()
    assert run is not None
    assert managed is not None
    return run.block(managed, primitive, ready, timeout)


def acquire_lock(raw: Any, primitive: Any, timeout: float) -> bool:
    """A contended acquire of a traced lock's raw lock, modelled."""
    while True:
        if not block(primitive, lambda: not raw.locked(), timeout):
            return False
        if raw.acquire(False):
            return True


def _sink(record: Record) -> None:
    """Every observed operation of a controlled thread is a scheduling point.

    Diagnostics (warning and error events) are not: the detectors report a
    finding once per process, so making them points would make a run's steps
    depend on the runs before it.
    """
    run = _active
    if run is None or record[4] > _hooks.DEBUG:
        return
    managed = run.by_ident.get(get_ident())
    if managed is None or managed.free:
        return
    data = record[8]
    # A failed non-blocking acquire, retried in a loop, is a spin.
    kind = SPIN if type(data) is dict and data.get("outcome") == "would_block" else STEP
    event = record[3]
    if not run.tracking:
        run.point(managed, event, record[5][2], record[6], record[7], kind)
        return
    key: int | None = record[5][1]
    mode = WRITE
    if event.endswith(".blocked"):
        key = None  # it only says a wait begins: the wait itself is not a use
    elif event in _LOCK_EVENTS and data:
        fields: dict[str, Any] = (
            dict(zip(data[::2], data[1::2], strict=False)) if isinstance(data, tuple) else data
        )
        outcome = fields.get("outcome")
        if event.endswith(".release"):
            mode = RELEASE if outcome == "released" else WRITE
        elif (
            outcome in ("acquired", "joined")
            and fields.get("blocking", True) is True
            and fields.get("timeout") in (None, -1)
        ):
            # Waiting without a timeout: it could not have happened before the
            # release (or the end) that let it.  A try or a timed wait could
            # (it would have failed): that order is a different interleaving.
            mode = ACQUIRE
    run.point(managed, event, record[5][2], record[6], record[7], kind, key, mode)


#: Events of the lock-like uses of an object: a lock taken (or a thread
#: joined, once it finished) only after the release (or the end) before it.
_LOCK_EVENTS = frozenset(
    {"lock.acquire", "lock.release", "rlock.acquire", "rlock.release", "thread.join"}
)


def yield_point() -> None:
    """A scheduling point when called by a thread :func:`explore` controls;
    nothing otherwise.  Put it where a preemption matters in code that has no
    synchronisation operation there (between a read and a write).

    Reached again by the same thread with no other thread having run since
    (``while not done: yield_point()``), it is a spin, and lets the others
    run (see ``Run.point``)."""
    if _active is not None:
        point_at_caller("yield_point", "", 2, SPIN)


def point_at_caller(event: str, name: str, depth: int, kind: int = STEP) -> None:
    """A scheduling point labelled ``event name``, at the user's frame
    ``depth`` frames up, if a run controls the calling thread."""
    run = _active
    managed = controlling()
    if run is not None and managed is not None:
        frame = user_frame(sys._getframe(depth))
        code, offset = (None, 0) if frame is None else (frame.f_code, frame.f_lasti)
        run.point(managed, event, name, code, offset, kind, ANY_OBJECT)


_real_sleep = time.sleep
_real_sched_yield: Callable[[], None] | None = getattr(os, "sched_yield", None)


def _sleep(seconds: float) -> None:
    """``time.sleep`` while exploring: in a controlled thread a yield (the
    others run first) that ends ``seconds`` later in virtual time."""
    run = _active
    managed = controlling()
    if run is None or managed is None:
        _real_sleep(seconds)
        return
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    managed.wake = run.clock + seconds
    try:
        point_at_caller("time.sleep", f"({seconds})", 2, YIELD)
    finally:
        if managed.wake is not None:  # the turn is ours: the clock reaches our wake-up
            run.clock = max(run.clock, managed.wake)
        managed.wake = None


#: The clocks that read virtual time in a controlled thread while exploring.
_CLOCK_NAMES = (
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
    "time",
    "time_ns",
)


def _virtual_clock(name: str) -> Callable[[], float | int]:
    """``time.<name>`` while exploring: in a controlled thread, the real
    reading at the exploration's start plus the run's virtual time (which
    only sleeps and timeouts advance); the real clock elsewhere."""
    real: Callable[[], float | int] = getattr(time, name)
    base = real()
    if name.endswith("_ns"):

        def clock() -> float | int:
            run = _active
            if run is not None and controlling() is not None:
                return base + round(run.clock * 1_000_000_000)
            return real()

    else:

        def clock() -> float | int:
            run = _active
            if run is not None and controlling() is not None:
                return base + run.clock
            return real()

    clock.__name__ = clock.__qualname__ = name
    clock.__doc__ = real.__doc__
    return clock


def _sched_yield() -> None:
    """``os.sched_yield`` while exploring: a yield in a controlled thread."""
    if _active is not None and controlling() is not None:
        point_at_caller("os.sched_yield", "", 2, YIELD)
    elif _real_sched_yield is not None:
        _real_sched_yield()


def _touch(lock: ModelLock, mode: int) -> None:
    """A model lock is used by the running thread of a run that tracks steps
    (its operations report no event, so no scheduling point reports them)."""
    run = _active
    if run is not None and run.tracking:
        managed = run.by_ident.get(get_ident())
        if managed is not None and managed is run.current and not managed.free:
            run.touch(id(lock), mode)


class ModelLock:
    """``threading._allocate_lock`` while exploring: a raw lock whose blocking
    acquire in a controlled thread is a modelled wait (the waiter lock of every
    ``threading.Condition`` is one)."""

    __slots__ = ("_raw",)

    def __init__(self) -> None:
        self._raw = allocate_lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._raw.acquire(False):
            _touch(self, ACQUIRE if blocking and timeout < 0 else WRITE)
            return True
        if not blocking:
            _touch(self, WRITE)
            return False
        if controlling() is not None:
            if acquire_lock(self._raw, self, timeout):
                _touch(self, ACQUIRE if timeout < 0 else WRITE)
                return True
            _touch(self, WRITE)
            return False
        return self._raw.acquire(blocking, timeout)

    __enter__ = acquire

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        _touch(self, RELEASE)
        self._raw.release()

    def locked(self) -> bool:
        return self._raw.locked()

    def _at_fork_reinit(self) -> None:
        self._raw = allocate_lock()


# -- threads --------------------------------------------------------------------


def starting(thread: threading.Thread) -> None:
    """Called by ``Thread.start`` in a controlled thread: the new thread joins
    the run, and waits for its turn before its ``run()``."""
    run = _active
    assert run is not None
    managed = run.add_thread(thread.name)
    thread._tracedsync_managed = managed  # type: ignore[attr-defined]
    if run.tracking:
        managed.key = id(thread)
        run.touch(id(thread), WRITE)
        run._started.append(managed.ordinal)
    original_run = thread.run

    def controlled_run() -> None:
        _run_managed(run, managed, original_run)

    thread.run = controlled_run  # type: ignore[method-assign]


def start_unmodelled(start: Callable[[], None]) -> None:
    """Run ``start`` (``threading.Thread.start``, which waits for the new
    thread to boot) blocking for real: the new thread is not controlled yet."""
    managed = controlling()
    assert managed is not None
    managed.free = True
    try:
        start()
    finally:
        managed.free = False


def join(thread: threading.Thread, timeout: float | None) -> bool:
    """A controlled ``join``: wait, modelled, until ``thread`` finished.

    Returns whether to go on with the real join (the thread's code ended).
    """
    target: _Managed | None = getattr(thread, "_tracedsync_managed", None)
    if target is None or _active is None or target not in _active.threads:
        return True  # not a thread of this run: the real join, uncontrolled
    if target.state == FINISHED:
        return True
    return block(thread, lambda: target.state == FINISHED, -1 if timeout is None else timeout)


class _Interface:
    """This module as the primitives see it (:class:`_control.Explorer`)."""

    controlling = staticmethod(controlling)
    acquire_lock = staticmethod(acquire_lock)
    join = staticmethod(join)
    starting = staticmethod(starting)
    start_unmodelled = staticmethod(start_unmodelled)
    point_at_caller = staticmethod(point_at_caller)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _format_error(error: BaseException) -> str:
    """The exception's traceback without tracedsync's own frames."""
    shown = traceback.TracebackException.from_exception(error)
    shown.stack = traceback.StackSummary.from_list(
        [frame for frame in shown.stack if not frame.filename.startswith(_PACKAGE)]
    )
    return "".join(shown.format()).rstrip()


#: CPython 3.12+ has ``sys.monitoring``; its ``sys.settrace`` misses the opcode
#: events of a code object's first execution, which would make runs differ.
_MONITORING = sys.version_info >= (3, 12)
#: ``sys.monitoring`` where it exists (typed loosely: it does not before 3.12).
_sys_monitoring: Any = vars(sys).get("monitoring")


def _settrace_points(run: Run) -> Callable[..., Any]:
    """Before 3.12: a ``sys.settrace`` function making every line (or opcode)
    of the run's traced files a scheduling point."""
    files, opcodes = run.traced_files, run.trace_opcodes
    wanted = "opcode" if opcodes else "line"

    def in_frame(frame: Any, event: str, argument: Any) -> Any:
        if event == wanted and _active is run:
            managed = run.by_ident.get(get_ident())
            if managed is not None and not managed.free:
                run.point(managed, event, "", frame.f_code, frame.f_lasti, STEP, ANY_OBJECT)
        return in_frame

    def on_call(frame: Any, event: str, argument: Any) -> Any:
        if frame.f_code.co_filename not in files:
            return None
        if opcodes:
            frame.f_trace_opcodes = True
        return in_frame

    return on_call


class _MonitoringPoints:
    """3.12+: ``sys.monitoring`` makes every line (or instruction) of the
    traced files a scheduling point, from a code object's first execution."""

    def __init__(self, settings: RunSettings) -> None:
        self.files = settings.traced_files
        self.opcodes = settings.trace_opcodes
        self.tool: int | None = None
        self.instrumented: list[Any] = []
        self._line_offsets: dict[tuple[Any, int], int] = {}

    def start(self) -> None:
        monitoring = _sys_monitoring
        free = [tool for tool in (3, 4) if monitoring.get_tool(tool) is None]
        if not free:
            raise RuntimeError("no sys.monitoring tool id is free for line-level exploring")
        self.tool = free[0]
        events = monitoring.events
        monitoring.use_tool_id(self.tool, "tracedsync.explore")
        monitoring.register_callback(self.tool, events.PY_START, self._on_start)
        if self.opcodes:
            monitoring.register_callback(self.tool, events.INSTRUCTION, self._on_instruction)
        else:
            monitoring.register_callback(self.tool, events.LINE, self._on_line)
        monitoring.set_events(self.tool, events.PY_START)

    def stop(self) -> None:
        monitoring = _sys_monitoring
        if self.tool is None:
            return
        monitoring.set_events(self.tool, 0)
        for code in self.instrumented:
            monitoring.set_local_events(self.tool, code, 0)
        monitoring.free_tool_id(self.tool)
        monitoring.restart_events()
        self.tool = None

    def _on_start(self, code: Any, offset: int) -> Any:
        monitoring = _sys_monitoring
        if code.co_filename not in self.files:
            return monitoring.DISABLE
        wanted = monitoring.events.INSTRUCTION if self.opcodes else monitoring.events.LINE
        if monitoring.get_local_events(self.tool, code) != wanted:
            monitoring.set_local_events(self.tool, code, wanted)
            self.instrumented.append(code)
        return None

    def _point(self, event: str, code: Any, offset: int) -> None:
        run = _active
        if run is None:
            return
        managed = run.by_ident.get(get_ident())
        if managed is not None and not managed.free:
            run.point(managed, event, "", code, offset, STEP, ANY_OBJECT)

    def _on_instruction(self, code: Any, offset: int) -> None:
        self._point("opcode", code, offset)

    def _on_line(self, code: Any, line: int) -> None:
        key = (code, line)
        offset = self._line_offsets.get(key)
        if offset is None:
            found = (start for start, _, number in code.co_lines() if number == line)
            offset = self._line_offsets[key] = next(found, 0)
        self._point("line", code, offset)


def _run_managed(run: Run, managed: _Managed, body: Callable[[], object]) -> None:
    try:
        run.enter(managed)
        if run.traced_files and not _MONITORING:
            sys.settrace(_settrace_points(run))
        body()
    except _Aborted:
        pass
    except BaseException as error:  # reported as the run's failure
        kind = "exception"
        if isinstance(error, DeadlockError):
            kind = "deadlock"
        elif isinstance(error, AssertionError):
            kind = "assertion"
        run.fail(kind, f"thread {managed.label()} raised:\n{_format_error(error)}")
    finally:
        if run.traced_files and not _MONITORING:
            sys.settrace(None)
        run.finish(managed)


@contextmanager
def installed(settings: RunSettings) -> Iterator[None]:
    """The process-wide pieces of an exploration, for its duration."""
    original_allocate = threading._allocate_lock  # type: ignore[attr-defined]
    # What replaces what, in the time and os modules and in the test's own
    # modules (names bound by ``from time import monotonic``).
    replaced: dict[int, tuple[Any, Any]] = {id(_real_sleep): (_real_sleep, _sleep)}
    for name in _CLOCK_NAMES:
        real = getattr(time, name)
        replaced[id(real)] = (real, _virtual_clock(name))
    if _real_sched_yield is not None:
        replaced[id(_real_sched_yield)] = (_real_sched_yield, _sched_yield)
    rebound: list[tuple[Any, str, Any]] = []
    modules = [time, os] + [
        module
        for name in sorted(settings.rebound_modules)
        if (module := sys.modules.get(name)) is not None and module not in (time, os)
    ]
    for module in modules:
        for attribute, value in list(vars(module).items()):
            found = replaced.get(id(value))
            if found is not None and found[0] is value:
                rebound.append((module, attribute, value))
                setattr(module, attribute, found[1])
    threading._allocate_lock = ModelLock  # type: ignore[attr-defined]
    _hooks.add_sink(_sink)
    _control.install(_Interface)
    fine = _MonitoringPoints(settings) if settings.traced_files and _MONITORING else None
    try:
        if fine is not None:
            fine.start()
        yield
    finally:
        if fine is not None:
            fine.stop()
        _control.uninstall()
        _hooks.remove_sink(_sink)
        for module, attribute, value in reversed(rebound):
            setattr(module, attribute, value)
        threading._allocate_lock = original_allocate  # type: ignore[attr-defined]


def _stack_of(ident: int | None) -> str:
    frame = sys._current_frames().get(ident or 0)
    if frame is None:
        return "  (no stack)"
    lines: list[str] = []
    while frame is not None and len(lines) < 8:
        site = describe_site(frame.f_code, frame.f_lineno)
        if site is not None:
            lines.append(f"    {site}")
        frame = frame.f_back
    return "\n".join(lines)


def one_run(
    test: Callable[[], object], strategy: Strategy, number: int, settings: RunSettings
) -> Run:
    """Run ``test`` once under ``strategy``; the run says how it ended
    (``failure``) and what it did (``choices``, ``preemptions``, steps)."""
    global _active
    run = Run(strategy, number, settings.max_steps, settings.traced_files, settings.trace_opcodes)
    stall = settings.stall_timeout
    strategy.start_run(number)
    main = run.add_thread("test")
    runner = threading.Thread(
        target=_run_managed, args=(run, main, test), name="tracedsync-explore", daemon=True
    )
    _active = run
    try:
        runner.start()
        with run.guard:
            run.current = main
            main.gate.release()
        last_moves, last_change = -1, monotonic()
        while not run.done.acquire(True, 0.05):
            if run.moves != last_moves:
                last_moves, last_change = run.moves, monotonic()
            elif monotonic() - last_change > stall and not run.aborting:
                current = run.current
                label = current.label() if current is not None else "?"
                run.fail(
                    "stall",
                    f"thread {label} did not come back to a scheduling point within "
                    f"{stall:g} s: it blocks on something tracedsync does not control "
                    "(I/O, an untraced lock, a C extension) or computes for that long; "
                    f"it is at:\n{_stack_of(current.ident if current else None)}",
                )
                if not run.done.acquire(True, stall):
                    break  # that thread is stuck for good; leave it (a daemon)
                break
    finally:
        _active = None
    runner.join(stall)
    strategy.end_run(len(run.choices))
    return run
