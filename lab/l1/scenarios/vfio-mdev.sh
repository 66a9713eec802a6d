#!/bin/sh
# Scenario vfio-mdev (needs the lab's L1 kernel, which has the kernel's mtty sample: lab/run.sh
# --l1-kernel iommufd): a mediated device made in L1 (an mtty mdev: a two-port 16550 PCI card,
# 4348:3253, that loops back what is written to a port) passed to a Debian guest by its path
# /sys/bus/mdev/devices/UUID, once through the legacy container (iommufd=off) and once with the
# backend the vmm picks (iommufd: the mdev has a VFIO cdev). Each time L2's 8250_pci driver takes
# the card, a pattern written to each of its ports is read back through the same port (the bytes
# went through the mdev's I/O BAR and came back by its interrupt), and the vmm exits 0. At the
# end the mdev is removed (nothing holds it).
P=/sys/devices/virtual/mtty/mtty/mdev_supported_types/mtty-2
[ -d $P ] || { echo "LAB-SKIP this L1 kernel has no mtty mdev parent (lab/run.sh --l1-kernel iommufd)"; exit 0; }
U=83b8f4f2-509f-382f-3c1e-e6bfe0fa1001
echo $U > $P/create || { echo "LAB-MDEV-CREATE-FAILED"; exit 1; }
D=/sys/bus/mdev/devices/$U
echo "LAB-MDEV-HOST $U type=$(basename $(readlink $D/mdev_type)) group=$(basename $(readlink $D/iommu_group)) cdev=$(ls $D/vfio-dev 2>/dev/null)"
run_one() {
    label=$1 opt=$2 log=/tmp/mdev-$1.log
    $VMM --kernel $VMLINUX --initramfs $INITRD --cmdline "$CMDLINE quiet lab.scenario=mdev" \
        --cpus boot=1 --memory size=256M --serial tty --console off \
        --device path=$D$opt -v > $log 2>&1
    rc=$?
    echo "LAB-MDEV-RUN $label exit=$rc ports=$(grep -c 'LAB-MDEV-LOOPBACK .* ok' $log)"
    grep -E 'LAB-MDEV|vmm:|vfio|seccomp|Kernel panic' $log | sed "s/^/[$label] /"
}
run_one off ",iommufd=off"
run_one auto ""
echo 1 > $D/remove && echo "LAB-MDEV-REMOVED"
exit 0
