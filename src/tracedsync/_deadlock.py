"""Actual deadlocks: cycles in the wait-for graph.

The graph is read, not maintained: a thread waits for a primitive (the wait
registry), and a ``Lock`` or ``RLock`` is held by its owner, a ``Thread`` being
joined "is held" by itself until it ends.  When a thread is about to block
without a timeout, :func:`begin_checked_wait` follows that chain from it;
if the chain comes back to the thread, its wait closes a cycle and no thread
in the cycle can ever proceed.  That thread is the victim: it gets
:class:`~tracedsync.DeadlockError` (or the configured policy applies) instead
of blocking.

Only waits that actually block are checked, under one raw lock so that two
threads closing the same cycle at once produce one victim, not two.  The
uncontended path never comes here.  Waits on events, semaphores, barriers and
conditions have no known releaser and are not edges.  A ``Lock`` that has
been released by a thread other than its acquirer (a handoff) may be released
by anyone, so a cycle through it is not reported.
"""

from __future__ import annotations

import threading
from _thread import get_ident
from collections.abc import Callable
from types import FrameType

from tracedsync._errors import DeadlockError
from tracedsync._findings import report_finding
from tracedsync._guards import PATIENCE_SECONDS, internal_lock
from tracedsync._report import (
    Report,
    current_stack,
    describe_primitive,
    instance_name,
    thread_label,
    thread_stack,
)
from tracedsync._sites import (
    describe_call,
    describe_offset,
    describe_wait,
    register_internal_module,
)
from tracedsync._typenames import Any, NamedTuple
from tracedsync._waits import Wait, granted, running_outside_waits, waits

__all__ = ["begin_checked_wait", "check_alone", "find_cycle", "wait_unless_stranded"]

#: How long a possibly stranded thread waits before confirming that no other
#: thread can make progress; later checks back off up to the maximum.
CONFIRM_SECONDS = 0.02
MAX_POLL_SECONDS = 0.1

register_internal_module(__file__)

_check_guard = internal_lock()

#: ``threading``'s running threads, by ident (a stale ``_DummyThread`` may
#: stay listed: it only makes :func:`check_alone` more cautious).
_active: dict[int, Any] = threading._active  # type: ignore[attr-defined]

#: How often a check is retried when the registry changed while it was read.
_ATTEMPTS = 3


class Edge(NamedTuple):
    """``thread`` waits (``wait``) for a primitive held by ``holder``."""

    thread: int
    wait: Wait
    holder: int


def holder_of(primitive: Any) -> int | None:
    """The thread that must act for ``primitive`` to become available."""
    if isinstance(primitive, threading.Thread):
        return primitive.ident if primitive.is_alive() else None
    owner: int | None = getattr(primitive, "_owner", None)
    return owner


def find_cycle(me: int) -> list[Edge] | None:
    """The wait-for cycle through thread ``me``'s current wait, if there is one."""
    for _ in range(_ATTEMPTS):
        generation, current = waits.snapshot()
        edges: list[Edge] = []
        thread, wait = me, current.get(me)
        seen: set[int] = set()
        while wait is not None and not wait.timed:
            holder = holder_of(wait.primitive)
            if holder is None or holder in seen:
                break
            edges.append(Edge(thread, wait, holder))
            if holder == me:
                break
            seen.add(holder)
            thread, wait = holder, current.get(holder)
        else:
            edges = []
        if not edges or edges[-1].holder != me:
            return None
        if waits.generation == generation:
            # Nothing began or ended while the owners were read: every edge
            # held at once, with every thread in the cycle blocked.
            if any(getattr(edge.wait.primitive, "_handoff", False) for edge in edges):
                return None
            # A thread of the cycle running a handler inside its wait holds
            # what it holds only until the handler returns.
            if running_outside_waits({edge.thread: edge.wait for edge in edges[1:]}):
                return None
            return edges
    return None


def _report(edges: list[Edge]) -> Report:
    count = len(edges)
    lines = [f"Found a deadlock: {count} threads wait for each other in a cycle (tracedsync)."]
    cycle: list[dict[str, Any]] = []
    for edge in edges:
        primitive: Any = edge.wait.primitive
        waits_at = describe_wait(edge.thread, edge.wait.code, edge.wait.offset) or "unknown"
        if isinstance(primitive, threading.Thread):
            held = f"which has not finished; it is at {', '.join(current_stack(edge.holder, 1))}"
            held_at = None
        else:
            held_at = describe_offset(primitive._acquired_code, primitive._acquired_offset)
            held = f"held by thread {thread_label(edge.holder)}, acquired at {held_at or 'unknown'}"
        stack = thread_stack(edge.thread)
        lines.append(
            f"  thread {thread_label(edge.thread)} waits for {describe_primitive(primitive)}"
            f" at {waits_at}"
        )
        lines.append(f"      {held}")
        lines.append(f"      stack: {' <- '.join(stack) or 'unknown'}")
        cycle.append(
            {
                "thread_id": edge.thread,
                "thread": thread_label(edge.thread).strip("'"),
                "waits_for": primitive.name,
                "waits_for_instance": instance_name(primitive),
                "waits_for_kind": getattr(primitive, "_kind", type(primitive).__name__),
                "waits_at": waits_at,
                "holder_thread_id": edge.holder,
                "holder_acquired_at": held_at,
                "stack": stack,
            }
        )
    victim = thread_label(edges[0].thread)
    lines.append(f"The wait of thread {victim} closes the cycle.")
    signature = ("deadlock", *sorted(entry["waits_for_instance"] for entry in cycle))
    return Report("deadlock", "\n".join(lines), signature, {"cycle": cycle})


