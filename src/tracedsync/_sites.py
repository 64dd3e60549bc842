"""Where in the user's code something happened.

Diagnostics must point at the user's code, never at tracedsync's own frames
nor at the standard library's synchronisation code that calls our primitives
(``threading.Condition.__enter__`` calling ``lock.acquire`` is not where the
user took the lock).  Capturing a site is one frame lookup plus, only when that
frame is internal, a short walk outwards.
"""

from __future__ import annotations

import gc
import itertools
import operator
import os
import sys
import threading
from _thread import get_ident
from collections.abc import Callable
from types import CodeType, FrameType

from tracedsync._typenames import Any, TypeVar

__all__ = [
    "INTERNAL_FILES",
    "check_name",
    "current_frames",
    "describe_call",
    "describe_line",
    "describe_offset",
    "describe_site",
    "instance_label",
    "line_at",
    "live_threads",
    "module_in",
    "new_instance",
    "register_internal_module",
    "reset_instances",
    "short_path",
    "user_frame",
    "user_site",
]

_T = TypeVar("_T")

#: Files whose frames are never reported as the user's call site: every
#: tracedsync module registers itself here, and ``threading`` is here because
#: its classes call the primitives on the user's behalf.
INTERNAL_FILES: set[str] = {threading.__file__}


def register_internal_module(filename: str) -> None:
    """Mark ``filename`` as tracedsync's own code, skipped in call sites."""
    INTERNAL_FILES.add(filename)


register_internal_module(__file__)


def user_frame(frame: FrameType | None) -> FrameType | None:
    """Return ``frame`` or the nearest caller of it that is not internal."""
    while frame is not None and frame.f_code.co_filename in INTERNAL_FILES:
        frame = frame.f_back
    return frame


def user_site(frame: FrameType) -> tuple[CodeType | None, int]:
    """The user's code and bytecode offset for an operation called from
    ``frame`` (the first frame outside tracedsync and ``threading``)."""
    if frame.f_code.co_filename in INTERNAL_FILES:
        found = user_frame(frame)
        return (None, 0) if found is None else (found.f_code, found.f_lasti)
    return frame.f_code, frame.f_lasti


def caller_site(depth: int) -> tuple[CodeType | None, int]:
    """The user's code object and line, ``depth`` frames above the caller."""
    frame = user_frame(sys._getframe(depth + 1))
    if frame is None:
        return None, 0
    return frame.f_code, frame.f_lineno


#: :func:`short_path`'s answers by (working directory, file name): reports
#: and lock-order edges describe the same few files over and over.
_short_paths: dict[tuple[str, str], str] = {}


def short_path(filename: str) -> str:
    """``filename`` relative to the working directory when it lies inside it.

    Paths outside the working directory keep their last two components
    (``package/module.py``), enough to recognise them in a one-line report.
    """
    try:
        key = (os.getcwd(), filename)
    except OSError:  # the working directory was removed
        return _short_path(filename)
    found = _short_paths.get(key)
    if found is None:
        if len(_short_paths) >= 4096:
            _short_paths.clear()
        found = _short_paths[key] = _short_path(filename)
    return found


def _short_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        relative = filename
    if not relative.startswith(os.pardir):
        return relative
    parent, base = os.path.split(filename)
    return os.path.join(os.path.basename(parent), base) if parent else base


def describe_site(code: CodeType | None, line: int) -> str | None:
    """``"file.py:42 (in function)"`` for a captured site, ``None`` if unknown."""
    if code is None:
        return None
    return f"{short_path(code.co_filename)}:{line} (in {code.co_name})"


def line_at(code: CodeType, offset: int) -> int:
    """The source line of the instruction at bytecode ``offset`` in ``code``."""
    line = code.co_firstlineno
    for start, end, number in code.co_lines():
        if number is not None:
            line = number
        if start <= offset < end:
            break
    return line


def describe_offset(code: CodeType | None, offset: int) -> str | None:
    """Like :func:`describe_site`, for a site captured as a bytecode offset."""
    if code is None:
        return None
    return describe_site(code, line_at(code, offset))


