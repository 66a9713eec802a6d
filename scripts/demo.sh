#!/usr/bin/env bash
# The main job: boot a real Linux guest with vmm and show its console.
# On a host whose KVM runs Linux, vmm boots it directly; otherwise the nested lab does
# (QEMU/TCG runs an L1 Linux with nested KVM, and vmm boots the guest inside it).
#   scripts/demo.sh            auto
#   DEMO_MODE=lab|direct scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure_host_packages
step "build vmm"
scripts/build.sh
step "fetch the Debian guest kernel and build the guest initramfs (cached)"
lab/fetch.sh

mode=${DEMO_MODE:-auto}
if [ "$mode" = auto ]; then
    if host_kvm_runs_linux; then mode=direct; else mode=lab; fi
fi
if [ "$mode" = direct ]; then
    step "this host's KVM runs Linux: booting the guest directly"
    set -x
    exec target/release/vmm --kernel lab/out/l2/vmlinux --initramfs lab/out/l2/initramfs.cpio.gz \
        --cmdline "console=ttyS0 reboot=k panic=-1 lab.scenario=boot" \
        --cpus boot=2 --memory size=512M --serial tty --console off
else
    step "this host's KVM cannot run a stock Linux kernel: booting it in the nested lab (QEMU/TCG L1 + nested KVM)"
    exec lab/run.sh -s 'kvm,boot-pvh' --vmm target/release/vmm
fi
