"""The explorer interface: the one way the primitives reach the controlled
scheduler of :func:`tracedsync.explore`.

The primitives never import the explorer.  While an exploration runs, the
explorer installs itself here (:func:`install`); otherwise :data:`explorer`
is ``None`` and a primitive pays one module attribute read.  Everything a
primitive may ask of the explorer is in :class:`Explorer`: whether it
controls the calling thread, and how to model what would otherwise block
in the operating system (a contended lock, a join, a thread start) or mark
a scheduling point that no event marks (a guarded attribute access).
Waits inside ``threading``'s own conditions need nothing from the
primitives: the explorer models them through ``threading._allocate_lock``
itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tracedsync._typenames import Any, Protocol

__all__ = ["Explorer", "controlled", "explorer", "install", "uninstall"]


class Explorer(Protocol):
    """What the primitives call while an exploration runs."""

    def controlling(self) -> object | None:
        """The calling thread's entry, if the current run controls it."""

    def acquire_lock(self, raw: Any, primitive: Any, timeout: float) -> bool:
        """A contended acquire of ``primitive``'s raw lock, modelled;
        whether it was taken within ``timeout`` (``-1``: none)."""

    def join(self, thread: threading.Thread, timeout: float | None) -> bool:
        """A join, modelled; whether to go on with the real join."""

    def starting(self, thread: threading.Thread) -> None:
        """``thread``, about to start, joins the run."""

    def start_unmodelled(self, start: Callable[[], None]) -> None:
        """Run ``start`` blocking for real (the new thread boots)."""

    def point_at_caller(self, event: str, name: str, depth: int) -> None:
        """A scheduling point at the user's frame ``depth`` frames up."""


#: The explorer, while an exploration runs.
explorer: Explorer | None = None


def controlled() -> Explorer | None:
    """The explorer, if it controls the calling thread now."""
    found = explorer
    if found is not None and found.controlling() is not None:
        return found
    return None


def install(implementation: Explorer) -> None:
    """Put the explorer in place for an exploration."""
    global explorer
    explorer = implementation


def uninstall() -> None:
    """The exploration is over."""
    global explorer
    explorer = None
