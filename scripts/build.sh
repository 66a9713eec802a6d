#!/usr/bin/env bash
# Build the release vmm as a static-pie binary: no dynamic loader, no shared libraries to map
# and relocate at exec. On our hosts this alone takes first light from ~1.35x to ~1.05x of the
# bare-KVM floor and resident memory from 2.7 to 1.7 MiB (see README, Benchmarks).
# crt-static is passed to the final crate only (as RUSTFLAGS it would also reach proc-macros).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo rustc --release -p vmm --bin vmm -j2 -- -C target-feature=+crt-static
