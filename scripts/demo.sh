#!/usr/bin/env bash
# Install shardrun into .venv and run the demo job (a word count over a real book).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  # Debian's python3 ships venv separately.
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .

.venv/bin/shardrun run examples/wordcount/job.toml
.venv/bin/python examples/wordcount/top_words.py -n 10
