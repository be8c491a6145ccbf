#!/usr/bin/env bash
# Soak: a three-node cache cluster (the source region "central") and a
# mirror region under a steady mix of reads, writes, overwrites, deletes,
# warm-ups and one import, with n2 restarted at half time. Passes when
# there were 0 errors, 0 wrong bytes, 0 overwrite mixes, every process's
# resident memory stayed within +-5 % of its mean over the judged window,
# the file descriptor counts stayed flat, and the backlogs drained within
# 60 s of the load stopping. The load, sampling and verdict are in
# benches/soak.py (its docstring lists the gauges watched as queues).
#
# Processes (each sampled every 5 s for RSS and open fds):
#   redis    this script's own redis-server (AOF, appendfsync always, a
#            free port, its own folder; never the machine's shared Redis):
#            metadata and membership of the cluster
#   s3s-fs   an independent S3 origin holding the bucket that is imported
#   n0 n1 n2 `ferry serve` nodes of one cluster over a shared folder store,
#            which also serve the change feed (region "central")
#   mirror   `ferry serve` following n0's feed (region "edge-1"): its own
#            embedded metadata and folder store, falling back to central's
#
# Usage: benches/soak.sh [seconds (600)]
#   FERRY=path/to/ferry (default target/release/ferry, else target/debug/ferry)
#   SOAK_OUT=dir (default bench-data/soak): samples.csv, rss.png, summary.txt, logs/
#   PYTHON=python-with-boto3 (default .venv/bin/python; matplotlib is installed into it if missing)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-600}"
# Not common.sh: that builds a release binary when there is none, and a
# soak may as well run on the debug build that is already there.
if [ -z "${FERRY:-}" ]; then
    FERRY="$repo/target/release/ferry"
    [ -x "$FERRY" ] || FERRY="$repo/target/debug/ferry"
