"""``tracedsync.patch()``: ``threading``'s constructors build traced primitives."""

from __future__ import annotations

import concurrent.futures
import copy
import inspect
import logging
import multiprocessing
import pickle
import queue
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracedsync
from helpers import PATIENCE
from tracedsync import _patch

NAMES = tuple(_patch.TRACED)
ORIGINALS = {name: getattr(threading, name) for name in NAMES}


@pytest.fixture(autouse=True)
def _always_unpatch() -> Iterator[None]:
    yield
    tracedsync.unpatch()
    assert all(getattr(threading, name) is ORIGINALS[name] for name in NAMES)


def test_patched_constructors_build_traced_primitives() -> None:
    tracedsync.patch()
    assert tracedsync.is_patched()
    assert type(threading.Lock()) is tracedsync.Lock
    assert type(threading.RLock()) is tracedsync.RLock
    assert type(threading.Condition()) is tracedsync.Condition
    assert type(threading.Semaphore(2)) is tracedsync.Semaphore
    assert type(threading.BoundedSemaphore(2)) is tracedsync.BoundedSemaphore
    assert type(threading.Event()) is tracedsync.Event
    assert type(threading.Barrier(2)) is tracedsync.Barrier
    assert type(threading.Thread(target=print)) is tracedsync.Thread
    assert type(threading.Timer(1, print)) is tracedsync.Timer
    lock = threading.Lock()
    assert lock.name.startswith("Lock@tests/test_patch.py:")  # the caller's site


def test_unpatch_restores_every_original_object() -> None:
    tracedsync.patch()
    assert all(getattr(threading, name) is not ORIGINALS[name] for name in NAMES)
    tracedsync.unpatch()
    assert not tracedsync.is_patched()
    assert all(getattr(threading, name) is ORIGINALS[name] for name in NAMES)
    assert type(threading.Lock()) is type(ORIGINALS["Lock"]())
    tracedsync.unpatch()  # a second unpatch does nothing


def test_patching_twice_is_one_patch() -> None:
    tracedsync.patch()
    wrapper = threading.Lock
    tracedsync.patch()
    assert threading.Lock is wrapper
    tracedsync.unpatch()
    assert threading.Lock is ORIGINALS["Lock"]


def test_type_checks_see_threadings_types_before_and_after_patching() -> None:
    before = ORIGINALS["Thread"](target=print)
    tracedsync.patch()
    after = threading.Thread(target=print)
    assert isinstance(before, threading.Thread) and isinstance(after, threading.Thread)
    assert isinstance(threading.current_thread(), threading.Thread)
    assert issubclass(threading._MainThread, threading.Thread)  # type: ignore[attr-defined]
    assert issubclass(tracedsync.Thread, threading.Thread)
    assert isinstance(threading.Event(), threading.Event)
    assert isinstance(ORIGINALS["Event"](), threading.Event)
    assert not isinstance(threading.Event(), threading.Condition)
    assert threading.Thread.run is ORIGINALS["Thread"].run  # attributes are the original's
    if not isinstance(ORIGINALS["Lock"], type):  # a function before CPython 3.13
        with pytest.raises(TypeError):
            isinstance(threading.Lock(), threading.Lock)
    else:
        assert isinstance(threading.Lock(), threading.Lock)
        assert isinstance(ORIGINALS["Lock"](), threading.Lock)


def test_patched_names_look_like_the_originals() -> None:
    """What a program may do with ``threading.X`` itself, not its instances."""
    tracedsync.patch()
    for name, original in ORIGINALS.items():
        wrapper = getattr(threading, name)
        assert wrapper is not original
        assert repr(wrapper) == repr(original)
        assert wrapper == original and hash(wrapper) == hash(original)
        assert (wrapper != original) is False
        assert {original: 1}[wrapper] == 1
        assert wrapper.__name__ == original.__name__
        assert wrapper.__qualname__ == original.__qualname__
        assert wrapper.__module__ == original.__module__
        assert wrapper.__doc__ == original.__doc__
        assert wrapper.__class__ is original.__class__
        assert isinstance(wrapper, type) == isinstance(original, type)
        assert inspect.isclass(wrapper) == inspect.isclass(original)
        assert set(dir(original)) <= set(dir(wrapper))
        assert copy.copy(wrapper) is wrapper and copy.deepcopy(wrapper) is wrapper
        assert callable(wrapper)
        if isinstance(original, type):
            assert vars(wrapper) == vars(original)
            assert (wrapper | None) == (original | None)  # an annotation evaluated while patched
            assert (None | wrapper) == (None | original)
            assert inspect.signature(wrapper) == inspect.signature(original)
    # Attributes set and deleted on the name are the original's.
    threading.Thread.tracedsync_test_attribute = 1  # type: ignore[attr-defined]
    try:
        assert ORIGINALS["Thread"].tracedsync_test_attribute == 1
    finally:
        del threading.Thread.tracedsync_test_attribute  # type: ignore[attr-defined]
    assert not hasattr(ORIGINALS["Thread"], "tracedsync_test_attribute")
    with pytest.raises(AttributeError):
        threading.Thread.no_such_attribute  # type: ignore[attr-defined]


