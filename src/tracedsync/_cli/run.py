"""``tracedsync run``: trace an unmodified program, then say what happened.

The shape of ``coverage run`` and ``python -m cProfile``: ``threading`` is
patched (:mod:`tracedsync._patch`), the program runs as ``__main__`` with its
own ``sys.argv`` and ``sys.path[0]``, its exit status passes through, and at
exit a summary goes to stderr (:mod:`tracedsync._cli.summary`), after
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

The summary and, when the program has redirected stderr (pytest's output
capture does, at the file-descriptor level), the finding that stops it go
to the stderr ``run`` started with: a duplicate of file descriptor 2 made
before the program's first line, which nothing the program does to
``sys.stderr`` or fd 2 can capture and then discard at ``os._exit``.  Only one
finding ends the process: a second one, in another thread, waits for the
first's report to be complete.  ``multiprocessing`` children are terminated
before that exit (``os._exit`` skips the ``atexit`` handler that would).

On ``SIGTERM`` (what a CI timeout sends) the trace is flushed, the
timeline written and the summary printed before the process dies of the
signal, as it would have without tracedsync; ``SIGINT`` raises
``KeyboardInterrupt`` as usual and the program ends with status 130 after
the same.  A program that installs its own handler keeps it.

``--on-deadlock continue`` reports and lets the program carry on as
``threading`` would; ``--on-deadlock raise`` raises
:class:`~tracedsync.DeadlockError` in the thread closing a cycle, the
library's own default.

The Python processes the program starts are traced the same way, each into
its own trace, which ``run`` folds into its summary at exit
(:mod:`tracedsync._cli.children`): a child's session (:func:`start_child`,
or a ``fork`` child's inherited one) applies the same settings, reports and
exits the same way, and prints no summary of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import runpy
import signal
import sys
import threading
from _thread import RLock as _RawRLock
from _thread import allocate_lock, get_ident

from tracedsync import _hooks, _patch
from tracedsync._cli import children
from tracedsync._cli.summary import Summary
from tracedsync._config import settings
from tracedsync._configure import configure
from tracedsync._errors import DeadlockError
from tracedsync._jsonl import open_log_file
from tracedsync._report import Report
from tracedsync._sites import INTERNAL_FILES, register_internal_module
from tracedsync._typenames import TYPE_CHECKING, Any
from tracedsync._waits import Wait, waits
from tracedsync._watchdog import watchdog

if TYPE_CHECKING:
    import traceback

__all__ = ["DEADLOCK_EXIT_STATUS", "RunOptions", "run", "start_child"]

register_internal_module(__file__)
# The frames that run the program are not the program's: keep them out of
# call sites and stacks.
for _runner in (
    runpy.__file__,
    "<frozen runpy>",
    os.path.join(os.path.dirname(os.path.dirname(__file__)), "__main__.py"),
    os.path.join(os.path.dirname(__file__), "main.py"),
):
    register_internal_module(_runner)

#: The exit status of a program ``tracedsync run`` stopped because it deadlocked.
DEADLOCK_EXIT_STATUS = 86
ON_DEADLOCK = ("exit", "continue", "raise")


class RunOptions:
    """What ``tracedsync run`` was asked to do.

    A plain class, not a dataclass: ``dataclasses`` (with ``inspect``) is
    start-up time every ``run`` would pay, and modules the traced program
    would find imported.
    """

    def __init__(
        self,
        target: str,
        arguments: list[str] | None = None,
        module: bool = False,
        trace: str | None = None,
        timeline: str | None = None,
        on_deadlock: str = "exit",
        hang_timeout: float = 10.0,
        summary: bool = True,
        log_level: str | None = None,
        races: bool = False,
        race_paths: list[str] | None = None,
        fail_on: tuple[str, ...] = (),
        fail_on_status: int = 87,
    ) -> None:
        #: The script's path, or the module's name when ``module`` is set.
        self.target = target
        self.arguments = [] if arguments is None else arguments
        self.module = module
        self.trace = trace
        self.timeline = timeline
        self.on_deadlock = on_deadlock
        self.hang_timeout = hang_timeout
        self.summary = summary
        self.log_level = log_level
        #: Check for data races (``--races``); extra directories of user code.
        self.races = races
        self.race_paths = [] if race_paths is None else race_paths
        #: Kinds of finding (``GATE_KINDS``) that make a run that exited with
        #: status 0 exit with ``fail_on_status`` instead (``--fail-on``).
        self.fail_on = fail_on
        self.fail_on_status = fail_on_status

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"RunOptions({fields})"


class _Session:
    """One traced run: the sinks, the policies and the way out."""

    def __init__(self, options: RunOptions, *, child_of: str | None = None) -> None:
        self.options = options
        self.summary = Summary()
        #: A child process's session (no summary of its own): the trace of
        #: the run it belongs to, which names the child's own.
        self.child_of = child_of
        #: The run's trace, real or not, after which the children's are named
        #: (:mod:`tracedsync._cli.children`), and the temporary directory
        #: that holds them when there is no ``--trace``.
        self._children_trace = child_of or ""
        self._children_directory: str | None = None
        self._race_roots: list[str] = []
        self._saved_excepthooks: tuple[Any, Any] = (threading.excepthook, sys.excepthook)
        self._sigterm_handler: Any = None
        self._finishing = _RawRLock()
        self._finished = False
        self._exiting = allocate_lock()
        self._exiting_thread: int | None = None
        self._temporary_trace: str | None = None
        self._trace_sink: Any = None
        self._races: Any = None
        #: The stderr run started with (see the module docstring), and what
        #: ``sys.stderr`` and fd 2 were then, to tell whether they still are.
        self._stderr: Any = sys.stderr
        self._sys_stderr: Any = sys.stderr
        self._stderr_stat: os.stat_result | None = None

    def _save_stderr(self) -> None:
        try:
            self._stderr_stat = os.fstat(2)
            self._stderr = os.fdopen(
                os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace"
            )
        except OSError:  # no fd 2: keep sys.stderr
            self._stderr_stat = None

    def _stderr_redirected(self) -> bool:
        """Whether what the program prints to stderr now goes elsewhere than
        the stderr ``run`` started with (so events logged there may be lost)."""
        if sys.stderr is not self._sys_stderr:
            return True
        if self._stderr_stat is None:
            return False
        try:
            return not os.path.samestat(os.fstat(2), self._stderr_stat)
        except OSError:
            return True

    # -- set up ----------------------------------------------------------------

    def start(self) -> None:
        global _active
        options = self.options
        self._save_stderr()
        trace = options.trace
        if self.child_of is not None:
            self._trace_sink = _open_child_trace(self.child_of)
        else:
            if trace is None and options.timeline is not None:
                import tempfile  # start-up cost: only for a run that needs a trace file

                handle, trace = tempfile.mkstemp(prefix="tracedsync-", suffix=".jsonl")
                os.close(handle)
                self._temporary_trace = trace
            if trace is not None:
                self._trace_sink = open_log_file(trace)
            self.summary.pid = os.getpid()
            _hooks.add_sink(self.summary.add_record)
        level = options.log_level
        if level is None and "TRACEDSYNC_LOG" not in os.environ:
            level = "warning"  # inversions and long waits as they happen
        exiting = options.on_deadlock == "exit"
        configure(
            log_level=level,
            on_deadlock=self.deadlock_found if exiting else _POLICIES[options.on_deadlock],
            wait_warning=options.hang_timeout,
        )
        if exiting:
            watchdog.hang_rule = self.hang_reason
            threading.excepthook = self._thread_excepthook(threading.excepthook)
            if self.child_of is not None:  # the parent's runpy catches it (_run_program)
                sys.excepthook = self._main_excepthook(sys.excepthook)
        if settings.enabled:  # TRACEDSYNC=off: the program runs as under python
            _patch.patch()
        if options.races:
            from tracedsync._races import RaceDetector  # start-up cost: only with --races

            if self.child_of is not None:
                roots = []  # the run's roots are in race_paths
            elif options.module:
                roots = [os.getcwd()]
            else:
                roots = [os.path.dirname(os.path.abspath(options.target))]
            self._race_roots = [*roots, *options.race_paths]
            self._races = RaceDetector(self._race_roots)
            self._races.start()
        if self.child_of is None and settings.enabled:
            self._announce_to_children(level)
        _active = self
        atexit.register(self.finish)
        if settings.enabled:  # TRACEDSYNC=off: SIGTERM kills the program as under python
            self._handle_sigterm()

    def _announce_to_children(self, level: str | None) -> None:
        """Trace the Python processes the program starts (see
        :mod:`tracedsync._cli.children`)."""
        options = self.options
        if options.trace is not None:
            self._children_trace = os.path.abspath(options.trace)
            for stale in children.child_traces(self._children_trace):  # an earlier run's
                with contextlib.suppress(OSError):
                    os.unlink(stale)
        else:
            # Removed at the end: a child started after that is not traced.
            import tempfile  # start-up cost: only for a run whose children need a trace

            self._children_directory = tempfile.mkdtemp(prefix="tracedsync-run-")
            self._children_trace = os.path.join(self._children_directory, "trace.jsonl")
        children.announce(
            self._children_trace,
            {
                "on_deadlock": options.on_deadlock,
                "hang_timeout": options.hang_timeout,
                "log_level": level,
                "races": options.races,
                "race_paths": self._race_roots,
            },
        )

    def become_child(self) -> None:
        """In a ``fork`` child: the inherited session becomes a child's, with
        its own trace (the parent writes the parent's) and no summary."""
        self._finishing = _RawRLock()
        self._exiting = allocate_lock()
        self._exiting_thread = None
        _hooks.remove_sink(self.summary.add_record)
        self.summary = Summary()
        self._temporary_trace = None
        self._children_directory = None
        self.child_of = self._children_trace
        # The run's directory gone: the inherited file is kept.
        with contextlib.suppress(OSError):
            self._trace_sink = _open_child_trace(self.child_of)

    def _handle_sigterm(self) -> None:
        """Finish (trace, timeline, summary) on ``SIGTERM``, then die of it."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers
        try:
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return  # someone (an embedding program) handles it already
        except (AttributeError, ValueError):  # no SIGTERM on this platform
            return

        def terminated(signum: int, frame: Any) -> None:
            self.finish()
            _terminate_children()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        # It ends the process: no wait it interrupts can go on (see
        # _deadlock.check_alone).
        terminated.tracedsync_internal = True  # type: ignore[attr-defined]
        signal.signal(signal.SIGTERM, terminated)
        self._sigterm_handler = terminated

    def retire(self) -> None:
        """A child process that runs ``tracedsync run`` itself: that run is
        its own, and this child's session ends here, quietly (its hooks and
        handler undone, so the new run's are the only ones)."""
        with self._finishing:
            self._finished = True
        atexit.unregister(self.finish)
        watchdog.hang_rule = None
        if self._races is not None:
            self._races.stop()
        _patch.unpatch()
        threading.excepthook, sys.excepthook = self._saved_excepthooks
        with contextlib.suppress(AttributeError, ValueError):  # no SIGTERM, not main thread
            if signal.getsignal(signal.SIGTERM) is self._sigterm_handler:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sink = self._trace_sink
        if sink is not None:
            sink.close()
            if not sink.written:
                with contextlib.suppress(OSError):
                    os.unlink(sink.path)

    def abandon(self) -> None:
        """The program never started (no such module): undo everything,
        print nothing."""
        with self._finishing:
            self._finished = True
        children.withdraw()
        watchdog.hang_rule = None
        if self._races is not None:
            self._races.stop()
        _patch.unpatch()
        _hooks.remove_sink(self.summary.add_record)
        if self._trace_sink is not None:
            self._trace_sink.finish()
        if self._temporary_trace is not None:
            os.unlink(self._temporary_trace)

    def _thread_excepthook(self, original: Any) -> Any:
        def excepthook(arguments: Any) -> None:
            original(arguments)
            error = arguments.exc_value
            if isinstance(error, DeadlockError):
                name = getattr(arguments.thread, "name", "?")
                self.exit_for_deadlock(f"DeadlockError in thread {name!r}: {error}")

        return excepthook

    def _main_excepthook(self, original: Any) -> Any:
        """A child's uncaught ``DeadlockError`` in its main thread: the
        traceback as ``run`` prints it, and the deadlock status."""

        def excepthook(kind: Any, error: Any, traceback_: Any) -> None:
            if not isinstance(error, DeadlockError):
                original(kind, error, traceback_)
                return
            _print_program_error(error)
            self.exit_for_deadlock()

        return excepthook

    # -- findings --------------------------------------------------------------

    def deadlock_found(self, report: Report) -> None:
        """The ``on_deadlock`` policy of ``--on-deadlock exit``: the finding's
        event is already reported; stop the program."""
        self.exit_for_deadlock(report.message)

    def hang_reason(self, ident: int, wait: Wait) -> str | None:
        """The watchdog's hang rule under ``--on-deadlock exit``: why the
        long wait ``wait`` of thread ``ident`` is a hang, or ``None``."""
        if waits.get(ident) is not wait:
            return None  # it ended meanwhile
        primitive: Any = wait.primitive
        is_lock_wait = getattr(primitive, "_kind", "") in {"Lock", "RLock"}
        # A lock wait is a hang while the lock stays taken (behind something
        # tracedsync cannot see); a free lock has been granted to a waiter.
        if is_lock_wait and not wait.timed and primitive._lock.locked():
            reason = "a lock acquire blocked that long"
        elif not waits.others_can_progress(None)[0]:
            reason = "every thread is blocked in a wait without timeout"
        else:
            return None
        return f"--hang-timeout {self.options.hang_timeout:g} s: {reason}"

    def exit_for_deadlock(self, finding: str = "") -> None:
        """Report, then end the process with :data:`DEADLOCK_EXIT_STATUS`.

        The first finding's thread does it all; a later finding's thread
        waits here for that exit (it never returns), so nothing cuts the
        first report short.  ``finding`` is the report's text, written to
        the saved stderr when the program's stderr is redirected (the event
        logged there would be lost with the capture).
        """
        if self._exiting_thread == get_ident():
            return  # a finding while this thread is already exiting
        self._exiting.acquire()  # never released: the process ends under it
        self._exiting_thread = get_ident()
        try:
            if finding and self._stderr_redirected():
                sys.stdout.flush()
                print(f"tracedsync run: {finding}", file=self._stderr)
            if self.child_of is not None:
                print(
                    f"tracedsync run: child process {os.getpid()} stopped "
                    f"(exit status {DEADLOCK_EXIT_STATUS}); the run's summary lists its findings",
                    file=self._stderr,
                )
            self.finish()
            _terminate_children()
        finally:
            os._exit(DEADLOCK_EXIT_STATUS)

    # -- the end ---------------------------------------------------------------

    def finish(self) -> None:
        """Flush the trace, write the timeline and print the summary (once).

        A second caller (the program's normal exit while a finding ends the
        process) waits until the first has written everything.
        """
        with self._finishing:
            if self._finished:
                return
            self._finished = True
            self._finish()

    def _finish(self) -> None:
        watchdog.hang_rule = None
        if self._races is not None:
            self._races.stop()
        _patch.unpatch()
        if self._trace_sink is not None:
            self._trace_sink.finish()
        for stream in (sys.stdout, sys.stderr):  # what the program wrote comes first
            if stream is not None:
                # Closed in multiprocessing's helper processes.
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
        if self.child_of is not None:
            sink = self._trace_sink
            if sink is not None and not sink.written:  # multiprocessing's helper processes
                sink.close()
                with contextlib.suppress(OSError):
                    os.unlink(sink.path)
            return  # the run's summary is the parent's
        children.withdraw()
        self._fold_children()
        if self.options.summary:
            if settings.enabled:
                print(self.summary.render(full=False), file=self._stderr)
            else:
                print(
                    "tracedsync: TRACEDSYNC=off: nothing was traced or checked",
                    file=self._stderr,
                )
        if self.options.timeline is not None and self._trace_sink is not None:
            # Start-up cost: only with --timeline.
            from tracedsync._cli.timeline import write_timeline

            with open(self.options.timeline, "w", encoding="utf-8") as output:
                write_timeline(
                    children.run_events(
                        self._trace_sink.path, self._children_trace or None, allow_empty=True
                    ),
                    output,
                )
            print(f"tracedsync: timeline written to {self.options.timeline}", file=self._stderr)
        if self.options.trace is not None:
            print(f"tracedsync: trace written to {self.options.trace}", file=self._stderr)
        if self._temporary_trace is not None:
            os.unlink(self._temporary_trace)
        if self._children_directory is not None:
            import shutil  # start-up cost: only for a run that made the directory

            shutil.rmtree(self._children_directory, ignore_errors=True)
        self._stderr.flush()

    def _fold_children(self) -> None:
        """Add the events of every child's trace to the summary."""
        if not self._children_trace:
            return
        from tracedsync._cli.tracefile import read_events  # start-up cost: only with children

        for path in children.child_traces(self._children_trace):
            # A child still running, or killed, may have left a cut last line.
            events = read_events(path, on_bad_record=lambda error: None, allow_empty=True)
            self.summary.add_events(events)


_POLICIES = {"continue": "warn", "raise": "raise"}

#: The session of this process's run (or of the run it is a child of).
_active: _Session | None = None


def _open_child_trace(run_trace: str) -> Any:
    """This process's own trace, as a child of the run whose trace is ``run_trace``."""
    sink = open_log_file(children.child_trace(run_trace, os.getpid()))
    # A multiprocessing child ends with os._exit after threading's shutdown:
    # its last events are written then.
    sink._finish_at_thread_shutdown()
    return sink


def start_child() -> None:
    """Trace this process as a child of the ``tracedsync run`` named in the
    environment (the start-up hook's call; see :mod:`tracedsync._cli.children`)."""
    settings_ = children.read_settings()
    if settings_ is None or _active is not None or not settings.enabled:
        return
    options = RunOptions(
        target="",
        on_deadlock=str(settings_.get("on_deadlock", "exit")),
        hang_timeout=float(settings_.get("hang_timeout", 10.0)),
        log_level=settings_.get("log_level"),
        races=bool(settings_.get("races")),
        race_paths=[str(path) for path in settings_.get("race_paths", ())],
    )
    if options.on_deadlock not in ON_DEADLOCK:
        raise ValueError(f"on_deadlock must be one of {', '.join(ON_DEADLOCK)}")
    if not os.path.isdir(os.path.dirname(settings_["trace"])):
        return  # the run is over (its directory is removed): not traced
    _Session(options, child_of=settings_["trace"]).start()


#: Threads that blocked ``SIGTERM`` for the ``fork()`` they are making (see
#: :func:`_block_sigterm_for_fork`).
_sigterm_blocked_for_fork: set[int] = set()


def _block_sigterm_for_fork() -> None:
    """Before ``fork()``: block ``SIGTERM`` in the forking thread while
    ``run``'s handler is installed, until the child's interpreter is ready.

    A child inherits the Python-level handler, and CPython drops a signal
    that reaches a child before its interpreter has re-initialised after
    the fork (``PyOS_AfterFork_Child`` clears the pending flags).  Without a
    Python handler the kernel would have killed the child there, so
    ``terminate()`` of a child just forked (a process pool's worker killed
    at once, CPython's ``test_killed_child`` with ``forkserver``) left it
    running under ``run`` and never plainly.  Blocked, the signal stays
    pending in the child until :func:`_unblock_sigterm_after_fork`, and then
    kills it through the handler, which writes its last events first.
    """
    session = _active
    if session is None or session._sigterm_handler is None:
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not session._sigterm_handler:
            return  # someone else's handler now: fork as they would
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM,))
    except (AttributeError, ValueError, OSError):  # no SIGTERM or no thread signal masks
        return
    if signal.SIGTERM not in previous:
        _sigterm_blocked_for_fork.add(get_ident())


