#!/usr/bin/env bash
# Run every test: unit and fake-backend tests, KVM smoke tests (tiny guests on this host's
# /dev/kvm), the fuzz smoke run, and the nested lab (real Linux guests under nested KVM inside
# QEMU). Every part runs even when an earlier one failed (except what needs a build that
# failed); the last line counts what ran:
#   total: N passed, M failed, K skipped
# from cargo's "test result:" lines (libtest's "ignored" tests count as skipped), the fuzz smoke
# run's "fuzz: P passed, F failed" line and the lab tables' PASS / FAIL / MISSING / SKIP rows. A
# part that failed without reporting its tests (a build error, a lab run that never finished)
# counts as one failure. cargo runs with --no-fail-fast, so one failing crate does not hide the
# others. Exit status 0 only when nothing failed.
#   scripts/test.sh             everything
#   SKIP_LAB=1 scripts/test.sh  without the nested lab (its scenarios count as skipped)
#   SKIP_FUZZ=1 scripts/test.sh without the fuzz smoke run (FUZZ_SECONDS=N: N s per target)
#   LAB_VFIO_SCENARIOS='vfio-edu*' scripts/test.sh   another selection for the VFIO lab run
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure_host_packages
t0=$(date +%s)
passed=0 failed=0 skipped=0
parts=()      # one summary line per part
problems=()   # failures that are not a counted test

# count PART PASSED FAILED SKIPPED
count() {
    passed=$((passed + $2)) failed=$((failed + $3)) skipped=$((skipped + $4))
    parts+=("$(printf '%-8s %4d passed, %3d failed, %3d skipped' "$1" "$2" "$3" "$4")")
}
problem() { problems+=("$*"); failed=$((failed + 1)); echo "FAILED: $*"; }

step "build (release vmm + test binaries)"
built=1
scripts/build.sh && cargo test --workspace -j2 --no-run || { built=0; problem "build"; }

