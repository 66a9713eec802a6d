#!/bin/sh
# Scenario vfio-hotplug-two (with lab/l2/scenarios/hotplugtwo.sh): a guest booted through the
# API with ivshmem passed through; edu hot-added joins the same VFIO container (no second
# mapping of guest RAM) and its driver's self-test passes; ivshmem (passed through at boot) is
# removed while edu stays, then edu: each one's VFIO group is free in L1 once it is removed,
# not before.
S=/tmp/hp2.sock
EDU=0000:00:03.0 IVS=0000:00:04.0
ge=$(basename "$(readlink /sys/bus/pci/devices/$EDU/iommu_group)")
gi=$(basename "$(readlink /sys/bus/pci/devices/$IVS/iommu_group)")
free() { ( exec 5< /dev/vfio/$1 ) 2>/dev/null; }
LOG=/tmp/hp2.log
. /lab/l1/lib-api-vm.sh
api_vm_boot hotplugtwo '' ",\"devices\":[{\"path\":\"/sys/bus/pci/devices/$IVS\",\"id\":\"vram\"}]"
waitfor "LAB-HP2-READY"
api $S PUT vm.add-device "{\"path\":\"/sys/bus/pci/devices/$EDU\",\"id\":\"edu0\"}"
waitfor "LAB-HP2-EDU"
free $gi || echo "LAB-HP2-IVSHMEM-GROUP-HELD"
free $ge || echo "LAB-HP2-EDU-GROUP-HELD"
api $S PUT vm.remove-device '{"id":"vram"}'
free $gi && echo "LAB-HP2-IVSHMEM-GROUP-FREE"
free $ge || echo "LAB-HP2-EDU-GROUP-STILL-HELD"
waitfor "LAB-HP2-EDU-STAYS"
api $S PUT vm.remove-device '{"id":"edu0"}'
free $ge && echo "LAB-HP2-EDU-GROUP-FREE"
api_vm_end
echo "LAB-HP2-VMM-EXIT $rc"
cat /tmp/hp2.log
exit $rc
