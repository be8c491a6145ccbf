#!/usr/bin/env bash
# The peer path of two builds, interleaved: for each build a two-node
# cluster on loopback (a owns every block and keeps it in memory; b owns
# nothing and keeps 64 MiB), one object streamed through a (local hits)
# and through b (every block a peer hit), build A then build B in each
# round. Prints each build's medians and B/A. Plain HTTP between the
# nodes, so a build that authenticates peer answers pays for its MAC.
#
# Usage: benches/peer-ab.sh FERRY_A FERRY_B [rounds (3)] [object-MiB (512)]
# WORKLOADS=stream,random256k,random4m,parallel picks `ferry-bench read`
# workloads (default: stream; random ones run 16 at once); each row also
# shows the far node's peer bytes received per byte served.
# With PEER_AB_PERF=DIR, each build's far streams are also recorded by
# `perf record` (both nodes, call graphs by DWARF) into DIR/{a,b}.data.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
a="${1:?build A (a ferry binary)}"
b="${2:?build B (a ferry binary)}"
rounds="${3:-3}"
mib="${4:-512}"
venv="$repo/.venv"
[ -x "$venv/bin/aws" ] || { echo "needs aws-cli in .venv (run tests/run-e2e.sh once)" >&2; exit 1; }
redis-cli ping >/dev/null

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-peer-ab.XXXXXX")"
run="peerab$$"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    redis-cli --scan --pattern "*$run*" | xargs -r redis-cli del >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn
head -c $((mib << 20)) /dev/urandom >"$work/big"
results="$work/results.jsonl"
: >"$results"

declare -A s3 pid admin
workloads="${WORKLOADS:-stream}"
node() { # side id weight memory: starts a node of side's cluster
    local side=$1 id=$2 weight=$3 memory=$4 binary dir="$work/$1-$2"
    if [ "$side" = a ]; then binary=$a; else binary=$b; fi
    mkdir -p "$dir"
    cat >"$dir.toml" <<TOML
[meta]
engine = "redis://127.0.0.1:6379/0"
redis_prefix = "$run-$side"
allow_volatile_redis = true
[stores.data]
url = "file://$work/store-$side"
[cache]
memory = "$memory"
disk = "0"
[cluster]
node_id = "$id"
name = "$run-$side"
peer_listen = "127.0.0.1:0"
weight = $weight
secret = "bench-cluster-secret-0123"
membership = "redis://127.0.0.1:6379/0"
TOML
    "$binary" serve --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --config "$dir.toml" >"$dir.out" 2>"$dir.err" &
    pid[$side$id]=$!
    pids+=("$!")
    for _ in $(seq 300); do
        grep -q '^ferry ready' "$dir.out" 2>/dev/null && break
        sleep 0.1
    done
    s3[$side$id]="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$dir.out")"
    admin[$side$id]="$(sed -n 's/^ferry ready .*admin=\([^ ]*\).*/\1/p' "$dir.out")"
    [ -n "${s3[$side$id]}" ] || { cat "$dir.err" >&2; exit 1; }
}

for side in a b; do
    node "$side" own 100 "$((mib + 512))MiB"
    node "$side" far 0 "64MiB"
    "$venv/bin/aws" --endpoint-url "${s3[${side}own]}" s3 mb s3://models >/dev/null
    "$venv/bin/aws" --endpoint-url "${s3[${side}own]}" s3 cp --only-show-errors "$work/big" s3://models/big
    # Membership settles within a heartbeat; a first pass through the far
    # node loads every block into the owner.
    "$bench_bin" read --endpoint "${s3[${side}own]}" --bucket models --key big --workloads stream >/dev/null
    for _ in $(seq 50); do
        "$bench_bin" read --endpoint "${s3[${side}far]}" --bucket models --key big --workloads stream >/dev/null && break
        sleep 0.1
    done
done

for round in $(seq "$rounds"); do
    for side in a b; do
        for where in own far; do
            echo "# round $round, build $side, $where" >&2
            recorder=""
            if [ -n "${PEER_AB_PERF:-}" ] && [ "$where" = far ] && [ "$round" = 1 ]; then
                mkdir -p "$PEER_AB_PERF"
                perf record -q -F 499 --call-graph dwarf,16384 -o "$PEER_AB_PERF/$side.data" \
                    -p "${pid[${side}own]},${pid[${side}far]}" 2>/dev/null &
                recorder=$!
                sleep 0.5 # perf attaches before the stream starts
            fi
            "$bench_bin" read --label "$side:$where" --endpoint "${s3[$side$where]}" --bucket models --key big \
                --workloads "$workloads" --random-concurrency 16 --seconds 5 \
                --metrics-url "${admin[${side}far]}/metrics" --metric ferry_peer_bytes_received_total \
                --server-pid "${pid[${side}own]}" --server-pid "${pid[${side}far]}" >>"$results"
            if [ -n "$recorder" ]; then kill -INT "$recorder"; wait "$recorder" || true; fi
        done
    done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    side, where = r["label"].split(":")
    row = rows.setdefault((where, r["workload"]), {})
    row.setdefault(side, []).append(r.get("gb_per_s") or 0.0)
    if r.get("server_cpu_s_per_gb") is not None:
        row.setdefault("cpu_" + side, []).append(r["server_cpu_s_per_gb"])
    peer = (r.get("metrics") or {}).get("ferry_peer_bytes_received_total")
    if where == "far" and peer is not None and r.get("bytes"):
        row.setdefault("peer_" + side, []).append(peer / r["bytes"])
def med(row, key, fmt):
    return fmt.format(statistics.median(row[key])) if row.get(key) else "-"
print(f"{'via':4} {'workload':11} {'A GB/s':>8} {'B GB/s':>8} {'B/A':>6}  {'cpu s/GB A':>10} {'B':>6}  {'peer/served A':>13} {'B':>6}")
for (where, workload), v in rows.items():
    ma, mb = statistics.median(v["a"]), statistics.median(v["b"])
    ratio = f"{mb / ma:6.3f}" if ma else "     -"
    print(f"{where:4} {workload:11} {ma:8.3f} {mb:8.3f} {ratio}  {med(v, 'cpu_a', '{:.3f}'):>10} {med(v, 'cpu_b', '{:.3f}'):>6}  {med(v, 'peer_a', '{:.2f}'):>13} {med(v, 'peer_b', '{:.2f}'):>6}")
PY
