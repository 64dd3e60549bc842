"""Potential deadlocks: lock-order inversions, lockdep-style.

When a thread acquires lock B while holding lock A, the order A -> B is an
edge of a graph whose nodes are lock *classes*: the creation site, so all
locks made by one line of code are one class.  An acquisition whose new edge
closes a cycle in that graph means two code paths take the same locks in
opposite orders: they can deadlock, even if this run did not.  The cycle is
reported once (per set of edges), with the site where each edge was first
seen and the user's stack at that moment.

Cost: like lockdep, each thread keeps the chain of classes it holds; a chain
seen before (the common case) costs one dict lookup, and only a new chain
adds edges and searches for a cycle, under one raw lock.

False positives the classic tools fell into, avoided here:

* a cycle whose edges were all taken while one common "gate" lock was held
  cannot deadlock and is not reported;
* a ``Lock`` released by another thread than its acquirer (a handoff: the
  resource lock of a reader-writer lock, a semaphore built from locks) is a
  signal, not something a thread owns.  The first handoff of a lock makes
  its whole class (creation site) a handoff class: every edge to or from it
  is dropped, and locks of that class are never ordered again, nor taken for
  held by the thread that acquired them (its entry is dropped at its next
  nested acquire).  An inversion reported before the handoff was seen is
  recognised afterwards by the classes in its ``chain`` (see
  :func:`is_handoff_class`, which the pytest plugin uses);
* two locks of the same class nested (``locks[i]`` then ``locks[j]``) are not
  a cycle by themselves; instances of one class are ordered by an instance
  graph instead, which forgets a lock when it is garbage collected (each new
  lock after the innermost held one of its class only: n locks of one class
  held at once make n - 1 edges, not n²/2);
* non-blocking and timed acquires add edges but never raise.

The graph is bounded: past :data:`MAX_EDGES` edges it stops growing and says
so once (``lock_order.graph_full``).
"""

from __future__ import annotations

import itertools
import sys
import weakref
from _thread import _local, get_ident
from time import monotonic_ns
from types import FrameType

from tracedsync import _hooks
from tracedsync._findings import report_finding
from tracedsync._guards import PATIENCE_SECONDS, internal_lock
from tracedsync._hierarchy import check as _check_hierarchy
from tracedsync._hierarchy import ranks as _declared_ranks
from tracedsync._policy import order_error
from tracedsync._report import (
    Report,
    current_stack,
    describe_primitive,
    instance_name,
    thread_label,
)
from tracedsync._sites import describe_call, describe_offset, register_internal_module
from tracedsync._typenames import Any, NamedTuple

__all__ = [
    "MAX_EDGES",
    "acquired",
    "event_class",
    "graph",
    "is_handoff",
    "is_handoff_class",
    "released",
]

register_internal_module(__file__)

#: The most edges the graph keeps (class and instance edges together).
MAX_EDGES = 20_000

#: The chain id of a held set that is not in the cache (after a lock was
#: released out of order): acquisitions on top of it always take the slow
#: path and are never cached.
UNKNOWN_CHAIN = -1


#: A lock the thread holds, as the order checker sees it: (weak reference to
#: the lock, class key, code and bytecode offset of the acquire, chain id
#: after it).  A plain tuple: built on every acquire while the checker is on.
#: The reference is weak so that a lock acquired and then dropped without a
#: release (legal) is not kept alive, nor taken for a gate lock forever.  The
#: chain id of the outermost lock is ``None`` until a lock is taken on top of
#: it: a thread holding one lock at a time never looks its chain up.
#: ``Lock.acquire`` and ``Lock.release`` (:mod:`tracedsync._lock`) inline the
#: commonest cases of :func:`acquired` and :func:`released`: keep them in step.
#:
#: The outermost entry may also be the bare weak reference (an
#: :data:`Outermost`), which the pure-Python hot path pushes when the thread
#: holds nothing else: it allocates nothing.  It stands for the tuple made of
#: the lock's own slots (its ``_order_key``, ``_acquired_code`` and
#: ``_acquired_offset``, which are the thread's while it holds the lock) and
#: is turned into that tuple (:func:`expand_outermost`) before anything else
#: reads the list; only an empty list gets one, so it is never under another.
Held = tuple["weakref.ref[Any]", str, Any, int, int | None]
Outermost = weakref.ref[Any]