def _unblock_sigterm_after_fork() -> None:
    """After ``fork()``, in the parent and at the end of the child's
    after-fork work: undo :func:`_block_sigterm_for_fork` (a ``SIGTERM``
    that arrived meanwhile is delivered now)."""
    ident = get_ident()
    if ident in _sigterm_blocked_for_fork:
        _sigterm_blocked_for_fork.discard(ident)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM,))


def _after_fork_in_child() -> None:
    try:
        session = _active
        if session is None or session._finished:
            return
        if session._children_trace:
            session.become_child()
        else:  # TRACEDSYNC=off: nothing traced, and the run's one line is the parent's
            session._finishing = _RawRLock()
            session._finished = True
        if sys.version_info >= (3, 14):
            _default_sigterm_in_forked_child(session)
    finally:
        _unblock_sigterm_after_fork()


def _default_sigterm_in_forked_child(session: _Session) -> None:
    """On 3.14 and later a forked child dies of ``SIGTERM`` as plainly,
    without ``run``'s handler (and so without writing its last batch of
    events).

    There the inherited Python-level handler often never runs in a forked
    child whose main thread is blocked in a lock: the signal is taken (not
    pending, not blocked) and the child sleeps on, so ``terminate()`` does
    not end it.  A child blocked in a raw ``_thread`` lock under ``run``
    survived ``terminate()`` in 27 of 40 runs on 3.15 and 1 of 20 on 3.14,
    0 of 20 on 3.11 and 3.13, and 0 of 30 on 3.15 with a program's own
    handler and no tracedsync.  Surviving is the worse failure.
    """
    try:
        if signal.getsignal(signal.SIGTERM) is session._sigterm_handler is not None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            session._sigterm_handler = None
    except (AttributeError, ValueError):  # no SIGTERM, or not the main thread
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_block_sigterm_for_fork,
        after_in_parent=_unblock_sigterm_after_fork,
        after_in_child=_after_fork_in_child,
    )


