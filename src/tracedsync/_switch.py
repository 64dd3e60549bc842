"""The off switch: plain ``threading`` objects, zero overhead.

With ``TRACEDSYNC=off`` in the environment, or after :func:`disable`, the
public classes construct the plain ``threading`` objects instead of traced
ones (``type(tracedsync.Lock()) is type(threading.Lock())``), so a program
pays nothing and behaves exactly as with ``threading``.  Objects created
before the switch keep their kind.  Subclasses of tracedsync's classes stay
traced, since their own code expects tracedsync's behaviour.
"""

from __future__ import annotations

from tracedsync._config import settings

__all__ = ["disable", "enable", "is_enabled"]


def disable() -> None:
    """From now on, construct plain ``threading`` objects (``TRACEDSYNC=off``)."""
    settings.enabled = False


def enable() -> None:
    """From now on, construct traced objects again (the default)."""
    settings.enabled = True


def is_enabled() -> bool:
    """Whether the public classes construct traced objects."""
    return settings.enabled