class EdgeInfo(NamedTuple):
    """Where and by whom an order ``before -> after`` was first seen."""

    before_name: str
    after_name: str
    thread: str
    before_at: str | None
    after_at: str | None
    stack: tuple[str, ...]
    gates: frozenset[int]
    #: The classes of the two locks as events name them (see :func:`event_class`).
    before_class: str = ""
    after_class: str = ""
    #: The two locks' instance labels (see ``_report.instance_name``): what
    #: tells apart two locks of one class, as ``accounts[i]`` and ``accounts[j]``.
    before_instance: str = ""
    after_instance: str = ""


#: Per thread: ``held``, the list of :data:`Held`, innermost last.  Chain ids
#: of chains holding two locks of one class are negative: those always take
#: the slow path, which orders the instances.
_per_thread = _local()


class LockOrderGraph:
    """Every lock order seen so far, by class and (within a class) by instance."""

    def __init__(self, max_edges: int = MAX_EDGES) -> None:
        self._guard = internal_lock()
        self.max_edges = max_edges
        self.edges: dict[tuple[Any, Any], EdgeInfo] = {}
        self._successors: dict[Any, set[Any]] = {}
        self._chains: dict[tuple[int, str], int] = {}
        self._chain_ids = itertools.count(1)
        self._reported: set[frozenset[tuple[Any, Any]]] = set()
        self._watched: dict[int, weakref.ref[Any]] = {}
        #: Ids of watched locks that died; purged under the guard by the next
        #: new chain.  A weakref callback may run inside any allocation, even
        #: while this thread holds the guard, so it must never take it.
        self._dead: list[int] = []
        self.full = False
        #: Class keys of the locks found to be handoff locks (see the module
        #: docstring); only ever grows, read without the guard.
        self.handoff_classes: set[str] = set()
        #: Bumped at every handoff seen, so that each thread drops the stale
        #: entries of its held list at its next nested acquire.
        self.handoff_generation = 0

    def chain(self, chain: int, key: str) -> int | None:
        """The known chain after ``chain`` + ``key``, or ``None`` if new."""
        return self._chains.get((chain, key))

    def root_chain(self, key: str) -> int:
        """The id of the chain holding only a lock of class ``key``."""
        found = self._chains.get((0, key))
        if found is None:
            if not self._guard.acquire(True, PATIENCE_SECONDS):
                return UNKNOWN_CHAIN  # not learnt this time: see PATIENCE_SECONDS
            try:
                found = self._chains.get((0, key))
                if found is None:
                    found = self._chains[(0, key)] = next(self._chain_ids)
            finally:
                self._guard.release()
        return found

    def clear(self) -> None:
        """Forget every edge, chain and report."""
        with self._guard:
            self.edges.clear()
            self._successors.clear()
            self._chains.clear()
            self._reported.clear()
            self._watched.clear()
            self.handoff_classes.clear()
            _handoff_event_classes.clear()
            _handoff_locks.clear()
            self.full = False

    # -- graph ---------------------------------------------------------------
    def _path(self, start: Any, goal: Any) -> list[Any] | None:
        """Nodes from ``start`` to ``goal`` along edges, if connected."""
        parents: dict[Any, Any] = {start: None}
        frontier = [start]
        while frontier:
            node = frontier.pop()
            if node == goal:
                path = [node]
                while parents[node] is not None:
                    node = parents[node]
                    path.append(node)
                return path[::-1]
            for following in self._successors.get(node, ()):
                if following not in parents:
                    parents[following] = node
                    frontier.append(following)
        return None

    def _purge_dead_locked(self) -> None:
        """Drop the instance edges of locks that died (guard held)."""
        while self._dead:
            instance = self._dead.pop()
            self._watched.pop(instance, None)
            for edge in [e for e in self.edges if instance in e]:
                del self.edges[edge]
                self._successors.get(edge[0], set()).discard(edge[1])
            self._successors.pop(instance, None)

    def forget_class(self, key: str) -> None:
        """Make ``key`` a handoff class: drop every edge to or from its locks.

        The class is marked at once (a set's ``add`` is atomic); the edges
        are dropped under the guard, unless it stays taken past
        ``PATIENCE_SECONDS`` (then they stay, and are never extended)."""
        if key in self.handoff_classes:
            return
        self.handoff_classes.add(key)
        if not self._guard.acquire(True, PATIENCE_SECONDS):
            return
        try:

            def involves(node: Any) -> bool:
                if node == key:
                    return True
                if isinstance(node, int):  # an instance edge: a lock of one class
                    reference = self._watched.get(node)
                    lock = reference() if reference is not None else None
                    return lock is not None and lock._order_key == key
                return False

            for edge in [edge for edge in self.edges if involves(edge[0]) or involves(edge[1])]:
                del self.edges[edge]
                self._successors.get(edge[0], set()).discard(edge[1])
        finally:
            self._guard.release()

    def _watch(self, lock: Any) -> None:
        instance = id(lock)
        if instance not in self._watched:
            dead = self._dead
            self._watched[instance] = weakref.ref(lock, lambda _: dead.append(instance))

    def _sources(
        self, held: list[Held], lock: Any, key: str, chain_known: bool
    ) -> list[tuple[int, Any]]:
        """The held locks (position, lock) that :meth:`add_chain` orders
        before ``lock``: the outermost live one of each other class (unless
        ``chain_known``), then the innermost live one of ``key``'s class."""
        handoff_classes = self.handoff_classes
        chosen: list[tuple[int, Any]] = []
        if not chain_known:
            seen = {key}
            for position, entry in enumerate(held):
                if entry[1] in seen or entry[1] in handoff_classes:
                    continue
                before = entry[0]()
                if before is not None and not getattr(before, "_handoff", False):
                    seen.add(entry[1])
                    chosen.append((position, before))
        if key not in handoff_classes:  # the innermost of the class: look from the end
            for position in range(len(held) - 1, -1, -1):
                entry = held[position]
                if entry[1] == key:
                    before = entry[0]()
                    if (
                        before is not None
                        and before is not lock
                        and not getattr(before, "_handoff", False)
                    ):
                        chosen.append((position, before))
                        break
        return chosen

    def add_chain(
        self,
        held: list[Held],
        lock: Any,
        key: str,
        frame: FrameType | None,
        chain: int,
        chain_known: bool = False,
    ) -> tuple[int, list[EdgeInfo] | None]:
        """Add the orders from the held locks to ``lock``; return the new
        chain id and the first new cycle found (its edges), if any.

        Bounded by the classes held, not by the locks held: of each other
        class only the outermost lock held gives an edge (the class edge; it
        has the fewest gate locks under it, the only ones that count), and of
        ``lock``'s own class only the innermost gives an instance edge (the
        instances held before it are ordered before that one already, so a
        path through it stands for their edges).  A program holding n locks
        of one class (``as_completed`` takes every future's condition) adds
        n - 1 edges, not n²/2.  ``chain_known``: the chain of classes was seen
        before (its class edges are in the graph), so only the instance edge
        is looked at."""
        #: Where and by whom, computed only for a new edge: a known chain of
        #: instances (locks made at one site) is checked on every acquire.
        described: tuple[str | None, str] | None = None
        cycle: list[EdgeInfo] | None = None
        if not self._guard.acquire(True, PATIENCE_SECONDS):
            return UNKNOWN_CHAIN, None  # not learnt this time: see PATIENCE_SECONDS
        try:
            self._purge_dead_locked()
            chosen = self._sources(held, lock, key, chain_known)
            for position, before in chosen:
                entry = held[position]
                same_class = entry[1] == key
                edge = (id(before), id(lock)) if same_class else (entry[1], key)
                gates = frozenset(
                    id(gate) for gate in (item[0]() for item in held[:position]) if gate is not None
                )
                known = self.edges.get(edge)
                if known is not None:
                    # Seen before: only an observation under fewer gate locks
                    # matters, since it may make a gated cycle harmful.
                    if not known.gates <= gates:
                        self.edges[edge] = known._replace(gates=known.gates & gates)
                        if cycle is None:
                            cycle = self._new_cycle(edge)
                    continue
                if len(self.edges) >= self.max_edges:
                    self._graph_full(lock, frame)
                    break
                if same_class:
                    self._watch(before)
                    self._watch(lock)
                if described is None:
                    described = (
                        describe_call(frame),
                        thread_label(_hooks.thread_info()[0]).strip("'"),
                    )
                after_at, thread = described
                self.edges[edge] = EdgeInfo(
                    before.name,
                    lock.name,
                    thread,
                    describe_offset(entry[2], entry[3]),
                    after_at,
                    tuple(current_stack(_hooks.thread_info()[0])),
                    gates,
                    event_class(before),
                    event_class(lock),
                    instance_name(before),
                    instance_name(lock),
                )
                self._successors.setdefault(edge[0], set()).add(edge[1])
                if cycle is None:
                    cycle = self._new_cycle(edge)
            new_chain = None if chain == UNKNOWN_CHAIN else self._chains.get((chain, key))
            if chain == UNKNOWN_CHAIN:
                new_chain = UNKNOWN_CHAIN
            elif new_chain is None:
                new_chain = next(self._chain_ids)
                if chain < 0 or any(entry[1] == key for entry in held):
                    new_chain = -new_chain
                self._chains[(chain, key)] = new_chain
        finally:
            self._guard.release()
        return new_chain, cycle

    def _new_cycle(self, edge: tuple[Any, Any]) -> list[EdgeInfo] | None:
        path = self._path(edge[1], edge[0])
        if path is None:
            return None
        cycle_edges = [edge, *itertools.pairwise(path)]
        signature = frozenset(cycle_edges)
        if signature in self._reported:
            return None
        infos = [self.edges[item] for item in cycle_edges]
        if frozenset.intersection(*(info.gates for info in infos)):
            return None  # every edge was taken under one common gate lock
        self._reported.add(signature)
        return infos

    def _graph_full(self, lock: Any, frame: FrameType | None) -> None:
        if not self.full:
            self.full = True
            data = {"max_edges": self.max_edges}
            _hooks.emit("lock_order.graph_full", lock, frame, data, _hooks.WARNING)


