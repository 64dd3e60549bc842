"""Stress and fault scenarios: ``python benchmarks/stress.py [--smoke] [--load] [SCENARIO ...]``.

Each scenario drives tracedsync hard, or at an awkward moment, and checks one
fact that must hold for a drop-in replacement of ``threading``:

``contended``
    N threads x M increments under one ``tracedsync.Lock``: the counter is
    exact, no worker died (a false ``DeadlockError`` under load is the known
    failure), and exactly one ``lock.acquire`` and one ``lock.release`` event
    per operation and thread is recorded, both by ``tracedsync.record()``
    (read meanwhile by another thread) and in the JSON Lines file
    (``TRACEDSYNC_LOG_FILE``), read back and counted.
``queue``
    10 threads doing ``put``/``get``/``task_done`` on one ``queue.Queue``,
    traced by ``tracedsync.patch()`` and by ``python -m tracedsync run``: the
    program finishes, with exit status 0 and no deadlock reported.
``fork``
    ``os.fork()`` repeatedly while other threads do nested acquires of traced
    locks, so the fork lands inside tracedsync's bookkeeping: every child
    does nested acquires of traced locks, starts and joins a traced thread and
    exits 0 before its deadline; a child that hangs is killed and counted.
``signal``
    A ``SIGALRM`` handler (``signal.setitimer``) in the main thread acquires
    a traced ``Lock`` that workers contend on, while the main thread itself
    is inside traced acquires and joins: the run finishes and counts add up.
``gc``
    Objects in reference cycles whose ``__del__`` acquires a contended
    traced ``Lock``, with the collector's threshold lowered so finalizers run
    at arbitrary points, on threads inside tracedsync's acquires, releases
    and semaphore waits: the run finishes, every object is finalized once and
    no finalizer raised.

Every scenario runs in a subprocess with a timeout (a hang is a failure, and
the child dumps every thread's stack with :mod:`faulthandler` just before the
timeout).  With ``--load``, a busy-loop process per CPU runs alongside: load
changes the interleavings, and a known defect turns into false
``DeadlockError`` under load.  The program prints what it counted and exits 0
when every check held; otherwise it prints what went wrong and exits 1.
``--smoke`` uses small sizes and finishes in seconds: CI runs it
(``tests/test_stress_smoke.py``).
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import functools
import gc
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCE = ROOT / "src"
# Stress this checkout's tracedsync, whatever else is installed.
sys.path.insert(0, str(SOURCE))

import tracedsync  # noqa: E402

#: The line a scenario's subprocess prints its outcome on, as JSON.
RESULT_PREFIX = "STRESS-RESULT "
#: Lines of a failed subprocess's stderr shown in the report.
STDERR_LINES = 250
#: How long a killed subprocess gets to be reaped.
REAP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Sizes:
    """How hard and how long each scenario runs."""

    threads: int = 32
    operations: int = 100_000
    queue_threads: int = 10
    queue_items: int = 10_000
    forks: int = 200
    fork_threads: int = 4
    #: Seconds a forked child gets to finish before it counts as hung.
    fork_timeout: float = 10.0
    #: Seconds the ``signal`` and ``gc`` scenarios keep their threads busy.
    seconds: float = 10.0
    #: Seconds a scenario's subprocess gets before it counts as hung.
    timeout: float = 1800.0

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            threads=8,
            operations=2_000,
            queue_items=500,
            forks=20,
            fork_timeout=2.0,
            seconds=1.0,
            timeout=60.0,
        )


@dataclass
class Outcome:
    """What a scenario counted and which of its checks failed."""

    counts: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, holds: bool, message: str) -> None:
        if not holds:
            self.failures.append(message)

    def merge(self, other: Outcome, prefix: str) -> None:
        self.counts.update({f"{prefix}.{key}": value for key, value in other.counts.items()})
        self.failures.extend(f"{prefix}: {failure}" for failure in other.failures)


# -- helpers --------------------------------------------------------------------


def _describe(error: BaseException) -> str:
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first}"


def _collecting(errors: list[str], body: Callable[[], None]) -> Callable[[], None]:
    """``body``, recording instead of raising whatever it raises (``list.append`` is atomic)."""

    def run() -> None:
        try:
            body()
        except BaseException as error:
            errors.append(f"{threading.current_thread().name}: {_describe(error)}")

    return run


def _run_threads(count: int, body: Callable[[], None], errors: list[str]) -> list[str]:
    """Run ``body`` in ``count`` traced threads named ``worker-N``; the main thread joins them."""
    threads = [
        tracedsync.Thread(target=_collecting(errors, body), name=f"worker-{n}")
        for n in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [thread.name for thread in threads]


def _increment(lock: tracedsync.Lock, counter: list[int], operations: int) -> None:
    for _ in range(operations):
        with lock:
            counter[0] += 1


def _until(deadline: float) -> Iterator[int]:
    """0, 1, 2, ... until ``time.monotonic()`` passes ``deadline`` (a duration, not a wait)."""
    done = 0
    while time.monotonic() < deadline:
        yield done
        done += 1


def _tail(text: str, lines: int = STDERR_LINES) -> str:
    kept = text.rstrip().splitlines()
    shown = kept[-lines:]
    skipped = f"[... {len(kept) - lines} earlier lines]\n" if len(kept) > lines else ""
    return skipped + "\n".join(shown)


def _child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(SOURCE), *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment.update(extra or {})
    return environment


@dataclass
class Finished:
    """A subprocess's end: ``returncode`` is ``None`` when it hung and was killed."""

    returncode: int | None
    stdout: str
    stderr: str


