"""The blocking path: the one wait protocol of every operation that waits.

Six operations block: a contended ``Lock``/``RLock`` acquire, and the waits
of ``Condition``, ``Semaphore``, ``Event``, ``Barrier`` and ``Thread.join``.
Each follows one protocol, :class:`Blocked`: :func:`begin_blocked` emits the
``<event>.blocked`` event (while something observes), registers the wait in
:data:`tracedsync._waits.waits` for as long as it lasts (so the deadlock
checks see who is blocked), first checking an untimed wait for a wait-for
cycle when the primitive has a known releaser (a refused wait gets its
``error`` outcome event and raises); then the primitive waits, and
:meth:`Blocked.failed`, :meth:`Blocked.end` and :meth:`Blocked.outcome` close
it.  Where the explorer controls the thread, the waits that it cannot model
through ``threading._allocate_lock`` (a contended traced lock, a join) ask it
through the explorer interface (:mod:`tracedsync._control`).  A contended
lock acquire is :func:`acquire_contended`, which also checks a self
re-acquire of a ``Lock`` before the thread blocks.
"""

from __future__ import annotations

import threading
from _thread import get_ident
from collections.abc import Callable
from types import CodeType, FrameType

from tracedsync import _control, _hooks, _lockorder
from tracedsync._config import settings
from tracedsync._deadlock import (
    MAX_POLL_SECONDS,
    begin_checked_wait,
    check_alone,
    wait_unless_stranded,
)
from tracedsync._errors import DeadlockError
from tracedsync._findings import report_finding
from tracedsync._report import Report, instance_name
from tracedsync._sites import (
    describe_call,
    describe_offset,
    register_internal_module,
    user_site,
)
from tracedsync._typenames import TYPE_CHECKING, Any, Protocol
from tracedsync._waits import Wait, waits

if TYPE_CHECKING:
    from tracedsync._lock import Lock, RLock

__all__ = ["Blocked", "acquire_contended", "begin_blocked", "begin_wait", "end_wait", "thread_name"]

register_internal_module(__file__)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


#: ``waits.end``, bound once.  CPython compiles ``waits.end(outer)`` in a
#: ``finally`` block as an attribute load and a call, which makes a bound
#: method object: an allocation, so a collection (3.11: right there; 3.12+:
#: when ``end`` starts) and a ``__del__`` with the lock just taken.
_end = waits.end


def begin_wait(
    primitive: object,
    timed: bool,
    frame: FrameType | None,
    *,
    check_cycle: bool = False,
    self_wait: bool = False,
) -> Wait | None:
    """Register that the calling thread blocks on ``primitive`` (the wait made
    in ``frame``); pass the result to :func:`end_wait` when the wait is over,
    however it ends.

    With ``check_cycle`` an untimed wait is first checked for a wait-for
    cycle (:mod:`tracedsync._deadlock`), which may raise ``DeadlockError``.
    """
    if check_cycle and not timed:
        return begin_checked_wait(primitive, frame)
    return waits.begin(primitive, timed, frame, self_wait=self_wait)


def end_wait(outer: Wait | None) -> None:
    """Unregister the calling thread's wait (see :func:`begin_wait`)."""
    waits.end(outer)


class Blocked:
    """One blocking wait, from its ``<event>.blocked`` event to its outcome
    event (see the module docstring); made by :func:`begin_blocked`."""

    __slots__ = ("event", "frame", "observing", "outer", "primitive", "started_ns")

    def __init__(
        self,
        event: str,
        primitive: Any,
        frame: FrameType | None,
        observing: bool,
        started_ns: int,
        outer: Wait | None,
    ) -> None:
        self.event = event
        self.primitive = primitive
        self.frame = frame
        self.observing = observing
        self.started_ns = started_ns
        self.outer = outer

    def failed(self, error: BaseException, **fields: Any) -> None:
        """The wait ended with ``error``: its ``error`` outcome event."""
        if self.observing:
            data = {"outcome": "error", "error": _hooks.describe_error(error), **fields}
            _hooks.emit(self.event, self.primitive, self.frame, data)

    def end(self) -> None:
        """Unregister the wait, however it ended."""
        waits.end(self.outer)

    def outcome(self, outcome: str, **fields: Any) -> int:
        """The wait returned: its outcome event, with the time it waited;
        the event's timestamp (``0`` when nothing observes)."""
        if not self.observing:
            return 0
        stamped = _hooks.stamp()
        # Less tracedsync's time in this thread meanwhile (see _hooks.spent),
        # never below zero.
        waited = max(0, stamped[1] - _hooks.spent.get(get_ident(), 0) - self.started_ns)
        data = {"outcome": outcome, "waited_ns": waited, **fields}
        _hooks.deliver(stamped, self.event, self.primitive, self.frame, data)
        return stamped[1]