step "unit, fake-backend and KVM smoke tests"
if [ $built = 1 ]; then
    test_args=()
    if [ "$(id -u)" = 0 ]; then
        # What the root-only tests need: the TUN device for the virtio-net TAP tests.
        if [ ! -c /dev/net/tun ]; then
            modprobe tun 2>/dev/null
            mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200 &&
                echo "created /dev/net/tun" || echo "note: cannot create /dev/net/tun"
        fi
        test_args=(-- --include-ignored)
        echo "running as root: tests marked #[ignore] (they need root) are included (--include-ignored)"
    else
        echo "not root: tests marked #[ignore] (they need root) do not run; they count as skipped"
    fi
    cargo test --workspace -j2 --no-fail-fast "${test_args[@]}" 2>&1 | tee "$LOGDIR/cargo-test.log"
    cargo_rc=${PIPESTATUS[0]}
    read -r cp cf ci < <(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed; [0-9]+ ignored' \
        "$LOGDIR/cargo-test.log" | awk '{p+=$4; f+=$6; i+=$8} END {print p+0, f+0, i+0}')
    count cargo "$cp" "$cf" "$ci"
    if [ "$cargo_rc" != 0 ] && [ "$cf" = 0 ]; then
        problem "cargo test exited $cargo_rc with no failed test reported (see $LOGDIR/cargo-test.log)"
    fi
else
    echo "not run: the build failed"
fi

nfuzz=$(ls fuzz/fuzz_targets/*.rs 2>/dev/null | wc -l)
if [ "${SKIP_FUZZ:-0}" = 1 ]; then
    echo "SKIP_FUZZ=1: fuzz smoke run skipped ($nfuzz targets count as skipped)"
    count fuzz 0 0 "$nfuzz"
else
    step "fuzz smoke run: every cargo-fuzz target for ${FUZZ_SECONDS:-60} s"
    scripts/fuzz-smoke.sh 2>&1 | tee "$LOGDIR/fuzz.log"
    fuzz_rc=${PIPESTATUS[0]}
    line=$(grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed' "$LOGDIR/fuzz.log" | tail -1)
    if [ -n "$line" ]; then
        read -r fp ff < <(echo "$line" | awk '{print $2, $4}')
        count fuzz "$fp" "$ff" 0
    fi
    if [ "$fuzz_rc" != 0 ] && { [ -z "$line" ] || [ "${ff:-0}" = 0 ]; }; then
        problem "fuzz smoke run exited $fuzz_rc (see $LOGDIR/fuzz.log and fuzz/artifacts/)"
    fi
fi

# The lab's table rows: "<scenario> PASS|FAIL|MISSING|SKIP <details>".
lab_count() {  # lab_count PART LOG RC WHAT
    local part=$1 p f s
    shift
    p=$(grep -cE '^[A-Za-z0-9_.-]+ +PASS ' "$1")
    f=$(grep -cE '^[A-Za-z0-9_.-]+ +(FAIL|MISSING) ' "$1")
    s=$(grep -cE '^[A-Za-z0-9_.-]+ +SKIP ' "$1")
    count "$part" "$p" "$f" "$s"
    if [ "$2" != 0 ] && [ "$f" = 0 ]; then
        problem "$3 exited $2 with no failed scenario in its table (L1 did not finish? see $1 and lab/out/)"
    fi
}

# Every VFIO scenario in one L1 boot: QEMU-emulated PCI devices bound to vfio-pci in L1 and
# passed to L2 (edu: MSI, DMA, INTx, 4 GiB of RAM mapped, DMA above 4 GiB; a 64 GiB ivshmem
# BAR; bochs-display; edu -> ivshmem peer-to-peer DMA; preflight refusals). edu's dma_mask is
# widened from 28 bits so that it can reach RAM above 4 GiB and ivshmem's BAR; --mem 6144
# because vfio-edu-4g* pin 4 GiB in L1.
vfio_scenarios=${LAB_VFIO_SCENARIOS:-vfio-*}
lab_default=$(python3 lab/lab.py list --names | wc -l)
lab_vfio=$(python3 lab/lab.py list --names -s "$vfio_scenarios" | wc -l)
if [ "${SKIP_LAB:-0}" = 1 ]; then
    echo "SKIP_LAB=1: nested lab skipped ($lab_default + $lab_vfio scenarios count as skipped)"
    count lab 0 0 $((lab_default + lab_vfio))
elif [ $built = 0 ]; then
    echo "nested lab not run: the build failed ($lab_default + $lab_vfio scenarios count as failed)"
    count lab 0 $((lab_default + lab_vfio)) 0
else
    step "nested lab: real Linux guests on nested KVM"
    lab/run.sh -q --vmm target/release/vmm --name ci-default 2>&1 | tee "$LOGDIR/lab.log"
    lab_count lab "$LOGDIR/lab.log" "${PIPESTATUS[0]}" "the nested lab (default scenarios)"

    step "nested lab: VFIO passthrough of emulated PCI devices ($vfio_scenarios)"
    lab/run.sh -q --vmm target/release/vmm --name vfio-ci -s "$vfio_scenarios" --mem 6144 \
        --device edu,dma_mask=0xffffffffffffffff --vfio 1234:11e8 \
        --object memory-backend-file,id=vram,size=64G,share=on,mem-path=/tmp/lab-vram.img \
        --device ivshmem-plain,memdev=vram,addr=0x4 --vfio 0000:00:04.0 \
        --device bochs-display,addr=0x5 --vfio 0000:00:05.0 --device virtio-rng-pci,addr=0x6 \
        2>&1 | tee "$LOGDIR/lab-vfio.log"
    lab_count lab-vfio "$LOGDIR/lab-vfio.log" "${PIPESTATUS[0]}" "the VFIO lab run"
    rm -f /tmp/lab-vram.img
fi

step "summary"
for p in "${parts[@]}"; do echo "  $p"; done
for p in "${problems[@]}"; do echo "  FAILED: $p"; done
echo "finished in $(( $(date +%s) - t0 )) s"
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
