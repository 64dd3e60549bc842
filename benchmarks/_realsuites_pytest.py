"""pytest plugin used by ``benchmarks/real_suites.py``: one line per test phase.

Loaded with ``-p _realsuites_pytest`` (``benchmarks/`` on ``PYTHONPATH``); the
file named by ``REALSUITES_OUTCOMES`` gets ``nodeid<TAB>when<TAB>outcome``
lines, written and flushed as each phase ends, so a run stopped half-way
(status 86, a timeout) still tells which tests ran and how.
"""

from __future__ import annotations

import os
from typing import Any

_out = None


def pytest_configure(config: Any) -> None:
    global _out
    path = os.environ.get("REALSUITES_OUTCOMES")
    if path:
        _out = open(path, "a", encoding="utf-8")  # noqa: SIM115


def pytest_runtest_logreport(report: Any) -> None:
    if _out is None:
        return
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    nodeid = report.nodeid.replace("\t", " ").replace("\n", " ")
    _out.write(f"{nodeid}\t{report.when}\t{outcome}\n")
    _out.flush()


def pytest_unconfigure(config: Any) -> None:
    if _out is not None:
        _out.close()
