#!/usr/bin/env bash
# Resident memory of ferry serve (release) against its configured memory
# tier: while 64 streams read a large object, and while 256 deliberately
# slow readers hold connections open.
# Usage: benches/memory.sh [object-MiB] [memory-tier-MiB] [seconds]
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
object_mib="${1:-4096}"
tier_mib="${2:-512}"
seconds="${3:-20}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-memory.XXXXXX")"
server=""
readers=()
cleanup() {
    [ "${#readers[@]}" -gt 0 ] && kill "${readers[@]}" 2>/dev/null
    [ -n "$server" ] && kill "$server" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn
cat >"$work/ferry.toml" <<TOML
[cache]
memory = "${tier_mib}MiB"
disk = "0"
TOML
"$ferry" serve --config "$work/ferry.toml" --data-dir "$work/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
server=$!
for _ in $(seq 300); do grep -q '^ferry ready' "$work/out" 2>/dev/null && break; sleep 0.1; done
endpoint=$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/out")
[ -n "$endpoint" ] || { cat "$work/err"; exit 1; }

sign=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
curl -sf -X PUT "${sign[@]}" "$endpoint/mem" >/dev/null
head -c $((object_mib * 1024 * 1024)) /dev/urandom >"$work/object"
"$repo/.venv/bin/aws" --endpoint-url "$endpoint" s3 cp --only-show-errors "$work/object" s3://mem/object
rm -f "$work/object"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
peak_while() { # seconds -> peak VmRSS in KiB while readers run
    local end=$((SECONDS + $1)) peak=0 now
    while [ $SECONDS -lt $end ]; do
        now=$(rss_kib)
        [ "$now" -gt "$peak" ] && peak=$now
        sleep 0.2
    done
    echo "$peak"
}

stop_readers() {
    kill "${readers[@]}" 2>/dev/null || true
    wait "${readers[@]}" 2>/dev/null || true
    readers=()
}
idle=$(rss_kib)
for _ in $(seq 64); do
    curl -s "${sign[@]}" -o /dev/null "$endpoint/mem/object" &
    readers+=($!)
done
fast_peak=$(peak_while "$seconds")
stop_readers

for _ in $(seq 256); do
    curl -s --limit-rate 32k "${sign[@]}" -o /dev/null "$endpoint/mem/object" &
    readers+=($!)
done
slow_peak=$(peak_while "$seconds")
stop_readers

echo "{\"bench\":\"memory\",\"object_mib\":$object_mib,\"memory_tier_mib\":$tier_mib,\"idle_rss_mib\":$((idle / 1024)),\"peak_rss_64_streams_mib\":$((fast_peak / 1024)),\"peak_rss_256_slow_readers_mib\":$((slow_peak / 1024)),\"limit_mib\":$((tier_mib + 256))}"
