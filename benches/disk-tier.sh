#!/usr/bin/env bash
# The disk tier against the limit of the same disk, in one run.
#
# One safetensors-shaped object is served by
#   nginx-cache    nginx `sendfile` of the file, warm in the page cache
#   nginx-device   the same, the file's pages dropped from the page cache
#                  (posix_fadvise DONTNEED) before each workload
#   ferry-cache    `ferry serve` with a 64 MiB memory tier and a disk tier
#                  holding the whole object (read once before measuring):
#                  every hit is a disk hit, the tier's files warm in the
#                  page cache (software cost, not the device)
#   ferry-device   the same server, its disk tier's files dropped from the
#                  page cache before each workload
# Dropping is per file (no root needed), and only the first pass over the
# bytes comes from the device: the stream and the 8x8 MiB ranges read each
# byte once, the random workloads re-read and mostly hit the page cache.
#
# Reported per row and workload (median over rounds): throughput, its ratio
# to nginx-cache and nginx-device, server CPU per GB; for Ferry also the
# disk tier's write amplification (bytes foyer wrote to disk per byte
# served: a steady state of disk hits must write nothing). After the
# rounds: write amplification of a working set twice the disk tier, the
# time a restarted node with a full disk tier takes to serve its first
# hit, and the node's peak RSS.
#
# Usage: benches/disk-tier.sh [object-MiB (1024)] [seconds per random run (5)] [rounds (3)]
#   FERRY=path/to/ferry   FERRY_BENCH=path/to/ferry-bench   RESULTS=file (keep JSON lines)
#   DISK_PAGE=256KiB      the nodes' [cache] disk_page (default: Ferry's default)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mib="${1:-1024}"
seconds="${2:-5}"
rounds="${3:-3}"
venv="$repo/.venv"
[ -x "$venv/bin/aws" ] || { echo "needs aws-cli in .venv (run tests/run.sh once)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-disk-tier.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn
results="${RESULTS:-$work/results.jsonl}"
: >"$results"
key=model.safetensors
python3 "$repo/benches/safetensors.py" "$work/$key" "$mib"
say() { echo "# $*" >&2; }

drop_pages() { # files or folders: their pages leave the page cache
    python3 - "$@" <<'PY'
import os, sys
for top in sys.argv[1:]:
    paths = [top] if os.path.isfile(top) else [os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs]
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
PY
}

# --- nginx --------------------------------------------------------------------
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
if [ ! -x "$nginx" ]; then
    say "installing nginx-light"
    { apt-get install -y -qq nginx-light || { apt-get update -qq && apt-get install -y -qq nginx-light; }; } >&2 || true
fi
[ -x "$nginx" ] || { echo "needs nginx (Debian nginx-light), which cannot be installed" >&2; exit 1; }
ndir=$work/nginx
nport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$ndir/www" "$ndir/tmp"
chmod a+rx "$work" "$ndir" "$ndir/www"
ln "$work/$key" "$ndir/www/$key"
cat >"$ndir/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $ndir/nginx.pid;
error_log $ndir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $ndir/tmp;
    server { listen 127.0.0.1:$nport; root $ndir/www; }
}
CONF
"$nginx" -p "$ndir" -c "$ndir/nginx.conf" -e "$ndir/error.log" &
nginx_pid=$!
pids+=("$nginx_pid")
for _ in $(seq 100); do [ -n "$(pgrep -P "$nginx_pid")" ] && break; sleep 0.1; done
nginx_pids=(--server-pid "$nginx_pid")
for worker in $(pgrep -P "$nginx_pid"); do nginx_pids+=(--server-pid "$worker"); done

# --- ferry --------------------------------------------------------------------
# label disk-MiB: starts a node with a 64 MiB memory tier; sets s3, admin, pid.
start_ferry() {
    local label=$1 disk=$2 dir=$work/$1
    mkdir -p "$dir"
    printf '[cache]\nmemory = "64MiB"\ndisk = "%sMiB"\ndir = "%s/cache"\n' "$disk" "$dir" >"$dir.toml"
    if [ -n "${DISK_PAGE:-}" ]; then printf 'disk_page = "%s"\n' "$DISK_PAGE" >>"$dir.toml"; fi
    "$ferry" serve --config "$dir.toml" --data-dir "$dir" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        >"$dir.out" 2>"$dir.err" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do
        grep -q '^ferry ready' "$dir.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { cat "$dir.err" >&2; return 1; }
        sleep 0.1
    done
    s3="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$dir.out")"
    admin="$(sed -n 's/^ferry ready .*admin=\([^ ]*\).*/\1/p' "$dir.out")"
}
follow=(--metric 'foyer_storage_disk_io_bytes_total{op="write"}' --metric ferry_cache_bytes_served_total
    --metric 'ferry_cache_bytes_served_total{source="disk"}')

