# Snapshot/restore: count on the serial console with the guest's uptime, 5 ticks a second,
# LAB_SNAP_TICKS (lab.snap_ticks=, default 40) of them. The host pauses, snapshots and kills the
# vmm after a few ticks and restores the snapshot in a new one; the count and the uptime must
# go on from where they were (the host compares the last tick before with the first after).
ticks=40
for arg in $(cat /proc/cmdline); do
    case "$arg" in lab.snap_ticks=*) ticks="${arg#lab.snap_ticks=}" ;; esac
done
n=0
echo "LAB-SNAP-READY"
while [ $n -lt "$ticks" ]; do
    n=$((n + 1))
    echo "LAB-SNAP-TICK $n $(cut -d' ' -f1 /proc/uptime)"
    sleep 0.2
done
echo "LAB-SNAP-COUNTED $n"
