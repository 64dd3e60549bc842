"""What changed in ``threading`` between CPython versions, checked against the
stdlib on the running interpreter.

Each test states the version-dependent behaviour it expects for the running
Python *and* compares tracedsync with ``threading`` on the same input, so it
fails both when tracedsync drifts from the stdlib and when a branch is taken
on the wrong version.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import tracedsync

#: Arguments RLock() accepted and ignored before 3.15 (gh-102029).
RLOCK_ARGUMENTS = [((1,), {}), ((), {"a": 1}), ((1, 2), {"a": 1})]


def _outcome(make: Callable[[], object]) -> tuple[str, list[str]]:
    """What calling ``make`` did: ``"ok"`` or the exception type, and the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            make()
        except TypeError:
            result = "TypeError"
        else:
            result = "ok"
    return result, [f"{w.category.__name__}: {w.message}" for w in caught]


@pytest.mark.parametrize(("args", "kwargs"), RLOCK_ARGUMENTS)
def test_rlock_arguments_behave_as_the_stdlib_on_this_version(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    ours = _outcome(lambda: tracedsync.RLock(*args, **kwargs))
    assert ours == _outcome(lambda: threading.RLock(*args, **kwargs))
    if sys.version_info >= (3, 15):
        assert ours == ("TypeError", [])
    elif sys.version_info >= (3, 13):
        message = "Passing arguments to RLock is deprecated and will be removed in 3.15"
        assert ours == ("ok", [f"DeprecationWarning: {message}"])
    else:
        assert ours == ("ok", [])


def test_rlock_deprecation_warning_names_the_callers_line() -> None:
    if not (3, 13) <= sys.version_info < (3, 15):
        pytest.skip("RLock() warns about arguments on 3.13 and 3.14 only")
    with pytest.warns(DeprecationWarning) as caught:
        tracedsync.RLock(1)
    assert caught[0].filename == __file__


def test_rlock_subclass_with_its_own_init_takes_any_arguments_silently() -> None:
    class CustomRLock(tracedsync.RLock):
        def __init__(self, a: int, *, b: int) -> None:
            super().__init__()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lock = CustomRLock(1, b=2)
    with lock:
        assert lock._is_owned()


def test_rlock_name_keyword_is_never_an_ignored_argument() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tracedsync.RLock(name="cache").name == "cache"


def test_rlock_locked_exists_exactly_where_the_stdlib_has_it() -> None:
    has_locked = sys.version_info >= (3, 14)
    assert hasattr(threading.RLock(), "locked") is has_locked
    assert hasattr(tracedsync.RLock(), "locked") is has_locked


@pytest.mark.timeout(10)
def test_rlock_locked_answers_for_any_thread_as_the_stdlib() -> None:
    if sys.version_info < (3, 14):
        pytest.skip("RLock.locked() is new in 3.14")
    for make in (threading.RLock, tracedsync.RLock):
        lock: Any = make()
        seen: list[bool] = [lock.locked()]
        lock.acquire()
        lock.acquire()
        seen.append(lock.locked())
        worker = threading.Thread(target=lambda: seen.append(lock.locked()))  # noqa: B023
        worker.start()
        worker.join()
        lock.release()
        seen.append(lock.locked())
        lock.release()
        seen.append(lock.locked())
        assert seen == [False, True, True, True, False], make


def test_condition_exports_locked_where_the_stdlib_does() -> None:
    condition = tracedsync.Condition()
    assert hasattr(condition, "locked") is hasattr(threading.Condition(), "locked")
    if sys.version_info >= (3, 14):
        assert condition.locked() is False
        with condition:
            assert condition.locked() is True


@pytest.mark.timeout(10)
def test_thread_context_keyword_as_the_stdlib() -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")
    if sys.version_info < (3, 14):
        for make in (threading.Thread, tracedsync.Thread):
            with pytest.raises(TypeError):
                make(target=lambda: None, context=contextvars.Context())
        return
    given = contextvars.Context()
    given.run(variable.set, "given")
    seen: list[str] = []
    for make in (threading.Thread, tracedsync.Thread):
        thread = make(target=lambda: seen.append(variable.get()), context=given)
        thread.start()
        thread.join()
    assert seen == ["given", "given"]
