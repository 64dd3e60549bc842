"""The C accelerator (``tracedsync._speedups``) against the pure-Python reference.

Where the extension is built, ``Lock``'s hot path runs in C; these tests drive
both implementations in one process (:func:`tracedsync._accel.select`) with the
same operations and require the same results, states and recorded events.
``TRACEDSYNC_IMPL=python`` runs the whole suite on the reference instead.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import warnings
from _thread import get_ident
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracedsync
from helpers import run_python
from tracedsync import _accel, _hooks, _lockorder
from tracedsync._lockorder import graph
from tracedsync._sites import line_at

needs_c = pytest.mark.skipif(not _accel.available(), reason=f"no C accelerator: {_accel.reason()}")

IMPLEMENTATIONS = ("python", "c")


# -- the property: same operations, same outcome --------------------------------


def _release_elsewhere(lock: tracedsync.Lock) -> Any:
    """``lock.release()`` in another thread (a handoff), its outcome here."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(lock.release())
        except RuntimeError as error:
            outcome.append(f"RuntimeError: {error}")

    helper = threading.Thread(target=run, name="helper")
    helper.start()
    helper.join()
    return outcome[0]


def _with_block(lock: tracedsync.Lock) -> str:
    with lock:
        return "inside"


def _condition_wait(lock: tracedsync.Lock) -> bool:
    # wait(0) releases through _release_save and takes the lock back through
    # _acquire_restore (both C with the accelerator): the protocol
    # threading.Condition uses.
    return threading.Condition(lock).wait(0)  # type: ignore[arg-type]


def _mine(lock: tracedsync.Lock | tracedsync.RLock) -> bool:
    return lock._lock.locked() and lock._owner == get_ident()


#: Operations, each called with a lock; those that would block this thread
#: for good (a blocking acquire of a lock that is taken) try instead.
OPERATIONS: dict[str, Callable[[tracedsync.Lock], Any]] = {
    "acquire": lambda lock: lock.acquire(False) if lock.locked() else lock.acquire(),
    "try": lambda lock: lock.acquire(False),
    "try_keyword": lambda lock: lock.acquire(blocking=False),
    "timeout_zero": lambda lock: lock.acquire(True, 0),
    "timeout_keyword": lambda lock: lock.acquire(timeout=0.0),
    "minus_one_float": lambda lock: lock.acquire(False, -1.0),
    "enter": lambda lock: lock.acquire(False) if lock.locked() else lock.__enter__(),
    "exit": lambda lock: lock.__exit__(None, None, None),
    "release": lambda lock: lock.release(),
    "release_lock": lambda lock: lock.release_lock(),
    "release_elsewhere": _release_elsewhere,
    "with": lambda lock: None if lock.locked() else _with_block(lock),
    "condition_wait": lambda lock: _condition_wait(lock) if _mine(lock) else None,
    "bad_timeout": lambda lock: lock.acquire(False, 1),
    "bad_argument": lambda lock: lock.acquire(True, -1, 3),  # type: ignore[call-arg]
    "bad_keyword": lambda lock: lock.acquire(wait=True),  # type: ignore[call-arg]
}

programs = st.lists(
    st.tuples(st.sampled_from(sorted(OPERATIONS)), st.integers(0, 2)), min_size=1, max_size=20
)

#: Event fields that differ between two runs of one program.
_VOLATILE = {"seq", "time_ns", "pid", "thread_id", "thread_token", "primitive_id"}


def _normalise(event: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in event.items() if key not in _VOLATILE}
    for key in ("held_ns", "waited_ns"):
        if key in kept:
            kept[key] = kept[key] is None
    return kept


def _line(code: Any, offset: int) -> int | None:
    # Sites are kept as bytecode offsets and shown as lines.  On 3.11 a
    # specialised call of a C method runs in the call's PRECALL instruction,
    # of a Python function in its CALL: the same line, another offset.
    return None if code is None else line_at(code, offset)


def _chain(chains: dict[int, int], chain: int | None) -> int | None:
    # Chain ids come from one process-wide counter: compared by the order of
    # first appearance in the run (negative ids, the slow-path chains, stay so).
    if chain is None:
        return None
    number = chains.setdefault(abs(chain), len(chains) + 1)
    return -number if chain < 0 else number


