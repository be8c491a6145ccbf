#!/usr/bin/env bash
# Runs Ferry's Python end-to-end tests against an already built binary.
# FERRY_BIN names the binary (default: target/debug/ferry). This script never
# builds Rust; extra arguments go to pytest (e.g. -k listing, -x).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt

export FERRY_BIN="${FERRY_BIN:-$repo/target/debug/ferry}"
if [ ! -x "$FERRY_BIN" ]; then
    echo "run-e2e: ferry binary not found at $FERRY_BIN (build it first or set FERRY_BIN)" >&2
    exit 1
fi

exec .venv/bin/pytest -q tests/e2e "$@"
