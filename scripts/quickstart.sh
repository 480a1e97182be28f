#!/usr/bin/env bash
# Set up, train on the built-in digits data, then write a sample grid and a noise-to-data GIF.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
.venv/bin/ncsn train --config configs/digits.yaml "$@"
.venv/bin/ncsn sample runs/digits --n 100 --seed 0
echo "quickstart finished in $(( $(date +%s) - start )) s: see runs/digits/samples/grid.png and chain.gif"