def _held(chains: dict[int, int]) -> tuple[Any, ...]:
    """The thread's held-lock entries, comparably (a bare outermost entry,
    see ``_lockorder.Outermost``, as its lock's name alone)."""
    held = getattr(_lockorder._per_thread, "held", None) or []
    return tuple(
        (
            getattr(entry[0](), "name", None),
            entry[1],
            _line(entry[2], entry[3]),
            _chain(chains, entry[4]),
        )
        if type(entry) is tuple
        else getattr(entry(), "name", None)
        for entry in held
    )


def _state(locks: list[tracedsync.Lock], chains: dict[int, int]) -> tuple[Any, ...]:
    me = get_ident()
    return (
        tuple(
            (
                lock.locked(),
                None if lock._owner is None else lock._owner == me,
                lock._handoff,
                _line(lock._acquired_code, lock._acquired_offset),
            )
            for lock in locks
        ),
        _held(chains),
    )


def _fresh_order_state() -> None:
    graph.clear()
    graph.handoff_generation = 0
    vars(_lockorder._per_thread).pop("generation", None)
    held = getattr(_lockorder._per_thread, "held", None)
    if held is not None:
        held[:] = []  # the same list: the accelerator keeps a reference to it


def _run(implementation: str, mode: str, program: list[tuple[str, int]], kind: str = "Lock") -> Any:
    _accel.select(implementation)
    _fresh_order_state()
    tracedsync.configure(lock_order=mode != "no_order")
    if kind == "Lock":
        locks: list[Any] = [tracedsync.Lock(name=f"L{index}") for index in range(3)]
        operations, state = OPERATIONS, _state
    else:
        locks = [tracedsync.RLock(name=f"R{index}") for index in range(3)]
        operations, state = RLOCK_OPERATIONS, _rlock_state
    outcomes: list[Any] = []
    chains: dict[int, int] = {}
    trace = tracedsync.record() if mode != "default" else None
    if trace is not None:
        trace.start()
    try:
        for name, index in program:
            try:
                outcome: Any = operations[name](locks[index])
            except (RuntimeError, TypeError, ValueError) as error:
                outcome = f"{type(error).__name__}: {error}"
            outcomes.append((name, index, outcome, state(locks, chains)))
    finally:
        if trace is not None:
            trace.stop()
        for lock in locks:
            for _ in range(2 * len(program) + 1):  # bounded: a broken release never ends
                if not (_mine(lock) if kind == "RLock" else lock.locked()):
                    break
                lock.release()
        tracedsync.configure(lock_order=True)
        _fresh_order_state()
    events = [] if trace is None else [_normalise(event) for event in trace.events()]
    return outcomes, events


@needs_c
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("restore_implementation")
@settings(suppress_health_check=[HealthCheck.too_slow])  # threads, on a loaded machine
@given(programs, st.sampled_from(["default", "record", "no_order"]))
def test_both_implementations_do_the_same(program: list[tuple[str, int]], mode: str) -> None:
    # One line runs both: reports quote the caller's stack, this line included.
    reference, accelerated = [_run(name, mode, program) for name in IMPLEMENTATIONS]
    assert accelerated[0] == reference[0]
    assert accelerated[1] == reference[1]


# -- the same property for RLock ------------------------------------------------


def _rlock_condition_wait(lock: tracedsync.RLock) -> bool:
    # Releases every level through _release_save (C) and restores them
    # through _acquire_restore.
    return threading.Condition(lock).wait(0)  # type: ignore[arg-type]


def _rlock_notify(lock: tracedsync.RLock) -> str:
    # _is_owned (C) decides: RuntimeError unless this thread owns the lock.
    threading.Condition(lock).notify()  # type: ignore[arg-type]
    return "notified"


def _rlock_save_restore(lock: tracedsync.RLock) -> Any:
    state = lock._release_save()  # RuntimeError unless owned
    released = (lock._owner, lock._depth, lock._lock.locked())
    lock._acquire_restore(state)
    return state[0], released


def _rlock_under_lock(lock: tracedsync.RLock) -> Any:
    # A nested acquire: the order checker's slow path, then the held stack.
    outer = _OUTER[0]
    with outer:
        return lock.acquire(), lock.release()


