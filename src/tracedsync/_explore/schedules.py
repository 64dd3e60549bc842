"""Strategies for the controlled scheduler: which thread runs next.

At every scheduling point :mod:`tracedsync._explore.runs` asks its strategy to
pick one of the *candidates*: the threads that can run now, the thread that
just ran first (when it can go on), then the others in creation order.  A
strategy sees thread *ordinals* (0 for the test's own thread, then 1, 2 ... in
the order threads were started), never OS identifiers, so one schedule means
the same interleaving in every run of a deterministic test.

* :class:`RandomStrategy`: uniformly at random (shuttle's random scheduler).
* :class:`PCTStrategy`: probabilistic concurrency testing (Burckhardt et al.,
  ASPLOS 2010): random thread priorities, the highest runnable one runs, and
  ``depth - 1`` random steps lower the running thread's priority.  A bug of
  depth ``d`` is found with probability at least ``1 / (n * k ** (d - 1))``
  per run, for ``n`` threads and ``k`` steps.
* :class:`ExhaustiveStrategy`: every interleaving, by iterative preemption
  bounding (every one with no preemption, then with 1, 2 ...; CHESS,
  SCTBench), optionally up to a ``preemption_bound``.
* :class:`DPORStrategy`: every interleaving up to equivalence, by dynamic
  partial-order reduction with sleep sets (Flanagan and Godefroid, POPL
  2005): two orders of independent steps (steps on different primitives)
  are one interleaving, explored once.
* :class:`ReplayStrategy`: the choices recorded in a token.
* :class:`ChoiceSchedule`: the default schedule (no preemptions) with a list
  of deviations, which Hypothesis draws and shrinks to the fewest.
"""

from __future__ import annotations

import base64
import random
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Any

from tracedsync._sites import register_internal_module

__all__ = [
    "ACQUIRE",
    "ANY_OBJECT",
    "RELEASE",
    "WRITE",
    "ChoiceSchedule",
    "DPORStrategy",
    "ExhaustiveStrategy",
    "PCTStrategy",
    "RandomStrategy",
    "RedundantRunError",
    "ReplayDivergedError",
    "ReplayStrategy",
    "Strategy",
    "decode_token",
    "encode_token",
    "make_strategy",
    "schedules",
]

register_internal_module(__file__)

_TOKEN_PREFIX = "ts1."


def encode_token(choices: Sequence[int]) -> str:
    """A compact, copyable token for a run's choices (thread ordinals per step)."""
    if any(not 0 <= choice < 256 for choice in choices):
        raise ValueError("a schedule token holds at most 256 threads")
    packed = zlib.compress(bytes(choices), 9)
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def decode_token(token: str) -> list[int]:
    """The choices of a token made by :func:`encode_token`."""
    if not isinstance(token, str) or not token.startswith(_TOKEN_PREFIX):
        raise ValueError(f"not a tracedsync schedule token: {token!r}")
    body = token[len(_TOKEN_PREFIX) :]
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return list(zlib.decompress(packed))
    except (ValueError, zlib.error):
        raise ValueError(f"damaged tracedsync schedule token: {token!r}") from None


class ReplayDivergedError(RuntimeError):
    """A replayed run asked for a thread that cannot run at that step: the test
    is not deterministic apart from its scheduling, or the token is another
    test's."""


class RedundantRunError(RuntimeError):
    """The partial-order reduction stops a run: every thread that could run
    next is in the sleep set, so every continuation is equivalent to one
    already explored (not a failure of the test)."""


#: How a step used an object (see :meth:`Strategy.observe`): a lock taken, a
#: lock released, anything else (a write, as far as reordering goes).
ACQUIRE, RELEASE, WRITE = 1, 2, 3
#: The key of a step that may touch anything (a yield point, a sleep, a
#: guarded attribute, a traced line): dependent on every other step.
ANY_OBJECT = -1


