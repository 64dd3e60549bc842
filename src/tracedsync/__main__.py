"""The ``tracedsync`` command line (``python -m tracedsync``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tracedsync`` command; return its exit status."""
    parser = argparse.ArgumentParser(
        prog="tracedsync",
        description="Make thread synchronisation visible and checkable.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="run the classic threading teaching programs on tracedsync",
        description="Run the classic threading teaching programs on tracedsync: "
        "their output, tracedsync's diagnostics, and the self-deadlock caught instead "
        "of a hang.",
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from tracedsync._demo import run_demo

        return run_demo(sys.stdout)
    parser.error(f"unknown command {arguments.command!r}")  # pragma: no cover - argparse checks


if __name__ == "__main__":
    sys.exit(main())