#: A plain Lock held around some RLock operations (see _rlock_under_lock).
_OUTER: list[tracedsync.Lock] = []

#: As OPERATIONS, for RLocks: every blocking acquire succeeds (the test's
#: thread owns the lock or nobody does).
RLOCK_OPERATIONS: dict[str, Callable[[tracedsync.RLock], Any]] = {
    "acquire": lambda lock: lock.acquire(),
    "try": lambda lock: lock.acquire(False),
    "try_keyword": lambda lock: lock.acquire(blocking=False),
    "timeout_zero": lambda lock: lock.acquire(True, 0),
    "timeout_keyword": lambda lock: lock.acquire(timeout=0.0),
    "minus_one_float": lambda lock: lock.acquire(False, -1.0),
    "enter": lambda lock: lock.__enter__(),
    "exit": lambda lock: lock.__exit__(None, None, None),
    "release": lambda lock: lock.release(),
    "release_elsewhere": _release_elsewhere,
    "with": _with_block,
    "with_nested": lambda lock: (_with_block(lock), lock.acquire(), lock.release()),
    "under_lock": _rlock_under_lock,
    "is_owned": lambda lock: lock._is_owned(),
    "condition_wait": lambda lock: _rlock_condition_wait(lock) if _mine(lock) else None,
    "notify": _rlock_notify,
    "save_restore": _rlock_save_restore,
    "bad_timeout": lambda lock: lock.acquire(False, 1),
    "bad_argument": lambda lock: lock.acquire(True, -1, 3),  # type: ignore[call-arg]
    "bad_keyword": lambda lock: lock.acquire(wait=True),  # type: ignore[call-arg]
    "bad_release": lambda lock: lock.release(1),  # type: ignore[call-arg]
}

rlock_programs = st.lists(
    st.tuples(st.sampled_from(sorted(RLOCK_OPERATIONS)), st.integers(0, 2)),
    min_size=1,
    max_size=20,
)


def _rlock_state(locks: list[tracedsync.RLock], chains: dict[int, int]) -> tuple[Any, ...]:
    me = get_ident()
    return (
        tuple(
            (
                lock._lock.locked(),
                None if lock._owner is None else lock._owner == me,
                lock._depth,
                lock._acquired_ns != 0,
                _line(lock._acquired_code, lock._acquired_offset),
                lock._is_owned(),
            )
            for lock in locks
        ),
        _held(chains),
    )


@needs_c
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("restore_implementation")
@settings(suppress_health_check=[HealthCheck.too_slow])  # threads, on a loaded machine
@given(rlock_programs, st.sampled_from(["default", "record", "no_order"]))
def test_both_implementations_do_the_same_with_rlocks(
    program: list[tuple[str, int]], mode: str
) -> None:
    _OUTER[:] = [tracedsync.Lock(name="outer")]
    reference, accelerated = [_run(name, mode, program, "RLock") for name in IMPLEMENTATIONS]
    assert accelerated[0] == reference[0]
    assert accelerated[1] == reference[1]


# -- the accelerator's own promises ---------------------------------------------


@needs_c
def test_the_c_methods_are_on_the_class_when_active() -> None:
    if _accel.implementation() != "c":
        pytest.skip("the pure-Python implementation is selected (TRACEDSYNC_IMPL)")
    assert type(tracedsync.Lock.__dict__["acquire"]).__name__ == "method_descriptor"
    assert tracedsync.Lock.__enter__ is tracedsync.Lock.acquire
    assert tracedsync.Lock._release_save is tracedsync.Lock.release
    assert type(tracedsync.Lock.__dict__["_acquire_restore"]).__name__ == "method_descriptor"
    assert tracedsync.Lock.acquire.__name__ == "acquire"
    names = ("acquire", "release", "__exit__", "_release_save", "_acquire_restore", "_is_owned")
    for name in names:
        assert type(tracedsync.RLock.__dict__[name]).__name__ == "method_descriptor", name
    assert tracedsync.RLock.__enter__ is tracedsync.RLock.acquire


