#!/usr/bin/env bash
# Run the whole test suite: installs Debian's chromium and Fashion-MNIST when missing, creates .venv,
# installs requirements-dev.txt, then runs ruff and pytest (extra arguments go to pytest).
# pytest runs in parallel processes (pytest-xdist, one per core, at most 4): most tests wait on
# subprocesses, servers or a browser, so one process leaves a core idle half the time.
# Pass `-n 0` to run in one process.
# `--quick` (first argument) runs the inner-loop tier instead: no browser, multi-worker or slow
# tests (markers set in tests/conftest.py and by hand); the full run, without it, is what CI runs.
set -euo pipefail
quick=()
if [ "${1:-}" = "--quick" ]; then
  shift
  quick=(-m "not browser and not multiworker and not slow")
fi
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/datasets/fashion-mnist ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium dataset-fashion-mnist >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -n auto --maxprocesses=4 --dist worksteal "${quick[@]}" "$@"
