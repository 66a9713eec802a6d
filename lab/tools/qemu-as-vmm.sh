#!/bin/sh
# Stand-in "vmm" for the lab: accepts the Cloud-Hypervisor-style options the scenarios use
# and runs the packed reference QEMU (microvm, KVM) instead. Lets the whole scenario set be
# exercised before our vmm exists:  lab/run.sh --vmm lab/tools/qemu-as-vmm.sh --ref-qemu
# (appends reboot=t: microvm has no keyboard controller, so reboot=k would hang)
kernel= initrd= cmdline= cpus=1 mem=256M serial=stdio
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel=$2; shift ;;
        --initramfs) initrd=$2; shift ;;
        --cmdline) cmdline=$2; shift ;;
        --cpus) cpus=${2#boot=}; cpus=${cpus%%,*}; shift ;;
        --memory) mem=${2#size=}; mem=${mem%%,*}; shift ;;
        --serial) case "$2" in off) serial=null ;; file=*) serial=file:${2#file=} ;; *) serial=stdio ;; esac; shift ;;
        --console) shift ;;
        --help|-h) echo "qemu-as-vmm: --kernel --initramfs --cmdline --cpus boot=N --memory size=S --serial tty|off|file=P"; exit 0 ;;
        *) echo "qemu-as-vmm: unsupported option $1" >&2; exit 2 ;;
    esac
    shift
done
exec ${QEMU:-qemu-system-x86_64} -accel kvm -M microvm -cpu host -m "$mem" -smp "$cpus" \
    -nodefaults -no-user-config -display none -serial "$serial" -no-reboot \
    -kernel "$kernel" ${initrd:+-initrd "$initrd"} -append "$cmdline reboot=t"