@needs_c
@pytest.mark.usefixtures("restore_implementation")
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("base", [tracedsync.Lock, tracedsync.RLock])
def test_a_subclass_release_is_what_with_calls(implementation: str, base: type) -> None:
    _accel.select(implementation)
    calls: list[str] = []

    class Counting(base):  # type: ignore[valid-type,misc]
        __slots__ = ()

        def release(self) -> None:
            calls.append("release")
            super().release()

    lock = Counting()
    with lock:
        assert lock._lock.locked()
    assert calls == ["release"]
    assert not lock._lock.locked()


def _outcome(action: Callable[[], Any]) -> str:
    try:
        return repr(action())
    except Exception as error:
        return f"{type(error).__name__}: {error}"


@needs_c
@pytest.mark.usefixtures("restore_implementation")
def test_misuse_fails_alike_in_both() -> None:
    class NoInit(tracedsync.Lock):
        def __init__(self) -> None:
            pass  # never calls Lock.__init__: every slot is empty

    class NoInitR(tracedsync.RLock):
        def __init__(self) -> None:
            pass

    actions: dict[str, Callable[[], Any]] = {
        "acquire(1, 2, 3)": lambda: tracedsync.Lock().acquire(1, 2, 3),  # type: ignore[call-arg]
        "acquire(x=1)": lambda: tracedsync.Lock().acquire(x=1),  # type: ignore[call-arg]
        "acquire(True, blocking=False)": lambda: tracedsync.Lock().acquire(
            True,
            blocking=False,  # type: ignore[misc]
        ),
        "acquire(False, 5)": lambda: tracedsync.Lock().acquire(False, 5),
        "acquire(timeout=-2)": lambda: tracedsync.Lock().acquire(timeout=-2),
        "acquire(timeout='x')": lambda: tracedsync.Lock().acquire(timeout="x"),  # type: ignore[arg-type]
        "release()": lambda: tracedsync.Lock().release(),
        "release(1)": lambda: tracedsync.Lock().release(1),  # type: ignore[call-arg]
        "__exit__()": lambda: tracedsync.Lock().__exit__(),  # type: ignore[call-arg]
        "no __init__: acquire": lambda: NoInit().acquire(),
        "no __init__: release": lambda: NoInit().release(),
        "unbound on another object": lambda: tracedsync.Lock.acquire(object()),  # type: ignore[arg-type]
        "_acquire_restore()": lambda: tracedsync.Lock()._acquire_restore(),  # type: ignore[call-arg]
        "_acquire_restore(None, 1)": lambda: tracedsync.Lock()._acquire_restore(None, 1),  # type: ignore[call-arg]
        "RLock acquire(1, 2, 3)": lambda: tracedsync.RLock().acquire(1, 2, 3),  # type: ignore[call-arg]
        "RLock acquire(timeout=-2)": lambda: tracedsync.RLock().acquire(timeout=-2),
        "RLock release()": lambda: tracedsync.RLock().release(),
        "RLock release(1)": lambda: tracedsync.RLock().release(1),  # type: ignore[call-arg]
        "RLock _release_save()": lambda: tracedsync.RLock()._release_save(),
        "RLock _is_owned(1)": lambda: tracedsync.RLock()._is_owned(1),  # type: ignore[call-arg]
        "RLock _acquire_restore()": lambda: tracedsync.RLock()._acquire_restore(),  # type: ignore[call-arg]
        "RLock _acquire_restore([1, 2])": lambda: tracedsync.RLock()._acquire_restore([1, 2]),  # type: ignore[arg-type]
        "RLock __exit__()": lambda: tracedsync.RLock().__exit__(),  # type: ignore[call-arg]
        "RLock no __init__: acquire": lambda: NoInitR().acquire(),
        "RLock no __init__: release": lambda: NoInitR().release(),
        "RLock no __init__: _is_owned": lambda: NoInitR()._is_owned(),
        "RLock unbound on another object": lambda: tracedsync.RLock.release(object()),  # type: ignore[arg-type]
    }
    seen = {}
    for implementation in IMPLEMENTATIONS:
        _accel.select(implementation)
        seen[implementation] = {name: _outcome(action) for name, action in actions.items()}
    python, c = seen["python"], seen["c"]
    for name in actions:
        if name.endswith("unbound on another object"):
            # A method descriptor checks its receiver; a function does not
            # (the Python method fails later, on a missing attribute).
            assert c[name].startswith("TypeError"), c[name]
            continue
        assert c[name] == python[name], name