class Strategy:
    """Base class of strategies; see the module docstring."""

    #: Runs to make when ``explore`` is given no ``runs``.
    default_runs = 100
    #: Whether the scheduler reports every step's footprint (:meth:`observe`).
    tracks_steps = False

    def observe(
        self, thread: int, footprint: dict[int, int], forced: bool, started: list[int]
    ) -> None:
        """A step ended (only when :attr:`tracks_steps`): ``thread`` ran it,
        touching ``footprint`` (object key -> :data:`ACQUIRE`, :data:`RELEASE`
        or :data:`WRITE`; keys number the run's objects in the order first
        touched, :data:`ANY_OBJECT` stands for anything); ``forced`` when no
        choice led to it (the first step, a timeout firing); ``started``: the
        threads it started."""

    def start_run(self, run: int) -> None:
        """A run begins (``run`` counts from 0)."""

    def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
        """Return the ordinal of the thread to run next, one of ``candidates``."""
        raise NotImplementedError

    def end_run(self, steps: int) -> bool:
        """A run ended after ``steps`` steps; return whether more runs make sense."""
        return True

    def describe(self) -> str:
        return type(self).__name__


class RandomStrategy(Strategy):
    """Pick any candidate, uniformly, from a seeded generator."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._random = random.Random(seed)

    def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
        return candidates[self._random.randrange(len(candidates))]

    def describe(self) -> str:
        return f"random (seed {self.seed})"


class PCTStrategy(Strategy):
    """Probabilistic concurrency testing with bug depth ``depth``, exactly as
    published (Burckhardt, Kothari, Musuvathi and Nagarakatte, "A Randomized
    Scheduler with Probabilistic Guarantees of Finding Bugs", ASPLOS 2010,
    section 3):

    1. The ``n`` threads get the priorities ``d, d + 1, ..., d + n - 1`` in a
       uniformly random order (``d`` is ``depth``).  A larger number is a
       higher priority; at every step the highest-priority thread that can
       run, runs.
    2. ``d - 1`` priority change points ``k_1, ..., k_{d-1}`` are drawn at
       random among the steps ``1 .. k`` (distinct, in the order drawn, *not*
       sorted by time).
    3. When a thread executes step ``k_i``, its priority becomes ``i``: below
       every initial priority, and below the threads demoted at ``k_j`` for
       ``j > i`` whatever their order in time.

    So a thread demoted later in time may end *below* one demoted earlier:
    "A is preempted, B runs and is preempted, A resumes" is a schedule PCT
    makes (sorting the points by time and numbering them in that order,
    as tracedsync did before, never makes it).  For a bug of depth ``d``
    (``d`` ordering constraints between steps), ``n`` threads and runs of at
    most ``k`` steps, each run finds the bug with probability at least
    ``1 / (n * k ** (d - 1))``.

    Threads are created as a run goes, so ``n`` is not known up front: each
    new thread takes a uniformly random rank among the initial priorities of
    the threads so far, which makes the final order a uniformly random
    permutation, as in step 1.  ``k`` starts at ``steps`` and grows to the
    longest run seen (the guarantee holds for runs no longer than ``k``).
    A step is what runs between two scheduling points: the change point
    ``k_i`` demotes the thread that ran the ``k_i``-th step, before the
    choice of who runs the next one.
    """

    def __init__(self, seed: int = 0, depth: int = 3, steps: int = 50) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.seed = seed
        self.depth = depth
        #: The estimate ``k`` of a run's length; grows to the longest run seen.
        self.steps = max(steps, 1)
        self._random = random.Random(seed)
        #: Threads with their initial priority, lowest first: the priority of
        #: ``_ranked[r]`` is ``depth + r`` (``_rank`` maps a thread to ``r``).
        self._ranked: list[int] = []
        self._rank: dict[int, int] = {}
        #: Threads demoted at a change point: ordinal -> ``i`` (1 .. d-1).
        self._demoted: dict[int, int] = {}
        #: Step number (1-based) -> the index ``i`` of the change point there.
        self._change_points: dict[int, int] = {}

    def start_run(self, run: int) -> None:
        self._ranked = []
        self._rank = {}
        self._demoted = {}
        count = min(self.depth - 1, self.steps)
        drawn = self._random.sample(range(1, self.steps + 1), count)
        self._change_points = {step: index for index, step in enumerate(drawn, 1)}

    def priority(self, ordinal: int) -> int:
        """The thread's current priority (a new thread gets its random rank)."""
        demoted = self._demoted.get(ordinal)
        if demoted is not None:
            return demoted
        rank = self._rank.get(ordinal)
        if rank is None:
            ranked = self._ranked
            position = self._random.randrange(len(ranked) + 1)
            ranked.insert(position, ordinal)
            for index in range(position, len(ranked)):
                self._rank[ranked[index]] = index
            rank = position
        return self.depth + rank

    def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
        # ``step`` choices were made before this one, and the first step (the
        # test's thread starting) needs none: ``step + 1`` steps have run.
        index = self._change_points.get(step + 1)
        if index is not None and current is not None:
            self._demoted[current] = index
        return max(candidates, key=self.priority)

    def end_run(self, steps: int) -> bool:
        self.steps = max(self.steps, steps)
        return True

    def describe(self) -> str:
        return f"pct (seed {self.seed}, depth {self.depth})"