def _subprocess(command: Sequence[str], timeout: float, env: dict[str, str]) -> Finished:
    """Run ``command``; kill it (and count it hung) after ``timeout`` seconds."""
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate(timeout=REAP_TIMEOUT)
        return Finished(None, stdout, stderr)
    return Finished(process.returncode, stdout, stderr)


def _part(part: str, sizes: Sizes, env: dict[str, str] | None = None) -> Outcome:
    """Run one part of a scenario (a ``_PARTS`` function) in a subprocess with a timeout."""
    command = [sys.executable, str(Path(__file__).resolve()), "--part", part]
    command += ["--sizes", json.dumps(asdict(sizes))]
    finished = _subprocess(command, sizes.timeout, _child_environment(env))
    outcome = Outcome()
    for line in finished.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            found = json.loads(line[len(RESULT_PREFIX) :])
            outcome = Outcome(found["counts"], found["failures"])
    if finished.returncode is None:
        outcome.failures.append(
            f"hung: killed after {sizes.timeout:g} s; its stderr (stacks dumped before):\n"
            + _tail(finished.stderr)
        )
    elif outcome.failures and finished.returncode == 0:
        outcome.failures.append("its stderr:\n" + _tail(finished.stderr))
    elif finished.returncode != 0 or not outcome.counts:
        hung = "Timeout (" in finished.stderr  # faulthandler's dump_traceback_later
        what = "hung: stacks dumped at its deadline" if hung else "exited"
        outcome.failures.append(
            f"{what} with status {finished.returncode}; its stderr:\n" + _tail(finished.stderr)
        )
    return outcome


# -- contended ------------------------------------------------------------------


def _check_lock_events(
    outcome: Outcome,
    per_thread: collections.Counter[tuple[str, str]],
    workers: list[str],
    operations: int,
) -> None:
    """One acquire and one release event per operation for each worker, nothing else."""
    for name in workers:
        for event in ("lock.acquire", "lock.release"):
            found = per_thread[(name, event)]
            outcome.check(
                found == operations, f"{name}: {found} {event} events, expected {operations}"
            )
    strangers = sorted({name for name, _ in per_thread} - set(workers))
    outcome.check(not strangers, f"lock events from threads that are not workers: {strangers}")
    outcome.counts["events"] = sum(per_thread.values())


#: How many times the ``contended`` reader reads the whole trace.
FULL_READS = 20


