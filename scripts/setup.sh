#!/usr/bin/env bash
# Create .venv and install ncsn with its test tools. torch is pinned to the CPU build 2.13.0
# (a plain `torch` requirement would pull a multi-GB CUDA build); on a GPU machine install the
# torch build you want first and this script leaves it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
fi
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
