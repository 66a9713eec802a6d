#!/bin/sh
# Scenario vfio-ivshmem-hotplug (with lab/l2/scenarios/hotplugivshmem.sh): ivshmem-plain, whose
# BAR2 is 64 GiB, hot-added to a running guest booted through the API with no device: its BARs
# are placed in the 64-bit window the DSDT declared at boot, and the guest writes and reads
# patterns through BAR2 (lab.py then finds them in the host's backing file).
S=/tmp/hpi.sock
BDF=0000:00:04.0
LOG=/tmp/hpi.log
. /lab/l1/lib-api-vm.sh
api_vm_boot hotplugivshmem
waitfor "LAB-HPI-READY"
api $S PUT vm.add-device "{\"path\":\"/sys/bus/pci/devices/$BDF\",\"id\":\"vram\"}"
api_vm_end
echo "LAB-HPI-VMM-EXIT $rc"
cat /tmp/hpi.log
exit $rc
