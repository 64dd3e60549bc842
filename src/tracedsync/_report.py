"""Findings as reports: the text a person reads and the data a program reads.

Reports follow the best tools' shape: jstack's "Found one Java-level
deadlock" (each thread, what it waits for, who holds it), PostgreSQL's one
detail line per edge, lockdep's "possible circular locking dependency" with
the site where each edge was first seen.  Every site is a frame of the user's
code, never tracedsync's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from tracedsync._sites import (
    INTERNAL_FILES,
    current_frames,
    describe_site,
    register_internal_module,
)

__all__ = ["Report", "current_stack", "describe_primitive", "instance_name"]

register_internal_module(__file__)


@dataclass(frozen=True)
class Report:
    """One finding of a detector.

    ``kind`` is ``"deadlock"``, ``"inversion"``, ``"long_wait"``,
    ``"hierarchy"`` (a declared lock order broken), ``"unguarded"`` (a
    :func:`~tracedsync.guarded_by` attribute touched without its lock),
    ``"race"`` or ``"note"`` (a limit reached);
    ``message`` the text shown to people; ``signature`` identifies the
    finding for deduplication; ``details`` holds the same facts as data (the
    fields of the corresponding event).
    """

    kind: str
    message: str
    signature: tuple[Any, ...]
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def describe_primitive(primitive: Any) -> str:
    """``Lock 'Lock@bank.py:12#2'``: a primitive as reports name it, by its
    instance label (see :func:`instance_name`)."""
    kind = getattr(primitive, "_kind", type(primitive).__name__)
    return f"{kind} {instance_name(primitive)!r}"


def instance_name(primitive: Any) -> str:
    """The name that tells ``primitive`` from every other instance made at
    its site or given its name (events' ``primitive_instance``): the
    default name numbered by creation site, ``Lock@bank.py:12#2``, or the
    given ``name=``, numbered from its second instance on."""
    label = getattr(primitive, "_instance_label", None)
    return str(primitive.name) if label is None else str(label())


def current_stack(ident: int, limit: int = 6) -> list[str]:
    """The user frames thread ``ident`` is executing now, innermost first."""
    frame = (current_frames() or {}).get(ident)
    lines: list[str] = []
    while frame is not None and len(lines) < limit:
        if frame.f_code.co_filename not in INTERNAL_FILES:
            site = describe_site(frame.f_code, frame.f_lineno)
            if site is not None:
                lines.append(site)
        frame = frame.f_back
    frame = None  # no reference cycle through this frame (see _waits)
    return lines


def thread_label(ident: int) -> str:
    """``'worker-1'`` for a thread ``threading`` knows, else its ident."""
    for thread in threading.enumerate():
        if thread.ident == ident:
            return repr(thread.name)
    return f"thread {ident}"
