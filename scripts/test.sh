#!/usr/bin/env bash
# Install tracedsync with its test dependencies into a fresh virtual environment
# and run the whole test suite.  This is the README's test command.
#
#   bash scripts/test.sh [PYTHON] [PYTEST-ARGS...]
#
# PYTHON defaults to python3; the virtual environment is .venv-<major.minor>.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-python3}"
shift || true
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=".venv-$version"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
"$venv/bin/python" -m pytest "$@"