fi
ferry="$FERRY"
[ -x "$ferry" ] || { echo "no ferry binary at $ferry (cargo build -p ferry-gateway, or set FERRY)" >&2; exit 1; }
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || { echo "needs a python with boto3 (run tests/run-e2e.sh once, or set PYTHON)" >&2; exit 1; }
"$python" -c 'import matplotlib' 2>/dev/null || "$python" -m pip install -q matplotlib
s3s_fs="${S3S_FS:-$repo/.tools/bin/s3s-fs}"
[ -x "$s3s_fs" ] || { echo "s3s-fs not found at $s3s_fs (tests/run.sh installs it)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 1; }
out="${SOAK_OUT:-$repo/bench-data/soak}"
mkdir -p "$out"
rm -rf "$out/logs" "$out/samples.csv" "$out/rss.png" "$out/summary.txt" # an earlier run's

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-soak.XXXXXX")"
# Every process's pid is in $work/procs/NAME.pid: soak.py restarts n2
# itself and rewrites its file, so cleanup reads the files, not a list.
procs="$work/procs"
mkdir -p "$procs"
stop() { # names: SIGTERM, then wait until each has exited
    local name pid
    for name in "$@"; do [ -e "$procs/$name.pid" ] && kill "$(cat "$procs/$name.pid")" 2>/dev/null || true; done
    for name in "$@"; do
        [ -e "$procs/$name.pid" ] || continue
        pid="$(cat "$procs/$name.pid")"
        # The restarted n2 is soak.py's child, not ours: wait by polling.
        wait "$pid" 2>/dev/null || for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
}
cleanup() {
    # The nodes first, so they do not log their metadata going away.
    stop n0 n1 n2 mirror
    stop redis s3s-fs
    mkdir -p "$out/logs"
    cp "$work"/*.err "$work/redis.log" "$work/s3s-fs.log" "$out/logs/" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "== $*" >&2; }

export FERRY_ACCESS_KEY=soakkey FERRY_SECRET_KEY=soak-secret-key FERRY_LOG=warn
export FERRY_ADMIN_TOKEN=soak-admin-token-0123
export FERRY_FEED_SECRET=soak-feed-secret-0123456789
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mb() { curl -sf -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$FERRY_ACCESS_KEY:$FERRY_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$1/$2"; }

say "redis with AOF"
redis_port="$(free_port)"
mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes \
    --appendfsync always --save "" --logfile "$work/redis.log" &
echo $! >"$procs/redis.pid"
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$redis_port" ping >/dev/null || { cat "$work/redis.log" >&2; exit 1; }
redis="redis://127.0.0.1:$redis_port/0"

say "s3s-fs origin with bucket legacy"
s3s_port="$(free_port)"
mkdir -p "$work/s3s-root"
"$s3s_fs" --host 127.0.0.1 --port "$s3s_port" --access-key "$FERRY_ACCESS_KEY" --secret-key "$FERRY_SECRET_KEY" \
    "$work/s3s-root" >"$work/s3s-fs.log" 2>&1 &
echo $! >"$procs/s3s-fs.pid"
origin="http://127.0.0.1:$s3s_port"
echo "$origin" >"$procs/s3s-fs.s3"
for _ in $(seq 100); do curl -s -o /dev/null "$origin" && break; sleep 0.1; done
mb "$origin" legacy || { cat "$work/s3s-fs.log" >&2; exit 1; }

start() { # name: starts `ferry serve` with $work/NAME.toml and data dir $work/NAME
    local argv=("$ferry" serve --data-dir "$work/$1" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
        --config "$work/$1.toml")
    printf '%s\n' "${argv[@]}" >"$procs/$1.argv" # for soak.py's restart
    "${argv[@]}" >"$work/$1.out" 2>"$work/$1.err" &
    echo $! >"$procs/$1.pid"
    for _ in $(seq 600); do grep -q '^ferry ready' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
    sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/$1.out" >"$procs/$1.s3"
    sed -n 's/^ferry ready .*admin=\([^ ]*\).*/\1/p' "$work/$1.out" >"$procs/$1.admin"
    [ -s "$procs/$1.s3" ] || { cat "$work/$1.err" >&2; exit 1; }
}

# The import's origin, configured alike on every node (a cluster refuses
# a node whose stores differ) and on the mirror (imported blobs are read
# where they are, never copied).
legacy="[stores.legacy]
url = \"s3://legacy\"
endpoint = \"$origin\"
region = \"us-east-1\"
access_key_id = \"$FERRY_ACCESS_KEY\"
secret_access_key = \"$FERRY_SECRET_KEY\"
allow_http = true
owned = false"
# Small tiers, so they fill and evict within the warm-up; 1 MiB blocks,
# so every object spans several.
cache='[cache]
memory = "128MiB"
disk = "512MiB"
block_size = "1MiB"'
# A short grace and interval make the collector delete within the soak
# (the default grace is 24 h), so its queue can be seen to drain; a short
# shutdown grace keeps n2's restart brief.
volume='[volume]
gc_grace = "10s"
gc_interval = "2s"
gc_lease = "10s"
[server]
shutdown_grace = "5s"'

say "cluster n0 n1 n2 (source region central)"
mkdir -p "$work/store"
for id in n0 n1 n2; do
    # log_keep: the change log is trimmed to a steady length within the
    # warm-up rather than growing in Redis for the whole soak (default
    # 100,000 records).
    cat >"$work/$id.toml" <<TOML
[meta]
engine = "$redis"
redis_prefix = "soak"
[stores.data]
url = "file://$work/store"
$legacy
$cache
$volume
[cluster]
node_id = "$id"
name = "soak"
peer_listen = "127.0.0.1:0"
secret = "soak-cluster-secret-0123"
membership = "$redis"
[region]
name = "central"
log_keep = 500
[admin]
token = "$FERRY_ADMIN_TOKEN"
TOML
    start "$id"
done
members() { curl -s "$1/cluster/status" | "$python" -c 'import json,sys; print(len(json.load(sys.stdin)["members"]))'; }
for id in n0 n1 n2; do
    for _ in $(seq 100); do [ "$(members "$(cat "$procs/$id.admin")")" = 3 ] && break; sleep 0.1; done
    [ "$(members "$(cat "$procs/$id.admin")")" = 3 ] || { echo "$id does not see 3 members" >&2; exit 1; }
done

say "mirror (region edge-1) following n0"
cat >"$work/mirror.toml" <<TOML
[stores.data]
url = "file://$work/mirror-blobs"
fallback = ["central"]
[stores.central]
url = "file://$work/store"
owned = false
$legacy
$cache
$volume
[region]
name = "edge-1"
follow = "$(cat "$procs/n0.admin")"
[admin]
token = "$FERRY_ADMIN_TOKEN"
TOML
start mirror

say "soak for $seconds s with $ferry"
status=0
"$python" "$repo/benches/soak.py" --seconds "$seconds" --work "$work" --out "$out" \
    --redis-port "$redis_port" --redis-prefix soak || status=$?
exit "$status"
