"""``python -m tracedsync``: the command line (:mod:`tracedsync._cli.main`)."""

from __future__ import annotations

import sys

from tracedsync._cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
