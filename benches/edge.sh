#!/usr/bin/env bash
# Edge regions without object storage: a source region (one node, its
# bucket a folder) and two edge mirror regions of two nodes each, with no
# bucket of their own (they read the source's folder, owned = false). Every
# store request, the source's and the edges', is delayed by 20 ms (a
# distant object store). One edge warms `models/llama-3/` on arrival, the
# other does not. In one run:
#
#   put            the source's PUT of a MODEL-MiB model (aws s3 cp)
#   fully-warm     from the end of that PUT to "fully warm in the edge"
#                  (every block on its owners: `ferry warmup --check`)
#   header/stream  the edge's first read of it afterwards, warm edge
#                  against cold edge: an 8-byte header read (the
#                  safetensors length), then the whole object in one stream
#
# Usage: benches/edge.sh [model-MiB (1024)]   FERRY=path/to/ferry
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mib="${1:-1024}"
venv="$repo/.venv"
[ -x "$venv/bin/aws" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q boto3 awscli; }
redis-cli ping >/dev/null

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-edge.XXXXXX")"
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
export FERRY_ADMIN_TOKEN=bench-admin-token-0123 FERRY_FEED_SECRET=bench-feed-secret-0123456789
mkdir -p "$work/central"

declare -A s3 admin
start() { # name config-text: starts a node
    local dir="$work/$1"
    mkdir -p "$dir"
    printf '%s\n[admin]\ntoken = "%s"\n' "$2" "$FERRY_ADMIN_TOKEN" >"$dir.toml"
    "$ferry" serve --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --config "$dir.toml" >"$dir.out" 2>"$dir.err" &
    pids+=("$!")
    for _ in $(seq 300); do
        grep -q '^ferry ready' "$dir.out" 2>/dev/null && break
        sleep 0.1
    done
    s3[$1]="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$dir.out")"
    admin[$1]="$(sed -n 's/^ferry ready .*admin=\([^ ]*\).*/\1/p' "$dir.out")"
    [ -n "${s3[$1]}" ] || { cat "$dir.err" >&2; exit 1; }
}
central_bucket() { # owned: the source's folder as a store
    printf '[stores.data]\nurl = "file://%s/central"\nsimulated_latency = "20ms"\nowned = %s\n' "$work" "$1"
}
edge() { # region node warm-lines
    start "$1-$2" "$(central_bucket false)
[meta]
engine = \"redis://127.0.0.1:6379/0\"
redis_prefix = \"$run-$1\"
allow_volatile_redis = true
[cache]
memory = \"64MiB\"
disk = \"$((mib + 256))MiB\"
[cluster]
node_id = \"$2\"
name = \"$run-$1\"
peer_listen = \"127.0.0.1:0\"
secret = \"bench-cluster-secret-0123\"
membership = \"redis://127.0.0.1:6379/0\"
[region]
name = \"$1\"
follow = \"${admin[source]}\"
$3"
}
aws_() { "$venv/bin/aws" --endpoint-url "$1" "${@:2}"; }
now() { date +%s.%N; }
get() { # endpoint key [range]: seconds to the last byte
    curl -sf -o /dev/null -w '%{time_total}' --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$FERRY_ACCESS_KEY:$FERRY_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        ${3:+-H "Range: bytes=$3"} "$1/models/$2"
}
warm_check() { "$ferry" warmup models/llama-3/ --check --admin "${admin[warm-e0]}" 2>&1; }

start source "$(central_bucket true)
[region]
name = \"central\""
aws_ "${s3[source]}" s3 mb s3://models >/dev/null
for region in warm cold; do
    lines=""
    [ "$region" = warm ] && lines=$'[[region.warm]]\nprefix = "models/llama-3/"'
    edge "$region" e0 "$lines"
    edge "$region" e1 "$lines"
done
for node in warm-e0 cold-e0; do
    for _ in $(seq 300); do aws_ "${s3[$node]}" s3 ls s3://models >/dev/null 2>&1 && break; sleep 0.1; done
done

say "a ${mib} MiB model written in the source"
head -c $((mib << 20)) /dev/urandom >"$work/model"
t0=$(now)
aws_ "${s3[source]}" s3 cp --only-show-errors "$work/model" s3://models/llama-3/model.safetensors
t1=$(now)
# Warm on arrival counts an object warmed once a check found every block on
# its owners; the region status says so without probing every block.
until curl -s "${admin[warm-e0]}/region/status" "${admin[warm-e1]}/region/status" | grep -q '"warmed":1'; do
    sleep 0.05
done
t2=$(now)
warm_check | grep -q '100.0% of' || { echo "not fully warm: $(warm_check)" >&2; exit 1; }
for node in warm-e0 cold-e0; do
    for _ in $(seq 600); do
        aws_ "${s3[$node]}" s3api head-object --bucket models --key llama-3/model.safetensors >/dev/null 2>&1 && break
        sleep 0.1
    done
done
lag=$(curl -s "${admin[warm-e0]}/metrics" "${admin[warm-e1]}/metrics" |
    awk '/^ferry_warm_arrival_lag_seconds_sum/ {s+=$2} /^ferry_warm_arrival_lag_seconds_count/ {n+=$2} END {printf "%.2f", n ? s/n : 0}')
printf '{"bench":"edge-warm","mib":%d,"put_s":%.2f,"fully_warm_after_put_s":%.2f,"commit_to_warm_s":%s}\n' \
    "$mib" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$t2 - $t1" | bc -l)" "$lag"

say "the edge's first read: warm on arrival against a cold edge"
for region in warm cold; do
    header=$(get "${s3[$region-e0]}" llama-3/model.safetensors 0-7)
    stream=$(get "${s3[$region-e0]}" llama-3/model.safetensors)
    printf '{"bench":"edge-first-read","edge":"%s","header_ms":%.1f,"stream_s":%.2f,"stream_mb_s":%.0f}\n' \
        "$region" "$(echo "$header * 1000" | bc -l)" "$stream" "$(echo "$mib * 1.048576 / $stream" | bc -l)"
done
