"""Vector clocks and epochs, FastTrack style (Flanagan & Freund, PLDI 2009).

A *vector clock* maps a thread (a small integer the detector hands out,
never reused) to the last step of that thread known to happen before the
clock's owner; threads absent from the mapping are at 0.  Here it is a plain
``dict[int, int]``: sparse, so a program that starts thousands of
short-lived threads does not make every clock that long.

An *epoch* ``c@t`` is one entry of a clock, the step ``c`` of thread ``t``:
what FastTrack keeps for the last write of a location and, while reads are
ordered, its last read, instead of a whole clock.  It is packed into one
``int`` (``c << TID_BITS | t``) so that comparing and storing it allocates
nothing: that comparison is the detector's commonest operation.

These functions are pure: the caller (:mod:`tracedsync._races.detector`)
holds the lock that makes reading and updating clocks atomic.
"""

from __future__ import annotations

__all__ = [
    "EMPTY",
    "MAX_THREADS",
    "TID_BITS",
    "VectorClock",
    "clock_of",
    "epoch",
    "epoch_before",
    "first_not_before",
    "join",
    "tid_of",
]

#: Bits of an epoch that hold the thread.
TID_BITS = 24
_TID_MASK = (1 << TID_BITS) - 1
#: Threads the detector can tell apart (thread ids are never reused).
MAX_THREADS = _TID_MASK

#: The epoch before every access (``0@0``: thread 0 is never handed out).
EMPTY = 0

VectorClock = dict[int, int]


def epoch(clock: int, tid: int) -> int:
    """The epoch ``clock@tid``."""
    return (clock << TID_BITS) | tid


def tid_of(value: int) -> int:
    """The thread of an epoch."""
    return value & _TID_MASK


def clock_of(value: int) -> int:
    """The step of an epoch."""
    return value >> TID_BITS


def epoch_before(value: int, clock: VectorClock) -> bool:
    """Whether the step ``value`` happens before (or is known to) the owner
    of ``clock``: FastTrack's ``c@t <= C``."""
    return (value >> TID_BITS) <= clock.get(value & _TID_MASK, 0)


def join(into: VectorClock, other: VectorClock) -> None:
    """``into := into ⊔ other``, the pointwise maximum, in place."""
    for tid, step in other.items():
        if into.get(tid, 0) < step:
            into[tid] = step


def first_not_before(reads: VectorClock, clock: VectorClock) -> int | None:
    """A thread whose entry in ``reads`` is not covered by ``clock`` (an
    access of it is unordered with the owner of ``clock``), or ``None`` when
    ``reads <= clock``."""
    for tid, step in reads.items():
        if step > clock.get(tid, 0):
            return tid
    return None