graph = LockOrderGraph()

#: The locks found to be handoff locks, by id (weakly: an id is only theirs
#: while they live).
_handoff_locks: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
#: The handoff classes as events name them (see :func:`event_class`).
_handoff_event_classes: set[str] = set()


def event_class(lock: Any) -> str:
    """A lock's class as events name it: ``Kind@`` and its creation site as
    ``primitive_created`` says it (``"Lock@bank.py:12"``), so that a reader
    of events or of a saved trace can tell a handoff class (see
    ``tracedsync._cli.summary``) and match it with an inversion's ``chain``."""
    return f"{lock._kind}@{_hooks.identity(lock)[3]}"


def is_handoff(identity: int) -> bool:
    """Whether the live lock with this id was ever released by another
    thread than its acquirer (while lock-order checking was on)."""
    return _handoff_locks.get(identity) is not None


def is_handoff_class(name: Any) -> bool:
    """Whether locks of the class ``name`` (as :func:`event_class` and an
    inversion's ``chain`` name it) have been found to be handoff locks."""
    return name in _handoff_event_classes


def _handed_off(lock: Any) -> None:
    """Another thread than its acquirer is releasing ``lock``."""
    _handoff_locks[id(lock)] = lock
    _handoff_event_classes.add(event_class(lock))
    graph.forget_class(lock._order_key or _key(lock))
    graph.handoff_generation += 1