#: The standard library's directory (third-party packages under it excepted).
_STDLIB = os.path.dirname(os.__file__) + os.sep


def library_file(filename: str) -> bool:
    """Whether ``filename`` is tracedsync's, ``threading``'s or another
    module of the standard library (not a third-party package)."""
    return filename in INTERNAL_FILES or (
        filename.startswith(_STDLIB) and "-packages" + os.sep not in filename
    )


def describe_wait(ident: int, code: CodeType | None, offset: int) -> str | None:
    """Where thread ``ident`` waits, as :func:`describe_offset`; when that is
    in the standard library (``queue.py``...), followed by the first frame of
    the user's code that led there: ``"queue.py:171 (in get), called from
    app.py:12 (in main)"``.  The thread must be blocked in that wait now."""
    site = describe_offset(code, offset)
    if site is None or code is None or not library_file(code.co_filename):
        return site
    frame = (current_frames() or {}).get(ident)
    while frame is not None and frame.f_code is not code:
        frame = frame.f_back
    while frame is not None and library_file(frame.f_code.co_filename):
        frame = frame.f_back
    caller = None if frame is None else describe_site(frame.f_code, frame.f_lineno)
    frame = None  # no reference cycle through this frame (see _waits)
    return site if caller is None else f"{site}, called from {caller}"


def describe_call(frame: FrameType | None) -> str | None:
    """Where the calling thread's operation made in ``frame`` was called
    from, as :func:`describe_wait` says it: the first frame outside
    tracedsync and ``threading`` and, when that is in the standard library,
    the first frame of the user's code that led there."""
    found = user_frame(frame)
    if found is None:
        return None
    site = describe_site(found.f_code, found.f_lineno)
    caller: FrameType | None = found
    while caller is not None and library_file(caller.f_code.co_filename):
        caller = caller.f_back
    if caller is None or caller is found:
        return site
    return f"{site}, called from {describe_site(caller.f_code, caller.f_lineno)}"


def describe_line(code: CodeType | None, line: int) -> str | None:
    """``"app.py:42"`` (the path as :func:`short_path`), ``None`` if unknown."""
    if code is None:
        return None
    return f"{short_path(code.co_filename)}:{line}"


#: Threads inside :func:`current_frames` or :func:`live_threads` right now.
_reading_frames: set[int] = set()


def _uncollected(read: Callable[[], _T]) -> _T:
    """``read()`` (a C function reading the interpreter's thread list) with
    no garbage collection possible during the call.

    3.12 and later run the collector only between bytecodes, never inside a
    C function, so ``read()`` is safe as it is; so is 3.10's
    :func:`sys._current_frames`, which allocates nothing tracked while the
    list is locked.  3.11 collects inside any allocation, and both readers
    allocate (frame objects, tuples) while they hold the thread-list lock:
    a ``__del__`` run there that waits on a traced lock hangs the whole
    process as soon as that lock's holder needs the list (to start a thread,
    or to read it).  So on 3.11 the collector is off during the call:
    ``map`` makes the four calls one after another in C, with no bytecode
    in between, so no other thread runs (nor sees the collector off) until
    it is back on.  A switch another thread made between the first look
    and the call is kept.
    """
    if sys.version_info < (3, 11) or sys.version_info >= (3, 12):
        return read()
    if gc.isenabled():
        was_on, _, found, _ = map(call, (gc.isenabled, gc.disable, read, gc.enable))
        if not was_on:  # switched off by another thread meanwhile: keep it off
            gc.disable()
    else:
        was_on, _, found = map(call, (gc.isenabled, gc.disable, read))
        if was_on:  # switched on by another thread meanwhile: put it back on
            gc.enable()
    result: _T = found  # map's items are untyped: read()'s result
    return result


#: ``operator.call`` (3.11+), a C function: ``map`` calling it adds no bytecode.
call: Any = getattr(operator, "call", None)


