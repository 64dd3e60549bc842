"""Declared lock hierarchies: the order a program promises to take its locks in.

The lock-order checker (:mod:`tracedsync._lockorder`) learns orders and can
only report an inversion once *both* orders have occurred.  A declared
hierarchy needs no second order: :func:`declare_order` (``a`` before ``b``
before ``c``) and :func:`declare_level` (lower levels before higher ones)
state the rule up front, and the first acquisition that breaks it is
reported, through the ``hierarchy`` policy (``"raise"`` by default:
:class:`~tracedsync.LockOrderError`, with the acquire undone).

The check runs inside the order checker's ``acquired`` hook, on the thread's
held list, and only while some lock has a declared rank: a program that
declares nothing pays one test of an empty dict per acquire.  Declarations
hold locks weakly; a rank disappears with its lock.
"""

from __future__ import annotations

import itertools
import weakref
from _thread import get_ident
from collections.abc import Iterable
from types import FrameType

from tracedsync._config import settings
from tracedsync._findings import report_finding
from tracedsync._guards import internal_lock
from tracedsync._policy import order_error
from tracedsync._report import Report, current_stack, describe_primitive, thread_label
from tracedsync._sites import (
    caller_site,
    describe_call,
    describe_offset,
    describe_site,
    register_internal_module,
)
from tracedsync._typenames import Any

__all__ = ["check", "declare_level", "declare_order", "ranks"]

register_internal_module(__file__)


class Rank:
    """What was declared about one lock: its level and the locks that must be
    acquired after it (by id, each with a weak reference and the site of the
    declaration)."""

    __slots__ = ("after", "level", "level_site", "name", "purge_at", "reference")

    def __init__(self, reference: weakref.ref[Any], name: str) -> None:
        self.reference = reference
        self.name = name
        self.level: int | None = None
        self.level_site: str | None = None
        self.after: dict[int, tuple[weakref.ref[Any], str | None]] = {}
        #: Size of :attr:`after` at which dead entries are next dropped:
        #: doubling keeps the cost amortised O(1) per declaration, and the
        #: dict bounded by twice the live locks declared after this one.
        self.purge_at = 64

    def add_after(self, lock: Any, where: str) -> None:
        """Declare that ``lock`` comes after this rank's lock (guard held)."""
        self.after[id(lock)] = (weakref.ref(lock), where)
        if len(self.after) >= self.purge_at:
            for key, (reference, _) in list(self.after.items()):
                if reference() is None:
                    del self.after[key]
            self.purge_at = max(64, 2 * len(self.after))


#: ``id(lock)`` -> :class:`Rank`, for every live lock with a declaration.
#: Mutated in place (never rebound): the order checker reads it without a
#: lock, and an empty dict means "nothing declared, nothing to check".
ranks: dict[int, Rank] = {}
_guard = internal_lock()


def _forget(key: int, reference: weakref.ref[Any]) -> None:
    # A weakref callback: runs inside any allocation, so it takes no lock.
    rank = ranks.get(key)
    if rank is not None and rank.reference is reference:
        del ranks[key]


def _rank_of(lock: Any) -> Rank:
    """The lock's rank, created on first declaration (guard held)."""
    key = id(lock)
    rank = ranks.get(key)
    if rank is None:
        reference = weakref.ref(lock, lambda dead: _forget(key, dead))
        rank = Rank(reference, lock.name)
        ranks[key] = rank
    return rank


def is_traced_lock(lock: object) -> bool:
    """Whether ``lock`` is a ``tracedsync.Lock`` or ``RLock`` (read from a
    class marker: this module is imported by the lock module, not the
    other way round)."""
    return getattr(type(lock), "_tracedsync_lock", False) is True


def _traced(locks: Iterable[Any], what: str) -> list[Any] | None:
    """The locks if all are tracedsync locks; ``None`` if the off switch made
    some of them plain ``threading`` locks (nothing can be checked then)."""
    checked = list(locks)
    for lock in checked:
        if not is_traced_lock(lock):
            if not settings.enabled:
                return None
            raise TypeError(
                f"{what} needs tracedsync.Lock or tracedsync.RLock objects, not {lock!r}"
            )
    return checked


def _path(start: int, goal: int) -> list[int] | None:
    """Lock ids from ``start`` to ``goal`` along declared "before" edges."""
    first = ranks.get(start)
    if first is not None and goal in first.after:  # declared directly: no search
        return [start, goal]
    parents: dict[int, int | None] = {start: None}
    frontier = [start]
    while frontier:
        node = frontier.pop()
        if node == goal:
            path = [node]
            while (parent := parents[path[-1]]) is not None:
                path.append(parent)
            return path[::-1]
        rank = ranks.get(node)
        if rank is None:
            continue
        for following, (reference, _) in list(rank.after.items()):
            if following not in parents and reference() is not None:
                parents[following] = node
                frontier.append(following)
    return None