start_ferry ferry $((mib * 2 + 1024))
ferry_s3=$s3 ferry_admin=$admin ferry_pid=$pid
"$venv/bin/aws" --endpoint-url "$s3" s3 mb s3://models >/dev/null
"$venv/bin/aws" --endpoint-url "$s3" s3 cp --only-show-errors "$work/$key" "s3://models/$key"
"$bench_bin" read --endpoint "$s3" --bucket models --key "$key" --workloads stream >/dev/null
"$bench_bin" read --endpoint "$s3" --bucket models --key "$key" --workloads stream >/dev/null
# The peak RSS from here on is what serving from the disk tier costs (the
# upload and the first fill of the tier came before).
echo 5 >"/proc/$ferry_pid/clear_refs" 2>/dev/null || say "cannot reset the peak RSS; it includes the upload"

run() { # row workload: one measured run
    local row=$1 workload=$2
    case $row in
    nginx-*) target=(--http-url "http://127.0.0.1:$nport/$key" "${nginx_pids[@]}") ;;
    ferry-*) target=(--endpoint "$ferry_s3" --bucket models --key "$key" --server-pid "$ferry_pid"
        --metrics-url "$ferry_admin/metrics" "${follow[@]}") ;;
    esac
    case $row in
    nginx-device) drop_pages "$work/$key" ;;
    ferry-device) drop_pages "$work/ferry/cache" ;;
    *) ;;
    esac
    "$bench_bin" read --label "$row" "${target[@]}" --workloads "$workload" --random-concurrency 16 \
        --seconds "$seconds" >>"$results"
}

for round in $(seq "$rounds"); do
    for workload in stream parallel random4m random256k; do
        for row in nginx-cache ferry-cache nginx-device ferry-device; do
            say "round $round: $row $workload"
            run "$row" "$workload"
        done
    done
done
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$ferry_pid/status")

# Restart with a full disk tier: the time from start to the first hit.
kill "$ferry_pid"
wait "$ferry_pid" 2>/dev/null || true
tier_bytes=$(du -sb "$work/ferry/cache" | cut -f1)
t0=$(date +%s%N)
start_ferry ferry $((mib * 2 + 1024))
"$bench_bin" read --endpoint "$s3" --bucket models --key "$key" --workloads safetensors --count 1 >/dev/null
t1=$(date +%s%N)
hits=$(curl -s "$admin/metrics" | awk '/^ferry_cache_hits_total\{tier="disk"\}/ {print $2}')
printf '{"bench":"disk-tier","restart_to_first_hit_s":%s,"tier_bytes":%s,"disk_hits_after_restart":"%s","peak_rss_kib":%s}\n' \
    "$(python3 -c "print(($t1 - $t0) / 1e9)")" "$tier_bytes" "${hits:-0}" "$rss_kib" >>"$results"
kill "$pid"

# A working set twice the disk tier: every read misses the tier and writes it.
start_ferry small $((mib / 2))
"$venv/bin/aws" --endpoint-url "$s3" s3 mb s3://models >/dev/null
"$venv/bin/aws" --endpoint-url "$s3" s3 cp --only-show-errors "$work/$key" "s3://models/$key"
"$bench_bin" read --label "ferry-twice-the-tier" --endpoint "$s3" --bucket models --key "$key" \
    --workloads stream,random4m --random-concurrency 16 --seconds "$seconds" --server-pid "$pid" \
    --metrics-url "$admin/metrics" "${follow[@]}" >>"$results"
kill "$pid"

python3 - "$results" <<'PY'
import json, statistics, sys
rows, extra = {}, []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("bench") == "disk-tier":
        extra.append(r)
        continue
    w = r["workload"]
    value = r.get("ops_per_s") if w.startswith("random") else r.get("gb_per_s")
    m = r.get("metrics") or {}
    served = m.get("ferry_cache_bytes_served_total")
    written = m.get('foyer_storage_disk_io_bytes_total{op="write"}')
    wa = written / served if served else None
    rows.setdefault((r["label"], w), []).append((value, r.get("server_cpu_s_per_gb"), wa))
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
fmt = lambda x, f="{:.3f}": "-" if x is None else f.format(x)
print(f"{'row':20} {'workload':11} {'value':>9} {'unit':6} {'/cache':>7} {'/device':>7} {'cpu s/GB':>8} {'disk W/served':>13}")
for (label, w), v in rows.items():
    value = med([x[0] for x in v])
    unit = "ops/s" if w.startswith("random") else "GB/s"
    ref = lambda row: med([x[0] for x in rows.get((row, w), [])])
    c, d = ref("nginx-cache"), ref("nginx-device")
    print(f"{label:20} {w:11} {fmt(value):>9} {unit:6} {fmt(value / c if c else None):>7} "
          f"{fmt(value / d if d else None):>7} {fmt(med([x[1] for x in v])):>8} {fmt(med([x[2] for x in v]), '{:.4f}'):>13}")
for e in extra:
    print(f"restart (tier files {e['tier_bytes'] / 2**30:.2f} GiB): first hit after {e['restart_to_first_hit_s']:.2f} s "
          f"(disk hits then: {e['disk_hits_after_restart']}); peak RSS while serving {e['peak_rss_kib'] / 1024:.0f} MiB")
PY