def begin_blocked(
    primitive: Any,
    event: str,
    frame: FrameType | None,
    timed: bool,
    blocked: dict[str, Any],
    *,
    check_cycle: bool = False,
    self_wait: bool = False,
    refused: dict[str, Any] | None = None,
    alone_is_stranded: bool = False,
) -> Blocked:
    """Begin a blocking wait on ``primitive`` made in ``frame``: emit
    ``<event>.blocked`` with the fields ``blocked`` (while observing) and
    register the wait (see :func:`begin_wait`).  If the cycle check refuses
    it, the ``error`` outcome event (with the fields ``refused``) is emitted
    and :class:`DeadlockError` propagates.  ``alone_is_stranded``: the wait
    blocks now and only another thread could end it, so in a thread alone
    it is a deadlock (see :func:`~tracedsync._deadlock.check_alone`)."""
    observing = _hooks.observing
    started_ns = 0
    if observing:  # less tracedsync's time in this thread so far (see _hooks.spent)
        base = _hooks.spent.get(get_ident(), 0)
        started_ns = _hooks.emit(event + ".blocked", primitive, frame, blocked) - base
    try:
        if alone_is_stranded and not timed:
            check_alone(primitive, frame)
        outer = begin_wait(primitive, timed, frame, check_cycle=check_cycle, self_wait=self_wait)
    except DeadlockError as error:
        if observing:
            data = {"outcome": "error", "error": _hooks.describe_error(error)}
            if refused:
                data.update(refused)
            _hooks.emit(event, primitive, frame, data)
        raise
    return Blocked(event, primitive, frame, observing, started_ns, outer)


def thread_name(ident: int) -> str:
    """The ``threading`` name of the thread ``ident``, without creating a
    dummy ``Thread`` object for threads ``threading`` does not know."""
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"thread {ident}"


def describe(primitive: _Named) -> str:
    """``Lock 'Lock@app.py:3#1'``: a primitive as it appears in a report
    (by its instance label: see ``_report.instance_name``)."""
    return f"{type(primitive).__name__} {instance_name(primitive)!r}"


def acquire_contended(
    lock: Lock | RLock,
    blocking: bool,
    timeout: float,
    frame: FrameType,
    *,
    quiet: bool = False,
    restoring: bool = False,
) -> bool:
    """Acquire ``lock`` whose raw lock was just found busy.

    Arguments are already validated.  Non-blocking and zero-timeout calls
    return ``False`` at once, as the stdlib does.  A thread re-acquiring a
    ``Lock`` it holds is checked for self-deadlock first.  The wait is
    registered for its whole duration; if it is interrupted (``KeyboardInterrupt``
    in the main thread) the lock is not taken and the registration is undone.
    ``quiet`` leaves the final ``acquire`` event to the caller (a condition
    restoring an RLock's depth reports it with the depth).  ``restoring``
    marks a condition wait taking its lock back: the lock-order checker may
    report but must not refuse it, since ``Condition.wait`` cannot return
    without its lock.
    """
    me = get_ident()
    event = lock._events + ".acquire"
    self_reacquire = lock._owner == me  # an RLock's owner never gets here
    if not blocking or timeout == 0:
        if self_reacquire:
            _warn_self_reacquire(lock, frame, "a non-blocking acquire returns False")
        if _hooks.observing:
            data = {"outcome": "would_block", "waited_ns": 0, "blocking": bool(blocking)}
            data["timeout"] = timeout
            _hooks.emit(event, lock, frame, data)
        return False
    reported = self_reacquire and _check_self_reacquire(lock, timeout, frame)
    # Where it was held before the wait: the note below comes after it.
    before = _sites(lock, frame) if self_reacquire and timeout < 0 else None
    wait = begin_blocked(
        lock,
        event,
        frame,
        timeout >= 0,
        {"timeout": timeout, "holder_thread_id": lock._owner},
        check_cycle=not self_reacquire,
        self_wait=self_reacquire,
        refused={"timeout": timeout},
    )
    code, offset = user_site(frame)  # before the wait: see Lock._take
    prepared = _lockorder.prepared_entry(lock) if _hooks.ordering else None
    try:
        try:
            acquired = _wait_and_take(
                lock, timeout, frame, me, self_reacquire, reported, code, offset
            )
        finally:
            _end(wait.outer)  # not wait.end(): see _end
        if acquired and before is not None:
            # Reported only now, once another thread released it: a wait
            # that never ends is reported once, as a deadlock.
            _warn_self_reacquire(lock, frame, "another thread released it", before)
        if acquired and _hooks.ordering and not quiet:
            _lockorder.acquired(lock, frame, timeout < 0 and not restoring, prepared)
    except BaseException as error:
        wait.failed(error, blocking=True, timeout=timeout)
        raise
    if wait.observing and not quiet:
        depth = lock._depth_data() if acquired else {}
        outcome = "acquired" if acquired else "timed_out"
        base = _hooks.spent.get(get_ident(), 0)  # see _hooks.spent
        stamped_ns = wait.outcome(outcome, blocking=True, timeout=timeout, **depth)
        if acquired:
            lock._acquired_ns = stamped_ns - base
    return acquired


