"""The happens-before data-race detector (``tracedsync run --races``).

One job per module: :mod:`.clocks` (vector clocks and epochs),
:mod:`.shadow` (per-location state, bounded), :mod:`.accesses` (which
instructions access what), :mod:`.monitor` (capturing accesses, per Python
version) and :mod:`.detector` (FastTrack, the synchronisation sink and the
reports).  See ``docs/races.md``.
"""

from __future__ import annotations

from tracedsync._races.detector import MAX_REPORTS, RaceDetector

__all__ = ["MAX_REPORTS", "RaceDetector"]
