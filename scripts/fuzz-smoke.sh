#!/usr/bin/env bash
# Fuzz smoke run: builds every cargo-fuzz target in fuzz/ once, then runs each for a bounded
# time, starting from the committed seed corpus (fuzz/corpus/<target>/, used read-only: new
# inputs go to a scratch directory that is thrown away).
#
#   scripts/fuzz-smoke.sh                      every target, 60 s each
#   FUZZ_SECONDS=10 scripts/fuzz-smoke.sh      shorter
#   scripts/fuzz-smoke.sh pci_config cli_options   only these targets
#
# Environment:
#   FUZZ_SECONDS    run time per target (default 60)
#   FUZZ_JOBS       targets fuzzed at the same time (default: the number of CPUs, at most 4)
#   FUZZ_SANITIZER  address (default) or none; address falls back to none when the
#                   toolchain cannot build it
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, -Cpasses=sancov-module, ...): on
# a stable toolchain they are unlocked with RUSTC_BOOTSTRAP=1 (stable rustc ships the ASan
# runtime). libfuzzer-sys builds libFuzzer itself with the system C++ compiler.
#
# Exits non-zero when a target crashes (panic, failed assertion, sanitizer report, timeout
# or out-of-memory); the crashing input is left in fuzz/artifacts/<target>/ and its path is
# printed. Reproduce with:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a <target> fuzz/artifacts/<target>/<crash-file>
# (run from the repository root, or add --fuzz-dir fuzz).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
ncpu=$(nproc 2>/dev/null || echo 1)
FUZZ_JOBS=${FUZZ_JOBS:-$((ncpu < 4 ? ncpu : 4))}
LOGDIR=${LOGDIR:-target/logs}
mkdir -p "$LOGDIR/fuzz"
LOGDIR=$(cd "$LOGDIR" && pwd)

export RUSTC_BOOTSTRAP=1
# Same flags for build and run, so `cargo fuzz run` reuses what was built here.
BUILD_FLAGS=(--fuzz-dir fuzz -O -a --codegen-units 16)

t0=$(date +%s)

# --- tools ------------------------------------------------------------------------------
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || { echo "fuzz: cannot install cargo-fuzz" >&2; exit 1; }
fi
if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
    else
        echo "fuzz: a C++ compiler (g++) is needed to build libFuzzer; install it with apt-get" >&2
        exit 1
    fi
fi

# --- build ------------------------------------------------------------------------------
build() {
    CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-$ncpu} cargo fuzz build "${BUILD_FLAGS[@]}" -s "$1" \
        >"$LOGDIR/fuzz/build.log" 2>&1
}
echo "fuzz: building the targets (sanitizer: $FUZZ_SANITIZER)"
b0=$(date +%s)
if ! build "$FUZZ_SANITIZER"; then
    # A compile error fails the same way without a sanitizer: only retry for other failures
    # (a toolchain without the sanitizer runtime, a link error).
    if [ "$FUZZ_SANITIZER" != none ] && ! grep -q '^error\[E[0-9]' "$LOGDIR/fuzz/build.log"; then
        tail -20 "$LOGDIR/fuzz/build.log"
        echo "fuzz: the $FUZZ_SANITIZER sanitizer build failed; retrying without a sanitizer"
        FUZZ_SANITIZER=none
        build none || { tail -40 "$LOGDIR/fuzz/build.log"; echo "fuzz: build failed"; exit 1; }
    else
        tail -40 "$LOGDIR/fuzz/build.log"
        echo "fuzz: build failed (see $LOGDIR/fuzz/build.log)"
        exit 1
    fi
fi
echo "fuzz: built in $(($(date +%s) - b0)) s"
BIN=$ROOT/fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

# --- run --------------------------------------------------------------------------------
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Runs one target; writes "status execs seconds artifact" to $scratch/<target>.result.
run_one() {
    local t=$1 log=$LOGDIR/fuzz/$t.log art=$ROOT/fuzz/artifacts/$t
    mkdir -p "$scratch/$t" "$art" "$ROOT/fuzz/corpus/$t"
    local s0 rc status execs artifact
    s0=$(date +%s)
    (cd "$scratch" && "$BIN/$t" "$scratch/$t" "$ROOT/fuzz/corpus/$t" \
        -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=3072 \
        -print_final_stats=1 -artifact_prefix="$art/" -close_fd_mask=1) >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    status=ok
    [ "$rc" = 0 ] || status=FAIL
    echo "$status ${execs:-?} $(($(date +%s) - s0)) ${artifact:--}" >"$scratch/$t.result"
}

echo "fuzz: ${#targets[@]} targets, ${FUZZ_SECONDS} s each, $FUZZ_JOBS at a time"
for t in "${targets[@]}"; do
    if [ ! -x "$BIN/$t" ]; then
        echo "FAIL - 0 -" >"$scratch/$t.result"
        echo "fuzz: no such target: $t" >&2
        continue
    fi
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do wait -n; done
done
wait

passed=0
failed=0
printf '%-20s %-6s %12s %8s\n' target result execs seconds
for t in "${targets[@]}"; do
    read -r status execs secs artifact <"$scratch/$t.result"
    printf '%-20s %-6s %12s %8s\n' "$t" "$status" "$execs" "$secs"
    if [ "$status" = ok ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "  log: $LOGDIR/fuzz/$t.log"
        grep -m1 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY:" "$LOGDIR/fuzz/$t.log" |
            sed 's/^/  /'
        [ "$artifact" = - ] || echo "  crash artifact: $artifact"
    fi
done
echo "fuzz: total $(($(date +%s) - t0)) s (sanitizer: $FUZZ_SANITIZER)"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
