#!/bin/sh
# Scenario vfio-vf: an SR-IOV virtual function passed to L2. Needs QEMU 10's igb in L0 and the
# lab's L1 kernel (igb, igbvf): lab/run.sh --qemu bpo --l1-kernel iommufd
#   --device pcie-root-port,id=rp9,chassis=9,addr=0x9 --device igb,bus=rp9,netdev=n9
#   --qemu-arg=-netdev --qemu-arg=user,id=n9
# L1 brings the PF (igb) up, enables one VF without letting a host driver take it, binds the VF to
# vfio-pci and passes it; L2 (on the same 6.12 kernel, for its igbvf) lists it and brings its
# driver up (lab/l2/scenarios/vf.sh); L1 then checks the VF is still its PF's, bound to vfio-pci,
# and disables it again.
PF=""
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor):$(cat $d/device)" = 0x8086:0x10c9 ] && { PF=${d##*/}; break; }
done
[ -n "$PF" ] || { echo "LAB-SKIP no igb PF in L1 (lab/run.sh --qemu bpo --device pcie-root-port,id=rp9,chassis=9,addr=0x9 --device igb,bus=rp9)"; exit 0; }
[ -n "$L1_KERNEL_IMAGE" ] || { echo "LAB-SKIP the VF needs the lab's L1 kernel (--l1-kernel iommufd)"; exit 0; }
P=/sys/bus/pci/devices/$PF
net=$(ls $P/net 2>/dev/null | head -1)
[ -n "$net" ] && ip link set $net up
echo 0 > $P/sriov_drivers_autoprobe
echo 1 > $P/sriov_numvfs || { echo "LAB-VF-ENABLE-FAILED"; exit 1; }
VF=$(basename "$(readlink $P/virtfn0)")
V=/sys/bus/pci/devices/$VF
echo vfio-pci > $V/driver_override
echo $VF > /sys/bus/pci/drivers_probe
echo "LAB-VF-HOST pf=$PF pfdriver=$(basename $(readlink $P/driver)) pfnet=$net totalvfs=$(cat $P/sriov_totalvfs) vf=$VF id=$(cat $V/vendor):$(cat $V/device) driver=$(basename $(readlink $V/driver)) physfn=$(basename $(readlink $V/physfn)) group=$(basename $(readlink $V/iommu_group))"
$VMM --kernel $L1_KERNEL_IMAGE --initramfs $INITRD --cmdline "$CMDLINE quiet lab.scenario=vf" \
    --cpus boot=1 --memory size=256M --serial tty --console off \
    --device path=$V > /tmp/vf.log 2>&1
rc=$?
cat /tmp/vf.log
echo "LAB-VF-VMM-EXIT $rc"
echo "LAB-VF-AFTER driver=$(basename $(readlink $V/driver)) physfn=$(basename $(readlink $V/physfn))"
dmesg | grep -iE "igb|vfio" | tail -n 8 | sed 's/^/LAB-VF-L1-DMESG /'
echo 0 > $P/sriov_numvfs && [ ! -e $V ] && echo "LAB-VF-DISABLED"
exit $rc