#: A path prefix as a linked list sharing its beginning with others:
#: ``(prefix before the last step, choice index at the last step)``.
_Link = tuple[Any, int]


class _Step:
    """One step of the exhaustive search's current path."""

    __slots__ = ("before", "candidates", "current", "index", "link")

    def __init__(self, candidates: list[int], current: int | None, before: int) -> None:
        self.candidates = candidates
        self.current = current
        self.index = 0
        #: Preemptions on the path before this step.
        self.before = before
        #: The path up to and including this step's choice, once asked for.
        self.link: _Link | None = None

    def preemptions_with(self, index: int) -> int:
        """Preemptions on the path up to and including this step, choosing ``index``."""
        switches = self.current in self.candidates and self.candidates[index] != self.current
        return self.before + switches


class ExhaustiveStrategy(Strategy):
    """Every schedule, by iterative preemption bounding: first every schedule
    with no preemption, then every one with exactly 1, then 2, and so on,
    each schedule once, all sharing one budget of runs (as SCTBench's
    iterative preemption bounding; CHESS's iterative context bounding).

    A preemption is a switch away from a thread that could have gone on.
    Most bugs need very few, so the search finds a bug with the fewest
    preemptions first, and a budget goes to cheap schedules before costly
    ones.  ``preemption_bound`` caps the bound (``None``: no cap, until every
    schedule ran).  Switches that are not preemptions (the running thread
    blocked, yielded or ended) are free: every choice there is explored at
    every bound.

    Stateless: each run replays a path and takes the next untried choice at
    the deepest step that has one within the current bound.  A choice one
    preemption over the bound is *deferred*: the path up to it is kept (as a
    linked prefix shared with the others), and the next bound's search
    starts from each deferred path in turn.  :attr:`exhausted` tells when no
    schedule within the cap is left; :attr:`completed_bound` is the largest
    bound all of whose schedules ran.
    """

    default_runs = 10_000

    def __init__(self, preemption_bound: int | None = None) -> None:
        if preemption_bound is not None and preemption_bound < 0:
            raise ValueError("preemption_bound must be at least 0 (or None: no cap)")
        self.preemption_bound = preemption_bound
        #: The bound being searched now.
        self.bound = 0
        #: The largest bound every one of whose schedules ran (-1: none yet).
        self.completed_bound = -1
        self.exhausted = False
        #: A choice was left out because of ``preemption_bound`` (so an
        #: exhausted search covered every schedule only if this is false).
        self.capped = False
        self._path: list[_Step] = []
        #: The deferred prefix this subtree starts from, one link per step;
        #: steps below ``len(_prefix)`` are not backtracked in this subtree.
        self._prefix: list[_Link] = []
        self._position = 0
        self._pending: deque[_Link] = deque()  # this bound's subtrees to search
        self._deferred: list[_Link] = []  # the next bound's

    def start_run(self, run: int) -> None:
        self._position = 0

    def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
        ordered = list(candidates)
        position = self._position
        if position < len(self._path):
            entry = self._path[position]
            if entry.candidates != ordered or entry.current != current:
                raise ReplayDivergedError(
                    "exhaustive exploration needs a test that is deterministic apart from "
                    "its scheduling"
                )
        else:
            previous = self._path[-1] if self._path else None
            before = previous.preemptions_with(previous.index) if previous else 0
            entry = _Step(ordered, current, before)
            if position < len(self._prefix):  # a deferred prefix's step
                entry.link = self._prefix[position]
                entry.index = entry.link[1]
                if entry.index >= len(ordered):
                    raise ReplayDivergedError(
                        "exhaustive exploration needs a test that is deterministic apart "
                        "from its scheduling"
                    )
            self._path.append(entry)
        self._position += 1
        return entry.candidates[entry.index]

    def _link(self, position: int) -> _Link | None:
        """The path up to and including step ``position``, as a shared link."""
        if position < 0:
            return None
        path = self._path
        start = position
        while start >= 0 and path[start].link is None:
            start -= 1
        link = path[start].link if start >= 0 else None
        for entry in path[start + 1 : position + 1]:
            link = entry.link = (link, entry.index)
        return link

    def end_run(self, steps: int) -> bool:
        del self._path[self._position :]
        floor = len(self._prefix)
        while len(self._path) > floor:
            entry = self._path[-1]
            for following in range(entry.index + 1, len(entry.candidates)):
                if entry.preemptions_with(following) <= self.bound:
                    entry.index = following
                    entry.link = None
                    return True
                if self.preemption_bound is None or self.bound < self.preemption_bound:
                    self._deferred.append((self._link(len(self._path) - 2), following))
                else:
                    self.capped = True
            self._path.pop()
        return self._next_subtree()

    def _next_subtree(self) -> bool:
        while not self._pending:
            self.completed_bound = self.bound
            if not self._deferred:
                self.exhausted = True
                return False
            self.bound += 1
            self._pending = deque(self._deferred)
            self._deferred = []
        link: _Link | None = self._pending.popleft()
        prefix: list[_Link] = []
        while link is not None:
            prefix.append(link)
            link = link[0]
        prefix.reverse()
        self._prefix = prefix
        self._path = []
        return True

    @property
    def complete(self) -> bool:
        """Every schedule ran (not only every one within the cap)."""
        return self.exhausted and not self.capped

    def describe(self) -> str:
        cap = "" if self.preemption_bound is None else f" up to {self.preemption_bound}"
        return f"exhaustive (iterative preemption bounding{cap}, at bound {self.bound})"


