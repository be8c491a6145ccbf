#!/usr/bin/env bash
# The cache cluster on loopback: `ferry serve` nodes sharing one data store
# that delays every request by 20 ms (a distant object store), with
# metadata and membership in the local Redis. Every row runs in one go,
# so ratios compare like with like on this (noisy, 2-core) machine.
#
#   stream-owner   a warm object streamed through its only owner (local hits)
#   stream-peer    the same object through a node that owns none of it and
#                  whose memory cannot keep it (every block a peer hit);
#                  target >= 0.8x stream-owner
#   cold-3         one cold object read through three nodes at once:
#                  store bytes / object, target 1.00
#   herd           HERD readers spread over the three nodes, cold: store
#                  bytes / object, target 1.00
#   warmup         `ferry warmup` of a prefix of WARM_MIB MiB (16 objects): rate
#   load-cold /    a 3-shard safetensors model loaded the way loaders do
#   load-warm-open (header length, header, then 16 MiB tensor ranges in
#                  order), cold, without and with warm_on_open
#
# Usage: benches/cluster.sh [object-MiB (1024)] [herd-object-MiB (64)]
#   HERD=256 readers   WARM_MIB=2048   SHARD_MIB=256   FERRY=path/to/ferry
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mib="${1:-1024}"
herd_mib="${2:-64}"
herd="${HERD:-256}"
warm_mib="${WARM_MIB:-2048}"
shard_mib="${SHARD_MIB:-256}"
venv="$repo/.venv"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q boto3 awscli; }
redis-cli ping >/dev/null

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-cluster.XXXXXX")"
run="bench$$"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    redis-cli --scan --pattern "*$run*" | xargs -r redis-cli del >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "== $*" >&2; }

export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn
export FERRY_ADMIN_TOKEN=bench-admin-token-0123
mkdir -p "$work/store"

declare -A s3 admin pid
node() { # cluster id weight memory [extra [cache] lines]: starts a node
    local cluster=$1 id=$2 weight=$3 memory=$4 extra=${5:-}
    local dir="$work/$cluster-$id"
    mkdir -p "$dir"
    cat >"$dir.toml" <<TOML
[server]
shutdown_grace = "1s"
[meta]
engine = "redis://127.0.0.1:6379/0"
redis_prefix = "$run-$cluster"
allow_volatile_redis = true
[stores.data]
url = "file://$work/store"
simulated_latency = "20ms"
[cache]
memory = "$memory"
disk = "0"
$extra
[cluster]
node_id = "$id"
name = "$run-$cluster"
peer_listen = "127.0.0.1:0"
weight = $weight
secret = "bench-cluster-secret-0123"
membership = "redis://127.0.0.1:6379/0"
[admin]
token = "$FERRY_ADMIN_TOKEN"
TOML
    "$ferry" serve --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --config "$dir.toml" >"$dir.out" 2>"$dir.err" &
    pid[$id]=$!
    pids+=("$!")
    for _ in $(seq 300); do
        grep -q '^ferry ready' "$dir.out" 2>/dev/null && break
        sleep 0.1
    done
    s3[$id]="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$dir.out")"
    admin[$id]="$(sed -n 's/^ferry ready .*admin=\([^ ]*\).*/\1/p' "$dir.out")"
    [ -n "${s3[$id]}" ] || { cat "$dir.err" >&2; exit 1; }
}
members() { # admin: how many members it sees
    curl -s "$1/cluster/status" | "$venv/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)["members"]))'
}
wait_members() { # n, then node ids
    local n=$1 id
    shift
    for id in "$@"; do
        for _ in $(seq 100); do [ "$(members "${admin[$id]}")" = "$n" ] && break; sleep 0.1; done
    done
}
stop_all() {
    local p
    for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
    pid=()
}
store_bytes() { # node ids: the store bytes they read, summed
    local id total=0 v
    for id in "$@"; do
        v=$(curl -s "${admin[$id]}/metrics" | awk '/^ferry_store_bytes_read_total/ {s+=$2} END {printf "%d", s}')
        total=$((total + v))
    done
    echo "$total"
}
aws_() { "$venv/bin/aws" --endpoint-url "$1" "${@:2}"; }

say "objects: ${mib} MiB stream, ${herd_mib} MiB herd"
head -c $((mib << 20)) /dev/urandom >"$work/big"
head -c $((herd_mib << 20)) /dev/urandom >"$work/herd"

# --- stream through the owner and through a node that owns nothing ----------
say "stream: one owner (a), a node that owns nothing (b, memory 64 MiB)"
node s a 100 "$((mib + 512))MiB"
node s b 0 "64MiB"
wait_members 2 a b
aws_ "${s3[a]}" s3 mb s3://models >/dev/null
aws_ "${s3[a]}" s3 cp --only-show-errors "$work/big" s3://models/big
bench() { # node label: one streaming pass
    "$bench_bin" read --endpoint "${s3[$1]}" --bucket models --key big --workloads stream \
        --server-pid "${pid[a]}" --server-pid "${pid[b]}" --label "$2"
}
bench a warmup-pass >/dev/null
for round in 1 2 3; do
    bench a "stream-owner-$round"
    bench b "stream-peer-$round"
