# virtio-blk throughput: sequential write then read of the whole of /dev/vda (direct I/O where
# busybox dd supports it, else through the page cache after a drop), in MiB/s.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_blk
mb=$(( $(cat /sys/block/vda/size) / 2048 ))
t0=$(cut -d' ' -f1 /proc/uptime)
dd if=/dev/zero of=/dev/vda bs=1M count=$mb conv=fsync 2>/dev/null
t1=$(cut -d' ' -f1 /proc/uptime)
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/vda of=/dev/null bs=1M count=$mb 2>/dev/null
t2=$(cut -d' ' -f1 /proc/uptime)
awk -v mb=$mb -v a=$t0 -v b=$t1 -v c=$t2 'BEGIN { printf "LAB-BLK-BENCH size=%dMiB write=%.1fMiB/s read=%.1fMiB/s\n", mb, mb/(b-a), mb/(c-b) }'