def declare_order(*locks: Any) -> None:
    """Declare that these locks are always acquired in this order.

    ``declare_order(a, b, c)``: a thread holding ``b`` or ``c`` must not
    acquire ``a``, and a thread holding ``c`` must not acquire ``b``.  Orders
    chain: after ``declare_order(a, b)`` and ``declare_order(b, c)``,
    acquiring ``a`` while holding ``c`` is a violation too.  The first
    acquisition that breaks the order is reported, without the opposite
    order ever having to occur (see :func:`~tracedsync.configure`'s
    ``on_hierarchy``).  A declaration that contradicts an earlier one raises
    :class:`ValueError`.

    Only ``tracedsync.Lock`` and ``tracedsync.RLock`` can be declared;
    under the off switch (plain ``threading`` locks) this does nothing.
    Declarations hold the locks weakly.  They are checked while lock-order
    checking is on (the default; see ``configure(lock_order=...)``).
    """
    if len(locks) < 2:
        raise TypeError("declare_order() needs at least two locks")
    checked = _traced(locks, "declare_order()")
    if checked is None:
        return
    if len({id(lock) for lock in checked}) != len(checked):
        raise ValueError("declare_order() got the same lock twice")
    code, line = caller_site(1)
    site = describe_site(code, line)
    names = ", ".join(repr(lock.name) for lock in checked)
    where = f"declare_order({names}) at {site or 'unknown'}"
    with _guard:
        for before, after in itertools.pairwise(checked):
            if _path(id(after), id(before)) is not None:
                raise ValueError(
                    f"declare_order(): {before.name!r} before {after.name!r} contradicts "
                    f"an earlier declaration that takes {after.name!r} first"
                )
        for before, after in itertools.pairwise(checked):
            rank = _rank_of(before)
            _rank_of(after)
            rank.add_after(after, where)


def declare_level(lock: Any, level: int) -> None:
    """Give ``lock`` a level in the lock hierarchy: locks are acquired in
    ascending level order.

    A thread holding a lock of level *n* must not acquire a lock of a lower
    level.  Locks of the same level are not ordered by their levels (two
    locks of one level may be nested in either order; the lock-order checker
    still reports inversions between them).  Declaring again changes the
    level.  Violations are reported as for :func:`declare_order`.
    """
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"declare_level() needs an int level, not {level!r}")
    checked = _traced([lock], "declare_level()")
    if checked is None:
        return
    code, line = caller_site(1)
    with _guard:
        rank = _rank_of(lock)
        rank.level = level
        rank.level_site = describe_site(code, line)


def _conflict(lock: Any, rank: Rank, before: Any, before_rank: Rank) -> str | None:
    """Why acquiring ``lock`` while holding ``before`` breaks a declaration."""
    if rank.level is not None and before_rank.level is not None and before_rank.level > rank.level:
        return (
            f"{lock.name!r} has level {rank.level} (declared at {rank.level_site}) and "
            f"{before.name!r} level {before_rank.level} (declared at "
            f"{before_rank.level_site}): lower levels are acquired first"
        )
    path = _path(id(lock), id(before))
    if path is None:
        return None
    declared = []
    for first, second in itertools.pairwise(path):
        first_rank = ranks.get(first)
        entry = first_rank.after.get(second) if first_rank is not None else None
        if entry is not None and entry[1] not in declared:
            declared.append(entry[1])
    return f"the declared order takes {lock.name!r} before {before.name!r}:\n    " + "\n    ".join(
        str(item) for item in declared
    )


def check(lock: Any, held: list[Any], frame: FrameType | None, may_raise: bool) -> None:
    """``lock`` was just acquired on top of ``held`` (the order checker's
    held list, ``lock`` last): report the first declaration it breaks."""
    rank = ranks.get(id(lock))
    if rank is None:
        return
    for entry in reversed(held[:-1]):
        before = entry[0]()
        if before is None or before is lock:
            continue
        before_rank = ranks.get(id(before))
        if before_rank is None:
            continue
        reason = _conflict(lock, rank, before, before_rank)
        if reason is not None:
            _violation(lock, before, describe_offset(entry[2], entry[3]), reason, frame, may_raise)
            return


def _violation(
    lock: Any,
    before: Any,
    before_at: str | None,
    reason: str,
    frame: FrameType | None,
    may_raise: bool,
) -> None:
    me = get_ident()
    thread = thread_label(me).strip("'")
    acquired_at = describe_call(frame)
    stack = current_stack(me)
    lines = [
        "Lock hierarchy violated: "
        f"thread {thread!r} acquires {describe_primitive(lock)} at {acquired_at}",
        f"  while holding {describe_primitive(before)}, acquired at {before_at};",
        f"  {reason}",
    ]
    if stack:
        lines.append(f"  stack: {' <- '.join(stack)}")
    lines.append(f"Acquire {lock.name!r} before {before.name!r}, or release {before.name!r} first.")
    details = {
        "thread": thread,
        "acquired": lock.name,
        "acquired_at": acquired_at,
        "held": before.name,
        "held_at": before_at,
        "stack": stack,
    }
    report = Report("hierarchy", "\n".join(lines), ("hierarchy", lock.name, before.name), details)
    report_finding(
        "lock_order.hierarchy",
        report,
        lock,
        frame,
        error=order_error(lock, report, thread, before_at, acquired_at),
        may_raise=may_raise,
        undo=lock._undo_acquire,
    )
