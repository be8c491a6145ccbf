#!/usr/bin/env bash
# The fuzz targets in fuzz/, as the test command runs them: each replays
# its committed corpus (fuzz/corpus/<target>), then fuzzes for a few
# seconds, FERRY_FUZZ_SECONDS in all (default 60). A crash, a panic, a
# timeout or one allocation above 64 MiB fails the run; libFuzzer leaves
# the input that did it in fuzz/artifacts/<target>/.
#
# Longer runs: FERRY_FUZZ_SECONDS=3600 tests/fuzz.sh, or one target with
# cargo +nightly fuzz run <target> fuzz/corpus/<target>.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# cargo-fuzz and a nightly toolchain (libFuzzer's instrumentation needs
# nightly flags); cargo-fuzz goes into .tools/ once.
export PATH="$repo/.tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
    echo "== installing cargo-fuzz into .tools/ (once)"
    cargo install --locked cargo-fuzz@0.13.2 --root "$repo/.tools"
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "== installing the nightly toolchain (once)"
    rustup toolchain install nightly --profile minimal
fi

targets=(s3_request signature peer_request peer_answer feed xml_bodies config)
# The targets keep their node (and what it holds) for the whole run:
# not leaks to report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
total="${FERRY_FUZZ_SECONDS:-60}"
each=$(( total / ${#targets[@]} ))
[ "$each" -ge 1 ] || each=1

# cargo-fuzz's default profile: optimized, with debug assertions and
# overflow checks on (an overflow is a finding too). `build` and `run` must
# agree on it, or each run rebuilds.
echo "== building the fuzz targets"
cargo +nightly fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "$scratch/$target"
    echo "== fuzz $target: $(ls "$corpus" | wc -l) corpus inputs, then ${each}s"
    # New inputs go to the scratch dir (first), never into the committed
    # corpus; -malloc_limit_mb fails any one allocation above 64 MiB.
    log="$scratch/$target.log"
    status=0
    cargo +nightly fuzz run "$target" "$scratch/$target" "$corpus" -- \
        -max_total_time="$each" -malloc_limit_mb=64 -rss_limit_mb=2048 \
        -timeout=20 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^(#[0-9]+.*(INITED|DONE)|stat::(number_of_executed_units|new_units_added|peak_rss_mb))" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "tests/fuzz.sh: $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "== fuzzing passed"
