# PCI hotplug of a virtio-blk disk (lab scenario hotplug-blk, lab/l1/scenarios/hotplug-blk.sh):
# the guest boots with no disk and waits; L1 hot-adds one (vm.add-disk), the guest sees it
# (acpiphp), writes a pattern and syncs; L1 removes it (vm.remove-device: the guest's driver
# lets go, _EJ0), the guest sees it gone; L1 adds it again and the guest reads the pattern.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_blk
wait_dev() { # present|absent, up to 60 s
    i=0
    while [ $i -lt 600 ]; do
        if [ "$1" = present ]; then [ -e /sys/block/vda ] && return 0; else [ -e /sys/block/vda ] || return 0; fi
        sleep 0.1; i=$((i+1))
    done
    return 1
}
echo "LAB-HP-READY $(cut -d' ' -f1 /proc/uptime)"
if wait_dev present; then
    echo "LAB-HP-SEEN vda sectors=$(cat /sys/block/vda/size) at $(cut -d' ' -f1 /proc/uptime) $(ls /sys/bus/pci/devices | tr '\n' ' ')"
    echo "LAB-HP-AT $(readlink -f /sys/block/vda | grep -o '[0-9a-f]\{4\}:[0-9a-f]\{2\}:[0-9a-f]\{2\}\.[0-7]' | tail -1)"
    printf 'LAB-HP-PATTERN-42' | dd of=/dev/vda bs=512 seek=100 conv=sync,fsync 2>/dev/null
    echo 3 > /proc/sys/vm/drop_caches
    echo "LAB-HP-WROTE $(dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 17)"
else
    echo "LAB-HP-NOT-SEEN"
fi
if wait_dev absent; then
    echo "LAB-HP-GONE at $(cut -d' ' -f1 /proc/uptime)"
else
    echo "LAB-HP-STILL-THERE"
fi
if wait_dev present; then
    echo 3 > /proc/sys/vm/drop_caches
    echo "LAB-HP-READBACK $(dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 17)"
    echo "LAB-HP-AT-AGAIN $(readlink -f /sys/block/vda | grep -o '[0-9a-f]\{4\}:[0-9a-f]\{2\}:[0-9a-f]\{2\}\.[0-7]' | tail -1)"
else
    echo "LAB-HP-NOT-SEEN-AGAIN"
fi