#: A footprint as a sleeping thread keeps it: the keys its step touched, and
#: how many keys the run had numbered before that step (keys from there on
#: are numbered differently from one run to the next).
_Asleep = tuple[dict[int, int], int]


def _reversible(earlier: int, later: int) -> bool:
    """Whether two dependent uses of one object can happen in either order: a
    lock's release and the next acquire, or its acquire and a release by
    another thread, cannot (the lock is held in between)."""
    return not (
        (earlier == RELEASE and later == ACQUIRE) or (earlier == ACQUIRE and later == RELEASE)
    )


def _dependent(asleep: _Asleep, footprint: dict[int, int]) -> bool:
    """Whether a sleeping thread's step (observed in an earlier run) and a
    step of this run may not commute.  Keys numbered before the sleeper's
    step mean the same object in both runs; later ones may not, so any two
    of those count as the same object."""
    keys, fresh = asleep
    if ANY_OBJECT in keys or ANY_OBJECT in footprint:
        return True
    sleeper_new = other_new = False
    for key in keys:
        if key >= fresh:
            sleeper_new = True
        elif key in footprint:
            return True
    if sleeper_new:
        other_new = any(key >= fresh for key in footprint)
    return sleeper_new and other_new


class _Node:
    """One step of the DPOR search's current path: the state before it and
    what was and is still to be explored from there."""

    __slots__ = (
        "backtrack",
        "done",
        "explored",
        "footprint",
        "forced",
        "fresh",
        "offered",
        "sleep",
        "thread",
    )

    def __init__(
        self, offered: list[int], forced: bool, sleep: dict[int, _Asleep], fresh: int
    ) -> None:
        self.offered = offered
        self.forced = forced
        self.sleep = sleep
        #: Keys numbered before this step (see :data:`_Asleep`).
        self.fresh = fresh
        self.thread = -1
        self.footprint: dict[int, int] = {}
        #: Threads to run from this state: the first choice, then the ones
        #: races asked for.
        self.backtrack: set[int] = set()
        self.done: set[int] = set()
        #: The step each explored thread took from this state.
        self.explored: dict[int, _Asleep] = {}


