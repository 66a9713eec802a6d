#!/usr/bin/env bash
# Build the release vmm. A convenience only: plain `cargo build --release` gives the same
# static-pie binary (.cargo/config.toml, scripts/rustc-static-bins).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p vmm -j2 "$@"
