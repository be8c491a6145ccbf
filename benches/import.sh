#!/usr/bin/env bash
# Import rate: a gateway adopts KEYS objects of another Ferry's bucket
# (the source's entries made straight through its metadata engine with
# `ferry bench populate`, so only listing and the importing gateway's
# metadata writes are measured), then imports again with nothing changed.
#
# Usage: benches/import.sh [keys (100000)]   FERRY=path/to/ferry
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keys="${1:-100000}"
ferry="${FERRY:-$repo/target/release/ferry}"
[ -x "$ferry" ] || cargo build --release -p ferry-gateway --manifest-path "$repo/Cargo.toml"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-import.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
export FERRY_ACCESS_KEY=benchkey FERRY_SECRET_KEY=bench-secret-key FERRY_LOG=warn
export FERRY_ADMIN_TOKEN=bench-admin-token-0123

start() { # name, extra args: sets s3 and admin
    "$ferry" serve --data-dir "$work/$1" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "${@:2}" \
        >"$work/$1.out" 2>"$work/$1.err" &
    pids+=("$!")
    for _ in $(seq 300); do grep -q '^ferry ready' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
    s3="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/$1.out")"
    admin="$(sed -n 's/^ferry ready .*admin=\([^ ]*\).*/\1/p' "$work/$1.out")"
    [ -n "$s3" ] || { cat "$work/$1.err" >&2; exit 1; }
}

echo "# $keys source objects" >&2
"$ferry" bench populate --data-dir "$work/source" --bucket src --keys "$keys" --layout tree >/dev/null
start source
cat >"$work/gateway.toml" <<TOML
[stores.src]
url = "s3://src"
endpoint = "$s3"
region = "us-east-1"
access_key_id = "$FERRY_ACCESS_KEY"
secret_access_key = "$FERRY_SECRET_KEY"
allow_http = true
owned = false
TOML
start gateway --config "$work/gateway.toml"
curl -s -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$FERRY_ACCESS_KEY:$FERRY_SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$s3/mine"
for run in first unchanged; do
    t0=$(date +%s.%N)
    summary=$("$ferry" import src --to mine/imported --admin "$admin")
    t1=$(date +%s.%N)
    printf '{"bench":"import","run":"%s","keys":%d,"seconds":%.2f,"objects_per_s":%.0f,"summary":"%s"}\n' \
        "$run" "$keys" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$keys / ($t1 - $t0)" | bc -l)" "$summary"
done