def _drop_stale(held: list[Held]) -> None:
    """Drop the entries of locks this thread does not hold any more (another
    thread released them) or of handoff classes."""
    me = get_ident()
    position = 0
    while position < len(held):
        lock = held[position][0]()
        if lock is None or lock._owner != me or held[position][1] in graph.handoff_classes:
            _remove(held, position)
        else:
            position += 1


def _key(lock: Any) -> str:
    """The lock's class: ``Kind@file:line`` of its creation site.

    Interned, so that every lock made at one site shares one string instead
    of holding its own copy (about 90 bytes per live lock).
    """
    key: str | None = lock._order_key
    if key is None:
        code, line = lock._created_code, lock._created_line
        key = sys.intern(f"{lock._kind}@{code.co_filename if code else '?'}:{line}")
        lock._order_key = key
    return key


def entry_lock(entry: Held | Outermost) -> Any:
    """The lock of a held-lock entry, either form, or ``None`` if it died."""
    reference = entry[0] if isinstance(entry, tuple) else entry
    return reference()


def expand_outermost(held: list[Any]) -> None:
    """Make ``held`` (the calling thread's list) hold only :data:`Held`
    tuples: a bare outermost entry becomes its tuple, or is dropped if its
    lock has died (a lock that cannot be released any more orders nothing
    and guards nothing)."""
    if held and type(held[0]) is not tuple:
        reference = held[0]
        lock = reference()
        if lock is None:
            del held[0]
        else:
            held[0] = (reference, _key(lock), lock._acquired_code, lock._acquired_offset, None)


