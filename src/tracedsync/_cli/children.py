"""The child processes of a ``tracedsync run``: how they are traced, where
their events go, and how ``run``, ``report`` and ``timeline`` read them back.

The mechanism is coverage.py's: an environment variable carries the run's
settings (:data:`VARIABLE`) and a start-up hook in every new Python process
reads it.  The hook is a ``sitecustomize`` module in a directory of its own
(:data:`HOOK_DIRECTORY`) that ``run`` puts first on ``PYTHONPATH``, rather
than a ``.pth`` file in site-packages: it needs no install step, so it works
the same for an editable install, a wheel and a source tree on ``sys.path``;
it touches only the processes started from a run (a ``.pth`` file runs in
every Python of the environment, and an install step cannot add one to an
editable install without build-backend support); and nothing is written to
site-packages, which may be read-only.  The hook runs the ``sitecustomize``
it hides.  What it cannot reach: a child started with ``-I``, ``-E`` or
``-S``, or with an environment that drops the two variables.

* ``multiprocessing`` with ``spawn`` and ``forkserver``, and ``subprocess``
  Pythons: the hook traces the new process (the forkserver process too; its
  forked children then follow the next rule).
* ``fork`` (``multiprocessing``'s, or ``os.fork()``): the child inherits the
  patched state already; ``run``'s after-fork handler gives it its own trace
  and turns its session into a child's (no summary of its own).

Each process writes its own trace, named after the run's trace with its pid:
``trace.jsonl`` -> ``trace.pid-1234.jsonl`` (:func:`child_trace`), next to
the run's trace with ``--trace``, else in a temporary directory that ``run``
removes at the end.  Children of children are named the same way, next to
the same trace.  ``run`` folds every child's trace into its summary at exit,
and ``report`` and ``timeline`` read a trace together with its children's
(:func:`run_traces`): one summary, one timeline with a process track per pid.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Callable, Iterator

from tracedsync._sites import register_internal_module
from tracedsync._typenames import Any

__all__ = [
    "HOOK_DIRECTORY",
    "VARIABLE",
    "announce",
    "child_trace",
    "child_traces",
    "first_event",
    "first_pid",
    "read_settings",
    "run_events",
    "run_traces",
    "withdraw",
]

register_internal_module(__file__)

#: The environment variable that carries a run's settings to its children.
VARIABLE = "TRACEDSYNC_RUN"
#: The directory holding the children's ``sitecustomize`` start-up hook.
HOOK_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_child_hook")

_saved: dict[str, str | None] = {}


def child_trace(trace: str, pid: int) -> str:
    """The trace of process ``pid`` of the run whose trace is ``trace``:
    ``trace.pid-1234.jsonl``, or ``trace.pid-1234-2.jsonl`` when an earlier
    process of the run had the same pid (pids are reused): no process
    truncates another's trace."""
    root, extension = os.path.splitext(trace)
    path = f"{root}.pid-{pid}{extension or '.jsonl'}"
    reuse = 1
    while os.path.exists(path):
        reuse += 1
        path = f"{root}.pid-{pid}-{reuse}{extension or '.jsonl'}"
    return path


def child_traces(trace: str) -> list[str]:
    """The children's traces of the run whose trace is ``trace``, by pid."""
    root, extension = os.path.splitext(trace)
    extension = extension or ".jsonl"
    shape = re.compile(re.escape(root) + r"\.pid-(\d+)(?:-(\d+))?" + re.escape(extension) + r"\Z")
    found = []
    for path in glob.glob(glob.escape(root) + ".pid-*" + glob.escape(extension)):
        match = shape.match(path)
        if match is not None:
            found.append((int(match.group(1)), int(match.group(2) or 1), path))
    return [path for _, _, path in sorted(found)]


def first_event(path: str) -> dict[str, Any]:
    """The first line of the trace ``path`` as read (``{}``: none readable);
    only to order traces and name their process, so it is not validated."""
    try:
        with open(path, "rb") as stream:
            value = json.loads(stream.readline(64 * 1024))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def first_pid(path: str) -> int | None:
    """The pid of the process that wrote the trace ``path``, if it says."""
    pid = first_event(path).get("pid")
    return pid if type(pid) is int else None


def run_traces(trace: str, children_trace: str | None = None) -> list[str]:
    """``trace`` and the traces of the children of its run (named after
    ``children_trace``, by default ``trace``), in the order of their first
    events: the earliest event of the run comes first (a timeline's origin)."""
    paths = [trace, *child_traces(children_trace or trace)]
    started = []
    for path in paths:
        time_ns = first_event(path).get("time_ns")
        started.append((time_ns if type(time_ns) is int else None, path))
    started.sort(key=lambda entry: (entry[0] is None, entry[0] or 0))
    return [path for _, path in started]


def run_events(
    trace: str,
    children_trace: str | None = None,
    *,
    on_bad_record: Callable[[Any], None] | None = None,
    allow_empty: bool = False,
) -> Iterator[dict[str, Any]]:
    """The events of ``trace`` and of its run's children's traces
    (:func:`run_traces`), one file after another, each checked as
    :func:`~tracedsync._cli.tracefile.read_events` checks it; only
    ``trace`` itself must not be empty (unless ``allow_empty``)."""
    from tracedsync._cli.tracefile import read_events  # start-up cost: only when reading back

    for path in run_traces(trace, children_trace):
        yield from read_events(
            path, on_bad_record=on_bad_record, allow_empty=allow_empty or path != trace
        )


def announce(trace: str, settings: dict[str, Any]) -> None:
    """Make every Python process started from now on a traced child of the
    run whose (possibly virtual) trace is ``trace``: its settings in
    :data:`VARIABLE`, the hook first on ``PYTHONPATH``.  :func:`withdraw`
    undoes it."""
    for name in (VARIABLE, "PYTHONPATH"):
        _saved.setdefault(name, os.environ.get(name))
    os.environ[VARIABLE] = json.dumps({**settings, "trace": trace})
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = HOOK_DIRECTORY + (os.pathsep + path if path else "")


def withdraw() -> None:
    """Put back the environment :func:`announce` changed."""
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved.clear()


def read_settings() -> dict[str, Any] | None:
    """The run's settings, in a child (``None``: not a child of a run)."""
    raw = os.environ.get(VARIABLE)
    if not raw:
        return None
    settings = json.loads(raw)
    if not isinstance(settings, dict) or not isinstance(settings.get("trace"), str):
        raise ValueError(f"{VARIABLE} is not a tracedsync run's settings")
    return settings
