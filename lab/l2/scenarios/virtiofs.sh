# virtio-fs (lab scenario virtiofs, lab/l1/scenarios/virtiofs.sh): mount the tag L1's virtiofsd
# serves, read the file L1 wrote, write one L1 then reads, run fsx-lite (random writes, reads
# and truncates checked against a model) and a 64 MiB throughput pass; then tell L1 to kill
# virtiofsd and show that file operations now fail instead of hanging.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtiofs
mkdir -p /mnt
if mount -t virtiofs labfs /mnt; then
    echo "LAB-FS-MOUNTED $(grep ' /mnt ' /proc/mounts)"
else
    echo "LAB-FS-MOUNT-FAILED"
fi
echo "LAB-FS-READ $(cat /mnt/from-l1.txt)"
echo "written by L2 $(cat /proc/sys/kernel/random/boot_id)" > /mnt/from-l2.txt && sync \
    && echo "LAB-FS-WROTE $(cat /mnt/from-l2.txt)"
fsx-lite check /mnt/fsx.dat ${LAB_FSX_OPS:-2000} 0x5eed
fsx-lite speed /mnt/speed.dat 64
rm -f /mnt/speed.dat
echo "LAB-FS-KILL-BACKEND-NOW"
# Once the backend is gone a lookup fails (virtiofsd runs with --cache=never: every open asks
# it) with ENOTCONN; it must not hang. 60 s at most.
i=0
while [ $i -lt 300 ]; do
    if ! out=$(cat /mnt/from-l1.txt 2>&1); then
        echo "LAB-FS-AFTER-BACKEND-GONE cat failed: $out"
        break
    fi
    sleep 0.2
    i=$((i+1))
done
[ $i -ge 300 ] && echo "LAB-FS-AFTER-BACKEND-GONE still reading after 60 s"
ls /mnt > /dev/null 2>&1 || echo "LAB-FS-LS-FAILS-TOO"
echo "LAB-FS-GUEST-ALIVE $(cut -d' ' -f1 /proc/uptime)"