def forget_held() -> None:
    """Forget the locks the calling thread holds (for a fresh start)."""
    thread_state().clear()


def thread_state() -> list[Held]:
    """The calling thread's held locks (created empty at first use)."""
    try:
        held: list[Held] = _per_thread.held
    except AttributeError:
        held = _per_thread.held = []
    return held


def _chain_at(held: list[Held], index: int) -> int:
    """The chain id after ``held[index]``, resolving the outermost lock's lazily."""
    chain = held[index][4]
    if chain is None:  # only the outermost entry defers its chain
        entry = held[0]
        chain = graph.root_chain(entry[1])
        held[0] = (entry[0], entry[1], entry[2], entry[3], chain)
    return chain


def prepared_entry(lock: Any) -> Outermost | None:
    """The held-lock entry :func:`acquired` will need for ``lock`` when the
    calling thread holds no other lock (the bare reference: see
    :data:`Outermost`), made before the lock is taken: nothing then
    allocates between taking it and recording it (see ``Lock.acquire``).
    ``None`` when the checker must look (another lock held, a handoff lock).
    A thread's first lock and a lock's first acquisition get their
    bookkeeping here."""
    reference: Outermost | None = lock._weak_self
    if reference is None:
        reference = prepare_lock(lock)
    if thread_state() or lock._handoff:
        return None
    return reference


def prepare_lock(lock: Any) -> weakref.ref[Any]:
    """Give ``lock`` the weak reference and class key its held-lock entries
    use, before its first acquisition takes the raw lock (both allocate: see
    ``Lock.acquire``); returns the reference."""
    reference: weakref.ref[Any] | None = lock._weak_self
    if reference is None:
        reference = lock._weak_self = weakref.ref(lock)
    _key(lock)
    return reference


def acquired(
    lock: Any, frame: FrameType | None, may_raise: bool, prepared: Outermost | None = None
) -> None:
    """The calling thread just acquired ``lock`` (not a recursive re-entry);
    ``prepared`` is its entry from :func:`prepared_entry`, if there is one.

    The fast paths, most common first: the thread holds no other lock (no
    order to check, not even a chain to look up: see :data:`Held`), or the
    chain of classes it holds plus this one was seen before (one dict
    lookup).  Only a new chain adds edges and looks for a cycle.
    """
    if lock._handoff:
        return
    try:
        held = _per_thread.held
    except AttributeError:
        held = thread_state()
    if prepared is not None and not held:
        held.append(prepared)
        return
    expand_outermost(held)
    reference = lock._weak_self
    if reference is None:
        reference = lock._weak_self = weakref.ref(lock)
    key = lock._order_key or _key(lock)
    if key in graph.handoff_classes:
        return
    # Cheap until a handoff is seen: a missing thread-local attribute costs
    # an exception inside getattr, so it is only read once there was one.
    generation = graph.handoff_generation
    if generation and held and getattr(_per_thread, "generation", 0) != generation:
        _per_thread.generation = generation
        _drop_stale(held)
    if not held:
        held.append((reference, key, lock._acquired_code, lock._acquired_offset, None))
        return
    chain = held[-1][4]
    if chain is None:
        chain = _chain_at(held, 0)
    following = graph._chains.get((chain, key))
    cycle = None
    if following is None or following < 0:
        known = following is not None  # a chain holding two locks of one class
        started = monotonic_ns()
        following, cycle = graph.add_chain(held, lock, key, frame, chain, known)
        _hooks.charge(started, get_ident())
    held.append((reference, key, lock._acquired_code, lock._acquired_offset, following))
    if cycle is not None:
        _inversion(lock, frame, cycle, may_raise)
    if _declared_ranks and len(held) > 1:  # a declared hierarchy (declare_order)
        _check_hierarchy(lock, held, frame, may_raise)


