#!/bin/sh
# Scenario vfio-iommufd (needs an L1 kernel with iommufd: lab/run.sh --l1-kernel iommufd): L1's
# edu passed to a Debian guest three times, with iommufd=on, with no backend option (the vmm
# picks: iommufd for one device where /dev/iommu exists) and with iommufd=off. Each time the
# guest's edu_test self-test runs (ident, MSI, DMA into guest RAM and back: the DMA goes through
# the IOMMU domain the backend set up), and L1 lists the vmm's open files while the device is in
# use: /dev/iommu and the device's cdev /dev/vfio/devices/vfioN for iommufd, /dev/vfio/vfio and
# the group's /dev/vfio/N for the legacy container. After the last run the device is still bound
# to vfio-pci and free (its group opens).
BDF=0000:00:03.0
[ -e /dev/iommu ] || { echo "LAB-SKIP this L1 kernel has no /dev/iommu (lab/run.sh --l1-kernel iommufd)"; exit 0; }
g=$(basename "$(readlink /sys/bus/pci/devices/$BDF/iommu_group)")
cdev=$(ls /sys/bus/pci/devices/$BDF/vfio-dev 2>/dev/null)
echo "LAB-IOMMUFD-HOST group=$g cdev=$cdev"
fds() { ls -l /proc/$1/fd 2>/dev/null | sed -n 's/.* -> //p' | grep -E '^/dev/(iommu|vfio)' | sort | tr '\n' ' '; }
has() { case " $1 " in *" $2 "*) echo yes;; *) echo no;; esac; }
run_one() {
    label=$1 opt=$2 log=/tmp/iommufd-$1.log
    $VMM --kernel $VMLINUX --initramfs $INITRD --cmdline "$CMDLINE quiet lab.scenario=edu" \
        --cpus boot=1 --memory size=256M --serial tty --console off \
        --device path=/sys/bus/pci/devices/$BDF$opt > $log 2>&1 &
    pid=$!
    # The device is opened before the guest starts; wait for its file, then look once more.
    i=0
    while [ $i -lt 400 ] && kill -0 $pid 2>/dev/null; do
        case "$(fds $pid)" in *"/dev/vfio/devices/"*|*"/dev/vfio/$g "*) break ;; esac
        sleep 0.05; i=$((i+1))
    done
    sleep 0.2
    seen=$(fds $pid)
    wait $pid; rc=$?
    echo "LAB-IOMMUFD-FDS $label iommu=$(has "$seen" /dev/iommu) cdev=$(has "$seen" /dev/vfio/devices/$cdev) container=$(has "$seen" /dev/vfio/vfio) group=$(has "$seen" /dev/vfio/$g)"
    echo "LAB-IOMMUFD-RUN $label exit=$rc selftest=$(grep -c 'EDU-TEST RESULT PASS' $log)"
    grep -E 'EDU-TEST|vmm:|seccomp' $log | sed "s/^/[$label] /"
}
run_one on ",iommufd=on"
run_one auto ""
run_one off ",iommufd=off"
echo "LAB-IOMMUFD-DRIVER-AFTER $(basename $(readlink /sys/bus/pci/devices/$BDF/driver))"
( exec 5< /dev/vfio/$g ) 2>/dev/null && echo "LAB-IOMMUFD-GROUP-FREE-AT-END"
exit 0
