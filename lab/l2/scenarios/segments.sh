# PCI segments (--platform num_pci_segments=3): every PCI function L2's kernel found with its
# domain (the segment), vendor:device, driver and NUMA node; the root complexes it made; then
# the disk that was put on segment 1 written and read back (the host checks the image),
# and the virtio-rng on segment 2 read.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_blk virtio_rng
for d in /sys/bus/pci/devices/*; do
    drv=$(basename "$(readlink $d/driver)" 2>/dev/null)
    echo "LAB-SEG-DEV ${d##*/} $(sed 's/^0x//' $d/vendor):$(sed 's/^0x//' $d/device) driver=$drv node=$(cat $d/numa_node)"
done
for r in /sys/devices/pci*:*; do echo "LAB-SEG-ROOT ${r##*/}"; done
# The disk on segment 1, whatever its name (the kernel probes domain 0's devices first).
disk=
for b in /sys/block/vd*; do
    at=$(readlink -f $b | grep -o '[0-9a-f]\{4\}:[0-9a-f]\{2\}:[0-9a-f]\{2\}\.[0-7]' | tail -1)
    echo "LAB-SEG-DISK ${b##*/} at $at size=$(cat $b/size)"
    [ "$at" = 0001:00:01.0 ] && disk=/dev/${b##*/}
done
printf 'LAB-SEG-PATTERN-0123456789abcdef' | dd of=$disk bs=512 seek=2048 conv=sync 2>/dev/null
sync
echo "LAB-SEG-READBACK $(dd if=$disk bs=512 skip=2048 count=1 2>/dev/null | head -c 32)"
echo "LAB-SEG-RNG-CURRENT $(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
echo "LAB-SEG-RNG-BYTES $(dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c)"
