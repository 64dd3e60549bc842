"""Findings as reports: the text a person reads and the data a program reads.

Reports follow the best tools' shape: jstack's "Found one Java-level
deadlock" (each thread, what it waits for, who holds it), PostgreSQL's one
detail line per edge, lockdep's "possible circular locking dependency" with
the site where each edge was first seen.  Every site is a frame of the user's
code, never tracedsync's.
"""

from __future__ import annotations

import threading

from tracedsync._sites import (
    INTERNAL_FILES,
    current_frames,
    describe_site,
    library_file,
    register_internal_module,
)
from tracedsync._typenames import Any

__all__ = ["Report", "current_stack", "describe_primitive", "instance_name", "thread_stack"]

register_internal_module(__file__)


class Report:
    """One finding of a detector.

    ``kind`` is ``"deadlock"``, ``"inversion"``, ``"long_wait"``,
    ``"hierarchy"`` (a declared lock order broken), ``"unguarded"`` (a
    :func:`~tracedsync.guarded_by` attribute touched without its lock),
    ``"race"`` or ``"note"`` (a limit reached);
    ``message`` the text shown to people; ``signature`` identifies the
    finding for deduplication; ``details`` holds the same facts as data (the
    fields of the corresponding event).

    Immutable, compared and shown by its four fields, as a frozen dataclass
    would be (written out: ``dataclasses`` costs more to import than the
    rest of tracedsync's findings code).
    """

    __slots__ = ("details", "kind", "message", "signature")

    kind: str
    message: str
    signature: tuple[Any, ...]
    details: dict[str, Any]

    def __init__(
        self,
        kind: str,
        message: str,
        signature: tuple[Any, ...],
        details: dict[str, Any] | None = None,
    ) -> None:
        setter = object.__setattr__
        setter(self, "kind", kind)
        setter(self, "message", message)
        setter(self, "signature", signature)
        setter(self, "details", {} if details is None else details)

    def _fields(self) -> tuple[Any, ...]:
        return (self.kind, self.message, self.signature, self.details)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Report)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"Report(kind={self.kind!r}, message={self.message!r}, "
            f"signature={self.signature!r}, details={self.details!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self._fields())

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
    return _stack(ident, limit, skip_library=False)


def thread_stack(ident: int, limit: int = 8) -> list[str]:
    """Thread ``ident``'s stack as deadlock reports show it, innermost first:
    the frame it waits in (the first outside tracedsync and ``threading``,
    ``queue.py:171 (in get)`` say), then only the user's own frames, without
    the standard library's between them."""
    return _stack(ident, limit, skip_library=True)


def _stack(ident: int, limit: int, *, skip_library: bool) -> list[str]:
    """Thread ``ident``'s frames outside tracedsync, innermost first; with
    ``skip_library``, the standard library's too, after the first."""
    frame = (current_frames() or {}).get(ident)
    lines: list[str] = []
    while frame is not None and len(lines) < limit:
        filename = frame.f_code.co_filename
        if filename not in INTERNAL_FILES and not (
            skip_library and lines and library_file(filename)
        ):
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
