"""``tracedsync run``: trace an unmodified program, then say what happened.

The shape of ``coverage run`` and ``python -m cProfile``: ``threading`` is
patched (:mod:`tracedsync._patch`), the program runs as ``__main__`` with its
own ``sys.argv`` and ``sys.path[0]``, its exit status passes through, and at
exit a summary goes to stderr (:mod:`tracedsync._summary`), after
``threading`` has joined the program's non-daemon threads.

A program that deadlocks must not hang the person debugging it.  With
``--on-deadlock exit`` (the default):

* a wait-for cycle, a stranded wait, or a self re-acquire (its
  ``DeadlockError`` left uncaught, in any thread) is reported with stacks and
  the process exits at once with :data:`DEADLOCK_EXIT_STATUS`;
* a wait tracedsync cannot prove stuck is caught by the long-wait watchdog
  after ``--hang-timeout`` seconds: a blocking lock acquire that old is
  treated as a hang (go-deadlock's rule: holding a lock that long is a bug),
  and so is any wait once every thread of the program is blocked in a wait
  without timeout; the report has every thread's stack.  Other long waits
  (an idle worker on a queue) are reported and the program goes on.

``--on-deadlock continue`` reports and lets the program carry on as
``threading`` would; ``--on-deadlock raise`` raises
:class:`~tracedsync.DeadlockError` in the thread closing a cycle, the
library's own default.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import tempfile
import threading
import traceback
from _thread import allocate_lock
from dataclasses import dataclass, field
from typing import Any

from tracedsync import _hooks, _patch
from tracedsync._config import configure
from tracedsync._errors import DeadlockError
from tracedsync._jsonl import open_log_file
from tracedsync._report import Report
from tracedsync._sites import INTERNAL_FILES, register_internal_module
from tracedsync._summary import Summary
from tracedsync._waits import waits

__all__ = ["DEADLOCK_EXIT_STATUS", "RunOptions", "run"]

register_internal_module(__file__)
# The frames that run the program are not the program's: keep them out of
# call sites and stacks.
for _runner in (
    runpy.__file__,
    "<frozen runpy>",
    os.path.join(os.path.dirname(__file__), "__main__.py"),
):
    register_internal_module(_runner)

#: The exit status of a program ``tracedsync run`` stopped because it deadlocked.
DEADLOCK_EXIT_STATUS = 86
ON_DEADLOCK = ("exit", "continue", "raise")


@dataclass
class RunOptions:
    """What ``tracedsync run`` was asked to do."""

    #: The script's path, or the module's name when ``module`` is set.
    target: str
    arguments: list[str] = field(default_factory=list)
    module: bool = False
    trace: str | None = None
    timeline: str | None = None
    on_deadlock: str = "exit"
    hang_timeout: float = 10.0
    summary: bool = True
    log_level: str | None = None


class _Session:
    """One traced run: the sinks, the policies and the way out."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.summary = Summary()
        self._finished = allocate_lock()
        self._temporary_trace: str | None = None
        self._trace_sink: Any = None

    # -- set up ----------------------------------------------------------------

    def start(self) -> None:
        options = self.options
        trace = options.trace
        if trace is None and options.timeline is not None:
            handle, trace = tempfile.mkstemp(prefix="tracedsync-", suffix=".jsonl")
            os.close(handle)
            self._temporary_trace = trace
        if trace is not None:
            self._trace_sink = open_log_file(trace)
        _hooks.add_sink(self.summary.add_record)
        level = options.log_level
        if level is None and "TRACEDSYNC_LOG" not in os.environ:
            level = "warning"  # inversions and long waits as they happen
        exiting = options.on_deadlock == "exit"
        configure(
            log_level=level,
            on_deadlock=self.deadlock_found if exiting else _POLICIES[options.on_deadlock],
            wait_warning=options.hang_timeout,
            on_long_wait=self.long_wait if exiting else "warn",
        )
        if exiting:
            threading.excepthook = self._thread_excepthook(threading.excepthook)
        _patch.patch()
        atexit.register(self.finish)

    def _thread_excepthook(self, original: Any) -> Any:
        def excepthook(arguments: Any) -> None:
            original(arguments)
            if isinstance(arguments.exc_value, DeadlockError):
                self.exit_for_deadlock()

        return excepthook

    # -- findings --------------------------------------------------------------

    def deadlock_found(self, report: Report) -> None:
        """The ``on_deadlock`` policy of ``--on-deadlock exit``: the finding's
        event is already reported; stop the program."""
        self.exit_for_deadlock()

    def long_wait(self, report: Report) -> None:
        """The ``on_long_wait`` policy of ``--on-deadlock exit``."""
        details = report.details
        blocked = details.get("blocked_thread_id")
        wait = waits.get(blocked) if blocked is not None else None
        if wait is None:
            return  # it ended meanwhile
        is_lock_wait = getattr(wait.primitive, "_kind", "") in {"Lock", "RLock"}
        if (is_lock_wait and not wait.timed) or _nothing_can_run():
            reason = (
                "a lock acquire blocked that long"
                if is_lock_wait and not wait.timed
                else "every thread is blocked in a wait without timeout"
            )
            first_line = report.message.splitlines()[0]
            message = (
                f"Hang (--hang-timeout {self.options.hang_timeout:g} s: {reason}): "
                f"{first_line} See the long wait reported above for every thread's stack."
            )
            _hooks.emit("run.hang", wait.primitive, None, {"message": message}, _hooks.ERROR)
            self.exit_for_deadlock()

    def exit_for_deadlock(self) -> None:
        """Report, then end the process with :data:`DEADLOCK_EXIT_STATUS`."""
        self.finish()
        os._exit(DEADLOCK_EXIT_STATUS)

    # -- the end ---------------------------------------------------------------

    def finish(self) -> None:
        """Flush the trace, write the timeline and print the summary (once)."""
        if not self._finished.acquire(False):
            return
        _patch.unpatch()
        if self._trace_sink is not None:
            self._trace_sink.finish()
        sys.stdout.flush()
        if self.options.summary:
            print(self.summary.render(full=False), file=sys.stderr)
        if self.options.timeline is not None and self._trace_sink is not None:
            from tracedsync._timeline import write_timeline
            from tracedsync._tracefile import read_events

            with open(self.options.timeline, "w", encoding="utf-8") as output:
                write_timeline(read_events(self._trace_sink.path, allow_empty=True), output)
            print(f"tracedsync: timeline written to {self.options.timeline}", file=sys.stderr)
        if self.options.trace is not None:
            print(f"tracedsync: trace written to {self.options.trace}", file=sys.stderr)
        if self._temporary_trace is not None:
            os.unlink(self._temporary_trace)
        sys.stderr.flush()


