#!/bin/sh
# Scenario virtiofs (with lab/l2/scenarios/virtiofs.sh): L1 runs virtiofsd (Debian trixie's,
# packed with its own libc) on /tmp/share; the guest mounts it through the vmm's vhost-user
# frontend, reads what L1 wrote, writes a file L1 then reads (host-observed), runs fsx-lite and
# a throughput pass; then L1 kills virtiofsd and the guest sees its file operations fail while
# the VM stays up and powers off cleanly.
rm -rf /tmp/share /tmp/vfs.sock*
mkdir -p /tmp/share
token="from L1 $(cat /proc/sys/kernel/random/uuid)"
echo "$token" > /tmp/share/from-l1.txt
virtiofsd --socket-path=/tmp/vfs.sock --shared-dir=/tmp/share --cache=never --sandbox=none \
    > /tmp/vfsd.log 2>&1 &
dpid=$!
i=0; while [ ! -S /tmp/vfs.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
: > /tmp/fs.log
$VMM --kernel $VMLINUX --initramfs $INITRD --cmdline "$CMDLINE quiet lab.scenario=virtiofs" --cpus boot=1 \
    --memory size=256M,shared=on --serial tty --console off --fs tag=labfs,socket=/tmp/vfs.sock \
    > /tmp/fs.log 2>&1 &
pid=$!
i=0; while ! grep -q "LAB-FS-KILL-BACKEND-NOW" /tmp/fs.log && kill -0 $pid 2>/dev/null && [ $i -lt 3000 ]; do
    sleep 0.1; i=$((i+1))
done
# (The guest's console lines end in CR LF.)
tr -d '\r' < /tmp/fs.log > /tmp/fs.txt
grep -q "^LAB-FS-READ $token\$" /tmp/fs.txt && echo "LAB-FS-GUEST-READ-L1-FILE"
written=$(grep -o '^LAB-FS-WROTE .*' /tmp/fs.txt | cut -d' ' -f2-)
[ -n "$written" ] && [ "$(cat /tmp/share/from-l2.txt)" = "$written" ] && echo "LAB-FS-L1-READ-L2-FILE"
[ -s /tmp/share/fsx.dat ] && echo "LAB-FS-L1-SEES-FSX-FILE $(stat -c %s /tmp/share/fsx.dat) bytes"
kill -9 $dpid
wait $dpid 2>/dev/null
echo "LAB-FS-BACKEND-KILLED"
wait $pid
rc=$?
echo "LAB-FS-VMM-EXIT $rc"
cat /tmp/fs.log
echo "== virtiofsd"; cat /tmp/vfsd.log
exit $rc
