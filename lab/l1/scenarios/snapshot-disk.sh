#!/bin/sh
# Scenario snapshot-disk (run in L1 with $VMM, $VMLINUX, $INITRD, $CMDLINE and `api`): the Debian
# guest with a virtio-blk disk, snapshotted at its busybox prompt, restored in a new vmm where L1
# types at the prompt (it answers, its clock went on, the disk still works), then three clones of
# the snapshot at once, each with a copy of the disk, each running a command and powering off.
# Passes on what the guest printed in answer to typed commands and on what L1 finds in the
# disk images after the vmms exit.
S=/tmp/sd1.sock
rm -rf /tmp/sdsnap /tmp/sd*.in
dd if=/dev/zero of=/tmp/sd.img bs=1M count=8 2>/dev/null
waitfor() { i=0; while ! grep -q "$1" "$2" && [ $i -lt "${3:-1200}" ]; do sleep 0.1; i=$((i+1)); done; }
waitstate() { i=0; while ! api $1 GET vm.info 2>/dev/null | grep -q "\"state\":\"$2\"" && [ $i -lt 1500 ]; do sleep 0.1; i=$((i+1)); done; }
ping() { i=0; while ! api $1 GET vmm.ping > /dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }

: > /tmp/sd1.log
$VMM --api-socket path=$S < /dev/null > /tmp/sd1.log 2>&1 & pid=$!
ping $S
api $S PUT vm.create "{\"cpus\":{\"boot_vcpus\":1,\"max_vcpus\":1},\"memory\":{\"size\":268435456},\"payload\":{\"kernel\":\"$VMLINUX\",\"initramfs\":\"$INITRD\",\"cmdline\":\"$CMDLINE quiet lab.scenario=snapdisk\"},\"serial\":{\"mode\":\"Tty\"},\"console\":{\"mode\":\"Off\"},\"disks\":[{\"path\":\"/tmp/sd.img\",\"id\":\"root\"}]}"
api $S PUT vm.boot
waitfor "LAB-L2-DONE action=shell" /tmp/sd1.log
sleep 2
api $S PUT vm.pause
api $S PUT vm.snapshot '{"destination_url":"file:///tmp/sdsnap"}'
api $S PUT vmm.shutdown
wait $pid
echo "LAB-SNAPDISK-FIRST-EXIT $?"
cp /tmp/sd.img /tmp/sd-base.img
ls -ls /tmp/sdsnap

# Restore in a new vmm; its console input is a fifo L1 writes commands into.
S=/tmp/sd2.sock
mkfifo /tmp/sd2.in
: > /tmp/sd2.log
$VMM --api-socket path=$S < /tmp/sd2.in > /tmp/sd2.log 2>&1 & pid=$!
exec 3> /tmp/sd2.in
ping $S
t0=$(cut -d' ' -f1 /proc/uptime)
api $S PUT vm.restore '{"source_url":"file:///tmp/sdsnap","resume":true}'
echo 'echo LAB-SNAP""DISK-ANSWER $(cut -d" " -f1 /proc/uptime)' >&3
waitfor "^LAB-SNAPDISK-ANSWER" /tmp/sd2.log 600
t1=$(cut -d' ' -f1 /proc/uptime)
echo "LAB-SNAPDISK-RESTORE-TO-ANSWER $t0 $t1 (L1 uptime, s)"
echo 'printf LAB-SNAPDISK-AFTER | dd of=/dev/vda bs=512 seek=200 conv=sync 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches; echo LAB-SNAP""DISK-READBACK $(dd if=/dev/vda bs=512 skip=200 count=1 2>/dev/null | head -c 18) $(dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 19)' >&3
waitfor "^LAB-SNAPDISK-READBACK" /tmp/sd2.log 600
echo 'poweroff -f' >&3
waitstate $S Shutdown
api $S PUT vmm.shutdown
wait $pid
rrc=$?
exec 3>&-
echo "LAB-API-VMM-EXIT $rrc"
ready=$(grep -o 'LAB-SNAPDISK-READY [0-9.]*' /tmp/sd1.log | head -1 | cut -d' ' -f2)
answer=$(grep -o '^LAB-SNAPDISK-ANSWER [0-9.]*' /tmp/sd2.log | head -1 | cut -d' ' -f2)
echo "LAB-SNAPDISK-UPTIMES ready=$ready answer=$answer"
[ -n "$answer" ] && [ "${answer%.*}" -ge "${ready%.*}" ] && echo "LAB-SNAPDISK-CLOCK-ADVANCES"
dd if=/tmp/sd.img bs=512 skip=200 count=1 2>/dev/null | grep -q LAB-SNAPDISK-AFTER && echo "LAB-SNAPDISK-HOST-SEES-AFTER"

# Clones of the snapshot, each with its own copy of the disk as it was: one alone, then three
# at once. Each is `vmm --restore` (the command line's path) with its console input a fifo.
clone() { # N: start clone N in the background, its pid in cpidN, its console on fd N+3
    c=$1
    cp /tmp/sd-base.img /tmp/sdc$c.img
    mkfifo /tmp/sdc$c.in
    : > /tmp/sdc$c.log
    $VMM --restore source_url=file:///tmp/sdsnap --disk path=/tmp/sdc$c.img,id=root --serial tty < /tmp/sdc$c.in > /tmp/sdc$c.log 2>&1 &
    eval "cpid$c=$!"
    eval "exec $((c + 3))> /tmp/sdc$c.in"
    echo "LAB-SNAPDISK-CLONE-STARTED $c $(cut -d' ' -f1 /proc/uptime)"
}
type_in() { # N: clone N writes its disk copy, answers and powers off
    echo "printf LAB-CLONE-$1 | dd of=/dev/vda bs=512 seek=300 conv=sync 2>/dev/null; sync; echo LAB-SNAP\"\"DISK-CLONE-$1 \$(cat /sys/block/vda/size); poweroff -f" >&$(($1 + 3))
}
check() { # N: wait for clone N, then what it printed and what its disk copy holds
    c=$1
    eval "p=\$cpid$c"
    i=0; while kill -0 $p 2>/dev/null && [ $i -lt 900 ]; do sleep 0.2; i=$((i+1)); done
    kill -0 $p 2>/dev/null && { echo "LAB-SNAPDISK-CLONE-HUNG $c: killed"; kill -9 $p; }
    wait $p
    crc=$?
    eval "exec $((c + 3))>&-"
    echo "LAB-SNAPDISK-CLONE-EXIT $c $crc $(cut -d' ' -f1 /proc/uptime)"
    grep -q "^LAB-SNAPDISK-CLONE-$c 16384" /tmp/sdc$c.log && grep -q "reboot: Power down" /tmp/sdc$c.log \
        && dd if=/tmp/sdc$c.img bs=512 skip=300 count=1 2>/dev/null | grep -q "LAB-CLONE-$c" \
        && dd if=/tmp/sdc$c.img bs=512 skip=100 count=1 2>/dev/null | grep -q "LAB-SNAPDISK-BEFORE" \
        && [ "$crc" = 0 ] && ok=$((ok + 1))
    echo "== clone $c"; cat /tmp/sdc$c.log
}
ok=0
clone 1; type_in 1; check 1
echo "LAB-SNAPDISK-CLONE-ALONE-OK $ok"
ok=0
for c in 2 3 4; do clone $c; done
for c in 2 3 4; do type_in $c; done
for c in 2 3 4; do check $c; done
echo "LAB-SNAPDISK-CLONES-OK $ok"
echo "== first vmm"; cat /tmp/sd1.log
echo "== restored vmm"; cat /tmp/sd2.log
exit $rrc
