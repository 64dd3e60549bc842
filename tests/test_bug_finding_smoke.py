"""The bug-finding benchmark runs (smoke mode: tiny budgets, no figures checked
but that every classic bug is found by PCT and by random exploration, and that
no strategy reports a failure on a correct program)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import PATIENCE

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "bug_finding" / "run.py"


@pytest.mark.timeout(PATIENCE * 16)
def test_smoke_mode_runs_and_every_classic_bug_is_found_by_pct_and_random(
    tmp_path: Path,
) -> None:
    page = tmp_path / "bug-finding.md"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--smoke", "--output", str(page)],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 15,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [
        line
        for line in page.read_text().splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    bugs = rows[1:17]  # the results table, after its header
    assert len(bugs) == 16
    for row in bugs[:8]:  # the classic ones; the ported ones need more runs
        pct, random = row.split(" | ")[1:3]
        assert "not found" not in pct and "not found" not in random, row
    correct = rows[18:22]  # the correct programs, after their header
    assert len(correct) == 4
    for row in correct:
        reports = row.split(" | ")[1:5]
        assert all(report.startswith("nothing") for report in reports), row
        assert "complete after" in reports[3], row  # DPOR proves each correct