def _terminate_children() -> None:
    """Terminate the program's ``multiprocessing`` children before ``os._exit``,
    which skips the ``atexit`` handler that would end (daemonic) ones: an
    abandoned pool's workers would otherwise run on for ever."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:
        return
    try:
        children = multiprocessing.active_children()
        for child in children:
            child.terminate()
        for child in children:
            child.join(1.0)
            if child.is_alive():
                child.kill()
                child.join(1.0)
    except Exception:  # exiting anyway: never let this stop the exit
        pass


def _print_program_error(error: BaseException) -> None:
    """Print the program's uncaught exception as Python would, without the
    frames of runpy and tracedsync (the program did not write them)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

    def ours(filename: str) -> bool:
        return (
            filename == runpy.__file__
            or filename.startswith(("<frozen runpy", package))
            or filename in INTERNAL_FILES - {threading.__file__}
        )

    import traceback  # start-up cost (3.14+: it imports dataclasses): only on an error

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
    launcher = getattr(sys.modules.get("__main__"), "__file__", None)
    if launcher:  # the console script: its frame is not the program's either
        register_internal_module(launcher)
    if options.module:
        sys.argv = [options.target, *options.arguments]
        sys.path[0] = os.getcwd()
    else:
        if not os.path.exists(options.target):
            print(f"tracedsync run: no such file: {options.target}", file=sys.stderr)
            return 2
        sys.argv = [options.target, *options.arguments]
        sys.path[0] = os.path.dirname(os.path.abspath(options.target))
    if _active is not None and _active.child_of is not None:
        _active.retire()  # a child of a run that runs tracedsync run: a run of its own
    session = _Session(options)
    session.start()
    status = _run_program(options, session)
    if options.fail_on and status == 0:
        session.finish()  # the summary is complete only once threads are done
        failing = session.summary.failing(options.fail_on)
        if failing is not None:
            print(f"tracedsync run: failing (--fail-on): {failing}", file=session._stderr)
            return options.fail_on_status
    return status