def test_patching_imports_no_module_the_program_did_not(tmp_path: Path) -> None:
    """Patching loads nothing a program could notice in ``sys.modules``
    (wrapt 2.x, which the wrappers used to be, imports asyncio and with it
    concurrent.futures: CPython's test_concurrent_futures saw it)."""
    program = (
        "import sys, threading, tracedsync\n"
        "before = set(sys.modules)\n"
        "tracedsync.patch()\n"
        "threading.Thread(target=int).start()\n"
        "print(sorted(name for name in set(sys.modules) - before if 'tracedsync' not in name))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == "[]\n", result.stdout


def test_a_class_subclassing_a_patched_thread_is_traced() -> None:
    tracedsync.patch()

    class Worker(threading.Thread):
        def run(self) -> None:
            self.result = 42

    worker = Worker(name="subclassed")
    assert isinstance(worker, tracedsync.Thread) and isinstance(worker, threading.Thread)
    with tracedsync.record() as trace:
        worker.start()
        worker.join()
    assert worker.result == 42
    assert {"thread.start", "thread.run", "thread.exit"} <= set(trace.names())


def test_stdlib_queue_and_executor_run_on_traced_primitives() -> None:
    tracedsync.patch()
    with tracedsync.record() as trace:
        work: queue.Queue[int] = queue.Queue()
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
            assert list(executor.map(abs, [-1, -2, 3])) == [1, 2, 3]
        work.put(1)
        assert work.get() == 1
    assert type(work.mutex) is tracedsync.Lock
    created = {event.get("primitive_created") or "" for event in trace}
    assert any(site.rpartition(":")[0].endswith("queue.py") for site in created)
    assert {"thread.start", "condition.notify", "lock.acquire"} <= set(trace.names())
    trace.assert_pairing()


def test_threading_internals_and_logging_keep_the_original_primitives() -> None:
    tracedsync.patch()
    thread = threading.Thread(target=print)
    assert type(thread._started) is ORIGINALS["Event"]  # type: ignore[attr-defined]
    assert type(threading.Event()._cond) is ORIGINALS["Condition"]  # type: ignore[attr-defined]
    handler = logging.Handler()
    assert not isinstance(handler.lock, (tracedsync.Lock, tracedsync.RLock))
    with tracedsync.record() as trace:
        worker = threading.Thread(target=logging.getLogger("tracedsync-test").warning, args=("x",))
        worker.start()
        worker.join()
    files = {event["file"] for event in trace if event["file"]}
    assert not any("logging" in name or "structlog" in name for name in files)


def test_excluded_modules_get_the_originals() -> None:
    module = types.ModuleType("tracedsync_test_excluded")
    exec("import threading\ndef make():\n    return threading.Lock()\n", vars(module))
    tracedsync.patch(exclude=["tracedsync_test_excluded"])
    assert not isinstance(module.make(), tracedsync.Lock)
    tracedsync.unpatch()
    tracedsync.patch()
    assert isinstance(module.make(), tracedsync.Lock)


def test_names_bound_before_patching_are_rebound_and_restored() -> None:
    module = types.ModuleType("tracedsync_test_early")
    exec("from threading import Lock, Thread\nAlias = Lock\n", vars(module))
    sys.modules[module.__name__] = module
    try:
        tracedsync.patch()
        assert module.Lock is threading.Lock and isinstance(module.Lock(), tracedsync.Lock)
        assert module.Thread is threading.Thread
        assert module.Alias is ORIGINALS["Lock"]  # another name: not covered (documented)
        tracedsync.unpatch()
        assert module.Lock is ORIGINALS["Lock"] and module.Thread is ORIGINALS["Thread"]
    finally:
        del sys.modules[module.__name__]


def test_unpatch_leaves_a_name_someone_else_rebound() -> None:
    tracedsync.patch()
    replacement = object()
    threading.Semaphore = replacement  # type: ignore[assignment,misc]
    try:
        tracedsync.unpatch()
        assert threading.Semaphore is replacement
        assert threading.Lock is ORIGINALS["Lock"]
    finally:
        threading.Semaphore = ORIGINALS["Semaphore"]  # type: ignore[misc]


def test_patched_context_manager_nests() -> None:
    with tracedsync.patched():
        assert tracedsync.is_patched()
        with tracedsync.patched():
            assert isinstance(threading.RLock(), tracedsync.RLock)
        assert tracedsync.is_patched()  # the inner block did not unpatch
    assert not tracedsync.is_patched()
    assert threading.RLock is ORIGINALS["RLock"]


def test_primitives_created_while_patched_stay_traced_after_unpatch() -> None:
    with tracedsync.patched():
        lock = threading.Lock()
    with tracedsync.record() as trace, lock:
        pass
    assert trace.names() == ["lock.acquire", "lock.release"]


def test_the_off_switch_still_wins_while_patched() -> None:
    tracedsync.patch()
    tracedsync.disable()
    try:
        assert type(threading.Lock()) is type(ORIGINALS["Lock"]())
        assert type(threading.Thread(target=print)) is ORIGINALS["Thread"]
    finally:
        tracedsync.enable()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_old_style_subclass_calling_thread_init_by_name() -> None:
    tracedsync.patch()

    class Worker(threading.Thread):
        def __init__(self) -> None:
            threading.Thread.__init__(self, name="old-style")

        def run(self) -> None:
            raise ValueError("boom")

    worker = Worker()
    with tracedsync.record() as trace:
        worker.start()
        worker.join()
    (exit_event,) = trace.events("thread.exit")
    assert exit_event["outcome"] == "raised" and exit_event["exception"] == "ValueError: boom"


def test_foreign_threads_and_bounded_semaphores_still_work_while_patched() -> None:
    import _thread

    tracedsync.patch()
    seen: list[threading.Thread] = []
    done = _thread.allocate_lock()
    done.acquire()

    def foreign() -> None:
        seen.append(threading.current_thread())  # builds a threading._DummyThread
        done.release()

    _thread.start_new_thread(foreign, ())
    assert done.acquire(True, 10)
    assert isinstance(seen[0], threading.Thread)
    semaphore = threading.BoundedSemaphore(1)
    semaphore.acquire()
    semaphore.release()
    with pytest.raises(ValueError):
        semaphore.release()


def test_modules_imported_while_patched_get_the_originals_back_on_unpatch() -> None:
    tracedsync.patch()
    module = types.ModuleType("tracedsync_test_late")
    exec("from threading import Lock, Event\n", vars(module))
    sys.modules[module.__name__] = module
    try:
        assert isinstance(module.Lock(), tracedsync.Lock)
        tracedsync.unpatch()
        assert module.Lock is ORIGINALS["Lock"] and module.Event is ORIGINALS["Event"]
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_patched_names_pickle_as_the_originals(protocol: int) -> None:
    unpatched = {name: pickle.dumps(ORIGINALS[name], protocol) for name in NAMES}
    tracedsync.patch()
    for name in NAMES:
        pickled = pickle.dumps(getattr(threading, name), protocol)
        if name == "Lock":
            # _thread's name cannot lead back to the wrapper, so the bytes differ
            # (see ConstructorWrapper.__reduce_ex__); what they load is the same.
            assert pickle.loads(pickled) is ORIGINALS["Lock"]
        else:
            assert pickled == unpatched[name], name
            assert pickle.loads(pickled) is getattr(threading, name)  # the wrapper, while patched
        assert copy.copy(getattr(threading, name)) is getattr(threading, name)
        assert copy.deepcopy(getattr(threading, name)) is getattr(threading, name)
    pickled_while_patched = {name: pickle.dumps(getattr(threading, name)) for name in NAMES}
    tracedsync.unpatch()
    for name in NAMES:
        assert pickle.loads(pickled_while_patched[name]) is ORIGINALS[name]


MANAGER_PROGRAM = """
import multiprocessing
import threading
import tracedsync

if __name__ == "__main__":
    tracedsync.patch()
    context = multiprocessing.get_context({method!r})
    with context.Manager() as manager:
        lock = manager.Lock()
        with lock:
            shared = manager.list([1, 2])
            shared.append(3)
        event = manager.Event()
        event.set()
        print("manager ok", list(shared), event.is_set(), type(threading.Lock()).__name__)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_multiprocessing_manager_starts_while_patched(method: str, tmp_path: Path) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    program = tmp_path / "manager.py"
    program.write_text(MANAGER_PROGRAM.format(method=method), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 2,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "manager ok [1, 2, 3] True Lock" in result.stdout


@pytest.mark.parametrize("name", ["Lock", "RLock"])
def test_subclassing_what_cpython_refuses_is_refused_while_patched(name: str) -> None:
    statement = f"class Sub(threading.{name}): pass"
    with pytest.raises(TypeError) as unpatched:
        exec(statement, {"threading": threading})
    tracedsync.patch()
    with pytest.raises(TypeError) as patched:
        exec(statement, {"threading": threading})
    assert str(patched.value) == str(unpatched.value)
