"""Long waits: a watchdog reporting waits that last too long.

go-deadlock's ``DeadlockTimeout``, non-fatal by default: once a blocking
acquire, wait or join has lasted ``wait_warning`` seconds, it is reported once
with what it waits for, who holds it and where they took it, and what every
thread is doing now (``sys._current_frames()``).  This catches hangs on things
tracedsync does not see (I/O, a lock of another library), which no cycle
check can.

The watchdog is one raw ``_thread`` thread, started by
``configure(wait_warning=...)`` (or ``TRACEDSYNC_WAIT_WARNING``) and stopped
by ``configure(wait_warning=0)``.  It is invisible to ``threading`` and to the
deadlock checks, and never keeps the process alive.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock, get_ident, start_new_thread
from collections.abc import Callable
from time import monotonic_ns

from tracedsync import _hooks
from tracedsync._config import settings
from tracedsync._findings import report_finding
from tracedsync._guards import internal_lock
from tracedsync._report import Report, current_stack, describe_primitive, thread_label
from tracedsync._sites import (
    describe_offset,
    describe_wait,
    live_threads,
    register_internal_module,
)
from tracedsync._typenames import Any
from tracedsync._waits import Wait, waits

__all__ = ["watchdog"]

register_internal_module(__file__)


class Watchdog:
    """The long-wait watchdog (one per process: :data:`watchdog`)."""

    def __init__(self) -> None:
        self._guard = internal_lock()
        self._stop: Any = None  # a held raw lock while running; released to stop
        self._finished: Any = None
        self.threshold_ns = 0
        #: (thread ident, wait start) of every wait already reported.
        self._reported: set[tuple[int, int]] = set()
        #: ``tracedsync run``'s rule: called as ``hang_rule(ident, wait)`` for
        #: a long wait, it returns why the wait is a hang, or ``None``.  A
        #: hang is reported instead of the long wait, as one ``run.hang``
        #: finding (``deadlock`` policy).
        self.hang_rule: Callable[[int, Wait], str | None] | None = None
        #: Long waits found by the last scan, reported by the next (see scan).
        self._pending: set[tuple[int, int]] = set()

    @property
    def running(self) -> bool:
        """Whether the watchdog thread runs."""
        return self._stop is not None

    def configure(self, seconds: float) -> None:
        """Report waits longer than ``seconds``; ``0`` stops the watchdog."""
        if seconds < 0:
            raise ValueError("wait_warning must be a number of seconds, 0 to turn it off")
        with self._guard:
            self.threshold_ns = int(seconds * 1e9)
            # TRACEDSYNC=off: no wait is ever registered, so no thread to scan them.
            if seconds and self._stop is None and settings.enabled:
                self._stop, self._finished = allocate_lock(), allocate_lock()
                self._stop.acquire()
                self._finished.acquire()
                # Return once the thread has marked itself internal: until
                # then it is a thread state without an ident (3.13+) or not
                # yet internal, and a lone wait checked meanwhile
                # (check_alone) would take it for a thread that could end it.
                ready = allocate_lock()
                ready.acquire()
                start_new_thread(self._run, (self._stop, self._finished, ready))
                ready.acquire()
            elif not seconds and self._stop is not None:
                stop, finished = self._stop, self._finished
                self._stop = self._finished = None
                stop.release()
                finished.acquire()  # the thread has exited its loop

    def _run(self, stop: Any, finished: Any, ready: Any) -> None:
        waits.internal.add(get_ident())
        ready.release()
        _hooks.bind_thread("tracedsync-watchdog")
        try:
            while not stop.acquire(True, max(min(self.threshold_ns / 4e9, 1.0), 0.01)):
                self.scan()
        finally:
            waits.internal.discard(get_ident())
            finished.release()

    def scan(self) -> None:
        """Report every wait older than the threshold not reported yet.

        With a :attr:`hang_rule`, a hang among them is the one report (the
        other long waits are its consequences: a join of a thread stuck
        behind it...), and a plain long wait is reported one scan later, so
        that a hang that reaches the threshold just after it is still found
        first.
        """
        threshold = self.threshold_ns
        if not threshold:
            return
        now = monotonic_ns()
        _, current = waits.snapshot()
        live = {(ident, wait.since_ns) for ident, wait in current.items()}
        self._reported &= live
        overdue = [
            (ident, wait)
            for ident, wait in current.items()
            if (ident, wait.since_ns) not in self._reported and now - wait.since_ns >= threshold
        ]
        rule = self.hang_rule
        if rule is not None:
            for ident, wait in overdue:
                hang = rule(ident, wait)
                if hang is not None:
                    self._reported.update((other, w.since_ns) for other, w in overdue)
                    _report(ident, wait, now, hang)
                    return
            pending, self._pending = self._pending, {(i, w.since_ns) for i, w in overdue}
            overdue = [(i, w) for i, w in overdue if (i, w.since_ns) in pending]
        for ident, wait in overdue:
            self._reported.add((ident, wait.since_ns))
            _report(ident, wait, now)

    def reset_after_fork(self) -> None:
        """In a forked child the watchdog thread does not exist."""
        self._stop = self._finished = None
        self._reported = set()
        self._pending = set()


def _report(ident: int, wait: Wait, now: int, hang: str | None = None) -> None:
    """Report the long wait ``wait`` of thread ``ident``; as a hang (``run.hang``,
    ``deadlock`` policy) when ``hang`` says why it is one."""
    primitive: Any = wait.primitive
    seconds = (now - wait.since_ns) / 1e9
    waits_at = describe_wait(ident, wait.code, wait.offset) or "unknown"
    heading = "Long wait" if hang is None else f"Hang ({hang})"
    lines = [
        f"{heading}: thread {thread_label(ident)} has waited {seconds:.1f} s for "
        f"{describe_primitive(primitive)} at {waits_at} (tracedsync).",
    ]
    details: dict[str, Any] = {
        "blocked_thread_id": ident,
        "waited_s": round(seconds, 3),
        "waits_at": waits_at,
        "timed": wait.timed,
    }
    holder = getattr(primitive, "_owner", None)
    if holder is not None:
        held_at = describe_offset(primitive._acquired_code, primitive._acquired_offset)
        stack = current_stack(holder)
        lines.append(
            f"  it is held by thread {thread_label(holder)}, acquired at {held_at}; "
            f"that thread is now at: {' <- '.join(stack) or 'unknown'}"
        )
        details.update(holder_thread_id=holder, holder_acquired_at=held_at, holder_stack=stack)
    lines.append("  all threads now:")
    stacks: dict[str, list[str]] = {}
    for other in sorted(live_threads() or ()):
        if other in waits.internal:
            continue
        stack = current_stack(other)
        stacks[str(other)] = stack
        shown = " <- ".join(stack) or "(no user frames)"
        lines.append(f"    {thread_label(other)}: {shown}")
    details["stacks"] = stacks
    if hang is not None:
        details["reason"] = hang
        report = Report("deadlock", "\n".join(lines), ("hang", ident, wait.since_ns), details)
        report_finding("run.hang", report, primitive)
        return
    report = Report("long_wait", "\n".join(lines), ("long_wait", ident, wait.since_ns), details)
    report_finding("wait.long", report, primitive)


watchdog = Watchdog()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=watchdog.reset_after_fork)


#: ``TRACEDSYNC_WAIT_WARNING`` as read at import (``0``: off).
seconds_from_environment = 0.0


def _from_environment() -> None:
    global seconds_from_environment
    value = os.environ.get("TRACEDSYNC_WAIT_WARNING", "").strip()
    if value:
        try:
            watchdog.configure(float(value))
            seconds_from_environment = float(value)
        except ValueError:
            print(
                f"tracedsync: ignoring TRACEDSYNC_WAIT_WARNING={value!r} (not a number of seconds)",
                file=sys.stderr,
            )


_from_environment()
