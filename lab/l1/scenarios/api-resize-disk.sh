#!/bin/sh
# Scenario api-resize-disk (with lab/l2/scenarios/resizedisk.sh): a Debian guest booted through
# the API with an 8 MiB disk; once it has found it, L1 grows it to 16 MiB (vm.resize-disk) and
# the guest sees the new size and uses it. L1 finds the guest's write in the grown image.
S=/tmp/rsz.sock
LOG=/tmp/rsz.log
dd if=/dev/zero of=/tmp/rsz.img bs=1M count=8 2>/dev/null
. /lab/l1/lib-api-vm.sh
api_vm_boot resizedisk "" ',"disks":[{"path":"/tmp/rsz.img","id":"d0"}]'
waitfor "LAB-RESIZE-READY"
api $S PUT vm.resize-disk '{"id":"d0","desired_size":16777216}'
api_vm_end
echo "LAB-RESIZE-VMM-EXIT $rc"
echo "LAB-RESIZE-IMAGE-BYTES $(stat -c %s /tmp/rsz.img)"
dd if=/tmp/rsz.img bs=512 skip=30000 count=1 2>/dev/null | grep -q LAB-RESIZE-PATTERN-77 && echo "LAB-RESIZE-HOST-SEES-PATTERN"
cat $LOG
exit $rc
