#!/usr/bin/env bash
# Mirror regions: lag of the mirror's namespace under a steady write load
# on the source, and replication throughput (blobs copied from the
# source's store into the mirror's). The source's store is another Ferry
# over a folder (a real S3 server); the mirror has its own folder store
# and falls back to the source's.
#
# Usage: benches/mirror.sh [rate (200)] [seconds (20)] [replicate MiB (1024)]
#        FERRY=path/to/ferry PYTHON=python-with-boto3
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rate="${1:-200}"
seconds="${2:-20}"
replicate_mib="${3:-1024}"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || { echo "needs a python with boto3 (run tests/run-e2e.sh once, or set PYTHON)" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-mirror.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
export FERRY_ACCESS_KEY=benchkey FERRY_SECRET_KEY=bench-secret-key FERRY_LOG=warn
export FERRY_FEED_SECRET=bench-feed-secret-0123456789

start() { # name, extra args: sets s3, admin and pid
    "$ferry" serve --data-dir "$work/$1" --listen 127.0.0.1:0 --admin-listen "${ADMIN_LISTEN:-127.0.0.1:0}" "${@:2}" \
        >"$work/$1.out" 2>"$work/$1.err" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 300); do grep -q '^ferry ready' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
    s3="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/$1.out")"
    admin="$(sed -n 's/^ferry ready .*admin=\([^ ]*\).*/\1/p' "$work/$1.out")"
    [ -n "$s3" ] || { cat "$work/$1.err" >&2; exit 1; }
    : >"$work/$1.out"
}
mb() { curl -s -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$FERRY_ACCESS_KEY:$FERRY_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$1/$2"; }
metric() { curl -s "$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%.0f", s}'; }

start origin
origin="$s3"
mb "$origin" central
store="url = \"s3://central/ferry\"
endpoint = \"$origin\"
region = \"us-east-1\"
access_key_id = \"$FERRY_ACCESS_KEY\"
secret_access_key = \"$FERRY_SECRET_KEY\"
allow_http = true"
printf '[stores.data]\n%s\n[region]\nname = "central"\n' "$store" >"$work/source.toml"
start source --config "$work/source.toml"
source="$s3" source_admin="$admin"
mb "$source" bench
printf '[stores.data]\nurl = "file://%s/edge-blobs"\nfallback = ["central"]\n[stores.central]\n%s\nowned = false\n[region]\nname = "edge-1"\nfollow = "%s"\nreplication_concurrency = 8\n' \
    "$work" "$store" "$source_admin" >"$work/mirror.toml"
start mirror --config "$work/mirror.toml"
mirror="$s3" mirror_admin="$admin" mirror_pid="$pid"

echo "# mirror lag at $rate PUT/s for $seconds s" >&2
"$python" "$repo/benches/mirror_lag.py" lag "$source" "$mirror" "$rate" "$seconds"

echo "# replication of $replicate_mib MiB in 64 MiB objects (mirror stopped while they are written)" >&2
kill "$mirror_pid"; wait "$mirror_pid" 2>/dev/null || true
head -c $((64 << 20)) /dev/urandom >"$work/blob"
for i in $(seq 1 $((replicate_mib / 64))); do
    curl -s -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$FERRY_ACCESS_KEY:$FERRY_SECRET_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$work/blob" "$source/bench/big/$i.bin"
done
t0=$(date +%s.%N)
start mirror --config "$work/mirror.toml"
mirror_admin="$admin"
want=$((replicate_mib / 64 * (64 << 20)))
for _ in $(seq 6000); do
    [ "$(metric "$mirror_admin" ferry_replication_bytes_total)" -ge "$want" ] && break
    sleep 0.05
done
t1=$(date +%s.%N)
copied="$(metric "$mirror_admin" ferry_replication_bytes_total)"
printf '{"bench":"replication","mib":%d,"copied_bytes":%s,"seconds":%.2f,"mib_per_s":%.0f}\n' \
    "$replicate_mib" "$copied" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$copied / 1048576 / ($t1 - $t0)" | bc -l)"