done
stop_all

# --- cold: three nodes at once, and a herd ---------------------------------
say "cold reads over the 20 ms store, weights 100/200/300"
node c n1 100 "1GiB"
node c n2 200 "1GiB"
node c n3 300 "1GiB"
wait_members 3 n1 n2 n3
aws_ "${s3[n1]}" s3 mb s3://models >/dev/null
aws_ "${s3[n1]}" s3 cp --only-show-errors "$work/herd" s3://models/cold3
aws_ "${s3[n1]}" s3 cp --only-show-errors "$work/herd" s3://models/herd
before=$(store_bytes n1 n2 n3)
start=$(date +%s.%N)
jobs_=()
for id in n1 n2 n3; do
    aws_ "${s3[$id]}" s3 cp --only-show-errors s3://models/cold3 "$work/out-$id" &
    jobs_+=("$!")
done
wait "${jobs_[@]}"
end=$(date +%s.%N)
for id in n1 n2 n3; do cmp -s "$work/herd" "$work/out-$id" || { say "cold-3: $id read wrong bytes"; exit 1; }; done
after=$(store_bytes n1 n2 n3)
printf '{"bench":"cluster","row":"cold-3","object_bytes":%d,"store_bytes":%d,"store_ratio":%.3f,"seconds":%.2f}\n' \
    $((herd_mib << 20)) $((after - before)) "$(echo "($after - $before) / ($herd_mib * 1048576)" | bc -l)" \
    "$(echo "$end - $start" | bc -l)"
before=$(store_bytes n1 n2 n3)
share=$((herd / 3))
jobs_=()
for id in n1 n2 n3; do
    "$bench_bin" read --endpoint "${s3[$id]}" --bucket models --key herd --workloads herd \
        --herd "$share" --label "herd-$id" >"$work/herd-$id.json" &
    jobs_+=("$!")
done
wait "${jobs_[@]}"
after=$(store_bytes n1 n2 n3)
cat "$work"/herd-*.json
printf '{"bench":"cluster","row":"herd","readers":%d,"object_bytes":%d,"store_bytes":%d,"store_ratio":%.3f}\n' \
    $((share * 3)) $((herd_mib << 20)) $((after - before)) "$(echo "($after - $before) / ($herd_mib * 1048576)" | bc -l)"

# --- warm-up of a prefix ---------------------------------------------------
say "warm-up of a ${warm_mib} MiB prefix (16 objects)"
for i in $(seq 1 16); do
    head -c $((warm_mib << 16)) /dev/urandom >"$work/w"
    aws_ "${s3[n1]}" s3 cp --only-show-errors "$work/w" "s3://models/prefix/part-$i"
done
start=$(date +%s.%N)
"$ferry" warmup models/prefix/ --admin "${admin[n1]}" --concurrency 32 --force
end=$(date +%s.%N)
printf '{"bench":"cluster","row":"warmup","bytes":%d,"seconds":%.2f,"mb_per_s":%.1f}\n' $((warm_mib << 20)) \
    "$(echo "$end - $start" | bc -l)" "$(echo "$warm_mib * 1.048576 / ($end - $start)" | bc -l)"
stop_all

# --- cold load of a 3-shard model, without and with warm on open -------------
load() { # label node: loads the 3 shards as a loader does, prints seconds
    "$venv/bin/python" - "${s3[$2]}" "$1" "$shard_mib" <<'PY'
import struct, sys, time
import boto3
from botocore.config import Config
endpoint, label, shard_mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
start = time.time()
for shard in range(3):
    key = f"llm/model-{shard}.safetensors"
    n = struct.unpack("<Q", s3.get_object(Bucket="models", Key=key, Range="bytes=0-7")["Body"].read())[0]
    s3.get_object(Bucket="models", Key=key, Range=f"bytes=8-{7 + n}")["Body"].read()
    size = s3.head_object(Bucket="models", Key=key)["ContentLength"]
    step, at = 16 << 20, 8 + n
    while at < size:
        s3.get_object(Bucket="models", Key=key, Range=f"bytes={at}-{min(at + step, size) - 1}")["Body"].read()
        at += step
print(f'{{"bench":"cluster","row":"{label}","shards":3,"shard_mib":{shard_mib},"seconds":{time.time() - start:.2f}}}')
PY
}
for mode in cold warm-open; do
    extra=""
    [ "$mode" = warm-open ] && extra='warm_on_open = ["*.safetensors"]'
    say "3-shard model load, $mode"
    node "l$mode" m1 100 "2GiB" "$extra"
    node "l$mode" m2 100 "2GiB" "$extra"
    node "l$mode" m3 100 "2GiB" "$extra"
    wait_members 3 m1 m2 m3
    aws_ "${s3[m1]}" s3 mb s3://models >/dev/null 2>&1 || true
    for shard in 0 1 2; do
        python3 "$repo/benches/safetensors.py" "$work/shard" "$shard_mib"
        aws_ "${s3[m1]}" s3 cp --only-show-errors "$work/shard" "s3://models/llm/model-$shard.safetensors"
    done
    load "load-$mode" m1
    stop_all
done