class DPORStrategy(Strategy):
    """Every interleaving up to the order of independent steps: dynamic
    partial-order reduction with sleep sets (Flanagan and Godefroid,
    "Dynamic Partial-Order Reduction for Model Checking Software", POPL
    2005).

    A step is what a thread runs between two scheduling points; the
    scheduler reports which objects each one touched (:meth:`observe`).
    Two steps are *dependent* when they touch the same object (a lock, a
    condition, an event, a thread started or joined...), or when either is
    a yield point, a sleep, a guarded attribute access or a traced line
    (:data:`ANY_OBJECT`: plain Python data may be read or written there).
    Interleavings that differ only in the order of independent steps are
    equivalent (one Mazurkiewicz trace) and one of them runs.

    Stateless depth-first search: each run replays a path and, where an
    earlier run left a thread to try, runs it.  After every step, the last
    earlier step of another thread that it depends on and that does not
    happen before it (a *race*) gets this step's thread as a choice to try
    (or, if it could not run there, every thread that could).  A lock's
    release and the next acquire are ordered by the lock and never race.
    Sleep sets keep a thread whose next step was explored already from being
    explored again after independent steps; a run in which every thread
    that can run sleeps is stopped early (:class:`RedundantRunError`) and
    not counted as an interleaving.

    Assumes what runs between two scheduling points touches shared Python
    data only under the primitives' protection (no data race), or is marked
    with ``yield_point``; ``granularity="lines"`` makes every step dependent.
    """

    default_runs = 10_000
    tracks_steps = True

    def __init__(self) -> None:
        self._path: list[_Node] = []
        self._position = 0
        self.exhausted = False
        #: Runs stopped by the sleep sets, and runs that went to the end.
        self.redundant = 0
        self.interleavings = 0
        self._reset_run()

    def _reset_run(self) -> None:
        self._sleep: dict[int, _Asleep] = {}
        self._keys = 0
        #: Happens-before, as vector clocks of step positions (-1: none).
        self._clock_of: dict[int, list[int]] = {}
        self._step_clocks: list[list[int]] = []
        self._step_threads: list[int] = []
        self._history: dict[int, list[int]] = {}
        self._anywhere: list[int] = []
        self._latest: dict[int, int] = {}
        self._stopped = False

    def start_run(self, run: int) -> None:
        self._position = 0
        self._reset_run()

    def _node(self, offered: list[int], forced: bool) -> _Node:
        position = self._position
        if position < len(self._path):
            node = self._path[position]
            if node.offered != offered or node.forced != forced:
                raise ReplayDivergedError(
                    "exhaustive exploration needs a test that is deterministic apart from "
                    "its scheduling"
                )
            return node
        node = _Node(offered, forced, self._sleep, self._keys)
        self._path.append(node)
        return node

    def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
        node = self._node(list(candidates), False)
        if node.thread < 0:
            awake = [ordinal for ordinal in node.offered if ordinal not in node.sleep]
            if not awake:
                self._path.pop()
                self._stopped = True
                raise RedundantRunError("every thread that can run sleeps")
            node.thread = awake[0]
            node.backtrack.add(node.thread)
            node.done.add(node.thread)
        return node.thread

    def observe(
        self, thread: int, footprint: dict[int, int], forced: bool, started: list[int]
    ) -> None:
        if forced:
            node = self._node([thread], True)
            if node.thread < 0:
                node.thread = thread
                node.done.add(thread)
            elif node.thread != thread:
                raise ReplayDivergedError(
                    "exhaustive exploration needs a test that is deterministic apart from "
                    "its scheduling"
                )
        else:
            node = self._path[self._position]
        node.footprint = footprint
        node.explored[thread] = (footprint, node.fresh)
        if footprint:
            self._keys = max(self._keys, max(footprint) + 1)
        self._race(thread, footprint)
        asleep = dict(node.sleep)
        for other, taken in node.explored.items():
            if other != thread:
                asleep[other] = taken
        self._sleep = {
            other: taken for other, taken in asleep.items() if not _dependent(taken, footprint)
        }
        clock = self._clock_of.get(thread, [])
        for child in started:
            self._clock_of[child] = list(clock)
        self._position += 1

    def _race(self, thread: int, footprint: dict[int, int]) -> None:
        """Find this step's race (if any), ask for its reversal there, and
        record its happens-before clock."""
        position = len(self._step_threads)
        threads = self._step_threads
        mine = self._clock_of.get(thread, [])

        def ordered(step: int) -> bool:  # happens before this thread's step
            other = threads[step]
            return other == thread or (other < len(mine) and step <= mine[other])

        racing = -1
        sources: list[int] = []
        if ANY_OBJECT in footprint:
            for step in range(position - 1, -1, -1):
                if not ordered(step):
                    racing = step
                    break
            sources = list(self._latest.values())
        else:
            for key, mode in footprint.items():
                history = self._history.get(key)
                if not history:
                    continue
                sources.append(history[-1])
                for step in reversed(history):
                    if step <= racing or ordered(step):
                        break
                    if _reversible(self._path[step].footprint.get(key, WRITE), mode):
                        racing = step
                        break
            if self._anywhere:
                sources.append(self._anywhere[-1])
                for step in reversed(self._anywhere):
                    if step <= racing or ordered(step):
                        break
                    racing = step
                    break
        if racing >= 0:
            node = self._path[racing]
            if thread in node.offered:
                node.backtrack.add(thread)
            else:
                node.backtrack.update(node.offered)
        self._record(thread, footprint, position, mine, sources)

    def _record(
        self,
        thread: int,
        footprint: dict[int, int],
        position: int,
        mine: list[int],
        sources: list[int],
    ) -> None:
        """The step's happens-before clock: its thread's, joined with the
        clocks of the last steps it depends on (``sources``)."""
        clocks = self._step_clocks
        clock = list(mine)
        for source in sources:
            other = clocks[source]
            if len(other) > len(clock):
                clock.extend([-1] * (len(other) - len(clock)))
            for index, value in enumerate(other):
                clock[index] = max(clock[index], value)
        if thread >= len(clock):
            clock.extend([-1] * (thread + 1 - len(clock)))
        clock[thread] = position
        clocks.append(clock)
        self._step_threads.append(thread)
        self._clock_of[thread] = clock
        self._latest[thread] = position
        for key in footprint:
            if key == ANY_OBJECT:
                self._anywhere.append(position)
            else:
                self._history.setdefault(key, []).append(position)

    def end_run(self, steps: int) -> bool:
        if self._stopped:
            self.redundant += 1
        else:
            self.interleavings += 1
        del self._path[self._position :]
        while self._path:
            node = self._path[-1]
            if not node.forced:
                left = [
                    ordinal
                    for ordinal in node.offered
                    if ordinal in node.backtrack
                    and ordinal not in node.done
                    and ordinal not in node.sleep
                ]
                if left:
                    node.thread = left[0]
                    node.done.add(node.thread)
                    return True
            self._path.pop()
        self.exhausted = True
        return False

    @property
    def complete(self) -> bool:
        """Every interleaving (up to equivalence) ran."""
        return self.exhausted

    def describe(self) -> str:
        return "dpor (partial-order reduction with sleep sets)"


