#!/bin/sh
# Stand-in "vmm" for the lab: accepts the Cloud-Hypervisor-style options the scenarios use
# and runs the packed reference QEMU (KVM) instead. Lets the whole scenario set be
# exercised before our vmm exists:  lab/run.sh --vmm lab/tools/qemu-as-vmm.sh --ref-qemu
# Without devices the machine is microvm (appends reboot=t: microvm has no keyboard controller,
# so reboot=k would hang). --device path=/sys/bus/pci/devices/BDF[,id=NAME][,x_nv_gpudirect_clique=N]
# becomes -device vfio-pci,host=BDF[,id=NAME][,x-nv-gpudirect-clique=N] on a q35 machine
# (microvm has no PCI; set QEMU_AS_VMM_MACHINE to choose another, e.g. microvm,pcie=on).
# QEMU_AS_VMM_VFIO=opt=val,... is appended to every vfio-pci (e.g. x-no-mmap=on: BARs trapped,
# not mapped, and so not DMA-mapped either); QEMU_AS_VMM_ARGS adds raw QEMU arguments (e.g.
# "-trace vfio_listener_region_add_ram -msg timestamp=on"). In the lab: --env NAME=VALUE.
# When QEMU_AS_VMM_VFIO is unset, a device with a BAR of 4 GiB or more gets x-no-mmap=on: QEMU
# DMA-maps every mmapped BAR (for peer-to-peer) each time the guest enables memory decoding,
# and in the lab one such map of a 64 GiB BAR takes 50-80 s, again and again during enumeration
# (L2 never reached init in 400 s). QEMU_AS_VMM_VFIO= (set, empty) keeps the mmap.
big_bar() {  # sysfs device dir -> true when one of its BARs is >= 4 GiB
    while read -r start end flags; do
        [ $((end)) -ne 0 ] && [ $((end - start + 1)) -ge 4294967296 ] && return 0
    done < "$1/resource"
    return 1
}
kernel= initrd= cmdline= cpus=1 mem=256M serial=stdio devs=
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel=$2; shift ;;
        --initramfs) initrd=$2; shift ;;
        --cmdline) cmdline=$2; shift ;;
        --cpus) cpus=${2#boot=}; cpus=${cpus%%,*}; shift ;;
        --memory) mem=${2#size=}; mem=${mem%%,*}; shift ;;
        --serial) case "$2" in off) serial=null ;; file=*) serial=file:${2#file=} ;; *) serial=stdio ;; esac; shift ;;
        --console) shift ;;
        --device)
            dev=
            for kv in $(echo "$2" | tr ',' ' '); do
                case "$kv" in
                    path=*) p=${kv#path=}; p=${p%/}; dev="vfio-pci,host=${p##*/}$dev" ;;
                    id=*) dev="$dev,$kv" ;;
                    x_nv_gpudirect_clique=*) dev="$dev,x-nv-gpudirect-clique=${kv#*=}" ;;
                    *) echo "qemu-as-vmm: unsupported --device option $kv" >&2; exit 2 ;;
                esac
            done
            case "$dev" in vfio-pci,*) ;; *) echo "qemu-as-vmm: --device needs path=" >&2; exit 2 ;; esac
            opts=$QEMU_AS_VMM_VFIO
            if [ -z "${QEMU_AS_VMM_VFIO+set}" ] && big_bar "$p"; then
                opts=x-no-mmap=on
                echo "qemu-as-vmm: ${p##*/} has a BAR >= 4 GiB: x-no-mmap=on (QEMU_AS_VMM_VFIO= keeps the mmap)" >&2
            fi
            devs="$devs -device $dev${opts:+,$opts}"; shift ;;
        --help|-h) echo "qemu-as-vmm: --kernel --initramfs --cmdline --cpus boot=N --memory size=S --serial tty|off|file=P --device path=SYSFS[,id=N]"; exit 0 ;;
        *) echo "qemu-as-vmm: unsupported option $1" >&2; exit 2 ;;
    esac
    shift
done
machine=microvm
[ -n "$devs" ] && machine=q35
machine=${QEMU_AS_VMM_MACHINE:-$machine}
[ -n "$devs" ] && set -x  # show the QEMU command line in the log
# $devs, $QEMU_AS_VMM_ARGS: unquoted on purpose (split into words; no spaces inside one)
exec ${QEMU:-qemu-system-x86_64} -accel kvm -M "$machine" -cpu host -m "$mem" -smp "$cpus" \
    -nodefaults -no-user-config -display none -serial "$serial" -no-reboot $devs $QEMU_AS_VMM_ARGS \
    -kernel "$kernel" ${initrd:+-initrd "$initrd"} -append "$cmdline reboot=t"