@needs_c
@pytest.mark.usefixtures("restore_implementation")
def test_sites_inside_threading_are_the_callers() -> None:
    sites = {}
    for implementation in IMPLEMENTATIONS:
        _accel.select(implementation)
        lock = tracedsync.Lock()
        condition = threading.Condition(lock)  # type: ignore[arg-type]
        # threading's Condition.__enter__ calls lock.__enter__
        with tracedsync.record() as trace, condition:
            pass
        sites[implementation] = [(e["event"], e["line"], e["function"]) for e in trace.events()]
    assert sites["c"] == sites["python"]
    assert {function for _, _, function in sites["c"]} == {
        "test_sites_inside_threading_are_the_callers"
    }


@pytest.mark.parametrize(
    "install",
    [
        "lambda config: {'acquire': None}",  # built before a method moved to C
        "lambda config: config['a key these files never pass']",  # a key it wants
    ],
)
def test_an_extension_built_from_other_sources_leaves_pure_python(install: str) -> None:
    # A C extension left over from other sources (an in-place build before
    # an upgrade) must not break `import tracedsync`: pure Python, saying why.
    code = (
        "import sys, types\n"
        "fake = types.ModuleType('tracedsync._speedups')\n"
        f"fake.install = {install}\n"
        "sys.modules['tracedsync._speedups'] = fake\n"
        "import tracedsync\n"
        "from tracedsync import _accel\n"
        "lock = tracedsync.Lock()\n"
        "with lock:\n"
        "    pass\n"
        "print(_accel.implementation(), _accel.reason())\n"
    )
    finished = run_python(code, env={"TRACEDSYNC_IMPL": ""})
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.startswith("python the C extension does not match these Python files")


def test_version_and_setting_choose_the_implementation() -> None:
    code = "from tracedsync import _accel; print(_accel.implementation(), _accel.reason())"
    forced = run_python(code, env={"TRACEDSYNC_IMPL": "python"})
    assert forced.stdout.split()[0] == "python", forced.stderr
    assert "TRACEDSYNC_IMPL=python" in forced.stdout
    pure = run_python(code, env={"TRACEDSYNC_PURE": "1", "TRACEDSYNC_IMPL": ""})
    assert pure.stdout.split()[0] == "python", pure.stderr
    typo = run_python(code, env={"TRACEDSYNC_IMPL": "fast"})
    assert "TRACEDSYNC_IMPL='fast' is not one of auto, c, python; using 'auto'" in typo.stderr
    expected = "c" if _accel.available() else "python"
    assert typo.stdout.split()[0] == expected
    wanted = run_python(code, env={"TRACEDSYNC_IMPL": "c"})
    assert wanted.stdout.split()[0] == expected
    if not _accel.available():
        assert "TRACEDSYNC_IMPL=c, but" in wanted.stderr


def test_free_threaded_builds_keep_pure_python() -> None:
    import sysconfig

    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert not _accel.available()
        assert "free-threaded" in (_accel.reason() or "")
    else:
        assert _accel._unsupported() is None or sys.implementation.name != "cpython"


# -- recording: the C-built events are the Python ones --------------------------