class ReplayStrategy(Strategy):
    """Follow the choices of a token, step by step."""

    default_runs = 1

    def __init__(self, token: str) -> None:
        self.token = token
        self.choices = decode_token(token)

    def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
        if step >= len(self.choices):
            raise ReplayDivergedError(
                f"the replayed run went on past the {len(self.choices)} steps of its token"
            )
        wanted = self.choices[step]
        if wanted not in candidates:
            raise ReplayDivergedError(
                f"step {step}: the token runs thread #{wanted}, but only "
                f"{', '.join(f'#{c}' for c in candidates)} can run"
            )
        return wanted

    def describe(self) -> str:
        return "replay"


class ChoiceSchedule(Strategy):
    """A schedule as its deviations from the default one (Hypothesis draws it).

    The default schedule keeps running the current thread while it can, and
    otherwise runs the lowest-numbered thread that can run: no preemptions.
    Each deviation ``(gap, target)`` lets ``gap`` more steps with a choice
    go by, then runs another candidate instead of the default one (the
    ``target``-th other, modulo their number).  So the number of deviations
    bounds the number of preemptions, and a shorter list with smaller numbers
    is a simpler interleaving: exactly what Hypothesis's shrinking minimises.
    """

    default_runs = 1

    def __init__(self, deviations: Sequence[tuple[int, int]] = ()) -> None:
        self.deviations = [(max(gap, 0), max(target, 1)) for gap, target in deviations]
        self._next = 0
        self._waited = 0

    def start_run(self, run: int) -> None:
        self._next = self._waited = 0

    def choose(self, candidates: Sequence[int], current: int | None, step: int) -> int:
        if len(candidates) == 1 or self._next >= len(self.deviations):
            return candidates[0]
        gap, target = self.deviations[self._next]
        if self._waited < gap:
            self._waited += 1
            return candidates[0]
        self._next += 1
        self._waited = 0
        return candidates[1 + (target - 1) % (len(candidates) - 1)]

    def __repr__(self) -> str:
        return f"ChoiceSchedule({self.deviations!r})"

    def describe(self) -> str:
        return f"schedule {self.deviations!r}"