_POLICIES = {"continue": "warn", "raise": "raise"}


def _nothing_can_run() -> bool:
    """Whether every thread of the program is blocked in a wait without timeout."""
    _, current = waits.snapshot()
    for thread in threading.enumerate():
        ident = thread.ident
        if ident is None or ident in waits.internal:
            continue
        wait = current.get(ident)
        if wait is None or wait.timed:
            return False
    return True


def _print_program_error(error: BaseException) -> None:
    """Print the program's uncaught exception as Python would, without the
    frames of runpy and tracedsync (the program did not write them)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep

    def ours(filename: str) -> bool:
        return (
            filename == runpy.__file__
            or filename.startswith(("<frozen runpy", package))
            or filename in INTERNAL_FILES - {threading.__file__}
        )

    shown = traceback.TracebackException.from_exception(error)
    for link in _chain(shown):
        link.stack = traceback.StackSummary.from_list(
            [frame for frame in link.stack if not ours(frame.filename)]
        )
    print("".join(shown.format()), end="", file=sys.stderr)


def _chain(shown: traceback.TracebackException) -> list[traceback.TracebackException]:
    links, seen = [], set()
    pending: list[traceback.TracebackException | None] = [shown]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        links.append(link)
        pending += [link.__cause__, link.__context__]
    return links


def run(options: RunOptions) -> int:
    """Run the program under tracing; return its exit status."""
    if options.on_deadlock not in ON_DEADLOCK:
        raise ValueError(f"on_deadlock must be one of {', '.join(ON_DEADLOCK)}")
    if options.module:
        sys.argv = [options.target, *options.arguments]
        sys.path[0] = os.getcwd()
    else:
        if not os.path.exists(options.target):
            print(f"tracedsync run: no such file: {options.target}", file=sys.stderr)
            return 2
        sys.argv = [options.target, *options.arguments]
        sys.path[0] = os.path.dirname(os.path.abspath(options.target))
    session = _Session(options)
    session.start()
    try:
        if options.module:
            runpy.run_module(options.target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(options.target, run_name="__main__")
    except SystemExit as stop:
        return _exit_status(stop.code)
    except BaseException as error:  # the program's own uncaught exception
        _print_program_error(error)
        if isinstance(error, DeadlockError) and options.on_deadlock == "exit":
            session.finish()
            return DEADLOCK_EXIT_STATUS
        return 130 if isinstance(error, KeyboardInterrupt) else 1
    return 0


def _exit_status(code: Any) -> int:
    """What ``sys.exit(code)`` makes the process exit with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