def released(lock: Any) -> None:
    """The calling thread released ``lock`` completely."""
    try:
        held = _per_thread.held
    except AttributeError:
        return
    reference = lock._weak_self  # the very object each Held entry of it holds
    if held:
        top = held[-1]
        if top is reference or (type(top) is tuple and top[0] is reference):
            held.pop()
            return
    expand_outermost(held)
    for position in range(len(held) - 1, -1, -1):
        if held[position][0] is reference:
            _remove(held, position)
            return
    owner = lock._owner
    if owner is not None and owner != get_ident() and lock._kind == "Lock":
        _handed_off(lock)


def _remove(held: list[Held], position: int) -> None:
    """Remove ``held[position]``: the locks taken after it now sit on a
    shorter chain.

    Unless a lock of the same class stays next to it: then every later chain
    holds the same classes as before, only one lock fewer of that class, and
    the entries keep their chain ids.  Those are negative (two locks of one
    class), so acquisitions on top of them still order every new lock (the
    slow path); only the multiplicity is off, which nothing depends on.  This
    keeps ``as_completed``, which releases the conditions of every future,
    all of one class, in no particular order, linear instead of quadratic."""
    key = held[position][1]
    del held[position]
    if (position > 0 and held[position - 1][1] == key) or (
        position < len(held) and held[position][1] == key
    ):
        return
    for index in range(position, len(held)):
        entry = held[index]
        chain: int | None = None  # the outermost lock: resolved lazily
        if index > 0:
            previous = _chain_at(held, index - 1)
            known = None if previous == UNKNOWN_CHAIN else graph.chain(previous, entry[1])
            chain = known if known is not None else UNKNOWN_CHAIN
        held[index] = (entry[0], entry[1], entry[2], entry[3], chain)


def _inversion(lock: Any, frame: FrameType | None, cycle: list[EdgeInfo], may_raise: bool) -> None:
    new, *earlier = cycle
    # In the order the cycle was seen: the earliest edge's first lock first.
    locks = [f"{lock._kind} {edge.before_instance!r}" for edge in (*earlier, new)]
    named = " and ".join(locks) if len(locks) == 2 else ", ".join(locks[:-1]) + f" and {locks[-1]}"
    lines = [
        f"Possible deadlock: lock-order inversion between {named} (taken in opposite orders).",
        "This run did not deadlock, but another interleaving can:",
        f"  thread {new.thread!r} acquires {describe_primitive(lock)} at {new.after_at}",
        f"      while holding {new.before_instance!r}, acquired at {new.before_at}",
        "  the opposite order was seen before:",
    ]
    for edge in earlier:
        lines.append(
            f"    {edge.before_instance!r} -> {edge.after_instance!r}: thread {edge.thread!r} "
            f"acquired {edge.after_instance!r} at {edge.after_at} while holding "
            f"{edge.before_instance!r} (acquired at {edge.before_at})"
        )
        if edge.stack:
            lines.append(f"      stack: {' <- '.join(edge.stack)}")
    lines.append("Take these locks in one consistent order everywhere.")
    chain = [
        {
            "before": edge.before_name,
            "after": edge.after_name,
            "before_instance": edge.before_instance,
            "after_instance": edge.after_instance,
            "thread": edge.thread,
            "before_at": edge.before_at,
            "after_at": edge.after_at,
            "stack": list(edge.stack),
            "before_class": edge.before_class,
            "after_class": edge.after_class,
        }
        for edge in cycle
    ]
    signature = ("inversion", *sorted((e["before_instance"], e["after_instance"]) for e in chain))
    report = Report("inversion", "\n".join(lines), signature, {"chain": chain})
    report_finding(
        "lock_order.inversion",
        report,
        lock,
        frame,
        error=order_error(lock, report, new.thread, new.before_at, new.after_at),
        may_raise=may_raise,
        undo=lock._undo_acquire,
    )
