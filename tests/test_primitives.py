"""Drop-in fidelity beyond ``test.lock_tests``: names, legacy methods,
argument errors, the lock protocol used by ``threading.Condition``, fork,
``concurrent.futures``, weak references and the teaching programs."""

from __future__ import annotations

import _thread
import concurrent.futures
import gc
import io
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from contextlib import redirect_stdout
from typing import Any

import pytest

import tracedsync
from helpers import run_python, wait_until_blocked
from tracedsync._waits import waits

LOCK_PAIRS: list[tuple[Callable[[], Any], Callable[[], Any]]] = [
    (threading.Lock, tracedsync.Lock),
    (threading.RLock, tracedsync.RLock),
]


def test_public_api_is_complete() -> None:
    for name in tracedsync.__all__:
        assert hasattr(tracedsync, name), name
    for name in (
        "Lock",
        "RLock",
        "Condition",
        "Semaphore",
        "BoundedSemaphore",
        "Event",
        "Barrier",
        "Thread",
        "Timer",
        "BrokenBarrierError",
    ):
        assert name in tracedsync.__all__
    assert tracedsync.BrokenBarrierError is threading.BrokenBarrierError
    assert issubclass(tracedsync.DeadlockError, RuntimeError)


@pytest.mark.parametrize(
    ("factory", "kind"),
    [
        (tracedsync.Lock, "Lock"),
        (tracedsync.RLock, "RLock"),
        (tracedsync.Condition, "Condition"),
        (tracedsync.Semaphore, "Semaphore"),
        (tracedsync.BoundedSemaphore, "BoundedSemaphore"),
        (tracedsync.Event, "Event"),
        (lambda **kw: tracedsync.Barrier(2, **kw), "Barrier"),
    ],
)
def test_default_name_is_the_creation_site_and_name_keyword_overrides(
    factory: Callable[..., Any], kind: str
) -> None:
    line = sys._getframe().f_lineno + 1
    primitive = factory()
    if kind == "Barrier":  # created inside the lambda, on the parametrize line
        assert primitive.name.startswith("Barrier@tests/test_primitives.py:")
    else:
        assert primitive.name == f"{kind}@tests/test_primitives.py:{line}"
    assert factory(name="cache-lock").name == "cache-lock"


def test_names_outside_the_working_directory_keep_two_path_components() -> None:
    from tracedsync._sites import short_path

    assert short_path("/somewhere/else/pkg/module.py") == "pkg/module.py"
    assert short_path(os.path.join(os.getcwd(), "app", "cache.py")) == "app/cache.py"