def make_strategy(
    strategy: str | Strategy, *, seed: int, depth: int, preemption_bound: int | None
) -> Strategy:
    """The strategy ``explore`` was asked for, by name or as an object."""
    if isinstance(strategy, Strategy):
        return strategy
    if strategy == "random":
        return RandomStrategy(seed)
    if strategy == "pct":
        return PCTStrategy(seed, depth)
    if strategy == "exhaustive":
        return ExhaustiveStrategy(preemption_bound)
    if strategy == "dpor":
        if preemption_bound is not None:
            raise ValueError(
                "preemption_bound applies to strategy='exhaustive'; 'dpor' explores "
                "every interleaving up to equivalence"
            )
        return DPORStrategy()
    raise ValueError(f"unknown strategy {strategy!r}; use 'random', 'pct', 'exhaustive' or 'dpor'")


def schedules(max_deviations: int = 20, max_gap: int = 200, max_threads: int = 8) -> Any:
    """A Hypothesis strategy of schedules (``ChoiceSchedule`` objects) for
    :func:`tracedsync.explore`.

    ``@given(schedule=tracedsync.schedules())`` then
    ``tracedsync.explore(test, strategy=schedule)`` runs ``test`` once under
    the drawn schedule.  Hypothesis shrinks a failing schedule towards fewer
    deviations from the default schedule (fewer preemptions) at earlier
    steps: the simplest failing interleaving.  Its example database replays
    the failure on the next run.
    """
    from hypothesis import strategies  # an optional dependency

    deviation = strategies.tuples(
        strategies.integers(min_value=0, max_value=max_gap),
        strategies.integers(min_value=1, max_value=max(max_threads - 1, 1)),
    )
    return strategies.lists(deviation, max_size=max_deviations).map(ChoiceSchedule)
