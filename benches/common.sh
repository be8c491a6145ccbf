# Sourced by every benches/*.sh: the repository ($repo), the release
# binaries of the gateway ($ferry; FERRY overrides it) and of the benchmark
# client ($bench_bin; FERRY_BENCH overrides it), each built once if missing.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ferry="${FERRY:-$repo/target/release/ferry}"
[ -x "$ferry" ] || cargo build --release -p ferry-gateway --manifest-path "$repo/Cargo.toml"
bench_bin="${FERRY_BENCH:-$repo/target/release/ferry-bench}"
[ -x "$bench_bin" ] || cargo build --release -p ferry-bench --manifest-path "$repo/Cargo.toml"
