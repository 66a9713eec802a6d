#!/bin/sh
# Scenario vfio-edu-hotplug (with lab/l2/scenarios/hotplugvfio.sh): L1's edu (bound to vfio-pci)
# hot-added to a running Debian guest booted through the API with no device, removed, and added
# again. The guest's edu_test driver runs its self-test each time the device arrives; L1 checks
# that the device's VFIO group is held while attached and free once removed (another process can
# open it), and prints add -> self-test done and remove latencies as L1's uptime counts them.
# HPV_CREATE (more of vm.create's body) and HPV_DEVICE (more of vm.add-device's) change where
# the device goes: scenario vfio-segment-hotplug puts it in slot 6 of PCI segment 1.
S=/tmp/hpv.sock
BDF=0000:00:03.0
g=$(basename "$(readlink /sys/bus/pci/devices/$BDF/iommu_group)")
up() { cut -d' ' -f1 /proc/uptime; }
group_free() { ( exec 5< /dev/vfio/$g ) 2>/dev/null; }
LOG=/tmp/hpv.log
. /lab/l1/lib-api-vm.sh
api_vm_boot hotplugvfio "" "${HPV_CREATE:-}"
waitfor "LAB-HPV-READY"
group_free && echo "LAB-HPV-GROUP-FREE-BEFORE $g"
t0=$(up)
api $S PUT vm.add-device "{\"path\":\"/sys/bus/pci/devices/$BDF\",\"id\":\"edu0\"${HPV_DEVICE:-}}"
waitfor "LAB-HPV-FIRST"
t1=$(up)
echo "LAB-HPV-ADD-TO-SELFTEST $t0 $t1 (L1 uptime, s)"
group_free && echo "LAB-HPV-GROUP-FREE-WHILE-ATTACHED"
t0=$(up)
api $S PUT vm.remove-device '{"id":"edu0"}'
t1=$(up)
echo "LAB-HPV-REMOVE-RETURNED $t0 $t1 (L1 uptime, s)"
group_free && echo "LAB-HPV-GROUP-FREE-AFTER-REMOVE $g"
waitfor "LAB-HPV-GONE"
api $S PUT vm.add-device "{\"path\":\"/sys/bus/pci/devices/$BDF\",\"id\":\"edu0\"${HPV_DEVICE:-}}"
api_vm_end
echo "LAB-HPV-VMM-EXIT $rc"
echo "LAB-HPV-DRIVER-AFTER $(basename $(readlink /sys/bus/pci/devices/$BDF/driver))"
group_free && echo "LAB-HPV-GROUP-FREE-AT-END"
cat /tmp/hpv.log
exit $rc