def _part_contended_record(sizes: Sizes) -> Outcome:
    """``contended`` recorded in memory by ``tracedsync.record()``."""
    outcome = Outcome()
    lock = tracedsync.Lock(name="stress.counter")
    counter, errors = [0], list[str]()
    # Each operation is an acquire and a release, and a contended acquire
    # also records lock.acquire.blocked: at most three events per operation.
    capacity = 3 * sizes.threads * sizes.operations + 100_000
    with tracedsync.record(capacity=capacity) as trace:
        # A reader reads the trace while the workers record: with the C
        # accelerator, chunks of kept-back events reach it meanwhile.  A
        # full read makes every event's dictionary, so there are only a few
        # of them (each costs as much as the events so far: pure Python on
        # 3.10 took 33 s with one every 5 reads).
        finished, reads, full_reads = threading.Event(), [0], [0]

        def read() -> None:
            # Paced by the wait, so that the reader does not starve the
            # workers of the GIL (pure Python would take seconds).
            while not finished.wait(0.0002):
                len(trace)
                reads[0] += 1
                if reads[0] % 2 == 0 and full_reads[0] < FULL_READS:
                    full_reads[0] += 1
                    trace.names()

        reader = threading.Thread(target=_collecting(errors, read), name="reader")
        reader.start()
        try:
            workers = _run_threads(
                sizes.threads, lambda: _increment(lock, counter, sizes.operations), errors
            )
        finally:
            finished.set()
            reader.join()
    expected = sizes.threads * sizes.operations
    outcome.counts.update(
        threads=sizes.threads,
        operations=sizes.operations,
        counter=counter[0],
        reads=reads[0],
        full_reads=full_reads[0],
    )
    outcome.check(counter[0] == expected, f"counter is {counter[0]}, expected {expected}")
    outcome.check(not errors, f"{len(errors)} workers died: {errors[:5]}")
    outcome.check(trace.dropped == 0, f"the trace dropped {trace.dropped} events")
    per_thread: collections.Counter[tuple[str, str]] = collections.Counter()
    for event in trace:
        if event["primitive_name"] == "stress.counter" and event.get("outcome") in {
            "acquired",
            "released",
        }:
            per_thread[(event["thread_name"], event["event"])] += 1
    _check_lock_events(outcome, per_thread, workers, sizes.operations)
    return outcome


def _part_contended_jsonl(sizes: Sizes) -> Outcome:
    """``contended`` with ``TRACEDSYNC_LOG_FILE`` set: the parent counts the file."""
    outcome = Outcome()
    lock = tracedsync.Lock(name="stress.counter")
    counter, errors = [0], list[str]()
    workers = _run_threads(
        sizes.threads, lambda: _increment(lock, counter, sizes.operations), errors
    )
    expected = sizes.threads * sizes.operations
    outcome.counts.update(counter=counter[0], workers=workers)
    outcome.check(counter[0] == expected, f"counter is {counter[0]}, expected {expected}")
    outcome.check(not errors, f"{len(errors)} workers died: {errors[:5]}")
    return outcome


def contended(sizes: Sizes) -> Outcome:
    """N threads x M increments under one traced Lock, recorded in memory and to JSON Lines.

    Checks that the counter is exact (mutual exclusion), that no worker died
    (no false ``DeadlockError``: every thread is making progress, so no wait
    is stranded), and that exactly one acquire and one release event per
    operation reaches each sink (none lost, none doubled, right thread).
    """
    outcome = Outcome()
    outcome.merge(_part("contended-record", sizes), "record")
    with tempfile.TemporaryDirectory(prefix="tracedsync-stress-") as directory:
        log_file = Path(directory) / "events.jsonl"
        written = _part("contended-jsonl", sizes, {"TRACEDSYNC_LOG_FILE": str(log_file)})
        workers: list[str] = written.counts.pop("workers", [])
        outcome.merge(written, "jsonl")
        if workers:
            per_thread: collections.Counter[tuple[str, str]] = collections.Counter()
            lines = 0
            with log_file.open(encoding="utf-8") as file:
                for line in file:
                    lines += 1
                    event = json.loads(line)
                    if event.get("primitive_name") == "stress.counter" and event.get("outcome") in {
                        "acquired",
                        "released",
                    }:
                        per_thread[(event["thread_name"], event["event"])] += 1
            checked = Outcome(counts={"lines": lines})
            _check_lock_events(checked, per_thread, workers, sizes.operations)
            outcome.merge(checked, "jsonl")
    return outcome


# -- queue ----------------------------------------------------------------------

