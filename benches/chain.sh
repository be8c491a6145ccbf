#!/usr/bin/env bash
# Cold read latency through a store chain whose first store is missing the
# blobs, down (port closed), black-holed (accepts, never answers), or slow
# (30 ms per request; with and without hedging), against the second store
# read directly. Each row reads its own objects once, one at a time, so
# every read goes to the stores.
#
# Usage: benches/chain.sh [reads per row (200)]   FERRY=path/to/ferry PYTHON=python-with-boto3
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
count="${1:-200}"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || { echo "needs a python with boto3 (run tests/run-e2e.sh once, or set PYTHON)" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-chain.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
export FERRY_ACCESS_KEY=benchkey FERRY_SECRET_KEY=bench-secret-key FERRY_LOG=error

start() { # name config: sets s3 and pid
    "$ferry" serve --data-dir "$work/$1" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --config "$2" \
        >"$work/$1.out" 2>"$work/$1.err" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 300); do grep -q '^ferry ready' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
    s3="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/$1.out")"
    [ -n "$s3" ] || { cat "$work/$1.err" >&2; exit 1; }
    : >"$work/$1.out"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mb() { curl -s -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$FERRY_ACCESS_KEY:$FERRY_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$1/$2"; }
s3_store() { # endpoint
    printf 'url = "s3://empty/ferry"\nendpoint = "%s"\nregion = "us-east-1"\naccess_key_id = "%s"\nsecret_access_key = "%s"\nallow_http = true\nmax_retries = 0\noptions = { timeout = "2s", connect_timeout = "1s" }\n' \
        "$1" "$FERRY_ACCESS_KEY" "$FERRY_SECRET_KEY"
}
cache='[cache]
memory = "64MiB"
disk = "0"'
rows=(direct missing down blackholed slow-hedged slow-unhedged)

# Fill: every row's objects, written to the folder store the chains end in.
printf '[stores.data]\nurl = "file://%s/blobs"\n%s\n' "$work" "$cache" >"$work/direct.toml"
start gateway "$work/direct.toml"
mb "$s3" bench
for row in "${rows[@]}"; do "$python" "$repo/benches/chain_latency.py" fill "$s3" "$row" "$count"; done
stop

# The first stores.
start origin /dev/null
origin="$s3"
mb "$origin" empty
closed="http://127.0.0.1:$(free_port)"
hole_port="$(free_port)"
"$python" -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $hole_port)); s.listen(1024); held = []
while True:
    held.append(s.accept()[0])
" &
pids+=("$!")
chain() { # first-store body, extra lines for stores.data
    printf '[stores.data]\n%s%s\nfallback = ["next"]\nattempt_timeout = "1s"\n[stores.next]\nurl = "file://%s/blobs"\nowned = false\n%s\n' \
        "$1" "$2" "$work" "$cache"
}
chain "$(s3_store "$origin")" "" >"$work/missing.toml"
chain "$(s3_store "$closed")" "" >"$work/down.toml"
chain "$(s3_store "http://127.0.0.1:$hole_port")" "" >"$work/blackholed.toml"
slow="url = \"file://$work/blobs\"
simulated_latency = \"30ms\""
chain "$slow" "" >"$work/slow-hedged.toml"
chain "$slow" "
hedge = false" >"$work/slow-unhedged.toml"

for row in "${rows[@]}"; do
    start gateway "$work/$row.toml"
    result="$("$python" "$repo/benches/chain_latency.py" read "$s3" "$row" "$count")"
    echo "{\"bench\":\"chain\",\"row\":\"$row\",${result#\{}"
    stop
done
