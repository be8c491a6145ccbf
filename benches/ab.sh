#!/usr/bin/env bash
# Two builds of Ferry side by side, interleaved: for each round and each
# configuration, the same `ferry-bench read` workloads run against build A,
# then build B, so drift of this shared machine hits both alike. Prints,
# per configuration and workload, each build's median over the rounds and
# B's ratio to A (throughput: B/A, higher is better; latency: B/A, lower
# is better).
#
# Usage: benches/ab.sh FERRY_A FERRY_B [rounds (3)] [object-MiB (256)] [seconds per random run (3)]
#   CONFIGS="warm disk off"   memory hits, disk-tier hits, cache off
#   WORKLOADS=head,safetensors   only these `ferry-bench read` workloads
#   RESULTS=file              keep the JSON lines
#   EXTRA_A=toml, EXTRA_B=toml  lines added to side A's or B's config (the
#                             same binary twice with and without a setting)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
a="${1:?build A (a ferry binary)}"
b="${2:?build B (a ferry binary)}"
rounds="${3:-3}"
mib="${4:-256}"
seconds="${5:-3}"
configs="${CONFIGS:-warm disk off}"
workloads="${WORKLOADS:-stream,parallel,random256k,random4m,head,safetensors}"
venv="$repo/.venv"
[ -x "$venv/bin/aws" ] || { echo "needs aws-cli in .venv (run tests/run-e2e.sh once)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-ab.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn
results="${RESULTS:-$work/results.jsonl}"
: >"$results"
python3 "$repo/benches/safetensors.py" "$work/model.safetensors" "$mib"

config_toml() { # config name -> the [cache] section
    case $1 in
    warm) printf '[cache]\nmemory = "%sMiB"\n' "$((mib * 2 + 256))" ;;
    disk) printf '[cache]\nmemory = "32MiB"\ndisk = "%sMiB"\n' "$((mib * 2 + 1024))" ;;
    off) printf '[cache]\nmemory = "0"\ndisk = "0"\n' ;;
    esac
}

# server label binary config: starts it, uploads and reads the object once;
# sets s3 and pid.
start() {
    local label=$1 binary=$2 config=$3 dir=$work/$1
    mkdir -p "$dir"
    config_toml "$config" >"$dir.toml"
    case $label in
    a-*) printf '%s\n' "${EXTRA_A:-}" >>"$dir.toml" ;;
    b-*) printf '%s\n' "${EXTRA_B:-}" >>"$dir.toml" ;;
    esac
    "$binary" serve --config "$dir.toml" --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        >"$dir.out" 2>"$dir.err" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 300); do
        grep -q '^ferry ready' "$dir.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { cat "$dir.err" >&2; return 1; }
        sleep 0.1
    done
    s3="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$dir.out")"
    "$venv/bin/aws" --endpoint-url "$s3" s3 mb s3://models >/dev/null
    "$venv/bin/aws" --endpoint-url "$s3" s3 cp --only-show-errors "$work/model.safetensors" s3://models/model.safetensors
    "$bench_bin" read --endpoint "$s3" --bucket models --key model.safetensors --workloads stream >/dev/null
}

for config in $configs; do
    start "a-$config" "$a" "$config"
    a_s3=$s3 a_pid=$pid
    start "b-$config" "$b" "$config"
    b_s3=$s3 b_pid=$pid
    for round in $(seq "$rounds"); do
        for side in a b; do
            if [ $side = a ]; then s3=$a_s3 pid=$a_pid; else s3=$b_s3 pid=$b_pid; fi
            echo "# round $round, $config, build $side" >&2
            "$bench_bin" read --label "$side:$config" --endpoint "$s3" --bucket models --key model.safetensors \
                --workloads "$workloads" --random-concurrency 16 --seconds "$seconds" --server-pid "$pid" \
                >>"$results"
        done
    done
    kill "$a_pid" "$b_pid" 2>/dev/null || true
    wait "$a_pid" "$b_pid" 2>/dev/null || true
    rm -rf "$work/a-$config" "$work/b-$config"
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    side, config = r["label"].split(":")
    w = r["workload"]
    if w in ("head", "safetensors"):
        value, unit, higher = r.get("p50_ms"), "p50 ms", False
    elif w.startswith("random"):
        value, unit, higher = r.get("ops_per_s"), "ops/s", True
    else:
        value, unit, higher = r.get("gb_per_s"), "GB/s", True
    cpu = r.get("server_cpu_s_per_gb")
    rows.setdefault((config, w, unit, higher), {"a": [], "b": [], "cpu_a": [], "cpu_b": []})
    rows[(config, w, unit, higher)][side].append(value)
    if cpu is not None:
        rows[(config, w, unit, higher)]["cpu_" + side].append(cpu)
print(f"{'config':6} {'workload':12} {'unit':7} {'A median':>10} {'B median':>10} {'B/A':>6}  {'cpu s/GB A':>10} {'B':>6}")
for (config, w, unit, higher), v in rows.items():
    ma, mb = statistics.median(v["a"]), statistics.median(v["b"])
    ratio = mb / ma if ma else float("nan")
    ca = f"{statistics.median(v['cpu_a']):.3f}" if v["cpu_a"] else "-"
    cb = f"{statistics.median(v['cpu_b']):.3f}" if v["cpu_b"] else "-"
    flag = ""
    if (higher and ratio < 0.95) or (not higher and ratio > 1.05):
        flag = "  <- worse than 5%"
    print(f"{config:6} {w:12} {unit:7} {ma:10.3f} {mb:10.3f} {ratio:6.3f}  {ca:>10} {cb:>6}{flag}")
PY
