"""Hypothesis strategies: property-test your own lock wrappers.

A lock wrapper (a class adding metrics, timeouts or logging around a lock)
must still behave as the lock it wraps.  :func:`lock_programs` generates
multi-thread programs of acquires and releases, and
:func:`run_lock_program` runs one against your lock on real threads and
checks every result against the rules tracedsync's own locks are tested
with:

* ``Lock`` semantics: at most one holder; a non-blocking acquire of a held
  lock returns ``False``; any thread may release a held lock; releasing a
  free lock raises ``RuntimeError``.
* ``RLock`` semantics (``reentrant=True``): the owner may acquire again and
  must release as many times; only the owner may release; anyone else's
  release raises ``RuntimeError``.

The program runs one step at a time, each on the thread it names, so a
failing example is reproducible and shrinks to a short one.  A blocking
acquire is generated only where the rules say it succeeds at once, so a
correct lock never blocks; a step that does not answer within
``step_timeout`` fails the run instead of hanging it.  When the lock is
built on tracedsync primitives, their recorded events must also obey the
pairing rules (:meth:`tracedsync.Trace.assert_pairing`)::

    from hypothesis import given
    from tracedsync.strategies import lock_programs, run_lock_program

    @given(lock_programs(reentrant=True))
    def test_my_rlock_is_an_rlock(program):
        run_lock_program(program, MyRLock())

Requires Hypothesis (``pip install hypothesis``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

try:
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("tracedsync.strategies needs Hypothesis: pip install hypothesis") from error

from tracedsync._recorder import record

__all__ = ["LockProgram", "Step", "lock_programs", "run_lock_program"]

#: The operations a step may make.
OPERATIONS = ("acquire", "try_acquire", "release")


class Step(NamedTuple):
    """One operation (``"acquire"``: blocking; ``"try_acquire"``:
    ``acquire(blocking=False)``; ``"release"``) made by thread ``thread``."""

    thread: int
    operation: str


class LockProgram(NamedTuple):
    """Steps for ``threads`` threads, run in order, against one lock."""

    threads: int
    steps: tuple[Step, ...]
    reentrant: bool

    def __str__(self) -> str:
        steps = ", ".join(f"t{step.thread}.{step.operation}" for step in self.steps)
        kind = "RLock" if self.reentrant else "Lock"
        return f"{kind} program on {self.threads} threads: {steps}"


class _Model:
    """What a lock with these semantics does: the expected result of each step."""

    def __init__(self, reentrant: bool) -> None:
        self.reentrant = reentrant
        self.holder: int | None = None
        self.depth = 0

    def can_acquire(self, thread: int) -> bool:
        return self.holder is None or (self.reentrant and self.holder == thread)

    def expect(self, step: Step) -> bool | type[RuntimeError] | None:
        """The step's expected result (``RuntimeError`` if it must raise it)
        and the model's new state."""
        thread, operation = step
        if operation in {"acquire", "try_acquire"}:
            if not self.can_acquire(thread):
                return False
            self.holder, self.depth = thread, self.depth + 1
            return True
        allowed = self.holder is not None and (not self.reentrant or self.holder == thread)
        if not allowed:
            return RuntimeError
        self.depth -= 1
        if self.depth == 0:
            self.holder = None
        return None


@st.composite
def _programs(
    draw: Callable[[st.SearchStrategy[Any]], Any], threads: int, max_steps: int, reentrant: bool
) -> LockProgram:
    model = _Model(reentrant)
    count = draw(st.integers(min_value=1, max_value=max_steps))
    steps = []
    for _ in range(count):
        thread = draw(st.integers(min_value=0, max_value=threads - 1))
        choices = ["try_acquire", "release"]
        if model.can_acquire(thread):
            choices.append("acquire")
        step = Step(thread, draw(st.sampled_from(sorted(choices))))
        model.expect(step)
        steps.append(step)
    return LockProgram(threads, tuple(steps), reentrant)


def lock_programs(
    *, threads: int = 3, max_steps: int = 30, reentrant: bool = False
) -> st.SearchStrategy[LockProgram]:
    """Programs of up to ``max_steps`` acquires and releases on ``threads``
    threads, for a lock with ``Lock`` (or, ``reentrant=True``, ``RLock``)
    semantics.  Invalid releases are included on purpose: they must raise.
    Blocking acquires appear only where they succeed at once."""
    if threads < 1 or max_steps < 1:
        raise ValueError("lock_programs() needs at least one thread and one step")
    return _programs(threads, max_steps, reentrant)


class _Worker:
    """A thread that runs the calls it is sent, one at a time, and answers each."""

    def __init__(self, index: int) -> None:
        self.commands: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self.answers: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self.thread = threading.Thread(
            target=self._serve, name=f"lock-program-{index}", daemon=True
        )
        self.thread.start()

    def _serve(self) -> None:
        while (command := self.commands.get()) is not None:
            try:
                self.answers.put((True, command()))
            except BaseException as error:  # handed back to the checking thread
                self.answers.put((False, error))


def run_lock_program(program: LockProgram, lock: Any, *, step_timeout: float = 10.0) -> None:
    """Run ``program`` against ``lock`` and check every step (see the module
    docstring); raise :class:`AssertionError` at the first wrong result,
    with the steps that led to it.  Locks still held at the end are released
    by their holders, so ``lock`` is free again afterwards."""
    model = _Model(program.reentrant)
    workers = [_Worker(index) for index in range(program.threads)]
    operations: dict[str, Callable[[], Any]] = {
        "acquire": lock.acquire,
        "try_acquire": lambda: lock.acquire(blocking=False),
        "release": lock.release,
    }
    done: list[str] = []
    stuck: set[_Worker] = set()  # blocked for good: not waited for at the end

    def ask(worker: _Worker, call: Callable[[], Any], what: str) -> tuple[bool, Any]:
        worker.commands.put(call)
        try:
            return worker.answers.get(timeout=step_timeout)
        except queue.Empty:
            stuck.add(worker)
            raise AssertionError(
                f"{what} gave no answer within {step_timeout} s (it blocked); steps so far: "
                f"{', '.join(done) or 'none'}"
            ) from None

    try:
        with record() as trace:
            for number, step in enumerate(program.steps, 1):
                what = f"step {number}, t{step.thread}.{step.operation}"
                expected = model.expect(step)
                ok, result = ask(workers[step.thread], operations[step.operation], what)
                done.append(f"t{step.thread}.{step.operation}")
                if expected is RuntimeError:
                    if ok or not isinstance(result, RuntimeError):
                        got = f"returned {result!r}" if ok else f"raised {result!r}"
                        raise AssertionError(f"{what} {got}, expected RuntimeError ({program})")
                elif not ok:
                    raise AssertionError(
                        f"{what} raised {result!r}, expected {expected!r} ({program})"
                    )
                elif step.operation != "release" and result is not expected:
                    raise AssertionError(
                        f"{what} returned {result!r}, expected {expected!r} ({program})"
                    )
            holder = model.holder
            while holder is not None:  # leave the lock free
                model.expect(Step(holder, "release"))
                ask(workers[holder], operations["release"], "final release")
                holder = model.holder
        trace.assert_pairing()
    finally:
        for worker in workers:
            worker.commands.put(None)
        for worker in workers:
            if worker not in stuck:
                worker.thread.join(step_timeout)


st.register_type_strategy(LockProgram, lock_programs())