@pytest.mark.parametrize(("stdlib", "traced"), LOCK_PAIRS)
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((False, 1), {}),
        ((), {"timeout": -2}),
        ((), {"timeout": "soon"}),
        ((), {"timeout": 1e300}),
        ((False,), {"timeout": 0.5}),
        ((), {"blocking": False, "timeout": -1}),
        ((True, 0), {}),
    ],
)
def test_acquire_argument_errors_match_the_stdlib(
    stdlib: Callable[[], Any],
    traced: Callable[[], Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    def outcome(lock: Any) -> tuple[str, str]:
        try:
            result = lock.acquire(*args, **kwargs)
        except Exception as error:
            return type(error).__name__, str(error)
        if result:
            lock.release()
        return "returned", repr(result)

    assert outcome(traced()) == outcome(stdlib())


@pytest.mark.parametrize(("stdlib", "traced"), LOCK_PAIRS)
def test_release_errors_and_enter_values_match_the_stdlib(
    stdlib: Callable[[], Any], traced: Callable[[], Any]
) -> None:
    for factory in (stdlib, traced):
        lock = factory()
        with pytest.raises(RuntimeError) as caught:
            lock.release()
        expected = (
            "release unlocked lock"
            if factory in (threading.Lock, tracedsync.Lock)
            else ("cannot release un-acquired lock")
        )
        assert str(caught.value) == expected
        with lock as entered:
            assert entered is True


def test_lock_legacy_aliases() -> None:
    lock = tracedsync.Lock()
    assert lock.acquire_lock() is True
    assert lock.locked_lock() is True
    lock.release_lock()
    assert lock.locked() is False


def test_private_protocol_exists_where_the_stdlib_has_it() -> None:
    stdlib_rlock = _thread.RLock()
    for attribute in (
        "_is_owned",
        "_release_save",
        "_acquire_restore",
        "_at_fork_reinit",
        "_recursion_count",
    ):
        assert hasattr(tracedsync.RLock(), attribute) == hasattr(stdlib_rlock, attribute)
    assert hasattr(tracedsync.Lock(), "_at_fork_reinit")


def _legacy_calls(module: Any) -> list[tuple[str, str]]:
    """Call every legacy camelCase method; return the warnings each gives."""
    seen: list[tuple[str, str]] = []
    thread = module.Thread(target=lambda: None)
    event = module.Event()
    condition = module.Condition()
    calls: list[tuple[str, Callable[[], object]]] = [
        ("getName", thread.getName),
        ("setName", lambda: thread.setName("renamed")),
        ("isDaemon", thread.isDaemon),
        ("setDaemon", lambda: thread.setDaemon(True)),
        ("isSet", event.isSet),
    ]
    with condition:
        calls.append(("notifyAll", condition.notifyAll))
        for name, call in calls:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                call()
            seen.extend((name, f"{w.category.__name__}: {w.message}") for w in caught)
    assert thread.name == "renamed" and thread.daemon is True
    return seen


def test_legacy_camel_case_methods_warn_exactly_as_the_stdlib() -> None:
    assert _legacy_calls(tracedsync) == _legacy_calls(threading)


def test_isalive_alias_warns_and_answers() -> None:
    release = threading.Event()
    thread = tracedsync.Thread(target=release.wait)
    thread.start()
    with pytest.warns(DeprecationWarning, match="is_alive"):
        assert thread.isAlive() is True
    release.set()
    thread.join()
    with pytest.warns(DeprecationWarning):
        assert thread.isAlive() is False


def test_thread_is_a_threading_thread() -> None:
    seen: list[threading.Thread] = []
    thread = tracedsync.Thread(
        target=lambda: seen.append(threading.current_thread()), name="named", daemon=True
    )
    assert isinstance(thread, threading.Thread)
    thread.start()
    thread.join()
    assert seen == [thread]
    assert thread.name == "named" and thread.daemon and thread.ident is not None
    errors: list[str] = []

    def join_self() -> None:
        try:
            threading.current_thread().join()
        except RuntimeError as error:
            errors.append(str(error))

    joiner = tracedsync.Thread(target=join_self)
    joiner.start()
    joiner.join()
    assert errors == ["cannot join current thread"]
    assert not waits.snapshot()[1]


def test_timer_fires_and_can_be_cancelled() -> None:
    fired = threading.Event()
    timer = tracedsync.Timer(0.01, fired.set)
    timer.start()
    timer.join()
    assert fired.is_set()
    cancelled = tracedsync.Timer(30, fired.clear)
    cancelled.start()
    cancelled.cancel()
    cancelled.join()
    assert fired.is_set()


@pytest.mark.parametrize("make_lock", [tracedsync.Lock, tracedsync.RLock])
def test_stdlib_condition_over_a_traced_lock(make_lock: Callable[[], Any]) -> None:
    condition = threading.Condition(make_lock())
    items: list[int] = []

    def producer() -> None:
        for item in range(100):
            with condition:
                items.append(item)
                condition.notify()

    consumed: list[int] = []
    thread = tracedsync.Thread(target=producer)
    with condition:
        thread.start()
        while len(consumed) < 100:
            condition.wait_for(lambda: items)
            consumed.extend(items)
            items.clear()
        assert condition.wait(timeout=0.01) is False
    thread.join()
    assert consumed == list(range(100))
    with pytest.raises(RuntimeError):
        condition.notify()


def test_condition_over_a_traced_plain_lock() -> None:
    condition = tracedsync.Condition(tracedsync.Lock())
    flag: list[bool] = []

    def setter() -> None:
        with condition:
            flag.append(True)
            condition.notify_all()

    with condition:
        thread = tracedsync.Thread(target=setter)
        thread.start()
        assert condition.wait_for(lambda: flag, timeout=PATIENCE_SECONDS)
    thread.join()


PATIENCE_SECONDS = 20.0


def test_semaphore_and_bounded_semaphore_behave_as_the_stdlib() -> None:
    semaphore = tracedsync.Semaphore(2)
    assert semaphore.acquire() and semaphore.acquire(timeout=1)
    assert semaphore.acquire(blocking=False) is False
    assert semaphore.acquire(timeout=0.01) is False
    with pytest.raises(ValueError, match="non-blocking"):
        semaphore.acquire(False, 1)
    semaphore.release(2)
    with semaphore as entered:
        assert entered is True
    bounded = tracedsync.BoundedSemaphore(1)
    assert isinstance(bounded, tracedsync.Semaphore)
    assert isinstance(bounded, threading.BoundedSemaphore)
    with pytest.raises(ValueError, match="too many times"):
        bounded.release()
    with pytest.raises(ValueError):
        tracedsync.Semaphore(-1)


def test_barrier_action_and_broken_state() -> None:
    actions: list[str] = []
    barrier = tracedsync.Barrier(2, action=lambda: actions.append("done"))
    results: list[int] = []
    thread = tracedsync.Thread(target=lambda: results.append(barrier.wait()))
    thread.start()
    results.append(barrier.wait())
    thread.join()
    assert sorted(results) == [0, 1] and actions == ["done"]
    barrier.abort()
    with pytest.raises(tracedsync.BrokenBarrierError):
        barrier.wait()


def test_concurrent_futures_with_traced_primitives() -> None:
    lock = tracedsync.Lock()
    condition = tracedsync.Condition()
    totals = {"count": 0}

    def work(n: int) -> int:
        with lock:
            totals["count"] += n
        with condition:
            condition.notify_all()
        return n * n

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        squares = list(pool.map(work, range(200)))
    assert squares == [n * n for n in range(200)]
    assert totals["count"] == sum(range(200))
    assert not lock.locked()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_can_use_primitives_and_reinit_held_locks() -> None:
    code = """
import os, tracedsync
held = tracedsync.Lock(); held.acquire()
rheld = tracedsync.RLock(); rheld.acquire()
condition = tracedsync.Condition()
pid = os.fork()
if pid == 0:
    held._at_fork_reinit(); rheld._at_fork_reinit()
    ok = held.acquire(False) and rheld.acquire(False)
    with condition:
        ok = ok and condition.wait(0.01) is False
    fresh = tracedsync.Lock()
    with fresh:
        pass
    os._exit(0 if ok else 7)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), held.locked(), rheld._is_owned())
"""
    result = run_python(code)
    assert (result.stdout, result.stderr) == ("0 True True\n", "")


def _use_locks_contended() -> list[weakref.ref[Any]]:
    """Hold, contend for and release a Lock and an RLock; return weak refs to them."""
    lock = tracedsync.Lock()
    rlock = tracedsync.RLock()
    holder_ready = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock, rlock:
            holder_ready.set()
            release.wait()

    def contend() -> None:
        if lock.acquire(timeout=PATIENCE_SECONDS):
            lock.release()

    thread = tracedsync.Thread(target=hold)
    thread.start()
    holder_ready.wait()
    waiter = tracedsync.Thread(target=contend)
    waiter.start()
    wait_until_blocked(waiter.ident)
    release.set()
    thread.join()
    waiter.join()
    return [weakref.ref(lock), weakref.ref(rlock)]


def test_no_strong_references_keep_user_locks_alive() -> None:
    references = _use_locks_contended()
    gc.collect()
    assert [ref() for ref in references] == [None, None]
    assert not waits.snapshot()[1]


def test_teaching_programs_behave_as_with_threading() -> None:
    def run(module: Any) -> tuple[int, list[bool], list[str]]:
        counter = {"value": 0}
        rlock = module.RLock()

        def increment() -> None:
            for _ in range(1000):
                with rlock, rlock:
                    counter["value"] += 1

        threads = [module.Thread(target=increment) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        event = module.Event()
        woken: list[bool] = []
        gate = module.Barrier(11)

        def waiter() -> None:
            gate.wait()
            woken.append(event.wait())

        waiters = [module.Thread(target=waiter) for _ in range(10)]
        for thread in waiters:
            thread.start()
        gate.wait()
        event.set()
        for thread in waiters:
            thread.join()

        printed = io.StringIO()
        print_lock = module.Lock()

        def worker(number: int) -> None:
            with print_lock:
                print(f"worker {number} done", file=printed)

        workers = [module.Thread(target=worker, args=(n,)) for n in range(20)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        return counter["value"], woken, sorted(printed.getvalue().splitlines())

    assert run(tracedsync) == run(threading)


def test_importing_prints_nothing() -> None:
    result = run_python(
        "import tracedsync; lock = tracedsync.Lock(); lock.acquire(); "
        "lock.acquire(False); lock.release()"
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_log_level_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown log_level"):
        tracedsync.configure(log_level="loud")
    with redirect_stdout(io.StringIO()):
        tracedsync.configure(log_level="error")