def on_both_implementations(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test(implementation, ...)`` once per implementation (where the C
    one is built), restoring the active one afterwards."""
    for mark in (
        pytest.mark.parametrize("implementation", IMPLEMENTATIONS),
        pytest.mark.usefixtures("restore_implementation"),
        pytest.mark.timeout(60),
        needs_c,
    ):
        test = mark(test)
    return test


def _lock_events(trace: Any) -> list[tuple[str, str, int]]:
    return [
        (event["event"], event["thread_name"], event["pid"])
        for event in trace.events()
        if event["event"].startswith(("lock.", "rlock."))
    ]


@on_both_implementations
def test_recorded_events_name_their_thread(implementation: str) -> None:
    # The C recorder keeps each thread's name in its thread state: a thread
    # named after its first event, or a new thread, must not get another's.
    _accel.select(implementation)
    lock, rlock = tracedsync.Lock(), tracedsync.RLock()

    def work() -> None:
        with lock, rlock, rlock:
            pass

    with tracedsync.record() as trace:
        work()
        worker = tracedsync.Thread(target=work, name="worker-1")
        worker.start()
        worker.join()
        work()
    threads = [thread for _, thread, _ in _lock_events(trace)]
    assert threads == ["MainThread"] * 6 + ["worker-1"] * 6 + ["MainThread"] * 6


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@on_both_implementations
def test_a_forked_child_records_its_own_pid(implementation: str) -> None:
    # The forking thread's state survives fork(): its cached thread info
    # (the parent's pid) must not.
    _accel.select(implementation)
    lock = tracedsync.Lock()
    reader, writer = os.pipe()
    with tracedsync.record() as trace:
        with lock:
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: other threads
            pid = os.fork()
        if pid == 0:  # the child: report its lock events' pids, then leave
            try:
                with lock:
                    pass
                pids = {event_pid for _, _, event_pid in _lock_events(trace)[2:]}
                os.write(writer, repr((os.getpid(), sorted(pids))).encode())
            finally:
                os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        child, pids = eval(pipe.read())  # our own child's repr
    os.waitpid(pid, 0)
    assert pids == [child]
    assert {event_pid for _, _, event_pid in _lock_events(trace)} == {os.getpid()}


@needs_c
@pytest.mark.timeout(60)
@pytest.mark.usefixtures("restore_implementation")
def test_a_subclass_records_what_its_class_records() -> None:
    # A subclass's events are built by the Python methods (it may override
    # them), the class's own in C: the same events either way.
    class Sub(tracedsync.Lock):
        __slots__ = ()

    class SubR(tracedsync.RLock):
        __slots__ = ()

    seen = {}
    for implementation in IMPLEMENTATIONS:
        _accel.select(implementation)
        for name, kinds in (("class", (tracedsync.Lock, tracedsync.RLock)), ("sub", (Sub, SubR))):
            lock, rlock = kinds[0](name="L"), kinds[1](name="R")
            with tracedsync.record() as trace:
                with lock, rlock, rlock:
                    pass
                lock.acquire(False)
                lock.release()
            seen[implementation, name] = [
                {key: value for key, value in _normalise(event).items() if key != "primitive_kind"}
                for event in trace.events()
            ]
    assert len(seen["c", "class"]) == 8
    assert seen["c", "class"] == seen["python", "class"]
    assert seen["c", "sub"] == seen["python", "sub"] == seen["c", "class"]


@on_both_implementations
def test_a_raising_sink_is_dropped_and_the_lock_works_on(
    implementation: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _accel.select(implementation)
    lock, rlock = tracedsync.Lock(), tracedsync.RLock()
    calls: list[str] = []

    def broken(record: Any) -> None:
        calls.append(record[3])
        raise ValueError("disk full")

    with tracedsync.record() as trace:
        _hooks.add_sink(broken)
        try:
            assert lock.acquire() is True
            assert lock.locked()
            lock.release()
            with rlock, rlock:
                assert rlock._is_owned()
        finally:
            _hooks.remove_sink(broken)
    assert calls == ["lock.acquire"]  # dropped at its first failure
    assert not lock.locked() and not rlock._is_owned()
    assert [event["event"] for event in trace.events()] == [
        "lock.acquire",
        "lock.release",
        *["rlock.acquire"] * 2,
        *["rlock.release"] * 2,
    ]
    assert "raised ValueError: disk full" in capsys.readouterr().err


@on_both_implementations
def test_time_is_charged_only_for_sinks_that_can_take_it(implementation: str) -> None:
    # list.append cannot take long: timing it would cost more than it takes.
    # A Python sink can (a file, a callback), and its time is left out of the
    # holds the events report (see _hooks.spent).
    _accel.select(implementation)
    lock = tracedsync.Lock()
    me = get_ident()
    kept: list[Any] = []
    with tracedsync.record():
        _hooks.spent.pop(me, None)
        _hooks.add_sink(kept.append)
        try:
            with lock:
                pass
        finally:
            _hooks.remove_sink(kept.append)
        assert me not in _hooks.spent
        python_sink = kept.append.__call__  # a method-wrapper: not a C function
        _hooks.add_sink(python_sink)
        try:
            with lock:
                pass
        finally:
            _hooks.remove_sink(python_sink)
        assert _hooks.spent.get(me, 0) > 0
    assert [record[3] for record in kept] == ["lock.acquire", "lock.release"] * 2


@on_both_implementations
def test_a_release_that_fails_is_recorded_as_an_error(implementation: str) -> None:
    # Owned on paper but unlocked (the tiny window between a raw acquire and
    # the owner's store in pure Python, forced here): the release fails as
    # the raw lock's does, and its event says so, in C as in Python.
    _accel.select(implementation)
    lock = tracedsync.Lock(name="L")
    with tracedsync.record() as trace:
        lock._owner = get_ident()
        with pytest.raises(RuntimeError, match="release unlocked lock"):
            lock.release()
    assert [(e["event"], e["outcome"], e["error"]) for e in trace.events()] == [
        ("lock.release", "error", "RuntimeError: release unlocked lock")
    ]
    assert lock._owner is None and not lock.locked()


class _Garbage:
    """A reference cycle (only the collector frees it) whose finalizer notes
    whether the lock was taken when the collector ran it."""

    def __init__(self, taken: Callable[[], bool], seen: list[object]) -> None:
        self.cycle = self
        self.taken, self.seen = taken, seen

    def __del__(self) -> None:
        self.seen.append(self.taken())


@on_both_implementations
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
@pytest.mark.parametrize("form", ["acquire", "with"])
def test_a_collection_the_acquire_asks_for_runs_before_the_lock_is_taken(
    implementation: str, kind: str, form: str
) -> None:
    # From 3.12 an allocation only asks for a collection, run at the
    # interpreter's next check: after a C method returns.  The acquire
    # allocates (here the caller's frame object, a fresh frame's first
    # request), so without care the collection, and a __del__ taking the
    # lock, run with the lock just taken, where threading.Lock runs no Python
    # code: such a __del__ waits for its own thread (the gc stress scenario
    # hung so on 3.14).  The collector must run before the raw lock is taken.
    _accel.select(implementation)
    lock = getattr(tracedsync, kind)()
    taken = lock.locked if kind == "Lock" else lock._is_owned
    seen: list[object] = []
    with lock:  # a lock's first acquisition makes its bookkeeping in Python
        pass

    def take() -> None:  # a fresh frame, with no frame object yet
        gc.enable()  # asks for nothing itself: the next allocation does
        if form == "acquire":
            lock.acquire()
            seen.append("taken")
            lock.release()
        else:
            with lock:
                seen.append("taken")

    thresholds = gc.get_threshold()
    gc.collect()
    gc.disable()
    try:
        gc.set_threshold(1)
        _Garbage(taken, seen)
        for _ in range(10):  # over the threshold, asking for nothing while disabled
            _Garbage(lambda: False, [])
        take()
    finally:
        gc.set_threshold(*thresholds)
        gc.enable()
    gc.collect()
    # The finalizer ran once, and not with the lock taken (up to 3.11 nothing
    # here allocates after gc.enable() and it runs later, at a collection the
    # test's own allocations ask for).
    assert "taken" in seen and [ran for ran in seen if ran != "taken"] == [False]


@on_both_implementations
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
@pytest.mark.parametrize("mode", ["default", "record"])
def test_no_collection_finds_a_lock_taken_without_an_owner(
    implementation: str, kind: str, mode: str
) -> None:
    # A collection runs finalizers, which may take locks; one that finds a
    # lock taken with no owner yet (between the raw acquire and the owner's
    # store, or between the owner's clearing and the raw release) would wait
    # for its own thread, and one that finds an RLock owned at depth 0 would
    # release it under its owner's feet, where threading's locks run no
    # Python code at all.
    # Asked for at every allocation (threshold 1), no collection may run
    # there: every allocation of acquire and release comes outside that
    # window (a thread's first lock, a lock's first acquisition, a fresh
    # frame, a nested acquire, recording's records).
    _accel.select(implementation)
    mine: dict[int, list[Any]] = {}
    found: list[str] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            for lock in mine.get(get_ident(), ()):
                if lock._lock.locked() and (
                    lock._owner is None or getattr(lock, "_depth", None) == 0
                ):
                    found.append(lock.name)

    def fresh_frame(lock: Any, inner: Any) -> None:
        with lock:
            inner.acquire()
            inner.release()
        lock.acquire()
        lock.release()

    def rounds() -> None:
        locks = mine.setdefault(get_ident(), [])
        for number in range(30):
            lock = getattr(tracedsync, kind)(name=f"outer{number}")
            inner = getattr(tracedsync, kind)(name=f"inner{number}")
            locks += [lock, inner]
            fresh_frame(lock, inner)
            fresh_frame(lock, inner)

    recording = tracedsync.record() if mode == "record" else None
    thresholds = gc.get_threshold()
    gc.collect()
    gc.callbacks.append(watch)
    try:
        if recording is not None:
            recording.start()
        gc.set_threshold(1)
        rounds()
        thread = threading.Thread(target=rounds)  # a thread's first lock
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(watch)
        if recording is not None:
            recording.stop()
    assert found == []
    assert sum(len(locks) for locks in mine.values()) == 120


@pytest.mark.usefixtures("restore_implementation")
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
@pytest.mark.parametrize("mode", ["default", "record", "race_edge"])
def test_the_calls_of_acquire_and_release_never_see_a_lock_half_changed(
    monkeypatch: pytest.MonkeyPatch, kind: str, mode: str
) -> None:
    # A call is where the interpreter runs what is pending (a collection and
    # its finalizers, a signal handler), which may take the lock: it must
    # find it whole, taken with an owner (an RLock at depth 1 or more) or
    # free.  Every call the pure-Python methods make of get_ident(), of the
    # order checker and of the race detector's edge checks each lock here.
    _accel.select("python")
    locks: list[Any] = []
    torn: list[str] = []

    def check(where: str) -> None:
        for lock in locks:
            taken = lock._lock.locked()
            depth = getattr(lock, "_depth", None)
            if (taken and lock._owner is None) or (
                lock._owner is not None and (not taken or depth == 0)
            ):
                torn.append(f"{lock.name} in {where}")

    def watched(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            check(name)
            result = function(*args)
            check(name)
            return result

        return call

    from tracedsync import _lock

    monkeypatch.setattr(_lock, "get_ident", watched("get_ident", get_ident))
    monkeypatch.setattr(_lockorder, "released", watched("released", _lockorder.released))
    monkeypatch.setattr(_lockorder, "acquired", watched("acquired", _lockorder.acquired))
    if mode == "race_edge":
        monkeypatch.setattr(_hooks, "release_edge", watched("release_edge", lambda lock: None))
    outer = getattr(tracedsync, kind)(name="outer")
    inner = getattr(tracedsync, kind)(name="inner")
    locks += [outer, inner]
    recording = tracedsync.record() if mode != "default" else None
    if recording is not None:
        recording.start()
    try:
        for _ in range(3):
            with outer:
                inner.acquire()
                inner.release()
            outer.acquire()
            if kind == "RLock":
                outer.acquire()
                outer.release()
            outer.release()
    finally:
        if recording is not None:
            recording.stop()
    assert torn == []
    assert not outer._lock.locked() and not inner._lock.locked()


@needs_c
@pytest.mark.usefixtures("restore_implementation")
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_hold_the_c_started_is_measured_by_the_python_methods(kind: str) -> None:
    # The C keeps a hold's start as a float (hold_start in _speedups.c: a
    # float comes from a free list); the Python methods that may release
    # the lock (here after the implementation is switched while it is held)
    # read it too, and an event's held_ns stays an int.
    _accel.select("c")
    lock = getattr(tracedsync, kind)()
    with tracedsync.record() as trace:
        lock.acquire()
        assert type(lock._acquired_ns) is float
        _accel.select("python")
        lock.release()
    release = trace.events()[-1]
    assert release["event"].endswith(".release")
    assert type(release["held_ns"]) is int
    assert 0 <= release["held_ns"] <= release["time_ns"] - trace.events()[-2]["time_ns"]
