# Snapshot with a disk, then clones (lab scenario snapshot-disk): virtio-blk is loaded and used
# (a pattern written at sector 100 and synced, read back), then the guest waits at a busybox
# prompt on its console. L1 snapshots it there and kills the vmm; a new vmm restores it and L1
# types commands at the prompt (the disk written at sector 200, synced, read back past the page
# cache; the uptime), then poweroff; three clones of the snapshot each get a copy of the disk,
# type their own command and power off. Markers typed by L1 are split with "" so that only the
# shell's output, not the echo of the typed line, holds them.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_blk
printf 'LAB-SNAPDISK-BEFORE' | dd of=/dev/vda bs=512 seek=100 conv=sync 2>/dev/null
sync
echo 3 > /proc/sys/vm/drop_caches
echo "LAB-SNAPDISK-READY $(cut -d' ' -f1 /proc/uptime) $(dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 19)"
LAB_ACTION=shell
