#!/usr/bin/env bash
# What exporting traces costs: one Ferry build run twice side by side,
# interleaved (benches/ab.sh), A without [telemetry] and B exporting every
# span (sample_ratio 1, or $RATIO) to an OTLP/HTTP sink on loopback that
# reads and drops them. Compare the server CPU per GB and the latencies.
#
# Usage: benches/tracing.sh [ferry binary (target/release/ferry)] [rounds (3)] [object-MiB (256)]
#   CONFIGS="warm disk"   as in ab.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ferry="${1:-$repo/target/release/ferry}"
rounds="${2:-3}"
mib="${3:-256}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-tracing.XXXXXX")"
sink_pid=
cleanup() {
    [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The sink: answers every POST 200 with an empty body, counting bytes.
python3 - "$work/port" "$work/received" <<'PY' &
import http.server, sys, threading
port_file, count_file = sys.argv[1], sys.argv[2]
received = [0, 0]
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        received[0] += 1
        received[1] += length
        with open(count_file, "w") as f:
            f.write(f"{received[0]} {received[1]}\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY
sink_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port="$(cat "$work/port")"

export CONFIGS="${CONFIGS:-warm disk}"
export EXTRA_B="[telemetry]
otlp_endpoint = \"http://127.0.0.1:$port\"
sample_ratio = ${RATIO:-1.0}"
"$repo/benches/ab.sh" "$ferry" "$ferry" "$rounds" "$mib"
echo "# the sink received (posts, bytes): $(cat "$work/received" 2>/dev/null || echo '0 0')"
