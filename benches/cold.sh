#!/usr/bin/env bash
# Cold reads from a local folder: nginx (sendfile) against Ferry over a
# file:// store, each after dropping the page cache (root only) and, for
# Ferry, with an empty block cache and a fresh process. Measures the first
# safetensors header (bytes 0-7, then the JSON header) and 8x8 MiB parallel
# ranges of the whole object. Prints one JSON line per run. Before each
# drop, each server reads a small other object once, so its code is paged
# in: what is cold is the data.
# Usage: benches/cold.sh [object-MiB (1024)] [runs (3)]
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mib="${1:-1024}"
runs="${2:-3}"
[ -w /proc/sys/vm/drop_caches ] || { echo "cold.sh needs root to drop the page cache" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-cold.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn
# Drops the page cache, then reads the ferry binary back in: the bench
# client is that binary too, and its S3 client code (not mapped by any
# running process) would otherwise be faulted in from disk inside the
# first timed request of the Ferry rows only.
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; cat "$ferry" >/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A safetensors-shaped object: 8-byte header length, JSON header, data.
make_object() { python3 "$repo/benches/safetensors.py" "$@"; } # path, MiB
make_object "$work/model.safetensors" "$mib"
# A second, small object read once before each measurement, after the
# server started and before the page cache is dropped: it pages in the
# server's code for the read path, so the measurement is of cold data
# behind a running server (as in production), not of a cold binary.
make_object "$work/warmup.safetensors" 8

# nginx over the file.
port=$(free_port)
mkdir -p "$work/nginx/www" "$work/nginx/tmp"
chmod a+rx "$work" "$work/nginx" "$work/nginx/www"
ln "$work/model.safetensors" "$work/nginx/www/model.safetensors"
ln "$work/warmup.safetensors" "$work/nginx/www/warmup.safetensors"
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nodelay on; client_body_temp_path $work/nginx/tmp;
       server { listen 127.0.0.1:$port; root $work/nginx/www; } }
CONF
"$(command -v nginx || echo /usr/sbin/nginx)" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
for run in $(seq "$runs"); do
    for workload in safetensors parallel; do
        "$bench_bin" read --http-url "http://127.0.0.1:$port/warmup.safetensors" \
            --workloads safetensors --count 1 >/dev/null
        drop
        "$bench_bin" read --label nginx-cold --http-url "http://127.0.0.1:$port/model.safetensors" \
            --workloads "$workload" --count 1 --seconds 30
    done
done
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

# Ferry over a file:// store holding the same bytes.
start_ferry() {
    "$ferry" serve --data-dir "$work/ferry" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$work/ferry.out" 2>"$work/ferry.err" &
    ferry_pid=$!
    pids=("$ferry_pid")
    for _ in $(seq 300); do grep -q '^ferry ready' "$work/ferry.out" 2>/dev/null && break; sleep 0.05; done
    endpoint=$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/ferry.out")
    [ -n "$endpoint" ] || { cat "$work/ferry.err" >&2; exit 1; }
}
stop_ferry() { kill "$ferry_pid"; wait "$ferry_pid" 2>/dev/null || true; pids=(); }
start_ferry
curl -sf -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$endpoint/models" >/dev/null
"$repo/.venv/bin/aws" --endpoint-url "$endpoint" s3 cp --only-show-errors "$work/model.safetensors" s3://models/model.safetensors
"$repo/.venv/bin/aws" --endpoint-url "$endpoint" s3 cp --only-show-errors "$work/warmup.safetensors" s3://models/warmup.safetensors
stop_ferry
for run in $(seq "$runs"); do
    for workload in safetensors parallel; do
        rm -rf "$work/ferry/cache"
        start_ferry
        "$bench_bin" read --endpoint "$endpoint" --bucket models --key warmup.safetensors \
            --workloads safetensors --count 1 >/dev/null
        drop
        "$bench_bin" read --label ferry-cold-local --endpoint "$endpoint" --bucket models --key model.safetensors \
            --workloads "$workload" --count 1 --seconds 30
        stop_ferry
    done
done
