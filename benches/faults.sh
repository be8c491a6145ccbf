#!/usr/bin/env bash
# The fault matrix's long form: gateway/tests/faults/ on a release
# build, with the load running SECONDS (default 20) before and after each
# fault. Prints the matrix and writes it to bench-data/faults.md.
#
# Usage: benches/faults.sh [SECONDS]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
seconds="${1:-20}"
s3s_fs="$repo/.tools/bin/s3s-fs"
[ -x "$s3s_fs" ] || { echo "needs s3s-fs in .tools (run tests/run.sh once)" >&2; exit 1; }
mkdir -p bench-data
FERRY_TEST_S3S_FS="$s3s_fs" FERRY_FAULT_SECONDS="$seconds" \
    FERRY_FAULT_REPORT="$repo/bench-data/faults.md" \
    cargo test --release --locked -p ferry-gateway --test faults -- --nocapture
echo "== the matrix is in bench-data/faults.md"
