# Shared helpers for the project scripts (sourced).
LOGDIR=${LOGDIR:-target/logs}
mkdir -p "$LOGDIR"

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the build, the tests and the lab need. Installed only when missing.
ensure_host_packages() {
    local need=()
    command -v cargo >/dev/null || { echo "error: cargo not found: install Rust (rustup) first" >&2; exit 1; }
    command -v cc >/dev/null || need+=(gcc libc6-dev)
    command -v python3 >/dev/null || need+=(python3)
    # ACPICA's iasl: a test disassembles the DSDT with it (arch/src/acpi/dsdt.rs).
    command -v iasl >/dev/null || need+=(acpica-tools)
    if [ ${#need[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "error: missing packages ${need[*]} and not root: install them with apt-get" >&2
            exit 1
        fi
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
}

# True when this host's KVM can run a stock Linux kernel (hardware virtualization visible to us).
# A PVM or emulated KVM (no vmx/svm flag in this machine's CPU) cannot; the nested lab can.
host_kvm_runs_linux() {
    [ -c /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo
}
