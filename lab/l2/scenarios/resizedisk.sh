# vm.resize-disk (lab scenario api-resize-disk, lab/l1/scenarios/api-resize-disk.sh): the guest
# boots with an 8 MiB disk and says its size; L1 grows it to 16 MiB; the guest's virtio-blk
# driver takes the config-change interrupt and reports the new size, and the guest writes and
# reads back a sector beyond the old end.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_blk
i=0; while [ ! -e /sys/block/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
echo "LAB-RESIZE-READY sectors=$(cat /sys/block/vda/size)"
i=0; while [ "$(cat /sys/block/vda/size)" = 16384 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "LAB-RESIZE-NOW sectors=$(cat /sys/block/vda/size)"
dmesg | grep 'new size' | sed 's/^\[[^]]*\] *//; s/^/LAB-RESIZE-DMESG /'
printf 'LAB-RESIZE-PATTERN-77' | dd of=/dev/vda bs=512 seek=30000 conv=sync,fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
echo "LAB-RESIZE-READBACK $(dd if=/dev/vda bs=512 skip=30000 count=1 2>/dev/null | head -c 21)"
