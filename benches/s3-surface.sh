#!/usr/bin/env bash
# Measures the S3 surface of a release build on this machine:
#   - ListObjectsV2 paging over N keys in one directory, and a walk of a tree
#     of N keys with delimiter '/';
#   - PUT rate of 4 KiB objects at concurrency 16;
#   - aws-cli multipart upload and download of a large file.
# Usage: benches/s3-surface.sh [keys] [multipart-size-MiB]
# Prints one JSON line per measurement; BENCHMARKS.md records the results.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
keys="${1:-1000000}"
mp_mib="${2:-4096}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn

start() {
    "$ferry" serve --data-dir "$work/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
    server=$!
    for _ in $(seq 300); do
        grep -q '^ferry ready' "$work/out" 2>/dev/null && break
        sleep 0.1
    done
    endpoint="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/out")"
    [ -n "$endpoint" ] || { cat "$work/err"; exit 1; }
}
stop() { kill "$server"; wait "$server" || true; server=""; }

echo "# populating $keys keys (flat and tree) through the metadata engine" >&2
"$bench_bin" populate --data-dir "$work/data" --bucket flat --keys "$keys" --layout flat
"$bench_bin" populate --data-dir "$work/data" --bucket tree --keys "$keys" --layout tree

start
"$bench_bin" list --endpoint "$endpoint" --bucket flat
"$bench_bin" list --endpoint "$endpoint" --bucket tree --walk
"$bench_bin" put --endpoint "$endpoint" --bucket flat --size 4096 --count 5000 --concurrency 16

aws="$repo/.venv/bin/aws"
if [ -x "$aws" ]; then
    head -c $((mp_mib * 1024 * 1024)) /dev/urandom >"$work/big.bin"
    t0=$(date +%s.%N)
    "$aws" --endpoint-url "$endpoint" s3 cp --only-show-errors "$work/big.bin" s3://flat/big.bin
    t1=$(date +%s.%N)
    "$aws" --endpoint-url "$endpoint" s3 cp --only-show-errors s3://flat/big.bin "$work/back.bin"
    t2=$(date +%s.%N)
    cmp -s "$work/big.bin" "$work/back.bin" || { echo "multipart round trip differs" >&2; exit 1; }
    python3 - "$mp_mib" "$t0" "$t1" "$t2" <<'PY'
import sys
mib, t0, t1, t2 = int(sys.argv[1]), *map(float, sys.argv[2:])
print('{"bench":"awscli-multipart","mib":%d,"upload_s":%.2f,"upload_mib_s":%.0f,"download_s":%.2f,"download_mib_s":%.0f}'
      % (mib, t1 - t0, mib / (t1 - t0), t2 - t1, mib / (t2 - t1)))
PY
fi
stop
