"""The bug-finding benchmark runs (smoke mode: tiny budgets, no figures checked
but that every ported bug is found by PCT and by random exploration)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import PATIENCE

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "bug_finding" / "run.py"


def test_smoke_mode_runs_and_every_bug_is_found_by_pct_and_random(tmp_path: Path) -> None:
    page = tmp_path / "bug-finding.md"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--smoke", "--output", str(page)],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 6,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [
        line
        for line in page.read_text().splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    bugs = rows[1:9]  # the results table, after its header
    assert len(bugs) == 8
    for row in bugs:
        pct, random = row.split(" | ")[1:3]
        assert "not found" not in pct and "not found" not in random, row
