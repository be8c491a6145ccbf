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

# Debian packages some tests need, installed when missing (needs root and
# apt): `debian_package PACKAGE FILE WHY` installs PACKAGE unless FILE exists.
debian_package() {
    [ -e "$2" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing $1 (Debian) for $3"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "$1" >/dev/null 2>&1 ||
            { apt-get update >/dev/null && apt-get install -y --no-install-recommends "$1" >/dev/null; } || {
            echo "tests/run.sh: could not install $1 (apt-get install $1)" >&2
            exit 1
        }
    else
        echo "tests/run.sh: $1 is missing; install it (Debian: apt-get install $1)" >&2
        exit 1
    fi
}
# Chromium: the status page's browser test (gateway/tests/status.rs) draws
# the page in it.
command -v chromium >/dev/null || debian_package chromium /usr/bin/chromium "the status page's browser test"
# libfiu: the fault matrix (gateway/tests/faults/) fails a node's disk
# through it; the matrix also mounts a tmpfs (a full disk), which needs root.
debian_package fiu-utils /usr/lib/fiu/fiu_posix_preload.so "the fault matrix's failing disk"
if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: run it as root: the fault matrix (gateway/tests/faults/) mounts a tmpfs for its full-disk fault" >&2
    exit 1
fi

# s3s-fs: an independent S3 server, the origin of gateway/tests/s3_origin.rs.
# Built once into .tools/ (gitignored); the test fails without it.
s3s_fs="$repo/.tools/bin/s3s-fs"
if [ ! -x "$s3s_fs" ]; then
    echo "== installing s3s-fs 0.14.1 into .tools/ (once; a few minutes)"
    cargo install --locked s3s-fs@0.14.1 --features binary --root "$repo/.tools" || {
        echo "tests/run.sh: could not install s3s-fs into $repo/.tools (needs crates.io)" >&2
        exit 1
    }
fi
export FERRY_TEST_S3S_FS="$s3s_fs"

echo "== building"
cargo build --workspace --locked

echo "== rust tests"
cargo test --workspace --locked

echo "== end-to-end tests (boto3, aws-cli)"
target="${CARGO_TARGET_DIR:-$repo/target}"
FERRY_BIN="$target/debug/ferry" tests/run-e2e.sh "$@"

echo "== fuzzing (each target's corpus, then 60 s of fuzzing in all)"
tests/fuzz.sh
