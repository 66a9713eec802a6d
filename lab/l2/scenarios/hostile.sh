# Hostile guest (issue 7): /bin/hostile throws random config-space writes, random BAR accesses
# and garbage virtqueues at the PCI devices the guest does not need, then the guest checks that
# the VMM still serves the ones it does. Devices (from the L1 "hostile" line):
#   4 MiB virtio-blk  a victim (2 queues): virtio-pci is unbound, hostile drives its queues
#   virtio-console, virtio-net (2 pairs; L1 ARPs through its tap meanwhile): victims the same way
#   8 MiB virtio-blk  the working disk: excluded, must still read and write afterwards
#   virtio-rng        excluded, /dev/hwrng must still give bytes afterwards
#   00:00.0           the host bridge gets config writes too
# lab.seed=N, lab.secs=S and lab.race=0|1 on the kernel command line (defaults 1, 20 and 1).
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_blk virtio_rng
seed=1
secs=20
race=1
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        lab.seed=*) seed="${arg#lab.seed=}" ;;
        lab.secs=*) secs="${arg#lab.secs=}" ;;
        lab.race=*) race="${arg#lab.race=}" ;;
    esac
done
to() { if command -v timeout >/dev/null; then timeout "$@"; else shift; "$@"; fi; }

victim= work= wdev= rng= others=
for b in /sys/block/vd*; do
    [ -e "$b" ] || continue
    bdf=$(basename "$(dirname "$(readlink -f "$b/device")")")
    if [ "$(cat "$b/size")" = 8192 ]; then victim=$bdf; else work=$bdf; wdev=${b##*/}; fi
done
for d in /sys/bus/pci/devices/*; do
    bdf=${d##*/}
    case "$(cat $d/vendor):$(cat $d/device)" in
        0x1af4:0x1044) rng=$bdf ;;
        0x1af4:*) [ "$bdf" = "$victim" ] || [ "$bdf" = "$work" ] || others="$others $bdf" ;;
    esac
done
echo "LAB-HOSTILE-DEVS victim=$victim others=${others# } work=$work($wdev) rng=$rng seed=$seed secs=$secs"

# Before: the working disk and the rng work (the data written here is checked again after).
blkcheck() {  # blkcheck TAG SECTOR: 256 KiB of random data out and back, page cache dropped
    dd if=/dev/urandom of=/tmp/pat-$1 bs=64k count=4 2>/dev/null
    to 20 dd if=/tmp/pat-$1 of=/dev/$wdev bs=64k seek=$(($2 / 128)) conv=fsync 2>/dev/null
    sync; echo 3 > /proc/sys/vm/drop_caches
    a=$(md5sum < /tmp/pat-$1); b=$(to 20 dd if=/dev/$wdev bs=64k skip=$(($2 / 128)) count=4 2>/dev/null | md5sum)
    [ "$a" = "$b" ] && echo ok || echo "mismatch"
}
pre=$(blkcheck pre 4096)
echo "LAB-HOSTILE-PRE blk=$pre rng=$(to 10 dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c)"

for v in $victim $others; do
    [ -e /sys/bus/pci/devices/$v/driver ] && echo $v > /sys/bus/pci/devices/$v/driver/unbind
done
x=; [ -n "$work" ] && x="$x -x $work"; [ -n "$rng" ] && x="$x -x $rng"
vv=; for v in $victim $others; do vv="$vv -v $v"; done
# The racer thread works the victim's config space while its queues are driven: with one vCPU
# it interleaves with the main thread, with two (LAB_HOSTILE_CPUS=2 in L1) it runs beside it.
r=; [ "$race" = 1 ] && r=" -r"
echo "LAB-HOSTILE-START hostile -t $secs -s $seed$r$x$vv"
hostile -t "$secs" -s "$seed"$r $x $vv
echo "LAB-HOSTILE-EXIT $?"

# After: the guest kernel is fine, the working disk reads and writes, the rng gives bytes.
dmesg | grep -E "Oops|BUG:|WARNING:|general protection|Call Trace|watchdog|hung_task" | sed 's/^/LAB-HOSTILE-KMSG /'
echo "LAB-HOSTILE-GUEST-OOPS $(dmesg | grep -cE "Oops|BUG:|general protection")"
post=$(blkcheck post 8192)
[ "$(to 20 dd if=/dev/$wdev bs=64k skip=32 count=4 2>/dev/null | md5sum)" = "$(md5sum < /tmp/pat-pre)" ] || pre="lost"
printf 'LAB-HOSTILE-PATTERN-0123456789abcdef' | to 20 dd of=/dev/$wdev bs=512 seek=2048 conv=sync,fsync 2>/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches
pat=$(to 20 dd if=/dev/$wdev bs=512 skip=2048 count=1 2>/dev/null | head -c 36)
if [ "$pre" = ok ] && [ "$post" = ok ] && [ "$pat" = LAB-HOSTILE-PATTERN-0123456789abcdef ]; then
    echo "LAB-HOSTILE-BLK-OK $wdev"
else
    echo "LAB-HOSTILE-BLK-FAIL $wdev pre=$pre post=$post pattern=$pat"
fi
n=$(to 10 dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c)
if [ -z "$rng" ]; then echo "LAB-HOSTILE-RNG-ABSENT"
elif [ "$n" = 256 ]; then echo "LAB-HOSTILE-RNG-OK $n"
else echo "LAB-HOSTILE-RNG-FAIL $n"; fi

# The victim after its reset: the guest driver takes it back and reads it (informational).
if [ -n "$victim" ]; then
    echo $victim > /sys/bus/pci/drivers/virtio-pci/bind 2>/dev/null
    sleep 1
    vn=; for b in /sys/block/vd*; do
        [ "$(basename "$(dirname "$(readlink -f "$b/device")")")" = "$victim" ] && vn=${b##*/}
    done
    r=$( [ -n "$vn" ] && to 10 dd if=/dev/$vn bs=4k count=16 2>/dev/null | wc -c)
    echo "LAB-HOSTILE-VICTIM-REBIND dev=${vn:-none} read=${r:-0}"
fi