QUEUE_PROGRAM = textwrap.dedent(
    """\
    import queue
    import sys
    import threading

    items = int(sys.argv[1])
    threads = int(sys.argv[2])
    shared = queue.Queue()


    def work():
        for item in range(items):
            shared.put(item)
            shared.get()
            shared.task_done()


    workers = [threading.Thread(target=work, name=f"worker-{n}") for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    shared.join()
    print("done", threads * items)
    """
)


def _queue_work(shared: queue.Queue[int], items: int) -> None:
    for item in range(items):
        shared.put(item)
        shared.get()
        shared.task_done()


def _part_queue_patch(sizes: Sizes) -> Outcome:
    """``queue`` in process, with ``threading`` patched around the queue and its threads."""
    outcome = Outcome()
    errors: list[str] = []
    with tracedsync.patched():
        shared: queue.Queue[int] = queue.Queue()
        workers = [
            threading.Thread(
                target=_collecting(errors, lambda: _queue_work(shared, sizes.queue_items)),
                name=f"worker-{n}",
            )
            for n in range(sizes.queue_threads)
        ]
        traced = all(isinstance(worker, tracedsync.Thread) for worker in workers)
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        shared.join()
    outcome.counts.update(threads=len(workers), items=sizes.queue_items)
    outcome.check(traced, "patch() did not make threading.Thread traced")
    outcome.check(not errors, f"{len(errors)} workers died: {errors[:5]}")
    outcome.check(shared.unfinished_tasks == 0, f"{shared.unfinished_tasks} tasks unfinished")
    return outcome


def queue_(sizes: Sizes) -> Outcome:
    """10 threads x K ``put``/``get``/``task_done`` on one ``queue.Queue``, traced.

    Checks that a correct program using only the standard library finishes
    cleanly when traced: in process under ``tracedsync.patched()`` (no worker
    dies of ``DeadlockError``) and under ``python -m tracedsync run`` (exit
    status 0, not 86, and the summary says ``deadlocks: none``).  Idle
    consumers blocked in ``get()`` while producers run must never look
    stranded.
    """
    outcome = Outcome()
    outcome.merge(_part("queue-patch", sizes), "patch")
    run = Outcome()
    with tempfile.TemporaryDirectory(prefix="tracedsync-stress-") as directory:
        program = Path(directory) / "queue_program.py"
        program.write_text(QUEUE_PROGRAM, encoding="utf-8")
        command = [sys.executable, "-m", "tracedsync", "run", str(program)]
        command += [str(sizes.queue_items), str(sizes.queue_threads)]
        finished = _subprocess(command, sizes.timeout, _child_environment())
    run.counts["status"] = finished.returncode
    if finished.returncode is None:
        run.failures.append(f"hung: killed after {sizes.timeout:g} s:\n{_tail(finished.stderr)}")
    elif finished.returncode != 0 or "deadlocks: none" not in finished.stderr:
        run.failures.append(
            f"tracedsync run exited with status {finished.returncode}"
            f" (86: it reported a deadlock):\n{_tail(finished.stderr)}"
        )
    outcome.merge(run, "run")
    return outcome


# -- fork -----------------------------------------------------------------------


#: ``sys.setswitchinterval()`` while forking: short, so the busy threads contend.
FORK_SWITCH_INTERVAL = 1e-5
#: How many hung children print their stack (the others are killed quietly).
FORK_DUMPS = 2


def _nested(outer: tracedsync.Lock, inner: tracedsync.RLock) -> None:
    with outer, inner, inner:
        pass


def _forked_child() -> None:
    """In a fresh child: nested acquires, a traced thread started and joined; never returns."""
    status = 0
    # The parent aborts a hung child: show where it is stuck.
    faulthandler.enable(all_threads=True)
    try:
        outer, inner = tracedsync.Lock(name="child.outer"), tracedsync.RLock(name="child.inner")
        _nested(outer, inner)
        helper = tracedsync.Thread(target=_nested, args=(outer, inner), name="child.helper")
        helper.start()
        helper.join()
        _nested(outer, inner)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        sys.stderr.flush()
        os._exit(status)