def begin_checked_wait(primitive: Any, frame: FrameType | None) -> Wait | None:
    """Register an untimed wait for ``primitive`` and check it for a cycle.

    Registration and check happen under one lock, so of two threads closing
    the same cycle at once only the second sees it: one victim.  Returns the
    outer wait for :meth:`WaitRegistry.end`.  Raises
    :class:`DeadlockError` (with the wait already unregistered) if the wait
    closes a cycle and the policy is ``"raise"``; otherwise reports per
    policy and returns, and the thread blocks as the stdlib would.
    """
    if not _check_guard.acquire(True, PATIENCE_SECONDS):
        return waits.begin(primitive, False, frame)  # unchecked: see PATIENCE_SECONDS
    try:
        outer = waits.begin(primitive, False, frame)
        edges = find_cycle(get_ident())
        if edges is not None:
            # While it reports, the victim is running, not blocked: others
            # must not count it as blocked forever.
            waits.end(outer)
    finally:
        _check_guard.release()
    if edges is None:
        return outer
    _handle(edges, primitive, frame)
    return waits.begin(primitive, False, frame)  # the policy lets it wait


def _handle(edges: list[Edge], primitive: Any, frame: FrameType | None) -> None:
    report = _report(edges)
    first = report.details["cycle"][0]
    _apply(
        "deadlock.cycle",
        report,
        primitive,
        frame,
        first["thread"],
        first["waits_at"],
        first["holder_acquired_at"],
    )


def _apply(
    event: str,
    report: Report,
    primitive: Any,
    frame: FrameType | None,
    thread_name: str,
    requested_at: str | None,
    held_at: str | None = None,
) -> None:
    """Report the finding through the pipeline (``deadlock`` policy)."""
    report_finding(
        event,
        report,
        primitive,
        frame,
        error=lambda: DeadlockError(
            report.message,
            primitive=primitive.name,
            thread_name=thread_name,
            held_at=held_at,
            requested_at=requested_at,
        ),
    )


def wait_unless_stranded(
    attempt: Callable[[float], bool],
    primitive: Any,
    frame: FrameType | None,
    on_stranded: Callable[[], None] | None = None,
) -> None:
    """Wait, without timeout, for ``attempt`` to succeed, unless no other
    thread can ever make it succeed.

    ``attempt(seconds)`` waits at most that long and says whether the wait is
    over.  The thread polls; once two checks a short wait apart agree that
    every other thread is blocked forever or gone, with no wait begun or
    ended in between (so a thread woken but not yet unregistered is never
    taken for a blocked one), the thread is stranded.  The decision is taken
    under the detection lock and the thread withdraws its wait at once, so
    two stranded threads never both become victims.  Then ``on_stranded()``
    runs (it may raise), or by default the ``deadlock`` policy of
    ``primitive`` applies; if nothing raised, the thread waits on, as the
    stdlib would.
    """
    me = get_ident()
    joining = isinstance(primitive, threading.Thread)
    _watchers[me] = joining
    try:
        _watch(attempt, primitive, frame, on_stranded, me, joining)
    finally:
        # Not _watchers.pop(...): in a finally block that makes a bound
        # method (an allocation, so a collection) with the lock just taken.
        _forget_watcher(me, None)


#: Threads polling in :func:`wait_unless_stranded`, and whether each is
#: joining a thread.  A joiner is the worst victim (refusing it frees no
#: lock), so it yields to any other polling thread.
_watchers: dict[int, bool] = {}
_forget_watcher = _watchers.pop