def _wait_and_take(
    lock: Lock | RLock,
    timeout: float,
    frame: FrameType,
    me: int,
    self_reacquire: bool,
    reported: bool,
    code: CodeType | None,
    offset: int,
) -> bool:
    """Take ``lock``, waiting as long as ``timeout`` allows (the explorer
    models the wait while it controls the run); whether it was taken.

    The owner is recorded the moment the raw lock is taken, with nothing
    that allocates in between: the garbage collector may run a ``__del__``
    that takes this lock, and it must find it owned (a self re-acquire), as
    it would with ``threading``."""
    raw = lock._lock

    def attempt(seconds: float) -> bool:
        if raw.acquire(True, seconds):
            lock._take(code, offset)
            return True
        return False

    explorer = _control.controlled()
    if explorer is not None:
        if explorer.acquire_lock(raw, lock, timeout):
            lock._take(code, offset)
            return True
        return False
    if reported:  # a self-deadlock reported, and the policy lets it block
        while not attempt(MAX_POLL_SECONDS):
            pass
        return True
    if self_reacquire and timeout < 0:
        _wait_unless_stranded_self(lock, frame, attempt)
        return True
    if timeout < 0 and not waits.others_can_progress(me)[0]:
        wait_unless_stranded(attempt, lock, frame)
        return True
    return attempt(timeout)


def _strict(lock: Lock | RLock) -> bool:
    per_lock = getattr(lock, "strict", None)
    return settings.strict if per_lock is None else bool(per_lock)


def _check_self_reacquire(lock: Lock | RLock, timeout: float, frame: FrameType) -> bool:
    """Report a self re-acquire that can never succeed (``deadlock`` policy;
    strict mode refuses every blocking one); note a timed one.  Whether a
    deadlock was reported and the policy lets the thread block, as
    ``threading`` would."""
    if _strict(lock):
        _self_deadlock(lock, frame, "strict mode refuses every blocking self re-acquire", True)
    if timeout < 0 and not waits.others_exist(get_ident()):
        _self_deadlock(lock, frame, "no other thread exists that could release it")
        return True
    if timeout >= 0:
        _warn_self_reacquire(
            lock, frame, f"waiting up to {timeout} s for another thread to release it"
        )
    return False


def _wait_unless_stranded_self(
    lock: Lock | RLock, frame: FrameType, attempt: Callable[[float], bool]
) -> None:
    """Wait, without timeout, for another thread to release a lock we hold;
    report a deadlock once no other thread can (see
    :func:`~tracedsync._deadlock.wait_unless_stranded`)."""

    def refuse() -> None:
        _self_deadlock(lock, frame, "every other thread is blocked forever or has exited")

    wait_unless_stranded(attempt, lock, frame, refuse)


def _sites(lock: Lock | RLock, frame: FrameType) -> tuple[str | None, str | None]:
    """Where the lock was first acquired, and where the new acquire is made."""
    return describe_offset(lock._acquired_code, lock._acquired_offset), describe_call(frame)


def _warn_self_reacquire(
    lock: Lock | RLock,
    frame: FrameType,
    outcome: str,
    sites: tuple[str | None, str | None] | None = None,
) -> None:
    held_at, requested_at = _sites(lock, frame) if sites is None else sites
    data = {"held_at": held_at, "requested_at": requested_at, "detail": outcome}
    _hooks.emit("lock.self_reacquire", lock, frame, data, _hooks.WARNING)


def _self_deadlock(lock: Lock | RLock, frame: FrameType, reason: str, refuse: bool = False) -> None:
    """Report a thread re-acquiring its own lock through the findings
    pipeline (``deadlock`` policy: ``DeadlockError`` by default; always
    with ``refuse``)."""
    held_at, requested_at = _sites(lock, frame)
    me = get_ident()
    name = thread_name(me)
    message = (
        f"{describe(lock)} re-acquired by thread {name!r}, which already holds it: "
        f"this acquire would block forever ({reason}).\n"
        f"  first acquired at: {held_at or 'unknown'}\n"
        f"  acquired again at: {requested_at or 'unknown'}\n"
        "Release it before acquiring it again, or use an RLock if re-entry is intended."
    )
    details = {"held_at": held_at, "requested_at": requested_at, "reason": reason}
    report = Report("deadlock", message, ("self_reacquire", lock.name), details)
    report_finding(
        "deadlock.self_reacquire",
        report,
        lock,
        frame,
        error=lambda: DeadlockError(
            message,
            primitive=lock.name,
            thread_name=name,
            held_at=held_at,
            requested_at=requested_at,
        ),
        refuse=refuse,
    )
