#!/usr/bin/env bash
# Ferry's whole test suite: Rust unit, conformance, property and process
# tests, then the boto3/aws-cli end-to-end tests against the built binary.
# On a fresh machine it creates the Python venv and starts Redis if needed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# Redis backs the shared-metadata tests; start a throwaway one if none runs.
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if command -v redis-server >/dev/null; then
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
        for _ in $(seq 50); do
            redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
fi

echo "== building"
cargo build --workspace --locked

echo "== rust tests"
cargo test --workspace --locked

echo "== end-to-end tests (boto3, aws-cli)"
target="${CARGO_TARGET_DIR:-$repo/target}"
FERRY_BIN="$target/debug/ferry" tests/run-e2e.sh "$@"