def _run_program(options: RunOptions, session: _Session) -> int:
    """Run the program; its exit status."""
    try:
        if options.module:
            runpy.run_module(options.target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(options.target, run_name="__main__")
    except SystemExit as stop:
        return _exit_status(stop.code)
    except ImportError as error:
        if options.module and _not_started(error):
            session.abandon()
            print(f"tracedsync run: error: {error}", file=sys.stderr)
            return 2
        _print_program_error(error)
        return 1
    except BaseException as error:  # the program's own uncaught exception
        _print_program_error(error)
        if isinstance(error, DeadlockError) and options.on_deadlock == "exit":
            session.finish()
            return DEADLOCK_EXIT_STATUS
        return 130 if isinstance(error, KeyboardInterrupt) else 1
    return 0


#: The import machinery's own files (``importlib`` and its submodules).
_IMPORTLIB = os.path.dirname(importlib.util.__file__) + os.sep


def _not_started(error: ImportError) -> bool:
    """Whether ``runpy`` raised ``error`` looking for the module, before any
    of the program's code ran (no frame of the traceback is the program's,
    and nothing was being imported by it)."""
    cause = error.__cause__
    if cause is not None and not isinstance(cause, ImportError):
        return False  # the module's package raised while being imported
    for link in (error, cause):
        traceback_ = link.__traceback__ if link is not None else None
        while traceback_ is not None:
            filename = traceback_.tb_frame.f_code.co_filename
            machinery = filename == runpy.__file__ or filename.startswith(
                ("<frozen", _IMPORTLIB)  # 3.10's runpy looks parents up in importlib.util
            )
            if not machinery and filename not in INTERNAL_FILES:
                return False  # the program's own code raised it
            traceback_ = traceback_.tb_next
    return True


def _exit_status(code: Any) -> int:
    """What ``sys.exit(code)`` makes the process exit with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
