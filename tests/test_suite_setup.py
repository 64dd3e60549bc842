"""The suite's own set-up: it runs from anywhere without writing there.

The suite is strict about its configuration (``--strict-config``), yet the
documented ways to keep state out of the tree must still be accepted, and
running it must not leave ``.hypothesis/`` in the directory it runs from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import PATIENCE

ROOT = Path(__file__).resolve().parent.parent


def _pytest(*arguments: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *arguments],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 3,
        cwd=cwd,
        env=env,
        check=False,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cache", ["off", "on"])
def test_cache_dir_override_is_accepted_under_strict_config(cache: str, tmp_path: Path) -> None:
    cache_dir = tmp_path / "pytest-cache"
    arguments = ["-o", f"cache_dir={cache_dir}", "-q", "tests/test_versions.py"]
    if cache == "off":
        arguments = ["-p", "no:cacheprovider", *arguments]
    result = _pytest(*arguments, cwd=ROOT, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unknown config option" not in result.stdout + result.stderr
    if cache == "on":
        assert cache_dir.is_dir()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("profile", ["dev", "ci"])
def test_hypothesis_writes_nothing_where_the_suite_runs(profile: str, tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CI", "HYPOTHESIS_STORAGE_DIRECTORY"}
    }
    env["HYPOTHESIS_PROFILE"] = profile
    result = _pytest(
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(ROOT),
        "-c",
        str(ROOT / "pyproject.toml"),
        "-q",
        str(ROOT / "tests" / "test_strategies.py") + "::test_a_correct_wrapper_passes",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / ".hypothesis").exists()