def live_threads() -> frozenset[int] | None:
    """The idents of every thread the interpreter has a thread state for
    (running, blocked, just started or just ending), or ``None`` when the
    calling thread is already inside this call (see :func:`current_frames`).

    This is what the liveness checks ask, and on 3.11 and later it is read
    with :func:`sys._current_exceptions`, which makes no frame objects:
    :func:`sys._current_frames` makes one for every other thread's
    innermost frame, and a frame object still referenced when its frame
    returns makes the interpreter allocate the caller's frame object then.
    That allocation can run the collector, and so a ``__del__``, inside
    tracedsync's own frames just after a raw lock was taken, where
    ``threading`` runs no Python code at all: a ``__del__`` taking that lock
    then waits for its own thread.  On 3.10 every frame is an object already
    and :func:`sys._current_frames` is used.
    """
    me = get_ident()
    if me in _reading_frames:
        return None
    _reading_frames.add(me)
    try:
        if sys.version_info < (3, 11):
            return frozenset(sys._current_frames())
        return frozenset(_uncollected(sys._current_exceptions))
    finally:
        _reading_frames.discard(me)


def current_frames() -> dict[int, FrameType] | None:
    """:func:`sys._current_frames`, or ``None`` when the calling thread is
    already inside it (or inside :func:`live_threads`).

    For reports, which show other threads' stacks; liveness checks use
    :func:`live_threads`, which makes no frame objects.  No collection runs
    during the call (see :func:`_uncollected`).  The nested call (user code
    run inside it, as a signal handler) gets ``None``: "cannot tell", which
    every caller treats as the cautious answer.
    """
    me = get_ident()
    if me in _reading_frames:
        return None
    _reading_frames.add(me)
    try:
        return _uncollected(sys._current_frames)
    finally:
        _reading_frames.discard(me)


def module_in(module_name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``module_name`` is one of ``prefixes`` or a submodule of one."""
    return any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in prefixes)


def check_name(name: object) -> None:
    """Refuse a ``name=`` that is not a string (it names the primitive in
    every report, so a wrong value would surface far from its cause)."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {name!r}")


def default_name(kind: str, code: CodeType | None, line: int) -> str:
    """The name a primitive gets when the user gives none: ``Lock@app.py:42``."""
    site = describe_line(code, line)
    return kind if site is None else f"{kind}@{site}"


#: Instances numbered so far, by creation site: (kind, file, line) -> a
#: counter of the instances made there.
_instances: dict[tuple[str, str, int], Any] = {}
#: The most creation sites numbered: beyond it the instances of a new site
#: are not numbered (they keep their plain name), so memory stays bounded by
#: this, never by the number of instances.
MAX_NUMBERED_SITES = 20_000


def new_instance(kind: str, name: str | None, code: CodeType | None, line: int) -> int | str:
    """Number a primitive being created: which instance it is among those of
    ``kind`` made at its creation site (``code``/``line``).  At creation
    only: one dictionary lookup and one ``next()`` of a counter, never on an
    acquire or release.

    Returns what :func:`instance_label` takes: the ordinal (``0``: not
    numbered) for a default name, the name itself for one given with
    ``name=``, which stays as given.
    """
    if name is not None:
        return name
    key = (kind, code.co_filename if code else "?", line)
    counter = _instances.get(key)
    if counter is None:
        if len(_instances) >= MAX_NUMBERED_SITES:
            return 0
        counter = _instances.setdefault(key, itertools.count(1))
    ordinal: int = next(counter)
    return ordinal


def reset_instances() -> None:
    """Number the instances of every site from 1 again (for test suites)."""
    _instances.clear()


def instance_label(name: str, instance: int | str) -> str:
    """A primitive's instance as reports and tables name it: its default
    name numbered by creation site, ``Lock@bank.py:12#2`` (the second lock
    of that kind made on that line), or its given name as given."""
    if type(instance) is str:
        return instance
    return f"{name}#{instance}" if instance else name