def _watch(
    attempt: Callable[[float], bool],
    primitive: Any,
    frame: FrameType | None,
    on_stranded: Callable[[], None] | None,
    me: int,
    joining: bool,
) -> None:
    interval = CONFIRM_SECONDS
    unconfirmed: int | None = None
    while not attempt(interval):
        can_progress, generation = waits.others_can_progress(me)
        if can_progress:
            unconfirmed = None
            interval = min(interval * 2, MAX_POLL_SECONDS)
            continue
        if unconfirmed != generation:
            unconfirmed = generation
            interval = CONFIRM_SECONDS
            continue
        if not _check_guard.acquire(True, PATIENCE_SECONDS):
            unconfirmed = None  # unchecked this time: see PATIENCE_SECONDS
            continue
        try:
            can_progress, generation = waits.others_can_progress(me)
            stranded = not can_progress and generation == unconfirmed
            if joining and any(
                not other_joins for ident, other_joins in list(_watchers.items()) if ident != me
            ):
                stranded = False
            if stranded:
                _, current = waits.snapshot()
                # Blocked forever only if really in their waits, not running
                # a handler inside one (see running_outside_waits).
                others = {ident: wait for ident, wait in current.items() if ident != me}
                stranded = not running_outside_waits(others)
            if stranded:
                waits.withdraw()
        finally:
            _check_guard.release()
        if not stranded:
            unconfirmed = None
            continue
        if on_stranded is not None:
            on_stranded()
        else:
            _stranded(primitive, frame, current)
        while not attempt(MAX_POLL_SECONDS):
            pass
        return


def _stranded(primitive: Any, frame: FrameType | None, current: dict[int, Wait]) -> None:
    me = get_ident()
    wait = current.get(me)
    waits_at = describe_wait(me, wait.code, wait.offset) if wait is not None else None
    _report_stranded(
        primitive,
        frame,
        current,
        waits_at,
        "every other thread is blocked forever or has exited: the wait can never end",
    )


def _report_stranded(
    primitive: Any,
    frame: FrameType | None,
    current: dict[int, Wait],
    waits_at: str | None,
    why: str,
) -> None:
    me = get_ident()
    stack = thread_stack(me)
    lines = [
        f"Thread {thread_label(me)} waits for {describe_primitive(primitive)} at "
        f"{waits_at or 'unknown'}, but {why} (tracedsync).",
        f"  stack: {' <- '.join(stack) or 'unknown'}",
    ]
    holder = holder_of(primitive)
    if holder is not None and not isinstance(primitive, threading.Thread):
        held_at = describe_offset(primitive._acquired_code, primitive._acquired_offset)
        lines.append(f"  it is held by thread {thread_label(holder)}, acquired at {held_at}")
    blocked = []
    for ident, other in sorted(current.items()):
        if ident == me:
            continue
        other_at = describe_wait(ident, other.code, other.offset) or "unknown"
        other_stack = thread_stack(ident)
        lines.append(
            f"  thread {thread_label(ident)} waits for {describe_primitive(other.primitive)}"
            f" at {other_at}"
        )
        lines.append(f"      stack: {' <- '.join(other_stack) or 'unknown'}")
        blocked.append(
            {
                "thread_id": ident,
                "waits_for": getattr(other.primitive, "name", None),
                "waits_for_instance": instance_name(other.primitive),
                "waits_at": other_at,
                "stack": other_stack,
            }
        )
    report = Report(
        "deadlock",
        "\n".join(lines),
        ("stranded", instance_name(primitive)),
        {"stranded_thread_id": me, "waits_at": waits_at, "stack": stack, "blocked": blocked},
    )
    _apply("deadlock.stranded", report, primitive, frame, thread_label(me).strip("'"), waits_at)


def check_alone(primitive: Any, frame: FrameType | None) -> None:
    """Report (``deadlock`` policy) an untimed wait on ``primitive`` that is
    about to block (a condition, event, semaphore or barrier wait, nothing
    granting it now) in a thread with no other thread in the process: no
    thread exists that could ever notify, set or release it.

    Only a signal handler could still end the wait: handlers run in the main
    thread between bytecodes, and a lock wait is interrupted to run them, so
    a handler can put to a queue and wake its ``get``.  The default
    ``SIGINT`` handler counts too: its ``KeyboardInterrupt`` ends the wait,
    and a program may wait for Ctrl-C on purpose (``threading`` lets it).  So
    any Python signal handler but tracedsync's own leaves the wait to the
    other checks (the watchdog); the wait is refused at once only in a
    process that handles no signal in Python (``SIGINT`` ignored or left to
    the system).
    """
    if len(_active) > 1:  # another thread threading knows: no need to look further
        return
    me = get_ident()
    if waits.others_exist(me) or _signal_handler_installed():
        return
    # The caller found the wait not granted before this check; a thread may
    # have granted it since (set the event, released the semaphore) and then
    # ended.  Now that no other thread exists, nothing can change it any more.
    if granted(primitive):
        return
    _report_stranded(
        primitive,
        frame,
        {},
        describe_call(frame),
        "no other thread exists that could end the wait, and no signal handler is "
        "installed (not even SIGINT's): the wait can never end",
    )


def _signal_handler_installed() -> bool:
    """Whether a Python signal handler that could act is installed (see
    :func:`check_alone`)."""
    import signal  # start-up cost: only for a wait in a thread alone

    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except (ValueError, OSError):  # pragma: no cover - platform specific
            continue
        if callable(handler) and not getattr(handler, "tracedsync_internal", False):
            return True
    return False
