# virtio-blk: /dev/vda is writable, /dev/vdb read-only. Write a known pattern to vda at
# sector 2048 and sync (the host then checks the image file); a write to vdb must fail.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_blk
echo "LAB-BLK-DEVS $(ls /sys/block | tr '\n' ' ')"
echo "LAB-BLK-SIZE vda $(cat /sys/block/vda/size 2>/dev/null) vdb $(cat /sys/block/vdb/size 2>/dev/null) ro=$(cat /sys/block/vdb/ro 2>/dev/null)"
printf 'LAB-PATTERN-0123456789abcdef' | dd of=/dev/vda bs=512 seek=2048 conv=sync 2>/dev/null
sync
echo "LAB-BLK-READBACK $(dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | head -c 28)"
if printf 'x' | dd of=/dev/vdb bs=512 seek=1 conv=sync,fsync 2>/dev/null; then
    echo "LAB-BLK-RO-WRITE-ACCEPTED"
else
    echo "LAB-BLK-RO-REFUSED"
fi
