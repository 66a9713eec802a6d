#!/bin/sh
# Scenario hotplug-blk (with lab/l2/scenarios/hotplug.sh): a Debian guest booted through the API
# with no disk; L1 hot-adds an 8 MiB image (vm.add-disk), the guest finds it and writes to it;
# L1 removes it (vm.remove-device) once written, and the guest sees it go; L1 adds it again and
# the guest reads back what it wrote. L1 checks the image after the vmm exits, and prints how
# long each step took as L1 saw it (API call -> the guest's line on the console).
# HP_CREATE (more of vm.create's body) and HP_DISK (more of vm.add-disk's) change where the disk
# goes: scenario hotplug-segment puts it in slot 4 of PCI segment 1.
S=/tmp/hp.sock
dd if=/dev/zero of=/tmp/hp.img bs=1M count=8 2>/dev/null
up() { cut -d' ' -f1 /proc/uptime; }
LOG=/tmp/hp.log
. /lab/l1/lib-api-vm.sh
api_vm_boot hotplug "" "${HP_CREATE:-}"
waitfor "LAB-HP-READY"
t0=$(up)
api $S PUT vm.add-disk "{\"path\":\"/tmp/hp.img\",\"id\":\"hp0\"${HP_DISK:-}}"
waitfor "LAB-HP-SEEN"
t1=$(up)
echo "LAB-HP-ADD-TO-SEEN $t0 $t1 (L1 uptime, s)"
waitfor "LAB-HP-WROTE"
api $S GET vm.info | grep -o '"hp0"[^}]*}' | head -3
t0=$(up)
api $S PUT vm.remove-device '{"id":"hp0"}'
t1=$(up)
echo "LAB-HP-REMOVE-RETURNED $t0 $t1 (L1 uptime, s)"
waitfor "LAB-HP-GONE"
# Removed means removed: vm.info no longer lists it, and the same image can be added again.
api $S GET vm.info | grep -q '"hp0"' || echo "LAB-HP-INFO-WITHOUT-HP0"
api $S PUT vm.add-disk "{\"path\":\"/tmp/hp.img\",\"id\":\"hp0\"${HP_DISK:-}}"
waitfor "LAB-HP-READBACK"
api_vm_end
echo "LAB-HP-VMM-EXIT $rc"
dd if=/tmp/hp.img bs=512 skip=100 count=1 2>/dev/null | grep -q LAB-HP-PATTERN-42 && echo "LAB-HP-HOST-SEES-PATTERN"
cat /tmp/hp.log
exit $rc
