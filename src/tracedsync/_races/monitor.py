"""Access capture: run a callback before each attribute or global access
made by the user's own code, per Python version.

* Python 3.12+: :mod:`sys.monitoring`.  ``PY_START`` (global) sees each code
  object the first time it runs; for the user's files it turns on the code
  object's local ``INSTRUCTION`` events and for every other code object
  returns ``DISABLE``, so the standard library and site-packages cost
  nothing after their first call.  An ``INSTRUCTION`` callback that is not
  at an access found by :func:`~tracedsync._races.accesses.analyse` also
  returns ``DISABLE``: each such instruction is seen once, then runs at full
  speed.  Only the accesses themselves keep calling back.
* Python 3.11: :func:`sys.settrace` (and :func:`threading.settrace` for
  threads started later), with ``f_trace_opcodes`` set on the user's frames
  only.  There is no ``DISABLE``: every call anywhere pays the global trace
  function, and every instruction of the user's frames an opcode event.
  It misses threads that were already running when capture started (their
  frames have no trace function) and threads started without
  :mod:`threading` (``_thread.start_new_thread``); on 3.12+ every thread is
  covered.

Both miss frames already executing when capture starts (their code object
runs uninstrumented until its next call), and code that is not a user file:
an access made inside the standard library on the program's behalf (say,
``copy.copy(obj)`` reading ``obj.__dict__``) is not seen.

The callback returns ``True`` to have that instruction never reported
again (where the mechanism allows it).
"""

from __future__ import annotations

import abc
import os
import sys
import sysconfig
import threading
from _thread import allocate_lock
from collections.abc import Callable, Iterable
from types import CodeType, FrameType
from typing import Any

from tracedsync._races.accesses import Access, analyse

__all__ = ["Capture", "UserFiles", "make_capture"]

#: Called before an access: (the frame making it, the access); ``True``
#: means "never again for this instruction".
AccessCallback = Callable[[FrameType, Access], bool]


class UserFiles:
    """Which source files are the user's: under one of ``roots``, and not
    in the standard library, site-packages or tracedsync itself.  Decisions
    are cached per file name."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = tuple(os.path.join(os.path.realpath(root), "") for root in roots)
        excluded = {os.path.dirname(os.path.dirname(os.path.realpath(__file__)))}
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            path = sysconfig.get_paths().get(key)
            if path:
                excluded.add(os.path.realpath(path))
        self.excluded = tuple(os.path.join(path, "") for path in excluded)
        self._known: dict[str, bool] = {}

    def __call__(self, filename: str) -> bool:
        known = self._known.get(filename)
        if known is None:
            path = os.path.realpath(filename) if not filename.startswith("<") else ""
            known = (
                bool(path) and path.startswith(self.roots) and not path.startswith(self.excluded)
            )
            self._known[filename] = known
        return known


class Capture(abc.ABC):
    """The common part: analysed code objects, shared by the mechanisms."""

    def __init__(self, callback: AccessCallback, wanted: Callable[[str], bool]) -> None:
        self.callback = callback
        self.wanted = wanted
        self._analysed: dict[CodeType, dict[int, Access]] = {}
        self._guard = allocate_lock()

    def accesses(self, code: CodeType) -> dict[int, Access] | None:
        """The accesses of ``code``, or ``None`` when it is not the user's."""
        found = self._analysed.get(code)
        if found is None:
            if not self.wanted(code.co_filename):
                return None
            found = analyse(code)
            with self._guard:
                self._analysed[code] = found
        return found

    @abc.abstractmethod
    def start(self) -> None:
        """Start calling back, in every thread the mechanism reaches."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop calling back and release the mechanism."""


class _Monitoring(Capture):
    """Python 3.12+: :mod:`sys.monitoring` (see the module docstring)."""

    #: Whether a tool of ours ran before in this process: its ``DISABLE``\ d
    #: locations must be re-enabled for a new start.
    _used = False

    def start(self) -> None:
        monitoring: Any = vars(sys)["monitoring"]  # 3.12+ only
        for tool in (3, 4, 5):
            if monitoring.get_tool(tool) is None:
                break
        else:
            raise RuntimeError("no free sys.monitoring tool id for the race detector")
        self.tool = tool
        monitoring.use_tool_id(tool, "tracedsync-races")
        if _Monitoring._used:
            monitoring.restart_events()
        _Monitoring._used = True
        events = monitoring.events
        self._disable = monitoring.DISABLE
        self._instrumented: list[CodeType] = []
        monitoring.register_callback(tool, events.PY_START, self._started)
        monitoring.register_callback(tool, events.INSTRUCTION, self._instruction)
        monitoring.set_events(tool, events.PY_START)

    def _started(self, code: CodeType, offset: int) -> Any:
        accesses = self.accesses(code)
        if accesses:
            monitoring: Any = vars(sys)["monitoring"]  # 3.12+ only
            monitoring.set_local_events(self.tool, code, monitoring.events.INSTRUCTION)
            with self._guard:
                self._instrumented.append(code)
        return self._disable

    def _instruction(self, code: CodeType, offset: int) -> Any:
        accesses = self._analysed.get(code)
        access = None if accesses is None else accesses.get(offset)
        if access is None:
            return self._disable
        if self.callback(sys._getframe(1), access):
            return self._disable
        return None

    def stop(self) -> None:
        monitoring: Any = vars(sys)["monitoring"]  # 3.12+ only
        monitoring.set_events(self.tool, 0)
        with self._guard:
            instrumented, self._instrumented = self._instrumented, []
        for code in instrumented:
            monitoring.set_local_events(self.tool, code, 0)
        monitoring.register_callback(self.tool, monitoring.events.PY_START, None)
        monitoring.register_callback(self.tool, monitoring.events.INSTRUCTION, None)
        monitoring.free_tool_id(self.tool)


class _Settrace(Capture):
    """Python 3.11: :func:`sys.settrace` with opcode events (see the module
    docstring)."""

    def start(self) -> None:
        self._active = True
        self._disabled: set[tuple[CodeType, int]] = set()
        threading.settrace(self._call)
        sys.settrace(self._call)

    def _call(self, frame: FrameType, event: str, argument: Any) -> Any:
        if event != "call" or not self._active:
            return None
        if not self.accesses(frame.f_code):
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._opcode

    def _opcode(self, frame: FrameType, event: str, argument: Any) -> Any:
        if event != "opcode" or not self._active:
            return self._opcode if self._active else None
        code = frame.f_code
        access = self._analysed[code].get(frame.f_lasti)
        if access is not None:
            key = (code, frame.f_lasti)
            if key not in self._disabled and self.callback(frame, access):
                with self._guard:
                    self._disabled.add(key)
        return self._opcode

    def stop(self) -> None:
        self._active = False
        sys.settrace(None)
        threading.settrace(None)


def make_capture(callback: AccessCallback, wanted: Callable[[str], bool]) -> Capture:
    """The best capture mechanism of the running Python."""
    if sys.version_info >= (3, 12):
        return _Monitoring(callback, wanted)
    return _Settrace(callback, wanted)
