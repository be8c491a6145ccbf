#!/usr/bin/env bash
# HEAD / small-GET latency and PUT rate with embedded vs Redis metadata, in
# one run, then a ListObjectsV2 of N keys through Redis.
# Usage: benches/meta-engines.sh [keys]   (Redis at 127.0.0.1:6379)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
keys="${1:-1000000}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")"
echo "# work dir $work" >&2
prefix="bench-$(date +%s)-$$"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    redis-cli --scan --pattern "$prefix:*" | xargs -r -n 1000 redis-cli del >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn

cat >"$work/redis.toml" <<TOML
[meta]
engine = "redis://127.0.0.1:6379"
redis_prefix = "$prefix"
allow_volatile_redis = true
TOML

start() { # name, data dir, extra args...; sets $endpoint
    local name=$1 dir=$2
    shift 2
    "$ferry" serve --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 300); do
        grep -q '^ferry ready' "$work/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    endpoint=$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/$name.out")
    [ -n "$endpoint" ] || { cat "$work/$name.err" >&2; exit 1; }
}
bucket() { # endpoint, bucket
    curl -sf -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$1/$2" >/dev/null
}

start embedded "$work/embedded"
embedded=$endpoint
start redis "$work/redis" --config "$work/redis.toml"
redis=$endpoint
bucket "$embedded" bench
bucket "$redis" bench
for round in 1 2 3; do
    for engine in embedded redis; do
        endpoint=${!engine}
        echo "{\"engine\":\"$engine\",\"round\":$round}"
        "$bench_bin" latency --endpoint "$endpoint" --bucket bench --size 1024 --count 2000
        "$bench_bin" put --endpoint "$endpoint" --bucket bench --size 4096 --count 2000 --concurrency 16
    done
done

echo "# populating $keys keys in Redis" >&2
"$bench_bin" populate --config "$work/redis.toml" --data-dir "$work/redis" --bucket flat --keys "$keys" --layout flat
echo '{"engine":"redis"}'
"$bench_bin" list --endpoint "$redis" --bucket flat
