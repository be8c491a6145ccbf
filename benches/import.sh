#!/usr/bin/env bash
# Import rate: a gateway adopts KEYS objects of another Ferry's bucket
# (the source's entries made straight through its metadata engine with
# `ferry-bench populate`, so only listing and the importing gateway's
# metadata writes are measured), then imports again with nothing changed.
#
# With SOURCE=s3s-fs the source is an independent S3 server (s3s-fs, as
# built by tests/run.sh into .tools/) filled with KEYS 1 KiB objects
# through its S3 API (`ferry-bench put`), since it hashes files placed in
# its folder by hand on every request.
#
# Usage: [SOURCE=ferry|s3s-fs] benches/import.sh [keys (100000)]   FERRY=path/to/ferry
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
keys="${1:-100000}"
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

mb() { curl -s -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$FERRY_ACCESS_KEY:$FERRY_SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$1/$2"; }
echo "# $keys source objects in ${SOURCE:-ferry}" >&2
case "${SOURCE:-ferry}" in
ferry)
    "$bench_bin" populate --data-dir "$work/source" --bucket src --keys "$keys" --layout tree >/dev/null
    start source
    ;;
s3s-fs)
    s3s_fs="${S3S_FS:-$repo/.tools/bin/s3s-fs}"
    [ -x "$s3s_fs" ] || { echo "s3s-fs not found at $s3s_fs (tests/run.sh builds it)" >&2; exit 1; }
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$work/s3s-root"
    "$s3s_fs" --host 127.0.0.1 --port "$port" --access-key "$FERRY_ACCESS_KEY" --secret-key "$FERRY_SECRET_KEY" \
        "$work/s3s-root" >"$work/s3s.out" 2>&1 &
    pids+=("$!")
    s3="http://127.0.0.1:$port"
    for _ in $(seq 100); do curl -s -o /dev/null "$s3" && break; sleep 0.1; done
    mb "$s3" src
    "$bench_bin" put --endpoint "$s3" --bucket src --access-key "$FERRY_ACCESS_KEY" \
        --secret-key "$FERRY_SECRET_KEY" --size 1024 --count "$keys" --concurrency 32 >&2
    ;;
*) echo "SOURCE must be ferry or s3s-fs" >&2; exit 1 ;;
esac
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
mb "$s3" mine
for run in first unchanged; do
    t0=$(date +%s.%N)
    summary=$("$ferry" import src --to mine/imported --admin "$admin")
    t1=$(date +%s.%N)
    printf '{"bench":"import","source":"%s","run":"%s","keys":%d,"seconds":%.2f,"objects_per_s":%.0f,"summary":"%s"}\n' \
        "${SOURCE:-ferry}" "$run" "$keys" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$keys / ($t1 - $t0)" | bc -l)" "$summary"
done