def _wait_child(pid: int, timeout: float) -> int | None:
    """The child's exit status, or ``None`` if it is still running after ``timeout`` s."""
    if hasattr(os, "pidfd_open"):
        descriptor = os.pidfd_open(pid)
        try:
            readable, _, _ = select.select([descriptor], [], [], timeout)
        finally:
            os.close(descriptor)
        if not readable:
            return None
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    # Without pidfds (not Linux): poll, waiting on an Event nobody sets.
    pause, deadline = threading.Event(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        found, status = os.waitpid(pid, os.WNOHANG)
        if found:
            return os.waitstatus_to_exitcode(status)
        pause.wait(0.005)
    return None


def _end_hung_child(pid: int, dump: bool) -> None:
    """Kill a hung child; with ``dump``, first abort it so faulthandler prints its stack."""
    if dump:
        os.kill(pid, signal.SIGABRT)
        if _wait_child(pid, REAP_TIMEOUT) is not None:
            return
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _part_fork(sizes: Sizes) -> Outcome:
    """``fork``: the parent process; children are forked from its main thread."""
    outcome = Outcome()
    warnings.filterwarnings(
        "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
    )
    outer, inner = tracedsync.Lock(name="busy.outer"), tracedsync.RLock(name="busy.inner")
    stop, errors = threading.Event(), list[str]()
    rounds = [0] * sizes.fork_threads

    def busy(slot: int) -> None:
        while not stop.is_set():
            _nested(outer, inner)
            rounds[slot] += 1

    threads = [
        tracedsync.Thread(target=_collecting(errors, functools.partial(busy, n)), name=f"busy-{n}")
        for n in range(sizes.fork_threads)
    ]
    hung, failed, statuses = 0, 0, collections.Counter[int]()
    # Switching threads often makes the busy threads contend, so they spend
    # their time in tracedsync's wait bookkeeping; events flow while forking,
    # so the hooks' bookkeeping is live too.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(FORK_SWITCH_INTERVAL)
    with tracedsync.record(capacity=100_000):
        for thread in threads:
            thread.start()
        try:
            for _ in range(sizes.forks):
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _forked_child()
                status = _wait_child(pid, sizes.fork_timeout)
                if status is None:
                    hung += 1
                    _end_hung_child(pid, dump=hung <= FORK_DUMPS)
                elif status != 0:
                    failed += 1
                    statuses[status] += 1
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            sys.setswitchinterval(interval)
    outcome.counts.update(forks=sizes.forks, hung=hung, failed=failed, busy_rounds=sum(rounds))
    outcome.check(
        hung == 0, f"{hung} of {sizes.forks} children hung (killed after {sizes.fork_timeout:g} s)"
    )
    outcome.check(failed == 0, f"{failed} children failed, exit statuses {dict(statuses)}")
    outcome.check(not errors, f"{len(errors)} busy threads died: {errors[:5]}")
    return outcome


def fork(sizes: Sizes) -> Outcome:
    """``os.fork()`` while threads do nested traced acquires; every child must work and exit 0.

    Checks that tracedsync's internal state survives a fork taken at an
    arbitrary point (the documentation promises ``os.fork()`` works): a child
    inherits whatever internal lock another thread held at that instant, so
    any internal lock not reset after fork hangs the child's first traced
    operation.  Hung children are killed and counted.
    """
    return _part("fork", sizes)


# -- signal ---------------------------------------------------------------------


def _part_signal(sizes: Sizes) -> Outcome:
    """``signal``: an interval timer's handler takes the workers' lock in the main thread."""
    outcome = Outcome()
    lock, other = tracedsync.Lock(name="signal.lock"), tracedsync.Lock(name="signal.other")
    counter, hits, errors = [0], [0], list[str]()
    inside, nested = [False], [0]
    done = [0] * sizes.threads
    deadline = time.monotonic() + sizes.seconds

    def handler(signum: int, frame: Any) -> None:
        # CPython runs a handler again if the signal arrives while it runs:
        # a nested run must not take the lock its outer run holds (that would
        # deadlock with threading.Lock too).  Set before acquiring, cleared
        # after releasing, so a nested run that sees it clear finishes first.
        if inside[0]:
            nested[0] += 1
            return
        inside[0] = True
        with lock:
            counter[0] += 1
            hits[0] += 1
        inside[0] = False

    def work(slot: int) -> None:
        for _ in _until(deadline):
            with lock:
                counter[0] += 1
            with other:
                done[slot] += 1

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    main_rounds = 0
    try:
        threads = [
            tracedsync.Thread(
                target=_collecting(errors, functools.partial(work, n)), name=f"worker-{n}"
            )
            for n in range(sizes.threads)
        ]
        for thread in threads:
            thread.start()
        # The main thread never holds ``lock`` (the handler would deadlock on
        # itself, with threading too): it contends on ``other`` and joins.
        for _ in _until(deadline):
            with other:
                main_rounds += 1
        for thread in threads:
            thread.join()
    except BaseException as error:
        errors.append(f"MainThread: {_describe(error)}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    expected = sum(done) + hits[0]
    outcome.counts.update(
        handler_runs=hits[0],
        nested_skipped=nested[0],
        operations=sum(done),
        main_rounds=main_rounds,
    )
    outcome.check(hits[0] > 0, "the SIGALRM handler never ran")
    outcome.check(counter[0] == expected, f"counter is {counter[0]}, expected {expected}")
    outcome.check(not errors, f"{len(errors)} threads died: {errors[:5]}")
    return outcome


def signal_(sizes: Sizes) -> Outcome:
    """A ``SIGALRM`` handler acquiring a traced Lock the workers contend on.

    Checks that a signal handler may use a traced lock whatever the main
    thread was doing in tracedsync when the signal arrived (inside a traced
    acquire, a release or a join): the run must finish (a hang is killed at
    the timeout), no thread dies and the counter is exact.  With
    ``threading.Lock`` this program is correct, so it must be with tracedsync.
    """
    return _part("signal", sizes)


# -- gc -------------------------------------------------------------------------


def _part_gc(sizes: Sizes) -> Outcome:
    """``gc``: finalizers that take a contended traced Lock run wherever collection strikes."""
    outcome = Outcome()
    lock = tracedsync.Lock(name="gc.finalizers")
    finalized, counter, errors = [0], [0], list[str]()
    created = [0] * sizes.threads
    unraisable: list[str] = []
    deadline = time.monotonic() + sizes.seconds

    class Finalized:
        """A reference cycle whose finalizer takes the contended lock."""

        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            with lock:
                finalized[0] += 1

    def work(slot: int) -> None:
        for _ in _until(deadline):
            Finalized()  # garbage at once: only the collector can free it
            created[slot] += 1
            with lock:
                counter[0] += 1

    def hook(report: Any) -> None:
        error = report.exc_value
        unraisable.append(_describe(error) if error is not None else str(report))

    thresholds = gc.get_threshold()
    previous_hook = sys.unraisablehook
    sys.unraisablehook = hook
    gc.set_threshold(50, 5, 5)
    try:
        threads = [
            tracedsync.Thread(
                target=_collecting(errors, functools.partial(work, n)), name=f"worker-{n}"
            )
            for n in range(sizes.threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gc.collect()
    finally:
        gc.set_threshold(*thresholds)
        sys.unraisablehook = previous_hook
    outcome.counts.update(created=sum(created), finalized=finalized[0], operations=counter[0])
    outcome.check(
        finalized[0] == sum(created), f"{finalized[0]} finalized of {sum(created)} created"
    )
    outcome.check(not errors, f"{len(errors)} threads died: {errors[:5]}")
    outcome.check(
        not unraisable, f"{len(unraisable)} finalizers raised: {sorted(set(unraisable))[:5]}"
    )
    return outcome


def gc_(sizes: Sizes) -> Outcome:
    """Finalizers in reference cycles acquiring a contended traced Lock.

    Checks that the collector may run ``__del__`` methods that take a traced
    lock at any point a thread allocates, including inside tracedsync's own
    acquire, release and wait code: the run must finish (a hang is killed at
    the timeout), every object is finalized exactly once, and no finalizer
    raised (a ``DeadlockError`` there is reported as unraisable).
    ``threading.Lock`` runs no Python code while it holds its lock, so with
    it this program is correct; with tracedsync nothing may allocate between
    taking the raw lock and recording its owner.  (The workers use no
    ``Semaphore``, ``Event`` or ``Condition``: those run the stdlib's Python
    code under an internal lock, where a finalizer taking a lock the other
    workers hold deadlocks with ``threading`` too.)
    """
    return _part("gc", sizes)


# -- the program ----------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Sizes], Outcome]] = {
    "contended": contended,
    "queue": queue_,
    "fork": fork,
    "signal": signal_,
    "gc": gc_,
}

#: What runs in a scenario's subprocess, by ``--part`` name.
_PARTS: dict[str, Callable[[Sizes], Outcome]] = {
    "contended-record": _part_contended_record,
    "contended-jsonl": _part_contended_jsonl,
    "queue-patch": _part_queue_patch,
    "fork": _part_fork,
    "signal": _part_signal,
    "gc": _part_gc,
}


def _run_part(part: str, sizes: Sizes) -> int:
    """In a scenario's subprocess: run the part, print its outcome as one JSON line."""
    # Just before the parent's deadline, show where every thread is stuck.
    faulthandler.dump_traceback_later(max(1.0, sizes.timeout - 5.0), exit=True)
    outcome = _PARTS[part](sizes)
    faulthandler.cancel_dump_traceback_later()
    print(RESULT_PREFIX + json.dumps(asdict(outcome)), flush=True)
    return 0


@contextmanager
def _load(enabled: bool) -> Iterator[int]:
    """A busy-loop process per CPU while the block runs (none unless ``enabled``)."""
    spinners: list[subprocess.Popen[bytes]] = []
    try:
        if enabled:
            for _ in range(os.cpu_count() or 1):
                spinners.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        yield len(spinners)
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait(timeout=REAP_TIMEOUT)


def _sizes(arguments: argparse.Namespace) -> Sizes:
    sizes = Sizes.smoke() if arguments.smoke else Sizes()
    given = {
        name: getattr(arguments, name)
        for name in ("threads", "operations", "forks", "seconds", "timeout")
        if getattr(arguments, name) is not None
    }
    return Sizes(**{**asdict(sizes), **given})


def _format_counts(counts: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in counts.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"which to run, of {', '.join(SCENARIOS)} (default: --all)",
    )
    parser.add_argument("--all", action="store_true", help="run every scenario (the default)")
    parser.add_argument("--smoke", action="store_true", help="small sizes: seconds, for CI")
    parser.add_argument("--load", action="store_true", help="a busy-loop process per CPU")
    parser.add_argument("--repeat", type=int, default=1, help="run each scenario this often")
    parser.add_argument("--threads", type=int, help="contended/signal/gc threads")
    parser.add_argument("--operations", type=int, help="contended operations per thread")
    parser.add_argument("--forks", type=int, help="fork: how many children")
    parser.add_argument("--seconds", type=float, help="signal/gc: how long to run")
    parser.add_argument("--timeout", type=float, help="seconds before a scenario counts as hung")
    parser.add_argument("--part", choices=list(_PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.part is not None:
        return _run_part(arguments.part, Sizes(**json.loads(arguments.sizes)))
    unknown = sorted(set(arguments.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    sizes = _sizes(arguments)
    # Killed (timeout, CI cancelling): still stop the load processes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    names = list(SCENARIOS) if arguments.all or not arguments.scenarios else arguments.scenarios
    failed: list[str] = []
    with _load(arguments.load) as spinners:
        if spinners:
            print(f"load: {spinners} busy-loop processes", flush=True)
        for name in names:
            for round_ in range(arguments.repeat):
                label = name if arguments.repeat == 1 else f"{name} #{round_ + 1}"
                started = time.monotonic()
                outcome = SCENARIOS[name](sizes)
                took = f"{time.monotonic() - started:.1f} s"
                if outcome.failures:
                    failed.append(label)
                    print(f"FAIL {label} ({took}): {_format_counts(outcome.counts)}", flush=True)
                    for failure in outcome.failures:
                        print(textwrap.indent(failure, "    "), flush=True)
                else:
                    print(f"ok   {label} ({took}): {_format_counts(outcome.counts)}", flush=True)
    if failed:
        print(f"{len(failed)} failed: {', '.join(failed)}", flush=True)
        return 1
    print(f"all {len(names) * arguments.repeat} passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
