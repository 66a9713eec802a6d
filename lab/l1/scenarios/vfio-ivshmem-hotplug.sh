#!/bin/sh
# Scenario vfio-ivshmem-hotplug (with lab/l2/scenarios/hotplugivshmem.sh): ivshmem-plain, whose
# BAR2 is 64 GiB, hot-added to a running guest booted through the API with no device: its BARs
# are placed in the 64-bit window the DSDT declared at boot, and the guest writes and reads
# patterns through BAR2 (lab.py then finds them in the host's backing file).
S=/tmp/hpi.sock
BDF=0000:00:04.0
: > /tmp/hpi.log
waitfor() { i=0; while ! grep -q "$1" /tmp/hpi.log && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; }
$VMM --api-socket path=$S > /tmp/hpi.log 2>&1 & pid=$!
i=0; while ! api $S GET vmm.ping > /dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
api $S PUT vm.create "{\"cpus\":{\"boot_vcpus\":1,\"max_vcpus\":1},\"memory\":{\"size\":268435456},\"payload\":{\"kernel\":\"$VMLINUX\",\"initramfs\":\"$INITRD\",\"cmdline\":\"$CMDLINE quiet lab.scenario=hotplugivshmem\"},\"serial\":{\"mode\":\"Tty\"},\"console\":{\"mode\":\"Off\"}}"
api $S PUT vm.boot
waitfor "LAB-HPI-READY"
api $S PUT vm.add-device "{\"path\":\"/sys/bus/pci/devices/$BDF\",\"id\":\"vram\"}"
waitfor "LAB-L2-DONE"
i=0; while ! api $S GET vm.info 2>/dev/null | grep -q '"state":"Shutdown"' && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
api $S PUT vmm.shutdown
wait $pid
rc=$?
echo "LAB-HPI-VMM-EXIT $rc"
cat /tmp/hpi.log
exit $rc
