"""Hypothesis profiles: ``ci`` (reproducible, fixed budget) and ``dev`` (the default).

``CI=true`` selects ``ci``; otherwise ``HYPOTHESIS_PROFILE`` names the profile.  Both
derive from Hypothesis's ``default`` profile, not from whatever it auto-loaded for
the environment, so each means the same everywhere.
"""

from __future__ import annotations

import os

from hypothesis import settings

_base = settings.get_profile("default")
settings.register_profile(
    "ci",
    _base,
    derandomize=True,
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    database=None,
    print_blob=True,
)
settings.register_profile("dev", _base, max_examples=100, stateful_step_count=40, deadline=None)

if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
    settings.load_profile("ci")
else:
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

#: pytester runs the tests of the pytest plugin (tests/test_pytest_plugin.py).
pytest_plugins = ["pytester"]
