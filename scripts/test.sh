#!/usr/bin/env bash
# The test command: sets up what the tests need (virtualenv, Python packages, system packages)
# on a fresh machine, then runs the whole suite. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every step that can take a while says what it does first: a log that goes quiet for minutes
# reads as a hang.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "test.sh: creating the virtualenv .venv"
  "$PYTHON" -m venv .venv
fi
echo "test.sh: installing the gate and its test tooling (pip install -e '.[dev]'; about 800 MB and a few minutes on a fresh machine)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

# System packages some tests drive for real (installed only when missing).
need_apt=()
for pkg in $(cat scripts/apt-packages.txt 2>/dev/null | grep -v '^#' || true); do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing the system packages the tests drive: ${need_apt[*]} (apt-get; a minute or more)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing system packages (install them as root): ${need_apt[*]}" >&2
  fi
fi

echo "test.sh: running the tests (quick ones first; the slow groups last, under a header)"
exec .venv/bin/python -m pytest -q "$@"
