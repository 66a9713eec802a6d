#!/bin/sh
# Scenario hotplug-fs (with lab/l2/scenarios/hotplugfs.sh): virtiofsd started in L1, the
# virtio-fs device hot-added to a running guest (vm.add-fs, shared memory at vm.create), the
# guest mounts it, reads and writes, unmounts; vm.remove-device takes it away.
S=/tmp/hpf.sock
rm -rf /tmp/hpfshare /tmp/hpf-vfs.sock*; mkdir -p /tmp/hpfshare
echo "hello from L1" > /tmp/hpfshare/from-l1.txt
virtiofsd --socket-path=/tmp/hpf-vfs.sock --shared-dir=/tmp/hpfshare --cache=never --sandbox=none > /tmp/hpf-vfsd.log 2>&1 &
i=0; while [ ! -S /tmp/hpf-vfs.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
LOG=/tmp/hpf.log
. /lab/l1/lib-api-vm.sh
api_vm_boot hotplugfs ',"shared":true'
waitfor "LAB-HPF-READY"
api $S PUT vm.add-fs '{"tag":"hotfs","socket":"/tmp/hpf-vfs.sock","id":"fs0"}'
waitfor "LAB-HPF-UNMOUNTED"
[ "$(cat /tmp/hpfshare/from-l2.txt 2>/dev/null)" = "written by L2 after a hot-add" ] && echo "LAB-HPF-L1-READ-L2-FILE"
api $S PUT vm.remove-device '{"id":"fs0"}'
api_vm_end
echo "LAB-HPF-VMM-EXIT $rc"
cat /tmp/hpf.log
echo "== virtiofsd"; cat /tmp/hpf-vfsd.log
exit $rc
